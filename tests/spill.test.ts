/** SPEC "Memory, spilling and lifetimes": a small store holds far more than its size. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync, closeSync } from "node:fs";
import nodeOs from "node:os";
import path from "node:path";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { uniqueStoreName } from "./helpers.ts";

const MiB = 1024 * 1024;

/** 16 MiB whose bytes depend on `k`; `checksum` recomputes what they must add up to. */
function payload(k: number, sizeBytes: number): Uint8Array {
  const bytes = new Uint8Array(sizeBytes);
  const words = new Uint32Array(bytes.buffer);
  for (let i = 0; i < words.length; i++) words[i] = (i * 2654435761 + k) >>> 0;
  return bytes;
}

function checksum(bytes: Uint8Array): number {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let sum = 0;
  for (let i = 0; i < words.length; i++) sum = (sum + words[i] * (i % 7 + 1)) >>> 0;
  return sum;
}

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
    for (let k = 0; k < 64; k++) {
      const view = (await os.get(refs[k])) as Uint8Array;
      assert.equal(view.byteLength, 16 * MiB);
      assert.equal(checksum(view), expected[k], `object ${k}`);
    }
    assert.ok(os.memoryStats().restoredBytes >= 60 * 16 * MiB);
    os.free(refs);
    assert.deepStrictEqual(readdirSync(directory).filter((f) => f.endsWith(".spill")), [], "spill files go with their objects");
  } finally {
    await os.shutdown();
    rmSync(directory, { recursive: true, force: true });
  }
}, { timeoutMs: 180_000 });

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
