#!/usr/bin/env bash
# Issue 13 item 8: objects moved between two stores of this machine as between nodes, on Node,
# Deno and Bun, against raw TCP loopback measured in the same run and against Ray 2.60's object
# manager between raylets of a ray.cluster_utils.Cluster on this machine. One command:
#
#   bash bench/run_transfer.sh            # full: 1 GiB pulls and broadcast, 2,000 small pulls, + Ray (~5 min)
#   bash bench/run_transfer.sh --quick    # CI smoke: 64 MiB, 200 small pulls, no Ray (~30 s)
#   env: REPEAT=N (runs per runtime, default 1; the report gives every run's figures),
#        BENCH_RUNTIMES="node deno bun" (the default; deno brings deno-quic with it)
#
# Per runtime (and Deno again over QUIC) and run: bench/tcp_anchor.py (the anchor: a forked Python sender streams the object's
# size over 127.0.0.1 into a touched buffer with recv_into, 3 times), then bench/transfer_bench.ts
# (two processes: a source store served, receiving stores pulling). Then bench/ray_transfer.py
# (full mode; Ray installed once by bench/setup_ray.sh) with an anchor just before it.
# bench/report_transfer.py prints the tables and writes bench/results/<date>-transfer.json and .md
# (-transfer-quick.* with --quick, which git ignores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: bash bench/run_transfer.sh [--quick]" >&2; exit 2 ;;
  esac
done
flag=$([ "$quick" = 1 ] && echo --quick || true)
mib=$([ "$quick" = 1 ] && echo 64 || echo 1024)
limit=$([ "$quick" = 1 ] && echo 120 || echo 900)
repeat="${REPEAT:-1}"
# BENCH_RUNTIMES (as run_all.sh's; scripts/test.sh's quick run: node) picks the runtimes; Deno
# also runs over QUIC (deno-quic).
runtimes="$(echo "${BENCH_RUNTIMES:-node deno bun}" | sed 's/\bdeno\b/deno deno-quic/')"
work="$(mktemp -d)"
trap 'echo "raw runs kept in $work" >&2' ERR
failures=0
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "run_transfer: $started, load $load_before" >&2

run() { # name out command...
  local name="$1" out="$2"
  shift 2
  echo "run_transfer: $name (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  if ! timeout "$limit" "$@" >"$out" 2> >(sed -u 's/^/    /' >&2); then
    failures=$((failures + 1))
    echo "run_transfer: FAILED: $name" >&2
    echo "{\"error\": \"$name failed\"}" >"$out"
  fi
}

for i in $(seq 1 "$repeat"); do
  for runtime in $runtimes; do
    run "TCP anchor before $runtime (run $i)" "$work/anchor-$runtime-$i.json" python3 bench/tcp_anchor.py --mib "$mib" --repeat 3
    case "$runtime" in
      node) cmd=(node bench/transfer_bench.ts) ;;
      deno) cmd=(deno run -A bench/transfer_bench.ts) ;;
      # QUIC (objstore start --transport quic): Deno only, the bytes through its QUIC stack.
      deno-quic) cmd=(deno run -A --unstable-net bench/transfer_bench.ts --transport quic) ;;
      bun) cmd=(bun bench/transfer_bench.ts) ;;
    esac
    run "transfer_bench on $runtime (run $i)" "$work/$runtime-$i.json" "${cmd[@]}" $flag
  done
done
if [ "$quick" = 0 ]; then
  if bash bench/setup_ray.sh >"$work/ray-setup.log" 2>&1; then
    run "TCP anchor before Ray" "$work/anchor-ray-1.json" python3 bench/tcp_anchor.py --mib "$mib" --repeat 3
    run "ray_transfer (Ray 2.60)" "$work/ray-1.json" "${RAY_VENV:-$root/.tools/ray-venv}/bin/python" bench/ray_transfer.py
  else
    failures=$((failures + 1))
    tail -5 "$work/ray-setup.log" >&2
  fi
fi

date="$(date -u +%Y-%m-%d)"
out="$root/bench/results/$date-transfer$([ "$quick" = 1 ] && echo -quick || true)"
python3 bench/report_transfer.py "$work" "$out" "$started" "$load_before" "$failures"
rm -rf "$work"
[ "$failures" = 0 ]
