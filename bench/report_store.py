"""Merges the runs of bench/run_store.sh into one JSON file and prints Markdown tables.

    python3 bench/report_store.py OUT.json MACHINE.json RAY.json|- RUNS.json...
    python3 bench/report_store.py --from bench/results/<date>-store.json   # re-render (rewrites it)

Each RUNS file is one JSON line of bench/store_bench.ts; several runs of one runtime are
combined by the median of each figure (with min-max shown). Ratios are ours/Ray for rates,
Ray/ours for latencies (so > 1 always favours ours), and ours/memcpy for put bandwidth.
"""

import json
import statistics
import sys

BIG_BYTES = 838_860_800

PUBLISHED = {  # docs: /work/shared/research/ray-anchors.md §1.1, m5.16xlarge, Ray 2.x
    "single_client_put_calls_Plasma_Store": 5173,
    "single_client_get_calls_Plasma_Store": 10620,
    "single_client_put_gigabytes": 19.86 / 0.8 * BIG_BYTES / 1e9,
    "single_client_get_object_containing_10k_refs": 13.37,
}


def load(path):
    """A JSON file, or the last line of a log whose last line is JSON."""
    with open(path) as f:
        text = f.read().strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    if isinstance(d, dict):
        return d.get("mean") if "mean" in d else None
    return d


def fmt(x, unit=""):
    if x is None:
        return "–"
    if abs(x) >= 1e6:
        s = f"{x / 1e6:.2f} M"
    elif abs(x) >= 1e4:
        s = f"{x / 1e3:.0f} k"
    elif abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return (s + unit).replace("  ", " ")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def median_of(runs, *keys):
    values = [v for v in (dig(r, *keys) for r in runs) if isinstance(v, (int, float))]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def main():
    if sys.argv[1] == "--from":
        # Re-renders the tables of a merged results file (bench/results/<date>-store.json).
        merged_in = load(sys.argv[2])
        out_path = sys.argv[2]  # rewritten in place (same runs, goals re-read)
        machine = merged_in["machine"]
        ray = merged_in.get("ray") or {}
        ray_path = "-" if machine.get("quick") else "merged"
        runs = {k: v["runs"] for k, v in merged_in["runtimes"].items()}
    else:
        out_path, machine_path, ray_path, *run_paths = sys.argv[1:]
        machine = load(machine_path)
        ray = load(ray_path) if ray_path != "-" else {}
        runs = {}
        for p in run_paths:
            try:
                r = load(p)
            except Exception as error:  # noqa: BLE001
                r = {"error": f"{p}: {error!r}"}
            runs.setdefault(r.get("runtime", p), []).append(r)

    ray_measured = bool(ray.get("measured"))

    def ray_fig(key, field="mean"):
        """Ray's figure: the median over ray_bench.py's passes (mean of the middle two when even)."""
        if not ray_measured:
            return None
        v = ray.get(key)
        if not isinstance(v, dict):
            return None
        passes = v.get("passes")
        if passes and v.get("mean"):
            scale = (v.get(field) or 0) / v["mean"]  # gb_per_s is a fixed multiple of mean
            return statistics.median(passes) * scale
        return v.get(field)

    def ray_latency(label):
        rl = ray.get("get_latency_us", {}).get(label) if ray_measured else None
        if not rl:
            return None, None
        passes = rl.get("passes")
        return (statistics.median(passes) if passes else rl.get("median_us")), rl.get("p99_us")

    merged = {"machine": machine, "ray": ray or None, "runtimes": {}}
    print(f"## TypeScript API (bench/run_store.sh) — {machine.get('date', '')}\n")
    print(
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gib', '?')} GiB RAM, kernel {machine.get('kernel', '?')}; "
        f"load average {machine.get('load_before', '?')} before, {machine.get('load_after', '?')} after "
        f"(the machine is shared: other jobs may run)."
    )
    if machine.get("commit"):
        dirty = machine.get("uncommitted_library_files", 0)
        print(
            f"Code: commit {machine['commit']}"
            + (f" plus {dirty} uncommitted library file(s)" if dirty else "")
            + ", one snapshot of mod.ts, lib/ and libobjstore.so for every run"
            + (f" (HEAD moved to {machine['commit_at_end']} meanwhile)" if machine.get("commit_at_end") not in (None, machine["commit"]) else "")
            + "."
        )
    if ray_measured:
        print(
            f"Ray: {ray.get('ray_version')} (PyPI) + numpy {ray.get('numpy_version')}, measured here with "
            f"{ray.get('harness')}, `ray.init(num_cpus=2, object_store_memory=2 GiB)`, timeit sleep "
            f"{ray.get('timeit_sleep_s')} s; median of {ray.get('repeat', 1)} pass(es)."
        )
    elif ray_path == "-":
        print("Ray: not run (--quick); the Ray cells are Ray's published figures (m5.16xlarge), not measured here.")
    else:
        print(
            f"Ray: NOT measured here ({ray.get('error', 'no result')}); Ray columns are the published "
            "figures (m5.16xlarge), not measured here."
        )
    print()

    for runtime, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        quick = any(r.get("quick") for r in ok)
        entry = {"runs": rs, "median": {}}
        merged["runtimes"][runtime] = entry
        version = ok[0].get("runtime_version") if ok else "?"
        print(f"### {runtime} {version} — median of {len(ok)} run(s){' (QUICK: sizes shrunk)' if quick else ''}\n")
        if not ok:
            print(f"failed: {rs[0].get('error')}\n")
            continue

        def ours(*keys):
            m, lo, hi = median_of(ok, *keys)
            entry["median"][".".join(keys)] = m
            return m, lo, hi

        def cell(m, lo, hi, unit=""):
            if m is None:
                return "–"
            if len(ok) > 1 and lo is not None and hi is not None and hi > lo:
                return f"{fmt(m, unit)} ({fmt(lo)}–{fmt(hi)})"
            return fmt(m, unit)

        def ray_cell(v, unit="", published_key=None):
            if v is not None:
                return fmt(v, unit)
            if not ray_measured and published_key in PUBLISHED:
                return fmt(PUBLISHED[published_key], unit) + " (published, m5.16xlarge, not measured here)"
            return "–"

        def ray_or_published(v, published_key):
            if v is not None:
                return v
            return PUBLISHED.get(published_key) if not ray_measured else None

        rows = []
        put = ours("put_calls_per_s")
        put_keep = ours("put_keep1000_calls_per_s")
        put_gc = ours("put_gc_calls_per_s")
        get = ours("get_calls_per_s")
        r_put = ray_fig("single_client_put_calls_Plasma_Store")
        r_get = ray_fig("single_client_get_calls_Plasma_Store")
        rp = ray_or_published(r_put, "single_client_put_calls_Plasma_Store")
        rg = ray_or_published(r_get, "single_client_get_calls_Plasma_Store")
        rows.append(("put(0) calls/s, put + dispose (single_client_put_calls)", cell(*put), ray_cell(r_put, "", "single_client_put_calls_Plasma_Store"), ratio(put[0], rp)))
        rows.append(("put(0) calls/s, keep the 1000 most recent", cell(*put_keep), ray_cell(r_put, "", "single_client_put_calls_Plasma_Store"), ratio(put_keep[0], rp)))
        gc_errors = [r["put_gc_calls_per_s"]["error"] for r in ok if isinstance(r.get("put_gc_calls_per_s"), dict) and "error" in r["put_gc_calls_per_s"]]
        gc_cell = cell(*put_gc) if put_gc[0] is not None else ("fails: " + gc_errors[0].split(":")[0] + ", index full" if gc_errors else "–")
        rows.append(("put(0) calls/s, ref dropped to the GC (no dispose)", gc_cell, ray_cell(r_put, "", "single_client_put_calls_Plasma_Store"), ratio(put_gc[0], rp)))
        rows.append(("get calls/s, `await get(ref)` of a put(0) (single_client_get_calls)", cell(*get), ray_cell(r_get, "", "single_client_get_calls_Plasma_Store"), ratio(get[0], rg)))
        rows.append(("µs per put(0) + dispose (1 / calls/s)", fmt(1e6 / put[0]) if put[0] else "–", fmt(1e6 / rp) if rp else "–", ratio(rp and 1 / rp, put[0] and 1 / put[0]) if rp and put[0] else "–"))

        big = ours("put_800mib_gb_per_s")
        cold = ours("put_800mib_cold_gb_per_s")
        memcpy = ours("memcpy_gb_per_s")
        get_big = ours("get_800mib_gb_per_s")
        r_put_big = ray_fig("put_800mib_touched", "gb_per_s")
        r_put_zeros = ray_fig("single_client_put_gigabytes", "gb_per_s")
        r_memcpy = ray_fig("memcpy_800mib", "gb_per_s")
        r_get_big = ray_fig("get_800mib", "gb_per_s")
        rz = ray_or_published(r_put_zeros, "single_client_put_gigabytes")
        rows.append(("put 800 MiB Float64Array, GB/s (ratio: ours/memcpy)", cell(*big), ray_cell(r_put_big) + " touched array", ratio(big[0], memcpy[0])))
        rows.append(("  same, ours/Ray (touched array)", "", "", ratio(big[0], r_put_big)))
        rows.append(("  Ray's exact workload, np.zeros (reads the zero page)", "–", ray_cell(r_put_zeros, "", "single_client_put_gigabytes"), ratio(big[0], rz)))
        rows.append(("put 800 MiB, first (cold) put after init, GB/s", cell(*cold), "–", ratio(cold[0], memcpy[0])))
        rows.append(("memcpy 800 MiB, GB/s (ours: TypedArray.set; Ray col: numpy copyto)", cell(*memcpy), ray_cell(r_memcpy), ratio(memcpy[0], r_memcpy)))
        rows.append(("  put ÷ numpy memcpy (glibc) on this machine", "", "", ratio(big[0], r_memcpy)))
        rows.append(("get 800 MiB, GB/s nominal (bytes / time of a get)", cell(*get_big), ray_cell(r_get_big), ratio(get_big[0], r_get_big)))

        for label in ("1KiB", "1MiB", "1GiB"):
            m = ours("get_latency_us", label, "median_us")
            p = ours("get_latency_us", label, "p99_us")
            size = ok[0].get("get_latency_us", {}).get(label, {}).get("bytes")
            r_med, r_p99 = ray_latency(label)
            name = label if not quick or label != "1GiB" else f"{size // (1024 * 1024)} MiB (quick)"
            rows.append((
                f"get latency {name}, µs median (p99) (ratio: Ray/ours)",
                f"{fmt(m[0])} ({fmt(p[0])})",
                f"{fmt(r_med)} ({fmt(r_p99)})" if r_med is not None else "–",
                ratio(r_med, m[0]) if r_med is not None else "–",
            ))
        big_bytes = ok[0].get("big_bytes", BIG_BYTES)
        loop_us = big_bytes / (get_big[0] * 1e9) * 1e6 if get_big[0] else None
        r_loop_us = big_bytes / (r_get_big * 1e9) * 1e6 if r_get_big else None
        entry["median"]["get_800mib_mean_us"] = loop_us
        rows.append((
            "get 800 MiB in a loop, mean µs per get (ratio: Ray/ours)",
            fmt(loop_us),
            fmt(r_loop_us),
            ratio(r_loop_us, loop_us),
        ))
        k10 = ours("get_10k_refs_per_s")
        k10_only = ours("get_10k_refs_only_per_s")
        r10 = ray_fig("single_client_get_object_containing_10k_refs")
        r10p = ray_or_published(r10, "single_client_get_object_containing_10k_refs")
        rows.append(("get of an object holding 10k refs, /s (+ dispose them, as Ray drops them)", cell(*k10), ray_cell(r10, "", "single_client_get_object_containing_10k_refs"), ratio(k10[0], r10p)))
        rows.append(("  same, get only (refs disposed off the clock)", cell(*k10_only), ray_cell(r10, "", "single_client_get_object_containing_10k_refs"), ratio(k10_only[0], r10p)))

        print("| workload | ours | Ray | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()

        goals = []
        if put[0] and rp:
            goals.append(f"put calls ≥ 100× Ray: {ratio(put[0], rp)} → {'met' if put[0] / rp >= 100 else 'MISSED'}")
        if get[0] and rg:
            goals.append(f"get calls ≥ 100× Ray: {ratio(get[0], rg)} → {'met' if get[0] / rg >= 100 else 'MISSED'}")
        if put[0]:
            us = 1e6 / put[0]
            verdict = "met" if us <= 1.0 else "not well under (1-2 µs)" if us < 2 else "MISSED"
            goals.append(f"small put well under 2 µs: {us:.2f} µs → {verdict}")
        if big[0] and memcpy[0]:
            goals.append(f"put ≥ 0.8× memcpy: {ratio(big[0], memcpy[0])} of TypedArray.set" + (f", {ratio(big[0], r_memcpy)} of numpy/glibc memcpy" if r_memcpy else "") + f" → {'met' if big[0] / memcpy[0] >= 0.8 else 'MISSED'}")
        lat_small = entry["median"].get("get_latency_us.1KiB.median_us")
        lat_big = entry["median"].get("get_latency_us.1GiB.median_us")
        if lat_small and lat_big and loop_us:
            flat = lat_big / lat_small
            loop_ok = loop_us <= max(3 * lat_small, 10)  # a loop of 800 MiB gets: ≤ 3× a 1 KiB get, or ≤ 10 µs
            goals.append(
                f"get latency flat: 1 GiB median {fmt(lat_big)} µs vs 1 KiB {fmt(lat_small)} µs ({flat:.1f}×), "
                f"800 MiB gets in a loop {fmt(loop_us)} µs each → "
                + ("met" if flat < 3 and loop_ok else "met at the median, not in a loop" if flat < 3 else "MISSED")
            )
        entry["goals"] = goals
        print("Goals: " + "; ".join(goals) + ".\n")

    if out_path is not None:
        with open(out_path, "w") as f:
            json.dump(merged, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
