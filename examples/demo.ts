/**
 * The demo: SPEC's "Examples" — the object store, tasks passing refs to each other, actors —
 * printing what happens and how fast.
 *
 *   bash scripts/demo.sh            (Node 24)
 *   deno run -A examples/demo.ts    bun examples/demo.ts
 */
import * as os from "../mod.ts";

const GiB = 1024 ** 3;
const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

const started = performance.now();
const { storeName } = await os.init({ objectStoreMemory: 4 * GiB });
console.log(`init: store ${storeName} of 4 GiB on ${runtime} (${(seconds(started) * 1000).toFixed(1)} ms)`);

// A large value goes into the store once; readers get views, not copies.
const big = new Float64Array(10_000 * 10_000); // 800 MB of zeros
let t = performance.now();
const ref = os.put(big);
const putSeconds = seconds(t);
console.log(`put: 800 MB Float64Array in ${(putSeconds * 1000).toFixed(0)} ms (${(big.byteLength / putSeconds / 1e9).toFixed(1)} GB/s)`);
t = performance.now();
const view = (await os.get(ref)) as Float64Array;
console.log(`get: ${view.length.toLocaleString()} elements in ${((performance.now() - t) * 1000).toFixed(0)} µs — a view over shared memory, no copy`);
console.log(`     sum of the view: ${view.reduce((a, b) => a + b, 0)}`);

// Tasks get the ref, not a copy: the worker reads the array zero-copy.
const total = os.remote((arr: Float64Array) => arr.reduce((a, b) => a + b, 0));
t = performance.now();
console.log(`total.remote(ref): ${await os.get(total.remote(ref))} (${(performance.now() - t).toFixed(0)} ms, workers started on first use)`);

// Wait for the first ten of a hundred tasks, five seconds at most.
const task = os.remote((i: number) => i * i);
t = performance.now();
const refs = Array.from({ length: 100 }, (_, i) => task.remote(i));
const [ready, pending] = await os.wait(refs, { numReturns: 10, timeout: 5.0 });
console.log(`wait: ${ready.length} ready, ${pending.length} pending of 100 tasks after ${((performance.now() - t) * 1000).toFixed(0)} µs`);
const squares = await os.get(refs);
console.log(`get of a list: [${squares.slice(0, 5).join(", ")}, …] in one call`);

// Refs passed from task to task: the driver never touches the array.
const shift = os.remote((arr: Float64Array, n: number) => arr.map((x) => x + n));
const stats = os.remote((arr: Float64Array) => {
  const mean = arr.reduce((a, b) => a + b, 0) / arr.length;
  const std = Math.sqrt(arr.reduce((a, b) => a + (b - mean) ** 2, 0) / arr.length);
  return [mean, std];
});
t = performance.now();
console.log(`stats.remote(shift.remote(ref, 5)): [${await os.get(stats.remote(shift.remote(ref, 5)))}] (${(performance.now() - t).toFixed(0)} ms for 2 × 800 MB of work)`);

// An actor keeps its state in a process of its own; calls run in order.
class Counter {
  n = 0;
  inc(k: number) {
    return (this.n += k);
  }
}
const counter = os.remote(Counter).remote();
console.log(`actor: ${await os.get([counter.inc.remote(1), counter.inc.remote(2), counter.inc.remote(3)])}`);
os.kill(counter);

// Tasks per second, one at a time and 1000 in flight.
t = performance.now();
for (let i = 0; i < 200; i++) await os.get(task.remote(i));
const syncRate = 200 / seconds(t);
t = performance.now();
await os.get(Array.from({ length: 2000 }, (_, i) => task.remote(i)));
console.log(`tasks: ${Math.round(syncRate).toLocaleString()}/s one at a time, ${Math.round(2000 / seconds(t)).toLocaleString()}/s in flight`);

// Small puts and gets per second.
const n = 100_000;
t = performance.now();
for (let i = 0; i < n; i++) os.put(i)[Symbol.dispose]();
const putRate = n / seconds(t);
const small = os.put(0);
t = performance.now();
for (let i = 0; i < n; i++) await os.get(small);
const getRate = n / seconds(t);
console.log(`small values: ${Math.round(putRate).toLocaleString()} puts/s, ${Math.round(getRate).toLocaleString()} gets/s`);

// Keeping a ref keeps its object; dropping every ref frees it.
const before = os.memoryStats().objectCount;
{
  using tmp = os.put(new Uint8Array(1 << 20));
  console.log(`using: a 1 MiB object exists while its ref is in scope (${os.memoryStats().objectCount - before} extra object)`);
  void tmp;
}
console.log(`using: released at the end of the block (${os.memoryStats().objectCount - before} extra objects)`);

// Custom classes.
class Point {
  x: number;
  y: number;
  constructor(x: number, y: number) {
    this.x = x;
    this.y = y;
  }
}
os.registerSerializer(Point, {
  serialize: (p: Point) => [p.x, p.y],
  deserialize: ([x, y]: number[]) => new Point(x, y),
});
const point = (await os.get(os.put(new Point(3, 4)))) as Point;
console.log(`custom class: got back a ${point.constructor.name} (${point.x}, ${point.y})`);

const memory = os.memoryStats();
console.log(`memory: ${memory.objectCount} objects, ${(memory.usedBytes / 1e6).toFixed(1)} MB used of ${(memory.capacityBytes / 1e9).toFixed(1)} GB`);
await os.shutdown();
console.log(`shutdown: done in ${seconds(started).toFixed(2)} s total`);
