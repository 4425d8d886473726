"""The anchor of bench/run_transfer.sh: raw TCP loopback bandwidth, memory to memory.

    python3 bench/tcp_anchor.py [--mib 1024] [--repeat 3] [--streams 1]

A child (forked before either buffer exists, so no page is shared copy-on-write) writes every
page of an N MiB buffer, then on each run's signal sends it to 127.0.0.1 in 4 MiB `sendall`s (the
transfer's chunk size); the parent `recv_into`s a buffer of N MiB it has touched first (as a
prefaulted store object), each call straight at the next unfilled byte: one kernel-to-user
copy, no copy in Python (../shared/research/transfer-facts.md: this method
measured 4.81 GB/s here, the same as C). Timed from the signal to the last byte, two processes as
two nodes. With --streams K, K such connections at once (K children), each 1/K of the bytes.
Prints one JSON line: median and every run, GB/s = 10^9 B/s.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time

MIB = 1024 * 1024
CHUNK = 4 * MIB


def touched(nbytes):
    buf = bytearray(nbytes)
    # bytearray() is calloc'd: write one byte per page so the pages exist before the clock runs.
    for at in range(0, nbytes, 4096):
        buf[at] = 1
    return memoryview(buf)


def sender(port, nbytes, go):
    """A child: writes its buffer, then sends it once per byte read from `go`."""
    source = touched(nbytes)
    while os.read(go, 1):
        conn = socket.create_connection(("127.0.0.1", port))
        sent = 0
        while sent < nbytes:
            n = min(CHUNK, nbytes - sent)
            conn.sendall(source[sent:sent + n])
            sent += n
        conn.close()


def start_senders(streams, part):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(streams)
    port = server.getsockname()[1]
    senders = []
    for _ in range(streams):
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                # Only this child's pipe stays open here, so each child sees its own end of input.
                for fd in [go_write] + [w for _, w in senders]:
                    os.close(fd)
                server.close()
                sender(port, part, go_read)
            finally:
                os._exit(0)
        os.close(go_read)
        senders.append((pid, go_write))
    return server, senders


def one_run(server, senders, part, dest):
    import selectors
    start = time.perf_counter()
    for _, go in senders:
        os.write(go, b"g")
    conns = [server.accept()[0] for _ in senders]
    sel = selectors.DefaultSelector()
    filled = {}
    for i, conn in enumerate(conns):
        filled[conn] = (i * part, 0)
        sel.register(conn, selectors.EVENT_READ)
    total = 0
    while filled:
        for key, _ in sel.select():
            conn = key.fileobj
            base, got = filled[conn]
            n = conn.recv_into(dest[base + got:base + part])
            if n == 0 or got + n == part:
                total += got + n
                sel.unregister(conn)
                del filled[conn]
            else:
                filled[conn] = (base, got + n)
    seconds = time.perf_counter() - start
    for conn in conns:
        conn.close()
    if total != part * len(senders):
        raise RuntimeError(f"TCP loopback: received {total} of {part * len(senders)} bytes")
    return part * len(senders) / seconds / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1)
    args = parser.parse_args()
    nbytes = args.mib * MIB
    part = nbytes // args.streams
    server, senders = start_senders(args.streams, part)
    dest = touched(nbytes)
    one_run(server, senders, part, dest)  # untimed: the children have written their buffers
    runs = [one_run(server, senders, part, dest) for _ in range(args.repeat)]
    for pid, go in senders:
        os.close(go)
        os.waitpid(pid, 0)
    server.close()
    print(f"TCP loopback anchor: {args.mib} MiB, {args.streams} stream(s): "
          f"{statistics.median(runs):.2f} GB/s ({min(runs):.2f}-{max(runs):.2f})", file=sys.stderr)
    print(json.dumps({
        "bytes": nbytes,
        "streams": args.streams,
        "gb_per_s": {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "rounds": runs},
        "method": f"Python socket, forked sender(s), {CHUNK // MIB} MiB sendall()s from a written buffer, recv_into a touched "
                  f"{args.mib} MiB buffer at the next unfilled byte; no page shared copy-on-write; signal to last byte; median of {args.repeat}",
        "load": open("/proc/loadavg").read().split()[:3],
    }))


if __name__ == "__main__":
    main()
