"""The table for bench/run_cluster.sh: per workload, ours on Node, Deno and Bun (3 nodes of one
machine) beside Ray 2.60 (a 3-raylet ray.cluster_utils.Cluster) measured in the same run, and
the ratios; printed as Markdown and written with the raw runs to OUT.json and OUT.md.

    python3 bench/report_cluster.py WORK_DIR OUT_PREFIX FAILURES

Figures: the median over rounds (and runs), with the range of every round in parentheses.
"ours/Ray" is always "how many times better": tasks/s over Ray's tasks/s; for times, Ray's time
over ours.
"""

import glob
import json
import os
import statistics
import sys

RUNTIMES = ["node", "deno", "bun"]


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as error:
        return {"error": str(error)}


def f2(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def figures(runs, pick):
    """Every round of every run that has the workload: (median, min, max), or None."""
    values = []
    for run in runs:
        try:
            got = pick(run)
        except (KeyError, TypeError):
            continue
        values.extend(got if isinstance(got, list) else [got])
    return (statistics.median(values), min(values), max(values)) if values else None


def cell(m):
    if m is None:
        return "—"
    return f2(m[0]) if m[1] == m[2] else f"{f2(m[0])} ({f2(m[1])}–{f2(m[2])})"


def ratio(ours, ray, higher_is_better):
    if ours is None or ray is None or ours[0] == 0 or ray[0] == 0:
        return "—"
    return f"{(ours[0] / ray[0] if higher_is_better else ray[0] / ours[0]):.2f}×"


def main():
    work, out, failures = sys.argv[1:4]
    runs = {os.path.basename(p)[:-5]: load(p) for p in sorted(glob.glob(os.path.join(work, "*.json")))}
    machine = runs.pop("machine", {})
    by_runtime = {name: [r for key, r in runs.items() if key.startswith(f"cluster-{name}-") and "error" not in r] for name in RUNTIMES}
    ray_runs = [r for key, r in runs.items() if key.startswith("ray-") and "error" not in r]
    errors = {key: r["error"] for key, r in runs.items() if "error" in r}
    any_run = next((r for rs in [*by_runtime.values(), ray_runs] for r in rs), {})
    mr = any_run.get("mapreduce", {})
    mr_name = f"map-reduce: {mr.get('maps', '?')} maps × {mr.get('map_bytes', 0) // 1048576} MiB, {mr.get('reducers', '?')} reducers reading all (s)"
    lineage_mib = any_run.get("lineage", {}).get("bytes", 0) // 1048576
    workloads = [
        (f"tasks/s: {any_run.get('tasks', {}).get('count', '?')} trivial tasks SPREAD, submitted then gathered", lambda r: r["tasks"]["per_s"]["rounds"], True),
        (mr_name, lambda r: r["mapreduce"]["wall_s"]["rounds"], False),
        (f"lineage: get of a lost {lineage_mib} MiB result until made again (s)", lambda r: r["lineage"]["seconds"], False),
    ]
    header = "| workload | " + " | ".join(RUNTIMES) + " | Ray 2.60 | " + " | ".join(f"{n}/Ray" for n in RUNTIMES) + " |"
    lines = [
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, {machine.get('ram_gib', '?')} GiB RAM, {machine.get('virtualization', '?')};"
        f" started {machine.get('date', '?')}; load average {machine.get('load_before', '?')} before, {machine.get('load_after', '?')} after"
        f" (1-min load {machine.get('load_1min_range')} during); library {machine.get('library', {}).get('commit', '?')}; {failures} failure(s).",
        "",
        "Ours: bench/cluster_bench.ts, a driver attached to the first of 3 nodes (`objstore start`, 1 worker, one store each) of"
        " this machine, one Redis. Ray: bench/ray_cluster.py, a head and 2 nodes of `ray.cluster_utils.Cluster`, 1 CPU each,"
        " driver on the head. Ratios: how many times better ours is (tasks/s over Ray's; Ray's time over ours).",
        "",
        header,
        "|" + "---|" * (2 + 2 * len(RUNTIMES)),
    ]
    for name, pick, higher in workloads:
        ours = {n: figures(by_runtime[n], pick) for n in RUNTIMES}
        ray = figures(ray_runs, pick)
        lines.append(f"| {name} | " + " | ".join(cell(ours[n]) for n in RUNTIMES) + f" | {cell(ray)} | "
                     + " | ".join(ratio(ours[n], ray, higher) for n in RUNTIMES) + " |")
    where = sorted({f"{r.get('runtime')}: {r['lineage']['made_again_on']}" for rs in [*by_runtime.values(), ray_runs] for r in rs if "lineage" in r})
    lines += ["", "Lost result made again on: " + ("; ".join(where) or "—") + "."]
    lines += ["Our lineage time includes noticing the node's death (heartbeat expiry, 3 s by design) unless a failed pull"
              " showed it first; Ray's includes its GCS health checks."]
    if errors:
        lines += ["", "Failures:"] + [f"- {key}: {str(message)[-300:]}" for key, message in errors.items()]
    text = "\n".join(lines)
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    with open(out + ".json", "w") as f:
        json.dump({"machine": machine, "failures": int(failures), "runs": runs}, f, indent=1)
    print(f"\nwritten: {out}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
