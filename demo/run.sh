#!/usr/bin/env bash
# Builds the example matcher plugins, then starts the daemon with the demo config,
# rules and data on http://127.0.0.1:7878.
set -euo pipefail
cd "$(dirname "$0")/.."
plugins/build.sh
exec cargo run --release -- serve --config switchboard.toml "$@"
