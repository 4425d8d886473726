/**
 * The objects listing's heads (the first bytes of each sealed object's value, for the
 * dashboard's type column) are read without a pin: a stress test of their seqlock. Three
 * processes make, spill, restore and free values of known kinds while this one lists the
 * store again and again; every head it keeps must name the kind that the object's size says.
 */
import assert from "node:assert/strict";
import * as os from "../mod.ts";
import { DESCRIBE_HEAD_BYTES, describeHead } from "../lib/codec/describe.ts";
import { attach } from "../lib/cli/local_store.ts";
import { LIST_RECORD_BYTES } from "../lib/store/native_store.ts";
import { test } from "./harness.ts";
import { currentRuntime, root, start, uniqueStoreName } from "./helpers.ts";
import { typeBySize } from "./fixtures/kinds_table.ts";
import path from "node:path";
import process from "node:process";

const churn = path.join(root, "tests", "fixtures", "churn_kinds.ts");
/** Rounds of 20 puts each child makes. */
const ROUNDS = 60;

test(`listing heads while 3 processes make, spill, restore and free objects: every type read is the object's (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName(`heads-${currentRuntime}`);
  // 4 MiB: the three children's 40 kept values each (70 KiB on average, 8.4 MiB in all) are
  // half spilled at any time, so that restores happen however the runs interleave.
  await os.init({ storeName, objectStoreMemory: 4 * 1024 * 1024, numWorkers: 0, prefault: false });
  const children = [0, 1, 2].map(() => start(currentRuntime, churn, [storeName, String(ROUNDS)]));
  try {
    const expected = typeBySize();
    const store = await attach(storeName);
    const records = new Uint8Array(4096 * LIST_RECORD_BYTES);
    const heads = new Uint8Array(4096 * DESCRIBE_HEAD_BYTES);
    const view = new DataView(records.buffer);
    let listings = 0;
    let typed = 0;
    let unread = 0;
    const wrong: string[] = [];
    let running = children.length;
    for (const child of children) void child.exited.then(() => running--);
    try {
      while (running > 0) {
        let cursor = 0;
        do {
          const { count, next } = store.listRecords(cursor, records, { bytes: heads, headBytes: DESCRIBE_HEAD_BYTES });
          for (let i = 0; i < count; i++) {
            const sizeBytes = view.getFloat64(i * LIST_RECORD_BYTES + 48, true);
            const type = describeHead(heads.subarray(i * DESCRIBE_HEAD_BYTES, (i + 1) * DESCRIBE_HEAD_BYTES));
            if (type === undefined) {
              unread++;
            } else if (expected.has(sizeBytes)) {
              typed++;
              if (type !== expected.get(sizeBytes)) wrong.push(`${sizeBytes} bytes: ${type}, not ${expected.get(sizeBytes)}`);
            }
          }
          cursor = next;
        } while (cursor !== 0);
        listings++;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } finally {
      store.close();
    }
    for (const child of children) {
      const { code, stderr } = await child.exited;
      assert.equal(code, 0, stderr);
    }
    const stats = os.memoryStats();
    if (process.env.OBJSTORE_TEST_VERBOSE) console.error(`${listings} listings, ${typed} typed, ${unread} not read, ${wrong.length} wrong; ${JSON.stringify(stats)}`);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} wrong types of ${typed}`);
    assert.ok(listings >= 5 && typed > 200, `${listings} listings, ${typed} objects typed, ${unread} not read`);
    assert.ok(stats.spilledObjectsTotal > 0 && stats.restoredObjectsTotal > 0, `the children spilled and restored: ${JSON.stringify(stats)}`);
  } finally {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    await os.shutdown();
  }
}, { timeoutMs: 60_000 });
