# Sourced by the other scripts: puts the project's pinned tools first on PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/node_modules/.bin:$PATH"
export OBJSTORE_LIB="$root/zig/zig-out/lib/libobjstore.so"
zig() { "$root/.tools/zig-venv/bin/python" -m ziglang "$@"; }
