/**
 * Issue #5's spilling benchmark, through the public API, on whichever runtime starts this file:
 *
 *   node --expose-gc bench/spill_bench.ts [--quick]
 *   deno run -A --v8-flags=--expose-gc bench/spill_bench.ts [--quick]
 *   bun bench/spill_bench.ts [--quick]
 *
 * (`bench/run_spill.sh` runs all three and Ray's same workload, bench/ray_spill.py.)
 *
 * "Put and get more than fits", as Ray's own spill benchmark does it (put N arrays into a small
 * store, then `get` each in put order): 8 GiB as 128 objects of 64 MiB through a 1 GiB store,
 * spilling to a directory on disk. Two passes, each in a fresh store:
 *
 *   held   put all (refs kept; the put loop spills), drop the page cache, get every object in
 *          put order with all refs still held (Ray's pattern), then free all.
 *   freed  put all again, drop the page cache, get each object and free it right after: no
 *          object has to be spilled again to make room, so this times restore alone.
 *
 * Each get checks 16 words of the object, stamped with its index before its put. Beside them, in
 * the same run and the same directory: `dd if=/dev/zero bs=1M conv=fdatasync` of the same size
 * and a `dd bs=1M` read of that file after dropping the page cache, once before the passes and
 * once after (the ratios use the mean of the two). Dropping the page cache needs root; the output
 * says whether it worked. With `OBJSTORE_TEST_S3_ENDPOINT` set (`eval "$(bash
 * scripts/s3_server.sh start)"`), an S3 pass too: 2 GiB through 512 MiB, put, wait until every
 * spill file is in the bucket, get + free each (restored from the bucket).
 *
 * Figures: GB = 10⁹ bytes. "Nominal" rates are the workload's bytes over the phase's time; disk
 * rates are the bytes the store reports spilled (memoryStats().spilledBytes) or restored
 * (restoredBytes) over the same time. /proc/self/io (read_bytes, write_bytes) and the process's
 * CPU time are recorded per phase.
 *
 * Options: --quick (256 MiB through 64 MiB in 8 MiB objects; S3 64 MiB through 16 MiB),
 * --dir DIR (default $OBJSTORE_BENCH_DIR, else /tmp; must not be tmpfs unless --allow-tmpfs),
 * --total-mib N, --store-mib N, --object-mib N, --s3-total-mib N, --s3-store-mib N,
 * --only dd,held,freed,s3 (default: all that apply).
 *
 * Progress goes to stderr; stdout gets one JSON line.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import nodeOs from "node:os";
import path from "node:path";
import process from "node:process";
import * as os from "../mod.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const runtimeVersion: string = runtime === "deno" ? g.Deno.version.deno : runtime === "bun" ? g.Bun.version : process.version;
const args: string[] = runtime === "deno" ? g.Deno.args : process.argv.slice(2);
const quick = args.includes("--quick");
const MiB = 1024 * 1024;

function option(name: string): string | undefined {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}
function mibOption(name: string, fallback: number): number {
  const value = option(name);
  if (value === undefined) return fallback * MiB;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} takes a whole number of MiB, got ${value}`);
  return n * MiB;
}

const TOTAL_BYTES = mibOption("--total-mib", quick ? 256 : 8192);
const STORE_BYTES = mibOption("--store-mib", quick ? 64 : 1024);
const OBJECT_BYTES = mibOption("--object-mib", quick ? 8 : 64);
const S3_TOTAL_BYTES = mibOption("--s3-total-mib", quick ? 64 : 2048);
const S3_STORE_BYTES = mibOption("--s3-store-mib", quick ? 16 : 512);
const S3_OBJECT_BYTES = Math.min(OBJECT_BYTES, S3_STORE_BYTES / 8);
const only = option("--only")?.split(",");
const wants = (what: string) => only === undefined || only.includes(what);
/** Words stamped (and checked) per object. */
const STAMPS = 16;

function log(message: string): void {
  process.stderr.write(message + "\n");
}
function gb(bytes: number): string {
  return (bytes / 1e9).toFixed(2);
}
function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : 0;
}
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

// ---------------------------------------------------------------------------------------------
// The disk: filesystem, free space, page cache, dd.

function fsType(dir: string): string {
  for (const [cmd, cmdArgs] of [["findmnt", ["-no", "FSTYPE", "-T", dir]], ["stat", ["-f", "-c", "%T", dir]]] as const) {
    const r = spawnSync(cmd, [...cmdArgs], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim() !== "") return r.stdout.trim().split("\n")[0];
  }
  return "unknown";
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** sync, then drop the page cache (needs root). False if it could not. */
function dropPageCache(): boolean {
  spawnSync("sync");
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

interface DdResult {
  seconds: number;
  gb_per_s: number;
}

/** Runs dd and returns the time it reports (else the time we saw). */
function dd(mode: "write" | "read", file: string, bytes: number): DdResult {
  const ddArgs = mode === "write"
    ? ["if=/dev/zero", `of=${file}`, "bs=1M", `count=${Math.round(bytes / MiB)}`, "conv=fdatasync"]
    : [`if=${file}`, "of=/dev/null", "bs=1M"];
  const t0 = performance.now();
  const r = spawnSync("dd", ddArgs, { encoding: "utf8", env: { ...process.env, LC_ALL: "C" } });
  const seen = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`dd ${ddArgs.join(" ")} failed: ${r.stderr}`);
  const reported = /copied, ([\d.]+) s/.exec(r.stderr ?? "");
  const seconds = reported ? Number(reported[1]) : seen;
  return { seconds, gb_per_s: rate(bytes, seconds) };
}

function ddPair(dir: string, bytes: number, label: string): { write: DdResult; read: DdResult; cache_dropped: boolean } {
  const file = path.join(dir, "dd.tmp");
  try {
    const write = dd("write", file, bytes);
    const dropped = dropPageCache();
    const read = dd("read", file, bytes);
    log(`dd ${label}: write ${write.gb_per_s.toFixed(2)} GB/s (bs=1M conv=fdatasync, ${gb(bytes)} GB), ` +
      `read ${read.gb_per_s.toFixed(2)} GB/s (page cache dropped: ${dropped ? "yes" : "NO"})`);
    return { write, read, cache_dropped: dropped };
  } finally {
    rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// What this process did: CPU seconds, bytes through the block layer, shared memory resident.

interface ProcSample {
  at: number;
  cpuS: number;
  readBytes: number;
  writeBytes: number;
}

function sample(): ProcSample {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const io = readFileSync("/proc/self/io", "utf8");
  return {
    at: performance.now(),
    cpuS: (Number(fields[11]) + Number(fields[12])) / 100,
    readBytes: Number(/read_bytes:\s+(\d+)/.exec(io)?.[1] ?? 0),
    writeBytes: Number(/\nwrite_bytes:\s+(\d+)/.exec(io)?.[1] ?? 0),
  };
}

interface Phase {
  seconds: number;
  cpu_s: number;
  /** Bytes this process read from and wrote to storage (/proc/self/io). */
  disk_read_bytes: number;
  disk_write_bytes: number;
}

function phase(a: ProcSample, b: ProcSample = sample()): Phase {
  return {
    seconds: (b.at - a.at) / 1000,
    cpu_s: b.cpuS - a.cpuS,
    disk_read_bytes: b.readBytes - a.readBytes,
    disk_write_bytes: b.writeBytes - a.writeBytes,
  };
}

/** Waits for the store's prefault thread (RssShmem reaching the store's size), up to 10 s. */
async function waitPrefault(bytes: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < 10_000) {
    const kib = Number(/RssShmem:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? 0);
    if (kib * 1024 >= bytes * 0.97) break;
    await sleep(20);
  }
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------
// The objects: one source buffer, 16 words stamped per object.

function stampPositions(objectBytes: number): number[] {
  const words = objectBytes / 4;
  return Array.from({ length: STAMPS }, (_, i) => Math.floor((i * (words - 1)) / (STAMPS - 1)));
}
function stampValue(k: number, i: number): number {
  return (Math.imul(k + 1, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0;
}
function makeSource(objectBytes: number): Uint8Array {
  const source = new Uint8Array(objectBytes);
  const words = new Uint32Array(source.buffer);
  for (let j = 0; j < words.length; j++) words[j] = j; // a cheap pattern: every page written
  return source;
}
function stamp(source: Uint8Array, positions: number[], k: number): void {
  const words = new Uint32Array(source.buffer, source.byteOffset, source.byteLength / 4);
  for (let i = 0; i < positions.length; i++) words[positions[i]] = stampValue(k, i);
}
/** Gets object k and checks its stamps; the view is unreachable once this returns. */
async function getAndCheck(ref: os.ObjectRef, positions: number[], k: number, objectBytes: number): Promise<number> {
  const t0 = performance.now();
  const view = (await os.get(ref)) as Uint8Array;
  const getMs = performance.now() - t0;
  if (!(view instanceof Uint8Array) || view.byteLength !== objectBytes) {
    throw new Error(`object ${k}: got ${view?.constructor?.name} of ${view?.byteLength} bytes, expected ${objectBytes}`);
  }
  const words = new Uint32Array(view.buffer, view.byteOffset, objectBytes / 4);
  for (let i = 0; i < positions.length; i++) {
    if (words[positions[i]] !== stampValue(k, i)) throw new Error(`object ${k}: word ${positions[i]} is wrong after restore`);
  }
  return getMs;
}

function spillFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith(".spill"));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// One pass: init, put everything, drop the cache, get everything, free, shut down.

interface PassConfig {
  name: string;
  totalBytes: number;
  storeBytes: number;
  objectBytes: number;
  spill: os.InitOptions["spill"];
  storeName: string;
  /** Where the spill files are while local (for the checks and the S3 wait). */
  localDir: string;
  /** "held": get all with every ref held, free after; "freed": free each right after its get. */
  mode: "held" | "freed";
  /** S3: wait until every spill file has been copied to the bucket (and deleted locally). */
  waitUpload: boolean;
}

async function runPass(c: PassConfig): Promise<Record<string, unknown>> {
  const count = Math.floor(c.totalBytes / c.objectBytes);
  const totalBytes = count * c.objectBytes;
  const positions = stampPositions(c.objectBytes);
  const source = makeSource(c.objectBytes);
  const out: Record<string, unknown> = {
    mode: c.mode,
    total_bytes: totalBytes,
    store_bytes: c.storeBytes,
    object_bytes: c.objectBytes,
    objects: count,
    load_before: loadavg(),
  };
  log(`== ${c.name}: ${count} x ${c.objectBytes / MiB} MiB = ${gb(totalBytes)} GB through a ${c.storeBytes / MiB} MiB store, ` +
    `${c.mode === "held" ? "get all with refs held" : "get + free each"}; load ${out.load_before}`);

  await os.init({ objectStoreMemory: c.storeBytes, spill: c.spill, storeName: c.storeName });
  const refs: os.ObjectRef[] = [];
  try {
    out.prefault_wait_s = await waitPrefault(c.storeBytes);

    // --- put: every object, refs kept. Puts that do not fit spill the coldest objects first.
    const p0 = sample();
    for (let k = 0; k < count; k++) {
      stamp(source, positions, k);
      refs.push(os.put(source));
    }
    const putPhase = phase(p0);
    const afterPut = os.memoryStats();
    // Until the background spiller is done too: spilledBytes unchanged over 5 polls; the
    // settled time is that of the last change seen.
    let settled = afterPut;
    let settledPhase = putPhase;
    for (let still = 0; still < 5 && performance.now() - p0.at < putPhase.seconds * 1000 + 30_000;) {
      await sleep(20);
      const now = os.memoryStats();
      still = now.spilledBytes === settled.spilledBytes ? still + 1 : 0;
      if (still === 0) settledPhase = phase(p0);
      settled = now;
    }
    out.put = {
      ...putPhase,
      gb_per_s: rate(totalBytes, putPhase.seconds),
      spilled_bytes: afterPut.spilledBytes,
      spilled_objects: afterPut.spilledObjects,
      spill_gb_per_s: rate(afterPut.spilledBytes, putPhase.seconds),
      settled: { ...settledPhase, spilled_bytes: settled.spilledBytes, used_bytes: settled.usedBytes },
      spill_files: spillFiles(c.localDir).length,
    };
    log(`put ${gb(totalBytes)} GB: ${putPhase.seconds.toFixed(2)} s, ${rate(totalBytes, putPhase.seconds).toFixed(2)} GB/s nominal; ` +
      `spilled ${gb(afterPut.spilledBytes)} GB (${afterPut.spilledObjects} objects) → ${rate(afterPut.spilledBytes, putPhase.seconds).toFixed(2)} GB/s; ` +
      `CPU ${putPhase.cpu_s.toFixed(2)} s; disk writes ${gb(putPhase.disk_write_bytes)} GB; ` +
      `background spiller settled at ${gb(settled.spilledBytes)} GB after ${settledPhase.seconds.toFixed(2)} s`);

    if (c.waitUpload) {
      const u0 = performance.now();
      while (spillFiles(c.localDir).length > 0 && performance.now() - u0 < 600_000) await sleep(50);
      const left = spillFiles(c.localDir).length;
      const uploadS = (performance.now() - p0.at) / 1000;
      out.upload = { seconds_from_first_put: uploadS, files_left: left, gb_per_s: rate(settled.spilledBytes, uploadS) };
      log(`S3: every spill file in the bucket ${uploadS.toFixed(2)} s after the first put (${rate(settled.spilledBytes, uploadS).toFixed(2)} GB/s of spilled bytes)` +
        (left > 0 ? `; ${left} files still local after 600 s` : ""));
    }

    out.cache_dropped = dropPageCache();

    // --- get: every object in put order; restores what was spilled.
    const restoredBefore = os.memoryStats().restoredBytes;
    const g0 = sample();
    let inGetMs = 0;
    for (let k = 0; k < count; k++) {
      inGetMs += await getAndCheck(refs[k], positions, k, c.objectBytes);
      if (c.mode === "freed") os.free(refs[k]);
    }
    const getPhase = phase(g0);
    const afterGet = os.memoryStats();
    const restored = afterGet.restoredBytes - restoredBefore;
    out.get = {
      ...getPhase,
      gb_per_s: rate(totalBytes, getPhase.seconds),
      restored_bytes: restored,
      restore_gb_per_s: rate(restored, getPhase.seconds),
      in_get_s: inGetMs / 1000,
      spilled_bytes_after: afterGet.spilledBytes,
      checked_words_per_object: STAMPS,
    };
    log(`get ${count} objects in put order: ${getPhase.seconds.toFixed(2)} s, ${rate(totalBytes, getPhase.seconds).toFixed(2)} GB/s nominal; ` +
      `restored ${gb(restored)} GB → ${rate(restored, getPhase.seconds).toFixed(2)} GB/s; ${(inGetMs / 1000).toFixed(2)} s inside get; ` +
      `CPU ${getPhase.cpu_s.toFixed(2)} s; disk reads ${gb(getPhase.disk_read_bytes)} GB, writes ${gb(getPhase.disk_write_bytes)} GB ` +
      `(page cache dropped before: ${out.cache_dropped ? "yes" : "NO"})`);

    // --- free
    const f0 = performance.now();
    if (c.mode === "held") os.free(refs);
    const freeS = (performance.now() - f0) / 1000;
    let filesLeft = spillFiles(c.localDir).length;
    for (let i = 0; i < 100 && filesLeft > 0; i++) {
      await sleep(20);
      filesLeft = spillFiles(c.localDir).length;
    }
    out.free = { seconds: freeS, spill_files_left: filesLeft, stats: os.memoryStats() };
  } finally {
    for (const ref of refs) {
      try {
        ref[Symbol.dispose]();
      } catch { /* freed */ }
    }
    await os.shutdown();
  }
  out.load_after = loadavg();
  return out;
}

// ---------------------------------------------------------------------------------------------

const benchDir = path.resolve(option("--dir") ?? process.env.OBJSTORE_BENCH_DIR ?? "/tmp");
const fs = fsType(benchDir);
if (fs === "tmpfs" && !args.includes("--allow-tmpfs")) {
  throw new Error(`${benchDir} is tmpfs, not a disk: set OBJSTORE_BENCH_DIR (or --dir) to a directory on disk (--allow-tmpfs to measure memory anyway)`);
}
const free = freeBytes(benchDir);
const needed = Math.max(TOTAL_BYTES, wants("s3") ? S3_TOTAL_BYTES : 0) + 512 * MiB;
if (free < needed) {
  throw new Error(`${benchDir} has ${gb(free)} GB free; this run needs about ${gb(needed)} GB (pass --total-mib to scale down)`);
}
const workDir = path.join(benchDir, `objstore-spillbench-${process.pid}`);
mkdirSync(workDir, { recursive: true });
const cleanUp = () => rmSync(workDir, { recursive: true, force: true });
process.on("exit", cleanUp);

const results: Record<string, unknown> = {
  runtime,
  runtime_version: runtimeVersion,
  quick,
  dir: benchDir,
  fs,
  free_bytes_before: free,
  load_before: loadavg(),
  total_bytes: TOTAL_BYTES,
  store_bytes: STORE_BYTES,
  object_bytes: OBJECT_BYTES,
  cpus: nodeOs.cpus().length,
};
log(`spill bench on ${runtime} ${runtimeVersion}${quick ? " (--quick)" : ""}: dir ${benchDir} (${fs}, ${gb(free)} GB free), ` +
  `load ${results.load_before}`);

const started = performance.now();
try {
  const dds: ReturnType<typeof ddPair>[] = [];
  if (wants("dd")) dds.push(ddPair(workDir, TOTAL_BYTES, "before"));

  const passes: Record<string, unknown> = {};
  for (const mode of ["held", "freed"] as const) {
    if (!wants(mode)) continue;
    const spillDir = path.join(workDir, `spill-${mode}`);
    mkdirSync(spillDir, { recursive: true });
    passes[mode] = await runPass({
      name: `disk, ${mode}`,
      totalBytes: TOTAL_BYTES,
      storeBytes: STORE_BYTES,
      objectBytes: OBJECT_BYTES,
      spill: { type: "filesystem", directory: spillDir },
      storeName: `spillbench-${mode}-${process.pid}`,
      localDir: spillDir,
      mode,
      waitUpload: false,
    });
    rmSync(spillDir, { recursive: true, force: true });
  }
  results.passes = passes;

  const endpoint = process.env.OBJSTORE_TEST_S3_ENDPOINT;
  if (wants("s3") && endpoint) {
    const storeName = `spillbench-s3-${process.pid}`;
    results.s3 = await runPass({
      name: "S3",
      totalBytes: S3_TOTAL_BYTES,
      storeBytes: S3_STORE_BYTES,
      objectBytes: S3_OBJECT_BYTES,
      spill: { type: "s3", bucket: process.env.OBJSTORE_TEST_S3_BUCKET ?? "objstore-test", prefix: `spillbench-${process.pid}`, endpoint },
      storeName,
      localDir: path.join(nodeOs.tmpdir(), `objstore-spill-${storeName}`),
      mode: "freed",
      waitUpload: true,
    });
    (results.s3 as Record<string, unknown>).endpoint = endpoint;
  } else {
    results.s3 = { skipped: endpoint ? "not in --only" : "OBJSTORE_TEST_S3_ENDPOINT is not set" };
  }

  if (wants("dd")) dds.push(ddPair(workDir, TOTAL_BYTES, "after"));
  if (dds.length > 0) {
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    results.dd = {
      bytes: TOTAL_BYTES,
      runs: dds,
      write_gb_per_s: mean(dds.map((d) => d.write.gb_per_s)),
      read_gb_per_s: mean(dds.map((d) => d.read.gb_per_s)),
      cache_dropped: dds.every((d) => d.cache_dropped),
    };
  }
} finally {
  cleanUp();
}
results.seconds = (performance.now() - started) / 1000;
results.load_after = loadavg();
process.stdout.write(JSON.stringify(results) + "\n");
