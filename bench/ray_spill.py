"""Ray's side of the spilling benchmark (bench/spill_bench.ts), for bench/run_spill.sh.

    .tools/ray-venv/bin/python bench/ray_spill.py [--quick] [--dir DIR] [--total-mib N]
        [--store-mib N] [--object-mib N] [--only dd,held,freed]

"Put and get more than fits", as Ray's own spill benchmark does it (a script beside Ray's
C++-threadpool spilling work: `ray.put` N `np.random.rand` arrays into a small store, wait
until they have spilled, then `ray.get` each in put order): 8 GiB as 128 uint64 arrays of
64 MiB through a 1 GiB store (`ray.init(num_cpus=2, object_store_memory=1 GiB,
_system_config={"object_spilling_config": filesystem, directory on the same disk})`, Ray's
defaults otherwise). The same two passes as ours, each in a fresh `ray.init`:

  held   put all (refs kept), wait until spilling settles, sync + drop the page cache, get every
         object in put order with all refs held, then drop them all.
  freed  the same, but each ref is dropped right after its get.

Each array is one source array with 16 uint32 words stamped with the object's index before its
put (the same positions and values as spill_bench.ts); each get checks them. Spilled and restored
bytes are Ray's own (`ray memory --stats-only`, through `memory_summary`). Ray's filesystem spill
does not fsync: the `sync` before dropping the cache, which flushes what Ray left dirty, is timed
and reported apart (`sync_s`). Machine-wide block-device traffic (/proc/diskstats of the disk
under DIR) and the CPU time of the driver and of Ray's processes (its descendants) are recorded
per phase. dd (write, conv=fdatasync; read after dropping the cache) of the same size in the same
directory runs before and after, as in spill_bench.ts.

Progress goes to stderr; stdout gets one JSON line. GB = 10^9 bytes.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback

MIB = 1024 * 1024
STAMPS = 16


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def gb(x):
    return f"{x / 1e9:.2f}"


def rate(nbytes, seconds):
    return nbytes / seconds / 1e9 if seconds > 0 else 0.0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ------------------------------------------------------------------------------------ the disk


def fs_type(path):
    for cmd in (["findmnt", "-no", "FSTYPE", "-T", path], ["stat", "-f", "-c", "%T", path]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
            if out:
                return out.splitlines()[0]
        except Exception:  # noqa: BLE001
            pass
    return "unknown"


def block_device(path):
    """The diskstats name of the device under path (vda for /dev/vda), or None."""
    try:
        src = subprocess.run(["findmnt", "-no", "SOURCE", "-T", path], capture_output=True, text=True, check=True).stdout.strip()
        return os.path.basename(src.splitlines()[0]) if src else None
    except Exception:  # noqa: BLE001
        return None


def diskstats(device):
    """(bytes read, bytes written) by the device since boot, or (0, 0)."""
    if device is None:
        return (0, 0)
    with open("/proc/diskstats") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 9 and parts[2] == device:
                return (int(parts[5]) * 512, int(parts[9]) * 512)
    return (0, 0)


def drop_page_cache():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def dd(mode, path, nbytes):
    if mode == "write":
        args = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={round(nbytes / MIB)}", "conv=fdatasync"]
    else:
        args = ["dd", f"if={path}", "of=/dev/null", "bs=1M"]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    seen = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr}")
    m = re.search(r"copied, ([\d.]+) s", r.stderr)
    seconds = float(m.group(1)) if m else seen
    return {"seconds": seconds, "gb_per_s": rate(nbytes, seconds)}


def dd_pair(directory, nbytes, label):
    path = os.path.join(directory, "dd.tmp")
    try:
        write = dd("write", path, nbytes)
        dropped = drop_page_cache()
        read = dd("read", path, nbytes)
        log(f"dd {label}: write {write['gb_per_s']:.2f} GB/s (bs=1M conv=fdatasync, {gb(nbytes)} GB), "
            f"read {read['gb_per_s']:.2f} GB/s (page cache dropped: {'yes' if dropped else 'NO'})")
        return {"write": write, "read": read, "cache_dropped": dropped}
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# --------------------------------------------------------------------------- processes' CPU


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants_cpu(root):
    """CPU seconds of the live descendants of root (Ray's GCS, raylet, workers)."""
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, seconds = _stat(entry)
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry)] = ppid
        cpu[int(entry)] = seconds
    total = 0.0
    for pid in cpu:
        p, seen = pid, 0
        while p in parents and p != root and seen < 64:
            p, seen = parents[p], seen + 1
        if p == root and pid != root:
            total += cpu[pid]
    return total


class Sample:
    def __init__(self, device):
        self.at = time.perf_counter()
        self.cpu = _stat(os.getpid())[1]
        self.ray_cpu = descendants_cpu(os.getpid())
        self.disk = diskstats(device)


def phase(a, b):
    return {
        "seconds": b.at - a.at,
        "cpu_s": b.cpu - a.cpu,
        "ray_processes_cpu_s": b.ray_cpu - a.ray_cpu,
        "device_read_bytes": b.disk[0] - a.disk[0],
        "device_write_bytes": b.disk[1] - a.disk[1],
    }


# ------------------------------------------------------------------------------ Ray's stats


def spill_stats():
    """Ray's cumulative spill/restore figures, from `ray memory --stats-only`."""
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    out = {"spilled_bytes": 0, "spilled_objects": 0, "restored_bytes": 0, "restored_objects": 0}
    for kind in ("Spilled", "Restored"):
        m = re.search(rf"{kind} ([\d.]+) MiB, (\d+) objects", text)
        if m:
            out[f"{kind.lower()}_bytes"] = int(float(m.group(1)) * MIB)
            out[f"{kind.lower()}_objects"] = int(m.group(2))
    m = re.search(r"Plasma memory usage ([\d.]+) MiB", text)
    if m:
        out["plasma_used_bytes"] = int(float(m.group(1)) * MIB)
    return out


# ------------------------------------------------------------------------------------ a pass


def stamp_positions(object_bytes):
    words = object_bytes // 4
    return [(i * (words - 1)) // (STAMPS - 1) for i in range(STAMPS)]


def stamp_value(k, i):
    a = ((k + 1) * 0x9E3779B1) & 0xFFFFFFFF
    b = ((i + 1) * 0x85EBCA6B) & 0xFFFFFFFF
    return a ^ b


def run_pass(mode, cfg, spill_dir, device):
    import numpy as np
    import ray

    count = cfg["total_bytes"] // cfg["object_bytes"]
    total = count * cfg["object_bytes"]
    positions = stamp_positions(cfg["object_bytes"])
    source = np.arange(cfg["object_bytes"] // 8, dtype=np.uint64)  # every page written
    words = source.view(np.uint32)
    out = {
        "mode": mode,
        "total_bytes": total,
        "store_bytes": cfg["store_bytes"],
        "object_bytes": cfg["object_bytes"],
        "objects": count,
        "load_before": loadavg(),
    }
    log(f"== Ray, {mode}: {count} x {cfg['object_bytes'] // MIB} MiB = {gb(total)} GB through a "
        f"{cfg['store_bytes'] // MIB} MiB store; load {out['load_before']}")
    spill_config = json.dumps({"type": "filesystem", "params": {"directory_path": spill_dir}})
    with contextlib.redirect_stdout(sys.stderr):
        ray.init(
            num_cpus=2,
            object_store_memory=cfg["store_bytes"],
            include_dashboard=False,
            log_to_driver=False,
            _system_config={"object_spilling_config": spill_config},
        )
    refs = []
    try:
        out["object_store_memory"] = int(ray.available_resources().get("object_store_memory", 0))
        base = spill_stats()

        # --- put
        p0 = Sample(device)
        for k in range(count):
            for i, pos in enumerate(positions):
                words[pos] = stamp_value(k, i)
            refs.append(ray.put(source))
        p1 = Sample(device)
        after_put = spill_stats()
        # Until Ray's spilling settles: the spilled count stops growing (as Ray's benchmark waits).
        # The settled time is that of the last change seen.
        still, settled, p2 = 0, after_put, p1
        deadline = time.perf_counter() + 120
        while still < 5 and time.perf_counter() < deadline:
            time.sleep(0.05)
            now = spill_stats()
            still = still + 1 if now["spilled_bytes"] == settled["spilled_bytes"] else 0
            if still == 0:
                p2 = Sample(device)
            settled = now
        spilled_put = after_put["spilled_bytes"] - base["spilled_bytes"]
        spilled_settled = settled["spilled_bytes"] - base["spilled_bytes"]
        put = phase(p0, p1)
        out["put"] = {
            **put,
            "gb_per_s": rate(total, put["seconds"]),
            "spilled_bytes": spilled_put,
            "spilled_objects": after_put["spilled_objects"] - base["spilled_objects"],
            "spill_gb_per_s": rate(spilled_put, put["seconds"]),
            "settled": {**phase(p0, p2), "spilled_bytes": spilled_settled,
                        "spilled_objects": settled["spilled_objects"] - base["spilled_objects"]},
        }
        log(f"put {gb(total)} GB: {put['seconds']:.2f} s, {rate(total, put['seconds']):.2f} GB/s nominal; "
            f"spilled {gb(spilled_put)} GB ({out['put']['spilled_objects']} objects) by the last put; "
            f"{gb(spilled_settled)} GB once settled ({phase(p0, p2)['seconds']:.2f} s after the first put); "
            f"CPU driver {put['cpu_s']:.2f} s, Ray processes {put['ray_processes_cpu_s']:.2f} s")

        # --- what Ray left in the page cache unwritten, then a cold cache
        s0 = time.perf_counter()
        subprocess.run(["sync"], check=False)
        out["sync_s"] = time.perf_counter() - s0
        out["cache_dropped"] = drop_page_cache()
        log(f"sync after Ray's spilling: {out['sync_s']:.2f} s; page cache dropped: {'yes' if out['cache_dropped'] else 'NO'}")

        # --- get, in put order
        before = spill_stats()
        g0 = Sample(device)
        for k in range(count):
            arr = ray.get(refs[k])
            if arr.nbytes != cfg["object_bytes"]:
                raise RuntimeError(f"object {k}: {arr.nbytes} bytes")
            w = arr.view(np.uint32)
            for i, pos in enumerate(positions):
                if int(w[pos]) != stamp_value(k, i):
                    raise RuntimeError(f"object {k}: word {pos} is wrong after restore")
            del arr, w
            if mode == "freed":
                refs[k] = None
        g1 = Sample(device)
        after_get = spill_stats()
        get = phase(g0, g1)
        restored = after_get["restored_bytes"] - before["restored_bytes"]
        out["get"] = {
            **get,
            "gb_per_s": rate(total, get["seconds"]),
            "restored_bytes": restored,
            "restored_objects": after_get["restored_objects"] - before["restored_objects"],
            "restore_gb_per_s": rate(restored, get["seconds"]),
            "spilled_during_get_bytes": after_get["spilled_bytes"] - before["spilled_bytes"],
            "checked_words_per_object": STAMPS,
        }
        log(f"get {count} objects in put order: {get['seconds']:.2f} s, {rate(total, get['seconds']):.2f} GB/s nominal; "
            f"restored {gb(restored)} GB → {rate(restored, get['seconds']):.2f} GB/s; spilled again "
            f"{gb(out['get']['spilled_during_get_bytes'])} GB; device reads {gb(get['device_read_bytes'])} GB, "
            f"writes {gb(get['device_write_bytes'])} GB; CPU driver {get['cpu_s']:.2f} s, Ray {get['ray_processes_cpu_s']:.2f} s")
        out["ray_stats_end"] = after_get
    finally:
        del refs
        with contextlib.redirect_stdout(sys.stderr):
            ray.shutdown()
    left = 0
    for _, _, files in os.walk(spill_dir):
        left += len(files)
    out["spill_files_left_after_shutdown"] = left
    out["load_after"] = loadavg()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="256 MiB through a 128 MiB store (Ray's minimum is 75 MiB)")
    parser.add_argument("--dir", default=os.environ.get("OBJSTORE_BENCH_DIR", "/tmp"))
    parser.add_argument("--total-mib", type=int)
    parser.add_argument("--store-mib", type=int)
    parser.add_argument("--object-mib", type=int)
    parser.add_argument("--only", default="dd,held,freed")
    parser.add_argument("--allow-tmpfs", action="store_true")
    args = parser.parse_args()
    cfg = {
        "total_bytes": (args.total_mib or (256 if args.quick else 8192)) * MIB,
        "store_bytes": (args.store_mib or (128 if args.quick else 1024)) * MIB,
        "object_bytes": (args.object_mib or (8 if args.quick else 64)) * MIB,
    }
    only = set(args.only.split(","))
    directory = os.path.abspath(args.dir)
    fs = fs_type(directory)
    result = {"measured": False, "quick": args.quick, "python": platform.python_version(), "dir": directory, "fs": fs,
              **cfg, "load_before": loadavg(), "cpus": os.cpu_count()}
    if fs == "tmpfs" and not args.allow_tmpfs:
        result["error"] = f"{directory} is tmpfs, not a disk; set OBJSTORE_BENCH_DIR or --dir"
        print(json.dumps(result))
        return 1
    try:
        import numpy as np
        import ray
    except Exception as error:  # noqa: BLE001
        result["error"] = f"cannot import ray/numpy: {error!r}"
        print(json.dumps(result))
        return 1
    result["ray_version"] = ray.__version__
    result["numpy_version"] = np.__version__
    device = block_device(directory)
    result["device"] = device

    work = os.path.join(directory, f"ray-spillbench-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    try:
        dds = []
        if "dd" in only:
            dds.append(dd_pair(work, cfg["total_bytes"], "before"))
        passes = {}
        for mode in ("held", "freed"):
            if mode not in only:
                continue
            spill_dir = os.path.join(work, f"spill-{mode}")
            os.makedirs(spill_dir, exist_ok=True)
            passes[mode] = run_pass(mode, cfg, spill_dir, device)
            shutil.rmtree(spill_dir, ignore_errors=True)
        result["passes"] = passes
        if "dd" in only:
            dds.append(dd_pair(work, cfg["total_bytes"], "after"))
            result["dd"] = {
                "bytes": cfg["total_bytes"],
                "runs": dds,
                "write_gb_per_s": sum(d["write"]["gb_per_s"] for d in dds) / len(dds),
                "read_gb_per_s": sum(d["read"]["gb_per_s"] for d in dds) / len(dds),
                "cache_dropped": all(d["cache_dropped"] for d in dds),
            }
        result["measured"] = True
    except Exception as error:  # noqa: BLE001
        result["error"] = repr(error)
        result["traceback"] = traceback.format_exc()
        log(result["traceback"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    result["load_after"] = loadavg()
    print(json.dumps(result))
    return 0 if result["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
