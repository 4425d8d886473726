/**
 * Diagnostic: where a get of a large binary object spends its time. Not part of the suite.
 *   node --expose-gc --cpu-prof --cpu-prof-dir=bench/profiles bench/profile_get_large.ts [MiB] [n]
 * Prints the median get time; with --trace-gc shows the collections the gets trigger.
 */
import * as os from "../mod.ts";
// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const args: string[] = g.Deno ? g.Deno.args : g.process.argv.slice(2);
const mib = Number(args[0] ?? 1024);
const n = Number(args[1] ?? 200);
await os.init({ objectStoreMemory: 2048 * 1024 * 1024 });
const ref = os.put(new Uint8Array(mib * 1024 * 1024));
const samples: number[] = [];
let sink = 0;
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  const v = (await os.get(ref)) as Uint8Array;
  samples.push((performance.now() - t0) * 1000);
  sink += v.length;
}
samples.sort((a, b) => a - b);
console.log(`${mib} MiB get: median ${samples[n >> 1].toFixed(1)} µs, p90 ${samples[Math.floor(n * 0.9)].toFixed(1)} µs, min ${samples[0].toFixed(1)} µs (${sink > 0})`);
ref[Symbol.dispose]();
await os.shutdown();
