"""Ray 2.60's side of bench/cluster_bench.ts, for bench/run_cluster.sh:

    .tools/ray-venv/bin/python bench/ray_cluster.py [--quick]

`ray.cluster_utils.Cluster` on this machine, every raylet on 127.0.0.1: a head and two nodes, one
CPU and a 2 GiB store each (--quick: 256 MiB), the driver attached to the head; Ray's defaults
otherwise. The same workloads as bench/cluster_bench.ts, with the same sizes:

- tasks: N trivial tasks (return 0) with scheduling_strategy "SPREAD", all submitted, then one
  `ray.get`; tasks per second. N = 2,000 (--quick: 200), a warm-up round, then 5 rounds (2).
- mapreduce: M map tasks (SPREAD) each returning an S MiB uint8 array (byte 0 the map's index,
  a fill byte elsewhere), then R reduce tasks (SPREAD) each taking the M map refs as arguments
  and summing one byte per 4 KiB page of each and its last byte; wall time to the R checked
  sums. M=64, S=16, R=8 (--quick: 8, 1, 2); 3 rounds (2).
- lineage: a task with soft node affinity to the second raylet returns S MiB (its node id in
  the first bytes); `ray.wait(fetch_local=False)` until done, then that raylet is killed
  (`cluster.remove_node(node, allow_graceful=False)`) and a `ray.get` is timed until the object
  comes back made again elsewhere (lineage reconstruction, on by default). This includes Ray
  noticing the node's death (its GCS health checks).

Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1 (see ray-anchors.md 1.3)

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

MIB = 1024 * 1024
PAGE = 4096


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def fill_of(index):
    return (index * 7 + 1) & 0xFF


def expected_checksum(maps, nbytes):
    pages = -(-nbytes // PAGE)
    return sum((i & 0xFF) + (pages - 1) * fill_of(i) + fill_of(i) for i in range(maps))


@ray.remote
def noop():
    return 0


@ray.remote
def map_task(index, nbytes):
    out = np.full(nbytes, (index * 7 + 1) & 0xFF, dtype=np.uint8)
    out[0] = index & 0xFF
    return out


@ray.remote
def reduce_task(*parts):
    return int(sum(int(p[::4096].sum(dtype=np.int64)) + int(p[-1]) for p in parts))


@ray.remote
def produce(nbytes):
    out = np.full(nbytes, 0x5A, dtype=np.uint8)
    name = ray.get_runtime_context().get_node_id().encode()
    out[0] = len(name)
    out[1:1 + len(name)] = np.frombuffer(name, dtype=np.uint8)
    return out


def bench_tasks(count, rounds):
    def one_round():
        start = time.perf_counter()
        values = ray.get([noop.options(scheduling_strategy="SPREAD").remote() for _ in range(count)])
        seconds = time.perf_counter() - start
        assert values == [0] * count
        return count / seconds

    log(f"ray tasks: warm-up round of {count}")
    one_round()
    rates = []
    for _ in range(rounds):
        rates.append(one_round())
        log(f"ray tasks: {count} SPREAD over 3 raylets: {rates[-1]:.0f}/s (load {loadavg()})")
    return {"count": count, "per_s": spread(rates)}


def bench_mapreduce(maps, nbytes, reducers, rounds):
    times = []
    expected = expected_checksum(maps, nbytes)
    for _ in range(rounds):
        start = time.perf_counter()
        refs = [map_task.options(scheduling_strategy="SPREAD").remote(i, nbytes) for i in range(maps)]
        sums = ray.get([reduce_task.options(scheduling_strategy="SPREAD").remote(*refs) for _ in range(reducers)])
        times.append(time.perf_counter() - start)
        assert sums == [expected] * reducers, (sums, expected)
        del refs
        log(f"ray mapreduce: {maps} maps x {nbytes // MIB} MiB, {reducers} reducers reading all: {times[-1]:.2f} s (load {loadavg()})")
        time.sleep(1.0)  # the round's objects go (Ray frees in batches)
    return {"maps": maps, "map_bytes": nbytes, "reducers": reducers, "wall_s": spread(times)}


def bench_lineage(cluster, victim, nbytes):
    victim_id = victim.node_id
    ref = produce.options(scheduling_strategy=NodeAffinitySchedulingStrategy(victim_id, soft=True)).remote(nbytes)
    ready, _ = ray.wait([ref], fetch_local=False, timeout=300)
    assert ready, "lineage: the task on the second raylet did not finish"
    log(f"ray lineage: {nbytes // MIB} MiB made on the second raylet; killing it")
    cluster.remove_node(victim, allow_graceful=False)
    start = time.perf_counter()
    arr = ray.get(ref, timeout=300)
    seconds = time.perf_counter() - start
    where = bytes(arr[1:1 + arr[0]]).decode()
    assert arr.nbytes == nbytes and arr[-1] == 0x5A
    assert where != victim_id, "lineage: the object came from the killed raylet"
    log(f"ray lineage: made again in {seconds:.2f} s")
    return {"bytes": nbytes, "seconds": seconds,
            "made_again_on": "the driver's node" if where == ray.get_runtime_context().get_node_id() else "the third node"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    store = (256 if quick else 2048) * MIB
    load_before = loadavg()
    log(f"ray_cluster: Ray {ray.__version__}, 3 raylets of 1 CPU and {store // MIB} MiB, load {load_before}")
    # SIGTERM (run_bench's timeout) ends through the finally below, which stops the raylets.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": store, "node_ip_address": "127.0.0.1"})
    try:
        nodes = [cluster.add_node(num_cpus=1, object_store_memory=store, node_ip_address="127.0.0.1") for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)  # not the killed raylet's log dump
        cluster.wait_for_nodes()
        tasks = bench_tasks(200 if quick else 2000, 2 if quick else 5)
        mapreduce = bench_mapreduce(8 if quick else 64, (1 if quick else 16) * MIB, 2 if quick else 8, 2 if quick else 3)
        lineage = bench_lineage(cluster, nodes[0], (1 if quick else 16) * MIB)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps({"runtime": "ray", "version": ray.__version__, "load_before": load_before, "load_after": loadavg(),
                      "tasks": tasks, "mapreduce": mapreduce, "lineage": lineage}))


if __name__ == "__main__":
    main()
