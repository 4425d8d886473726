"""Ray's own object-store microbenchmarks, measured on this machine, for bench/run_store.sh.

    .tools/ray-venv/bin/python bench/ray_bench.py [--quick] [--sleep SECONDS] [--repeat N]

Runs the workloads of `ray microbenchmark` (ray/_private/ray_perf.py) that concern the object
store, through Ray's own harness (`ray._private.ray_microbenchmark_helpers.timeit`: sleep, 1 s
warm-up, 4 rounds of >= 2 s, mean and std), on a local Ray started with num_cpus=2 and a 2 GiB
object store:

  single_client_put_calls_Plasma_Store          ray.put(0)
  single_client_get_calls_Plasma_Store          ray.get(value), value = ray.put(0) made once
  single_client_put_gigabytes                   ray.put(np.zeros(100*1024*1024, np.int64))
  single_client_get_object_containing_10k_refs  ray.get(obj), obj = a task's list of 10k ray.put(1)

and, for the comparison with @objstore/core, a few that ray_perf does not have (same harness):
the 800 MiB put of an array whose pages are touched (np.zeros reads the kernel's zero page, which
flatters the copy), the get of that 800 MiB array, numpy's memcpy of it, and get latency of
1 KiB, 1 MiB and 1 GiB uint8 arrays (median and p99 of 100 gets).

Ray's "gigabytes" are nominal: 0.8 per put of 838,860,800 bytes. This script reports Ray's
figure as printed (`*_ray_nominal`) and in 10^9 bytes per second (`gb_per_s`), as
bench/store_bench.ts does. Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import traceback

MIB = 1024 * 1024
BIG_BYTES = 100 * MIB * 8  # np.zeros(100 * 1024 * 1024, dtype=np.int64)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def own_timeit(name, fn, multiplier=1, warmup_time_sec=10):
    """A copy of Ray 2.x's timeit, used only if Ray's own cannot be imported."""
    import numpy as np

    time.sleep(warmup_time_sec)
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < 1:
        fn()
        count += 1
    step = count // 10 + 1
    stats = []
    for _ in range(4):
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < 2:
            for _ in range(step):
                fn()
            count += step
        end = time.perf_counter()
        stats.append(multiplier * count / (end - start))
    log(name, "per second", round(np.mean(stats), 2), "+-", round(np.std(stats), 2))
    return [(name, float(np.mean(stats)), float(np.std(stats)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 s sleep, latency sizes up to 128 MiB")
    parser.add_argument("--sleep", type=float, default=None, help="seconds Ray's timeit sleeps first (Ray: 10)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the workloads; figures are medians")
    args = parser.parse_args()
    sleep_s = args.sleep if args.sleep is not None else (1.0 if args.quick else 10.0)

    result = {"measured": False, "quick": args.quick, "python": platform.python_version()}
    try:
        import numpy as np
        import ray
    except Exception as error:  # noqa: BLE001
        result["error"] = f"cannot import ray/numpy: {error!r}"
        print(json.dumps(result))
        return 1
    result["ray_version"] = ray.__version__
    result["numpy_version"] = np.__version__
    try:
        from ray._private.ray_microbenchmark_helpers import timeit

        result["harness"] = "ray._private.ray_microbenchmark_helpers.timeit"
    except Exception as error:  # noqa: BLE001
        timeit = own_timeit
        result["harness"] = f"copy of Ray's timeit (import failed: {error!r})"
    result["timeit_sleep_s"] = sleep_s

    result["repeat"] = args.repeat
    passes = {}  # key -> [(mean, std)] over the passes

    def run(key, name, fn, multiplier=1):
        """Ray's timeit; over several passes, the medians of the passes' means and stds."""
        with contextlib.redirect_stdout(sys.stderr):
            out = timeit(name, fn, multiplier, warmup_time_sec=sleep_s)
        _, mean, std = out[0]
        passes.setdefault(key, []).append((float(mean), float(std)))
        means = [m for m, _ in passes[key]]
        result[key] = {
            "mean": statistics.median(means),
            "std": statistics.median([sd for _, sd in passes[key]]),
            "passes": means,
        }
        return result[key]

    try:
        with contextlib.redirect_stdout(sys.stderr):
            ray.init(num_cpus=2, object_store_memory=2 * 1024**3, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001
        result["error"] = f"ray.init failed: {error!r}"
        result["traceback"] = traceback.format_exc()
        print(json.dumps(result))
        return 1

    try:
        import ray._raylet

        result["optimized_build"] = bool(getattr(ray._raylet, "OPTIMIZED", True))
        result["object_store_memory"] = int(ray.available_resources().get("object_store_memory", 0))

        value = ray.put(0)
        arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)  # ray_perf's array (zero pages)
        touched = np.arange(100 * 1024 * 1024, dtype=np.int64)  # every page written
        dst = np.empty_like(touched)
        np.copyto(dst, touched)

        @ray.remote
        def create_object_containing_ref():
            obj_refs = []
            for _ in range(10000):
                obj_refs.append(ray.put(1))
            return obj_refs

        obj_containing_ref = create_object_containing_ref.remote()
        ray.get(obj_containing_ref)

        latency_passes = {}
        sizes = [("1KiB", 1024), ("1MiB", MIB), ("1GiB", (128 if args.quick else 1024) * MIB)]
        for pass_index in range(args.repeat):
            log(f"== Ray pass {pass_index + 1} of {args.repeat}")
            # --- exactly ray_perf.py's workloads
            run("single_client_get_calls_Plasma_Store", "single client get calls (Plasma Store)", lambda: ray.get(value))
            run("single_client_put_calls_Plasma_Store", "single client put calls (Plasma Store)", lambda: ray.put(0))
            r = run("single_client_put_gigabytes", "single client put gigabytes", lambda: ray.put(arr), 8 * 0.1)
            r["gb_per_s"] = r["mean"] / 0.8 * BIG_BYTES / 1e9
            r["std_gb_per_s"] = r["std"] / 0.8 * BIG_BYTES / 1e9
            run(
                "single_client_get_object_containing_10k_refs",
                "single client get object containing 10k refs",
                lambda: ray.get(obj_containing_ref),
            )
            # --- extras for the comparison (same harness)
            r = run("put_800mib_touched", "single client put gigabytes, touched array", lambda: ray.put(touched), 8 * 0.1)
            r["gb_per_s"] = r["mean"] / 0.8 * BIG_BYTES / 1e9
            r["std_gb_per_s"] = r["std"] / 0.8 * BIG_BYTES / 1e9
            big_ref = ray.put(touched)  # held only for this workload: the store is 2 GiB
            got = ray.get(big_ref)
            assert got.shape == touched.shape and got[12345] == 12345
            result["get_returns_readonly_view"] = not got.flags.writeable
            del got
            r = run("get_800mib", "single client get 800 MiB array (GB, nominal)", lambda: ray.get(big_ref), BIG_BYTES / 1e9)
            r["gb_per_s"] = r["mean"]
            del big_ref
            r = run("memcpy_800mib", "numpy copyto 800 MiB (GB)", lambda: np.copyto(dst, touched), BIG_BYTES / 1e9)
            r["gb_per_s"] = r["mean"]

            for label, nbytes in sizes:
                src = np.ones(nbytes, dtype=np.uint8)
                ref = ray.put(src)
                del src
                for _ in range(10):
                    ray.get(ref)
                samples = []
                for _ in range(100):
                    t0 = time.perf_counter()
                    v = ray.get(ref)
                    samples.append((time.perf_counter() - t0) * 1e6)
                    assert v.nbytes == nbytes
                    del v
                del ref
                samples.sort()
                latency_passes.setdefault(label, []).append(
                    {"bytes": nbytes, "median_us": samples[49], "p99_us": samples[98], "min_us": samples[0]}
                )
                log(f"ray get latency {label}: median {samples[49]:.1f} us, p99 {samples[98]:.1f} us")
        del obj_containing_ref
        latency = {}
        for label, ps in latency_passes.items():
            latency[label] = {
                "bytes": ps[0]["bytes"],
                "median_us": statistics.median(p["median_us"] for p in ps),
                "p99_us": statistics.median(p["p99_us"] for p in ps),
                "min_us": min(p["min_us"] for p in ps),
                "passes": [p["median_us"] for p in ps],
            }
        result["get_latency_us"] = latency
        result["measured"] = True
    except Exception as error:  # noqa: BLE001
        result["error"] = f"{error!r}"
        result["traceback"] = traceback.format_exc()
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            ray.shutdown()
    print(json.dumps(result))
    return 0 if result["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
