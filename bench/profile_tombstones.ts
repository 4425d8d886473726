/**
 * Diagnostic: put(0) + dispose cost in a fresh store, and after the index once held a fraction
 * of its capacity of objects (all since freed). Freed slots become tombstones; this shows what
 * they cost later puts.
 *   node bench/profile_tombstones.ts | deno run -A bench/profile_tombstones.ts | bun bench/profile_tombstones.ts
 */
import * as os from "../mod.ts";
const STORE = 128 * 1024 * 1024; // index of 65,536 slots (store bytes / 2048)
function rate(): number {
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 200) {
      for (let i = 0; i < 100; i++) os.put(0)[Symbol.dispose]();
      n += 100;
    }
    runs.push(((performance.now() - t0) * 1000) / n);
  }
  return runs.sort((a, b) => a - b)[1];
}
const out: Record<string, number> = {};
for (const fraction of [0, 0.5, 0.75, 0.9, 0.97, 1]) {
  await os.init({ objectStoreMemory: STORE });
  const refs: os.ObjectRef[] = [];
  try {
    for (let i = 0; ; i++) {
      if (fraction < 1 && i >= fraction * (STORE / 2048)) break;
      refs.push(os.put(0));
    }
  } catch { /* index full: fraction 1 */ }
  const held = refs.length;
  for (const r of refs) r[Symbol.dispose]();
  out[`µs per put(0)+dispose after ${held} objects were held and freed`] = rate();
  await os.shutdown();
}
console.log(JSON.stringify(out, null, 1));
