/**
 * Nodes of a cluster on this machine, as users start them: `objstore start` processes of this
 * runtime against the test Redis (OBJSTORE_TEST_REDIS, started by scripts/test.sh). They
 * register and beat; `objstore status --address` lists them; one node's objects are pulled
 * into another's store over its transfer port with the cluster token; `objstore stop` and
 * SIGTERM take a node out of the directory and remove its store; a SIGKILLed node is seen dead.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { loadLibrary } from "../lib/ffi/load.ts";
import { NativeStore } from "../lib/store/native_store.ts";
import { TransferEndpoint } from "../lib/cluster/transfer.ts";
import { Directory } from "../lib/cluster/directory.ts";
import { localNodes } from "../lib/cluster/node_files.ts";
import { runCli } from "../lib/cli.ts";
import { ClusterAuthError } from "../mod.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, eventually, redisUrl, root, start, uniqueStoreName } from "./helpers.ts";
import { eventuallyAsync, startDriver } from "./cluster_helpers.ts";

const cli = path.join(root, "bin", "objstore.ts");
const token = `node-test-${randomBytes(8).toString("hex")}`;

interface RunningNode {
  child: Child;
  storeName: string;
  nodeNumber: number;
  transferPort: number;
}

/** Starts `objstore start` on this runtime; resolves once it says it started. */
async function startNode(storeName: string, extra: string[] = []): Promise<RunningNode> {
  const child = start(currentRuntime, cli, [
    "start", "--address", redisUrl(), "--store", storeName, "--token", token,
    "--object-store-memory", String(64 * 1024 * 1024), "--num-workers", "1", ...extra,
  ]);
  const line = await child.line();
  const match = /\(number (\d+)\) started: store (\S+), transfers on 127\.0\.0\.1:(\d+)/.exec(line);
  assert.ok(match, `start printed: ${line}`);
  return { child, storeName, nodeNumber: Number(match[1]), transferPort: Number(match[3]) };
}

async function cliOutput(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, (l) => out.push(l), (l) => err.push(l));
  return { code, out: out.join("\n"), err: err.join("\n") };
}

async function clusterNodes(): Promise<Array<{ nodeNumber: number; storeName: string; alive: boolean; transferPort: number }>> {
  const { code, out } = await cliOutput(["status", "--address", redisUrl(), "--json"]);
  assert.equal(code, 0);
  return JSON.parse(out).nodes;
}

test(`cluster nodes: two nodes join, one's object is pulled into the other's store, stop and SIGTERM leave, SIGKILL is seen dead (${currentRuntime})`, async () => {
  const names = [uniqueStoreName("node-a"), uniqueStoreName("node-b")];
  const nodes: RunningNode[] = [];
  try {
    nodes.push(await startNode(names[0]), await startNode(names[1]));
    const listed = (await clusterNodes()).filter((n) => names.includes(n.storeName));
    assert.deepEqual(listed.map((n) => [n.storeName, n.alive, n.transferPort]), nodes.map((n) => [n.storeName, true, n.transferPort]));
    assert.deepEqual(localNodes().filter((n) => names.includes(n.storeName)).map((n) => n.nodeNumber), nodes.map((n) => n.nodeNumber));
    const table = await cliOutput(["status", "--address", redisUrl()]);
    assert.match(table.out, new RegExp(`${names[0]}\\s+0 B\\s+64\\.0 MiB\\s+0\\s+alive`));
    assert.doesNotMatch(table.out, /redis:\/\/:[^*]/, "the password is never printed");

    // An object in node A's store, pulled by node B's store from A's transfer port.
    const library = await loadLibrary();
    const a = NativeStore.open(library, names[0], { create: false, exclusive: false, capacityBytes: 0, prefault: false });
    const b = NativeStore.open(library, names[1], { create: false, exclusive: false, capacityBytes: 0, prefault: false });
    const endpoint = TransferEndpoint.open(library, names[1]);
    try {
      const id = randomBytes(28);
      const bytes = randomBytes(5 * 1024 * 1024 + 17);
      const target = a.create(id, bytes.length, undefined, 0) as Uint8Array;
      target.set(bytes);
      a.seal(id);
      const source = [{ host: "127.0.0.1", port: nodes[0].transferPort }];
      await assert.rejects(endpoint.pull(id, source, "not-the-token"), ClusterAuthError);
      assert.equal(await endpoint.pull(id, source, token), bytes.length);
      const pinned = b.get(id);
      assert.ok(typeof pinned !== "number", `get: status ${pinned}`);
      assert.equal(createHash("sha256").update(b.bytes(pinned.offsetBytes, pinned.sizeBytes)).digest("hex"), createHash("sha256").update(bytes).digest("hex"));
      b.release(id);
      a.dropRef(id);
    } finally {
      await endpoint.close();
      a.close(false);
      b.close(false);
    }

    // `objstore stop --store A`: out of the directory, its store and node file gone.
    const stopped = await cliOutput(["stop", "--store", names[0]]);
    assert.equal(stopped.code, 0, stopped.err);
    assert.match(stopped.out, new RegExp(`stopped node \\w+ \\(store ${names[0]}`));
    assert.equal((await nodes[0].child.exited).code, 0);
    assert.ok(!existsSync(`/dev/shm/objstore-${names[0]}`), "store removed");
    assert.deepEqual((await clusterNodes()).filter((n) => names.includes(n.storeName)).map((n) => n.storeName), [names[1]]);

    // SIGKILL: nothing runs, the heartbeat expires (three beats of 1 s), the node is silent,
    // and declared dead when still silent a beat later. Nobody else reads the directory now:
    // one `objstore status --address`, once the key has expired, waits to declare it dead
    // itself rather than print "silent".
    process.kill(nodes[1].child.pid, "SIGKILL");
    await nodes[1].child.exited;
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const status = await cliOutput(["status", "--address", redisUrl()]);
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, new RegExp(`${names[1]} .* dead`), status.out);
    const directory = await Directory.connect(redisUrl());
    try {
      assert.equal((await directory.nodes()).find((n) => n.storeName === names[1])?.alive, false);
      // Dead nodes stay listed, as dead, until someone removes them.
      await directory.deregisterNode(nodes[1].nodeNumber);
    } finally {
      await directory.close();
    }
    assert.deepEqual(localNodes().filter((n) => names.includes(n.storeName)), [], "the killed node's file is gone with it");
  } finally {
    for (const node of nodes) node.child.kill();
    await Promise.all(nodes.map((node) => node.child.exited));
    for (const name of names) await runCli(["destroy", name], () => {}, () => {}).catch(() => {});
  }
}, { timeoutMs: 90_000 });

test(`cluster nodes: a node started by SIGTERM's rules leaves; wrong command lines are refused with exit 2 (${currentRuntime})`, async () => {
  const name = uniqueStoreName("node-term");
  const node = await startNode(name);
  try {
    process.kill(node.child.pid, "SIGTERM");
    assert.equal((await node.child.exited).code, 0);
    await eventually(() => !existsSync(`/dev/shm/objstore-${name}`), 5000, "store removed");
    assert.ok(!(await clusterNodes()).some((n) => n.storeName === name));
  } finally {
    node.child.kill();
  }
  const noAddress = await cliOutput(["start", "--token", "t"]);
  assert.equal(noAddress.code, 2);
  assert.match(noAddress.err, /start needs --address redis:\/\/HOST:PORT/);
  const previous = process.env.OBJSTORE_CLUSTER_TOKEN;
  delete process.env.OBJSTORE_CLUSTER_TOKEN;
  try {
    const noToken = await cliOutput(["start", "--address", redisUrl()]);
    assert.equal(noToken.code, 2);
    assert.match(noToken.err, /needs the cluster token: --token T or OBJSTORE_CLUSTER_TOKEN/);
  } finally {
    if (previous !== undefined) process.env.OBJSTORE_CLUSTER_TOKEN = previous;
  }
  const badPort = await cliOutput(["start", "--address", redisUrl(), "--token", "t", "--port", "99999"]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.err, /--port must be a whole number up to 65535, got "99999"/);
}, { timeoutMs: 60_000 });

test(`cluster nodes: a node stopped (SIGSTOP) past its heartbeats is silent, then declared dead; woken, it leaves and joins again as a new node, saying why; nodes stalled all together are not declared dead (${currentRuntime})`, async () => {
  const names = ["fenced", "stall-a", "stall-b"].map((n) => uniqueStoreName(`node-${n}`));
  const nodes: RunningNode[] = [];
  const directory = await Directory.connect(redisUrl());
  const stateOf = async (name: string) => {
    const node = (await directory.nodes()).find((n) => n.storeName === name);
    return node === undefined ? "gone" : node.silent ? "silent" : node.alive ? "alive" : "dead";
  };
  try {
    // One node stopped: the test's readings see it silent, then dead; it leaves once woken.
    const fenced = await startNode(names[0], ["--heartbeat-ms", "100"]);
    nodes.push(fenced);
    process.kill(fenced.child.pid, "SIGSTOP");
    const seen: string[] = [];
    const deadline = Date.now() + 10_000;
    for (let state = await stateOf(names[0]); state !== "dead"; state = await stateOf(names[0])) {
      assert.ok(Date.now() < deadline, `the stopped node is declared dead within 10 s; states seen: ${seen}`);
      if (seen.at(-1) !== state) seen.push(state);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    assert.deepEqual(seen.filter((s) => s !== "alive"), ["silent"], `states seen: ${seen}`);
    process.kill(fenced.child.pid, "SIGCONT");
    // Woken, it is refused its next beat: it leaves, and joins again as a new node.
    assert.match(await fenced.child.line(), /^node \w+ stopped$/);
    const rejoined = /\(number (\d+)\) started: store (\S+),/.exec(await fenced.child.line());
    assert.ok(rejoined, "it joins again");
    assert.notEqual(Number(rejoined[1]), fenced.nodeNumber, "under a new number");
    assert.equal(rejoined[2], names[0], "with its store name");
    const listed = (await directory.nodes()).filter((n) => n.storeName === names[0]);
    assert.deepEqual(listed.map((n) => [n.nodeNumber, n.alive]), [[Number(rejoined[1]), true]], "the old node left the directory");
    process.kill(fenced.child.pid, "SIGTERM");
    const ended = await fenced.child.exited;
    assert.equal(ended.code, 0, ended.stderr);
    assert.match(ended.stderr, /was declared dead by the cluster: its heartbeat was silent .* so it leaves and joins again as a new node/);
    await eventually(() => !existsSync(`/dev/shm/objstore-${names[0]}`), 5000, "the node's store removed");
    assert.equal(await stateOf(names[0]), "gone", "it left the directory");

    // Two nodes (each the other's reader) stopped and woken together, as a stalled machine
    // wakes: their keys have expired, but each beats again before a second reading.
    const pair = [await startNode(names[1], ["--heartbeat-ms", "500"]), await startNode(names[2], ["--heartbeat-ms", "500"])];
    nodes.push(...pair);
    for (const node of pair) process.kill(node.child.pid, "SIGSTOP");
    await new Promise((resolve) => setTimeout(resolve, 2500));
    for (const node of pair) process.kill(node.child.pid, "SIGCONT");
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const afterStall = await directory.nodes();
    for (const node of pair) {
      const now = afterStall.find((n) => n.storeName === node.storeName);
      assert.deepEqual([now?.nodeNumber, now?.alive, now?.silent], [node.nodeNumber, true, false], `${node.storeName} after the stall: the same node, beating`);
    }
    for (const node of pair) process.kill(node.child.pid, "SIGTERM");
    for (const node of pair) {
      const ended = await node.child.exited;
      assert.equal(ended.code, 0, ended.stderr);
      assert.doesNotMatch(ended.stderr, /declared dead/);
    }
  } finally {
    for (const node of nodes) {
      try {
        process.kill(node.child.pid, "SIGCONT");
      } catch { /* gone */ }
      node.child.kill();
    }
    await Promise.all(nodes.map((node) => node.child.exited));
    await directory.close();
    for (const name of names) await runCli(["destroy", name], () => {}, () => {}).catch(() => {});
  }
}, { timeoutMs: 90_000 });

test(`cluster nodes: a node declared dead while a program is attached to it cannot join again with its store: it exits 1 naming the program (${currentRuntime})`, async () => {
  const name = uniqueStoreName("node-orphans");
  const node = await startNode(name, ["--heartbeat-ms", "100"]);
  const driver = startDriver(name, "put", "1024");
  const directory = await Directory.connect(redisUrl());
  try {
    assert.match(await driver.line(), /^ready /);
    process.kill(node.child.pid, "SIGSTOP");
    await eventuallyAsync(async () => (await directory.nodes()).find((n) => n.nodeNumber === node.nodeNumber)?.alive === false, 10_000, "the stopped node declared dead");
    process.kill(node.child.pid, "SIGCONT");
    const ended = await node.child.exited;
    assert.equal(ended.code, 1, ended.stderr);
    assert.match(ended.stderr, new RegExp(`could not join the cluster again: its store ${name} is still used by process(es)? [0-9, ]*\\b${driver.pid}\\b.*lost their node`));
  } finally {
    driver.kill();
    node.child.kill();
    await Promise.all([driver.exited, node.child.exited]);
    await directory.close();
    await runCli(["destroy", name], () => {}, () => {}).catch(() => {});
  }
}, { timeoutMs: 60_000 });
