/**
 * The cluster directory against a real Redis (scripts/redis_server.sh, started by
 * scripts/test.sh; the address in OBJSTORE_TEST_REDIS): nodes join, beat, expire and leave;
 * copies are recorded; seal notices arrive; an unreachable Redis or a wrong password is a
 * clear DirectoryUnavailableError within the timeout.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { Directory, type NodeLoad, redactedUrl } from "../lib/cluster/directory.ts";
import { DirectoryUnavailableError } from "../lib/errors.ts";
import { test } from "./harness.ts";
import { eventually, redisUrl } from "./helpers.ts";

const load: NodeLoad = { usedBytes: 1, objectCount: 2, workers: 3, heartbeatMs: 0 };

function record(port: number) {
  return {
    nodeId: `node-${port}`, host: "198.18.0.1", port, transferPort: port + 1, storeName: `store-${port}`,
    hostname: "h", pid: process.pid, startedMs: Date.now(), capacityBytes: 1 << 30, numWorkers: 2, resources: { CPU: 2 },
  };
}

test("directory: nodes join with distinct numbers, are alive while they beat, dead once the beat expires, gone once they leave", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const directory = await Directory.connect(redisUrl(), { prefix, timeoutMs: 2000 });
  try {
    const a = await directory.registerNode(record(7000), load, 60_000);
    const b = await directory.registerNode(record(7100), load, 300);
    assert.notEqual(a, b);
    let nodes = await directory.nodes();
    assert.deepEqual(nodes.map((n) => [n.nodeNumber, n.port, n.alive]), [[a, 7000, true], [b, 7100, true]]);
    assert.equal(nodes[0].load?.workers, 3);
    const deadline = Date.now() + 3000;
    while ((await directory.nodes())[1].alive) {
      assert.ok(Date.now() < deadline, "node b's heartbeat expires");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await directory.heartbeat(b, { ...load, workers: 9 }, 60_000);
    nodes = await directory.nodes();
    assert.equal(nodes[1].alive, true);
    assert.equal(nodes[1].load?.workers, 9);
    await directory.deregisterNode(a);
    await directory.deregisterNode(b);
    assert.deepEqual(await directory.nodes(), []);
  } finally {
    await directory.close();
  }
});

test("directory: copies are recorded per object; seal notices reach a subscriber", async () => {
  const prefix = `test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const publisher = await Directory.connect(redisUrl(), { prefix });
  const subscriber = await Directory.connect(redisUrl(), { prefix });
  try {
    const hex = "ab".repeat(28);
    await publisher.addCopy(hex, 3);
    await publisher.addCopy(hex, 1);
    assert.deepEqual(await subscriber.copies(hex), [1, 3]);
    await publisher.removeCopy(hex, 3);
    assert.deepEqual(await subscriber.copies(hex), [1]);
    const heard: string[] = [];
    await subscriber.onSealed((sealed) => heard.push(sealed));
    await publisher.publishSealed(hex);
    await eventually(() => heard.length === 1, 2000, "the seal notice");
    assert.deepEqual(heard, [hex]);
    await publisher.removeCopy(hex, 1);
  } finally {
    await publisher.close();
    await subscriber.close();
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
