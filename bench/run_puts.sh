#!/usr/bin/env bash
# Issue 15's binary puts and first gets on Node, Deno and Bun, against memcpy measured in the same
# run and against Ray 2.60's put of the same numpy arrays. One command:
#
#   bash bench/run_puts.sh            # full: 1 KiB-800 MiB puts, 1 KiB-1 GiB first gets, + Ray (~6 min)
#   bash bench/run_puts.sh --quick    # CI smoke: up to 80 MiB puts and 128 MiB gets, no Ray (~30 s)
#
# Steps: bench/limits.py --memcpy-only (the machine's memcpy: 800 MiB, one C memcpy, Ray's timeit);
# bench/put_bench.ts on each runtime (puts of six kinds beside TypedArray.set of the same bytes;
# first gets); bench/ray_puts.py (full mode; Ray installed once by bench/setup_ray.sh). Then
# bench/report_puts.py prints a Markdown table per runtime and writes
# bench/results/<date>-puts.json (-puts-quick.json with --quick, which git ignores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: bash bench/run_puts.sh [--quick]" >&2; exit 2 ;;
  esac
done
flag=$([ "$quick" = 1 ] && echo --quick || true)
limit=$([ "$quick" = 1 ] && echo 120 || echo 900)
work="$(mktemp -d)"
trap 'echo "raw runs kept in $work" >&2' ERR
failures=0
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "run_puts: $started, load $load_before" >&2

run() { # name out command...
  local name="$1" out="$2"
  shift 2
  echo "run_puts: $name" >&2
  if ! timeout "$limit" "$@" >"$out" 2> >(sed -u 's/^/    /' >&2); then
    failures=$((failures + 1))
    echo "run_puts: FAILED: $name" >&2
    echo "{\"error\": \"$name failed\"}" >"$out"
  fi
}

run "memcpy (bench/limits.py --memcpy-only)" "$work/limits.json" python3 bench/limits.py --memcpy-only $flag
run "put_bench on node" "$work/node.json" node --expose-gc bench/put_bench.ts $flag
run "put_bench on deno" "$work/deno.json" deno run -A --v8-flags=--expose-gc bench/put_bench.ts $flag
run "put_bench on bun" "$work/bun.json" bun bench/put_bench.ts $flag
if [ "$quick" = 0 ]; then
  if bash bench/setup_ray.sh >"$work/ray-setup.log" 2>&1; then
    run "ray_puts (Ray 2.60)" "$work/ray.json" "${RAY_VENV:-$root/.tools/ray-venv}/bin/python" bench/ray_puts.py
  else
    failures=$((failures + 1))
    tail -5 "$work/ray-setup.log" >&2
  fi
fi

date="$(date -u +%Y-%m-%d)"
out="$root/bench/results/$date-puts$([ "$quick" = 1 ] && echo -quick || true)"
python3 bench/report_puts.py "$work" "$out" "$started" "$load_before" "$failures"
rm -rf "$work"
[ "$failures" = 0 ]
