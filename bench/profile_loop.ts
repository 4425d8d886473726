/**
 * Diagnostic: runs one small-value workload in a loop for a few seconds, for a profiler.
 *   node --cpu-prof --cpu-prof-dir=bench/profiles bench/profile_loop.ts put|get|get10k [seconds]
 *   perf record -g node --perf-basic-prof bench/profile_loop.ts put
 */
import * as os from "../mod.ts";
// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const args: string[] = g.Deno ? g.Deno.args : g.process.argv.slice(2);
const what = args[0] ?? "put";
const seconds = Number(args[1] ?? 3);
await os.init({ objectStoreMemory: 512 * 1024 * 1024 });
const end = performance.now() + seconds * 1000;
let n = 0;
if (what === "put") {
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) os.put(0)[Symbol.dispose]();
    n += 1000;
  }
} else if (what === "get") {
  const ref = os.put(0);
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) await os.get(ref);
    n += 1000;
  }
} else {
  const inner = Array.from({ length: 10_000 }, () => os.put(1));
  const outer = os.put(inner);
  for (const r of inner) r[Symbol.dispose]();
  while (performance.now() < end) {
    const refs = (await os.get(outer)) as os.ObjectRef[];
    for (const r of refs) r[Symbol.dispose]();
    n++;
  }
}
console.log(`${what}: ${n} ops in ${seconds} s = ${(n / seconds).toFixed(0)}/s`);
await os.shutdown();
