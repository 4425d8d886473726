/** Placement groups on one machine (SPEC "Placement"); across nodes: cluster_tasks.test.ts. */
import assert from "node:assert/strict";
import * as os from "../mod.ts";
import { test } from "./harness.ts";

const MiB = 1024 * 1024;

async function withWorkers<T>(numWorkers: number, work: () => Promise<T>): Promise<T> {
  await os.init({ objectStoreMemory: 64 * MiB, prefault: false, numWorkers });
  try {
    return await work();
  } finally {
    await os.shutdown();
  }
}

test("placement groups: wrong bundles or strategies are clear errors; a group this machine can never hold fails its ready() at once, naming why", () =>
  withWorkers(2, async () => {
    assert.throws(() => os.placementGroup([]), /bundles must be a non-empty array/);
    assert.throws(() => os.placementGroup([{ CPU: -1 }]), /bundle 0: CPU must be an amount ≥ 0/);
    assert.throws(() => os.placementGroup([{}]), /bundle 0 must be a non-empty/);
    assert.throws(() => os.placementGroup([{ CPU: 1 }], { strategy: "TIGHT" as os.PlacementStrategy }), /strategy must be "PACK"/);
    await assert.rejects(os.placementGroup([{ CPU: 3 }]).ready(), /can never be reserved: no node has bundle 0 .*lacks CPU 3 \(it has 2\)/);
    await assert.rejects(os.placementGroup([{ CPU: 1 }, { CPU: 1 }], { strategy: "STRICT_SPREAD" }).ready(), /STRICT_SPREAD puts each of its 2 bundles on a node of its own/);
    await assert.rejects(os.placementGroup([{ GPU: 1 }]).ready(), /lacks GPU 1 \(it has 0\).*no custom resources/);
  }));

test("placement groups: a group waits while others hold the room it needs, and is ready once they are removed", () =>
  withWorkers(2, async () => {
    const first = os.placementGroup([{ CPU: 1 }, { CPU: 1 }]);
    await first.ready();
    const second = os.placementGroup([{ CPU: 1 }], { strategy: "STRICT_PACK" });
    assert.equal(await second.wait(1), false, "both workers are reserved by the first group");
    os.removePlacementGroup(first);
    assert.equal(await second.wait(10), true, "the first group's room went to the second");
    second.remove();
    assert.throws(() => os.remote((x: number) => x).options({ placementGroup: second }).remote(1), /placement group \w+ was removed/);
  }));

test("placement groups: tasks run in a bundle (also when submitted before the group is ready); a task the bundle lacks room for fails at once; removing a group fails what waits for it and kills its actors", () =>
  withWorkers(2, async () => {
    const blocker = os.placementGroup([{ CPU: 2 }]);
    await blocker.ready();
    const group = os.placementGroup([{ CPU: 1 }, { CPU: 1, GPU: 0 }], { strategy: "PACK" });
    const square = os.remote((x: number) => x * x);
    // Submitted while the group waits for room: it runs once the group is ready.
    const early = square.options({ placementGroup: group, placementGroupBundleIndex: 1 }).remote(7) as os.ObjectRef<number>;
    assert.equal(await os.wait([early], { timeout: 0.5 }).then(([ready]) => ready.length), 0, "the task waits for its group");
    blocker.remove();
    assert.equal(await os.get(early, { timeout: 30 }), 49);
    assert.equal(await os.get(square.options({ placementGroup: group }).remote(3) as os.ObjectRef<number>), 9);
    assert.throws(() => square.options({ placementGroup: group, numCpus: 2 }).remote(1), /no bundle of placement group \w+ has room for \{"CPU":2\}/);
    assert.throws(() => square.options({ placementGroup: group, placementGroupBundleIndex: 2 }).remote(1), /placementGroupBundleIndex must be a whole number from 0 to 1, got 2/);
    assert.throws(() => square.options({ placementGroup: {} as os.PlacementGroup }).remote(1), /placementGroup must be a group made by placementGroup\(\)/);

    class Counter {
      n = 0;
      inc() {
        return ++this.n;
      }
    }
    const pending = os.placementGroup([{ CPU: 2 }]); // the first group holds a worker: it waits
    assert.throws(() => os.remote(Counter).options({ placementGroup: pending }).remote(), /is not ready: await group.ready\(\)/);
    const waiting = square.options({ placementGroup: pending }).remote(2) as os.ObjectRef<number>;
    pending.remove();
    await assert.rejects(os.get(waiting, { timeout: 10 }), /its placement group: placement group \w+ was removed/);

    const counter = os.remote(Counter).options({ placementGroup: group, placementGroupBundleIndex: 0 }).remote();
    assert.equal(await os.get(counter.inc.remote(), { timeout: 30 }), 1);
    group.remove();
    await assert.rejects(os.get(counter.inc.remote(), { timeout: 10 }), /was killed/);
  }), { timeoutMs: 90_000 });
