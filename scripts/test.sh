#!/usr/bin/env bash
# Runs every test: the import-circle check, the native core's unit, stress and crash tests, the benchmarks in quick mode
# (they must run, not be fast), then the conformance suite on Node 24, Deno and Bun (with an
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

# The S3 server is built from source (1-2 min on 2 cores on a clean clone): in the background,
# while the native tests and benchmarks run, instead of after them.
s3_build_log="$(mktemp -t objstore-s3-build-XXXXXX)"
setsid bash scripts/s3_server.sh install > "$s3_build_log" 2>&1 &
s3_build=$!
# A run that fails before the build is waited for stops it (the go processes under it too).
trap 'kill -- -"$s3_build" 2>/dev/null || true' EXIT

phase "import circles in lib/ and zig/src/ (scripts/check_imports.ts)"
node scripts/check_imports.ts --strict-zig

phase "native core: unit, stress and crash tests"
(cd zig && zig build test --release=safe -Dstress-seconds="${STRESS_SECONDS:-20}" --summary all)

# Quick benchmarks must run, not be fast: their per-runtime part on Node (the same scripts run on
# Deno and Bun in full runs); BENCH_RUNTIMES="node deno bun" for every runtime.
phase "benchmarks, quick mode (bench/run_all.sh --quick: limits, native, store, tasks, pools, spill, puts, burst, transfer, cluster)"
BENCH_RUNTIMES="${BENCH_RUNTIMES:-node}" bash bench/run_all.sh --quick

phase "S3-compatible server on loopback (versitygw), for the S3 spilling tests; Redis, for the cluster's"
wait "$s3_build" || { cat "$s3_build_log"; echo "the S3 server's build failed (above)"; exit 1; }
cat "$s3_build_log"; rm -f "$s3_build_log"
eval "$(bash scripts/s3_server.sh start)"
trap 'bash scripts/s3_server.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(bash scripts/redis_server.sh start)"
# The cluster tests make network namespaces and links named with this run's prefix.
export OBJSTORE_TEST_NETNS_PREFIX="osn$(printf '%x' $(( $$ % 65536 )))"
trap 'bash scripts/s3_server.sh stop >/dev/null 2>&1 || true; bash scripts/redis_server.sh stop "$OBJSTORE_TEST_REDIS_DIR"; bash scripts/netns_cleanup.sh "$OBJSTORE_TEST_NETNS_PREFIX"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

suite=(tests/*.test.ts)
# The hosts-in-namespaces and chaos tests (about 2 minutes a runtime; what they exercise is the
# native transfers and node deaths) run on Node here, to keep CI under 30 minutes on 2 cores;
# every other cluster test runs on all three. OBJSTORE_TEST_EVERY_RUNTIME=1 runs them on all three.
others=()
for file in "${suite[@]}"; do
  case "$file" in
    tests/cluster_netns.test.ts | tests/cluster_chaos.test.ts) [ -n "${OBJSTORE_TEST_EVERY_RUNTIME:-}" ] && others+=("$file") ;;
    *) others+=("$file") ;;
  esac
done
phase "conformance suite on node $(node --version)"
node --expose-gc tests/run.ts "${suite[@]}"
phase "conformance suite on deno $(deno --version | head -1 | cut -d' ' -f2)"
deno run -A --v8-flags=--expose-gc tests/run.ts "${others[@]}"
phase "conformance suite on bun $(bun --version)"
bun tests/run.ts "${others[@]}"

phase "soak: node, deno and bun clients on one store, a SIGKILL about every second (tests/soak/soak.ts, ${STRESS_SECONDS:-30} s)"
# A hung store (a lock never released) would hang the soak's own checks: bounded from outside.
soak_limit_s=$(( ${STRESS_SECONDS:-30} + 240 ))
timeout --kill-after=20 "$soak_limit_s" node --expose-gc tests/soak/soak.ts ||
  { status=$?; [ "$status" -eq 124 ] && echo "soak: still running after ${soak_limit_s} s: a hang (see its last lines above)"; exit "$status"; }

phase "the packages as users install them (scripts/test_package.sh: npm, bun add, deno; JSR dry run)"
bash scripts/test_package.sh
phase "done"
