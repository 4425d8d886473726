/**
 * Objects moved between two stores of this machine as between two nodes (issue 13, item 8), on
 * whichever runtime starts this file:
 *
 *   node bench/transfer_bench.ts [--quick]
 *   deno run -A bench/transfer_bench.ts [--quick]
 *   bun bench/transfer_bench.ts [--quick]
 *   deno run -A --unstable-net bench/transfer_bench.ts --transport quic [--quick]
 *   … [--big-mib N] [--only pull,broadcast,small] [--connections 1,4,8]   (one part, for iterating)
 *
 * (`bench/run_transfer.sh` runs all three beside the TCP loopback anchor and Ray 2.60.)
 *
 * Two processes, as two nodes: this one starts a second process of the same runtime (this file,
 * `--role source`) that creates the source store, puts the objects in it and serves it on
 * 127.0.0.1 (lib/cluster/transfer.ts `TransferEndpoint.serve`). This process creates the
 * receiving stores and pulls with `TransferEndpoint.pull`; each pulled object is dropped
 * (`handOver`, the only reference) before the next round, so a round pulls into memory the
 * store handed out before. Every byte moves in the native library's threads (Server.zig,
 * Puller.zig): the JavaScript of either side only starts the pulls and polls for their end.
 *
 * - pull: one object of 1 GiB (--quick: 64 MiB) over 1, 4 and 8 connections. An untimed first
 *   pull into each receiving store faults its pages in (reported as `cold`, as a node's
 *   prefaulted arena would not pay it); then 5 timed rounds (--quick: 3). GB/s = 10⁹ B/s.
 * - broadcast: three receiving stores pull the same object at once from the source (4
 *   connections each): wall time until all three are sealed. Then with copies as extra
 *   sources: one receiver pulls first, then the other two at once from [source, that copy]
 *   (the directory lists a finished copy as a source): wall time from the first pull's start.
 * - small: 2,000 (--quick: 200) objects of 1 KiB, each pulled (one connection) and dropped:
 *   one at a time, then with 16 and 64 in flight. Pulls per second (successful ones; failed
 *   pulls are counted: the source serves at most 32 connections and closes the others).
 *
 * --transport quic (Deno with --unstable-net): the source also serves through a QUIC gateway and
 * this process pulls through a QUIC relay (lib/cluster/quic/), as `objstore start --transport
 * quic` nodes do; pull and small only (the broadcast's copies are served over TCP).
 *
 * CPU: each phase records the CPU time (utime + stime) of both processes, from /proc.
 * Progress goes to stderr; stdout gets one JSON line.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import process from "node:process";
import { randomBytes } from "node:crypto";
import { loadLibrary, type Library } from "../lib/ffi/load.ts";
import { NativeStore } from "../lib/store/native_store.ts";
import { type TransferAddress, TransferEndpoint } from "../lib/cluster/transfer.ts";
import { type QuicAddress, QuicGateway } from "../lib/cluster/quic/gateway.ts";
import { QuicRelays } from "../lib/cluster/quic/relays.ts";
import { QUIC_UNAVAILABLE } from "../lib/ffi/quic.ts";
import { args, emit, fmt, g, loadavg, log, MiB, option, optionSet, quick, readProc, runtime, runtimeVersion } from "./lib/harness.ts";

const KiB = 1024;
const BIG_BYTES = Number(option("--big-mib") ?? (quick ? 64 : 1024)) * MiB;
const SMALL_BYTES = KiB;
const SMALL_COUNT = quick ? 200 : 2000;
const PULL_ROUNDS = quick ? 3 : 5;
const BROADCAST_ROUNDS = quick ? 2 : 3;
const CONNECTIONS = option("--connections")?.split(",").map(Number) ?? [1, 4, 8];
/** `--only pull,broadcast,small`: the phases to run (all by default). */
const ONLY = optionSet("--only");
const IN_FLIGHT = [1, 16, 64];
const RECEIVERS = 3;
/** Room for the object and the allocator's rounding. */
const STORE_BYTES = BIG_BYTES + 64 * MiB;
const BIG_ID_TAG = 0xb1;
const SMALL_ID_TAG = 0x51;
const transport = option("--transport") ?? "tcp";
if (transport !== "tcp" && transport !== "quic") throw new Error(`--transport must be tcp or quic, got ${transport}`);

function idOf(tag: number, n: number): Uint8Array {
  const id = new Uint8Array(28).fill(0x7b);
  id[0] = tag;
  new DataView(id.buffer).setUint32(1, n);
  return id;
}

/** The 8 bytes at `at` of the big object (the source writes every page; these words are checked). */
function stampAt(at: number): bigint {
  return BigInt(at) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn;
}
const STAMP_POINTS = (size: number) => [0, Math.floor(size / 3 / 8) * 8, Math.floor(size / 2 / 8) * 8, size - 8];

// ---------------------------------------------------------------------------------------------
// The source node (a second process).

async function runSource(): Promise<void> {
  const storeName = option("--store")!;
  const token = option("--token")!;
  const library = await loadLibrary();
  const store = NativeStore.open(library, storeName, { create: true, exclusive: true, capacityBytes: STORE_BYTES + SMALL_COUNT * 4 * KiB, prefault: false });
  const endpoint = TransferEndpoint.open(library, store.name);
  const big = idOf(BIG_ID_TAG, 0);
  const target = store.create(big, BIG_BYTES, undefined, 0);
  if (!(target instanceof Uint8Array)) throw new Error(`source: create of ${BIG_BYTES} bytes failed: status ${target}`);
  // Every page written (a 1 MiB random block repeated), so no read sees the zero page.
  const block = randomBytes(MiB);
  for (let at = 0; at < BIG_BYTES; at += MiB) target.set(block.subarray(0, Math.min(MiB, BIG_BYTES - at)), at);
  const words = new DataView(target.buffer, target.byteOffset, target.byteLength);
  for (const at of STAMP_POINTS(BIG_BYTES)) words.setBigUint64(at, stampAt(at), true);
  store.seal(big);
  for (let i = 0; i < SMALL_COUNT; i++) {
    const id = idOf(SMALL_ID_TAG, i);
    const small = store.create(id, SMALL_BYTES, undefined, 0);
    if (!(small instanceof Uint8Array)) throw new Error(`source: create of a small object failed: status ${small}`);
    small.fill(i & 0xff);
    store.seal(id);
  }
  const server = endpoint.serve({ host: "127.0.0.1", port: 0 }, token);
  const gateway = transport === "quic" ? QuicGateway.start(quicOrExit(library), "127.0.0.1", 0, server.address, (error) => log(`quic: ${error}`)) : undefined;
  process.stdout.write(JSON.stringify({ port: server.address.port, pid: process.pid, quic: gateway?.address }) + "\n");
  // Serves until the bench closes stdin (or dies: the pipe closes with it).
  await new Promise<void>((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
  gateway?.stop();
  await endpoint.close();
  store.close();
  process.exit(0);
}

function quicOrExit(library: Library) {
  if (library.shim.quic === undefined) {
    log(`--transport quic: ${QUIC_UNAVAILABLE}`);
    process.exit(2);
  }
  return library.shim.quic;
}

// ---------------------------------------------------------------------------------------------
// The receiving node (this process).

interface SourceProcess {
  address: TransferAddress;
  quic: QuicAddress | undefined;
  pid: number;
  stop(): Promise<void>;
}

function selfCommand(): string[] {
  const file = new URL(import.meta.url).pathname;
  if (runtime === "deno") return [g.Deno.execPath(), "run", "-A", ...(transport === "quic" ? ["--unstable-net"] : []), file];
  return [process.execPath, file];
}

async function startSource(storeName: string, token: string): Promise<SourceProcess> {
  const [command, ...rest] = selfCommand();
  const child = spawn(command, [...rest, "--role", "source", "--store", storeName, "--token", token, "--transport", transport, ...args.filter((a) => a === "--quick"), ...(option("--big-mib") ? ["--big-mib", option("--big-mib")!] : [])], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the source process exited (${code}) before serving`)));
  });
  const { port, pid, quic } = JSON.parse(first);
  return {
    address: { host: "127.0.0.1", port },
    quic,
    pid,
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
      lines.close();
    },
  };
}

interface Receiver {
  store: NativeStore;
  endpoint: TransferEndpoint;
}

function openReceiver(library: Library, tag: string): Receiver {
  const store = NativeStore.open(library, `bench-xfer-${tag}-${process.pid}`, { create: true, exclusive: true, capacityBytes: STORE_BYTES, prefault: false });
  return { store, endpoint: TransferEndpoint.open(library, store.name) };
}

/** Checks the stamped words of the pulled big object (the puller checked every chunk's CRC32C). */
function checkBig(receiver: Receiver, id: Uint8Array): void {
  const pinned = receiver.store.get(id);
  if (typeof pinned === "number") throw new Error(`the pulled object is not readable: status ${pinned}`);
  try {
    for (const at of STAMP_POINTS(BIG_BYTES)) {
      const bytes = receiver.store.bytes(pinned.offsetBytes + at, 8);
      const word = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
      if (word !== stampAt(at)) throw new Error(`the pulled object differs at byte ${at}`);
    }
  } finally {
    receiver.store.release(id);
  }
}

async function pullOnce(receiver: Receiver, id: Uint8Array, sources: TransferAddress[], token: string, connections: number, expectBytes: number): Promise<void> {
  const outcome = await receiver.endpoint.pull(id, sources, token, { connections });
  if (outcome !== expectBytes) throw new Error(`pull: expected ${expectBytes} bytes, got ${outcome}`);
}

/** Drops the endpoint's reference: the only one, so the object goes. */
function drop(receiver: Receiver, id: Uint8Array): void {
  receiver.endpoint.handOver(id);
}

interface CpuMark {
  at: number;
  self: number;
  source: number;
}

function cpuMark(sourcePid: number): CpuMark {
  return { at: performance.now(), self: readProc("self")?.cpuNs ?? NaN, source: readProc(sourcePid)?.cpuNs ?? NaN };
}

/** Seconds of wall and CPU (each process) since `mark`. */
function cpuSince(mark: CpuMark, sourcePid: number): { wall_s: number; receiver_cpu_s: number; source_cpu_s: number } {
  const now = cpuMark(sourcePid);
  return { wall_s: (now.at - mark.at) / 1000, receiver_cpu_s: (now.self - mark.self) / 1e9, source_cpu_s: (now.source - mark.source) / 1e9 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function range(values: number[]): { median: number; min: number; max: number; rounds: number[] } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), rounds: values };
}

async function benchPull(receivers: Receiver[], source: SourceProcess, token: string) {
  const big = idOf(BIG_ID_TAG, 0);
  const results = [];
  for (const connections of CONNECTIONS) {
    const receiver = receivers[0];
    const gbPerS: number[] = [];
    const cpu: ReturnType<typeof cpuSince>[] = [];
    for (let round = 0; round < PULL_ROUNDS; round++) {
      const mark = cpuMark(source.pid);
      await pullOnce(receiver, big, [source.address], token, connections, BIG_BYTES);
      const spent = cpuSince(mark, source.pid);
      checkBig(receiver, big);
      drop(receiver, big);
      gbPerS.push(BIG_BYTES / spent.wall_s / 1e9);
      cpu.push(spent);
    }
    const row = {
      connections,
      bytes: BIG_BYTES,
      gb_per_s: range(gbPerS),
      receiver_cpu_s_per_gb: median(cpu.map((c) => c.receiver_cpu_s / (BIG_BYTES / 1e9))),
      source_cpu_s_per_gb: median(cpu.map((c) => c.source_cpu_s / (BIG_BYTES / 1e9))),
    };
    log(`pull ${BIG_BYTES / MiB} MiB over ${connections} connection(s): ${fmt(row.gb_per_s.median)} GB/s (${fmt(row.gb_per_s.min)}–${fmt(row.gb_per_s.max)}); CPU s/GB receiver ${fmt(row.receiver_cpu_s_per_gb)}, source ${fmt(row.source_cpu_s_per_gb)}`);
    results.push(row);
  }
  return results;
}

async function benchBroadcast(receivers: Receiver[], source: SourceProcess, token: string) {
  const big = idOf(BIG_ID_TAG, 0);
  const servers = receivers.map((r) => r.endpoint.serve({ host: "127.0.0.1", port: 0 }, token));
  const atOnce: number[] = [];
  const withCopies: number[] = [];
  for (let round = 0; round < BROADCAST_ROUNDS; round++) {
    let mark = cpuMark(source.pid);
    await Promise.all(receivers.map((r) => pullOnce(r, big, [source.address], token, 4, BIG_BYTES)));
    atOnce.push(cpuSince(mark, source.pid).wall_s);
    for (const r of receivers) {
      checkBig(r, big);
      drop(r, big);
    }
    mark = cpuMark(source.pid);
    await pullOnce(receivers[0], big, [source.address], token, 4, BIG_BYTES);
    const sources = [source.address, servers[0].address];
    await Promise.all(receivers.slice(1).map((r) => pullOnce(r, big, sources, token, 4, BIG_BYTES)));
    withCopies.push(cpuSince(mark, source.pid).wall_s);
    for (const r of receivers) {
      checkBig(r, big);
      drop(r, big);
    }
    log(`broadcast ${BIG_BYTES / MiB} MiB to ${RECEIVERS}: at once ${fmt(atOnce.at(-1)!)} s; one then two from [source, copy] ${fmt(withCopies.at(-1)!)} s`);
  }
  for (const server of servers) server.stop();
  return { bytes: BIG_BYTES, receivers: RECEIVERS, connections: 4, at_once_s: range(atOnce), with_copies_s: range(withCopies) };
}

async function benchSmall(receiver: Receiver, source: SourceProcess, token: string) {
  const results = [];
  for (const inFlight of IN_FLIGHT) {
    let next = 0;
    const failures: string[] = [];
    const mark = cpuMark(source.pid);
    // A failed pull is counted, not fatal: every lane runs to the end, so no pull is still
    // running when the endpoint closes.
    const lane = async () => {
      while (next < SMALL_COUNT) {
        const id = idOf(SMALL_ID_TAG, next++);
        try {
          await pullOnce(receiver, id, [source.address], token, 1, SMALL_BYTES);
          drop(receiver, id);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    const spent = cpuSince(mark, source.pid);
    const pulled = SMALL_COUNT - failures.length;
    const row = {
      in_flight: inFlight,
      count: SMALL_COUNT,
      failed: failures.length,
      first_failure: failures[0],
      bytes: SMALL_BYTES,
      per_s: pulled / spent.wall_s,
      receiver_cpu_us_per_pull: (spent.receiver_cpu_s / SMALL_COUNT) * 1e6,
      source_cpu_us_per_pull: (spent.source_cpu_s / SMALL_COUNT) * 1e6,
    };
    log(`small ${SMALL_BYTES} B pulls, ${inFlight} in flight: ${fmt(row.per_s)}/s; CPU µs/pull receiver ${fmt(row.receiver_cpu_us_per_pull)}, source ${fmt(row.source_cpu_us_per_pull)}` +
      (failures.length ? `; ${failures.length} of ${SMALL_COUNT} FAILED (${failures[0]})` : ""));
    results.push(row);
  }
  return results;
}

async function main(): Promise<void> {
  if (option("--role") === "source") return runSource();
  const token = `bench-${randomBytes(8).toString("hex")}`;
  const library = await loadLibrary();
  const loadBefore = loadavg();
  log(`transfer_bench on ${runtime} ${runtimeVersion}: ${BIG_BYTES / MiB} MiB objects, load ${loadBefore}`);
  const source = await startSource(`bench-xfer-src-${process.pid}`, token);
  const receivers: Receiver[] = [];
  const relays = transport === "quic" ? new QuicRelays(quicOrExit(library)) : undefined;
  try {
    if (relays !== undefined) source.address = await relays.addressFor({ host: "127.0.0.1", quic: source.quic! });
    for (let i = 0; i < RECEIVERS; i++) receivers.push(openReceiver(library, `r${i}`));
    // Untimed first pulls fault each receiving store's pages in.
    const big = idOf(BIG_ID_TAG, 0);
    const cold: number[] = [];
    for (const r of receivers) {
      const mark = cpuMark(source.pid);
      await pullOnce(r, big, [source.address], token, 4, BIG_BYTES);
      cold.push(BIG_BYTES / cpuSince(mark, source.pid).wall_s / 1e9);
      checkBig(r, big);
      drop(r, big);
    }
    log(`cold first pulls (pages faulted in on the way): ${cold.map(fmt).join(", ")} GB/s`);
    const pull = !ONLY || ONLY.has("pull") ? await benchPull(receivers, source, token) : [];
    const broadcast = transport !== "quic" && (!ONLY || ONLY.has("broadcast")) ? await benchBroadcast(receivers, source, token) : null;
    const small = !ONLY || ONLY.has("small") ? await benchSmall(receivers[0], source, token) : [];
    emit({
      runtime,
      transport,
      runtime_version: runtimeVersion,
      quick,
      processes: "source store in a second process of the same runtime; receiving stores in this one",
      load_before: loadBefore,
      load_after: loadavg(),
      cold_gb_per_s: cold,
      pull,
      broadcast,
      small,
    });
  } finally {
    for (const r of receivers) {
      await r.endpoint.close();
      r.store.close();
    }
    await relays?.close();
    await source.stop();
  }
}

await main();
if (option("--role") !== "source") process.exit(0);
