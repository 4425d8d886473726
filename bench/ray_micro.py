"""Ray's own `ray microbenchmark`, run on this machine, for bench/run_all.sh.

    .tools/ray-venv/bin/python bench/ray_micro.py [--sleep SECONDS] [--only PATTERN] [--no-extras]

1. `ray._private.ray_perf.main()` — what `ray microbenchmark` runs, unchanged: its workloads,
   `ray.init()` with the defaults, and its harness (`ray_microbenchmark_helpers.timeit`: sleep
   10 s, 1 s warm-up, 4 rounds of >= 2 s, mean and std). Two things differ: the last step, the
   Ray Client benchmark, needs grpc (`ray[client]`), which the plain `ray` wheel lacks, so its
   import is stubbed and it is skipped (the JSON says so); and every `timeit` call goes through a
   wrapper that records its result under Ray's key (printed name, spaces/`:`/`-` → `_`,
   parentheses dropped) with, from /proc, the CPU time per op of the driver, Ray's daemons
   (raylet, GCS, ...) and its workers over the warm-up and rounds (the sleep is taken first, by
   the wrapper, with Ray's length). `--only PATTERN` is Ray's TESTS_TO_RUN.
2. Extras for the comparison with @objstore/core (same harness, `ray.init(num_cpus=2,
   object_store_memory=2 GiB)`): the 800 MiB put of an array whose pages are written (ray_perf's
   `np.zeros` reads the kernel's zero page, which flatters the copy), the get of that array,
   numpy's memcpy of it, and get latency of 1 KiB, 1 MiB and 1 GiB uint8 arrays (median and p99
   of 100 gets after 10). `--no-extras` skips them.

Ray's "gigabytes" are nominal (0.8 per 838,860,800-byte put); bench/report.py converts them to
10^9 bytes. Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
import types

MIB = 1024 * 1024
BIG_BYTES = 100 * MIB * 8  # np.zeros(100 * 1024 * 1024, dtype=np.int64)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def key_of(name):
    """Ray's result key: the printed name, spaces, ':' and '-' as '_', parentheses dropped."""
    for a, b in ((" ", "_"), (":", "_"), ("-", "_"), ("(", ""), (")", "")):
        name = name.replace(a, b)
    return name


# --- where the time goes: CPU per op of the driver, Ray's daemons and workers -----------------


def descendants(root):
    """Pids of every process below `root` (Ray's raylet, GCS and workers are its children)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_ns(pid):
    """CPU time of every thread of `pid` (schedstat), with the process name."""
    total = 0
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        return None, 0
    return name, total


def sample():
    procs = {}
    for pid in [os.getpid()] + descendants(os.getpid()):
        name, ns = cpu_ns(pid)
        if name is not None:
            procs[pid] = (name, ns)
    return time.perf_counter(), procs


def split_of(a, b, ops):
    """CPU µs per op: the driver, Ray's daemons (raylet, gcs_server, …) and workers."""
    groups = {"driver": 0.0, "workers": 0.0, "ray_daemons": 0.0}
    me = os.getpid()
    for pid, (name, ns) in b[1].items():
        delta = ns - a[1].get(pid, (name, 0))[1]
        if pid == me:
            group = "driver"
        elif name.startswith("ray::") or "default_worker" in name:
            group = "workers"
        else:
            group = "ray_daemons"
        groups[group] += delta
    out = {f"{k}_cpu_us": v / 1000 / max(ops, 1) for k, v in groups.items()}
    out["wall_us"] = (b[0] - a[0]) * 1e6 / max(ops, 1)
    return out


# --- Ray ------------------------------------------------------------------------------------


def import_ray_perf(result):
    """ray_perf, with its Ray Client import stubbed when grpc is missing."""
    try:
        from ray._private import ray_perf
    except ModuleNotFoundError as missing:
        stub = types.ModuleType("ray._private.ray_client_microbenchmark")
        stub.main = lambda results=None: results
        sys.modules["ray._private.ray_client_microbenchmark"] = stub
        from ray._private import ray_perf

        result["client_benchmark"] = f"skipped: its import failed ({missing!r}); ray_perf imported with it stubbed"
        return ray_perf
    ray_perf.client_microbenchmark_main = lambda results=None: results
    result["client_benchmark"] = "skipped (Ray Client over gRPC: not part of the comparison)"
    return ray_perf


def recording_timeit(real_timeit, helpers, results, sleep_s):
    """Ray's timeit, sleeping first as Ray does, recording mean, std and the CPU split per key."""

    def timeit(name, fn, multiplier=1, warmup_time_sec=None):
        if helpers.filter_pattern and helpers.filter_pattern not in name:
            return [None]
        if helpers.skip_pattern and helpers.skip_pattern in name:
            return [None]
        time.sleep(sleep_s if warmup_time_sec is None else min(sleep_s, warmup_time_sec))
        calls = [0]

        def counted():
            calls[0] += 1
            return fn()

        before = sample()
        out = real_timeit(name, counted, multiplier, warmup_time_sec=0)
        after = sample()
        _, mean, std = out[0]
        results[key_of(name)] = {
            "name": name,
            "mean": float(mean),
            "std": float(std),
            "multiplier": multiplier,
            "split": split_of(before, after, calls[0] * multiplier),
        }
        return out

    return timeit


def extras(ray, np, timeit, results, quick):
    """Workloads ray_perf does not have, for the comparison (see the module's doc)."""
    ray.init(num_cpus=2, object_store_memory=2 * 1024**3, include_dashboard=False, log_to_driver=False)
    try:
        touched = np.arange(100 * MIB, dtype=np.int64)  # every page written
        dst = np.empty_like(touched)
        np.copyto(dst, touched)
        timeit("single client put gigabytes touched array", lambda: ray.put(touched), 8 * 0.1)
        big_ref = ray.put(touched)
        got = ray.get(big_ref)
        assert got.shape == touched.shape and got[12345] == 12345
        results["get_returns_readonly_view"] = not got.flags.writeable
        del got
        timeit("single client get 800 MiB array GB", lambda: ray.get(big_ref), BIG_BYTES / 1e9)
        del big_ref
        timeit("numpy copyto 800 MiB GB", lambda: np.copyto(dst, touched), BIG_BYTES / 1e9)
        del dst, touched
        latency = {}
        for label, nbytes in [("1KiB", 1024), ("1MiB", MIB), ("1GiB", (128 if quick else 1024) * MIB)]:
            ref = ray.put(np.ones(nbytes, dtype=np.uint8))
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
            latency[label] = {"bytes": nbytes, "median_us": samples[49], "p99_us": samples[98], "min_us": samples[0]}
            log(f"ray get latency {label}: median {samples[49]:.1f} us, p99 {samples[98]:.1f} us")
        results["get_latency_us"] = latency
    finally:
        ray.shutdown()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=10.0, help="seconds Ray's timeit sleeps first (Ray: 10)")
    parser.add_argument("--only", default=None, help="Ray's TESTS_TO_RUN: run the workloads whose name contains this")
    parser.add_argument("--no-extras", action="store_true")
    parser.add_argument("--quick", action="store_true", help="extras: 128 MiB instead of 1 GiB")
    args = parser.parse_args()
    if args.only:
        os.environ["TESTS_TO_RUN"] = args.only

    result = {"measured": False, "python": platform.python_version(), "timeit_sleep_s": args.sleep}
    try:
        import numpy as np
        import ray
        from ray._private import ray_microbenchmark_helpers as helpers
    except Exception as error:  # noqa: BLE001
        result["error"] = f"cannot import ray/numpy: {error!r}"
        print(json.dumps(result))
        return 1
    result["ray_version"] = ray.__version__
    result["numpy_version"] = np.__version__
    result["harness"] = "ray._private.ray_microbenchmark_helpers.timeit"
    results = {}
    result["results"] = results
    started = time.time()
    try:
        ray_perf = import_ray_perf(result)
        import ray._raylet

        result["optimized_build"] = bool(getattr(ray._raylet, "OPTIMIZED", True))
        timeit = recording_timeit(helpers.timeit, helpers, results, args.sleep)
        ray_perf.timeit = timeit
        result["workloads"] = "ray._private.ray_perf.main() (`ray microbenchmark`), unchanged"
        with contextlib.redirect_stdout(sys.stderr):
            ray_perf.main()
            if not args.no_extras:
                extras(ray, np, timeit, results, args.quick)
        result["measured"] = True
    except Exception as error:  # noqa: BLE001
        result["error"] = f"{error!r}"
        result["traceback"] = traceback.format_exc()
        with contextlib.redirect_stdout(sys.stderr):
            ray.shutdown()
    result["seconds"] = time.time() - started
    print(json.dumps(result))
    return 0 if result["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
