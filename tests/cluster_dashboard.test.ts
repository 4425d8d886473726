/**
 * `objstore dashboard --address`: a cluster's nodes (alive or dead, memory, objects) from its
 * directory, and its objects across nodes (lib/cluster/listing.ts), through the JSON API.
 */
import assert from "node:assert/strict";
import { test } from "./harness.ts";
import { type Child, currentRuntime, redisUrl, uniqueStoreName } from "./helpers.ts";
import { cleanUp, eventuallyAsync, putOn, release, startDriver, startNode } from "./cluster_helpers.ts";
import { startDashboard } from "./dashboard_helpers.ts";

interface NodeRow {
  nodeNumber: number;
  storeName: string;
  alive: boolean;
  capacityBytes: number;
  pid: number;
  load?: { usedBytes: number; objectCount: number; pinnedBytes?: number; spilledBytes?: number };
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

    // Pinned and spilled bytes, per node from its heartbeat, summed in the memory chart: a
    // driver on node a puts 160 MiB into its 128 MiB and keeps a view of the last 16 MiB.
    const MiB = 1024 * 1024;
    const fill = startDriver(names[0], "fill", "10", String(16 * MiB));
    children.push(fill);
    const [word, pinnedText, spilledText] = (await fill.line()).split(" ");
    assert.equal(word, "filled");
    assert.ok(Number(pinnedText) >= 16 * MiB && Number(spilledText) >= 32 * MiB, `node a: ${pinnedText} pinned, ${spilledText} spilled`);
    const loadOf = async (name: string) => (await mine()).find((n) => n.storeName === name)?.load;
    await eventuallyAsync(async () => {
      const load = await loadOf(names[0]);
      return (load?.pinnedBytes ?? 0) >= 16 * MiB && (load?.spilledBytes ?? 0) >= 32 * MiB;
    }, 10_000, "node a's pinned and spilled bytes in its heartbeat");
    const loadB = await loadOf(names[1]);
    assert.deepEqual([loadB?.pinnedBytes, loadB?.spilledBytes], [0, 0], "node b pins and spills nothing");
    type ClusterSample = { pinnedBytes: number | null; spilledBytes: number | null; spillBytesPerS: number | null };
    await eventuallyAsync(async () => {
      const last = ((await api("api/memory")).history as ClusterSample[]).at(-1)!;
      return (last.pinnedBytes ?? 0) >= 16 * MiB && (last.spilledBytes ?? 0) >= 32 * MiB;
    }, 10_000, "the cluster's pinned and spilled bytes in the memory chart");
    const filled = await api("api/memory");
    assert.ok((filled.history as ClusterSample[]).some((s) => (s.spillBytesPerS ?? 0) > 0), "a spill rate from node a's totals");
    assert.equal(filled.stats.pinnedBytes, filled.history.at(-1).pinnedBytes);
    assert.equal(filled.stats.spilledBytes, filled.history.at(-1).spilledBytes);
    await release(fill);

    await release(put.child);
    b.kill();
    await b.exited;
    await eventuallyAsync(async () => (await mine()).find((n) => n.storeName === names[1])?.alive === false, 10_000, "node b seen dead");
    assert.equal((await mine()).find((n) => n.storeName === names[0])?.alive, true);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 90_000 });
