/**
 * Diagnostic (uses lib/ internals; not part of the suite): what a small put and get cost, part by
 * part, on whichever runtime starts it.
 *   node bench/profile_small.ts | deno run -A bench/profile_small.ts | bun bench/profile_small.ts
 * 1. FFI calls per operation, counted by wrapping the bound symbols.
 * 2. ns per call of each step of put(0) + dispose and get: a null FFI call, objstore_create,
 *    seal, ref_drop, get, release, encode(0), newId, new ObjectRef (FinalizationRegistry), and
 *    the whole operation. Medians of 5 runs of ~200 ms.
 * Prints one JSON line.
 */
import * as os from "../mod.ts";
import { session } from "../lib/session.ts";
import { encode } from "../lib/codec/mod.ts";
import { ObjectRef } from "../lib/object_ref.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
await os.init({ objectStoreMemory: 256 * 1024 * 1024 });
const s = session();
// deno-lint-ignore no-explicit-any
const symbols = s.library.symbols as any;

// --- 1. FFI calls per operation.
const counts: Record<string, number> = {};
const originals: Record<string, unknown> = {};
let wrapped = true;
try {
  for (const name of Object.keys(symbols)) {
    const fn = symbols[name];
    originals[name] = fn;
    symbols[name] = (...a: unknown[]) => {
      counts[name] = (counts[name] ?? 0) + 1;
      return fn(...a);
    };
  }
} catch {
  wrapped = false;
}
function countCalls(op: () => unknown, n = 1000): Record<string, number> | string {
  if (!wrapped) return "symbols object is not writable on this runtime";
  for (const k of Object.keys(counts)) delete counts[k];
  for (let i = 0; i < n; i++) op();
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / n]));
}
const kept = os.put(0);
const perOp: Record<string, unknown> = {};
perOp["put(0) + dispose"] = countCalls(() => os.put(0)[Symbol.dispose]());
perOp["put({a:1})"] = countCalls(() => os.put({ a: 1 })[Symbol.dispose]());
{
  // get is async: count around awaited calls
  for (const k of Object.keys(counts)) delete counts[k];
  for (let i = 0; i < 1000; i++) await os.get(kept);
  perOp["get(put(0))"] = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / 1000]));
  const big = os.put(new Float64Array(1024));
  for (const k of Object.keys(counts)) delete counts[k];
  for (let i = 0; i < 100; i++) await os.get(big);
  perOp["get(8 KiB Float64Array)"] = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / 100]));
  big[Symbol.dispose]();
  const inner = Array.from({ length: 10_000 }, () => os.put(1));
  const outer = os.put(inner);
  for (const r of inner) r[Symbol.dispose]();
  for (const k of Object.keys(counts)) delete counts[k];
  const got = (await os.get(outer)) as os.ObjectRef[];
  perOp["get(10k-ref array)"] = { ...counts };
  for (const k of Object.keys(counts)) delete counts[k];
  for (const r of got) r[Symbol.dispose]();
  perOp["dispose the 10k returned refs"] = { ...counts };
  outer[Symbol.dispose]();
}
if (wrapped) for (const name of Object.keys(originals)) symbols[name] = originals[name];

// --- 2. ns per step.
function measureOnce(fn: () => unknown, ms = 200): number {
  for (let i = 0; i < 1000; i++) fn();
  let iterations = 1000;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) fn();
    const elapsed = performance.now() - t0;
    if (elapsed > ms) return (elapsed * 1e6) / iterations;
    iterations *= elapsed < ms / 8 ? 8 : 2;
  }
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
const measure = (fn: () => unknown) => median(Array.from({ length: 5 }, () => measureOnce(fn)));
async function measureAsync(fn: () => Promise<unknown>): Promise<number> {
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    for (let i = 0; i < 1000; i++) await fn();
    const n = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fn();
    runs.push(((performance.now() - t0) * 1e6) / n);
  }
  return median(runs);
}

const handle = (s.store as unknown as Record<string, unknown>);
void handle;
const hooks = { refId: () => undefined };
const ns: Record<string, number> = {};
ns["FFI objstore_abi_version (no args)"] = measure(() => symbols.objstore_abi_version());
const absent = new Uint8Array(28).fill(7);
ns["FFI objstore_contains (handle + 28-byte id)"] = measure(() => s.store.contains(absent));
ns["encode(0)"] = measure(() => encode(0, hooks));
ns["session.newId()"] = measure(() => s.newId());
{
  // create + seal + ref_drop straight through NativeStore (no codec, no ObjectRef)
  const enc = encode(0, hooks);
  ns["store.create + writeInto + seal + dropRef"] = measure(() => {
    const id = s.newId();
    const target = s.store.create(id, enc.sizeBytes, undefined, 0) as Uint8Array;
    enc.writeInto(target);
    s.store.seal(id);
    s.store.dropRef(id);
  });
  ns["store.create + abort"] = measure(() => {
    const id = s.newId();
    s.store.create(id, enc.sizeBytes, undefined, 0);
    s.store.abort(id);
  });
}
{
  // ObjectRef construction registers with a FinalizationRegistry; dispose drops the ref
  const id = kept.bytes;
  ns["new ObjectRef, untracked (no FinalizationRegistry, no store call)"] = measure(() => new ObjectRef(id, undefined));
  const owner = { addRef: () => "held" as const, dropRef: () => {}, releaseKeptObjects: () => {}, collectGarbage: () => {}, closed: false };
  ns["new ObjectRef + dispose, tracked (Holding + FinalizationRegistry.register, no store call)"] = measure(() => new ObjectRef(id, owner)[Symbol.dispose]());
}
ns["os.put(0) + dispose"] = measure(() => os.put(0)[Symbol.dispose]());
ns["store.get + store.release (no decode)"] = measure(() => {
  s.store.get(kept.bytes);
  s.store.release(kept.bytes);
});
ns["await os.get(put(0))"] = await measureAsync(() => os.get(kept));
ns["await Promise.resolve() (async floor)"] = await measureAsync(() => Promise.resolve());
kept[Symbol.dispose]();
await os.shutdown();
console.log(JSON.stringify({ runtime, ffi_calls_per_op: perOp, ns_per_call: ns }));
