/**
 * Processes of the three runtimes attached to one store: every value put from each runtime
 * reads equal from each runtime (the 3×3 matrix), and what a killed process held is
 * reclaimed.
 */
import assert from "node:assert/strict";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { eventually, root, runtimes, start, uniqueStoreName } from "./helpers.ts";
import path from "node:path";

const fixture = (name: string) => path.join(root, "tests", "fixtures", name);

for (const writer of runtimes) {
  test(`values put from ${writer} read equal from node, deno and bun`, async () => {
    const storeName = uniqueStoreName(`interop-${writer}`);
    const writing = start(writer, fixture("writer.ts"), [storeName]);
    try {
      const ids = await writing.line();
      await Promise.all(runtimes.map(async (reader) => {
        const reading = start(reader, fixture("reader.ts"), [storeName, ids]);
        const line = await reading.line().catch((error) => error.message);
        const { code, stderr } = await reading.exited;
        assert.equal(line, "ok", `${writer} → ${reader}: ${stderr}`);
        assert.equal(code, 0, `${writer} → ${reader} exit: ${stderr}`);
      }));
      writing.send("done");
      assert.equal((await writing.exited).code, 0);
    } finally {
      writing.kill();
    }
  }, { timeoutMs: 120_000 });
}

for (const holderRuntime of runtimes) {
  test(`refs and pins of a killed ${holderRuntime} process are reclaimed within a second or so`, async () => {
    const storeName = uniqueStoreName(`crash-${holderRuntime}`);
    await os.init({ storeName, objectStoreMemory: 64 * 1024 * 1024, prefault: false });
    try {
      const refs = [os.put(new Float64Array(10_000)), os.put({ small: true })];
      const holder = start(holderRuntime, fixture("holder.ts"), [storeName, ...refs.map((r) => r.hex())]);
      try {
        assert.equal(await holder.line(), "holding");
        os.free(refs);
        assert.equal(os.memoryStats().objectCount, 2, "the other process still holds both");
        assert.ok(os.memoryStats().pinnedBytes > 0);
      } finally {
        holder.kill();
        await holder.exited;
      }
      const killedAt = Date.now();
      await eventually(() => os.memoryStats().objectCount === 0, 5000, "objects of the killed process freed");
      assert.equal(os.memoryStats().pinnedBytes, 0);
      assert.equal(os.memoryStats().usedBytes, 0);
      assert.ok(Date.now() - killedAt < 2000, `reclaimed after ${Date.now() - killedAt} ms`);
    } finally {
      await os.shutdown();
    }
  }, { timeoutMs: 60_000 });
}
