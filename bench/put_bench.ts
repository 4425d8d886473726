/**
 * Puts of binary payloads against memcpy, and the first get of a large object (issue 15, item 4),
 * on whichever runtime starts this file:
 *
 *   node --expose-gc bench/put_bench.ts [--quick]
 *   deno run -A --v8-flags=--expose-gc bench/put_bench.ts [--quick]
 *   bun bench/put_bench.ts [--quick] [--gets-only] [--default-store]
 *
 * (`bench/run_puts.sh` runs all three beside Ray and the machine's memcpy.)
 *
 * - put: `os.put(value)` + `os.free(ref)` in a loop, for each kind (BigInt64Array, Float64Array,
 *   Uint8Array, ArrayBuffer, DataView, and a Float64Array subarray starting at byte 8 × 1001 of a
 *   larger buffer) and size (1 KiB … 800 MiB; --quick: 1 KiB, 1 MiB, 32 MiB). Every page of every source is
 *   written first (random words), so no copy reads the kernel's zero page. MB/s = 10⁶ B/s.
 * - memcpy: `Uint8Array.prototype.set` of the same number of bytes between two warm heap arrays
 *   (one glibc memmove: V8 and JSC both call it), timed just before and just after the puts of
 *   each size; the ratio is put / the mean of the two.
 * - first get: put a new object (off the clock), then time its first `await os.get(ref)`. Views
 *   are dropped; from 64 MiB on they are collected off the clock between samples, to make room.
 *   1 KiB … 1 GiB (--quick: 1 KiB, 1 MiB, 64 MiB).
 *
 * Timing: per (kind, size) a 0.25 s warm-up, then 3 rounds of ≥ 0.5 s (--quick: 0.03 s and
 * 3 × 0.03 s), at least 2 calls per round; reported: mean and the rounds. The store is 2.5 GiB
 * (--quick: 256 MiB), created with prefault and given 2 s (0.5 s) to fault in first.
 *
 * Progress goes to stderr; stdout gets one JSON line.
 */
import * as os from "../mod.ts";
import { args, collect, emit, g, log, loadavg, MiB, quick, runtime, runtimeVersion, summarize, type Rate } from "./lib/harness.ts";

const KiB = 1024;
const STORE_BYTES = quick ? 256 * MiB : 2560 * MiB;
const PUT_SIZES = quick ? [KiB, MiB, 32 * MiB] : [KiB, 64 * KiB, MiB, 16 * MiB, 128 * MiB, 800 * MiB];
/** `--gets-only`: only the first gets (the puts take minutes). */
const getsOnly = args.includes("--gets-only");
/** `--default-store`: the store `init` makes by default (30 % of RAM), larger than V8's heap
 * limit allows windows over all of it. */
const defaultStore = args.includes("--default-store");
const GET_SIZES = quick ? [KiB, MiB, 64 * MiB] : [KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB, 1024 * MiB];
const WARMUP_S = quick ? 0.03 : 0.25;
const ROUNDS = 3;
const ROUND_S = quick ? 0.03 : 0.5;
/** The store's prefault thread gets this long to fault the arena in before the first put. */
const PREFAULT_WAIT_MS = quick ? 500 : 2000;
/** The subarray kind starts this many Float64 elements into its buffer. */
const SUBARRAY_ELEMENTS = 1001;

type Source = ArrayBufferView | ArrayBuffer;

/** The value each kind puts, `sizeBytes` long, over `buffer` (sized for the subarray's offset). */
const KINDS: Record<string, (buffer: ArrayBuffer, sizeBytes: number) => Source> = {
  BigInt64Array: (b, n) => new BigInt64Array(b, 0, n / 8),
  Float64Array: (b, n) => new Float64Array(b, 0, n / 8),
  Uint8Array: (b, n) => new Uint8Array(b, 0, n),
  ArrayBuffer: (b, n) => (b.byteLength === n ? b : b.slice(0, n)),
  DataView: (b, n) => new DataView(b, 0, n),
  "Float64Array subarray at byte 8008": (b, n) => new Float64Array(b, 8 * SUBARRAY_ELEMENTS, n / 8),
};

function randomWords(buffer: ArrayBuffer): void {
  const words = new Uint32Array(buffer);
  let x = 2463534242;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
}

/** Calls per second of `fn` × `bytes`, in MB/s: warm-up, then rounds of at least 2 calls. */
function megabytesPerSecond(fn: () => void, bytes: number): Rate {
  let start = performance.now();
  while (performance.now() - start < WARMUP_S * 1000) fn();
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let calls = 0;
    start = performance.now();
    while (calls < 2 || performance.now() - start < ROUND_S * 1000) {
      fn();
      calls++;
    }
    rounds.push((calls * bytes) / ((performance.now() - start) / 1000) / 1e6);
  }
  return summarize(rounds);
}

interface PutRow {
  kind: string;
  bytes: number;
  put_mb_per_s: Rate;
  memcpy_mb_per_s: number;
  memcpy_rounds: number[];
  ratio: number;
}

async function measurePuts(): Promise<PutRow[]> {
  const rows: PutRow[] = [];
  const largest = PUT_SIZES[PUT_SIZES.length - 1];
  const buffer = new ArrayBuffer(largest + 8 * SUBARRAY_ELEMENTS);
  randomWords(buffer);
  const copyFrom = new Uint8Array(buffer);
  const copyTo = new Uint8Array(buffer.byteLength);
  copyTo.set(copyFrom); // every page of the destination written: warm
  for (const bytes of PUT_SIZES) {
    const from = copyFrom.subarray(0, bytes);
    const memcpy = () => copyTo.set(from);
    const before = megabytesPerSecond(memcpy, bytes);
    const puts: [string, Rate][] = [];
    for (const [kind, make] of Object.entries(KINDS)) {
      const value = make(buffer, bytes);
      const rate = megabytesPerSecond(() => os.free(os.put(value)), bytes);
      puts.push([kind, rate]);
    }
    const after = megabytesPerSecond(memcpy, bytes);
    const memcpyRounds = [...before.rounds, ...after.rounds];
    const memcpyMean = summarize(memcpyRounds).mean;
    log(`${bytes} B: memcpy ${memcpyMean.toFixed(0)} MB/s; ` + puts.map(([k, r]) => `${k} ${r.mean.toFixed(0)} (${(r.mean / memcpyMean).toFixed(2)})`).join(", "));
    for (const [kind, rate] of puts) {
      rows.push({ kind, bytes, put_mb_per_s: rate, memcpy_mb_per_s: memcpyMean, memcpy_rounds: memcpyRounds, ratio: rate.mean / memcpyMean });
    }
    await collect();
  }
  return rows;
}

interface GetRow {
  bytes: number;
  samples: number;
  median_us: number;
  min_us: number;
  max_us: number;
  all_us: number[];
}

/** µs to the first get of `ref`; in a function of its own, so the view is unreachable on return. */
async function timeFirstGet(ref: os.ObjectRef, bytes: number): Promise<number> {
  const t0 = performance.now();
  const view = (await os.get(ref)) as Uint8Array;
  const us = (performance.now() - t0) * 1000;
  if (view.length !== bytes || view[0] !== 1) throw new Error(`first get of ${bytes} B returned wrong data`);
  return us;
}

/** Collects until every object is gone (the views' pins are released by finalizers, later). */
async function collectViews(): Promise<void> {
  for (let i = 0; i < 50 && os.memoryStats().objectCount > 0; i++) await collect();
}

/** The first get of each of several new objects per size: a view, so it should not grow with size. */
async function measureFirstGets(): Promise<GetRow[]> {
  const rows: GetRow[] = [];
  for (const bytes of GET_SIZES) {
    const source = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i += 4096) source[i] = 1;
    const samples = bytes >= 64 * MiB ? (quick ? 5 : 9) : (quick ? 15 : 41);
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const ref = os.put(source);
      times.push(await timeFirstGet(ref, bytes));
      os.free(ref);
      // Room for the next sample: the view's pin goes when it is collected (off the clock).
      if (bytes >= 64 * MiB) await collectViews();
    }
    await collect();
    const sorted = [...times].sort((a, b) => a - b);
    const row = { bytes, samples, median_us: sorted[sorted.length >> 1], min_us: sorted[0], max_us: sorted[sorted.length - 1], all_us: times };
    log(`first get ${bytes} B: median ${row.median_us.toFixed(1)} µs (min ${row.min_us.toFixed(1)}, max ${row.max_us.toFixed(1)}) over ${samples}`);
    rows.push(row);
  }
  return rows;
}

const loadBefore = loadavg();
await os.init(defaultStore ? { numWorkers: 0 } : { objectStoreMemory: STORE_BYTES, numWorkers: 0 });
const storeBytes = os.memoryStats().capacityBytes;
let puts: PutRow[];
let firstGets: GetRow[];
try {
  await new Promise((resolve) => setTimeout(resolve, PREFAULT_WAIT_MS));
  puts = getsOnly ? [] : await measurePuts();
  firstGets = await measureFirstGets();
} finally {
  await os.shutdown();
}
emit({
  runtime,
  runtime_version: runtimeVersion,
  quick,
  gc_exposed: typeof g.gc === "function" || typeof g.Bun?.gc === "function",
  store_bytes: storeBytes,
  harness: { warmup_s: WARMUP_S, rounds: ROUNDS, round_s: ROUND_S },
  load_before: loadBefore,
  load_after: loadavg(),
  puts,
  first_gets: firstGets,
});
