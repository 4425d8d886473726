/**
 * SPEC "Lifecycle", "Objects", "Values", "Memory" (reference counting) and "Errors", through
 * the public API only (mod.ts).
 */
import assert from "node:assert/strict";
import { tableFromArrays } from "apache-arrow";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { eventually, eventuallyCollected, uniqueStoreName } from "./helpers.ts";
import { sampleValues } from "./fixtures/values.ts";

const MiB = 1024 * 1024;

async function withStore<T>(work: () => Promise<T>, options: os.InitOptions = {}): Promise<T> {
  await os.init({ objectStoreMemory: 64 * MiB, prefault: false, ...options });
  try {
    return await work();
  } finally {
    await os.shutdown();
  }
}

test("every call before init throws NotInitializedError", async () => {
  assert.equal(os.isInitialized(), false);
  assert.throws(() => os.put(1), os.NotInitializedError);
  await assert.rejects(os.get([]), os.NotInitializedError);
  await assert.rejects(os.wait([]), os.NotInitializedError);
  assert.throws(() => os.free([]), os.NotInitializedError);
  assert.throws(() => os.memoryStats(), os.NotInitializedError);
  assert.throws(() => os.ObjectRef.fromHex("00".repeat(28)), os.NotInitializedError);
  assert.ok(new os.NotInitializedError() instanceof os.ObjstoreError);
});

test("init resolves to the store name and node id; init twice is an error; shutdown ends it", async () => {
  const storeName = uniqueStoreName("lifecycle");
  const result = await os.init({ objectStoreMemory: 16 * MiB, storeName, prefault: false });
  try {
    assert.equal(result.storeName, storeName);
    assert.equal(typeof result.nodeId, "string");
    assert.ok(result.nodeId.length > 0);
    assert.equal(os.isInitialized(), true);
    await assert.rejects(os.init(), /already initialized/);
  } finally {
    await os.shutdown();
  }
  assert.equal(os.isInitialized(), false);
  assert.throws(() => os.put(1), os.NotInitializedError);
  // A fresh private store each time without storeName.
  const a = await os.init({ objectStoreMemory: 16 * MiB, prefault: false });
  await os.shutdown();
  const b = await os.init({ objectStoreMemory: 16 * MiB, prefault: false });
  await os.shutdown();
  assert.notEqual(a.storeName, b.storeName);
});

test("bad init options are clear errors", async () => {
  await assert.rejects(os.init({ objectStoreMemory: -1 }), /objectStoreMemory/);
  await assert.rejects(os.init({ objectStoreMemory: 2 ** 52 }), /objectStoreMemory of .* more than \/dev\/shm/);
  await assert.rejects(os.init({ storeName: "no/slashes" }), /storeName/);
  await assert.rejects(os.init({ spillThreshold: 2 }), /spillThreshold/);
  await assert.rejects(os.init({ address: "http://x" }), /address/);
  assert.equal(os.isInitialized(), false);
});

test("put then get returns equal values of every kind", () =>
  withStore(async () => {
    const values = sampleValues();
    for (const [kind, value] of Object.entries(values)) {
      const ref = os.put(value);
      assert.deepStrictEqual(await os.get(ref), value, kind);
    }
  }));

test("get of a list keeps its order; a non-ref is a TypeError", () =>
  withStore(async () => {
    const refs = Array.from({ length: 50 }, (_, i) => os.put({ i }));
    const values = await os.get(refs);
    assert.deepStrictEqual(values, refs.map((_, i) => ({ i })));
    await assert.rejects(os.get({} as os.ObjectRef), TypeError);
    await assert.rejects(os.get([refs[0], 5 as unknown as os.ObjectRef]), TypeError);
  }));

test("ObjectRef: id, hex, toString, not thenable, fromHex", () =>
  withStore(async () => {
    const ref = os.put("x");
    assert.match(ref.id, /^[0-9a-f]{56}$/);
    assert.equal(ref.hex(), ref.id);
    assert.equal(ref.toString(), `ObjectRef(${ref.id})`);
    assert.equal("then" in ref, false);
    assert.equal(await Promise.resolve(ref), ref);
    const again = os.ObjectRef.fromHex(ref.hex());
    assert.equal(again.id, ref.id);
    assert.equal(await os.get(again), "x");
    assert.throws(() => os.ObjectRef.fromHex("xyz"), TypeError);
    assert.throws(() => os.ObjectRef.fromHex("ab".repeat(27)), TypeError);
    const unknown = os.ObjectRef.fromHex("ab".repeat(28));
    await assert.rejects(os.get(unknown), os.ObjectLostError);
    assert.throws(() => os.put(ref), TypeError);
  }));

test("free and dispose release refs: the object is deleted and the ref unusable", () =>
  withStore(async () => {
    const before = os.memoryStats().objectCount;
    const a = os.put(new Uint8Array(1000));
    const b = os.put("b");
    assert.equal(os.memoryStats().objectCount, before + 2);
    os.free([a]);
    await assert.rejects(os.get(a), os.ObjectLostError);
    b[Symbol.dispose]();
    await assert.rejects(os.get(b), os.ObjectLostError);
    assert.equal(os.memoryStats().objectCount, before);
    os.free(a); // freeing twice is harmless
    {
      using c = os.put(new Uint8Array(MiB));
      assert.equal(os.memoryStats().objectCount, before + 1);
      void c;
    }
    assert.equal(os.memoryStats().objectCount, before);
    assert.throws(() => os.free([1 as unknown as os.ObjectRef]), TypeError);
  }));

test("a second ref to the same object keeps it alive after the first is freed", () =>
  withStore(async () => {
    const a = os.put([1, 2, 3]);
    const b = os.ObjectRef.fromHex(a.hex());
    os.free(a);
    assert.deepStrictEqual(await os.get(b), [1, 2, 3]);
    os.free(b);
    assert.equal(os.memoryStats().objectCount, 0);
  }));

test("refs inside values keep their objects alive and come back as refs", () =>
  withStore(async () => {
    const inner = os.put(new Float64Array([1, 2, 3]));
    const outer = os.put({ inner, list: [inner] });
    os.free(inner);
    const got = (await os.get(outer)) as { inner: os.ObjectRef; list: os.ObjectRef[] };
    assert.ok(got.inner instanceof os.ObjectRef);
    assert.equal(got.inner.id, inner.id);
    assert.deepStrictEqual(await os.get(got.inner), new Float64Array([1, 2, 3]));
    os.free([outer, got.inner, got.list[0]]);
    await eventuallyCollected(() => os.memoryStats().objectCount === 0, 5000, "both objects deleted");
    assert.throws(() => os.put({ gone: inner }), (error: unknown) => {
      assert.ok(error instanceof os.SerializationError);
      assert.match((error as Error).message, /value\.gone.*released/);
      assert.ok((error as Error).cause instanceof os.ObjectLostError || /released/.test(String((error as Error).cause)));
      return true;
    });
  }));

test("binary payloads come back as views over shared memory (zero copy), aligned", () =>
  withStore(async () => {
    const ref = os.put({ a: new Float64Array(1000).fill(1), b: new Uint8Array(7) });
    const first = (await os.get(ref)) as { a: Float64Array; b: Uint8Array };
    const second = (await os.get(ref)) as { a: Float64Array; b: Uint8Array };
    assert.equal(first.a.byteOffset % 64, 0);
    assert.equal(first.b.byteOffset % 64, 0);
    // Views are read-only by contract; writing here only proves both gets see one memory.
    first.a[0] = 42;
    assert.equal(second.a[0], 42);
    assert.ok(os.memoryStats().pinnedBytes > 0);
  }));

test("a view keeps its object pinned until it is garbage collected", () =>
  withStore(async () => {
    const ref = os.put(new Float64Array(100_000));
    let view: Float64Array | undefined = (await os.get(ref)) as Float64Array;
    os.free(ref);
    assert.equal(os.memoryStats().objectCount, 1, "pinned by the view");
    assert.equal(view.length, 100_000);
    view = undefined;
    await eventuallyCollected(() => os.memoryStats().objectCount === 0, 5000, "the view's pin released");
  }));

test("refs dropped without free are collected and their memory returns", () =>
  withStore(async () => {
    const baseline = os.memoryStats().usedBytes;
    (() => {
      for (let i = 0; i < 200; i++) os.put(new Uint8Array(64 * 1024));
    })();
    assert.ok(os.memoryStats().usedBytes >= baseline + 200 * 64 * 1024);
    await eventually(() => {
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      if (g.Bun) g.Bun.gc(true);
      else g.gc();
      return os.memoryStats().usedBytes === baseline;
    }, 10_000, "memory of unreferenced objects returned");
  }));

test("get waits for an object being written; timeout in seconds; 0 does not wait; signal aborts", async () => {
  const storeName = uniqueStoreName("timeout");
  await os.init({ objectStoreMemory: 16 * MiB, storeName, prefault: false });
  try {
    const { writeLater } = await import("./fixtures/unsealed.ts");
    const pending = writeLater();
    const ref = os.ObjectRef.fromHex(pending.hex);
    let started = Date.now();
    await assert.rejects(os.get(ref, { timeout: 0.2 }), os.GetTimeoutError);
    assert.ok(Date.now() - started >= 150, "waited about 0.2 s");
    started = Date.now();
    await assert.rejects(os.get(ref, { timeout: 0 }), os.GetTimeoutError);
    assert.ok(Date.now() - started < 150, "timeout 0 does not wait");
    const [ready, notReady] = await os.wait([ref], { timeout: 0 });
    assert.deepStrictEqual([ready.length, notReady.length], [0, 1]);
    const controller = new AbortController();
    const aborted = os.get(ref, { signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(aborted, /stop/);
    const eventual = os.get(ref, { timeout: 5 });
    setTimeout(() => pending.seal("done"), 50);
    assert.equal(await eventual, "done");
    await assert.rejects(os.get(ref, { timeout: -1 }), TypeError);
  } finally {
    await os.shutdown();
  }
});

test("wait: order kept, numReturns, timeout, and errors for bad arguments", () =>
  withStore(async () => {
    const refs = Array.from({ length: 10 }, (_, i) => os.put(i));
    const [ready, pending] = await os.wait(refs, { numReturns: 3 });
    assert.deepStrictEqual(ready, refs.slice(0, 3));
    assert.deepStrictEqual(pending, refs.slice(3));
    const [all, none] = await os.wait(refs, { numReturns: 10, timeout: 5.0 });
    assert.equal(all.length, 10);
    assert.equal(none.length, 0);
    const [one] = await os.wait(refs);
    assert.equal(one.length, 1);
    await assert.rejects(os.wait(refs, { numReturns: 0 }), /numReturns/);
    await assert.rejects(os.wait(refs, { numReturns: 11 }), /numReturns/);
    await assert.rejects(os.wait(refs, { numReturns: 1.5 }), /numReturns/);
    await assert.rejects(os.wait([refs[0], refs[0]]), /more than once/);
    await assert.rejects(os.wait([refs[0], os.ObjectRef.fromHex(refs[0].hex())]), /more than once/);
    await assert.rejects(os.wait("x" as unknown as os.ObjectRef[]), TypeError);
  }));

test("a value that cannot be stored throws SerializationError naming its path", () =>
  withStore(async () => {
    assert.throws(() => os.put({ a: [1, { b: () => 1 }] }), (error: unknown) => {
      assert.ok(error instanceof os.SerializationError);
      assert.match((error as Error).message, /value\.a\[1\]\.b/);
      return true;
    });
    assert.throws(() => os.put(Symbol("s")), os.SerializationError);
    assert.throws(() => os.put({ w: new WeakMap() }), /value\.w/);
    class NoSerializer {
      x = 1;
    }
    assert.throws(() => os.put([new NoSerializer()]), /NoSerializer/);
    assert.equal(os.memoryStats().objectCount, 0, "nothing half-stored");
  }));

test("registerSerializer and deregisterSerializer", () =>
  withStore(async () => {
    class Point {
      x: number;
      y: number;
      constructor(x: number, y: number) {
        this.x = x;
        this.y = y;
      }
    }
    os.registerSerializer(Point, { serialize: (p: Point) => [p.x, p.y], deserialize: ([x, y]: number[]) => new Point(x, y) });
    const got = await os.get(os.put({ p: new Point(1, 2) }));
    assert.ok((got as { p: Point }).p instanceof Point);
    assert.deepStrictEqual((got as { p: Point }).p, new Point(1, 2));
    os.deregisterSerializer(Point);
    assert.throws(() => os.put(new Point(3, 4)), os.SerializationError);
  }));

test("Arrow tables round-trip through the store", () =>
  withStore(async () => {
    const table = tableFromArrays({ x: new Float64Array([1, 2, 3]), y: new Int32Array([4, 5, 6]) });
    const got = (await os.get(os.put(table))) as typeof table;
    assert.equal(got.numRows, 3);
    assert.deepStrictEqual(Array.from(got.getChild("x")!.toArray()), [1, 2, 3]);
    assert.deepStrictEqual(Array.from(got.getChild("y")!.toArray()), [4, 5, 6]);
  }));

test("a put that cannot fit throws ObjectStoreFullError with sizes; stored objects survive", () =>
  withStore(async () => {
    const kept = os.put(new Uint8Array(512 * 1024).fill(9));
    assert.throws(() => os.put(new Uint8Array(2 * MiB)), (error: unknown) => {
      assert.ok(error instanceof os.ObjectStoreFullError);
      assert.match((error as Error).message, /\d+ bytes/);
      return true;
    });
    const back = (await os.get(kept)) as Uint8Array;
    assert.equal(back.length, 512 * 1024);
    assert.ok(back.every((b) => b === 9));
  }, { objectStoreMemory: MiB, spill: false }));

test("memoryStats reports the store", () =>
  withStore(async () => {
    const stats = os.memoryStats();
    for (const key of ["capacityBytes", "usedBytes", "pinnedBytes", "objectCount", "spilledBytes", "spilledObjects", "restoredBytes", "spilledBytesTotal", "spilledObjectsTotal", "restoredObjectsTotal"]) {
      assert.equal(typeof (stats as unknown as Record<string, unknown>)[key], "number", key);
    }
    assert.ok(stats.capacityBytes >= 16 * MiB);
    const ref = os.put(new Uint8Array(100_000));
    const after = os.memoryStats();
    assert.equal(after.objectCount, stats.objectCount + 1);
    assert.ok(after.usedBytes >= stats.usedBytes + 100_000);
    os.free(ref);
  }, { objectStoreMemory: 16 * MiB }));

test("shutdown releases every ref; the last process removes the store", async () => {
  const storeName = uniqueStoreName("removal");
  await os.init({ objectStoreMemory: 16 * MiB, storeName, prefault: false });
  const ref = os.put("kept until shutdown");
  const hex = ref.hex();
  await os.shutdown();
  await assert.rejects(os.get(ref), os.NotInitializedError);
  await os.init({ objectStoreMemory: 16 * MiB, storeName, prefault: false });
  try {
    assert.equal(os.memoryStats().objectCount, 0);
    await assert.rejects(os.get(os.ObjectRef.fromHex(hex)), os.ObjectLostError);
  } finally {
    await os.shutdown();
  }
});
