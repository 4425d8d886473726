"""Ray's own task and actor microbenchmarks, measured on this machine, for bench/run_tasks.sh.

    .tools/ray-venv/bin/python bench/ray_tasks.py [--sleep SECONDS] [--rounds-only]

Runs, exactly as `ray microbenchmark` does (ray/_private/ray_perf.py: its `small_value` task and
its `Actor` class, num_cpus=0, imported from there when possible), through Ray's own harness
(`ray._private.ray_microbenchmark_helpers.timeit`: sleep, 1 s warm-up, 4 rounds of >= 2 s,
mean and std), on a local Ray started with num_cpus=2 (the cores here) and a 512 MiB store:

  single_client_tasks_sync   ray.get(small_value.remote())
  single_client_tasks_async  ray.get([small_value.remote() for _ in range(1000)])       x 1000
  1_1_actor_calls_sync       ray.get(a.small_value.remote())
  1_1_actor_calls_async      ray.get([a.small_value.remote() for _ in range(1000)])     x 1000

`--sleep` sets the seconds Ray's timeit sleeps before each workload (Ray: 10, "to avoid noisy
neighbours"). For each workload it also records, from /proc, the CPU time per op of the driver,
of the raylet/GCS and of the worker processes (all descendants of this process).
Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback


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
            key = "driver"
        elif name.startswith("ray::") or "default_worker" in name or name.startswith("ray::IDLE"):
            key = "workers"
        else:
            key = "ray_daemons"
        groups[key] += delta
    out = {f"{k}_cpu_us": v / 1000 / ops for k, v in groups.items()}
    out["wall_us"] = (b[0] - a[0]) * 1e6 / ops
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=10.0, help="seconds Ray's timeit sleeps first (Ray: 10)")
    args = parser.parse_args()

    result = {"measured": False, "python": platform.python_version(), "timeit_sleep_s": args.sleep}
    try:
        import numpy as np  # noqa: F401  (Ray's timeit needs it)
        import ray
    except Exception as error:  # noqa: BLE001
        result["error"] = f"cannot import ray/numpy: {error!r}"
        print(json.dumps(result))
        return 1
    result["ray_version"] = ray.__version__
    try:
        from ray._private.ray_microbenchmark_helpers import timeit

        result["harness"] = "ray._private.ray_microbenchmark_helpers.timeit"
    except Exception as error:  # noqa: BLE001
        timeit = own_timeit
        result["harness"] = f"copy of Ray's timeit (import failed: {error!r})"
    try:
        try:
            from ray._private.ray_perf import Actor, small_value

            result["workloads"] = "ray._private.ray_perf.small_value and Actor"
        except ModuleNotFoundError as missing:
            # ray_perf imports the Ray Client benchmark, which needs grpc (ray[client]); the
            # workloads used here do not. Stand in an empty module for it and import again.
            import types

            stub = types.ModuleType("ray._private.ray_client_microbenchmark")
            stub.main = None
            sys.modules["ray._private.ray_client_microbenchmark"] = stub
            from ray._private.ray_perf import Actor, small_value

            result["workloads"] = f"ray._private.ray_perf.small_value and Actor (its Ray Client import stubbed: {missing!r})"
    except Exception as error:  # noqa: BLE001

        @ray.remote
        def small_value():
            return b"ok"

        @ray.remote(num_cpus=0)
        class Actor:
            def small_value(self):
                return b"ok"

        result["workloads"] = f"copies of ray_perf's small_value and Actor (import failed: {error!r})"

    try:
        with contextlib.redirect_stdout(sys.stderr):
            ray.init(num_cpus=2, object_store_memory=512 * 1024**2, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001
        result["error"] = f"ray.init failed: {error!r}"
        result["traceback"] = traceback.format_exc()
        print(json.dumps(result))
        return 1

    results = {}
    result["results"] = results

    def run(key, name, fn, multiplier=1):
        # The split covers the sleep-free part: warm-up and rounds, i.e. timeit minus its sleep.
        with contextlib.redirect_stdout(sys.stderr):
            time.sleep(args.sleep)
            calls = [0]

            def counted():
                calls[0] += 1
                fn()

            before = sample()
            out = timeit(name, counted, multiplier, warmup_time_sec=0)
            after = sample()
        _, mean, std = out[0]
        results[key] = {"mean": float(mean), "std": float(std), "split": split_of(before, after, calls[0] * multiplier)}
        log(f"   split per op: {json.dumps({k: round(v, 1) for k, v in results[key]['split'].items()})}")

    try:
        import ray._raylet

        result["optimized_build"] = bool(getattr(ray._raylet, "OPTIMIZED", True))
        run("single_client_tasks_sync", "single client tasks sync", lambda: ray.get(small_value.remote()))
        run(
            "single_client_tasks_async",
            "single client tasks async",
            lambda: ray.get([small_value.remote() for _ in range(1000)]),
            1000,
        )
        a = Actor.remote()
        run("1_1_actor_calls_sync", "1:1 actor calls sync", lambda: ray.get(a.small_value.remote()))
        a = Actor.remote()
        run(
            "1_1_actor_calls_async",
            "1:1 actor calls async",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]),
            1000,
        )
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
