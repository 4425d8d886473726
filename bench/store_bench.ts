/**
 * The object-store workloads of `ray microbenchmark`, through the public API only, on whichever
 * runtime starts this file:
 *
 *   node --expose-gc bench/store_bench.ts [--quick]
 *   deno run -A --v8-flags=--expose-gc bench/store_bench.ts [--quick]
 *   bun bench/store_bench.ts [--quick]
 *
 * (`bench/run_all.sh` runs all three and compares them with Ray.) The GC flag lets the bench
 * unpin views it no longer needs between sections; without it the store may fill.
 *
 * Harness: Ray's `timeit` (bench/lib/harness.ts). `--quick` (CI smoke) also shrinks the sizes:
 * 80 MiB instead of 800 MiB, 128 MiB instead of 1 GiB, a 512 MiB store.
 *
 * Progress goes to stderr; stdout gets one JSON line. GB = 10⁹ bytes.
 */
import * as os from "../mod.ts";
import { collect, emit, g, HARNESS, log, MiB, percentile, quick, runtime, runtimeVersion, summarize, timeit } from "./lib/harness.ts";

const STORE_BYTES = quick ? 512 * MiB : 2048 * MiB;
/** Ray's `np.zeros(100 * 1024 * 1024, dtype=np.int64)`: 838,860,800 bytes. */
const BIG_ELEMENTS = quick ? 10 * MiB : 100 * MiB;
const LATENCY_SIZES: [string, number][] = [["1KiB", 1024], ["1MiB", MiB], ["1GiB", quick ? 128 * MiB : 1024 * MiB]];
const LATENCY_SAMPLES = quick ? 20 : 100;

/** Reads the array back (in a function of its own, so the view is unreachable on return). */
async function checkBig(ref: os.ObjectRef): Promise<boolean> {
  const view = (await os.get(ref)) as Float64Array;
  return view.length === BIG_ELEMENTS && view[512] === 512;
}

const results: Record<string, unknown> = {
  runtime,
  runtime_version: runtimeVersion,
  quick,
  gc_exposed: typeof g.gc === "function" || typeof g.Bun?.gc === "function",
  harness: HARNESS,
  store_bytes: STORE_BYTES,
};

const initStarted = performance.now();
await os.init({ objectStoreMemory: STORE_BYTES });
results.init_ms = performance.now() - initStarted;

// --- 800 MiB put: the first (cold) one right after init, then Ray's single_client_put_gigabytes.
const bigBytes = BIG_ELEMENTS * 8;
results.big_bytes = bigBytes;
const big = new Float64Array(BIG_ELEMENTS);
for (let i = 0; i < big.length; i += 512) big[i] = i; // touch every page: no zero-page reads
{
  const t0 = performance.now();
  const ref = os.put(big);
  const ms = performance.now() - t0;
  ref[Symbol.dispose]();
  results.put_800mib_cold_ms = ms;
  results.put_800mib_cold_gb_per_s = bigBytes / (ms / 1000) / 1e9;
  log(`cold put of ${bigBytes} B: ${ms.toFixed(1)} ms (${(bigBytes / (ms / 1000) / 1e9).toFixed(2)} GB/s, ${(performance.now() - initStarted).toFixed(0)} ms after init began)`);
}
// memcpy of the same bytes between two warm arrays, timed before and after the puts (the
// store's prefault thread may still be running at first, and the machine may be shared):
// memcpy_gb_per_s pools the 2 × 4 rounds.
{
  const dst = new Float64Array(BIG_ELEMENTS);
  dst.set(big);
  const before = await timeit("memcpy 800 MiB (GB), before the puts", () => dst.set(big), { multiplier: bigBytes / 1e9 });
  results.put_800mib_gb_per_s = await timeit("put 800 MiB (GB)", () => os.put(big)[Symbol.dispose](), { multiplier: bigBytes / 1e9 });
  const after = await timeit("memcpy 800 MiB (GB), after the puts", () => dst.set(big), { multiplier: bigBytes / 1e9 });
  results.memcpy_gb_per_s = summarize([...before.rounds, ...after.rounds]);
}

// --- 800 MiB get: nominal bandwidth of the get that returns a view.
{
  const ref = os.put(big);
  if (!(await checkBig(ref))) throw new Error("get of the 800 MiB array returned wrong data");
  results.get_800mib_gb_per_s = await timeit("get 800 MiB (GB, nominal)", () => os.get(ref), { multiplier: bigBytes / 1e9 });
  ref[Symbol.dispose]();
}
await collect();

// --- put(0) and get of a put(0), Ray's single_client_{put,get}_calls_Plasma_Store.
results.put_calls_per_s = await timeit("put(0) + dispose", () => os.put(0)[Symbol.dispose]());
{
  const kept: os.ObjectRef[] = new Array(1000);
  let next = 0;
  results.put_keep1000_calls_per_s = await timeit("put(0), keep the 1000 most recent", () => {
    kept[next]?.[Symbol.dispose]();
    kept[next] = os.put(0);
    next = (next + 1) % kept.length;
  });
  for (const ref of kept) ref?.[Symbol.dispose]();
}
{
  const ref = os.put(0);
  results.get_calls_per_s = await timeit("get of a put(0)", () => os.get(ref));
  ref[Symbol.dispose]();
}

// --- get latency by size: must be flat (zero-copy).
await collect();
{
  const latency: Record<string, { bytes: number; median_us: number; p99_us: number; min_us: number }> = {};
  for (const [label, bytes] of LATENCY_SIZES) {
    const source = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i += 4096) source[i] = 1;
    const ref = os.put(source);
    for (let i = 0; i < 10; i++) await os.get(ref); // warm-up
    const samples: number[] = [];
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const t0 = performance.now();
      const view = (await os.get(ref)) as Uint8Array;
      samples.push((performance.now() - t0) * 1000);
      if (view.length !== bytes) throw new Error(`get of ${label} returned ${view.length} bytes`);
    }
    ref[Symbol.dispose]();
    await collect();
    samples.sort((a, b) => a - b);
    latency[label] = { bytes, median_us: percentile(samples, 50), p99_us: percentile(samples, 99), min_us: samples[0] };
    log(`get latency ${label}: median ${latency[label].median_us.toFixed(2)} µs, p99 ${latency[label].p99_us.toFixed(2)} µs`);
  }
  results.get_latency_us = latency;
}

// --- Ray's single_client_get_object_containing_10k_refs.
{
  const inner = Array.from({ length: 10_000 }, () => os.put(1));
  const outer = os.put(inner);
  for (const ref of inner) ref[Symbol.dispose](); // the outer object keeps them alive
  const check = (await os.get(outer)) as os.ObjectRef[];
  if (check.length !== 10_000 || (await os.get(check[9_999])) !== 1) throw new Error("10k-ref get returned wrong data");
  for (const ref of check) ref[Symbol.dispose]();

  // As Ray times it: the returned list is dropped inside fn, which releases its 10k refs.
  results.get_10k_refs_per_s = await timeit("get object containing 10k refs (+ dispose them)", async () => {
    const refs = (await os.get(outer)) as os.ObjectRef[];
    for (const ref of refs) ref[Symbol.dispose]();
  });
  // The get alone: returned refs are disposed between groups, off the clock.
  let held: os.ObjectRef[][] = [];
  results.get_10k_refs_only_per_s = await timeit(
    "get object containing 10k refs (get only)",
    async () => held.push((await os.get(outer)) as os.ObjectRef[]),
    {
      cleanup: () => {
        for (const refs of held) for (const ref of refs) ref[Symbol.dispose]();
        held = [];
      },
    },
  );
  outer[Symbol.dispose]();
}

await collect();
results.final_stats = os.memoryStats();
await os.shutdown();

// --- put(0) with the ref simply dropped, as a Python user drops Ray's: the library finds the
// dropped refs by collecting garbage when the refs it holds double (lib/dropped_refs.ts). Last,
// in a store of its own.
await os.init({ objectStoreMemory: STORE_BYTES });
{
  let made = 0;
  try {
    results.put_gc_calls_per_s = await timeit("put(0), ref dropped to the GC", () => {
      os.put(0);
      made++;
    });
  } catch (error) {
    results.put_gc_calls_per_s = { error: String(error), puts_before_failure: made };
    log(`put(0) dropped to the GC failed after ${made} puts: ${error}`);
  }
}
await os.shutdown();
emit(results);
