/**
 * Hostile bytes for the value decoder, which reads what other processes wrote: a seeded fuzz run
 * bounded in time, then the inputs it (or a reading of the decoder) found, each as a regression
 * case. `FUZZ_SECONDS=600` runs the fuzz longer, `FUZZ_SEED=n` explores other cases, and
 * `FUZZ_SEED=n FUZZ_CASE=i` replays the one case a failure names.
 */
import assert from "node:assert/strict";
import path from "node:path";
import process from "node:process";
import { test } from "./harness.ts";
import { collectGarbage, currentRuntime, eventuallyCollected, root, start } from "./helpers.ts";
import { makeData, makeVector, Null, Table, tableFromArrays } from "apache-arrow";
import * as os from "../mod.ts";
import { decode } from "../lib/codec/mod.ts";
import { SerializationError } from "../lib/errors.ts";
import {
  ARROW_VALUES, arrowPayload, buildRegion, checkDecode, corpus, fuzzCase, FuzzBox, hexOf, hooks, MAX_MESSAGE_CHARS,
  prototypesSnapshot, recordBatchFields, regionOf, repeated, varint,
} from "./decoder_fuzzer.ts";

const fuzzSeconds = Number(process.env.FUZZ_SECONDS ?? 3);
const fuzzSeed = Number(process.env.FUZZ_SEED ?? 15);
const onlyCase = process.env.FUZZ_CASE === undefined ? undefined : Number(process.env.FUZZ_CASE);

test("decoder fuzz: mutated, spliced, truncated and grammar-built regions fail cleanly", () => {
  const all = corpus(fuzzSeed, 96);
  const before = prototypesSnapshot();
  all.forEach((bytes, i) => assert.equal(checkDecode(bytes, before), undefined, `corpus value ${i} must decode`));
  const started = performance.now();
  const deadline = started + fuzzSeconds * 1000;
  let cases = 0;
  let slowest = { ms: 0, index: 0 };
  let maxRssBytes = 0;
  for (let index = onlyCase ?? 0; ; index++) {
    const bytes = fuzzCase(fuzzSeed, index, all);
    const caseStarted = performance.now();
    const problem = checkDecode(bytes, before);
    const ms = performance.now() - caseStarted;
    cases++;
    if (ms > slowest.ms) slowest = { ms, index };
    if (problem !== undefined) {
      assert.fail(`FUZZ_SEED=${fuzzSeed} FUZZ_CASE=${index}: ${problem}\n  input: ${hexOf(bytes)}`);
    }
    if (cases % 4096 === 0) maxRssBytes = Math.max(maxRssBytes, process.memoryUsage().rss);
    if (onlyCase !== undefined || performance.now() > deadline) break;
  }
  const elapsed = (performance.now() - started) / 1000;
  console.log(`     decoder fuzz: ${cases} cases in ${elapsed.toFixed(1)} s (seed ${fuzzSeed}); slowest case ${slowest.index} ` +
    `took ${slowest.ms.toFixed(1)} ms; peak RSS ${(Math.max(maxRssBytes, process.memoryUsage().rss) / 2 ** 20).toFixed(0)} MiB`);
}, { timeoutMs: fuzzSeconds * 1000 + 60_000 });

function rejects(region: Uint8Array, pattern: RegExp): SerializationError {
  let caught: unknown;
  try {
    decode(region, hooks);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SerializationError, `expected a SerializationError, got ${caught}`);
  assert.match(caught.message, pattern);
  assert.ok(caught.message.length <= MAX_MESSAGE_CHARS, `a ${caught.message.length}-character message`);
  return caught;
}

const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));

// Found by reading the decoder with the fuzzer's memory oracle in mind: a bare ArrayBuffer is a
// copy, and 300 tags naming one 64 KiB payload copied it 300 times (a 1 GiB region could ask
// for petabytes). The encoder writes each ArrayBuffer once; repeats are back-references.
test("decoder: a payload copied out twice is refused before the copy", () => {
  const payload = new Uint8Array(64 * 1024).fill(7);
  const once = buildRegion([10, 1, 22, 0, ...varint(payload.length)], [{ bytes: payload }]);
  assert.equal(((decode(once, hooks) as ArrayBuffer[])[0]).byteLength, payload.length);
  const body = [10, ...varint(300), ...repeated([22, 0, ...varint(payload.length)], 300)];
  rejects(buildRegion(body, [{ bytes: payload }]), /ArrayBuffer reads buffer 0, which an earlier part of the value already read whole/);
});

// The same amplification through the table: 300 entries, each copied once, all over one payload.
test("decoder: payload table entries that overlap are refused", () => {
  const payload = new Uint8Array(64 * 1024);
  const body = [10, ...varint(300), ...Array.from({ length: 300 }, (_, i) => [22, ...varint(i), ...varint(payload.length)]).flat()];
  const entries = [{ bytes: payload }, ...Array.from({ length: 299 }, () => ({ aliasOf: 0 }))];
  rejects(buildRegion(body, entries), /buffer 1 \(offset \d+\) overlaps the table or buffer 0, which ends at \d+/);
  rejects(buildRegion([0x80], [{ bytes: payload, offset: 0 }]), /buffer 0 \(offset 0\) overlaps the table/);
});

// An Arrow table is parsed, not copied: 2,000 tags naming one 20 KiB stream of 200 columns took
// 5.7 s and 700 MB on Node before a payload could be read whole only once.
test("decoder: an Arrow stream read twice is refused before Arrow parses it again", () => {
  const columns: Record<string, Int32Array> = {};
  for (let i = 0; i < 200; i++) columns[`c${i}`] = new Int32Array(1);
  const stream = arrowPayload(tableFromArrays(columns));
  const one = decode(buildRegion([24, 0], [{ bytes: stream }]), hooks) as { numCols: number };
  assert.equal(one.numCols, 200);
  rejects(buildRegion([10, ...varint(2000), ...repeated([24, 0], 2000)], [{ bytes: stream }]), /the Arrow value at offset 21 reads buffer 0, which an earlier part/);
  const batch = arrowPayload(ARROW_VALUES[3]);
  rejects(buildRegion([10, 2, 25, 0, 25, 0], [{ bytes: batch }]), /Arrow value at offset 20 reads buffer 0/);
});

test("decoder: Arrow's own complaints name the payload; text from the data is quoted short", () => {
  const stream = arrowPayload(ARROW_VALUES[0]);
  // A schema whose field type says Int but whose width is garbage: Arrow throws, we name where.
  let named = 0;
  for (let at = 8; at < 200 && at < stream.length; at++) {
    const broken = stream.slice();
    broken[at] ^= 0xff;
    try {
      decode(buildRegion([24, 0], [{ bytes: broken }]), hooks);
    } catch (error) {
      assert.ok(error instanceof SerializationError, String(error));
      assert.ok(error.message.length <= MAX_MESSAGE_CHARS);
      if (/the Arrow stream in buffer 0 cannot be read: /.test(error.message)) named++;
    }
  }
  assert.ok(named > 0, "some corruption reaches Arrow's own checks");
  const longSource = "(".repeat(100_000);
  const regexp = rejects(buildRegion([16, ...varint(longSource.length), ...ascii(longSource), 0]), /invalid RegExp \/\(+… \(100000 characters\)\//);
  assert.ok(regexp.cause instanceof SyntaxError);
  const longName = "N".repeat(100_000);
  rejects(buildRegion([26, ...varint(longName.length), ...ascii(longName), 0x80]), /cannot read an instance of class "N+… \(100000 characters\)": no serializer/);
  rejects(buildRegion([26, 7, ...ascii("FuzzBox"), 0x80]), /the deserializer of class "FuzzBox" threw: FuzzBox data must be a one-element array/);
});

test("decoder: nesting of every kind past the stack is a SerializationError, and the decoder works after", () => {
  const depth = 200_000;
  const box = [26, 7, ...ascii("FuzzBox"), 10, 1];
  const bodies: Record<string, number[]> = {
    array: repeated([10, 1], depth, [0x80]),
    object: repeated([12, 1, 1, 97], depth, [0x80]),
    "map value": repeated([13, 1, 0x80], depth, [0x80]),
    "map key": repeated([13, 1], depth, repeated([0x80], depth + 1)),
    set: repeated([14, 1], depth, [0x80]),
    "error cause": repeated([17, 0, 0, 2], depth, [0x80]),
    "aggregate errors": repeated([17, 0, 0, 4], depth, [0x80]),
    "registered class": repeated(box, depth, [0x80]),
    mixed: repeated([10, 1, 12, 1, 1, 97, 13, 1, 0x80, 14, 1, 17, 0, 0, 2], depth / 5, [0x80]),
  };
  for (const [kind, body] of Object.entries(bodies)) {
    rejects(buildRegion(body), /^corrupt object data: nesting too deep$/);
    const shallow = decode(buildRegion(repeated(box, 50, [0x80])), hooks);
    assert.ok(shallow instanceof FuzzBox, `the decoder still works after ${kind}`);
  }
});

test("decoder: keys and names that are prototype properties stay data", () => {
  const before = prototypesSnapshot();
  const key = (k: string) => [...varint(k.length), ...ascii(k)];
  const polluted = [12, 1, ...key("polluted"), 4];
  for (const k of ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "__defineSetter__"]) {
    // { [k]: { polluted: true }, x: { [k]: { prototype: { polluted: true } } } }
    const body = [12, 2, ...key(k), ...polluted, ...key("x"), 12, 1, ...key(k), 12, 1, ...key("prototype"), ...polluted];
    const value = decode(buildRegion(body), hooks) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(value), Object.prototype, k);
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(value, k)?.value, { polluted: true });
    assert.ok(Object.hasOwn(value.x as object, k));
    const error = decode(buildRegion([17, ...key(k), 1, 109, 0]), hooks) as Error;
    assert.equal(Object.getPrototypeOf(error), Error.prototype, `an error named ${k} is a plain Error`);
    assert.equal(error.name, k);
    rejects(buildRegion([26, ...key(k), 0x80]), new RegExp(`class "${k}": no serializer is registered`));
    const map = decode(buildRegion([13, 1, 7, ...key(k), 4]), hooks) as Map<string, boolean>;
    assert.equal(map.get(k), true);
  }
  assert.equal(prototypesSnapshot(), before);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

/** Writes `cases` fuzz cases over `ref`'s region, one `get` each; then the original bytes again. */
async function overwriteAndGet(ref: os.ObjectRef, cases: number): Promise<void> {
  const all = corpus(fuzzSeed, 48);
  const before = prototypesSnapshot();
  // The view's buffer is exactly the object's region: a window to write foreign bytes through.
  const region = new Uint8Array(((await os.get(ref)) as Uint8Array).buffer);
  const original = region.slice();
  let failed = 0;
  for (let index = 0; index < cases; index++) {
    region.fill(0);
    region.set(fuzzCase(fuzzSeed, index, all).subarray(0, region.length));
    try {
      await os.get(ref);
    } catch (error) {
      assert.ok(error instanceof SerializationError, `FUZZ_SEED=${fuzzSeed} FUZZ_CASE=${index}: ${error}`);
      failed++;
    }
    assert.equal(prototypesSnapshot(), before, `FUZZ_SEED=${fuzzSeed} FUZZ_CASE=${index} changed a prototype`);
  }
  assert.ok(failed > cases / 2, `${failed} of ${cases} cases failed`);
  region.set(original);
  assert.equal(((await os.get(ref)) as Uint8Array).length, original.length - 64);
}

// The decoder behind `get`: bytes another process wrote over an object (any runtime, any bug)
// come out as a SerializationError or a value, and `get` keeps the store's pins balanced.
test("get of an object whose bytes were overwritten fails cleanly and leaves no pin behind", async () => {
  await os.init({ objectStoreMemory: 16 * 1024 * 1024, prefault: false, numWorkers: 0 });
  try {
    const ref = os.put(new Uint8Array(64 * 1024));
    await overwriteAndGet(ref, 400);
    os.free([ref]);
    await eventuallyCollected(() => os.memoryStats().pinnedBytes === 0 && os.memoryStats().objectCount === 0, 10_000, "no pins and no objects left");
  } finally {
    await os.shutdown();
  }
});

test("decoder: a length of 2^31 anywhere is refused by what remains, not allocated", () => {
  const big = varint(2 ** 31);
  const cases: [string, number[], RegExp][] = [
    ["string", [7, ...big], /needs 2147483648 bytes at offset 22, 0 left/],
    ["bigint", [9, 0, ...big], /needs 2147483648 bytes/],
    ["regexp source", [16, ...big], /needs 2147483648 bytes/],
    ["object", [12, ...big], /count 2147483648 exceeds the remaining bytes/],
    ["map", [13, ...big], /count 2147483648 exceeds the remaining bytes/],
    ["set", [14, ...big], /count 2147483648 exceeds the remaining bytes/],
    ["array", [10, ...big, 0x80], /ends early/],
    ["hole run", [10, 2, 11, ...big], /hole run 2147483648 overflows the array/],
    ["back-reference", [28, ...big], /back-reference 2147483648 to an object not yet seen/],
    ["buffer index", [22, ...big, 0], /buffer index 2147483648 of 0/],
    ["ArrayBuffer length", [22, 0, ...big], /bytes 0\+2147483648 lie outside buffer 0/],
    ["view length", [23, 8, 0, 0, ...big], /bytes 0\+17179869184 lie outside buffer 0/],
  ];
  for (const [what, body, message] of cases) {
    const payloads = /ArrayBuffer length|view length/.test(what) ? [{ bytes: new Uint8Array(64) }] : [];
    rejects(buildRegion(body, payloads), message);
  }
  const header = buildRegion([0x80]);
  new DataView(header.buffer, header.byteOffset).setUint32(4, 2 ** 31, true);
  rejects(header, /body of 2147483648 bytes exceeds the 17-byte region/);
  const count = buildRegion([0x80]);
  new DataView(count.buffer, count.byteOffset).setUint32(12, 2 ** 31, true);
  rejects(count, /table of 2147483648 buffers exceeds the 17-byte region/);
});

// Found by the fuzz (seed 7, case 148295 on Deno, where it took 0.6 s and 110 MB per decode): a
// record batch claiming 956 M rows over columns of 2 rows. Arrow backfills a validity bitmap of
// rows / 8 bytes for each column shorter than its batch; 2^33 rows would be a gigabyte each.
test("decoder: an Arrow record batch whose row counts lie is refused before Arrow allocates for them", () => {
  const table = tableFromArrays({ i: Int32Array.from([1, 2, 3]), f: Float64Array.from([0.5, 1.5, 2.5]) });
  const stream = arrowPayload(table);
  const { lengthAt, nodesAt, nodeCount } = recordBatchFields(stream);
  assert.equal(nodeCount, 2);
  const lying = (patch: (view: DataView) => void) => {
    const bytes = stream.slice();
    patch(new DataView(bytes.buffer));
    return buildRegion([24, 0], [{ bytes }]);
  };
  rejects(lying((v) => v.setBigInt64(lengthAt, 2n ** 33n, true)), /Arrow column node 0 has 3 rows in a batch of 8589934592/);
  rejects(lying((v) => {
    v.setBigInt64(lengthAt, 2n ** 33n, true);
    v.setBigInt64(nodesAt, 2n ** 33n, true);
    v.setBigInt64(nodesAt + 16, 2n ** 33n, true);
  }), /Arrow field node 0 claims 8589934592 rows in a \d+-byte body/);
  rejects(lying((v) => v.setBigInt64(nodesAt + 8, 4n, true)), /Arrow field node 0 has 4 nulls in 3 rows/);
  rejects(lying((v) => v.setInt32(nodesAt - 4, 1, true)), /Arrow record batch has 1 field nodes for 2 fields/);
  // A column of the Null type holds no bytes: a long one (Arrow writes up to 2^31 - 1 rows) is
  // legitimate, and cheap for Arrow.
  const nulls = new Table({ n: makeVector(makeData({ type: new Null(), length: 2 ** 31 - 1 })) });
  assert.equal((decode(buildRegion([24, 0], [{ bytes: arrowPayload(nulls) }]), hooks) as Table).numRows, 2 ** 31 - 1);
});

// Found by the fuzz (seed 8, case 1118258: 60 bytes, 0.7 s and 256 MiB on Node and Deno). An
// array of 2^25 - 1 holes was made as `[]` and given its length at the end: V8 keeps arrays of
// up to 2^25 slots fast and allocated 8 bytes a slot. Forty such arrays fit in 500 bytes.
test("decoder: a long run of array holes costs no memory for the holes", async () => {
  const holes = [10, ...varint(2 ** 25 - 1), 11, ...varint(2 ** 25 - 1)];
  const region = buildRegion([10, 4, ...holes, ...holes, ...holes, ...holes]);
  await collectGarbage();
  const before = process.memoryUsage().heapUsed;
  const arrays = decode(region, hooks) as unknown[][];
  const grewBytes = process.memoryUsage().heapUsed - before;
  assert.deepStrictEqual(arrays.map((a) => [a.length, Object.keys(a).length]), Array(4).fill([2 ** 25 - 1, 0]));
  assert.ok(grewBytes < 64 * 2 ** 20, `decoding 4 arrays of holes from ${region.length} bytes took ${(grewBytes / 2 ** 20).toFixed(0)} MiB of heap`);
  const someHoles = decode(buildRegion([10, ...varint(2 ** 25 - 1), 0x81, 11, ...varint(2 ** 25 - 3), 0x82]), hooks) as unknown[];
  assert.deepStrictEqual([someHoles.length, someHoles[0], someHoles[2 ** 25 - 2], Object.keys(someHoles).length], [2 ** 25 - 1, 1, 2, 2]);
});

// Found while fixing the one above: arrays were preallocated up to the bytes that remained, so
// 64 arrays of 2^20 holes in a 1 MiB region took 512 MiB on Node and 168 MiB on Bun (quadratic:
// a 16 MiB region could ask for terabytes) before the decode even failed.
test("decoder: arrays preallocate no more slots in all than the body has bytes", async () => {
  const length = 2 ** 20;
  const body = [10, 64, ...repeated([10, ...varint(length), 11, ...varint(length)], 64), ...new Array(length).fill(0x80)];
  const region = buildRegion(body);
  await collectGarbage();
  const before = process.memoryUsage().heapUsed;
  rejects(region, /1048576 stray bytes after the value/);
  const grewBytes = process.memoryUsage().heapUsed - before;
  assert.ok(grewBytes < 64 * 2 ** 20, `a ${region.length}-byte region took ${(grewBytes / 2 ** 20).toFixed(0)} MiB of heap`);
  // Dense arrays, nested or not, still come back whole.
  const dense = Array.from({ length: 1000 }, (_, i) => [i, [i, i + 1]]);
  assert.deepStrictEqual(decode(regionOf(dense), hooks), dense);
});

// Found while measuring the cost of reading big values: a bigint's hex was built with `+=` a
// byte at a time, a rope of ~32 bytes of heap per byte: 8 MiB took 280 MiB and 6 s on Node,
// 32 MiB took 1 GiB and 40 s (V8 allows 128 MiB). Measured as the peak of a fresh process.
test(`decoder: a bigint of megabytes reads back in memory proportional to its size (${currentRuntime})`, async () => {
  const n = 8 * 2 ** 20;
  const child = start(currentRuntime, path.join(root, "tests", "fixtures", "decode_peak.ts"), ["bigint", String(n)]);
  const line = await child.line();
  const { code, stderr } = await child.exited;
  assert.equal(code, 0, stderr);
  const { grewBytes, check } = JSON.parse(line);
  assert.ok(check, "the bigint reads back exactly");
  assert.ok(grewBytes < 128 * 2 ** 20, `reading an ${n}-byte bigint raised the peak by ${(grewBytes / 2 ** 20).toFixed(0)} MiB`);
}, { timeoutMs: 120_000 });
