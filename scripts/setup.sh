#!/usr/bin/env bash
# Installs what the project needs, once, and builds libobjstore.so. Safe to run again.
#   - Zig 0.17.0 from PyPI into .tools/zig-venv
#   - Deno, Bun, Node 24 and the JS dependencies from npm (pinned in package-lock.json)
#   - Debian's chromium (apt-get), when missing: the dashboard's browser test (tests/dashboard.test.ts)
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

if ! command -v chromium >/dev/null 2>&1 && [ -z "${OBJSTORE_TEST_CHROMIUM:-}" ]; then
  echo "setup: installing Debian's chromium (apt-get), for the dashboard's browser test"
  # Not fatal here (packing needs no browser); the browser test fails saying how to install it.
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; } ||
    echo "setup: warning: cannot install chromium (run 'apt-get install chromium' as root); the browser test will fail" >&2
fi

echo "setup: building zig/zig-out/lib/libobjstore.so"
(cd zig && "$root/$zig_venv/bin/python" -m ziglang build --release=safe)
