"""Ray 2.60's side of bench/put_bench.ts, for bench/run_puts.sh:

    .tools/ray-venv/bin/python bench/ray_puts.py [--quick] [--gets-only] [--default-store]

- put: `ray.put(arr)` in a loop, the ref dropped at once (as ray_perf does), for numpy arrays of
  the kinds put_bench.ts puts (int64 for BigInt64Array, float64, uint8 for Uint8Array and
  ArrayBuffer, and a float64 slice starting at element 1001 of a larger array) and the same
  sizes; every page of the source written first (random words). MB/s = 10^6 B/s.
- memcpy: `np.copyto` of the same bytes between two warm uint8 arrays, before and after the
  puts of each size.
- first get: `ray.put(arr)` (off the clock), then the first `ray.get(ref)` timed.

Same sizes and timing as put_bench.ts: 0.25 s warm-up, 3 rounds of >= 0.5 s with >= 2 calls
(--quick: 0.03 s, 3 x 0.03 s). `ray.init(num_cpus=1, object_store_memory=2.5 GiB)`. Progress goes to
stderr; stdout gets one JSON line.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import ray

MIB = 1024 * 1024
KIB = 1024
SUBARRAY_ELEMENTS = 1001


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summarize(rounds):
    return {"mean": statistics.fmean(rounds), "std": statistics.pstdev(rounds), "rounds": rounds}


def mb_per_s(fn, nbytes, warmup_s, round_s, rounds=3):
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        fn()
    out = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < round_s:
            fn()
            calls += 1
        out.append(calls * nbytes / (time.perf_counter() - start) / 1e6)
    return summarize(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gets-only", action="store_true", help="only the first gets (the puts take minutes)")
    parser.add_argument("--default-store", action="store_true", help="Ray's default object store (30 %% of RAM)")
    args = parser.parse_args()
    quick = args.quick
    put_sizes = [] if args.gets_only else [KIB, MIB, 32 * MIB] if quick else [KIB, 64 * KIB, MIB, 16 * MIB, 128 * MIB, 800 * MIB]
    get_sizes = [KIB, MIB, 64 * MIB] if quick else [KIB, 64 * KIB, MIB, 16 * MIB, 256 * MIB, 1024 * MIB]
    warmup_s, round_s = (0.03, 0.03) if quick else (0.25, 0.5)
    store_bytes = 256 * MIB if quick else 2560 * MIB
    load_before = loadavg()
    sizing = {} if args.default_store else {"object_store_memory": store_bytes}
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", **sizing)

    largest = put_sizes[-1] if put_sizes else KIB
    raw = np.random.default_rng(1).integers(0, 2**32, size=(largest + 8 * SUBARRAY_ELEMENTS) // 4, dtype=np.uint32)
    buffer = raw.view(np.uint8)
    copy_to = np.empty_like(buffer)
    np.copyto(copy_to, buffer)
    kinds = {
        "BigInt64Array": lambda n: buffer[:n].view(np.int64),
        "Float64Array": lambda n: buffer[:n].view(np.float64),
        "Uint8Array": lambda n: buffer[:n],
        "Float64Array subarray at byte 8008": lambda n: buffer.view(np.float64)[SUBARRAY_ELEMENTS : SUBARRAY_ELEMENTS + n // 8],
    }
    puts = []
    for nbytes in put_sizes:
        src, dst = buffer[:nbytes], copy_to[:nbytes]
        before = mb_per_s(lambda: np.copyto(dst, src), nbytes, warmup_s, round_s)
        rows = []
        for kind, make in kinds.items():
            arr = make(nbytes)
            assert arr.nbytes == nbytes
            rows.append((kind, mb_per_s(lambda: ray.put(arr), nbytes, warmup_s, round_s)))
        after = mb_per_s(lambda: np.copyto(dst, src), nbytes, warmup_s, round_s)
        memcpy_rounds = before["rounds"] + after["rounds"]
        memcpy = statistics.fmean(memcpy_rounds)
        log(f"{nbytes} B: np.copyto {memcpy:.0f} MB/s; " + ", ".join(f"{k} {r['mean']:.0f} ({r['mean'] / memcpy:.2f})" for k, r in rows))
        for kind, rate in rows:
            puts.append({"kind": kind, "bytes": nbytes, "put_mb_per_s": rate, "memcpy_mb_per_s": memcpy,
                         "memcpy_rounds": memcpy_rounds, "ratio": rate["mean"] / memcpy})

    first_gets = []
    for nbytes in get_sizes:
        arr = np.ones(nbytes, dtype=np.uint8)
        samples = (5 if quick else 9) if nbytes >= 64 * MIB else (15 if quick else 41)
        times = []
        for _ in range(samples):
            ref = ray.put(arr)
            t0 = time.perf_counter()
            view = ray.get(ref)
            times.append((time.perf_counter() - t0) * 1e6)
            assert view.nbytes == nbytes and view[0] == 1
            del view, ref
        ordered = sorted(times)
        row = {"bytes": nbytes, "samples": samples, "median_us": ordered[len(ordered) // 2], "min_us": ordered[0],
               "max_us": ordered[-1], "all_us": times}
        log(f"first get {nbytes} B: median {row['median_us']:.1f} us (min {row['min_us']:.1f}, max {row['max_us']:.1f})")
        first_gets.append(row)
    if args.default_store:
        store_bytes = int(ray.cluster_resources().get("object_store_memory", 0))
    ray.shutdown()
    print(json.dumps({"runtime": "ray", "runtime_version": f"ray {ray.__version__}, numpy {np.__version__}", "quick": quick,
                      "store_bytes": store_bytes, "harness": {"warmup_s": warmup_s, "rounds": 3, "round_s": round_s},
                      "load_before": load_before, "load_after": loadavg(), "puts": puts, "first_gets": first_gets}))


if __name__ == "__main__":
    main()
