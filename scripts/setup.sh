#!/usr/bin/env bash
# Installs what the project needs, once, and builds libobjstore.so. Safe to run again.
#   - Zig 0.17.0 from PyPI into .tools/zig-venv
#   - Deno, Bun, Node 24 and the JS dependencies from npm (pinned in package-lock.json)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

zig_venv=.tools/zig-venv
if ! "$zig_venv/bin/python" -m ziglang version 2>/dev/null | grep -qx 0.17.0; then
  echo "setup: installing Zig 0.17.0 from PyPI into $zig_venv"
  python3 -m venv "$zig_venv"
  "$zig_venv/bin/pip" install --quiet --disable-pip-version-check ziglang==0.17.0
fi

if [ ! -f node_modules/.objstore-installed ] || [ package-lock.json -nt node_modules/.objstore-installed ]; then
  echo "setup: installing Deno, Bun, Node 24 and JS dependencies from npm"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.objstore-installed
fi

echo "setup: building zig/zig-out/lib/libobjstore.so"
(cd zig && "$root/$zig_venv/bin/python" -m ziglang build --release=safe)
