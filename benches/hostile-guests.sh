#!/usr/bin/env bash
# The hostile test guest under load: for each misdeed, a daemon whose only rule consults
# `plugins/test-guests/hostile` in that mode, 16 connections asking for candidates and a
# paced stream of unrelated writes beside them (`switchboard bench --target`); then the
# daemon's peak RSS (VmHWM) and the latencies. docs/reliability.md has the results.
#
#   benches/hostile-guests.sh [BINARY] [MODE...]
#
# BINARY defaults to target/release/switchboard; the plugin workspace is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$(realpath "${1:-target/release/switchboard}")
shift || true
modes=("$@")
((${#modes[@]})) || modes=(ok flood flood-wide big-scores big-reason memory oversized loop panic print)
plugins/build.sh >/dev/null
guest=plugins/target/wasm32-wasip2/release/hostile.wasm

printf '%-11s %9s %9s %12s %12s %12s %7s\n' mode "peak MiB" "RSS MiB" "cand/s" "cand p99" "write p99" errors
for mode in "${modes[@]}"; do
    work=$(mktemp -d)
    mkdir -p "$work/rules" "$work/plugins"
    cp "$guest" "$work/plugins/hostile.wasm"
    cat >"$work/rules/hostile.toml" <<EOF
[[rule]]
id = "hostile"
target = "representative"
[rule.plugin]
name = "hostile"
on_failure = "fail_closed"
config = { mode = "$mode" }
EOF
    cat >"$work/switchboard.toml" <<EOF
listen = "127.0.0.1:0"
database = "sqlite://data/sb.db"
plugins_dir = "plugins"
plugin_cache = "cache"
watch = false
[[tokens]]
name = "bench"
role = "admin"
sha256 = "cce7a2cf1ae045989cfc914fb95a41526f167a838b3c7d33745143614abace7c"
EOF
    RUST_LOG=warn,switchboard::daemon=info "$bin" serve --config "$work/switchboard.toml" 2>"$work/daemon.log" &
    pid=$!
    addr=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/daemon.log" | head -1)
        [[ -n $addr ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $addr ]] || { cat "$work/daemon.log" >&2; exit 1; }
    "$bin" bench --target "http://$addr" --token demo-admin --representatives 500 --conversations 1000 \
        --concurrency 16 --duration 10s --warmup 2s --mix candidates=1 \
        --background put_queue=1 --background-rate 20 --json >"$work/report.json" 2>"$work/bench.log" || true
    peak=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    kill "$pid"
    wait "$pid" || true
    python3 - "$mode" "$peak" "$rss" "$work/report.json" <<'PY'
import json, sys
mode, peak, rss, path = sys.argv[1:5]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{mode:<11} {peak:>9} {rss:>9}  no report ({e})")
    sys.exit()
c = r["kinds"]["candidates"]
w = r["background"]["kinds"]["put_queue"]
ms = lambda k: f'{k["latency_us"]["p99"] / 1000:.1f} ms' if k["latency_us"] else "-"
errors = r["total"]["errors"] + r["background"]["total"]["errors"]
print(f'{mode:<11} {peak:>9} {rss:>9} {c["calls_per_s"]:>12.1f} {ms(c):>12} {ms(w):>12} {errors:>7}')
PY
    rm -rf "$work"
done
