/** `objstore memory` and `objstore status`, run as a command on each runtime. */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import * as os from "../mod.ts";
import { loadLibrary } from "../lib/ffi/load.ts";
import { NativeStore } from "../lib/store/native_store.ts";
import { processesMapping } from "../lib/cli.ts";
import { test } from "./harness.ts";
import { currentRuntime, root, runtimes, runToEnd, start, uniqueStoreName } from "./helpers.ts";

const cli = path.join(root, "bin", "objstore.ts");

async function run(runtime: (typeof runtimes)[number], args: string[]): Promise<{ out: string; code: number | null }> {
  const { lines, stderr, code } = await runToEnd(runtime, cli, args);
  return { out: lines.join("\n") + stderr, code };
}

for (const runtime of runtimes) {
  test(`objstore memory lists objects, sizes, references and pins (${runtime})`, async () => {
    const storeName = uniqueStoreName(`cli-${runtime}`);
    await os.init({ storeName, objectStoreMemory: 16 * 1024 * 1024, prefault: false });
    try {
      const big = os.put(new Uint8Array(100_000));
      const small = os.put({ hello: "world" });
      const view = await os.get(big);
      const { out, code } = await run(runtime, ["memory", "--store", storeName]);
      assert.equal(code, 0, out);
      assert.match(out, new RegExp(`${big.id}\\s+97\\.7 KiB\\s+1\\s+1\\s+0\\s+memory`));
      assert.match(out, new RegExp(`${small.id}\\s+\\d+ B\\s+1\\s+0\\s+0\\s+memory`));
      assert.match(out, /2 objects: 2 in memory/);
      assert.match(out, /1 process attached/);
      const json = JSON.parse((await run(runtime, ["memory", "--store", storeName, "--json"])).out);
      assert.equal(json.objectCount, 2);
      assert.equal(json.objects.length, 2);
      const status = await run(runtime, ["status"]);
      assert.match(status.out, new RegExp(`${storeName}\\s.*1 driver\\(s\\), 0 worker\\(s\\)`));
      await os.get(os.remote(() => 1).remote());
      const withWorkers = JSON.parse((await run(runtime, ["status", "--json"])).out);
      const mine = withWorkers.nodes[0].stores.find((s: { store: string }) => s.store === storeName);
      assert.ok(mine.processes.some((p: { role: string }) => p.role === "worker"), JSON.stringify(mine));
      assert.equal((view as Uint8Array).length, 100_000, "the view stays reachable (and pinned) until here");
    } finally {
      await os.shutdown();
    }
  }, { timeoutMs: 60_000 });
}

test("objstore with a bad command or store is a clear error", async () => {
  const bad = await run("node", ["frobnicate"]);
  assert.equal(bad.code, 2);
  assert.match(bad.out, /unknown command "frobnicate"/);
  const missing = await run("node", ["memory", "--store", "no-such-store-here"]);
  assert.equal(missing.code, 1);
  assert.match(missing.out, /no store named 'no-such-store-here'/);
});

test("objstore destroy removes a store whose processes were all killed, and refuses a live one", async () => {
  const storeName = uniqueStoreName("destroy");
  const writer = start("node", path.join(root, "tests", "fixtures", "writer.ts"), [storeName]);
  await writer.line();
  const refused = await run("node", ["destroy", storeName]);
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /still used by 1 other process/);
  writer.kill();
  await writer.exited;
  const { readdirSync, utimesSync, writeFileSync } = await import("node:fs");
  assert.ok(readdirSync("/dev/shm").includes(`objstore-${storeName}`), "a killed process leaves its store");
  // A channel whose worker never started (its driver was killed first), an hour old; one of a
  // store whose name only starts like this one's; and a fresh one, maybe a worker's about to open it.
  const orphan = `objstore-ch-${storeName}-0123456789abcdef`;
  // That other store is real and open here: a cleanup by any other process on the machine
  // (an init, a status) leaves its channel alone too.
  const otherStore = NativeStore.open(await loadLibrary(), `${storeName}-x`, { create: true, exclusive: true, capacityBytes: 1 << 20, prefault: false });
  const otherStores = `objstore-ch-${storeName}-x-0123456789abcdef`;
  const fresh = `objstore-ch-${storeName}-fedcba9876543210`;
  for (const name of [orphan, otherStores, fresh]) writeFileSync(`/dev/shm/${name}`, "");
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const name of [orphan, otherStores]) utimesSync(`/dev/shm/${name}`, hourAgo, hourAgo);
  try {
    const spillFolder = path.join(tmpdir(), `objstore-spill-${storeName}`);
    assert.ok(existsSync(spillFolder), "the killed writer's store had its default spill folder");
    const removed = await run("node", ["destroy", storeName]);
    assert.equal(removed.code, 0, removed.out);
    assert.ok(!existsSync(spillFolder), "destroy removes the default spill folder with the store");
    const left = readdirSync("/dev/shm");
    assert.ok(!left.includes(`objstore-${storeName}`));
    assert.deepStrictEqual([orphan, otherStores, fresh].map((name) => left.includes(name)), [false, true, true]);
  } finally {
    for (const name of [orphan, otherStores, fresh]) rmSync(`/dev/shm/${name}`, { force: true });
    otherStore.close();
  }
});

test("the processes mapping a store are those mapping its segment itself, not one whose name starts with it", async () => {
  const storeName = uniqueStoreName("mapped");
  await os.init({ storeName, objectStoreMemory: 16 * 1024 * 1024, numWorkers: 0, prefault: false });
  try {
    const segment = `/dev/shm/objstore-${storeName}`;
    assert.ok(processesMapping(segment).includes(process.pid), "this process maps its store");
    assert.ok(!processesMapping(segment.slice(0, -1)).includes(process.pid), "a store named with a prefix of it is not mapped");
    assert.ok(!processesMapping("/dev/shm/objstore-").includes(process.pid));
  } finally {
    await os.shutdown();
  }
});

test("objstore status --json stays JSON beside a segment it cannot read, and skips channel files", async () => {
  const junk = uniqueStoreName("junk");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(`/dev/shm/objstore-${junk}`, "not a store");
  writeFileSync(`/dev/shm/objstore-ch-${junk}-0123456789abcdef`, "");
  try {
    const { out, code } = await run("node", ["status", "--json"]);
    assert.equal(code, 0, out);
    const report = JSON.parse(out);
    const unreadable = report.nodes[0].unreadable as Array<{ store: string; error: string }>;
    assert.deepStrictEqual(unreadable.filter((u) => u.store.includes(junk)).map((u) => u.store), [junk]);
    const text = await run("node", ["status"]);
    assert.match(text.out, new RegExp(`${junk}: cannot open store`));
    assert.doesNotMatch(text.out, new RegExp(`ch-${junk}`));
  } finally {
    rmSync(`/dev/shm/objstore-${junk}`, { force: true });
    rmSync(`/dev/shm/objstore-ch-${junk}-0123456789abcdef`, { force: true });
  }
});

test(`objstore status and memory never show a dead process; status removes a store whose processes all died (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName("dead-listed");
  const fixture = path.join(root, "tests", "fixtures", "exits.ts");
  // The neighbour is stopped: no janitor of its own reclaims the dead process for the command.
  const neighbour = start(currentRuntime, fixture, [storeName, "hold"]);
  const doomed = start(currentRuntime, fixture, [storeName, "wait"]);
  try {
    const keptId = (await neighbour.line()).split(" ")[1];
    await doomed.line();
    process.kill(neighbour.pid, "SIGSTOP");
    doomed.kill();
    await doomed.exited;
    const status = JSON.parse((await run(currentRuntime, ["status", "--json"])).out);
    const mine = status.nodes[0].stores.find((s: { store: string }) => s.store === storeName);
    assert.deepStrictEqual(mine.processes.map((p: { pid: number }) => p.pid), [neighbour.pid], "status lists the living process only");
    const memory = JSON.parse((await run(currentRuntime, ["memory", "--store", storeName, "--json"])).out);
    assert.equal(memory.attachedProcesses, 1);
    assert.deepStrictEqual(
      memory.objects.map((o: { id: string; referencingProcesses: number }) => [o.id, o.referencingProcesses]),
      [[keptId, 1]],
      "the dead process holds nothing",
    );
    neighbour.kill();
    await neighbour.exited;
    const after = await run(currentRuntime, ["status"]);
    assert.match(after.out, new RegExp(`removed store ${storeName}: its processes all died`));
    assert.ok(!existsSync(`/dev/shm/objstore-${storeName}`));
  } finally {
    try {
      process.kill(neighbour.pid, "SIGCONT");
    } catch { /* gone */ }
    neighbour.kill();
    doomed.kill();
    rmSync(`/dev/shm/objstore-${storeName}`, { force: true });
  }
}, { timeoutMs: 60_000 });
