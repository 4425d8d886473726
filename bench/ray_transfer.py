"""Ray 2.60's side of bench/transfer_bench.ts, for bench/run_transfer.sh:

    .tools/ray-venv/bin/python bench/ray_transfer.py [--quick] [--big-mib 1024]

`ray.cluster_utils.Cluster` on this machine, every raylet on 127.0.0.1: a head with no CPUs
(the driver's node) and nodes with one CPU, each store 2 GiB (--quick: 256 MiB), Ray's defaults
otherwise (its object manager: 5 MiB chunks over gRPC).

- pull (2 raylets): an actor on the other node `ray.put`s a fresh 1 GiB uint8 array (every page
  written) and returns its ref inside a list (so the object stays in that node's store, owned
  by the actor); the driver times `ray.get(ref)`, which pulls it into the head's store. 5 rounds
  (--quick: 3), a fresh object each.
- broadcast (4 raylets): the driver `ray.put`s a fresh 1 GiB array on the head; one task per
  node (custom resources pin them) takes it as an argument and returns its length: wall time from
  submitting the three to having their results (workers started beforehand). 3 rounds.
- small: the actor `ray.put`s 2,000 (--quick: 200) `bytes` of 1 KiB and returns their refs; the
  driver gets each (a pull each): one at a time, then in lists of 16 and 64. Fresh objects per
  mode.

Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1 (see ray-anchors.md 1.3)

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

MIB = 1024 * 1024


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def written_array(nbytes, seed):
    arr = np.empty(nbytes, dtype=np.uint8)
    arr[:] = seed & 0xFF
    arr[::4096] = (seed + 1) & 0xFF
    return arr


@ray.remote(num_cpus=0)
class Holder:
    """Puts objects on its node and hands out their refs (it owns them)."""

    def big(self, nbytes, seed):
        return [ray.put(written_array(nbytes, seed))]

    def small(self, count, nbytes, seed):
        return [ray.put(bytes([(seed + i) & 0xFF]) * nbytes) for i in range(count)]


@ray.remote(num_cpus=0)
def length(arr):
    return int(arr.nbytes)


def start_cluster(nodes, store_bytes):
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": store_bytes, "node_ip_address": "127.0.0.1"})
    for i in range(nodes):
        cluster.add_node(num_cpus=1, resources={f"n{i}": 1}, object_store_memory=store_bytes, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    return cluster


def stop_cluster(cluster):
    ray.shutdown()
    cluster.shutdown()


def bench_pull(big, rounds, small_count):
    holder = Holder.options(resources={"n0": 0.01}).remote()
    ray.get(holder.small.remote(1, 8, 0))  # the actor is up
    rates = []
    for r in range(rounds):
        [ref] = ray.get(holder.big.remote(big, r))
        start = time.perf_counter()
        arr = ray.get(ref)
        seconds = time.perf_counter() - start
        assert arr.nbytes == big and arr[4096] == (r + 1) & 0xFF and arr[1] == r & 0xFF
        del arr, ref
        rates.append(big / seconds / 1e9)
        log(f"ray pull {big // MIB} MiB: {rates[-1]:.3f} GB/s")
    small = []
    for in_flight in (1, 16, 64):
        refs = ray.get(holder.small.remote(small_count, 1024, in_flight))
        start = time.perf_counter()
        for i in range(0, len(refs), in_flight):
            values = ray.get(refs[i:i + in_flight])
            assert len(values[0]) == 1024
        seconds = time.perf_counter() - start
        del refs
        small.append({"in_flight": in_flight, "count": small_count, "bytes": 1024, "per_s": small_count / seconds})
        log(f"ray small 1 KiB gets, {in_flight} in flight: {small[-1]['per_s']:.0f}/s")
    return {"bytes": big, "gb_per_s": spread(rates)}, small


def bench_broadcast(big, rounds):
    # Start each node's worker before the clock runs.
    ray.get([length.options(resources={f"n{i}": 0.01}).remote(np.zeros(8, np.uint8)) for i in range(3)])
    times = []
    for r in range(rounds):
        ref = ray.put(written_array(big, r))
        start = time.perf_counter()
        sizes = ray.get([length.options(resources={f"n{i}": 0.01}).remote(ref) for i in range(3)])
        times.append(time.perf_counter() - start)
        assert sizes == [big] * 3
        del ref
        log(f"ray broadcast {big // MIB} MiB to 3 nodes: {times[-1]:.2f} s")
        time.sleep(1.5)  # Ray frees copies in batches (every 1 s): let the stores empty
    return {"bytes": big, "receivers": 3, "wall_s": spread(times)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--big-mib", type=int, default=None)
    args = parser.parse_args()
    big = (args.big_mib or (64 if args.quick else 1024)) * MIB
    store = (256 if args.quick else 2048) * MIB
    rounds = 3 if args.quick else 5
    small_count = 200 if args.quick else 2000
    load_before = loadavg()
    log(f"ray_transfer: Ray {ray.__version__}, {big // MIB} MiB objects, load {load_before}")
    cluster = start_cluster(1, store)
    try:
        pull, small = bench_pull(big, rounds, small_count)
    finally:
        stop_cluster(cluster)
    cluster = start_cluster(3, store)
    try:
        broadcast = bench_broadcast(big, 2 if args.quick else 3)
    finally:
        stop_cluster(cluster)
    print(json.dumps({"ray_version": ray.__version__, "load_before": load_before, "load_after": loadavg(),
                      "pull": pull, "small": small, "broadcast": broadcast}))


if __name__ == "__main__":
    main()
