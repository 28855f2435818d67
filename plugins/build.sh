#!/usr/bin/env bash
# Builds the matcher plugins (and the test guests) for wasm32-wasip2 and installs the
# example matchers into plugins/dist/, the demo's plugins_dir, and the bench's slow matcher
# into plugins/dist-test/ (`switchboard bench --plugins plugins/dist-test`, docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# Its own target folder, whatever CARGO_TARGET_DIR says: the tests and the copies below
# read the components from plugins/target.
cargo build --quiet --release --target wasm32-wasip2 --target-dir target
install_to() { # crate folder
  mkdir -p "$2"
  name=${1//_/-}
  # Copy then rename, so a daemon watching the folder never sees a half-written file.
  cp "target/wasm32-wasip2/release/$1.wasm" "$2/.$name.wasm.tmp.$$"
  mv -f "$2/.$name.wasm.tmp.$$" "$2/$name.wasm"
}
for crate in vip_scoring language_match; do
  install_to "$crate" dist
done
install_to slow dist-test
