/**
 * Views of large objects (issue 15 item 4: the first get of a large object stays O(1)). On V8
 * every view is a buffer V8 counts as external memory, and a count that grows past V8's limits
 * starts a garbage collection inside the `get`; lib/ffi/v8_views.ts trades each view for reserve
 * V8 already counts. These tests pin down what that trade must keep: V8's count stays flat, the
 * reserve comes back when views are collected, and a view (and anything made from its buffer)
 * still pins its object.
 */
import assert from "node:assert/strict";
import v8 from "node:v8";
import * as os from "../mod.ts";
import { ReservedViews } from "../lib/ffi/v8_views.ts";
import { test } from "./harness.ts";
import { collectGarbage, currentRuntime, eventuallyCollected } from "./helpers.ts";

const MiB = 1024 * 1024;
const OBJECT_BYTES = 64 * MiB;
/** V8 counts views; JavaScriptCore does not count Bun's, so there the count is not asserted. */
const countsViews = currentRuntime !== "bun";

function externalBytes(): number {
  return v8.getHeapStatistics().external_memory;
}

async function withStore(work: () => Promise<void>): Promise<void> {
  await os.init({ objectStoreMemory: 256 * MiB, prefault: false, numWorkers: 0 });
  try {
    await work();
  } finally {
    await os.shutdown();
  }
}

function marked(k: number): Uint8Array {
  const bytes = new Uint8Array(OBJECT_BYTES);
  bytes[0] = k;
  bytes[OBJECT_BYTES - 1] = k + 1;
  return bytes;
}

test(`the first get of a 64 MiB object leaves V8's count of external memory where it was (${currentRuntime})`, () =>
  withStore(async () => {
    const ref = os.put(marked(7));
    const before = externalBytes();
    const view = (await os.get(ref)) as Uint8Array;
    const grownBytes = externalBytes() - before;
    assert.equal(view.length, OBJECT_BYTES);
    assert.equal(view[0], 7);
    assert.equal(view[OBJECT_BYTES - 1], 8);
    if (countsViews) assert.ok(grownBytes < MiB, `V8 counted ${grownBytes} more bytes of external memory after the get`);
  }));

/** Gets `refs` (holding views of objects `first`, `first + 1`, …), checks them, drops them;
 * returns how much more external memory V8 counted while they were held. In a function of its
 * own, so that no slot of the caller's suspended frame keeps a view alive. */
async function getAndDrop(refs: os.ObjectRef[], first: number): Promise<number> {
  const before = externalBytes();
  const views = (await os.get(refs)) as Uint8Array[];
  const grownBytes = externalBytes() - before;
  for (const [k, view] of views.entries()) assert.equal(view[OBJECT_BYTES - 1], first + k + 1, `object ${first + k}`);
  return grownBytes;
}

test(`gets of large objects whose views are collected keep V8's count flat round after round (${currentRuntime})`, () =>
  withStore(async () => {
    // Three 64 MiB views at a time, ten rounds: 1.9 GiB of views in all, against a reserve of
    // at most the 256 MiB store. Flat only if collected views give their reserve back.
    for (let round = 0; round < 10; round++) {
      const refs = [0, 1, 2].map((k) => os.put(marked(round + k)));
      const grownBytes = await getAndDrop(refs, round);
      if (countsViews) assert.ok(grownBytes < MiB, `round ${round}: V8 counted ${grownBytes} more bytes after three gets`);
      for (const ref of refs) os.free(ref);
      await eventuallyCollected(() => os.memoryStats().objectCount === 0, 10_000, `round ${round}: the views' pins released`);
    }
  }), { timeoutMs: 120_000 });

/** A get of `ref` that keeps only a 16-byte array made from the view's buffer (its last bytes). */
async function tailOf(ref: os.ObjectRef): Promise<{ tail?: Uint8Array }> {
  const view = (await os.get(ref)) as Uint8Array;
  return { tail: new Uint8Array(view.buffer, view.byteOffset + OBJECT_BYTES - 16, 16) };
}

test(`a large view and a buffer made from its buffer keep the object pinned until both are collected (${currentRuntime})`, () =>
  withStore(async () => {
    const ref = os.put(marked(3));
    const held = await tailOf(ref);
    os.free(ref);
    await collectGarbage();
    await collectGarbage();
    assert.equal(os.memoryStats().objectCount, 1, "pinned by the buffer the derived array shares");
    // Puts that need room must not reuse the freed object's bytes while they are viewed.
    const others = [0, 1].map((k) => os.put(marked(100 + k)));
    assert.equal(held.tail![15], 4, "the derived array still reads the object");
    delete held.tail;
    await eventuallyCollected(() => os.memoryStats().objectCount === others.length, 10_000, "the pin released");
  }));

/** A store larger than three quarters of V8's heap limit (the default store is 30 % of RAM,
 * 7 GiB here against a 4 GiB heap). */
function largeStoreBytes(): number {
  return Math.ceil(v8.getHeapStatistics().heap_size_limit * 0.85 / MiB) * MiB;
}

test(`in a store larger than V8's heap limit allows, a put and the first get of 256 MiB leave V8's count where it was (${currentRuntime})`, async () => {
  const before = externalBytes();
  await os.init({ objectStoreMemory: largeStoreBytes(), prefault: false, numWorkers: 0 });
  try {
    // The library's windows stay within their budget whatever the store's size, which leaves
    // room for the reserve the large views are traded for.
    const openedBytes = externalBytes() - before;
    const heapLimitBytes = v8.getHeapStatistics().heap_size_limit;
    if (countsViews) assert.ok(openedBytes <= heapLimitBytes * 0.8, `V8 counts ${openedBytes} bytes for the store's windows and reserve`);
    // Objects all over the store, read back: windows are made as they are reached, within the budget.
    const spread = Array.from({ length: 8 }, (_, k) => os.put(new Uint8Array(16 * MiB).fill(k + 1)));
    const value = new Uint8Array(256 * MiB);
    value[0] = 5;
    value[value.length - 1] = 6;
    const atPut = externalBytes();
    const ref = os.put(value);
    const putGrownBytes = externalBytes() - atPut;
    const atGet = externalBytes();
    const view = (await os.get(ref)) as Uint8Array;
    const getGrownBytes = externalBytes() - atGet;
    assert.equal(view[0], 5);
    assert.equal(view[view.length - 1], 6);
    for (const [k, small] of spread.entries()) {
      const bytes = (await os.get(small)) as Uint8Array;
      assert.equal(bytes[0] + bytes[bytes.length - 1], 2 * (k + 1), `object ${k}`);
    }
    if (countsViews) {
      assert.ok(putGrownBytes < MiB, `V8 counted ${putGrownBytes} more bytes after the put`);
      assert.ok(getGrownBytes < MiB, `V8 counted ${getGrownBytes} more bytes after the get`);
      assert.ok(externalBytes() - before <= heapLimitBytes * 0.8 + 512 * MiB, "windows within their budget after objects all over the store were read");
    }
  } finally {
    await os.shutdown();
  }
}, { timeoutMs: 120_000 });

/** A segment stand-in: each view a fresh ArrayBuffer, remembered weakly (to check what was
 * detached without keeping views from being collected). */
function fakeSegment(): { make: (offsetBytes: number, lengthBytes: number) => ArrayBuffer; made: () => ArrayBuffer[] } {
  const made: WeakRef<ArrayBuffer>[] = [];
  return {
    made: () => made.map((ref) => ref.deref()).filter((buffer) => buffer !== undefined),
    make: (_offsetBytes, lengthBytes) => {
      const buffer = new ArrayBuffer(lengthBytes);
      made.push(new WeakRef(buffer));
      return buffer;
    },
  };
}

test("the reserve: a view of two pieces or more takes at least its size from it; smaller views and what it lacks are plain", () => {
  const { make } = fakeSegment();
  const views = new ReservedViews(make, 20 * MiB, 4 * MiB);
  assert.equal(views.swapMinBytes, 8 * MiB);
  assert.equal(views.reserveBytes, 20 * MiB);

  assert.equal(views.view(0, 8 * MiB - 1).byteLength, 8 * MiB - 1);
  assert.equal(views.reserveBytes, 20 * MiB, "a view under two pieces leaves the reserve alone");

  assert.equal(views.view(0, 9 * MiB).byteLength, 9 * MiB);
  assert.equal(views.reserveBytes, 8 * MiB, "took three 4 MiB pieces; the 3 MiB left over is owed");
  assert.equal(views.capacityBytes, 20 * MiB);

  assert.equal(views.view(0, 12 * MiB).byteLength, 12 * MiB, "larger than the reserve: a view all the same");
  assert.equal(views.reserveBytes, 0, "took all the reserve had");
  assert.equal(views.capacityBytes, 20 * MiB, "17 MiB lent, 3 MiB owed; the view's other 4 MiB counted as before");
});

test("the reserve: a collected view gives back a piece of its size, which the next view of that size takes alone; close detaches every piece", async () => {
  const { make, made } = fakeSegment();
  const views = new ReservedViews(make, 64 * MiB, 8 * MiB);
  // In a function of its own, so that no stack slot keeps the view alive.
  (() => void views.view(0, 20 * MiB))();
  assert.equal(views.reserveBytes, 40 * MiB, "three 8 MiB pieces taken, 4 MiB owed");
  await eventuallyCollected(() => views.reserveBytes === 60 * MiB, 10_000, "the collected view's 20 MiB back as one piece");
  const again = views.view(0, 20 * MiB);
  assert.equal(views.reserveBytes, 40 * MiB, "took the 20 MiB piece alone");
  assert.equal(views.capacityBytes, 64 * MiB);

  const pieces = made().filter((buffer) => buffer !== again && buffer.byteLength > 0 && buffer.byteLength !== 20 * MiB);
  assert.equal(pieces.length, 5, "five 8 MiB pieces left in the reserve");
  views.retire(again);
  assert.equal(again.byteLength, 0, "a retired view is detached");
  assert.equal(views.reserveBytes, 60 * MiB, "and gives its reserve back at once");
  views.close();
  for (const buffer of pieces) assert.equal(buffer.byteLength, 0, "every piece detached");
  assert.equal(views.reserveBytes, 0);
  assert.equal(views.view(0, 2 * MiB).byteLength, 2 * MiB, "a closed reserve still makes plain views");
});
