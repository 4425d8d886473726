/**
 * Diagnostic (lib/ internals): the 800 MiB copy of a put, heap → heap vs heap → store, on the
 * runtime that starts it. Median GB/s of 7 copies each (10⁹ B/s).
 *   node bench/profile_copy.ts | deno run -A bench/profile_copy.ts | bun bench/profile_copy.ts
 */
import * as os from "../mod.ts";
import { session } from "../lib/session.ts";
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const BYTES = 800 * 1024 * 1024;
await os.init({ objectStoreMemory: 2048 * 1024 * 1024 });
const s = session();
const src = new Uint8Array(BYTES);
for (let i = 0; i < BYTES; i += 4096) src[i] = 1;
const dst = new Uint8Array(BYTES);
dst.set(src);
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
function gbps(fn: () => void): number {
  const runs: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    fn();
    runs.push(BYTES / ((performance.now() - t0) / 1000) / 1e9);
  }
  return median(runs);
}
const out: Record<string, number | string> = { runtime };
out["heap -> heap, TypedArray.set"] = gbps(() => dst.set(src));
const id = s.newId();
const target = s.store.create(id, BYTES, undefined, 0) as Uint8Array;
out["heap -> store (same extent each time), TypedArray.set"] = gbps(() => target.set(src));
out["store -> heap, TypedArray.set"] = gbps(() => dst.set(target));
s.store.abort(id);
out["heap -> store, fresh extent each time (create + set + abort)"] = gbps(() => {
  const id2 = s.newId();
  const t = s.store.create(id2, BYTES, undefined, 0) as Uint8Array;
  t.set(src);
  s.store.abort(id2);
});
out["os.put + dispose"] = gbps(() => os.put(src)[Symbol.dispose]());
await os.shutdown();
console.log(JSON.stringify(out));
