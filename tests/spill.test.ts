/** SPEC "Memory, spilling and lifetimes": a small store holds far more than its size. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync, closeSync } from "node:fs";
import nodeOs from "node:os";
import path from "node:path";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { type Child, collectGarbage, currentRuntime, eventually, root, start, uniqueStoreName } from "./helpers.ts";
import { checksum, payload } from "./fixtures/payload.ts";

const MiB = 1024 * 1024;

test("a 64 MiB store takes 1 GiB in 16 MiB objects and returns every byte", async () => {
  const directory = mkdtempSync(path.join(nodeOs.tmpdir(), "objstore-spill-test-"));
  await os.init({ objectStoreMemory: 64 * MiB, spill: { type: "filesystem", directory }, prefault: false });
  try {
    const expected: number[] = [];
    const refs: os.ObjectRef[] = [];
    for (let k = 0; k < 64; k++) {
      const bytes = payload(k, 16 * MiB);
      expected.push(checksum(bytes));
      refs.push(os.put(bytes));
    }
    const stats = os.memoryStats();
    assert.ok(stats.spilledObjects >= 60, `${stats.spilledObjects} objects spilled`);
    assert.ok(stats.usedBytes <= 64 * MiB);
    assert.ok(readdirSync(directory).some((f) => f.endsWith(".spill")));
    // Read in a function of its own: an async frame may keep its last value alive (V8), and
    // with it that object's pin.
    const checksumOf = async (ref: os.ObjectRef) => {
      const view = (await os.get(ref)) as Uint8Array;
      assert.equal(view.byteLength, 16 * MiB);
      return checksum(view);
    };
    for (let k = 0; k < 64; k++) assert.equal(await checksumOf(refs[k]), expected[k], `object ${k}`);
    assert.ok(os.memoryStats().restoredBytes >= 60 * 16 * MiB);
    os.free(refs);
    // Restored objects keep their copy (spilling them again costs no write) until they are
    // deleted, which waits for the views above to be collected.
    await collectUntil(() => readdirSync(directory).filter((f) => f.endsWith(".spill")).length === 0, "spill files deleted with their objects");
  } finally {
    await os.shutdown();
    rmSync(directory, { recursive: true, force: true });
  }
}, { timeoutMs: 180_000 });

test("memoryStats counts the bytes and objects spilled and restored so far: totals that match what the index holds", async () => {
  const directory = mkdtempSync(path.join(nodeOs.tmpdir(), "objstore-spill-test-"));
  // Spilled only as puts and gets need room (no background spilling): the scan of the index
  // and the totals are then read with nothing moving between them.
  await os.init({ objectStoreMemory: 8 * MiB, spill: { type: "filesystem", directory }, spillThreshold: 1, prefault: false });
  try {
    const before = os.memoryStats();
    assert.deepEqual([before.spilledBytesTotal, before.spilledObjectsTotal, before.restoredBytes, before.restoredObjectsTotal], [0, 0, 0, 0]);
    const refs = Array.from({ length: 24 }, (_, k) => os.put(new Uint8Array(512 * 1024).fill(k)));
    const spilled = os.memoryStats();
    assert.ok(spilled.spilledObjects >= 4, `${spilled.spilledObjects} objects spilled`);
    // Every object has the same size: the index's scan tells it (spilled bytes / objects).
    const objectBytes = spilled.spilledBytes / spilled.spilledObjects;
    assert.ok(Number.isInteger(objectBytes) && objectBytes > 512 * 1024, String(objectBytes));
    // Nothing restored or freed yet: the totals are what the index holds spilled.
    assert.equal(spilled.spilledObjectsTotal, spilled.spilledObjects);
    assert.equal(spilled.spilledBytesTotal, spilled.spilledBytes);
    assert.equal(spilled.restoredObjectsTotal, 0);

    // Read every object back: the spilled come back (and others leave to make room).
    const firstByte = async (ref: os.ObjectRef) => ((await os.get(ref)) as Uint8Array)[0];
    for (let k = 0; k < refs.length; k++) assert.equal(await firstByte(refs[k]), k, `object ${k}`);
    const after = os.memoryStats();
    const restoredObjects = after.restoredObjectsTotal - spilled.restoredObjectsTotal;
    assert.ok(restoredObjects >= spilled.spilledObjects, `${restoredObjects} objects restored`);
    assert.equal(after.restoredBytes, restoredObjects * objectBytes, "restored bytes are the restored objects' bytes");
    assert.ok(after.spilledObjectsTotal > spilled.spilledObjectsTotal, "restoring made room by spilling others");
    assert.equal(after.spilledBytesTotal, after.spilledObjectsTotal * objectBytes, "spilled bytes are the spilled objects' bytes");
    // What left memory less what came back is what is spilled now (nothing was freed).
    assert.equal(after.spilledObjectsTotal - after.restoredObjectsTotal, after.spilledObjects);
    assert.equal(after.spilledBytesTotal - after.restoredBytes, after.spilledBytes);
    refs.length = 0;
  } finally {
    await os.shutdown();
    rmSync(directory, { recursive: true, force: true });
  }
});

test("a flipped byte in a spill file makes get throw ObjectLostError for that object only", async () => {
  const directory = mkdtempSync(path.join(nodeOs.tmpdir(), "objstore-spill-test-"));
  await os.init({ objectStoreMemory: 16 * MiB, spill: { type: "filesystem", directory }, prefault: false });
  try {
    const refs = Array.from({ length: 12 }, (_, k) => os.put(payload(k, 4 * MiB)));
    const files = readdirSync(directory).filter((f) => f.endsWith(".spill")).sort();
    assert.ok(files.length > 0);
    // Corrupt the middle of the first file: one record's data (its objects were the coldest).
    const file = path.join(directory, files[0]);
    const fd = openSync(file, "r+");
    const at = Math.floor(statSync(file).size / 2);
    const byte = new Uint8Array(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] ^= 0xff;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
    let lost = 0;
    for (let k = 0; k < refs.length; k++) {
      try {
        const view = (await os.get(refs[k])) as Uint8Array;
        assert.equal(checksum(view), checksum(payload(k, 4 * MiB)), `object ${k} came back wrong`);
      } catch (error) {
        assert.ok(error instanceof os.ObjectLostError, `object ${k}: ${error}`);
        lost += 1;
      }
    }
    assert.equal(lost, 1, "exactly the corrupted object is lost");
  } finally {
    await os.shutdown();
    rmSync(directory, { recursive: true, force: true });
  }
}, { timeoutMs: 120_000 });

test("a missing spill file makes get throw ObjectLostError; the default spill folder goes at shutdown", async () => {
  const storeName = uniqueStoreName("spill-default");
  await os.init({ objectStoreMemory: 8 * MiB, storeName, prefault: false });
  const folder = path.join(nodeOs.tmpdir(), `objstore-spill-${storeName}`);
  try {
    const refs = Array.from({ length: 6 }, (_, k) => os.put(payload(k, 2 * MiB)));
    assert.ok(existsSync(folder));
    for (const f of readdirSync(folder)) rmSync(path.join(folder, f));
    await assert.rejects(os.get(refs[0]), os.ObjectLostError);
    assert.equal(checksum((await os.get(refs[5])) as Uint8Array), checksum(payload(5, 2 * MiB)));
  } finally {
    await os.shutdown();
  }
  assert.equal(existsSync(folder), false, "the default spill folder is removed by the last process");
}, { timeoutMs: 60_000 });

test("with spilling off, a put that does not fit is ObjectStoreFullError and nothing is lost", async () => {
  await os.init({ objectStoreMemory: 8 * MiB, spill: false, prefault: false });
  try {
    const kept = [os.put(payload(1, 3 * MiB)), os.put(payload(2, 3 * MiB))];
    assert.throws(() => os.put(payload(3, 3 * MiB)), os.ObjectStoreFullError);
    assert.equal(checksum((await os.get(kept[1])) as Uint8Array), checksum(payload(2, 3 * MiB)));
    assert.equal(os.memoryStats().spilledObjects, 0);
  } finally {
    await os.shutdown();
  }
});

test("above spillThreshold, cold objects spill in the background without any put waiting", async () => {
  const directory = mkdtempSync(path.join(nodeOs.tmpdir(), "objstore-spill-test-"));
  await os.init({ objectStoreMemory: 64 * MiB, spill: { type: "filesystem", directory }, spillThreshold: 0.5, prefault: false });
  try {
    const refs = Array.from({ length: 10 }, (_, k) => os.put(payload(k, 4 * MiB)));
    const deadline = Date.now() + 5000;
    while (os.memoryStats().usedBytes > 0.5 * 64 * MiB && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const stats = os.memoryStats();
    assert.ok(stats.usedBytes <= 0.5 * 64 * MiB, `${stats.usedBytes} bytes still in memory`);
    assert.ok(stats.spilledObjects > 0);
    for (let k = 0; k < refs.length; k++) {
      assert.equal(checksum((await os.get(refs[k])) as Uint8Array), checksum(payload(k, 4 * MiB)));
    }
  } finally {
    await os.shutdown();
    rmSync(directory, { recursive: true, force: true });
  }
}, { timeoutMs: 60_000 });

/** The spill files in `directory`. */
function spillFiles(directory: string): string[] {
  return readdirSync(directory).filter((f) => f.endsWith(".spill"));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Collects garbage until `done()`: views the program dropped release their pins (and let freed objects go). */
async function collectUntil(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    await collectGarbage();
    if (done()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(os.memoryStats())}`);
  }
}

test("a process killed mid-spill leaves a store that the survivors and the next process can use", async () => {
  const memory = 64 * MiB;
  const directory = mkdtempSync(path.join(nodeOs.tmpdir(), "objstore-spill-test-"));
  const storeName = uniqueStoreName("spill-kill");
  const fixture = (name: string) => path.join(root, "tests", "fixtures", name);
  const children: Child[] = [];
  let segmentLeft = true;
  let filesLeft: string[] = [];
  try {
    // spillThreshold 1: no background spilling, so each spill is made by the process whose put
    // needs room, here the child that gets killed: it is the actor of every spill in flight.
    await os.init({ storeName, objectStoreMemory: memory, spill: { type: "filesystem", directory }, spillThreshold: 1, prefault: false });
    // The survivor's objects: 32 MiB of the 64, the coldest, so the child's first spills take them.
    const mine = Array.from({ length: 4 }, (_, k) => os.put(payload(k, 8 * MiB)));
    const extent = os.memoryStats().usedBytes / mine.length;
    // 8 MiB of payload, the header, and up to a page of room to place the payload (payloads.ts).
    assert.ok(extent >= 8 * MiB && extent < 8 * MiB + 8192, `extent of ${extent} bytes`);
    const readMine = async (what: string) => {
      for (let k = 0; k < mine.length; k++) {
        assert.equal(checksum((await os.get(mine[k])) as Uint8Array), checksum(payload(k, 8 * MiB)), `${what}: object ${k}`);
      }
    };
    /** `objects` of ours in the store and nothing else: memory used is exactly theirs. */
    const checkStats = (what: string, objects: number) => {
      const s = os.memoryStats();
      const detail = `${what}: ${JSON.stringify(s)}`;
      assert.equal(s.objectCount, objects, detail);
      assert.equal(s.usedBytes, (objects - s.spilledObjects) * extent, `no bytes stranded; ${detail}`);
      assert.ok(s.spilledBytes <= s.spilledObjects * extent && s.spilledBytes >= s.spilledObjects * (extent - 64), detail);
      assert.ok(s.pinnedBytes <= s.usedBytes, detail);
    };

    for (let round = 0; round < 4; round++) {
      // Our views' pins go, so the child may spill our objects too.
      await collectUntil(() => os.memoryStats().pinnedBytes === 0, "our pins released");
      // The first spill takes our objects; later ones the child's own.
      const nth = round === 0 ? 1 : 1 + Math.floor(Math.random() * 3);
      const delayMs = Math.floor(Math.random() * 5);
      const what = `round ${round} (killed ${delayMs} ms into spill file ${nth})`;
      const before = new Set(spillFiles(directory));
      const child = start(currentRuntime, fixture("spill_churn.ts"), [storeName, String(memory)]);
      children.push(child);
      assert.equal(await child.line(), "attached");
      // A new spill file means a spill is being written (write, fsync, then free the memory).
      const deadline = Date.now() + 10_000;
      // Counted as seen, not as present: the child frees its oldest objects, and with them
      // the files their spills wrote.
      const seen = new Set<string>();
      while (seen.size < nth) {
        for (const f of spillFiles(directory)) if (!before.has(f)) seen.add(f);
        if (seen.size >= nth) break;
        if (Date.now() > deadline) throw new Error(`${what}: the child wrote fewer than ${nth} spill files; it printed: ${(await Promise.race([child.exited, sleep(100).then(() => ({ stderr: "(still running)" }))])).stderr}`);
        await sleep(1);
      }
      if (delayMs > 0) await sleep(delayMs);
      child.kill();
      assert.equal((await child.exited).signal, "SIGKILL", `${what}: the child was still putting`);

      await eventually(() => os.memoryStats().objectCount === mine.length, 5000, `${what}: the killed process's objects reclaimed`);
      checkStats(`${what}, reclaimed`, mine.length);
      await readMine(what);
      checkStats(`${what}, ours read back`, mine.length);
      assert.equal(os.memoryStats().spilledObjects, 0, `${what}: ours are all in memory again`);
    }

    // The survivor spills and restores objects of its own.
    await collectUntil(() => os.memoryStats().pinnedBytes === 0, "our pins released");
    const more = Array.from({ length: 5 }, (_, k) => os.put(payload(100 + k, 16 * MiB)));
    assert.ok(os.memoryStats().spilledObjects >= 3, "the survivor's puts spilled");
    const restoredBefore = os.memoryStats().restoredBytes;
    for (let k = 0; k < more.length; k++) {
      assert.equal(checksum((await os.get(more[k])) as Uint8Array), checksum(payload(100 + k, 16 * MiB)), `new object ${k}`);
    }
    assert.ok(os.memoryStats().restoredBytes > restoredBefore, "the survivor's gets restored");
    os.free(more);
    await collectUntil(() => os.memoryStats().objectCount === mine.length, "the new objects deleted");
    await readMine("after the survivor's own spills");
    checkStats("after the survivor's own spills", mine.length);

    // A process that attaches after the crashes reads our objects and spills and restores its own.
    await collectUntil(() => os.memoryStats().pinnedBytes === 0, "our pins released");
    const expected = Object.fromEntries(mine.map((ref, k) => [ref.hex(), [k, 8 * MiB]]));
    const user = start(currentRuntime, fixture("spill_user.ts"), [storeName, String(memory), JSON.stringify(expected)]);
    children.push(user);
    const line = await user.line().catch((error) => error.message);
    const { code, stderr } = await user.exited;
    assert.equal(line, "ok", stderr);
    assert.equal(code, 0, stderr);
    checkStats("after the next process left", mine.length);
    await readMine("after the next process left");

    os.free(mine);
    await collectUntil(() => os.memoryStats().objectCount === 0, "our objects deleted");
    checkStats("all freed", 0);
    // A killed spiller's files are released by its reclaimer, not left until the store goes.
    await eventually(() => spillFiles(directory).length === 0, 5000, "spill files of killed spillers deleted");
  } finally {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    await os.shutdown();
    segmentLeft = existsSync(`/dev/shm/objstore-${storeName}`);
    filesLeft = spillFiles(directory);
    rmSync(directory, { recursive: true, force: true });
  }
  assert.equal(segmentLeft, false, "the last process to leave removes the segment");
  assert.deepStrictEqual(filesLeft, [], "and every spill file");
}, { timeoutMs: 60_000 });
