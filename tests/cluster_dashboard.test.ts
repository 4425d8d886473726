/**
 * `objstore dashboard --address`: a cluster's nodes (alive or dead, memory, objects) from its
 * directory, and its objects across nodes (lib/cluster/listing.ts), through the JSON API.
 */
import assert from "node:assert/strict";
import { test } from "./harness.ts";
import { type Child, currentRuntime, redisUrl, uniqueStoreName } from "./helpers.ts";
import { cleanUp, eventuallyAsync, putOn, release, startNode } from "./cluster_helpers.ts";
import { startDashboard } from "./dashboard_helpers.ts";

interface NodeRow {
  nodeNumber: number;
  storeName: string;
  alive: boolean;
  capacityBytes: number;
  pid: number;
  load?: { usedBytes: number; objectCount: number };
}

test(`objstore dashboard --address shows the cluster's nodes, alive and dead, and objects across them (${currentRuntime})`, async () => {
  const names = [uniqueStoreName("dash-node-a"), uniqueStoreName("dash-node-b")];
  const children: Child[] = [];
  try {
    const a = await startNode(names[0]);
    children.push(a);
    const b = await startNode(names[1]);
    children.push(b);
    const put = await putOn(names[0], 200_000);
    children.push(put.child);
    const dashboard = await startDashboard(["--address", redisUrl()]);
    children.push(dashboard.child);
    assert.doesNotMatch(dashboard.url, /:[^/]*@/, "no password in what it prints");
    const api = async (p: string) => await (await fetch(new URL(p, dashboard.url))).json();
    const mine = async () => ((await api("api/nodes")).nodes as NodeRow[]).filter((n) => names.includes(n.storeName));

    await eventuallyAsync(async () => (await mine()).filter((n) => n.alive).length === 2, 10_000, "both nodes alive on the dashboard");
    const nodes = await mine();
    assert.deepEqual(nodes.map((n) => n.storeName).sort(), [...names].sort());
    assert.ok(nodes.every((n) => n.capacityBytes === 128 * 1024 * 1024), JSON.stringify(nodes));
    const nodeA = nodes.find((n) => n.storeName === names[0])!;
    await eventuallyAsync(async () => ((await mine()).find((n) => n.storeName === names[0])?.load?.objectCount ?? 0) >= 2, 10_000, "node a's objects in its heartbeat");

    const objects = await api(`api/objects?filter=${put.bytesHex}`);
    assert.equal(objects.rows.length, 1, JSON.stringify(objects));
    assert.equal(objects.rows[0].sizeBytes >= 200_000, true);
    assert.equal(objects.rows[0].node, String(nodeA.nodeNumber), "made on node a");
    assert.match(objects.rows[0].state, new RegExp(`^${nodeA.nodeNumber}:memory`));

    const memory = await api("api/memory");
    assert.equal(memory.mode, "cluster");
    assert.ok(memory.stats.capacityBytes >= 2 * 128 * 1024 * 1024);
    const processes = (await api("api/processes")).processes as Array<{ pid: number; alive: boolean }>;
    assert.ok(processes.some((p) => p.pid === nodeA.pid && p.alive), JSON.stringify(processes));

    await release(put.child);
    b.kill();
    await b.exited;
    await eventuallyAsync(async () => (await mine()).find((n) => n.storeName === names[1])?.alive === false, 10_000, "node b seen dead");
    assert.equal((await mine()).find((n) => n.storeName === names[0])?.alive, true);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 90_000 });
