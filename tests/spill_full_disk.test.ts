/**
 * A spill directory on a full disk: an 8 MiB tmpfs mounted for the test (root only; skipped with
 * a message where mounting is impossible), with a ballast file to free later.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as objstore from "../mod.ts";
import { test } from "./harness.ts";
import { eventually } from "./helpers.ts";

const MiB = 1024 * 1024;

/** Mounts a tmpfs of `sizeBytes` at a fresh folder; undefined (and why) if this process cannot. */
function mountSmallDisk(sizeBytes: number): { dir: string } | { why: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "objstore-full-disk-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", dir], { stdio: "pipe" });
    return { dir };
  } catch (error) {
    rmdirSync(dir);
    return { why: String((error as { stderr?: unknown }).stderr ?? error).trim() };
  }
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", [dir], { stdio: "pipe" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "pipe" });
  }
  rmdirSync(dir);
}

/** `n` bytes of printable ASCII from `seed`: a string value whose every byte is checked on the way back. */
function text(seed: number, n: number): string {
  const bytes = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    bytes[i] = 32 + (x >>> 24) % 95;
  }
  return new TextDecoder().decode(bytes);
}

test("a full spill disk: put says so and where, nothing stored is lost, and the store works again once space is freed", async () => {
  const disk = mountSmallDisk(8 * MiB);
  if ("why" in disk) {
    console.log(`     skipped: cannot mount a tmpfs to fill (${disk.why}); run the suite as root to test a full spill disk`);
    return;
  }
  try {
    const ballast = path.join(disk.dir, "ballast");
    writeFileSync(ballast, new Uint8Array(2 * MiB).fill(1));
    const directory = path.join(disk.dir, "spill");
    // spillThreshold 1: no background spilling, so only puts and gets spill, in a known order.
    await objstore.init({ objectStoreMemory: 16 * MiB, spill: { type: "filesystem", directory }, spillThreshold: 1, prefault: false, numWorkers: 0 });
    try {
      const size = 2.5 * MiB;
      const values = Array.from({ length: 9 }, (_, i) => text(i + 1, size));
      // Six fit in memory; the next two spill the oldest two, and the disk holds no third.
      const refs = values.slice(0, 8).map((value) => objstore.put(value));
      assert.equal(objstore.memoryStats().spilledObjects, 2);
      const spillFiles = () => readdirSync(directory).filter((f) => f.endsWith(".spill")).sort();
      const filesBefore = spillFiles();
      assert.equal(filesBefore.length, 2);

      let refused: unknown;
      try {
        objstore.put(values[8]);
      } catch (error) {
        refused = error;
      }
      assert.ok(refused instanceof objstore.ObjectStoreFullError, `put past memory on a full disk: ${refused}`);
      const quoted = directory.replaceAll("/", "\\/");
      const figures = new RegExp(`the disk of spill directory '${quoted}' is full: spilling 1 object\\(s\\) needs (\\d+) bytes, (\\d+) are free`).exec(refused.message);
      assert.ok(figures !== null, refused.message);
      assert.ok(Number(figures[1]) > size && Number(figures[2]) < Number(figures[1]), refused.message);
      assert.deepStrictEqual(spillFiles(), filesBefore, "the failed spill left no partial file");
      assert.equal(objstore.memoryStats().objectCount, 8);

      for (let i = 2; i < 8; i++) assert.ok(await objstore.get(refs[i]) === values[i], `object ${i}, in memory, reads back`);
      // A spilled object needs room to come back, and making room needs the disk: a clear error.
      await assert.rejects(objstore.get(refs[0]), (error: Error) => error instanceof objstore.ObjectStoreFullError && /disk of spill directory .* is full/.test(error.message));

      unlinkSync(ballast);
      for (let i = 0; i < 8; i++) assert.ok(await objstore.get(refs[i]) === values[i], `object ${i} reads back once the disk has room`);
      // Room for the put came from evicting an object whose spill copy was already on disk.
      const again = objstore.put(values[8]);
      assert.ok(await objstore.get(again) === values[8]);
      // Memory now holds only objects never spilled, and the disk is full again: freeing one
      // is enough for every other to come back in turn, trading the copies on disk.
      objstore.free([again]);
      for (let i = 0; i < 8; i++) assert.ok(await objstore.get(refs[i]) === values[i], `object ${i} still reads back`);
      objstore.free(refs);
      await eventually(() => objstore.memoryStats().objectCount === 0, 5000, "every object deleted");
      assert.deepStrictEqual(spillFiles(), [], "every spill file deleted with its objects");
    } finally {
      await objstore.shutdown();
    }
  } finally {
    unmount(disk.dir);
  }
}, { timeoutMs: 120_000 });
