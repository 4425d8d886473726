"""Tables for bench/run_puts.sh: one per runtime (puts against memcpy and Ray, first gets),
printed as Markdown and written with the raw runs to OUT.json and OUT.md.

    python3 bench/report_puts.py WORK_DIR OUT_PREFIX STARTED LOAD_BEFORE FAILURES
"""

import json
import os
import platform
import sys

MIB = 1024 * 1024


def size_label(nbytes):
    if nbytes >= MIB:
        return f"{nbytes // MIB} MiB"
    return f"{nbytes // 1024} KiB"


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}" if x >= 1 else f"{x:.3g}"


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


def main():
    work, out, started, load_before, failures = sys.argv[1:6]
    runs = {name: load(os.path.join(work, f"{name}.json")) for name in ("limits", "node", "deno", "bun", "ray")
            if os.path.exists(os.path.join(work, f"{name}.json"))}
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    machine_memcpy = runs.get("limits", {}).get("memcpy_gb_per_s", {}).get("mean")
    ray = runs.get("ray", {})
    ray_puts = {(r["kind"], r["bytes"]): r for r in ray.get("puts", [])}
    ray_gets = {r["bytes"]: r for r in ray.get("first_gets", [])}
    lines = [
        f"Machine: {machine()}. Started {started}; load average {load_before} before, {load_after} after; {failures} failure(s).",
        "",
        f"Machine memcpy (bench/limits.py: 800 MiB, one C memcpy, Ray's timeit): "
        + (f"{machine_memcpy:.2f} GB/s." if machine_memcpy else "not measured."),
        "MB/s = 10^6 B/s. \"of memcpy\": the put's rate over `TypedArray.set` of the same bytes in the same process,"
        " timed just before and after (Ray: over `np.copyto` in its process). Ray puts numpy arrays"
        " (int64, float64, uint8; the subarray is a float64 slice at element 1001). \"of machine memcpy\":"
        " over the 800 MiB memcpy of bench/limits.py, for sizes from 64 MiB.",
    ]
    for runtime in ("node", "deno", "bun"):
        run = runs.get(runtime)
        if run is None:
            continue
        lines += ["", f"#### {runtime} {run.get('runtime_version', '')}", ""]
        if "error" in run:
            lines.append(f"failed: {run['error']}")
            continue
        lines += ["| put + free | size | ours MB/s | memcpy MB/s | of memcpy | of machine memcpy | Ray MB/s | Ray of its memcpy | ours/Ray |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in run["puts"]:
            ours = row["put_mb_per_s"]["mean"]
            theirs = ray_puts.get((row["kind"], row["bytes"]))
            # The machine's memcpy is of 800 MiB: a yardstick for sizes that do not fit in a cache.
            machine_ratio = f"{ours / (machine_memcpy * 1000):.2f}" if machine_memcpy and row["bytes"] >= 64 * MIB else ""
            ray_cols = (f"{fmt(theirs['put_mb_per_s']['mean'])} | {theirs['ratio']:.2f} | {ours / theirs['put_mb_per_s']['mean']:.2f}×"
                        if theirs else " | | ")
            lines.append(f"| {row['kind']} | {size_label(row['bytes'])} | {fmt(ours)} | {fmt(row['memcpy_mb_per_s'])} | "
                         f"{row['ratio']:.2f} | {machine_ratio} | {ray_cols} |")
        lines += ["", "| first get | ours median µs (min–max) | Ray median µs (min–max) | Ray/ours |", "| ---: | ---: | ---: | ---: |"]
        for row in run["first_gets"]:
            theirs = ray_gets.get(row["bytes"])
            ray_cols = (f"{theirs['median_us']:.0f} ({theirs['min_us']:.0f}–{theirs['max_us']:.0f}) | {theirs['median_us'] / row['median_us']:.2f}×"
                        if theirs else " | ")
            lines.append(f"| {size_label(row['bytes'])} | {row['median_us']:.1f} ({row['min_us']:.1f}–{row['max_us']:.0f}) | {ray_cols} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump({"started": started, "load_before": load_before, "load_after": load_after, "machine": machine(),
                   "failures": int(failures), "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
