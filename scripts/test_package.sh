#!/usr/bin/env bash
# The packages as users get them: packs the release tarballs (scripts/pack.sh), installs them
# into fresh projects with no Zig on PATH and no OBJSTORE_LIB, and runs a program there that
# puts a typed array, reads it back zero-copy, runs a remote task on it and waits:
#   npm install (tarballs) → node app.mjs, node app.ts, deno run -A app.ts, the CLI by npx and deno
#   bun add (tarballs)     → bun app.ts, the CLI by bunx
# and checks the errors of a project without its platform package and of S3 spilling without
# the AWS SDK; runs the musl library under musl; then `deno publish --dry-run` (the JSR package).
# With the test Redis (OBJSTORE_TEST_REDIS, as scripts/test.sh starts it), also a cluster:
# two nodes started by the project's CLI, an object put on one read on the other by each runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work="$(mktemp -d -t objstore-package-XXXXXX)"
holder_pid=""
node_pids=()
stop_started() {
  [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null || true
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
}
cleanup() {
  stop_started
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
  check_dashboard "$name" "$@"
  exec {HOLDER[1]}>&-
  wait "$holder_pid"
  holder_pid=""
  echo "ok: $* status / memory --store $name / dashboard"
}

# `dashboard` of the installed package serves its page, uPlot from the installed dependency, and
# the store's figures. Started in a session of its own, so that npx's and bunx's children go too.
check_dashboard() {
  local name="$1"
  shift
  local log="$work/dashboard-$name.log"
  setsid "$@" dashboard --store "$name" --port 0 > "$log" 2>&1 &
  local pid=$! waited=0
  until grep -q " on http" "$log" 2>/dev/null; do
    sleep 0.2
    waited=$((waited + 1))
    [ "$waited" -lt 150 ] || { cat "$log" >&2; kill -- -"$pid" 2>/dev/null; echo "test_package: '$* dashboard' did not start" >&2; exit 1; }
  done
  local url
  url="$(sed -n 's/.* on \(http[^ ]*\)$/\1/p' "$log")"
  local page uplot memory
  page="$(curl -fsS "$url")"
  uplot="$(curl -fsS "${url}uplot.min.js")"
  memory="$(curl -fsS "${url}api/memory")"
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q 'src="uplot.min.js"' <<<"$page" || { echo "test_package: '$* dashboard' serves no page" >&2; exit 1; }
  grep -q 'uPlot' <<<"$uplot" || { echo "test_package: '$* dashboard' serves no uPlot" >&2; exit 1; }
  grep -q "\"store $name\"" <<<"$memory" || { echo "test_package: '$* dashboard' /api/memory: $memory" >&2; exit 1; }
}

# Two nodes started with the project's CLI (`$@`, e.g. npx objstore); `put` by one runtime on the
# first, `get` by each runtime on the second; status and memory --address list them.
check_cluster() {
  local label="$1"
  shift
  [ -n "${OBJSTORE_TEST_REDIS:-}" ] || { echo "skipped: cluster ($label): no OBJSTORE_TEST_REDIS"; return; }
  local url="$OBJSTORE_TEST_REDIS" token="pkg-$$-$RANDOM" one="objstore-pkg-$$-$label-1" two="objstore-pkg-$$-$label-2"
  local name
  # This runs in a subshell, which does not run the script's trap: its nodes go with it.
  trap stop_started EXIT
  for name in "$one" "$two"; do
    "$@" start --address "$url" --token "$token" --store "$name" --num-workers 0 --object-store-memory 67108864 > "$work/$name.log" 2>&1 &
    node_pids+=($!)
  done
  for name in "$one" "$two"; do
    local waited=0
    until grep -q "started:" "$work/$name.log"; do
      sleep 0.2
      waited=$((waited + 1))
      [ "$waited" -lt 150 ] || { cat "$work/$name.log" >&2; echo "test_package: node $name did not start" >&2; exit 1; }
    done
  done
  coproc PUTTER { exec node cluster_app.mjs "$url" "$one" put; }
  holder_pid=$PUTTER_PID
  local ready
  read -r ready <&"${PUTTER[0]}"
  local id="${ready#ready }"
  node cluster_app.mjs "$url" "$two" get "$id"
  deno run -A cluster_app.mjs "$url" "$two" get "$id"
  bun cluster_app.mjs "$url" "$two" get "$id"
  "$@" status --address "$url" | grep -q "$one" || { echo "test_package: '$* status --address' does not list $one" >&2; exit 1; }
  "$@" memory --address "$url" | grep -q "$id" || { echo "test_package: '$* memory --address' does not list $id" >&2; exit 1; }
  exec {PUTTER[1]}>&-
  wait "$holder_pid"
  holder_pid=""
  "$@" stop --store "$one" >/dev/null
  "$@" stop --store "$two" >/dev/null
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  node_pids=()
  echo "ok: cluster of two nodes started by $*, read by node, deno and bun"
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
  check_cluster npx npx objstore
)

echo "== bun add of the tarballs; Bun"
bun_app="$(new_project bun-app)"
(cd "$bun_app" && bun add "$main_tgz" "$platform_tgz" >/dev/null 2>&1)
(
  cd "$bun_app"
  bun app.ts
  check_cli bunx bunx objstore
  check_cluster bunx bunx objstore
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
