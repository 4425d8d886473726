#!/usr/bin/env bash
# Runs every test: the import-circle check, the native core's unit, stress and crash tests, the benchmarks in quick mode
# (they must run, not be fast), then the conformance suite on Node 24, then Deno and Bun at once (with an
# S3-compatible server started on loopback for the S3 spilling tests, and Redis for the cluster
# tests, whose nodes run in network namespaces of their own: root needed), then the soak (Node, Deno
# and Bun clients on one store, SIGKILLed about every second: tests/soak/soak.ts), then the
# packed packages installed into fresh projects on each runtime.
#   STRESS_SECONDS=600 scripts/test.sh   runs the native stress test and the soak 10 min each
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's heading says how long the one before it took: where CI's minutes go.
phase_started=$SECONDS
phase() {
  echo "   (took $((SECONDS - phase_started)) s; $((SECONDS / 60)) min $((SECONDS % 60)) s in all)"
  phase_started=$SECONDS
  echo "== $*"
}
bash scripts/setup.sh
source scripts/env.sh

phase "import circles in lib/ and zig/src/ (scripts/check_imports.ts)"
node scripts/check_imports.ts --strict-zig

phase "native core: unit, stress and crash tests"
(cd zig && zig build test --release=safe -Dstress-seconds="${STRESS_SECONDS:-20}" --summary all)

# Quick benchmarks must run, not be fast: their per-runtime part on Node (the same scripts run on
# Deno and Bun in full runs); BENCH_RUNTIMES="node deno bun" for every runtime.
phase "benchmarks, quick mode (bench/run_all.sh --quick: limits, native, store, tasks, pools, spill, puts, burst, transfer, cluster)"
BENCH_RUNTIMES="${BENCH_RUNTIMES:-node}" bash bench/run_all.sh --quick

phase "S3-compatible server on loopback (versitygw), for the S3 spilling tests; Redis, for the cluster's"
# One cleanup for whatever was started by then, also on an interrupt.
second_redis_dir=""
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  bash scripts/s3_server.sh stop >/dev/null 2>&1 || true
  [ -z "${OBJSTORE_TEST_REDIS_DIR:-}" ] || bash scripts/redis_server.sh stop "$OBJSTORE_TEST_REDIS_DIR"
  [ -z "$second_redis_dir" ] || bash scripts/redis_server.sh stop "$second_redis_dir"
  [ -z "${OBJSTORE_TEST_NETNS_PREFIX:-}" ] || bash scripts/netns_cleanup.sh "$OBJSTORE_TEST_NETNS_PREFIX"
}
trap cleanup EXIT
eval "$(bash scripts/s3_server.sh start)"
eval "$(bash scripts/redis_server.sh start)"
# The cluster tests make network namespaces and links named with this run's prefix.
export OBJSTORE_TEST_NETNS_PREFIX="osn$(printf '%x' $(( $$ % 65536 )))"
trap 'exit 130' INT
trap 'exit 143' TERM

suite=(tests/*.test.ts)
# cli.test.ts removes a store whose processes it killed: any other process's init would remove it
# first, so on Deno and Bun (whose suites run at once) it runs on its own after them.
others=()
for file in "${suite[@]}"; do
  [ "$file" = tests/cli.test.ts ] || others+=("$file")
done
phase "conformance suite on node $(node --version)"
node --expose-gc tests/run.ts "${suite[@]}"

# Deno's and Bun's suites run at once (they spend most of their time waiting on processes they
# started: 2 cores are not busy), each with a Redis of its own (a cluster's directory), their
# lines marked [deno] and [bun]. Their hosts-in-namespaces test reads objects up to 512 MiB
# across hosts, Node's up to 2 GiB: the bytes move in the native library alike on every runtime,
# and two such tests at once would hold 13 GiB of shared memory.
phase "conformance suites on deno $(deno --version | head -1 | cut -d' ' -f2) and bun $(bun --version), at once"
second_redis="$(bash scripts/redis_server.sh start)"
second_redis_dir="$(eval "$second_redis"; echo "$OBJSTORE_TEST_REDIS_DIR")"
marked() { # name command...: runs the command, each line of its output marked with the name
  local name="$1"
  shift
  "$@" 2>&1 | sed -u "s/^/[$name] /"
}
export OBJSTORE_TEST_BIG_BYTES="${OBJSTORE_TEST_BIG_BYTES:-$((512 * 1024 * 1024))}"
marked deno deno run -A --v8-flags=--expose-gc tests/run.ts "${others[@]}" &
deno_suite=$!
(eval "$second_redis"; marked bun bun tests/run.ts "${others[@]}") &
bun_suite=$!
suites_failed=0
wait "$deno_suite" || suites_failed=1
wait "$bun_suite" || suites_failed=1
deno run -A --v8-flags=--expose-gc tests/run.ts tests/cli.test.ts || suites_failed=1
bun tests/run.ts tests/cli.test.ts || suites_failed=1
[ "$suites_failed" = 0 ] || { echo "conformance: the deno or bun suite failed (its FAIL lines are above, marked)"; exit 1; }

phase "soak: node, deno and bun clients on one store, a SIGKILL about every second (tests/soak/soak.ts, ${STRESS_SECONDS:-30} s)"
# A hung store (a lock never released) would hang the soak's own checks: bounded from outside.
soak_limit_s=$(( ${STRESS_SECONDS:-30} + 240 ))
timeout --kill-after=20 "$soak_limit_s" node --expose-gc tests/soak/soak.ts ||
  { status=$?; [ "$status" -eq 124 ] && echo "soak: still running after ${soak_limit_s} s: a hang (see its last lines above)"; exit "$status"; }

phase "the packages as users install them (scripts/test_package.sh: npm, bun add, deno; JSR dry run)"
bash scripts/test_package.sh
phase "done"
