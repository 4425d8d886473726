/**
 * How long an object lives in a cluster: while any process of any node refers to it, and no
 * longer. Three nodes on this machine (tests/cluster_helpers.ts); drivers put, hold, read and
 * let go; what each node's store holds is read from the store itself (`objstore memory
 * --store`), where the directory says copies are from Redis, and who holds what from
 * `objstore memory --address`.
 */
import assert from "node:assert/strict";
import { Directory } from "../lib/cluster/directory.ts";
import { runCli } from "../lib/cli.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, redisUrl, uniqueStoreName } from "./helpers.ts";
import {
  cleanUp, clusterObjects, eventuallyAsync, heldForOthers, objectsIn, putOn, release, runDriver, startDriver, startNodes,
} from "./cluster_helpers.ts";

async function listedCopies(hex: string): Promise<number[]> {
  const directory = await Directory.connect(redisUrl());
  try {
    return await directory.copies(hex);
  } finally {
    await directory.close();
  }
}

async function goneEverywhere(hex: string, stores: string[]): Promise<boolean> {
  for (const store of stores) {
    if ((await objectsIn(store)).has(hex)) return false;
  }
  return (await listedCopies(hex)).length === 0;
}

test(`cluster lifetime: an object its node's driver let go lives on while another node's process holds it, then goes from every node and the directory (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`life-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names);
    const onA = await putOn(names[0], 1024 * 1024 + 3);
    children.push(onA.child);
    const holder = startDriver(names[1], "hold", onA.bytesHex);
    children.push(holder);
    assert.equal(await holder.line(), `holding ${onA.digest}`);
    await heldForOthers(onA.bytesHex, 1);
    assert.ok((await objectsIn(names[1])).has(onA.bytesHex), "B holds a copy while its driver holds the ref");
    const listed = (await clusterObjects()).objects.find((o) => o.id === onA.bytesHex)!;
    const copies = listed.locations.filter((l) => l.nodeNumber !== listed.madeOn).map((l) => l.nodeNumber);
    assert.equal(copies.length, 1, JSON.stringify(listed));
    assert.deepEqual(await listedCopies(onA.bytesHex), copies, "the directory lists B's copy");

    // A's driver lets go: its value (held by nobody elsewhere) goes, the bytes B holds stay.
    await release(onA.child);
    const onAStore = await objectsIn(names[0]);
    assert.ok(!onAStore.has(onA.valueHex), "the value nobody else held is deleted with its driver's ref");
    assert.ok(onAStore.has(onA.bytesHex), "the bytes B's driver holds stay on A");
    assert.equal(await runDriver(names[2], "lost", onA.bytesHex), "lost none", "C reads them meanwhile");

    // B's driver lets go: gone from A, B and C, and unlisted.
    await release(holder);
    await eventuallyAsync(() => goneEverywhere(onA.bytesHex, names), 10_000, "the object gone from every node");
    assert.match(await runDriver(names[2], "lost", onA.bytesHex), /^lost ObjectLostError: /);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster lifetime: a value holding refs to two other nodes' objects keeps them alive after their drivers let go, and releases them when it goes (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`hold-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names);
    const onA = await putOn(names[0], 2 * 1024 * 1024);
    const onB = await putOn(names[1], 3 * 1024 * 1024 + 1);
    const onC = await putOn(names[2], 1000, [onA.valueHex, onB.valueHex]);
    children.push(onA.child, onB.child, onC.child);
    // C's driver and C's value each hold A's and B's values.
    await heldForOthers(onA.valueHex, 2);
    await heldForOthers(onB.valueHex, 2);
    await release(onA.child);
    await release(onB.child);
    assert.ok((await objectsIn(names[0])).has(onA.bytesHex), "A's bytes live on: C's value holds A's value, which holds them");
    assert.ok((await objectsIn(names[1])).has(onB.valueHex));

    // C's driver lets go of all but its value's own ref going with it: the value is released
    // on C, and with it, its holds on A and B.
    assert.deepEqual((await runDriver(names[1], "get", onC.valueHex)).split(" ").slice(1), [`from_${names[2]}`, onC.digest, onA.digest, onB.digest]);
    // A worker of C reads B's bytes, a ref to another node's object as its task's argument.
    const [word, workerLength, workerSum, length, sum] = (await runDriver(names[2], "task", onB.bytesHex)).split(" ");
    assert.deepEqual([word, workerLength, workerSum], ["task", String(3 * 1024 * 1024 + 1), sum]);
    assert.equal(length, workerLength);
    await release(onC.child);
    await eventuallyAsync(async () => {
      const [a, b] = [await objectsIn(names[0]), await objectsIn(names[1])];
      return !a.has(onA.valueHex) && !a.has(onA.bytesHex) && !b.has(onB.valueHex) && !b.has(onB.bytesHex);
    }, 10_000, "A's and B's objects released once C's value is gone");
    assert.equal((await clusterObjects()).objects.length, 0, "nothing is left in the cluster");
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster lifetime: a process holding another node's object killed with SIGKILL releases it within seconds; objstore memory --address shows where copies are (${currentRuntime})`, async () => {
  const names = ["a", "b"].map((n) => uniqueStoreName(`kill-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names);
    const onA = await putOn(names[0], 512 * 1024);
    children.push(onA.child);
    const holder = startDriver(names[1], "hold", onA.bytesHex);
    children.push(holder);
    assert.equal(await holder.line(), `holding ${onA.digest}`);
    await heldForOthers(onA.bytesHex, 1);

    const listed = (await clusterObjects()).objects.find((o) => o.id === onA.bytesHex)!;
    assert.ok(listed.sizeBytes >= 512 * 1024, `listed with its size: ${listed.sizeBytes}`);
    assert.equal(listed.locations.length, 2, `on A and as a copy on B: ${JSON.stringify(listed)}`);
    assert.match(listed.heldFor[0], /^p:\d+:\d+:/);
    let printed = "";
    assert.equal(await runCli(["memory", "--address", redisUrl()], (line) => printed += `${line}\n`), 0);
    // Its copies in node order: A's (the putting driver's ref and the keeper's) and B's (one).
    assert.match(printed, new RegExp(`${onA.bytesHex} .* 1  (\\d+:memory:\\d+ \\d+:memory:1|\\d+:memory:1 \\d+:memory:\\d+)\n`));

    await release(onA.child);
    assert.ok((await objectsIn(names[0])).has(onA.bytesHex), "held for B's driver");
    holder.kill();
    await holder.exited;
    await eventuallyAsync(() => goneEverywhere(onA.bytesHex, names), 10_000, "the killed holder's object released on A and its copy on B gone");
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });
