#!/usr/bin/env bash
# Builds the matcher plugins (and the test guests) for wasm32-wasip2 and installs the
# example matchers into plugins/dist/, the demo's plugins_dir.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
mkdir -p dist
for crate in vip_scoring language_match; do
  name=${crate//_/-}
  # Copy then rename, so a daemon watching dist/ never sees a half-written file.
  cp "target/wasm32-wasip2/release/$crate.wasm" "dist/.$name.wasm.tmp.$$"
  mv -f "dist/.$name.wasm.tmp.$$" "dist/$name.wasm"
done
