"""Ray running bench/burst_bench.ts's sequence in one driver, for bench/run_all.sh.

    .tools/ray-venv/bin/python bench/ray_burst.py [--sleep SECONDS] [--quick]

In one driver, with `ray.init()`'s defaults (as `ray microbenchmark` and a program calling
`init()` get): the task and actor workloads (fresh), then what Ray's own order runs first (the
burst: `ray.put(0)` with the ref dropped, puts of an 800 MiB int64 array whose pages are written,
a get of an object holding 10,000 refs), then the task and actor workloads again (after). The
fixtures are ray_perf's, except that the task returns a small array (`np.zeros(8, np.uint8)`),
as burst_bench.ts's returns an 8-byte Uint8Array. Harness: Ray's `timeit`
(ray_microbenchmark_helpers), through bench/ray_micro.py's wrapper, which sleeps `--sleep`
seconds first (default 0 here, as for ours: a sleep would let a backlog drain between
workloads) and records mean, std and the CPU split. `--quick`: 80 MiB arrays.

Progress goes to stderr; stdout gets one JSON line, shaped as burst_bench.ts's.
"""

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ray_micro import MIB, key_of, log, recording_timeit  # noqa: E402

BATCH = 1000
KEYS = {  # our key → the name the timeit records
    "tasks_sync": "tasks sync",
    "tasks_async": "tasks async",
    "wait_1k_refs": "wait on 1k refs",
    "actor_sync": "1:1 actor calls sync",
    "actor_async": "1:1 actor calls async",
}


def task_phase(ray, np, timeit, results, label):
    @ray.remote
    def small_array():
        return np.zeros(8, dtype=np.uint8)

    @ray.remote
    class Actor:
        def small_value(self):
            return b"ok"

    phase = {}

    def run(key, fn, multiplier=1):
        name = f"{label} {KEYS[key]}"
        timeit(name, fn, multiplier)
        phase[key] = results[key_of(name)]

    run("tasks_sync", lambda: ray.get(small_array.remote()))
    run("tasks_async", lambda: ray.get([small_array.remote() for _ in range(BATCH)]), BATCH)

    def wait_1k():
        not_ready = [small_array.remote() for _ in range(BATCH)]
        for _ in range(BATCH):
            _ready, not_ready = ray.wait(not_ready)

    run("wait_1k_refs", wait_1k)
    actor = Actor.remote()
    ray.get(actor.small_value.remote())
    run("actor_sync", lambda: ray.get(actor.small_value.remote()))
    run("actor_async", lambda: ray.get([actor.small_value.remote() for _ in range(BATCH)]), BATCH)
    ray.kill(actor)
    return phase


def burst_phase(ray, np, timeit, results, quick):
    phase = {}
    timeit("burst put calls, ref dropped", lambda: ray.put(0))
    phase["put_dropped"] = results[key_of("burst put calls, ref dropped")]
    elements = (10 if quick else 100) * MIB
    big = np.arange(elements, dtype=np.int64)  # every page written
    timeit("burst put gigabytes", lambda: ray.put(big), elements * 8 / 1e9)
    phase["put_800mib"] = results[key_of("burst put gigabytes")]
    del big
    inner = [ray.put(0) for _ in range(10_000)]
    outer = ray.put(inner)
    del inner
    timeit("burst get object containing 10k refs", lambda: ray.get(outer))
    phase["get_10k_refs"] = results[key_of("burst get object containing 10k refs")]
    del outer
    return phase


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds Ray's timeit sleeps first (Ray: 10)")
    parser.add_argument("--quick", action="store_true", help="80 MiB arrays")
    args = parser.parse_args()
    result = {"runtime": "ray", "measured": False, "python": platform.python_version(), "timeit_sleep_s": args.sleep}
    try:
        import numpy as np
        import ray
        from ray._private import ray_microbenchmark_helpers as helpers
    except Exception as error:  # noqa: BLE001
        result["error"] = f"cannot import ray/numpy: {error!r}"
        print(json.dumps(result))
        return 1
    result["ray_version"] = ray.__version__
    result["harness"] = f"ray._private.ray_microbenchmark_helpers.timeit (sleep {args.sleep} s)"
    results = {}
    started = time.time()
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    try:
        timeit = recording_timeit(helpers.timeit, helpers, results, args.sleep)
        with contextlib.redirect_stdout(sys.stderr):
            ray.init(include_dashboard=False, log_to_driver=False)
            try:
                result["store_bytes"] = ray.cluster_resources().get("object_store_memory")
                fresh = task_phase(ray, np, timeit, results, "fresh")
                burst = burst_phase(ray, np, timeit, results, args.quick)
                after = task_phase(ray, np, timeit, results, "after the burst")
            finally:
                ray.shutdown()
        result.update(fresh=fresh, burst=burst, after=after)
        result["after_vs_fresh"] = {k: after[k]["mean"] / fresh[k]["mean"] for k in fresh}
        log("after/fresh: " + ", ".join(f"{k} {v:.2f}" for k, v in result["after_vs_fresh"].items()))
        result["measured"] = True
    except Exception as error:  # noqa: BLE001
        result["error"] = f"{error!r}"
        result["traceback"] = traceback.format_exc()
    result["load_before"] = load_before
    result["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
    result["seconds"] = time.time() - started
    print(json.dumps(result))
    return 0 if result["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
