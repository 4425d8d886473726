#!/usr/bin/env bash
# Makes the release artifacts: the npm tarballs of @objstore/core (compiled JavaScript and
# types) and of @objstore/core-<platform> (libobjstore.so cross-built by Zig for linux x64 and
# arm64, glibc and musl, ReleaseFast, stripped), into OUT_DIR (default dist/), with
# their sizes. The JSR package needs no artifact: `deno publish` reads the sources.
#   bash scripts/pack.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-dist}")"
bash scripts/setup.sh >&2
source scripts/env.sh

echo "pack: compiling TypeScript into dist/ (tsc)" >&2
rm -rf dist/lib dist/bin dist/mod.js dist/mod.d.ts
tsc -p tsconfig.build.json
echo "pack: cross-building libobjstore.so for every platform (zig build packages)" >&2
(cd zig && zig build packages)
echo "pack: writing the tarballs into $out" >&2
rm -f "$out"/objstore-core-*.tgz
node scripts/pack.ts "$out"
