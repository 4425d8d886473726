/**
 * Issue #5, S3: a store spills to an S3-compatible bucket and reads objects back. Runs against
 * the real server `scripts/s3_server.sh start` runs on loopback (scripts/test.sh starts it):
 *   eval "$(bash scripts/s3_server.sh start)"
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import nodeOs from "node:os";
import path from "node:path";
import process from "node:process";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { collectGarbage, currentRuntime, eventually, root, start, uniqueStoreName } from "./helpers.ts";
import { checksum, payload } from "./fixtures/payload.ts";

const MiB = 1024 * 1024;

function server(): { endpoint: string; bucket: string; client: S3Client } {
  const endpoint = process.env.OBJSTORE_TEST_S3_ENDPOINT;
  const bucket = process.env.OBJSTORE_TEST_S3_BUCKET;
  if (!endpoint || !bucket) {
    throw new Error('no S3 server: run `eval "$(bash scripts/s3_server.sh start)"` first (scripts/test.sh does)');
  }
  const client = new S3Client({ endpoint, region: process.env.AWS_REGION ?? "us-east-1", forcePathStyle: true });
  return { endpoint, bucket, client };
}

async function keysUnder(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}

function stagedFiles(storeName: string): string[] {
  const directory = path.join(nodeOs.tmpdir(), `objstore-spill-${storeName}`);
  return existsSync(directory) ? readdirSync(directory).filter((f) => f.endsWith(".spill")) : [];
}

test("S3: objects spill to the bucket, local files go, every byte comes back; shutdown empties the prefix", async () => {
  const { endpoint, bucket, client } = server();
  const storeName = uniqueStoreName("s3");
  const prefix = `test-${process.pid}`;
  await os.init({ storeName, objectStoreMemory: 32 * MiB, spill: { type: "s3", bucket, prefix, endpoint }, prefault: false });
  const keyPrefix = `${prefix}/${storeName}/`;
  try {
    const expected: number[] = [];
    const refs: os.ObjectRef[] = [];
    for (let k = 0; k < 24; k++) {
      const bytes = payload(k, 4 * MiB);
      expected.push(checksum(bytes));
      refs.push(os.put(bytes));
    }
    assert.ok(os.memoryStats().spilledObjects >= 16, `${os.memoryStats().spilledObjects} objects spilled`);
    // Copied out in the background; the local staging files go once their copy is complete.
    await eventually(() => stagedFiles(storeName).length === 0, 20_000, "local spill files copied to S3 and deleted");
    const keys = await keysUnder(client, bucket, keyPrefix);
    assert.ok(keys.length > 0 && keys.every((k) => k.endsWith(".spill")), `keys: ${keys}`);
    // Read in a function of its own: an async frame may keep its last value (and pin) alive.
    const checksumOf = async (ref: os.ObjectRef) => checksum((await os.get(ref)) as Uint8Array);
    for (let k = 0; k < refs.length; k++) assert.equal(await checksumOf(refs[k]), expected[k], `object ${k}`);
    // Copies are deleted with their objects: once freed and their views collected.
    os.free(refs);
    let left: string[] = keys;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && (left = await keysUnder(client, bucket, keyPrefix)).length > 0) {
      await collectGarbage();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepStrictEqual(left, [], "copies of files whose objects are gone are deleted");
  } finally {
    await os.shutdown();
  }
  assert.deepStrictEqual(await keysUnder(client, bucket, keyPrefix), []);
  assert.equal(existsSync(path.join(nodeOs.tmpdir(), `objstore-spill-${storeName}`)), false, "staging folder removed");
}, { timeoutMs: 120_000 });

test("S3: a flipped byte in a copy makes get throw ObjectLostError for that object only; a deleted copy too", async () => {
  const { endpoint, bucket, client } = server();
  const storeName = uniqueStoreName("s3flip");
  const prefix = `test-${process.pid}`;
  const keyPrefix = `${prefix}/${storeName}/`;
  await os.init({ storeName, objectStoreMemory: 16 * MiB, spill: { type: "s3", bucket, prefix, endpoint }, prefault: false });
  try {
    const refs = Array.from({ length: 12 }, (_, k) => os.put(payload(k, 2 * MiB)));
    await eventually(() => stagedFiles(storeName).length === 0, 20_000, "spill files copied to S3");
    const keys = await keysUnder(client, bucket, keyPrefix);
    assert.ok(keys.length >= 1);
    // Flip one byte in the middle of the first copy.
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keys[0] }));
    const bytes = await object.Body!.transformToByteArray();
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: keys[0], Body: bytes }));
    if (keys.length > 1) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keys[keys.length - 1] }));
    let lost = 0;
    for (let k = 0; k < refs.length; k++) {
      try {
        const view = (await os.get(refs[k])) as Uint8Array;
        assert.equal(checksum(view), checksum(payload(k, 2 * MiB)), `object ${k} came back with other bytes`);
      } catch (error) {
        assert.ok(error instanceof os.ObjectLostError, `object ${k}: ${error}`);
        lost++;
      }
    }
    assert.ok(lost >= 1 && lost < refs.length, `${lost} of ${refs.length} lost`);
    assert.ok(os.memoryStats().restoredBytes > 0, "the objects of intact records came back from S3");
    os.free(refs);
  } finally {
    await os.shutdown();
  }
}, { timeoutMs: 120_000 });

test("S3: a task reads an argument whose spill file is only in the bucket", async () => {
  const { endpoint, bucket } = server();
  const storeName = uniqueStoreName("s3task");
  await os.init({ storeName, objectStoreMemory: 16 * MiB, numWorkers: 1, spill: { type: "s3", bucket, prefix: `test-${process.pid}`, endpoint }, prefault: false });
  try {
    const first = os.put(payload(99, 4 * MiB));
    const rest = Array.from({ length: 6 }, (_, k) => os.put(payload(k, 4 * MiB)));
    assert.ok(os.memoryStats().spilledObjects >= 1);
    await eventually(() => stagedFiles(storeName).length === 0, 20_000, "spill files copied to S3");
    const sum = os.remote((bytes: Uint8Array) => {
      const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      let s = 0;
      for (let i = 0; i < words.length; i++) s = (s + words[i] * (i % 7 + 1)) >>> 0;
      return s;
    });
    assert.equal(await os.get(sum.remote(first)), checksum(payload(99, 4 * MiB)));
    os.free([first, ...rest]);
  } finally {
    await os.shutdown();
  }
}, { timeoutMs: 120_000 });

test("S3: a bucket that does not exist is a clear error at init, and nothing is left behind", async () => {
  const { endpoint } = server();
  await assert.rejects(
    os.init({ objectStoreMemory: 16 * MiB, spill: { type: "s3", bucket: "no-such-bucket-objstore", endpoint }, prefault: false }),
    (error: Error) => error instanceof os.ObjstoreError && /no-such-bucket-objstore/.test(error.message) && /spill\.bucket/.test(error.message),
  );
  assert.equal(os.isInitialized(), false);
  await assert.rejects(os.init({ spill: { type: "s3", bucket: "" } as never }), /spill\.bucket/);
});

test("S3: a process killed while copying spill files out leaves them to the next process; nothing is lost", async () => {
  const { endpoint, bucket, client } = server();
  const storeName = uniqueStoreName("s3kill");
  const prefix = `test-${process.pid}`;
  const keyPrefix = `${prefix}/${storeName}/`;
  const count = 10;
  const sizeBytes = 24 * MiB; // 240 MiB through a 64 MiB store: most of it staged for S3
  const uploader = start(currentRuntime, path.join(root, "tests/fixtures/s3_uploader.ts"), [storeName, endpoint, bucket, prefix, String(count), String(sizeBytes)]);
  const hexes = JSON.parse(await uploader.line()) as string[];
  const holder = start(currentRuntime, path.join(root, "tests/fixtures/ref_holder.ts"), [storeName, ...hexes]);
  try {
    assert.equal(await holder.line(), "holding");
    // Copies start on the uploader's next tick (every 250 ms) and take a while each: kill it
    // somewhere in the middle of them.
    await new Promise((resolve) => setTimeout(resolve, 250 + Math.random() * 500));
    const stagedAtKill = stagedFiles(storeName).length;
    uploader.kill();
    await uploader.exited;
    await os.init({ storeName, spill: { type: "s3", bucket, prefix, endpoint }, prefault: false });
    try {
      // The dead uploader's claims are undone by the janitor; this process copies what is left.
      await eventually(() => stagedFiles(storeName).length === 0, 30_000, `spill files copied out (${stagedAtKill} were staged at the kill)`);
      for (let k = 0; k < count; k++) {
        const view = (await os.get(os.ObjectRef.fromHex(hexes[k]))) as Uint8Array;
        assert.equal(checksum(view), checksum(payload(k, sizeBytes)), `object ${k}`);
      }
    } finally {
      holder.send("");
      holder.kill();
      await holder.exited;
      await os.shutdown();
    }
  } finally {
    uploader.kill();
    holder.kill();
  }
  assert.deepStrictEqual(await keysUnder(client, bucket, keyPrefix), [], "the last process deleted every copy");
}, { timeoutMs: 120_000 });
