"""Tables for bench/run_transfer.sh: per runtime, pulls between two stores against the TCP
loopback anchor measured just before that runtime's run, and against Ray 2.60; printed as
Markdown and written with the raw runs to OUT.json and OUT.md.

    python3 bench/report_transfer.py WORK_DIR OUT_PREFIX STARTED LOAD_BEFORE FAILURES

Figures: the median over rounds (and runs), with the range of every round in parentheses.
"ours/Ray" is a ratio of speeds: for the broadcast, Ray's time over ours.
"""

import glob
import re
import json
import os
import platform
import statistics
import sys


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as error:
        return {"error": str(error)}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return f"{cpu}, {os.cpu_count()} CPUs, {mem / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}"


def f2(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def merged(spreads):
    """Median of every round of several runs, and their range."""
    rounds = [r for s in spreads for r in s["rounds"]]
    return statistics.median(rounds), min(rounds), max(rounds)


def cell(m):
    return f"{f2(m[0])} ({f2(m[1])}–{f2(m[2])})"


def main():
    work, out, started, load_before, failures = sys.argv[1:6]
    runs = {os.path.basename(p)[:-5]: load(p) for p in sorted(glob.glob(os.path.join(work, "*.json")))}
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    ray = runs.get("ray-1", {})
    ray_ok = "error" not in ray and "pull" in ray
    ray_anchor = runs.get("anchor-ray-1", {})
    lines = [
        f"Machine: {machine()}. Started {started}; load average {load_before} before, {load_after} after; {failures} failure(s).",
        "",
        "Anchor: bench/tcp_anchor.py, raw TCP over 127.0.0.1 between two processes, memory to memory (4 MiB `sendall`s"
        " from a written buffer, `recv_into` a touched buffer of the object's size), 3 times just before each runtime's run."
        " Ours: bench/transfer_bench.ts, the source store served by a second process, pulled by this one with"
        " `TransferEndpoint.pull` into a warm store. GB/s = 10^9 B/s.",
    ]
    if ray_ok:
        lines.append(f"Ray {ray['ray_version']}: bench/ray_transfer.py, ray.cluster_utils.Cluster on 127.0.0.1; anchor before it: "
                     f"{cell(merged([ray_anchor['gb_per_s']]))} GB/s, so Ray's pull is "
                     f"{ray['pull']['gb_per_s']['median'] / ray_anchor['gb_per_s']['median']:.2f} of its anchor.")
    for runtime in ("node", "deno", "bun", "deno-quic"):
        def of(prefix):  # "deno-1" is Deno's first run; "deno-quic-1" is not
            return [k for k in sorted(runs) if re.fullmatch(f"{prefix}{runtime}-\\d+", k)]
        mine = [runs[k] for k in of("") if "error" not in runs[k]]
        anchors = [runs[k]["gb_per_s"] for k in of("anchor-") if "error" not in runs[k]]
        failed = [k for k in of("") if "error" in runs[k]]
        if not mine:
            if failed:
                lines += ["", f"#### {runtime}: failed"]
            continue
        anchor = merged(anchors) if anchors else None
        lines += ["", f"#### {runtime} {mine[0]['runtime_version']} ({len(mine)} run(s); load {mine[0]['load_before']} at the start)", ""]
        lines += ["| workload | ours | anchor GB/s | ours/anchor | Ray | ours/Ray |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        size = mine[0]["pull"][0]["bytes"] // 2**20
        for i, row in enumerate(mine[0]["pull"]):
            m = merged([run["pull"][i]["gb_per_s"] for run in mine])
            ray_m = merged([ray["pull"]["gb_per_s"]]) if ray_ok else None
            lines.append(f"| pull {size} MiB, {row['connections']} connection(s), GB/s | {cell(m)} | "
                         f"{cell(anchor) if anchor else ''} | {m[0] / anchor[0]:.2f} | "
                         f"{cell(ray_m) if ray_m else ''} | {f'{m[0] / ray_m[0]:.2f}' if ray_m else ''} |")
        cold = [c for run in mine for c in run["cold_gb_per_s"]]
        lines.append(f"| first pull into untouched pages, 4 connections, GB/s | {f2(statistics.median(cold))} ({f2(min(cold))}–{f2(max(cold))}) | | "
                     f"{statistics.median(cold) / anchor[0]:.2f} | | |")
        broadcasts = [run["broadcast"] for run in mine if run.get("broadcast")]  # none over QUIC
        at_once = merged([b["at_once_s"] for b in broadcasts]) if broadcasts else None
        copies = merged([b["with_copies_s"] for b in broadcasts]) if broadcasts else None
        ray_b = merged([ray["broadcast"]["wall_s"]]) if ray_ok else None
        bytes_b = broadcasts[0]["bytes"] if broadcasts else 0
        for name, m in (("broadcast to 3, all from the source, s", at_once), ("broadcast to 3, one first, then two from [source, copy], s", copies)) if broadcasts else ():
            lines.append(f"| {name} | {cell(m)} | | {3 * bytes_b / 1e9 / m[0] / anchor[0]:.2f} (3 × size / time / anchor) | "
                         f"{cell(ray_b) if ray_b else ''} | {f'{ray_b[0] / m[0]:.2f}' if ray_b else ''} |")
        ray_small = {row["in_flight"]: row["per_s"] for row in ray.get("small", [])} if ray_ok else {}
        for i, row in enumerate(mine[0]["small"]):
            values = [run["small"][i]["per_s"] for run in mine]
            m = (statistics.median(values), min(values), max(values))
            theirs = ray_small.get(row["in_flight"])
            failed = sum(run["small"][i].get("failed", 0) for run in mine)
            note = f" ({failed} of {row['count'] * len(mine)} failed)" if failed else ""
            lines.append(f"| 1 KiB pulls, {row['in_flight']} in flight, per s{note} | {cell(m)} | | | {f2(theirs) if theirs else ''} | "
                         f"{f'{m[0] / theirs:.2f}' if theirs else ''} |")
        cpu = mine[0]["pull"]
        lines.append("")
        lines.append("CPU s per GB pulled (receiver / source process), by connections: " +
                     ", ".join(f"{r['connections']}: {r['receiver_cpu_s_per_gb']:.2f} / {r['source_cpu_s_per_gb']:.2f}" for r in cpu) +
                     "; per small pull µs (receiver / source): " +
                     ", ".join(f"{r['in_flight']}: {r['receiver_cpu_us_per_pull']:.0f} / {r['source_cpu_us_per_pull']:.0f}" for r in mine[0]["small"]) + ".")
    text = "\n".join(lines)
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    with open(out + ".json", "w") as f:
        json.dump({"started": started, "machine": machine(), "load_before": load_before, "load_after": load_after,
                   "failures": int(failures), "runs": runs, "summary": lines}, f, indent=1)


if __name__ == "__main__":
    main()
