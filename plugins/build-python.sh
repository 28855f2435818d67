#!/usr/bin/env bash
# Builds the Python matchers of plugins/python/ into components with componentize-py, which
# it installs (the pinned version) into plugins/target/py-venv the first time. Writes
# plugins/target/python/<module>.wasm; installs nothing into plugins/dist (the demo does
# not run them). Needs python3 with the venv module and pip, and PyPI (once).
#
#   plugins/build-python.sh              # every matcher: site_affinity
#   plugins/build-python.sh my_matcher   # plugins/python/my_matcher.py
set -euo pipefail
cd "$(dirname "$0")"

COMPONENTIZE_PY=0.25.1
venv=target/py-venv
out=target/python

if ! command -v python3 >/dev/null; then
  echo "build-python.sh: python3 is not installed; install Python 3.10 or later with venv and pip" >&2
  echo "  (Debian/Ubuntu: apt-get install -y python3 python3-venv python3-pip)" >&2
  exit 1
fi
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" || {
    echo "build-python.sh: python3 cannot make a virtual environment; install its venv module" >&2
    echo "  (Debian/Ubuntu: apt-get install -y python3-venv)" >&2
    exit 1
  }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY"
fi

mkdir -p "$out"
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(site_affinity)
for module in "${modules[@]}"; do
  if [ ! -f "python/$module.py" ]; then
    echo "build-python.sh: no matcher plugins/python/$module.py" >&2
    exit 1
  fi
  # Up to date: kept, so its digest (and the daemon's compiled-code cache) stays valid;
  # two builds of the same source differ (the interpreter's snapshot is seeded at random).
  if [ -f "$out/$module.wasm" ] && [ -z "$(find python wit build-python.sh -newer "$out/$module.wasm" -print -quit)" ]; then
    continue
  fi
  # Write then rename, so a reader never sees a half-written file.
  "$venv/bin/componentize-py" --quiet -d wit -w plugin componentize -p python "$module" \
    -o "$out/.$module.wasm.tmp.$$"
  mv -f "$out/.$module.wasm.tmp.$$" "$out/$module.wasm"
done
