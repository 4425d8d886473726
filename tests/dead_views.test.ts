/**
 * Views the program dropped pin their objects only until room runs short: a put or a restore
 * that lacks room has the collector find them, in the driver and in workers alike. Views that
 * are still reachable make a clear ObjectStoreFullError, at once.
 */
import assert from "node:assert/strict";
import * as os from "../mod.ts";
import { ObjectStoreFullError } from "../mod.ts";
import { test } from "./harness.ts";
import { currentRuntime } from "./helpers.ts";

const MiB = 1024 * 1024;
const OBJECT_BYTES = 8 * MiB;
/** Objects of OBJECT_BYTES in a 64 MiB store: 7 fit (each takes a little more than 8 MiB). */
const FITTING = 7;

/** A 64 MiB store spilling only when a put or a restore needs room (no background spilling). */
async function withSmallStore(work: () => Promise<void>, numWorkers = 0): Promise<void> {
  await os.init({ objectStoreMemory: 64 * MiB, prefault: false, spillThreshold: 1, numWorkers });
  try {
    await work();
  } finally {
    await os.shutdown();
  }
}

function filled(k: number): Uint8Array {
  return new Uint8Array(OBJECT_BYTES).fill(k % 256);
}

test(`gets of spilled objects that keep no view, then puts: the dropped views never fill the store (${currentRuntime})`, () =>
  withSmallStore(async () => {
    const refs = Array.from({ length: 2 * FITTING + 2 }, (_, k) => os.put(filled(k)));
    assert.ok(os.memoryStats().spilledObjects > FITTING, "most objects are spilled");
    for (let round = 0; round < 6; round++) {
      // The least recently used objects: each get restores one and pins it for its view, which
      // the loop drops at once; then a put needs the room those views took.
      const window = refs.slice(round * (FITTING + 1), round * (FITTING + 1) + FITTING);
      for (const ref of window) {
        const view = (await os.get(ref)) as Uint8Array;
        assert.equal(view[OBJECT_BYTES - 1], refs.indexOf(ref) % 256);
      }
      refs.push(os.put(filled(refs.length)));
    }
    for (const [k, ref] of refs.entries()) assert.equal(((await os.get(ref)) as Uint8Array)[0], k % 256, `object ${k}`);
  }), { timeoutMs: 120_000 });

test(`a task that reads spilled objects and returns a big one finds the room its dropped views took (${currentRuntime})`, () =>
  withSmallStore(async () => {
    const refs = Array.from({ length: 2 * FITTING + 2 }, (_, k) => os.put(filled(k)));
    const sumThenFill = os.remote({ module: new URL("./fixtures/view_tasks.ts", import.meta.url), name: "sumThenFill" });
    for (let round = 0; round < 4; round++) {
      // Nested in an object, the refs arrive in the worker as refs: it gets each (a restore, a
      // pin for a view it drops), then puts its result.
      const window = refs.slice(round * 4, round * 4 + FITTING);
      const result = sumThenFill.remote({ refs: window }, OBJECT_BYTES);
      const expected = window.reduce((sum, ref) => sum + refs.indexOf(ref), 0) % 256;
      const view = (await os.get(result)) as Uint8Array;
      assert.equal(view.length, OBJECT_BYTES);
      assert.equal(view[0], expected, `round ${round}`);
      os.free(result);
    }
  }, 1), { timeoutMs: 120_000 });

test(`views still reachable make a put fail at once with ObjectStoreFullError naming the limit, the figures and what to do (${currentRuntime})`, () =>
  withSmallStore(async () => {
    const refs = Array.from({ length: FITTING + 2 }, (_, k) => os.put(filled(k)));
    const views: Uint8Array[] = [];
    for (const ref of refs.slice(0, FITTING)) views.push((await os.get(ref)) as Uint8Array);
    await new Promise((resolve) => setTimeout(resolve, 10)); // the views are not just this turn's
    let failure: unknown;
    try {
      os.put(filled(99));
    } catch (error) {
      failure = error;
    }
    assert.ok(failure instanceof ObjectStoreFullError, `expected ObjectStoreFullError, got ${failure}`);
    const message = (failure as Error).message;
    const stats = os.memoryStats();
    assert.match(message, /^put: no room for an object of \d+ bytes: store '[^']+' has objectStoreMemory = 67108864 bytes; /);
    assert.ok(message.includes(`; ${stats.usedBytes} are taken, ${stats.pinnedBytes} of them pinned by views this process handed out.`), message);
    assert.match(message, /init with a larger objectStoreMemory/);
    assert.doesNotMatch(message, /\bok:/);
    // A restore is refused the same way, once its wait for pins to go (2 s, as in Ray) is over.
    await assert.rejects(os.get(refs[FITTING + 1]), ObjectStoreFullError);
    assert.equal(views.length, FITTING, "the views stay reachable until here");
  }), { timeoutMs: 60_000 });
