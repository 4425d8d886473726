/**
 * The directory's death (issue 14 item 5): Redis restarted from its append-only file, and Redis
 * gone. Two nodes on this machine against a Redis of this test's own (scripts/redis_server.sh,
 * REDIS_APPENDONLY=yes). Restarted, the nodes beat again and objects move between them as
 * before; gone, a get that needs the directory fails with DirectoryUnavailableError within its
 * bound instead of hanging, and the nodes keep their objects.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { Directory } from "../lib/cluster/directory.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, root, uniqueStoreName } from "./helpers.ts";
import { cleanUp, eventuallyAsync, objectsIn, putOn, runDriver, startDriver, startNodes } from "./cluster_helpers.ts";

const script = path.join(root, "scripts", "redis_server.sh");

function startRedis(): { url: string; dir: string } {
  const out = execFileSync("bash", [script, "start"], { env: { ...process.env, REDIS_APPENDONLY: "yes" }, encoding: "utf8" });
  const url = /OBJSTORE_TEST_REDIS='([^']+)'/.exec(out)![1];
  const dir = /OBJSTORE_TEST_REDIS_DIR='([^']+)'/.exec(out)![1];
  return { url, dir };
}

function killRedis(dir: string): void {
  const pid = Number(readFileSync(path.join(dir, "redis.pid"), "utf8"));
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    spawnSync("sleep", ["0.05"]);
  }
}

async function aliveNodes(url: string): Promise<number> {
  const directory = await Directory.connect(url, { timeoutMs: 1000 });
  try {
    return (await directory.nodes()).filter((node) => node.alive && !node.silent).length;
  } catch {
    return 0;
  } finally {
    await directory.close().catch(() => {});
  }
}

test(`cluster: Redis restarted from its append-only file, the nodes go on; Redis gone, a get needing it fails within its bound and the nodes keep their objects (${currentRuntime})`, async () => {
  const redis = startRedis();
  const previous = process.env.OBJSTORE_TEST_REDIS;
  process.env.OBJSTORE_TEST_REDIS = redis.url; // what tests/cluster_helpers.ts connects to
  const names = ["a", "b"].map((n) => uniqueStoreName(`redis-${n}`));
  const children: Child[] = [];
  try {
    await startNodes(children, names);
    const onA = await putOn(names[0], 2 * 1024 * 1024 + 1);
    children.push(onA.child);

    killRedis(redis.dir);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    execFileSync("redis-server", [path.join(redis.dir, "redis.conf")]);
    await eventuallyAsync(async () => await aliveNodes(redis.url) === 2, 15_000, "both nodes beating again");
    assert.equal(await runDriver(names[1], "get", onA.valueHex), `got from_${names[0]} ${onA.digest}`);

    const waiting = startDriver(names[1], "later", onA.bytesHex);
    children.push(waiting);
    assert.equal(await waiting.line(), "ready");
    killRedis(redis.dir);
    waiting.send("go");
    const [word, outcome, ms] = (await waiting.line()).split(" ");
    assert.deepEqual([word, outcome], ["later", "DirectoryUnavailableError"], "a get that needs the directory says it is unavailable");
    assert.ok(Number(ms) < 20_000, `within its bound, not a hang: ${ms} ms`);
    assert.ok((await objectsIn(names[0])).has(onA.bytesHex), "the node keeps its objects while Redis is gone");
  } finally {
    await cleanUp(children, names);
    process.env.OBJSTORE_TEST_REDIS = previous;
    execFileSync("bash", [script, "stop", redis.dir]);
  }
}, { timeoutMs: 120_000 });
