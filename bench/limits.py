"""The machine's physical limits, measured in the same run as the benchmarks, so that each figure
also reads as a fraction of its limit (bench/run_all.sh runs it with the system's python3; no
packages needed):

    python3 bench/limits.py [--quick] [--dir DIR] [--memcpy-only]

- memcpy: one 838,860,800-byte buffer (Ray's 800 MiB put) copied into another, both warm, by
  `memoryview` slice assignment (a single C memcpy); Ray's `timeit` (1 s warm-up, 4 rounds of
  >= 2 s, mean and std; no sleep). The native bench (`zig build bench`) measures glibc memcpy
  in the same run as well.
- disk: `dd if=/dev/zero bs=1M count=1024 conv=fdatasync` into DIR (default
  $OBJSTORE_BENCH_DIR or /tmp: where spill files go), then `dd bs=1M` reading it back after
  dropping the page cache (needs root; `dropped_cache` says whether it worked). Median of 3.
- TCP loopback: a forked child connects to 127.0.0.1 and sends 2 GiB with 1 MiB `sendall`s;
  this process `recv_into`s a 1 MiB buffer and times first byte to end. Median of 3.
`--quick`: short memcpy rounds, 64 MiB disk, 256 MiB TCP, one repetition.

GB = 10^9 bytes. Progress goes to stderr; stdout gets one JSON line.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

MIB = 1024 * 1024


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timeit(name, fn, multiplier, quick):
    """Ray's timeit without its sleep (quick: 0.05 s warm-up, 3 rounds of 0.1 s)."""
    warmup, rounds, round_s = (0.05, 3, 0.1) if quick else (1, 4, 2)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < warmup:
        fn()
        count += 1
    step = count // 10 + 1
    stats = []
    for _ in range(rounds):
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < round_s:
            for _ in range(step):
                fn()
            count += step
        stats.append(multiplier * count / (time.perf_counter() - start))
    mean = statistics.fmean(stats)
    std = statistics.pstdev(stats)
    log(f"{name} per second {mean:.2f} +- {std:.2f}")
    return {"mean": mean, "std": std, "rounds": stats}


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def dd(*args):
    """GB/s from dd's own report (bytes and seconds, on stderr)."""
    run = subprocess.run(["dd", *args], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    match = re.search(r"^(\d+) bytes .* copied, ([\d.e+-]+) s", run.stderr, re.M)
    if run.returncode != 0 or not match:
        raise RuntimeError(f"dd {' '.join(args)} failed: {run.stderr}")
    return int(match[1]) / float(match[2]) / 1e9


def tcp_loopback(nbytes):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        try:
            sender = socket.create_connection(("127.0.0.1", port))
            chunk = memoryview(bytearray(MIB))
            for _ in range(nbytes // MIB):
                sender.sendall(chunk)
            sender.close()
        finally:
            os._exit(0)
    conn, _ = server.accept()
    buf = memoryview(bytearray(MIB))
    received, first = 0, None
    while True:
        n = conn.recv_into(buf)
        if first is None:
            first = time.perf_counter()
        if n == 0:
            break
        received += n
    seconds = time.perf_counter() - first
    conn.close()
    server.close()
    os.waitpid(pid, 0)
    if received != nbytes:
        raise RuntimeError(f"TCP loopback: received {received} of {nbytes} bytes")
    return nbytes / seconds / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", default=os.environ.get("OBJSTORE_BENCH_DIR", "/tmp"))
    parser.add_argument("--memcpy-only", action="store_true", help="measure memcpy alone (bench/run_puts.sh)")
    args = parser.parse_args()
    repeat = 1 if args.quick else 3
    result = {"quick": args.quick, "load_before": loadavg()}

    nbytes = 100 * MIB * 8
    src = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        src[i] = i & 255
    dst = bytearray(nbytes)
    s, d = memoryview(src), memoryview(dst)

    def copy():
        d[:] = s

    copy()
    result["memcpy_gb_per_s"] = timeit("memcpy 800 MiB (GB)", copy, nbytes / 1e9, args.quick)
    del s, d, src, dst
    if args.memcpy_only:
        result["load_after"] = loadavg()
        print(json.dumps(result))
        return

    disk_mib = 64 if args.quick else 1024
    path = os.path.join(args.dir, f"objstore-limits-{os.getpid()}")
    fstype = subprocess.run(["df", "--output=fstype", args.dir], capture_output=True, text=True).stdout.split()[-1:] or ["?"]
    writes, reads, dropped = [], [], True
    try:
        for _ in range(repeat):
            writes.append(dd("if=/dev/zero", f"of={path}", "bs=1M", f"count={disk_mib}", "conv=fdatasync"))
            dropped = drop_caches() and dropped
            reads.append(dd(f"if={path}", "of=/dev/null", "bs=1M"))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    result["disk"] = {
        "dir": args.dir,
        "filesystem": fstype[0],
        "bytes": disk_mib * MIB,
        "dropped_cache": dropped,
        "write_gb_per_s": statistics.median(writes),
        "read_gb_per_s": statistics.median(reads),
        "writes": writes,
        "reads": reads,
        "method": f"dd bs=1M count={disk_mib} conv=fdatasync, then dd bs=1M read "
        + ("after drop_caches" if dropped else "(page cache NOT dropped: not root)")
        + f"; median of {repeat}",
    }
    log(f"disk {args.dir} ({fstype[0]}): write {statistics.median(writes):.2f} GB/s, read {statistics.median(reads):.2f} GB/s")

    tcp_bytes = (256 if args.quick else 2048) * MIB
    runs = [tcp_loopback(tcp_bytes) for _ in range(repeat)]
    result["tcp_loopback"] = {
        "bytes": tcp_bytes,
        "gb_per_s": statistics.median(runs),
        "runs": runs,
        "method": f"127.0.0.1, a forked child sends {tcp_bytes // MIB} MiB in 1 MiB sendall()s, recv_into a 1 MiB buffer; first byte to end; median of {repeat}",
    }
    log(f"TCP loopback: {statistics.median(runs):.2f} GB/s")
    result["load_after"] = loadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
