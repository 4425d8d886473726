/**
 * SPEC "Memory, spilling and lifetimes": many objects. Refs dropped without `free` inside a
 * synchronous loop (Ray's `ray.put(0)` microbenchmark, as a Python user writes it) are
 * released while the loop runs; the object limit grows with the store and, when reached, says
 * so. (`bench/many_puts.ts` runs the 10-million-put loop.)
 */
import assert from "node:assert/strict";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { eventuallyCollected } from "./helpers.ts";

const MiB = 1024 * 1024;

async function withStore<T>(work: () => Promise<T>, options: os.InitOptions = {}): Promise<T> {
  await os.init({ objectStoreMemory: 64 * MiB, prefault: false, numWorkers: 0, ...options });
  try {
    return await work();
  } finally {
    await os.shutdown();
  }
}

/** A 64 MiB store used to stop at 65,536 objects, refs dropped or not. */
const OLD_LIMIT = 65_536;

test("a synchronous loop of 500,000 put(0)s with dropped refs finishes, and the store stays small", () =>
  withStore(async () => {
    let most = 0;
    (() => {
      for (let i = 1; i <= 500_000; i++) {
        os.put(i % 7);
        if (i % 20_000 === 0) most = Math.max(most, os.memoryStats().objectCount);
      }
    })();
    // Released while the loop ran: never more than about twice the sweep threshold alive.
    assert.ok(most <= 3 * OLD_LIMIT, `at most ${most} objects alive during the loop`);
    assert.ok(most >= 1000, "the loop did keep objects alive between sweeps");
    await eventuallyCollected(() => os.memoryStats().objectCount === 0, 10_000, "every dropped ref released");
    assert.equal(os.memoryStats().usedBytes, 0);
  }), { timeoutMs: 120_000 });

test("refs kept alive are never released by a sweep, whatever the loop drops around them", () =>
  withStore(async () => {
    const kept: os.ObjectRef[] = [];
    (() => {
      for (let i = 0; i < 300_000; i++) {
        const ref = os.put(i);
        if (i % 1000 === 0) kept.push(ref);
      }
    })();
    assert.equal(kept.length, 300);
    for (let k = 0; k < kept.length; k += 37) assert.equal(await os.get(kept[k]), k * 1000);
    os.free(kept);
    await eventuallyCollected(() => os.memoryStats().objectCount === 0, 10_000, "every ref released");
  }), { timeoutMs: 120_000 });

test("a 64 MiB store holds 262,144 live objects; one more names the object limit and how to raise it", () =>
  withStore(async () => {
    const limit = 262_144;
    const refs: os.ObjectRef[] = [];
    for (let i = 0; i < limit; i++) refs.push(os.put(0));
    assert.equal(os.memoryStats().objectCount, limit);
    assert.throws(() => os.put(0), (error: unknown) => {
      assert.ok(error instanceof os.ObjectStoreFullError);
      const message = (error as Error).message;
      assert.match(message, /object limit/);
      assert.match(message, /262144 objects/);
      assert.match(message, /larger objectStoreMemory/);
      return true;
    });
    os.free(refs);
    assert.equal(os.memoryStats().objectCount, 0);
    os.free(os.put("room again"));
  }), { timeoutMs: 120_000 });

test("a full store names the bytes limit, its value and how to raise it", () =>
  withStore(async () => {
    const kept = os.put(new Uint8Array(700 * 1024));
    assert.throws(() => os.put(new Uint8Array(512 * 1024)), (error: unknown) => {
      assert.ok(error instanceof os.ObjectStoreFullError);
      const message = (error as Error).message;
      assert.match(message, /1048576 bytes/);
      assert.match(message, /larger objectStoreMemory/);
      return true;
    });
    os.free(kept);
  }, { objectStoreMemory: MiB, spill: false }));

class Counter {
  count = 0;
  add(n: number) {
    this.count += n;
    return this.count;
  }
}

test("after a burst (300,000 dropped put(0)s, big puts, a 10k-ref get) tasks, wait and actors work in the same process", () =>
  withStore(async () => {
    (() => {
      for (let i = 0; i < 300_000; i++) os.put(0);
    })();
    const big = new Float64Array(2 * MiB);
    for (let i = 0; i < 3; i++) os.put(big)[Symbol.dispose]();
    const inner = Array.from({ length: 10_000 }, (_, i) => os.put(i));
    const outer = os.put(inner);
    os.free(inner);
    // In a function of its own: a suspended async function keeps its locals' last values.
    const lastOfGot = async () => await os.get(((await os.get(outer)) as os.ObjectRef[])[9_999]);
    for (let i = 0; i < 3; i++) assert.equal(await lastOfGot(), 9_999);
    os.free(outer);

    const small = os.remote((i: number) => new Uint8Array(8).fill(i % 256));
    for (let i = 0; i < 50; i++) {
      const ref = small.remote(i);
      assert.equal(((await os.get(ref)) as Uint8Array)[7], i % 256);
      os.free(ref);
    }
    const many = Array.from({ length: 500 }, (_, i) => small.remote(i));
    // Views pin their objects until collected: checked in a function of their own.
    assert.ok(await (async () => ((await os.get(many)) as Uint8Array[]).every((v, i) => v[0] === i % 256))());
    os.free(many);
    const all = Array.from({ length: 100 }, (_, i) => small.remote(i));
    let pending = all;
    for (let i = 0; i < all.length; i++) [, pending] = await os.wait(pending);
    assert.equal(pending.length, 0);
    os.free(all);
    const counter = os.remote(Counter).remote();
    for (let i = 1; i <= 20; i++) assert.equal(await os.get(counter.add.remote(1)), i);
    os.kill(counter);
    await eventuallyCollected(() => os.memoryStats().objectCount === 0, 10_000, "every object released");
  }, { numWorkers: 2 }), { timeoutMs: 120_000 });
