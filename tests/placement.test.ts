/**
 * Where tasks go (lib/cluster/placement.ts), from the cluster as last seen: a silent node (its
 * heartbeat lapsed, not yet declared dead) gets new work only when no beating node can take it.
 */
import assert from "node:assert/strict";
import type { NodeStatus } from "../lib/cluster/directory.ts";
import { type LocalNode, type Placing, placeTask } from "../lib/cluster/placement.ts";
import { test } from "./harness.ts";

function node(nodeNumber: number, silent: boolean, running: number): NodeStatus {
  return {
    nodeNumber, nodeId: `n${nodeNumber}`, host: "198.18.0.1", port: 0, transferPort: 9000 + nodeNumber, storeName: `s${nodeNumber}`,
    hostname: "h", pid: 1, startedMs: 0, capacityBytes: 1 << 30, numWorkers: 2, resources: {},
    alive: true, silent, load: silent ? undefined : { usedBytes: 0, objectCount: 0, workers: 2, running, heartbeatMs: 0 },
  };
}

const task = (scheduling: Placing["scheduling"]): Placing => ({ scheduling, numCpus: 1, resources: {}, argBytes: new Map() });
const elsewhere: LocalNode = { nodeNumber: 99, workers: 0, saturated: false };

test("placement: SPREAD and the least loaded node pass over a silent node while a beating one can run the task; all silent, they use it; a hard affinity still reaches it", () => {
  // Node 1 is silent: it reports no load, which must not read as "idle".
  const nodes = [node(1, true, 0), node(2, false, 2), node(3, false, 1)];
  const spread = Array.from({ length: 6 }, (_, turn) => placeTask(task("SPREAD"), nodes, elsewhere, turn));
  assert.deepEqual(new Set(spread), new Set([2, 3]));
  assert.equal(placeTask(task("DEFAULT"), nodes, elsewhere, 0), 3, "the least loaded beating node");
  const allSilent = [node(1, true, 0), node(2, true, 0)];
  assert.ok([1, 2].includes(placeTask(task("DEFAULT"), allSilent, elsewhere, 0)));
  assert.equal(placeTask(task({ nodeId: "n1" }), nodes, elsewhere, 0), 1);
});
