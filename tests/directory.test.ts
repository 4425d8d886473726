/**
 * The cluster directory against a real Redis (scripts/redis_server.sh, started by
 * scripts/test.sh; the address in OBJSTORE_TEST_REDIS): nodes join, beat, fall silent, are declared dead (or forgiven) and leave;
 * copies are recorded; seal notices arrive; an unreachable Redis or a wrong password is a
 * clear DirectoryUnavailableError within the timeout.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { Directory, type NodeLoad, redactedUrl } from "../lib/cluster/directory.ts";
import { DirectoryUnavailableError } from "../lib/errors.ts";
import { test } from "./harness.ts";
import { redisUrl } from "./helpers.ts";

const load: NodeLoad = { usedBytes: 1, objectCount: 2, workers: 3, heartbeatMs: 0 };

function record(port: number) {
  return {
    nodeId: `node-${port}`, host: "198.18.0.1", port, transferPort: port + 1, storeName: `store-${port}`,
    hostname: "h", pid: process.pid, startedMs: Date.now(), capacityBytes: 1 << 30, numWorkers: 2, resources: { CPU: 2 },
  };
}

test("directory: nodes join with distinct numbers, are alive while they beat, silent once the beat expires, dead when still silent an interval later, refused a beat then, gone once they leave", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const directory = await Directory.connect(redisUrl(), { prefix, timeoutMs: 2000 });
  try {
    const a = await directory.registerNode(record(7000), load, 60_000);
    const b = await directory.registerNode({ ...record(7100), heartbeatIntervalMs: 100 }, load, 300);
    assert.notEqual(a, b);
    let nodes = await directory.nodes();
    assert.deepEqual(nodes.map((n) => [n.nodeNumber, n.port, n.alive, n.silent]), [[a, 7000, true, false], [b, 7100, true, false]]);
    assert.equal(nodes[0].load?.workers, 3);
    // Expired: first silent (still alive), then dead at a reading an interval later.
    const states: string[] = [];
    const deadline = Date.now() + 8000;
    while ((nodes = await directory.nodes())[1].alive) {
      assert.ok(Date.now() < deadline, "node b is declared dead within 8 s");
      const state = nodes[1].silent ? "silent" : "beating";
      if (states.at(-1) !== state) states.push(state);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    assert.deepEqual(states, ["beating", "silent"]);
    assert.equal(nodes[1].load, undefined);
    // Declared dead is final: its next beat is refused, and it stays dead.
    assert.equal(await directory.heartbeat(b, { ...load, workers: 9 }, 60_000), false);
    assert.equal((await directory.nodes())[1].alive, false);
    assert.equal(await directory.heartbeat(a, { ...load, workers: 9 }, 60_000), true);
    assert.equal((await directory.nodes())[0].load?.workers, 9);
    await directory.deregisterNode(a);
    await directory.deregisterNode(b);
    assert.deepEqual(await directory.nodes(), []);
  } finally {
    await directory.close();
  }
});

test("directory: a node whose beat lapsed but who beats again within an interval (a machine that stalled) is not declared dead, however often it is read meanwhile", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const directory = await Directory.connect(redisUrl(), { prefix, timeoutMs: 2000 });
  try {
    const node = await directory.registerNode({ ...record(7200), heartbeatIntervalMs: 400 }, load, 100);
    for (let lapse = 0; lapse < 3; lapse++) {
      if (lapse > 0) assert.equal(await directory.heartbeat(node, load, 100), true);
      await new Promise((resolve) => setTimeout(resolve, 150)); // the key expires
      for (let read = 0; read < 3; read++) {
        const [status] = await directory.nodes();
        assert.deepEqual([status.alive, status.silent], [true, true], `lapse ${lapse}, reading ${read}`);
      }
      // Beats within its confirmation time (1 s at least) of the first silent reading: forgiven.
      assert.equal(await directory.heartbeat(node, load, 60_000), true, `lapse ${lapse}: the beat is taken`);
      const [status] = await directory.nodes();
      assert.deepEqual([status.alive, status.silent], [true, false]);
    }
    await directory.deregisterNode(node);
  } finally {
    await directory.close();
  }
});

test("directory: after a gap in the readings (Redis away, the machine stalled), a silent node's confirmation time starts again", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const directory = await Directory.connect(redisUrl(), { prefix, timeoutMs: 2000 });
  try {
    const node = await directory.registerNode({ ...record(7300), heartbeatIntervalMs: 100 }, load, 100);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal((await directory.nodes())[0].silent, true, "first found silent");
    // Nobody reads for over 2 s (the watch gap): the next reading only starts its clock again.
    await new Promise((resolve) => setTimeout(resolve, 2600));
    assert.deepEqual((await directory.nodes()).map((n) => [n.alive, n.silent]), [[true, true]], "not declared dead after a gap");
    // Watched (read often) for its confirmation time, still silent: dead.
    const deadline = Date.now() + 6000;
    while ((await directory.nodes())[0].alive) {
      assert.ok(Date.now() < deadline, "declared dead once watched for its confirmation time");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await directory.deregisterNode(node);
  } finally {
    await directory.close();
  }
});

test("directory: copies are recorded per object and per node; requests to a node come out in the order sent, and a take waits for them", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const sender = await Directory.connect(redisUrl(), { prefix });
  const keeper = await Directory.connect(redisUrl(), { prefix });
  try {
    const hex = "ab".repeat(28);
    await sender.addCopy(hex, 3);
    await sender.addCopy(hex, 1);
    assert.deepEqual(await keeper.copies(hex), [1, 3]);
    assert.deepEqual(await keeper.copiesHeldBy(3), [hex]);
    await sender.removeCopy(hex, 3);
    assert.deepEqual(await keeper.copies(hex), [1]);
    assert.deepEqual(await keeper.copiesHeldBy(3), []);

    assert.deepEqual(await keeper.takeHolds(7, 10, 50), [], "nothing sent: an empty take after the wait");
    const waiting = keeper.takeHolds(7, 10, 5000);
    await sender.sendHolds(7, ["+a h1", "+b h1"]);
    await sender.sendHolds(7, ["-a h1"]);
    const first = await waiting;
    const rest = first.length === 3 ? [] : await keeper.takeHolds(7, 10, 1000);
    assert.deepEqual([...first, ...rest], ["+a h1", "+b h1", "-a h1"]);

    await sender.addContainer(2, hex, ["cd".repeat(28), "ef".repeat(28)]);
    assert.deepEqual(await keeper.containers(2), new Map([[hex, ["cd".repeat(28), "ef".repeat(28)]]]));
    await sender.addCopy("12".repeat(28), 2);
    await sender.sendHolds(2, ["+x h"]);
    await sender.forgetNode(2);
    assert.deepEqual(await keeper.containers(2), new Map(), "a node forgotten: its containers go");
    assert.deepEqual(await keeper.copies("12".repeat(28)), [], "… its copies are unlisted");
    assert.deepEqual(await keeper.takeHolds(2, 10, 50), [], "… and its requests dropped");
    await sender.removeCopy(hex, 1);
  } finally {
    await sender.close();
    await keeper.close();
  }
});

test("directory: a wrong password and a dead address fail with DirectoryUnavailableError, the password redacted", async () => {
  const url = new URL(redisUrl());
  const wrong = `redis://:not-the-password@${url.host}`;
  await assert.rejects(Directory.connect(wrong, { timeoutMs: 2000 }), (error: Error) => {
    assert.ok(error instanceof DirectoryUnavailableError, String(error));
    assert.ok(!error.message.includes("not-the-password"), error.message);
    return true;
  });
  const started = Date.now();
  // A port nothing listens on (the discard port on loopback is closed here).
  await assert.rejects(Directory.connect("redis://:pw@127.0.0.1:9", { timeoutMs: 1000 }), DirectoryUnavailableError);
  assert.ok(Date.now() - started < 5000, "gave up within the timeout");
  assert.equal(redactedUrl("redis://:secret@h:1/2"), "redis://:***@h:1/2");
  assert.equal(redactedUrl("redis://user:secret@h:1"), "redis://user:***@h:1");
  assert.equal(redactedUrl("redis://h:1"), "redis://h:1");
});
