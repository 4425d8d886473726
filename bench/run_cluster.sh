#!/usr/bin/env bash
# Issue 14 item 7: tasks across three nodes of one machine on Node, Deno and Bun, side by side
# with Ray 2.60 on a 3-raylet ray.cluster_utils.Cluster in the same run. One command:
#
#   bash bench/run_cluster.sh            # full: 2,000 tasks, 64 maps × 16 MiB → 8 reducers, lineage of 16 MiB (~10 min)
#   bash bench/run_cluster.sh --quick    # smoke: 200 tasks, 8 maps × 1 MiB → 2 reducers, lineage of 1 MiB (~2 min)
#   options: --no-ray   skip Ray (bench/run_all.sh --quick uses it); otherwise Ray is installed
#                       once by bench/setup_ray.sh (full mode) or used if already there (--quick)
#   env: REPEAT=N (runs per runtime, default 1; the report gives every run's figures)
#
# Per runtime and run: a fresh Redis (scripts/redis_server.sh), three nodes `objstore start` of
# that runtime with one worker each (the machine has 2 vCPUs) and a 2 GiB store each (--quick:
# 256 MiB), then bench/cluster_bench.ts as a driver attached to the first node (it kills the
# second for the lineage workload); then everything is stopped and removed. Then
# bench/ray_cluster.py: the same workloads on a head and two nodes of one CPU and 2 GiB each.
# bench/report_cluster.py prints the table and writes bench/results/<date>-cluster.json and .md
# (-cluster-quick.* with --quick, which git ignores). Nodes, Redis, their /dev/shm stores and
# node files, and Ray's processes are cleaned up on every exit (trap).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

quick=0
ray=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-ray) ray=0 ;;
    *) echo "usage: bash bench/run_cluster.sh [--quick] [--no-ray]" >&2; exit 2 ;;
  esac
done
flag=$([ "$quick" = 1 ] && echo --quick || true)
node_store_bytes=$([ "$quick" = 1 ] && echo $((256 * 1024 * 1024)) || echo $((2 * 1024 * 1024 * 1024)))
limit=$([ "$quick" = 1 ] && echo 120 || echo 1200) # seconds one bench run may take
repeat="${REPEAT:-1}"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
lib_commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
lib_dirty="$(git status --porcelain -- mod.ts lib zig/src zig/include 2>/dev/null | wc -l | tr -d ' ')"
token="bench-cluster-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
node_names=()
node_pids=()
redis_dir=""

# Stops this run's nodes (SIGTERM, then SIGKILL after 10 s), removes what killed ones left
# (their store in /dev/shm, their node file), and stops this run's Redis.
stop_cluster() {
  local pid name
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${node_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${node_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for name in "${node_names[@]}"; do
    node bin/objstore.ts destroy "$name" >/dev/null 2>&1 || true
    rm -f "/dev/shm/objstore-$name" "/dev/shm/objstore-$name-"* "$(node -p 'require("os").tmpdir()')/objstore-nodes-$(id -u)/$name.json"
  done
  node_names=()
  node_pids=()
  if [ -n "$redis_dir" ]; then bash scripts/redis_server.sh stop "$redis_dir" || true; fi
  redis_dir=""
}
trap 'stop_cluster; rm -rf "$work"' EXIT
trap 'progress "interrupted; stopping the nodes"; exit 130' INT TERM

# Redis and three nodes of `runtime` with one worker each; sets node_names, node_pids, OBJSTORE_TEST_REDIS.
start_cluster() { # runtime run
  local runtime="$1" run="$2" letter name
  eval "$(bash scripts/redis_server.sh start)"
  redis_dir="$OBJSTORE_TEST_REDIS_DIR"
  runtime_cmd "$runtime"
  for letter in a b c; do
    name="bench-cluster-$$-$runtime$run-$letter"
    "${cmd[@]}" bin/objstore.ts start --address "$OBJSTORE_TEST_REDIS" --token "$token" --store "$name" \
      --num-workers 1 --object-store-memory "$node_store_bytes" >"$work/$name.log" 2>&1 &
    node_pids+=("$!")
    disown "$!" # the lineage workload kills one: no "Killed" notice from bash
    node_names+=("$name")
  done
  local i
  for i in 0 1 2; do
    for _ in $(seq 1 600); do
      grep -q "started: store" "$work/${node_names[$i]}.log" && break
      kill -0 "${node_pids[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    if ! grep -q "started: store" "$work/${node_names[$i]}.log"; then
      tail -5 "$work/${node_names[$i]}.log" >&2
      return 1
    fi
  done
}

progress "bench/run_cluster.sh $flag: 3 nodes of one worker per runtime, $repeat run(s); load $load_before"
for i in $(seq 1 "$repeat"); do
  for runtime in "${RUNTIMES[@]}"; do
    out="$work/cluster-$runtime-$i.json"
    if start_cluster "$runtime" "$i"; then
      runtime_cmd "$runtime"
      run_bench "cluster_bench (run $i of $repeat)" "$runtime" "$out" "$limit" "${cmd[@]}" bench/cluster_bench.ts \
        --address "$OBJSTORE_TEST_REDIS" --nodes "$(IFS=,; echo "${node_names[*]}")" --pids "$(IFS=,; echo "${node_pids[*]}")" $flag
    else
      failures=$((failures + 1))
      progress "FAILED: the nodes of $runtime did not start"
      echo "{\"runtime\": \"$runtime\", \"error\": \"the nodes did not start\"}" >"$out"
    fi
    stop_cluster
  done
done

if [ "$ray" = 1 ]; then
  venv="${RAY_VENV:-$root/.tools/ray-venv}"
  if [ "$quick" = 0 ] && ! install_ray >"$work/ray-setup.log" 2>&1; then
    failures=$((failures + 1))
    tail -5 "$work/ray-setup.log" >&2
  elif [ -x "$venv/bin/python" ]; then
    for i in $(seq 1 "$repeat"); do
      run_bench "ray_cluster (Ray, 3 raylets; run $i of $repeat)" ray "$work/ray-$i.json" "$limit" "$venv/bin/python" bench/ray_cluster.py $flag
    done
  else
    progress "Ray not installed (bash bench/setup_ray.sh): its column stays empty"
  fi
fi

machine_json "$load_before" "$started" "$quick" "$repeat" >"$work/machine.json"
date="$(date -u +%Y-%m-%d)"
out="$results/$date-cluster$([ "$quick" = 1 ] && echo -quick || true)"
python3 bench/report_cluster.py "$work" "$out" "$failures"
[ "$failures" = 0 ]
