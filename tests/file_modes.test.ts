/**
 * Files the library creates are its user's only: segments, spill files and channel files 0600,
 * folders 0700, asked for explicitly (a child under umask 0 proves no umask does it for us).
 * Drivers and workers talk over those channel files and stdio pipes: there are no sockets.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import { test } from "./harness.ts";
import { command, currentRuntime, root, uniqueStoreName } from "./helpers.ts";

test(`segments, spill files and channels are 0600, spill folders 0700, even under umask 0 (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName("modes");
  const parent = path.join(os.tmpdir(), `objstore-modes-${process.pid}`);
  const ownSpillDirectory = path.join(parent, "spill");
  const [cmd, args] = command(currentRuntime, path.join(root, "tests", "fixtures", "file_modes.ts"));
  try {
    // mkdir of the spill folder needs its parent; make that one permissive, as umask 0 would.
    await promisify(execFile)("sh", ["-c", `umask 0 && mkdir -p '${parent}'`]);
    const { stdout } = await promisify(execFile)("sh", ["-c", 'umask 0 && exec "$@"', "sh", cmd, ...args, storeName, ownSpillDirectory], { cwd: root });
    const modes = JSON.parse(stdout.trim().split("\n").at(-1)!);
    assert.deepStrictEqual(modes, {
      segment: "600",
      defaultSpillFolder: "700",
      spillFiles: "600",
      channel: "600",
      ownSpillFolder: "700",
      ownSpillFiles: "600",
      leftFolderBefore: "777",
      leftFolder: "700",
      umask: "0",
    });
    assert.ok(!existsSync(`/dev/shm/objstore-${storeName}`), "the segment went with the store's last process");
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
