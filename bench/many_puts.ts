/**
 * Ten million `put(0)`s with the refs dropped, in one synchronous loop, in a default store
 * (issue 15, item 2): the loop must finish on every runtime, in flat memory.
 *
 *   node --expose-gc bench/many_puts.ts [--quick] [--puts N]
 *   deno run -A --v8-flags=--expose-gc bench/many_puts.ts [--quick]
 *   bun bench/many_puts.ts [--quick]
 *
 * Every 1/10 of the loop: the objects in the store, its bytes in use, the process's RSS and
 * JavaScript heap. "Flat" = the second half's highest RSS within 10 % of the first half's, and
 * never more than 3 × 65,536 objects alive (the number swings between sweeps, which run when the
 * refs held double, at least 65,536 more).
 * The store is not prefaulted. `--quick`: 300,000 puts in a 512 MiB store. Progress goes to
 * stderr; stdout gets one JSON line.
 */
import process from "node:process";
import * as os from "../mod.ts";
import { emit, loadavg, log, MiB, option, quick, runtime, runtimeVersion } from "./lib/harness.ts";

const puts = Number(option("--puts") ?? (quick ? 300_000 : 10_000_000));
const loadBefore = loadavg();
// Not prefaulted: the RSS then shows what the loop uses, not the store's pages faulting in.
await os.init({ ...(quick ? { objectStoreMemory: 512 * MiB } : {}), numWorkers: 0, prefault: false });
const capacityBytes = os.memoryStats().capacityBytes;
log(`many_puts on ${runtime} ${runtimeVersion}: ${puts} put(0)s, refs dropped, one synchronous loop, store ${(capacityBytes / 2 ** 30).toFixed(2)} GiB`);

interface Sample {
  puts: number;
  seconds: number;
  objectCount: number;
  usedBytes: number;
  rssBytes: number;
  heapBytes: number;
}
const samples: Sample[] = [];
let error: string | undefined;
const step = Math.max(1, Math.floor(puts / 10));
const started = performance.now();
try {
  for (let i = 1; i <= puts; i++) {
    os.put(0);
    if (i % step === 0) {
      const { objectCount, usedBytes } = os.memoryStats();
      const memory = process.memoryUsage();
      const sample = { puts: i, seconds: (performance.now() - started) / 1000, objectCount, usedBytes, rssBytes: memory.rss, heapBytes: memory.heapUsed };
      samples.push(sample);
      log(`${i} puts, ${sample.seconds.toFixed(1)} s: ${objectCount} objects, ${usedBytes} B in use, RSS ${(memory.rss / MiB).toFixed(0)} MiB, heap ${(memory.heapUsed / MiB).toFixed(0)} MiB`);
    }
  }
} catch (caught) {
  error = String(caught);
  log(`FAILED after ${samples.at(-1)?.puts ?? 0}+ puts: ${error}`);
}
const seconds = (performance.now() - started) / 1000;
await os.shutdown();
function flat(all: Sample[]): boolean {
  if (all.length < 2) return false;
  const half = Math.floor(all.length / 2);
  const peak = (part: Sample[]) => Math.max(...part.map((s) => s.rssBytes));
  return peak(all.slice(half)) <= 1.1 * peak(all.slice(0, half)) && all.every((s) => s.objectCount <= 3 * 65_536);
}
const first = samples[0];
const last = samples.at(-1);
const max = (key: keyof Sample) => Math.max(...samples.map((s) => s[key]));
const result = {
  runtime,
  runtime_version: runtimeVersion,
  quick,
  puts,
  finished: error === undefined && last?.puts === puts,
  error,
  seconds,
  puts_per_s: (last?.puts ?? 0) / seconds,
  store_bytes: capacityBytes,
  max_objects: samples.length ? max("objectCount") : undefined,
  max_used_bytes: samples.length ? max("usedBytes") : undefined,
  rss_first_last_max_bytes: first && last ? [first.rssBytes, last.rssBytes, max("rssBytes")] : undefined,
  flat: flat(samples),
  samples,
  load_before: loadBefore,
  load_after: loadavg(),
};
log(`${result.finished ? "finished" : "NOT finished"}: ${(result.puts_per_s / 1000).toFixed(0)}k puts/s, at most ${result.max_objects} objects, flat: ${result.flat}`);
emit(result);
