#!/usr/bin/env bash
# The packages as users get them: packs the release tarballs (scripts/pack.sh), installs them
# into fresh projects with no Zig on PATH and no OBJSTORE_LIB, and runs a program there that
# puts a typed array, reads it back zero-copy, runs a remote task on it and waits:
#   npm install (tarballs) → node app.mjs, node app.ts, deno run -A app.ts, the CLI by npx and deno
#   bun add (tarballs)     → bun app.ts, the CLI by bunx
# and checks the errors of a project without its platform package and of S3 spilling without
# the AWS SDK; runs the musl library under musl; then `deno publish --dry-run` (the JSR package).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work="$(mktemp -d -t objstore-package-XXXXXX)"
holder_pid=""
cleanup() {
  [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/pack.sh "$work/tarballs" >/dev/null
main_tgz="$work/tarballs/objstore-core-0.1.0.tgz"
platform_tgz="$work/tarballs/objstore-core-linux-$(node -p process.arch)-gnu-0.1.0.tgz"
ls "$main_tgz" "$platform_tgz" >/dev/null

# What a user's shell has: the runtimes, no Zig, no OBJSTORE_LIB.
export PATH="$root/node_modules/.bin:/usr/local/bin:/usr/bin:/bin"
unset OBJSTORE_LIB
if command -v zig >/dev/null 2>&1; then echo "test_package: zig is on PATH; the test needs a PATH without it" >&2; exit 1; fi
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

new_project() {
  local dir="$work/$1"
  mkdir -p "$dir"
  printf '{ "name": "%s", "private": true, "type": "module" }\n' "$1" > "$dir/package.json"
  cp tests/package/*.ts tests/package/*.mjs "$dir/"
  echo "$dir"
}

# Prints the CLI's `memory` of a store held by a process of the project, and checks it lists the object.
check_cli() {
  local name="objstore-pkg-$$-$1"
  shift
  coproc HOLDER { exec node holder.mjs "$name"; }
  holder_pid=$HOLDER_PID
  local ready
  read -r ready <&"${HOLDER[0]}"
  local id="${ready#ready }"
  "$@" status | grep -q "$name" || { echo "test_package: '$* status' does not list $name" >&2; exit 1; }
  "$@" memory --store "$name" | grep -q "${id:0:16}" || { echo "test_package: '$* memory' does not list $id" >&2; exit 1; }
  exec {HOLDER[1]}>&-
  wait "$holder_pid"
  holder_pid=""
  echo "ok: $* status / memory --store $name"
}

echo "== npm install of the tarballs; Node 24 and Deno"
npm_app="$(new_project npm-app)"
(cd "$npm_app" && npm install --no-save --loglevel=error "$main_tgz" "$platform_tgz" >/dev/null)
(
  cd "$npm_app"
  node app.mjs
  node app.ts
  deno run -A app.ts
  node s3_missing.mjs
  check_cli npx npx objstore
  check_cli deno deno run -A npm:@objstore/core
)

echo "== bun add of the tarballs; Bun"
bun_app="$(new_project bun-app)"
(cd "$bun_app" && bun add "$main_tgz" "$platform_tgz" >/dev/null 2>&1)
(
  cd "$bun_app"
  bun app.ts
  check_cli bunx bunx objstore
)

echo "== npm install without the platform package"
bare_app="$(new_project bare-app)"
(cd "$bare_app" && npm install --no-save --loglevel=error "$main_tgz" >/dev/null && node no_platform.mjs)

echo "== the main tarball holds the library and its CLI only"
listing="$(tar tzf "$main_tgz")"
if grep -Ev '^package/(dist/.*\.(js|d\.ts)|LICENSE|README\.md|package\.json)$' <<<"$listing"; then
  echo "test_package: the main tarball holds files it should not (above)" >&2
  exit 1
fi
echo "ok: $(wc -l <<<"$listing") files, $(( $(stat -c %s "$main_tgz") / 1024 )) KiB"

echo "== the musl package's library under a real musl C library (Debian's musl-tools)"
if ! command -v musl-gcc >/dev/null 2>&1; then
  apt-get install -y -qq musl-tools >/dev/null 2>&1 || { echo "test_package: needs musl-gcc: apt-get install musl-tools" >&2; exit 1; }
fi
npm_arch="$(node -p process.arch)"
mkdir -p "$work/musl"
tar xzf "$work/tarballs/objstore-core-linux-$npm_arch-musl-0.1.0.tgz" -C "$work/musl" package/libobjstore.so
musl-gcc -I zig/include -o "$work/musl/smoke" tests/package/musl_smoke.c
"$work/musl/smoke" "$work/musl/package/libobjstore.so"

echo "== deno publish --dry-run (JSR)"
published="$(NO_COLOR=1 deno publish --dry-run --allow-dirty 2>&1)" || { echo "$published" >&2; exit 1; }
# Two dynamic imports cannot be analyzed, by design: a task's own module, and the platform
# package from npm when loaded from JSR. Any other warning or error fails.
if grep -E '^(error|warning)' <<<"$published" | grep -v '^warning\[unanalyzable-dynamic-import\]'; then
  echo "test_package: deno publish --dry-run reported the problems above" >&2
  exit 1
fi
echo "ok: deno publish --dry-run"
