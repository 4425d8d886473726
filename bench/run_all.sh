#!/usr/bin/env bash
# Every benchmark, side by side with Ray and the thread pools, in one command:
#
#   bash bench/run_all.sh            # full (~70 min): limits, native, store and task workloads on
#                                    # node, deno, bun, piscina/tinypool, spilling, puts by size, transfers
#                                    # between stores (against raw TCP and Ray's nodes), tasks and
#                                    # a map-reduce on 3 nodes (against Ray's Cluster), tasks
#                                    # after a burst, Ray 2.60's `ray microbenchmark` and the burst on Ray
#   bash bench/run_all.sh --quick    # CI smoke (3-4 min): every benchmark runs, shortly, no Ray
#   options: --only limits,native,store,tasks,pools,spill,puts,burst,transfer,cluster,ray   (default: all)
#            --pinned    also the task workloads pinned to one vCPU and to two (taskset)
#   env:     REPEAT=N (runs per runtime, default 1; figures are medians over the runs),
#            RAY_SLEEP=S (Ray's timeit sleep, default 10), OBJSTORE_BENCH_DIR (disk, default /tmp)
#
# Steps: bench/limits.py (memcpy, disk, TCP loopback); `zig build bench` (the native core against
# memcpy and dd); per runtime bench/store_bench.ts, bench/tasks_bench.ts and bench/pool_bench.ts
# on one snapshot of the library; bench/burst_bench.ts per runtime (tasks before and after a burst
# of dropped refs, big puts and a 10k-ref get, in one process) and bench/many_puts.ts (10 M
# dropped put(0)s in one synchronous loop); bench/run_spill.sh (8 GiB through a 1 GiB store,
# against dd and Ray; its own tables); bench/run_puts.sh (binary puts of 1 KiB-800 MiB against
# memcpy and Ray, first gets by size; its own tables); bench/run_transfer.sh (pulls between two
# stores over loopback against raw TCP and Ray's object manager; its own tables);
# bench/run_cluster.sh (tasks/s, a map-reduce over refs and lineage recovery on 3 nodes against a
# 3-raylet Ray Cluster; its own table); Ray (installed once into .tools/ray-venv)
# running its own `ray microbenchmark` through bench/ray_micro.py, and the burst sequence through
# bench/ray_burst.py. Progress goes to stderr. bench/report.py then
# writes bench/results/<date>-<machine>.json and .md (-quick with --quick) and prints the tables:
# one per runtime, workload | ours | Ray | piscina | ratios | fraction of the physical limit.
# With --quick, a benchmark that fails makes the command fail (after the report).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

quick=0
pinned=0
only="limits,native,store,tasks,pools,spill,puts,burst,transfer,cluster,ray"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --pinned) pinned=1 ;;
    --only) only="$2"; shift ;;
    *) echo "usage: bash bench/run_all.sh [--quick] [--only limits,native,store,tasks,pools,spill,puts,burst,transfer,cluster,ray] [--pinned]" >&2; exit 2 ;;
  esac
  shift
done
step() { [[ ",$only," == *",$1,"* ]]; }
repeat="${REPEAT:-1}"
flag=$([ "$quick" = 1 ] && echo --quick || true)
limit=$([ "$quick" = 1 ] && echo 180 || echo 1800) # seconds one bench run may take
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
trap 'progress "interrupted; raw runs kept in $work"' ERR INT
progress "bench/run_all.sh $([ "$quick" = 1 ] && echo "--quick " || true)($only), $repeat run(s) per runtime; raw runs in $work"

if step limits; then
  run_bench "physical limits: memcpy, disk (dd), TCP loopback" system "$work/limits.json" "$limit" python3 "$root/bench/limits.py" $flag
fi

if step native; then
  progress "native core: zig build bench $flag"
  if (cd zig && timeout "$limit" "$root/.tools/zig-venv/bin/python" -m ziglang build bench --release=safe -- $flag) >"$work/native.txt" 2>&1; then
    grep '^|' "$work/native.txt" | cut -c1-220 | sed 's/^/    /' >&2
  else
    failures=$((failures + 1))
    tail -8 "$work/native.txt" | sed 's/^/    /' >&2
    progress "FAILED: zig build bench"
  fi
fi

if step pools; then install_pools; fi
snapshot_library
progress "measuring commit $lib_commit ($lib_dirty uncommitted library files), snapshot in $snap"
for i in $(seq 1 "$repeat"); do
  for runtime in "${RUNTIMES[@]}"; do
    runtime_cmd "$runtime"
    if step store; then
      run_bench "store_bench (run $i of $repeat)" "$runtime" "$work/store-$runtime-$i.json" "$limit" "${cmd[@]}" bench/store_bench.ts $flag
    fi
    if step tasks; then
      run_bench "tasks_bench (run $i of $repeat)" "$runtime" "$work/tasks-$runtime-$i.json" "$limit" "${cmd[@]}" bench/tasks_bench.ts $flag
    fi
    if step pools; then
      run_bench "pool_bench (run $i of $repeat)" "$runtime" "$work/pool-$runtime-$i.json" "$limit" "${cmd[@]}" bench/pool_bench.ts $flag
    fi
    if step burst; then
      run_bench "burst_bench (run $i of $repeat)" "$runtime" "$work/burst-$runtime-$i.json" "$limit" "${cmd[@]}" bench/burst_bench.ts $flag
      run_bench "many_puts: 10 M dropped put(0)s in one loop (run $i of $repeat)" "$runtime" "$work/puts-$runtime-$i.json" "$limit" "${cmd[@]}" bench/many_puts.ts $flag
    fi
  done
done

# Spilling (issue #5): 8 GiB through a 1 GiB store on each runtime and on Ray (not in quick
# mode), beside dd; its own tables and bench/results/<date>-spill.json.
if step spill; then
  progress "spill: bench/run_spill.sh $flag"
  if timeout "$limit" bash bench/run_spill.sh $flag >"$work/spill.txt" 2>&1; then
    grep '^|' "$work/spill.txt" | cut -c1-220 | sed 's/^/    /' >&2
  else
    failures=$((failures + 1))
    tail -8 "$work/spill.txt" | sed 's/^/    /' >&2
    progress "FAILED: bench/run_spill.sh"
  fi
fi

# Binary puts against memcpy and Ray, first gets by size (issue 15): bench/run_puts.sh, its own
# tables and bench/results/<date>-puts.json (quick: up to 32 MiB puts, no Ray).
if step puts; then
  progress "puts: bench/run_puts.sh $flag"
  if timeout "$limit" bash bench/run_puts.sh $flag >"$work/puts.txt" 2>&1; then
    grep '^|' "$work/puts.txt" | cut -c1-220 | sed 's/^/    /' >&2
  else
    failures=$((failures + 1))
    tail -8 "$work/puts.txt" | sed 's/^/    /' >&2
    progress "FAILED: bench/run_puts.sh"
  fi
fi

# Transfers between nodes (issue 13 item 8): bench/run_transfer.sh, two stores over loopback
# against raw TCP measured in the same run and Ray's object manager (a Cluster of 2 and 4 raylets);
# its own tables and bench/results/<date>-transfer.json (quick: 64 MiB, no Ray).
if step transfer; then
  progress "transfer: bench/run_transfer.sh $flag"
  if timeout "$limit" bash bench/run_transfer.sh $flag >"$work/transfer.txt" 2>&1; then
    grep '^|' "$work/transfer.txt" | cut -c1-220 | sed 's/^/    /' >&2
  else
    failures=$((failures + 1))
    tail -8 "$work/transfer.txt" | sed 's/^/    /' >&2
    progress "FAILED: bench/run_transfer.sh"
  fi
fi

# Tasks across 3 nodes of this machine (issue 14 item 7): bench/run_cluster.sh, tasks/s, a
# map-reduce over refs and lineage recovery against a 3-raylet Ray Cluster in the same run; its own
# table and bench/results/<date>-cluster.json (quick: small sizes, no Ray).
if step cluster; then
  cluster_flags=$([ "$quick" = 1 ] && echo "--quick --no-ray" || true)
  # Quick: on Node alone. The smoke is of the bench's own code; the cluster on every runtime is
  # the conformance suite's (tests/cluster_*.test.ts), and three runtimes of three nodes each
  # cost CI a minute more.
  cluster_runtimes=$([ "$quick" = 1 ] && echo "node" || echo "${RUNTIMES[*]}")
  progress "cluster: bench/run_cluster.sh $cluster_flags (on $cluster_runtimes)"
  # Three runtimes, each starting three nodes: twice a bench run's limit.
  if BENCH_RUNTIMES="$cluster_runtimes" timeout "$((limit * 2))" bash bench/run_cluster.sh $cluster_flags >"$work/cluster.txt" 2>&1; then
    grep '^|' "$work/cluster.txt" | cut -c1-220 | sed 's/^/    /' >&2
  else
    failures=$((failures + 1))
    tail -8 "$work/cluster.txt" | sed 's/^/    /' >&2
    progress "FAILED: bench/run_cluster.sh"
  fi
fi

# Pinned runs: one-in-flight rates depend on whether the two sides share a vCPU, which the
# kernel decides differently from run to run; these place ours and the pools the same way.
if [ "$pinned" = 1 ]; then
  for runtime in "${RUNTIMES[@]}"; do
    runtime_cmd "$runtime"
    for placement in same split; do
      run_bench "tasks_bench --placement $placement" "$runtime" "$work/place-tasks-$runtime-$placement.json" "$limit" "${cmd[@]}" bench/tasks_bench.ts $flag \
        --placement "$placement" --only pipe_pingpong_sync,single_client_tasks_sync,single_client_tasks_async,1_1_actor_calls_sync,1_1_actor_calls_async
      run_bench "pool_bench --placement $placement" "$runtime" "$work/place-pool-$runtime-$placement.json" "$limit" "${cmd[@]}" bench/pool_bench.ts $flag \
        --placement "$placement" --workloads single_client_tasks_sync,single_client_tasks_async
    done
  done
fi

if step ray && [ "$quick" = 0 ]; then
  if install_ray >"$work/ray-setup.log" 2>&1; then
    run_bench "Ray: \`ray microbenchmark\` (ray_perf.main) + extras; timeit sleeps ${RAY_SLEEP:-10} s per workload" ray \
      "$work/ray.json" 3600 "$root/.tools/ray-venv/bin/python" "$root/bench/ray_micro.py" --sleep "${RAY_SLEEP:-10}"
  else
    failures=$((failures + 1))
    tail -5 "$work/ray-setup.log" >&2
    python3 -c 'import json,sys; print(json.dumps({"measured": False, "error": "install failed: " + open(sys.argv[1]).read()[-600:]}))' \
      "$work/ray-setup.log" >"$work/ray.json"
  fi
fi

# Ray running burst_bench.ts's sequence in one driver (not in quick mode).
if step burst && [ "$quick" = 0 ]; then
  if install_ray >"$work/ray-setup.log" 2>&1; then
    run_bench "Ray: tasks after a burst, one driver (bench/ray_burst.py)" ray "$work/ray-burst.json" 1800 \
      "$root/.tools/ray-venv/bin/python" "$root/bench/ray_burst.py"
  else
    failures=$((failures + 1))
    tail -5 "$work/ray-setup.log" >&2
  fi
fi

machine_json "$load_before" "$started" "$quick" "$repeat" >"$work/machine.json"
host="$(hostname -s 2>/dev/null || echo machine)-$(nproc)cpu"
out="$results/$(date -u +%Y-%m-%d)-$host$([ "$quick" = 1 ] && echo -quick || true)"
progress "report: ${out#"$root"/}.json and .md"
python3 bench/report.py "$work" "$out"
progress "done in $(((SECONDS - bench_started) / 60)) min $(((SECONDS - bench_started) % 60)) s; $failures failure(s)"
rm -rf "$work"
if [ "$quick" = 1 ] && [ "$failures" -gt 0 ]; then
  exit 1
fi
