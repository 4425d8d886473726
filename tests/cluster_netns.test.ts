/**
 * Nodes on hosts of their own: each `objstore start` runs in a network namespace of this
 * machine (tests/netns.ts: a /24 of 198.18.0.0/15, a bridge, Redis on the gateway), so
 * objects cross a network, not loopback. Objects from 1 byte to 2 GiB read byte-exact on
 * another host; a 1 GiB object read by three hosts at once; a host whose link is rate-limited
 * (tc netem, or tbf where the kernel lacks netem); the node being read from killed mid-transfer, the pull finishing from a copy.
 * Needs root (scripts/test.sh runs as root in CI).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import process from "node:process";
import { runCli } from "../lib/cli.ts";
import { removeNodeFile } from "../lib/cluster/node_files.ts";
import { test } from "./harness.ts";
import { command, currentRuntime, root, uniqueStoreName } from "./helpers.ts";
import { type Host, Network } from "./netns.ts";

const cli = path.join(root, "bin", "objstore.ts");
const driver = path.join(root, "tests", "fixtures", "cluster_driver.ts");
const tasksDriver = path.join(root, "tests", "fixtures", "cluster_tasks_driver.ts");
const token = `netns-test-${randomBytes(8).toString("hex")}`;
const GiB = 1024 * 1024 * 1024;
/** The largest object read across hosts (OBJSTORE_TEST_BIG_BYTES to change it). */
const bigBytes = Number(process.env.OBJSTORE_TEST_BIG_BYTES ?? 2 * GiB);

/** A process in a host's namespace whose stdout is read line by line. */
class HostProcess {
  readonly #child: ReturnType<typeof spawn>;
  readonly #lines: string[] = [];
  readonly #waiters: ((line: string) => void)[] = [];
  #stderr = "";
  readonly exited: Promise<number | null>;

  constructor(network: Network, host: Host, script: string, args: string[]) {
    const [runtime, runtimeArgs] = command(currentRuntime, script);
    const [cmd, argv] = network.within(host, runtime, [...runtimeArgs, ...args]);
    this.#child = spawn(cmd, argv, { cwd: root, stdio: ["pipe", "pipe", "pipe"], env: process.env });
    let buffered = "";
    this.#child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      for (let at = buffered.indexOf("\n"); at >= 0; at = buffered.indexOf("\n")) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        const waiter = this.#waiters.shift();
        if (waiter) waiter(line);
        else this.#lines.push(line);
      }
    });
    this.#child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.#stderr += chunk));
    this.exited = new Promise((resolve) => this.#child.on("exit", (code) => resolve(code)));
  }

  get pid(): number {
    return this.#child.pid!;
  }

  line(timeoutMs = 120_000): Promise<string> {
    const ready = this.#lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line within ${timeoutMs} ms; stderr:\n${this.#stderr}`)), timeoutMs);
      this.#waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`exited (${code}) before printing; stderr:\n${this.#stderr}`));
      });
    });
  }

  send(text: string): void {
    this.#child.stdin!.write(`${text}\n`);
  }

  kill(): void {
    this.#child.kill("SIGKILL");
  }
}

interface Cluster {
  network: Network;
  redis: string;
  nodes: { host: Host; storeName: string; process: HostProcess }[];
  processes: HostProcess[];
  stop(): Promise<void>;
}

/** A network of hosts, Redis on its gateway, a node on each host with the memory given for it
 * (and `numWorkers` workers each, beating every `heartbeatMs`). */
async function cluster(memoryBytesOfNode: number[], numWorkers = 0, heartbeatMs = 1000): Promise<Cluster> {
  const network = new Network(memoryBytesOfNode.length);
  let redisDir: string | undefined;
  const processes: HostProcess[] = [];
  const storeNames = network.hosts.map((_, i) => uniqueStoreName(`netns-${i}`));
  const stop = async () => {
    for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.exited));
    network.remove();
    if (redisDir !== undefined) execFileSync("bash", [path.join(root, "scripts", "redis_server.sh"), "stop", redisDir], { stdio: "ignore" });
    for (const name of storeNames) {
      removeNodeFile(name); // the nodes were killed: they could not remove their own
      await runCli(["destroy", name], () => {}, () => {}).catch(() => {});
    }
  };
  try {
    const exports = execFileSync("bash", [path.join(root, "scripts", "redis_server.sh"), "start"], {
      encoding: "utf8",
      env: { ...process.env, REDIS_BIND: network.gateway },
    });
    const redis = /OBJSTORE_TEST_REDIS='([^']+)'/.exec(exports)![1];
    redisDir = /OBJSTORE_TEST_REDIS_DIR='([^']+)'/.exec(exports)![1];
    // Started together: each node's store is made (and its memory touched) at the same time.
    const nodes = network.hosts.map((host, i) => {
      const node = new HostProcess(network, host, cli, [
        "start", "--address", redis, "--token", token, "--node-ip", host.address, "--store", storeNames[i],
        "--object-store-memory", String(memoryBytesOfNode[i]), "--num-workers", String(numWorkers), "--heartbeat-ms", String(heartbeatMs),
      ]);
      processes.push(node);
      return { host, storeName: storeNames[i], process: node };
    });
    for (const node of nodes) {
      assert.match(await node.process.line(), new RegExp(`started: store ${node.storeName}, transfers on ${node.host.address.replaceAll(".", "\\.")}:`));
    }
    return { network, redis, nodes, processes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Runs the driver fixture (or `script`) on node `i`'s host. */
function driverOn(c: Cluster, i: number, args: string[], script = driver): HostProcess {
  const p = new HostProcess(c.network, c.nodes[i].host, script, [c.redis, c.nodes[i].storeName, ...args]);
  c.processes.push(p);
  return p;
}

/** Puts `sizeBytes` on node `i`; the putting driver holds them until `release()`. */
async function putOn(c: Cluster, i: number, sizeBytes: number): Promise<{ valueHex: string; bytesHex: string; digest: string; release(): Promise<void> }> {
  const putter = driverOn(c, i, ["put", String(sizeBytes)]);
  const [word, valueHex, bytesHex, digest] = (await putter.line()).split(" ");
  assert.equal(word, "ready");
  const release = async () => {
    putter.send("done");
    assert.equal(await putter.exited, 0);
  };
  return { valueHex, bytesHex, digest, release };
}

test(`cluster across hosts: objects from 1 byte to ${bigBytes} bytes read byte-exact on another host; 1 GiB read by three hosts at once (${currentRuntime})`, async () => {
  // Room for the largest object on the two nodes it goes between, for 1 GiB on the others: each
  // object is let go before the next is put, so none spills (the test is of transfers).
  const roomBytes = 256 * 1024 * 1024;
  const largestBytes = Math.max(bigBytes, GiB); // the broadcast's 1 GiB goes from node 0 too
  const c = await cluster([largestBytes + roomBytes, largestBytes + roomBytes, GiB + roomBytes, GiB + roomBytes]);
  try {
    for (const sizeBytes of [1, 1024 * 1024 + 1, bigBytes]) {
      const put = await putOn(c, 0, sizeBytes);
      const reader = driverOn(c, 1, ["get", put.valueHex]);
      assert.equal(await reader.line(), `got from_${c.nodes[0].storeName} ${put.digest}`, `${sizeBytes} bytes`);
      await reader.exited;
      await put.release();
    }
    const broadcast = await putOn(c, 0, GiB);
    const readers = [1, 2, 3].map((i) => driverOn(c, i, ["get", broadcast.valueHex]).line());
    for (const line of await Promise.all(readers)) assert.equal(line, `got from_${c.nodes[0].storeName} ${broadcast.digest}`);
  } finally {
    await c.stop();
  }
}, { timeoutMs: 300_000 });

test(`cluster across hosts: a rate-limited host reads exact bytes; the node read from is killed mid-transfer and the pull finishes from a copy (${currentRuntime})`, async () => {
  const c = await cluster([512 * 1024 * 1024, 512 * 1024 * 1024, 512 * 1024 * 1024]);
  try {
    const put = await putOn(c, 0, 256 * 1024 * 1024);
    // Host 1 takes a copy and keeps it.
    const holder = driverOn(c, 1, ["hold", put.bytesHex]);
    assert.equal(await holder.line(), `holding ${put.digest}`);
    // Host 2 reads at 400 Mbit/s (about 5 s for 256 MiB); its node is killed after 1 s.
    c.network.limitRate(c.nodes[2].host, "400mbit");
    const reader = driverOn(c, 2, ["hold", put.bytesHex]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.kill(c.nodes[0].process.pid, "SIGKILL");
    assert.equal(await reader.line(), `holding ${put.digest}`);
    holder.send("done");
    reader.send("done");
  } finally {
    await c.stop();
  }
}, { timeoutMs: 300_000 });

test(`cluster across hosts: a host cut off (its link down) is declared dead and a result it made is made again elsewhere; brought back, its node joins again as a new node and runs tasks (${currentRuntime})`, async () => {
  const c = await cluster([128 * 1024 * 1024, 128 * 1024 * 1024, 128 * 1024 * 1024], 1, 500);
  try {
    const [a, b, cut] = c.nodes;
    // Y is made on the host cut next, Z from it on B; then Y is read again, and a step over it runs on B.
    const lineage = driverOn(c, 0, ["lineage", cut.storeName, b.storeName], tasksDriver);
    const first = (await lineage.line()).split(" ");
    assert.equal(first[0], "first");
    assert.deepEqual(first.slice(1, 3), first.slice(3, 5), "Z's bytes");
    c.network.setLink(cut.host, false);
    lineage.send("go");
    const after = (await lineage.line()).split(" ");
    assert.equal(after[0], "after", after.join(" "));
    assert.deepEqual(after.slice(1, 3), after.slice(3, 5), "Y made again while its host is cut off");
    assert.deepEqual(after.slice(5, 7), after.slice(7, 9), "a step over the new Y");
    assert.equal(await lineage.exited, 0);
    c.network.setLink(cut.host, true);
    // Back: declared dead while away, it is refused its next beat, leaves and joins again as a
    // new node (the others let go of what its processes held); SPREAD reaches it again.
    assert.match(await cut.process.line(), /^node \w+ stopped$/);
    assert.match(await cut.process.line(), new RegExp(`\\(number \\d+\\) started: store ${cut.storeName},`));
    const deadline = Date.now() + 30_000;
    let ran: string[] = [];
    while (Date.now() < deadline) {
      ran = (await driverOn(c, 0, ["spread", "6"], tasksDriver).line()).split(" ");
      if (ran.includes(cut.storeName)) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.equal(ran[0], "ran");
    assert.deepEqual(new Set(ran.slice(1)), new Set([a.storeName, b.storeName, cut.storeName]), `the host brought back runs tasks: ${ran.join(" ")}`);
  } finally {
    await c.stop();
  }
}, { timeoutMs: 180_000 });
