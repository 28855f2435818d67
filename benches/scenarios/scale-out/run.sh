#!/usr/bin/env bash
# One `switchboard bench` run against N fresh daemons on one fresh database
# (docs/performance.md, "Several daemons on PostgreSQL").
#
#   benches/scenarios/scale-out/run.sh postgres 2 [bench flags...]
#   benches/scenarios/scale-out/run.sh sqlite 1 [bench flags...]
#
# PostgreSQL: a new database on $SWITCHBOARD_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432), dropped at the end. SQLite: a file in a temporary
# folder (one daemon: a SQLite file is not shared between daemons). Each daemon is
# target/release/switchboard (or $SWITCHBOARD_BIN) with an empty rules folder, on
# 127.0.0.1:$SWITCHBOARD_BENCH_PORT+1, +2, ... (default 18180). The bench gets every
# daemon as a --target, an admin token, and the flags given; the daemons are stopped
# when it ends. Run it from the repository's root.
set -euo pipefail

backend=${1:?usage: run.sh postgres|sqlite DAEMONS [bench flags...]}
daemons=${2:?usage: run.sh postgres|sqlite DAEMONS [bench flags...]}
shift 2
bin=${SWITCHBOARD_BIN:-target/release/switchboard}
server=${SWITCHBOARD_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
first_port=${SWITCHBOARD_BENCH_PORT:-18180}
token=bench-admin
digest=$(printf %s "$token" | sha256sum | cut -d' ' -f1)

work=$(mktemp -d)
db=
pids=()
stop() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$db" ]; then
        psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    fi
    rm -rf "$work"
}
trap stop EXIT

case $backend in
    postgres)
        db=sb_bench_$$_$RANDOM
        psql "$server/postgres" -qc "CREATE DATABASE $db"
        url=$server/$db
        ;;
    sqlite)
        [ "$daemons" = 1 ] || { echo "run.sh: sqlite runs one daemon" >&2; exit 2; }
        url=sqlite://sb.db
        ;;
    *)
        echo "run.sh: unknown backend \`$backend\` (expected postgres or sqlite)" >&2
        exit 2
        ;;
esac

targets=()
for i in $(seq 1 "$daemons"); do
    dir=$work/daemon-$i
    port=$((first_port + i))
    mkdir -p "$dir/rules" "$dir/plugins"
    cat >"$dir/switchboard.toml" <<CONFIG
listen = "127.0.0.1:$port"
database = "$url"
rules_dir = "rules"
plugins_dir = "plugins"
watch = false

[[tokens]]
name = "bench"
role = "admin"
sha256 = "$digest"
CONFIG
    "$bin" serve --config "$dir/switchboard.toml" 2>"$dir/log" &
    pids+=("$!")
    targets+=(--target "http://127.0.0.1:$port")
done
for i in $(seq 1 "$daemons"); do
    port=$((first_port + i))
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || {
        echo "run.sh: daemon $i did not answer on port $port; its log:" >&2
        cat "$work/daemon-$i/log" >&2
        exit 1
    }
done
echo "run.sh: $daemons daemon(s) on $backend, pids ${pids[*]}" >&2
"$bin" bench "${targets[@]}" --token "$token" "$@"
