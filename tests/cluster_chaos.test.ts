/**
 * Chaos (issue 14): four nodes on this machine, a job of map and reduce tasks over refs spread
 * over them (tests/fixtures/cluster_chaos_driver.ts), and every few seconds a random node other
 * than the driver's killed with SIGKILL and another started in its place. Every result is
 * checked: none wrong, none lost (the job puts its inputs on the driver's node, which stays, so
 * lineage can make everything else again). 24 s here; STRESS_SECONDS makes it longer.
 */
import assert from "node:assert/strict";
import path from "node:path";
import process from "node:process";
import { test } from "./harness.ts";
import { type Child, currentRuntime, redisUrl, root, start, uniqueStoreName } from "./helpers.ts";
import { cleanUp, startNode, startNodes } from "./cluster_helpers.ts";

const seconds = Math.max(24, Number(process.env.STRESS_SECONDS ?? 0));
const killEveryMs = 6000;

test(`cluster chaos: a map-reduce job over refs while a random node dies every ${killEveryMs / 1000} s: every result right, none lost (${currentRuntime})`, async () => {
  const head = uniqueStoreName("chaos-head");
  const names = [head];
  const nodes = new Map<string, Child>();
  const children: Child[] = [];
  let started = 0;
  const startOne = async () => {
    const name = uniqueStoreName(`chaos-${started++}`);
    names.push(name);
    const child = await startNode(name, 1);
    nodes.set(name, child);
    children.push(child);
  };
  try {
    const others = [0, 1, 2].map(() => uniqueStoreName(`chaos-${started++}`));
    names.push(...others);
    await startNodes(children, [head, ...others], 1);
    others.forEach((name, i) => nodes.set(name, children[1 + i]));
    const driver = start(currentRuntime, path.join(root, "tests", "fixtures", "cluster_chaos_driver.ts"), [redisUrl(), head, String(seconds)]);
    children.push(driver);
    const summaryLine = driver.line();
    let kills = 0;
    const endMs = Date.now() + seconds * 1000;
    while (Date.now() + killEveryMs < endMs) {
      await new Promise((resolve) => setTimeout(resolve, killEveryMs * (0.5 + Math.random())));
      const victims = [...nodes.keys()];
      const victim = victims[Math.floor(Math.random() * victims.length)];
      nodes.get(victim)!.kill();
      nodes.delete(victim);
      kills++;
      await startOne();
    }
    const summary = JSON.parse(await summaryLine) as { rounds: number; right: number; wrong: number; lost: number; errors: Record<string, number> };
    console.log(`chaos (${currentRuntime}, ${seconds} s, ${kills} nodes killed): ${JSON.stringify(summary)}`);
    if (Object.keys(summary.errors).length > 0 && process.env.OBJSTORE_DEBUG_CLUSTER) console.log((await driver.exited).stderr.split("\n").slice(-80).join("\n"));
    assert.equal(summary.wrong, 0, "no result has wrong bytes");
    assert.deepEqual(summary.errors, {}, "every result came back (lineage made lost ones again)");
    assert.ok(summary.right > 0 && kills > 0);
  } finally {
    await cleanUp(children, names);
  }
}, { timeoutMs: (seconds + 150) * 1000 });
