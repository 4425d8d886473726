/**
 * Nodes and drivers of a cluster on this machine, for the cluster tests: nodes started with
 * `objstore start` on this runtime against the test Redis, drivers attached to them with
 * init({ address, node }) (tests/fixtures/cluster_driver.ts), and what a node's store holds.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { processesMapping, runCli } from "../lib/cli.ts";
import { removeNodeFile } from "../lib/cluster/node_files.ts";
import { Directory } from "../lib/cluster/directory.ts";
import { type ClusterMemory, listClusterObjects } from "../lib/cluster/listing.ts";
import { type Child, currentRuntime, redisUrl, root, type Runtime, start } from "./helpers.ts";

const cli = path.join(root, "bin", "objstore.ts");
const driver = path.join(root, "tests", "fixtures", "cluster_driver.ts");
const tasksDriver = path.join(root, "tests", "fixtures", "cluster_tasks_driver.ts");
/** The token of this run's clusters. */
export const clusterToken = `cluster-test-${randomBytes(8).toString("hex")}`;

/**
 * Starts a node with store `storeName` (128 MiB, `numWorkers` workers, this run's token), beating
 * every 500 ms: a node killed is seen dead within two seconds, and a busy machine's late beats
 * are not taken for deaths.
 */
export async function startNode(storeName: string, numWorkers = 0, token = clusterToken, extra: string[] = [], runtime: Runtime = currentRuntime): Promise<Child> {
  const child = spawnNode(storeName, numWorkers, token, extra, runtime);
  assert.match(await child.line(), /started: store/);
  return child;
}

/** Starts a node for each name at once (as `startNode`); each goes into `children` as soon as it
 * runs, so `cleanUp` stops them all even when one fails to start. */
export async function startNodes(children: Child[], storeNames: string[], numWorkers = 0): Promise<void> {
  const started = storeNames.map((name) => spawnNode(name, numWorkers, clusterToken, []));
  children.push(...started);
  for (const child of started) assert.match(await child.line(), /started: store/);
}

function spawnNode(storeName: string, numWorkers: number, token: string, extra: string[], runtime: Runtime = currentRuntime): Child {
  return start(runtime, cli, [
    "start", "--address", redisUrl(), "--store", storeName, "--token", token, "--heartbeat-ms", "500",
    "--object-store-memory", String(128 * 1024 * 1024), "--num-workers", String(numWorkers), ...extra,
  ]);
}

/** A driver that put a value and holds it until told (`child.send("done")`). */
export interface Put {
  child: Child;
  valueHex: string;
  bytesHex: string;
  digest: string;
}

/** Puts `sizeBytes` bytes and a value holding refs to them and to `otherHexes` on `node`. */
export async function putOn(node: string, sizeBytes: number, otherHexes: string[] = []): Promise<Put> {
  const child = startDriver(node, "put", String(sizeBytes), ...otherHexes);
  const [word, valueHex, bytesHex, digest] = (await child.line()).split(" ");
  assert.equal(word, "ready");
  return { child, valueHex, bytesHex, digest };
}

/** Starts a driver on `node` in `mode` (see the fixture; `tasks_driver` for tasks). */
export function startDriver(node: string, mode: string, ...args: string[]): Child {
  if (process.env.OBJSTORE_TEST_VERBOSE) console.error(`driver on ${node}: ${mode} ${args.join(" ")}`);
  return start(currentRuntime, driver, [redisUrl(), node, mode, ...args]);
}

/** Starts a driver of tasks on `node` (tests/fixtures/cluster_tasks_driver.ts). */
export function startTasksDriver(node: string, mode: string, ...args: string[]): Child {
  return start(currentRuntime, tasksDriver, [redisUrl(), node, mode, ...args]);
}

/** Runs a driver on `node` to its end; resolves with its one line of output. */
export async function runDriver(node: string, mode: string, ...args: string[]): Promise<string> {
  return await runToEnd(startDriver(node, mode, ...args), mode);
}

/** Runs a driver of tasks on `node` to its end; resolves with its one line of output. */
export async function runTasksDriver(node: string, mode: string, ...args: string[]): Promise<string> {
  return await runToEnd(startTasksDriver(node, mode, ...args), mode);
}

async function runToEnd(child: Child, mode: string): Promise<string> {
  const line = await child.line();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the driver (${mode}) printed ${JSON.stringify(line)} but did not exit within 30 s`)), 30_000);
  });
  const { code, stderr } = await Promise.race([child.exited, hung]).finally(() => clearTimeout(timer));
  assert.equal(code, 0, stderr);
  return line;
}

/** Tells a `put` or `hold` driver to let go, and waits for it to end. */
export async function release(child: Child): Promise<void> {
  child.send("done");
  const { code, stderr } = await child.exited;
  assert.equal(code, 0, stderr);
}

/** The ids of the objects in store `storeName` (`objstore memory --store`). */
export async function objectsIn(storeName: string): Promise<Set<string>> {
  let out = "";
  const code = await runCli(["memory", "--store", storeName, "--json"], (line) => out += line, (line) => out += line);
  assert.equal(code, 0, out);
  return new Set((JSON.parse(out) as { objects: { id: string }[] }).objects.map((o) => o.id));
}

/** Waits until `check` holds, polling, up to `timeoutMs`; fails naming `what`. */
export async function eventuallyAsync(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Kills what a test started and removes the nodes' stores, node files and directory records.
 * The records go at once: a killed node stays alive in the directory until it is declared
 * dead, seconds later, and the next test's groups and SPREAD tasks would be placed on it.
 */
export async function cleanUp(children: Child[], storeNames: string[]): Promise<void> {
  for (const child of children) child.kill();
  await Promise.all(children.map((child) => child.exited));
  await forgetNodes(storeNames).catch(() => {}); // a test that stopped Redis leaves them there
  for (const name of storeNames) {
    removeNodeFile(name); // a killed node could not remove its own
    // A killed node's workers run on until their task ends (one sleeping in the task holds
    // on for as long as it sleeps), and destroy refuses a store a live process holds.
    const segment = `/dev/shm/objstore-${name}`;
    for (let attempt = 0; attempt < 20 && existsSync(segment); attempt++) {
      for (const pid of processesMapping(segment)) if (pid !== process.pid) killQuietly(pid);
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      await runCli(["destroy", name], () => {}, () => {}).catch(() => {});
    }
  }
}

async function forgetNodes(storeNames: string[]): Promise<void> {
  const directory = await Directory.connect(redisUrl(), { timeoutMs: 2000 });
  try {
    for (const node of await directory.nodes()) {
      if (storeNames.includes(node.storeName)) await directory.deregisterNode(node.nodeNumber);
    }
  } finally {
    await directory.close();
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch { /* gone already */ }
}

/** The objects of the cluster, as `objstore memory --address` lists them. */
export async function clusterObjects(): Promise<ClusterMemory> {
  const directory = await Directory.connect(redisUrl());
  try {
    return await listClusterObjects(directory);
  } finally {
    await directory.close();
  }
}

/** Waits until object `hex`'s node holds it for `count` holders on other nodes. */
export async function heldForOthers(hex: string, count: number): Promise<void> {
  await eventuallyAsync(async () => {
    const object = (await clusterObjects()).objects.find((o) => o.id === hex);
    return (object?.heldFor.length ?? 0) === count;
  }, 10_000, `${hex} held for ${count} holders elsewhere`);
}
