// A user's first program, run from a fresh project that installed the packed tarballs
// (scripts/test_package.sh): a typed array in, back zero-copy, a remote task on it, wait.
import assert from "node:assert/strict";
import * as os from "@objstore/core";

const { storeName } = await os.init({ objectStoreMemory: 64 * 1024 * 1024, numWorkers: 1 });
const numbers = Float64Array.from({ length: 1_000_000 }, (_, i) => i);
const ref = os.put(numbers);
const view = await os.get(ref);
assert.ok(view instanceof Float64Array && view.length === numbers.length);
assert.equal(view[999_999], 999_999);
// Zero-copy: a second get is a view of the same shared memory.
assert.equal((await os.get(ref)).buffer, view.buffer);

const sum = os.remote((a: Float64Array) => a.reduce((s, x) => s + x, 0));
const total = sum.remote(ref);
const [ready] = await os.wait([total], { numReturns: 1, timeout: 60 });
assert.equal(ready.length, 1);
assert.equal(await os.get(total), (999_999 * 1_000_000) / 2);
// A task may use the library itself (here: put and get from inside the worker).
const nested = os.remote(async (n: number) => {
  const inner = await import("@objstore/core");
  return await inner.get(inner.put(n * 2));
});
assert.equal(await os.get(nested.remote(21)), 42);

console.log(`ok ${storeName} ${os.memoryStats().objectCount} objects`);
await os.shutdown();
