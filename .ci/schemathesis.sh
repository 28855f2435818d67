#!/usr/bin/env bash
# Generated requests (schemathesis) against the OpenAPI document of a running daemon:
# every answer must be non-5xx and conform to the published document (status code,
# content type, headers, body schema), and the daemon must refuse what the document
# says is invalid.
#
#   .ci/schemathesis.sh [BINARY]
#
# BINARY defaults to target/debug/switchboard (under CARGO_TARGET_DIR if set), which
# `cargo test` builds. The daemon runs
# in a temp folder over a fresh SQLite file with the demo rules, plugins and data, and
# the demo admin token (a role that may make every call). schemathesis is installed,
# pinned, into a virtualenv under ~/.cache on first use.
#
# Environment: ST_MAX_EXAMPLES (test cases per operation and phase, default 60),
# ST_SEED (default 1: the same requests every run; set another to explore),
# ST_MIN_REQUESTS (fail below this many generated requests, default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ST_VERSION=4.32.5
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/switchboard-ci/venv-st-$ST_VERSION}
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
    echo "installing schemathesis $ST_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi

bin=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/debug/switchboard}")
[[ -x $bin ]] || { echo "no $bin: run \`cargo test\` (or \`cargo build\`) first" >&2; exit 2; }
# The demo rules use the two example plugins.
if [[ ! -f plugins/dist/vip-scoring.wasm || ! -f plugins/dist/language-match.wasm ]]; then
    plugins/build.sh
fi

work=$(mktemp -d)
daemon=""
cleanup() {
    if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The demo admin token, `demo-admin` (see switchboard.toml): never outside a demo.
cat >"$work/switchboard.toml" <<EOF
listen = "127.0.0.1:0"
database = "sqlite://data/sb.db"
rules_dir = "$root/rules"
plugins_dir = "$root/plugins/dist"
plugin_cache = "cache"
seed = "$root/demo/seed.json"
watch = false

[[tokens]]
name = "schemathesis"
role = "admin"
sha256 = "cce7a2cf1ae045989cfc914fb95a41526f167a838b3c7d33745143614abace7c"
EOF

RUST_LOG=${RUST_LOG:-warn,switchboard::daemon=info} "$bin" serve --config "$work/switchboard.toml" 2>"$work/daemon.log" &
daemon=$!
addr=""
for _ in $(seq 600); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/daemon.log" | head -1)
    [[ -n $addr ]] && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "the daemon did not start" >&2; cat "$work/daemon.log" >&2; exit 1; }
echo "daemon on $addr (pid $daemon)"

# Checks: every one about the document and server errors. Not `positive_data_acceptance`:
# a request the schema allows can rightly be refused by the API's state (a well-formed id
# that does not exist is 404, an action its status does not allow is 409), which the
# document lists as answers rather than as schema. Nor the checks that need a model of
# the API's resources or users (`use_after_free`, `ensure_resource_availability`,
# `ignored_auth`, `object_level_authorization`): one admin token here, and `remove`
# closes a conversation that stays readable by design.
# `/v1/changes/stream` is left out: a server-sent event stream never ends, so every call
# would run into the request timeout; tests/changes.rs tests its answers.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
checks+=,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method
report=${ST_REPORT_DIR:-$work/report}
status=0
# From the temp folder: schemathesis keeps a cache folder where it runs. One worker: the
# same requests every run for a seed, and with two, CPython 3.11's `ast` module (which
# hypothesis calls from each worker thread) failed one run with "AST constructor
# recursion depth mismatch", an error of the tool, not of the API.
(cd "$work" && "$venv/bin/st" run "http://$addr/openapi.json" \
    --header "Authorization: Bearer demo-admin" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --max-examples "${ST_MAX_EXAMPLES:-60}" \
    --seed "${ST_SEED:-1}" \
    --workers 1 \
    --request-timeout 10 \
    --exclude-path /v1/changes/stream \
    --report ndjson --report-dir "$report" \
    --no-color) || status=$?

# How many requests were answered, and with what: each answer in the run's event log,
# counted once by its `x-request-id` (the daemon gives every answer its own).
requests=$("$venv/bin/python" - "$report" <<'PY'
import collections, glob, json, sys
seen, statuses = set(), collections.Counter()
def walk(o):
    if isinstance(o, dict):
        r = o.get("response")
        if isinstance(r, dict) and "status_code" in r:
            rid = (r.get("headers", {}).get("x-request-id") or [None])[0]
            if rid is not None and rid not in seen:
                seen.add(rid)
                statuses[r["status_code"]] += 1
        for v in o.values():
            walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
for path in glob.glob(sys.argv[1] + "/*.ndjson"):
    for line in open(path):
        walk(json.loads(line))
print(" ".join(f"{s}:{n}" for s, n in sorted(statuses.items())), file=sys.stderr)
print(len(seen))
PY
)
echo "schemathesis: $requests requests answered (by status above)"
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "the daemon died during the run:" >&2
    cat "$work/daemon.log" >&2
    exit 1
fi
if grep -q 'panicked' "$work/daemon.log"; then
    echo "the daemon panicked during the run:" >&2
    grep -B2 -A5 'panicked' "$work/daemon.log" >&2
    exit 1
fi
if ((requests < ${ST_MIN_REQUESTS:-1000})); then
    echo "only $requests requests (want at least ${ST_MIN_REQUESTS:-1000}): raise ST_MAX_EXAMPLES" >&2
    exit 1
fi
exit "$status"
