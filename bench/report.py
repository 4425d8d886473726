"""Merges the raw runs of bench/run_all.sh into one JSON file and a Markdown summary.

    python3 bench/report.py WORK_DIR OUT_BASE       # writes OUT_BASE.json and OUT_BASE.md, prints the .md
    python3 bench/report.py --from OUT_BASE.json    # recomputes the tables from its raw runs, rewrites both

WORK_DIR holds what run_all.sh collected: machine.json, limits.json, native.txt (the output of
`zig build bench`), store-RUNTIME-I.json, tasks-RUNTIME-I.json, pool-RUNTIME-I.json,
burst-RUNTIME-I.json, puts-RUNTIME-I.json, place-*.json, ray.json and ray-burst.json. Several runs of one runtime combine by the median of each figure.
Ratios: ours / theirs for rates (above 1: ours is faster), theirs / ours for latencies; "of
limit" is ours / the physical limit measured in the same run.
"""

import glob
import json
import os
import re
import statistics
import sys

RUNTIMES = ["node", "deno", "bun"]
BIG_BYTES = 838_860_800
NOMINAL_GB = BIG_BYTES / 1e9 / 0.8  # Ray's "GB" (0.8 per 800 MiB put) in 10^9 bytes

# (key, label, where ours comes from, unit). Ray's key is the same unless noted; "store" reads
# bench/store_bench.ts's field, "tasks" bench/tasks_bench.ts's results.
ROWS = [
    ("single_client_put_calls_Plasma_Store", "put calls: `put(0)` + dispose", ("store", "put_calls_per_s"), "/s"),
    ("single_client_get_calls_Plasma_Store", "get calls: `get` of a `put(0)`", ("store", "get_calls_per_s"), "/s"),
    ("multi_client_put_calls_Plasma_Store", "multi-client put calls: 10 tasks × 100 `put(0)`", ("tasks", "multi_client_put_calls_Plasma_Store"), "/s"),
    ("single_client_put_gigabytes", "put 800 MiB, GB/s (Ray: `np.zeros`)", ("store", "put_800mib_gb_per_s"), "GB/s"),
    ("single_client_put_gigabytes_touched_array", "put 800 MiB, GB/s (Ray: written array)", ("store", "put_800mib_gb_per_s"), "GB/s"),
    ("multi_client_put_gigabytes", "multi-client put GB/s: 10 tasks × 10 × 80 MiB", ("tasks", "multi_client_put_gigabytes"), "GB/s"),
    ("single_client_get_800_MiB_array_GB", "get 800 MiB, GB/s nominal", ("store", "get_800mib_gb_per_s"), "GB/s"),
    ("single_client_get_object_containing_10k_refs", "get of an object holding 10k refs", ("store", "get_10k_refs_per_s"), "/s"),
    ("single_client_wait_1k_refs", "wait on 1k refs, one at a time", ("tasks", "single_client_wait_1k_refs"), "/s"),
    ("single_client_tasks_sync", "tasks sync", ("tasks", "single_client_tasks_sync"), "/s"),
    ("single_client_tasks_async", "tasks async (1000 in flight)", ("tasks", "single_client_tasks_async"), "/s"),
    ("single_client_tasks_and_get_batch", "tasks and get batch (= tasks async / 1000)", ("derived", "single_client_tasks_async", 1 / 1000), "/s"),
    ("multi_client_tasks_async", "multi-client tasks: 4 actors × 10k tasks", ("tasks", "multi_client_tasks_async"), "/s"),
    ("1_1_actor_calls_sync", "1:1 actor calls sync", ("tasks", "1_1_actor_calls_sync"), "/s"),
    ("1_1_actor_calls_async", "1:1 actor calls async", ("tasks", "1_1_actor_calls_async"), "/s"),
    ("1_1_actor_calls_concurrent", "1:1 actor calls concurrent (max_concurrency=16)", ("tasks", "1_1_actor_calls_concurrent"), "/s"),
    ("1_n_actor_calls_async", "1:n actor calls async", ("tasks", "1_n_actor_calls_async"), "/s"),
    ("n_n_actor_calls_async", "n:n actor calls async", ("tasks", "n_n_actor_calls_async"), "/s"),
    ("n_n_actor_calls_with_arg_async", "n:n actor calls with arg async", ("tasks", "n_n_actor_calls_with_arg_async"), "/s"),
    ("1_1_async_actor_calls_sync", "1:1 async-actor calls sync", ("tasks", "1_1_async_actor_calls_sync"), "/s"),
    ("1_1_async_actor_calls_async", "1:1 async-actor calls async", ("tasks", "1_1_async_actor_calls_async"), "/s"),
    ("1_1_async_actor_calls_with_args_async", "1:1 async-actor calls with args async", ("tasks", "1_1_async_actor_calls_with_args_async"), "/s"),
    ("1_n_async_actor_calls_async", "1:n async-actor calls async", None, "/s"),
    ("n_n_async_actor_calls_async", "n:n async-actor calls async", None, "/s"),
    ("placement_group_create/removal", "placement group create/removal", ("tasks", "placement_group_create/removal"), "/s"),
    ("arg_1mib_sync", "1 MiB arg, sync (ours: by ref; pools: copied)", ("tasks", "arg_1mib_sync"), "/s"),
    ("arg_1mib_async", "1 MiB arg, async (1000 in flight)", ("tasks", "arg_1mib_async"), "/s"),
]
POOL_KEYS = {"single_client_tasks_sync", "single_client_tasks_async", "arg_1mib_sync", "arg_1mib_async"}
LIMIT_OF = {  # row → (limit, label): the row as a fraction of a physical limit
    "single_client_put_gigabytes": ("memcpy", "memcpy"),
    "single_client_put_gigabytes_touched_array": ("memcpy", "memcpy"),
    "multi_client_put_gigabytes": ("memcpy", "memcpy"),
}


def load(path):
    """A JSON file, or the last JSON line of a log."""
    try:
        with open(path) as f:
            text = f.read().strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return json.loads(text.splitlines()[-1])
    except Exception as error:  # noqa: BLE001
        return {"error": f"unreadable {os.path.basename(path)}: {error!r}"}


def mean_of(v):
    if isinstance(v, dict):
        v = v.get("mean")
    return v if isinstance(v, (int, float)) else None


def stat(values):
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(x):
    if x is None:
        return "—"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.1f}k"
    if a >= 1e3:
        return f"{x / 1e3:.2f}k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(s, std=None):
    if s is None:
        return "—"
    if s["n"] > 1:
        return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"
    return fmt(s["median"]) + (f" ± {fmt(std)}" if std else "")


def ratio(a, b, digits=None):
    if a is None or b in (None, 0):
        return None
    return a / b


def rfmt(r):
    if r is None:
        return "—"
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def native_rows(text):
    """The Markdown table rows of `zig build bench`: [{workload, ours, anchor, ratio}]."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and line.startswith("|") and not set(cells[0]) <= set("-") and cells[0] != "workload":
            rows.append(dict(zip(["workload", "ours", "anchor", "ratio"], cells)))
    return rows


def gbps(text):
    m = re.search(r"([\d.]+) GB/s", text or "")
    return float(m[1]) if m else None


def build(work):
    machine = load(os.path.join(work, "machine.json"))
    limits = load(os.path.join(work, "limits.json")) if os.path.exists(os.path.join(work, "limits.json")) else None
    native_path = os.path.join(work, "native.txt")
    native_text = open(native_path).read() if os.path.exists(native_path) else None
    ray = load(os.path.join(work, "ray.json")) if os.path.exists(os.path.join(work, "ray.json")) else None
    ray_burst = load(os.path.join(work, "ray-burst.json")) if os.path.exists(os.path.join(work, "ray-burst.json")) else None

    def runs(kind):
        out = {}
        for path in sorted(glob.glob(os.path.join(work, f"{kind}-*.json"))):
            r = load(path)
            out.setdefault(r.get("runtime") or os.path.basename(path).split("-")[1], []).append(r)
        return out

    report = {
        "machine": machine,
        "limits": limits,
        "native": {"rows": native_rows(native_text), "output": native_text} if native_text is not None else None,
        "ray": ray,
        "store_runs": runs("store"),
        "tasks_runs": runs("tasks"),
        "pool_runs": runs("pool"),
        "burst_runs": runs("burst"),
        "puts_runs": runs("puts"),
        "ray_burst": ray_burst,
        "pinned_runs": [load(p) for p in sorted(glob.glob(os.path.join(work, "place-*.json")))],
    }
    report["tables"] = tables(report)
    return report


def memcpy_limit(report):
    """The best memcpy measured in the run (GB/s) and what measured it: on a shared machine each
    measurement is low by however much other load took, so the limit is the highest of them."""
    found = []
    limits = report.get("limits") or {}
    if mean_of(limits.get("memcpy_gb_per_s")):
        found.append((mean_of(limits["memcpy_gb_per_s"]), "bench/limits.py"))
    for r in (report.get("native") or {}).get("rows", []):
        if r["workload"].startswith("put ") and "cold" not in r["workload"] and gbps(r["anchor"]):
            found.append((gbps(r["anchor"]), "glibc memcpy, native bench"))
    ray_copy = mean_of(((report.get("ray") or {}).get("results") or {}).get("numpy_copyto_800_MiB_GB"))
    if ray_copy:
        found.append((ray_copy, "numpy copyto, Ray's venv"))
    for runtime, runs in report.get("store_runs", {}).items():
        for r in runs:
            if mean_of(r.get("memcpy_gb_per_s")):
                found.append((mean_of(r["memcpy_gb_per_s"]), f"TypedArray.set on {runtime}, beside the puts"))
    return max(found) if found else (None, None)


def tables(report):
    """Per runtime: rows of {key, label, ours, ray, piscina, tinypool, ratios, of_limit}."""
    ray = report.get("ray") or {}
    ray_results = ray.get("results", {}) if ray.get("measured") or ray.get("results") else {}
    limit_values = {"memcpy": memcpy_limit(report)[0]}
    out = {}
    for runtime in RUNTIMES:
        store = [r for r in report["store_runs"].get(runtime, []) if "error" not in r]
        tasks = [r for r in report["tasks_runs"].get(runtime, []) if "error" not in r]
        pools = [r for r in report["pool_runs"].get(runtime, []) if "error" not in r]
        rows = []
        for key, label, source, unit in ROWS:
            ours, std = None, None
            if source and source[0] == "store":
                ours = stat([mean_of(r.get(source[1])) for r in store])
                std = (store[0].get(source[1]) or {}).get("std") if len(store) == 1 and isinstance(store[0].get(source[1]), dict) else None
            elif source and source[0] == "tasks":
                ours = stat([mean_of(r.get("results", {}).get(source[1])) for r in tasks])
                std = (tasks[0].get("results", {}).get(source[1]) or {}).get("std") if len(tasks) == 1 else None
            elif source and source[0] == "derived":
                ours = stat([(mean_of(r.get("results", {}).get(source[1])) or 0) * source[2] or None for r in tasks])
            r = ray_results.get(key)
            ray_value = mean_of(r)
            if ray_value is not None and unit == "GB/s" and "gigabytes" in key:
                ray_value *= NOMINAL_GB  # Ray's nominal "GB" → 10^9 bytes
            row = {"key": key, "label": label, "unit": unit, "ours": ours, "ours_std": std, "ray": ray_value,
                   "ray_std": (r or {}).get("std") if r else None}
            row["ratio_vs_ray"] = ratio(ours and ours["median"], ray_value)
            if key in POOL_KEYS:
                for pool in ["piscina", "tinypool"]:
                    row[pool] = stat([mean_of(p.get(pool, {}).get("results", {}).get(key)) for p in pools])
                    row[f"ratio_vs_{pool}"] = ratio(ours and ours["median"], row[pool] and row[pool]["median"])
            if key in LIMIT_OF and ours:
                name, what = LIMIT_OF[key]
                row["of_limit"] = ratio(ours["median"], limit_values.get(name))
                row["limit"] = what
            if ours is None and ray_value is None:
                continue
            rows.append(row)
        # Latency by size: Ray / ours (above 1: ours is faster).
        for label in ["1KiB", "1MiB", "1GiB"]:
            ours = stat([r.get("get_latency_us", {}).get(label, {}).get("median_us") for r in store])
            ray_l = (ray_results.get("get_latency_us") or {}).get(label, {}).get("median_us")
            if ours or ray_l:
                rows.append({"key": f"get_latency_{label}", "label": f"get latency {label}, median µs (ratio: Ray/ours)", "unit": "µs",
                             "ours": ours, "ray": ray_l, "ratio_vs_ray": ratio(ray_l, ours and ours["median"])})
        floors = {k: stat([mean_of(r.get("floors", {}).get(k)) for r in tasks]) for k in ["pipe_pingpong_sync", "pipe_pingpong_async", "channel_pingpong_sync", "channel_pingpong_async"]}
        errors = [r.get("error") for kind in ["store_runs", "tasks_runs", "pool_runs"] for r in report[kind].get(runtime, []) if "error" in r]
        errors += [f"{k}: {v}" for r in tasks for k, v in (r.get("errors") or {}).items()]
        pool_notes = sorted({f"{pool}: {why}" for p in pools for pool in ["piscina", "tinypool"]
                             for why in list((p.get(pool, {}).get("skipped") or {}).values()) + ([p[pool]["error"].splitlines()[0]] if "error" in p.get(pool, {}) else [])})
        version = next((r.get("runtime_version") for r in store + tasks if r.get("runtime_version")), None)
        events = [r.get("overheads", {}).get("task_events") for r in tasks]
        events = [e for e in events if e]
        task_events = {"ratio": stat([e["ratio"] for e in events]), "on": stat([e["on"]["mean"] for e in events]),
                       "off": stat([e["off"]["mean"] for e in events]), "pairs": sum(e["pairs"] for e in events),
                       "ns": stat([e.get("record_ns_per_task") for e in events]), "share": stat([e.get("share_of_task") for e in events])} if events else None
        out[runtime] = {"version": version, "rows": rows, "floors": floors, "errors": errors, "pool_notes": pool_notes, "task_events": task_events,
                        "pool_versions": {pool: next((p[pool].get("version") for p in pools if pool in p), None) for pool in ["piscina", "tinypool"]},
                        "runs": len(tasks) or len(store)}
    return out


KEY_RATIOS = [  # (column, (row key, field))
    ("put calls vs Ray", ("single_client_put_calls_Plasma_Store", "ratio_vs_ray")),
    ("get calls vs Ray", ("single_client_get_calls_Plasma_Store", "ratio_vs_ray")),
    ("put 800 MiB of memcpy", ("single_client_put_gigabytes", "of_limit")),
    ("tasks sync vs Ray", ("single_client_tasks_sync", "ratio_vs_ray")),
    ("tasks async vs Ray", ("single_client_tasks_async", "ratio_vs_ray")),
    ("actor sync vs Ray", ("1_1_actor_calls_sync", "ratio_vs_ray")),
    ("actor async vs Ray", ("1_1_actor_calls_async", "ratio_vs_ray")),
    ("tasks sync vs piscina", ("single_client_tasks_sync", "ratio_vs_piscina")),
    ("tasks async vs piscina", ("single_client_tasks_async", "ratio_vs_piscina")),
    ("1 MiB arg vs piscina", ("arg_1mib_sync", "ratio_vs_piscina")),
]


def key_ratios(report):
    out = {}
    for runtime, t in report["tables"].items():
        rows = {r["key"]: r for r in t["rows"]}
        cells = []
        for _, (key, field) in KEY_RATIOS:
            v = rows.get(key, {}).get(field)
            cells.append("—" if v is None else f"{v:.2f}" if field == "of_limit" else rfmt(v))
        if any(c != "—" for c in cells):
            out[runtime] = cells
    return out


def pinned_table(report):
    """Rows of the pinned runs: runtime, workload, then per placement ours, piscina, ratio."""
    placed = {}
    for r in report.get("pinned_runs", []):
        if "placement" not in r:
            continue
        for key, v in list(r.get("results", {}).items()) + list(r.get("floors", {}).items()):
            placed[(r["runtime"], key, r["placement"], "ours")] = mean_of(v)
        for key, v in r.get("piscina", {}).get("results", {}).items():
            placed[(r["runtime"], key, r["placement"], "piscina")] = mean_of(v)
    rows = []
    for runtime in RUNTIMES:
        for key in ["pipe_pingpong_sync", "single_client_tasks_sync", "single_client_tasks_async", "1_1_actor_calls_sync", "1_1_actor_calls_async"]:
            cells = []
            for placement in ["same", "split"]:
                ours, pool = placed.get((runtime, key, placement, "ours")), placed.get((runtime, key, placement, "piscina"))
                cells += [fmt(ours), fmt(pool) if pool else "", rfmt(ratio(ours, pool)) if pool else ""]
            if any(c not in ("—", "") for c in cells):
                rows.append([runtime, key] + cells)
    return rows


BURST_ROWS = [  # (key, label): bench/burst_bench.ts and bench/ray_burst.py
    ("tasks_sync", "tasks sync (small array)"),
    ("tasks_async", "tasks async (1000 in flight)"),
    ("wait_1k_refs", "wait on 1k refs, one at a time"),
    ("actor_sync", "1:1 actor calls sync"),
    ("actor_async", "1:1 actor calls async"),
]
BURST_WORKLOADS = [("put_dropped", "put(0), ref dropped", "/s"), ("put_800mib", "put 800 MiB", "GB/s"), ("get_10k_refs", "get of an object holding 10k refs", "/s")]


def burst_tables(report):
    """Tasks after a burst: per runtime (and Ray), fresh, after and after/fresh per workload,
    the median over the runs; then ours/Ray after the burst."""
    out = {}
    sources = {runtime: [r for r in report.get("burst_runs", {}).get(runtime, []) if "error" not in r] for runtime in RUNTIMES}
    ray = report.get("ray_burst")
    if ray and ray.get("measured"):
        sources["ray"] = [ray]
    for who, runs in sources.items():
        if not runs:
            continue
        rows = []
        for key, label in BURST_ROWS:
            fresh = [mean_of((r.get("fresh") or {}).get(key)) for r in runs]
            after = [mean_of((r.get("after") or {}).get(key)) for r in runs]
            fresh = statistics.median([v for v in fresh if v]) if any(fresh) else None
            after = statistics.median([v for v in after if v]) if any(after) else None
            rows.append({"key": key, "label": label, "fresh": fresh, "after": after, "ratio": after / fresh if fresh and after else None})
        burst = {}
        for key, _, _ in BURST_WORKLOADS:
            v = [mean_of((r.get("burst") or {}).get(key)) for r in runs]
            burst[key] = statistics.median([x for x in v if x]) if any(v) else None
        out[who] = {"rows": rows, "burst": burst, "store_bytes": runs[0].get("store_bytes"), "version": runs[0].get("runtime_version") or runs[0].get("ray_version")}
    return out


def burst_markdown(report, add):
    t = burst_tables(report)
    if not t:
        return
    add("## Tasks after a burst, one process (bench/burst_bench.ts, bench/ray_burst.py)")
    add("")
    add("Fresh: the workloads right after `init`; after: the same, after `put(0)` with the ref dropped, 800 MiB puts and a get of an "
        "object holding 10k refs, in the same process (Ray: the same sequence in one driver). Goal: after/fresh ≥ 0.8.")
    add("")
    who = list(t)
    add("| workload | " + " | ".join(f"{w} fresh | {w} after | {w} after/fresh" for w in who) + " |")
    add("| --- |" + " ---: | ---: | ---: |" * len(who))
    for i, (key, label) in enumerate(BURST_ROWS):
        cells = []
        for w in who:
            r = t[w]["rows"][i]
            cells += [fmt(r["fresh"]), fmt(r["after"]), rfmt(r["ratio"])]
        add(f"| {label} | " + " | ".join(cells) + " |")
    for key, label, unit in BURST_WORKLOADS:
        cells = []
        for w in who:
            cells += [fmt(t[w]["burst"].get(key)), "", ""]
        add(f"| burst: {label} ({unit}) | " + " | ".join(cells) + " |")
    add("")
    if "ray" in t:
        add("After the burst, ours / Ray: " + "; ".join(
            f"{w}: " + ", ".join(f"{r['key']} {rfmt(r['after'] / rr['after']) if r['after'] and rr['after'] else '—'}" for r, rr in zip(t[w]["rows"], t["ray"]["rows"]))
            for w in who if w != "ray") + ".")
        add("")
    stores = ", ".join(f"{w} {t[w]['store_bytes'] / 2**30:.2f} GiB" for w in who if t[w].get("store_bytes"))
    if stores:
        add(f"Stores: {stores}.")
        add("")


def puts_markdown(report, add):
    runs = {runtime: report.get("puts_runs", {}).get(runtime, []) for runtime in RUNTIMES}
    if not any(runs.values()):
        return
    add("## put(0) with the ref dropped, in one synchronous loop (bench/many_puts.ts)")
    add("")
    add("| runtime | puts | finished | puts/s | most objects alive | RSS first → last (max), MiB | flat |")
    add("| --- | ---: | --- | ---: | ---: | --- | --- |")
    for runtime, rs in runs.items():
        for r in rs:
            if "samples" not in r:
                add(f"| {runtime} | | FAILED: {str(r.get('error'))[:200]} | | | | |")
                continue
            rss = r.get("rss_first_last_max_bytes") or [0, 0, 0]
            add(f"| {runtime} | {r['puts']:,} | {'yes' if r['finished'] else 'NO: ' + str(r.get('error'))[:120]} | {fmt(r['puts_per_s'])} "
                f"| {r.get('max_objects')} | {rss[0] / 2**20:.0f} → {rss[1] / 2**20:.0f} ({rss[2] / 2**20:.0f}) | {'yes' if r.get('flat') else 'no'} |")
    add("")


def markdown(report):
    m = report["machine"]
    lines = []
    add = lines.append
    quick = m.get("quick")
    add(f"# Benchmarks, {m.get('date')}{' (QUICK: smoke run, sizes shrunk, no Ray)' if quick else ''}")
    add("")
    add(f"- Machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('ram_gib')} GiB RAM, Linux {m.get('kernel')} ({m.get('virtualization')}), host `{m.get('host')}`")
    lr = m.get("load_1min_range")
    add(f"- Load average (1, 5, 15 min): {m.get('load_before')} before, {m.get('load_after')} after"
        + (f"; 1-min load between {lr[0]} and {lr[1]} at the steps of the run" if lr else "")
        + f" on {m.get('cpus')} CPUs (the machine is shared with other jobs: figures are lower and noisier than on an idle one)")
    lib = m.get("library", {})
    add(f"- Library: commit {lib.get('commit')}" + (f" + {lib['uncommitted_files']} uncommitted file(s) in lib/, mod.ts, zig/src" if lib.get("uncommitted_files") else "")
        + f"; {m.get('repeat')} run(s) per runtime" + (" (figures: median (min–max) of the runs' means)" if (m.get("repeat") or 1) > 1 else " (figures: mean ± std of Ray's timeit rounds)"))
    rt = m.get("runtimes") or {}
    add(f"- Runtimes: node {rt.get('node')}, {rt.get('deno')}, bun {rt.get('bun')}")
    ray = report.get("ray")
    if ray and ray.get("measured"):
        add(f"- Ray {ray.get('ray_version')} (PyPI, numpy {ray.get('numpy_version')}): {ray.get('workloads')}, harness {ray.get('harness')} "
            f"(sleep {ray.get('timeit_sleep_s')} s); Ray Client benchmark {ray.get('client_benchmark')}; {ray.get('seconds', 0) / 60:.0f} min")
    elif ray:
        add(f"- Ray: NOT measured: {str(ray.get('error'))[:300]}")
    else:
        add("- Ray: not run" + (" (--quick)" if quick else ""))
    add("- Rates are per second; GB = 10⁹ bytes (Ray's nominal \"gigabytes\" converted). Ratio = ours / theirs (above 1: ours is faster); "
        "for latencies Ray / ours. \"of limit\": ours as a fraction of the physical limit measured in this run.")
    add("")

    summary = key_ratios(report)
    if summary:
        add("## Key ratios")
        add("")
        add("| runtime | " + " | ".join(label for label, _ in KEY_RATIOS) + " |")
        add("| --- |" + " ---: |" * len(KEY_RATIOS))
        for runtime, cells in summary.items():
            add(f"| {runtime} | " + " | ".join(cells) + " |")
        add("")

    limits = report.get("limits")
    native = report.get("native")
    add("## Physical limits (same run)")
    add("")
    if limits and "error" not in limits:
        d, t = limits.get("disk", {}), limits.get("tcp_loopback", {})
        add("| limit | value | method |")
        add("| --- | ---: | --- |")
        mc = limits.get("memcpy_gb_per_s", {})
        best, best_by = memcpy_limit(report)
        add(f"| **memcpy limit: the best of the run's memcpys** | **{fmt(best)} GB/s** | {best_by}; the figures that \"of memcpy\" divides by |")
        add(f"| memcpy, 800 MiB warm | {fmt(mc.get('mean'))} ± {fmt(mc.get('std'))} GB/s | bench/limits.py: one C memcpy (Python memoryview copy), Ray's timeit |")
        if native:
            put_row = next((r for r in native["rows"] if r["workload"].startswith("put ") and "cold" not in r["workload"]), None)
            if put_row:
                add(f"| glibc memcpy (native bench) | {put_row['anchor'].split(' (')[0]} | {put_row['anchor'].split(' (', 1)[-1].rstrip(')')}, {put_row['workload'].split(':')[0]} |")
        ray_copy = mean_of(((report.get("ray") or {}).get("results") or {}).get("numpy_copyto_800_MiB_GB"))
        if ray_copy:
            add(f"| numpy copyto (Ray's venv) | {fmt(ray_copy)} GB/s | `np.copyto` of 800 MiB, Ray's timeit, between Ray's workloads |")
        for runtime, runs in report.get("store_runs", {}).items():
            v = [mean_of(r.get("memcpy_gb_per_s")) for r in runs if mean_of(r.get("memcpy_gb_per_s"))]
            if v:
                add(f"| TypedArray.set on {runtime} | {fmt(statistics.median(v))} GB/s | 800 MiB, timed before and after the puts in store_bench.ts |")
        add(f"| disk sequential write | {fmt(d.get('write_gb_per_s'))} GB/s | {d.get('method')}, {d.get('dir')} ({d.get('filesystem')}) |")
        add(f"| disk sequential read | {fmt(d.get('read_gb_per_s'))} GB/s | same file{'' if d.get('dropped_cache') else ' (page cache not dropped)'} |")
        add(f"| TCP loopback | {fmt(t.get('gb_per_s'))} GB/s | {t.get('method')} |")
        add("")
        add("Remote transfer (no network path yet) has no figure to set against the loopback limit.")
    else:
        add(f"not measured: {limits.get('error') if limits else 'step skipped'}")
    add("")

    for runtime, t in report["tables"].items():
        if not t["rows"] and not t["errors"] and not t.get("task_events"):
            continue
        pv = t["pool_versions"]
        add(f"## {runtime} {t['version'] or ''}")
        add("")
        add(f"piscina {pv.get('piscina')}, tinypool {pv.get('tinypool')}: 2 worker threads; ours: `numWorkers: 2`.")
        add("")
        add("| workload | ours | Ray | piscina | tinypool | ours/Ray | ours/piscina | of limit |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in t["rows"]:
            lim = f"{r['of_limit']:.2f} of {r['limit']}" if r.get("of_limit") else ""
            ray_cell = "—" if r.get("ray") is None else fmt(r["ray"]) + (f" ± {fmt(r['ray_std'] * (NOMINAL_GB if 'gigabytes' in r['key'] else 1))}" if r.get("ray_std") else "")
            add(f"| {r['label']} | {cell(r['ours'], r.get('ours_std'))} | {ray_cell} | {cell(r.get('piscina')) if 'piscina' in r else ''} "
                f"| {cell(r.get('tinypool')) if 'tinypool' in r else ''} | {rfmt(r.get('ratio_vs_ray'))} "
                f"| {rfmt(r.get('ratio_vs_piscina')) if 'piscina' in r else ''} | {lim} |")
        for key, label in [("pipe_pingpong_sync", "floor: bare pipe ping-pong, 1 in flight"), ("pipe_pingpong_async", "floor: bare pipe ping-pong, 1000 in flight"),
                           ("channel_pingpong_sync", "floor: bare channel ping-pong, 1 in flight"), ("channel_pingpong_async", "floor: bare channel ping-pong, 1000 in flight")]:
            if t["floors"].get(key):
                add(f"| {label} | {cell(t['floors'][key])} | | | | | | |")
        add("")
        te = t.get("task_events")
        if te and te["ratio"]:
            add(f"Task events recording (dashboard, timeline): tasks async with it on {cell(te['on'])}/s, off {cell(te['off'])}/s; "
                f"on/off = {te['ratio']['median']:.3f} (median of runs; {te['pairs']} alternating on/off pairs, each a fresh session; 1 = free)"
                + (f"; recording's own CPU per task {te['ns']['median']:.0f} ns = {100 * te['share']['median']:.2f}% of a task at the rate with it off." if te.get("share") else "."))
            add("")
        for note in t["pool_notes"]:
            add(f"- {note}")
        for e in t["errors"]:
            add(f"- **FAILED**: {str(e).strip()[:400]}")
        if t["pool_notes"] or t["errors"]:
            add("")

    burst_markdown(report, add)
    puts_markdown(report, add)

    pinned = pinned_table(report)
    if pinned:
        add("## Pinned (`--pinned`, taskset): one vCPU = every process and thread on CPU 0; two = driver (pool: main thread) on 0, the rest on 1")
        add("")
        add("| runtime | workload | one vCPU: ours | piscina | ours/piscina | two vCPUs: ours | piscina | ours/piscina |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in pinned:
            add("| " + " | ".join(row) + " |")
        add("")

    if native:
        add("## Native core (`zig build bench`)")
        add("")
        add("| workload | ours | anchor | ratio |")
        add("| --- | --- | --- | ---: |")
        for r in native["rows"]:
            add(f"| {r['workload']} | {r['ours']} | {r['anchor']} | {r['ratio']} |")
        add("")
        d = (limits or {}).get("disk", {})
        spill = [(r["workload"], gbps(r["ours"]), gbps(r["anchor"])) for r in native["rows"] if r["workload"].startswith("spill") and gbps(r["ours"])]
        if spill:
            # The disk limit: the best dd of the run (limits.py's and the native bench's own).
            best = {kind: max([v for w, _, v in spill if kind in w and v] + ([d[f"{kind}_gb_per_s"]] if d.get(f"{kind}_gb_per_s") else []))
                    for kind in ["write", "read"]}
            report.setdefault("disk_limit_gb_per_s", best)
            add(f"Spill as a fraction of the disk limit (the best dd of the run: write {fmt(best['write'])} GB/s, read {fmt(best['read'])} GB/s): "
                + "; ".join(f"{w.split(':')[0]} {g / best['write' if 'write' in w else 'read']:.2f}" for w, g, _ in spill) + ".")
            add("")

    ray = report.get("ray") or {}
    extra = sorted(set(ray.get("results", {})) - {r[0] for r in ROWS} - {"get_latency_us", "get_returns_readonly_view", "numpy_copyto_800_MiB_GB"})
    if extra:
        add("Ray workloads without a counterpart here: " + ", ".join(f"{k} {fmt(mean_of(ray['results'][k]))}" for k in extra) + ".")
        add("")
    return "\n".join(lines) + "\n"


def main():
    if sys.argv[1] == "--from":
        # Recomputes the tables of a merged file from its raw runs; rewrites it and its .md.
        out = sys.argv[2].removesuffix(".json")
        report = load(out + ".json")
        report["tables"] = tables(report)
    else:
        work, out = sys.argv[1], sys.argv[2]
        report = build(work)
    md = markdown(report)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(out + ".md", "w") as f:
        f.write(md)
    print(md, end="")


if __name__ == "__main__":
    main()
