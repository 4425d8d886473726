/**
 * Tasks across the nodes of a cluster on this machine (issue 14, first part): a driver with no
 * workers of its own places tasks on the nodes' processes, spread, by affinity, or by default;
 * a chain of tasks passes its bytes from node to node and reads them back exact, leaving
 * nothing behind; a node killed under a task costs a retry elsewhere; a node with another
 * token runs nothing and says so.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { openRequest, RefusedRequest, signRequest } from "../lib/cluster/task_requests.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, uniqueStoreName } from "./helpers.ts";
import { cleanUp, clusterObjects, eventuallyAsync, putOn, release, runTasksDriver, startDriver, startNode, startNodes, startTasksDriver } from "./cluster_helpers.ts";

test("task requests: signed with the token they open; another token, a changed byte or garbage is refused", () => {
  const request = { task: 7, attempt: 0, holder: "p:1:2:x", fn: { id: 1, name: "f", spec: { kind: "source", source: "() => 1" } }, args: [1], returns: ["ab".repeat(28)] };
  const text = signRequest("secret", request);
  assert.deepEqual(openRequest("secret", text), request);
  const other = openRequest("another", text);
  assert.ok(other instanceof RefusedRequest);
  assert.match(other.message, /not signed with this cluster's token/);
  assert.deepEqual(other.replyTo, { holder: "p:1:2:x", task: 7, attempt: 0 }, "whom to tell it was refused");
  const changed = text.replace('"args":[1]', '"args":[2]');
  assert.ok(openRequest("secret", changed) instanceof RefusedRequest, "the body is what is signed");
  assert.ok(openRequest("secret", `t ${"0".repeat(64)} {}`) instanceof RefusedRequest);
  assert.ok(openRequest("secret", "t nonsense") instanceof RefusedRequest);
  assert.equal(Buffer.byteLength(text) < 1000, true);
});

test(`cluster tasks: placed spread, by affinity and by default on the nodes; a chain across nodes reads back exact and leaves nothing; a wrong token runs nothing (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`tasks-${n}`));
  const children: Child[] = [];
  try {
    await Promise.all([startNodes(children, names.slice(0, 2), 1), startNode(names[2], 2, undefined, ["--resources", '{"GPU": 1}']).then((node) => children.push(node))]);
    const spread = (await runTasksDriver(names[0], "spread", "6")).split(" ");
    assert.equal(spread[0], "ran");
    assert.deepEqual(new Set(spread.slice(1)), new Set(names), `SPREAD reached every node: ${spread.join(" ")}`);
    assert.equal(await runTasksDriver(names[0], "affinity", names[2], "hard"), `ran ${names[2]}`);
    assert.match(await runTasksDriver(names[0], "affinity", "no-such-node", "hard"), /^error ObjstoreError: anonymous\.remote\(\): scheduling: node no-such-node is not a node of the cluster; nodes that can run it: .*\(or pass soft: true/);
    assert.match(await runTasksDriver(names[0], "affinity", "no-such-node", "soft"), new RegExp(`^ran (${names.join("|")})$`));
    // What a task asks for: only C has a GPU and two workers; nobody has two GPUs.
    assert.equal(await runTasksDriver(names[0], "needs", '{"resources": {"GPU": 1}}'), `ran ${names[2]}`);
    assert.equal(await runTasksDriver(names[0], "needs", '{"numCpus": 2}'), `ran ${names[2]}`);
    assert.match(await runTasksDriver(names[0], "needs", '{"resources": {"GPU": 2}}'), /^error ObjstoreError: anonymous\.remote\(\): no node of the cluster can run this task: it needs numCpus 1, GPU 2; .* lacks GPU 2 \(it has 1\)/);

    // B's bytes through C, A, B and C again: each step on its node, reading the last one's result.
    const onB = await putOn(names[1], 1024 * 1024 + 3);
    children.push(onB.child);
    const [word, length, sum, expectedLength, expectedSum] = (await runTasksDriver(names[0], "chain", onB.bytesHex, names[2], names[0], names[1], names[2])).split(" ");
    assert.deepEqual([word, length, sum], ["chain", expectedLength, expectedSum]);
    await release(onB.child);
    await eventuallyAsync(async () => (await clusterObjects()).objects.length === 0, 10_000, "every intermediate result and the bytes gone from the cluster");

    // A node started with another token is a node of the directory, but runs nothing it is sent.
    const stranger = uniqueStoreName("tasks-stranger");
    names.push(stranger);
    children.push(await startNode(stranger, 1, "not-the-cluster-token"));
    assert.match(await runTasksDriver(names[0], "affinity", stranger, "hard"), /^error TaskError: .*ClusterAuthError: node \d+ could not run it: the task request is not signed with this cluster's token/);
    // Tasks placed by the cluster go around it: the one sent there is placed again elsewhere.
    const around = (await runTasksDriver(names[0], "spread", "8")).split(" ");
    assert.equal(around[0], "ran");
    assert.ok(around.slice(1).every((store) => store !== stranger && names.includes(store)), around.join(" "));
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 180_000 });

test(`cluster tasks: a result lost with its node is made again by its task (lineage), also as another task's argument (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`lineage-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names, 1);
    const driver = startTasksDriver(names[0], "lineage", names[1], names[2]);
    children.push(driver);
    // Each checksum is "<length> <sum>".
    const first = (await driver.line()).split(" ");
    assert.equal(first[0], "first");
    assert.deepEqual(first.slice(1, 3), first.slice(3, 5));
    children[1].kill(); // B, which holds the only copy of Y
    await children[1].exited;
    driver.send("go");
    const after = (await driver.line()).split(" ");
    assert.equal(after[0], "after", after.join(" "));
    assert.deepEqual(after.slice(1, 3), after.slice(3, 5), "Y made again, byte-exact");
    assert.deepEqual(after.slice(5, 7), after.slice(7, 9), "a new task over Y on C reads the rebuilt Y");
    assert.equal((await driver.exited).code, 0);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster actors: an actor placed on another node keeps its state and order; when its node dies its call fails with ActorDiedError, and it starts again elsewhere while it has restarts (${currentRuntime})`, async () => {
  for (const restarts of [1, 0]) {
    const names = ["a", "b"].map((n) => uniqueStoreName(`actor${restarts}-${n}`));
    const children: Child[] = [];
    try {
      await startNodes(children, names, 1);
      const driver = startTasksDriver(names[0], "actor", names[1], String(restarts));
      children.push(driver);
      assert.equal(await driver.line(), `counts 1,2,3 ${names[1]}`);
      children[1].kill();
      await children[1].exited;
      driver.send("go");
      const expected = restarts === 1 ? `after ActorDiedError ${names[0]} 1` : "after ActorDiedError ActorDiedError ActorDiedError";
      assert.equal(await driver.line(), expected);
      assert.equal((await driver.exited).code, 0);
    } finally {
      await cleanUp(children, names);
    }
  }
}, { timeoutMs: 180_000 });

test(`cluster tasks: a node killed under a task is seen dead and the task runs again on another node (${currentRuntime})`, async () => {
  const names = ["a", "b"].map((n) => uniqueStoreName(`death-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names, 1);
    const driver = startTasksDriver(names[0], "slow", names[1], "4000");
    children.push(driver);
    assert.equal(await driver.line(), "started");
    await new Promise((resolve) => setTimeout(resolve, 1500)); // the task runs on B now
    children[1].kill();
    assert.equal(await driver.line(), `ran ${names[0]}`, "retried on A once B was seen dead");
    assert.equal((await driver.exited).code, 0);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster owners: a task's result still running, read through a ref by another process, is waited for while its owner lives; once the owner is killed, its get raises OwnerDiedError (${currentRuntime})`, async () => {
  const names = ["a", "b"].map((n) => uniqueStoreName(`owner-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names, 1);
    // The owner lives: the reader waits out the task's 1.5 s on B and reads its result.
    const owner = startTasksDriver(names[0], "owner", names[1], "1500");
    children.push(owner);
    const [word, hex] = (await owner.line()).split(" ");
    assert.equal(word, "owner");
    const reader = startDriver(names[0], "inner", hex);
    children.push(reader);
    assert.equal(await reader.line(), "value");
    assert.equal(await reader.line(), `inner ${names[1]}`);
    owner.send("go");
    assert.equal(await owner.line(), `own ${names[1]}`);
    // The owner is killed while its task runs: the reader's get fails, naming the owner, instead
    // of waiting out its 30 s timeout.
    const doomed = startTasksDriver(names[0], "owner", names[1], "30000");
    children.push(doomed);
    const doomedHex = (await doomed.line()).split(" ")[1];
    const orphan = startDriver(names[0], "inner", doomedHex);
    children.push(orphan);
    assert.equal(await orphan.line(), "value");
    doomed.kill();
    assert.match(await orphan.line(), new RegExp(`^inner OwnerDiedError: .*its owner \\(process ${doomed.pid} on node \\d+`));
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster actors: handles passed to tasks on other nodes, and in a value, call the same actors (in this driver's worker, and on another node), each caller's calls in order; the program ends without shutdown (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`handles-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names, 2);
    const driver = startTasksDriver(names[0], "handles", names[1], names[2]);
    children.push(driver);
    assert.equal(await driver.line(), `here true ${names[1]},${names[2]} ${names[0]}`);
    assert.equal(await driver.line(), `onB true ${names[1]},${names[2]} ${names[1]}`);
    assert.equal(await driver.line(), `boxed ${2 * 20 + 1}`);
    assert.equal((await driver.exited).code, 0);
    // A program whose actor's handle went to another node ends without shutdown.
    assert.equal(await runTasksDriver(names[0], "noshut", names[1]), "noshut 1");
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });

test(`cluster placement groups: STRICT_SPREAD puts a bundle on each node and its tasks run there; a group waits while a driver holds the room, and gets it once that driver is killed; one no node can hold fails at once (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`groups-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names, 1);
    const hog = startTasksDriver(names[0], "hog");
    children.push(hog);
    assert.equal(await hog.line(), "hogging");
    const driver = startTasksDriver(names[1], "groups");
    children.push(driver);
    assert.equal(await driver.line(), "blocked false", "every node's CPU is reserved by the hog");
    hog.kill();
    driver.send("go");
    const [word, ready, stores] = (await driver.line()).split(" ");
    assert.deepEqual([word, ready], ["spread", "true"], "the killed hog's bundles were given back");
    assert.deepEqual(stores.split(",").sort(), [...names].sort(), "one bundle, and its task, on each node");
    assert.match(await driver.line(), /^pack placement group .* \(STRICT_PACK\) can never be reserved: no node has all 2 bundles together/);
    assert.equal((await driver.exited).code, 0);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: 120_000 });
