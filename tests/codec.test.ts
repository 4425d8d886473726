/**
 * The portable value format (lib/codec): round trips of every storable kind, zero-copy payloads,
 * custom serializers, errors with paths, and hostile input.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Dictionary, Int32, RecordBatch, Table, tableFromArrays, tableFromJSON, Utf8, vectorFromArray } from "apache-arrow";
import { test } from "./harness.ts";
import { decode, deregisterSerializer, encode, registerSerializer } from "../lib/codec/mod.ts";
import type { Encoded } from "../lib/codec/mod.ts";
import { DESCRIBE_HEAD_BYTES, describeHead } from "../lib/codec/describe.ts";
import { SerializationError } from "../lib/errors.ts";

/** Stands in for the store's ObjectRef. */
class FakeRef {
  readonly id: Uint8Array;
  constructor(id: Uint8Array) {
    this.id = id;
  }
}

const hooks = {
  refId: (value: unknown) => (value instanceof FakeRef ? value.id : undefined),
  makeRef: (id: Uint8Array) => new FakeRef(id),
};

function refWithId(n: number): FakeRef {
  const id = new Uint8Array(28);
  new DataView(id.buffer).setUint32(24, n, true);
  id[0] = 0xab;
  return new FakeRef(id);
}

/** A region laid out as the arena would: 64-byte aligned inside a larger buffer. */
function place(encoded: Encoded): Uint8Array {
  const region = new Uint8Array(new ArrayBuffer(encoded.sizeBytes + 128), 64, encoded.sizeBytes);
  region.fill(0xee);
  encoded.writeInto(region);
  return region;
}

function roundTrip<T>(value: T): T {
  return decode(place(encode(value, hooks)), hooks) as T;
}

function same(value: unknown): void {
  assert.deepStrictEqual(roundTrip(value), value);
}

function throwsSerialization(fn: () => unknown, pattern?: RegExp): SerializationError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SerializationError, `expected SerializationError, got ${caught}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

// --- primitives -------------------------------------------------------------------------------

test("codec: numbers, including -0, NaN, infinities and int32 edges", () => {
  const numbers = [0, 1, 127, 128, 255, -1, -128, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53, 1.5, -2.25e-300, Number.MAX_VALUE, Number.MIN_VALUE, Infinity, -Infinity];
  for (const n of numbers) assert.equal(roundTrip(n), n);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.ok(Number.isNaN(roundTrip(NaN)));
  assert.deepStrictEqual(roundTrip(numbers), numbers);
  assert.deepStrictEqual(roundTrip([-0, NaN]), [-0, NaN]);
});

test("codec: undefined, null, booleans", () => {
  for (const v of [undefined, null, true, false]) assert.equal(roundTrip(v), v);
  same([undefined, null, true, false]);
});

test("codec: tiny values skip allocation and take 17 bytes", () => {
  assert.equal(encode(0, hooks), encode(0, hooks));
  assert.equal(encode(0, hooks).sizeBytes, 17);
  assert.equal(encode(null, hooks).sizeBytes, 17);
  assert.equal(encode(1000, hooks).sizeBytes, 21);
  assert.equal(encode(0.5, hooks).sizeBytes, 25);
  assert.deepStrictEqual(encode(7, hooks).refIds, []);
});

test("codec: strings of every size and script", () => {
  const strings = ["", "a", "x".repeat(31), "x".repeat(32), "x".repeat(63), "x".repeat(64), "héllo", "日本語", "emoji 😀🎉", "\u0000nul", "a".repeat(1024), "ü".repeat(100_000)];
  for (const s of strings) assert.equal(roundTrip(s), s);
  same(strings);
});

test("codec: bigints of any size and sign", () => {
  const values = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n, 10n ** 100n, -(7n ** 500n), 255n, 256n];
  for (const v of values) assert.equal(roundTrip(v), v);
  same(values);
});

// --- containers -------------------------------------------------------------------------------

test("codec: arrays keep holes and nesting", () => {
  same([1, [2, [3, [4]]], "x", []]);
  // deno-lint-ignore no-sparse-arrays
  const holey = [, 1, , , 2, ,];
  const back = roundTrip(holey);
  assert.equal(back.length, holey.length);
  assert.deepStrictEqual(Object.keys(back), ["1", "4"]);
  assert.deepStrictEqual(back, holey);
  assert.deepStrictEqual(roundTrip([undefined, , undefined]), [undefined, , undefined]);
});

test("codec: a huge sparse array costs its present elements only", () => {
  const sparse: unknown[] = new Array(2 ** 32 - 1);
  sparse[5] = "five";
  sparse[4_000_000_000] = { x: 1 };
  const started = performance.now();
  const back = roundTrip(sparse);
  assert.ok(performance.now() - started < 1000);
  assert.equal(back.length, 2 ** 32 - 1);
  assert.deepStrictEqual(Object.keys(back), ["5", "4000000000"]);
  assert.deepStrictEqual(back[4_000_000_000], { x: 1 });
});

test("codec: plain objects, null-prototype objects and odd keys", () => {
  same({ a: 1, "b c": [2], "": 3, 10: "ten", nested: { deep: { deeper: "yes" } }, ü: "unicode key" });
  const bare = Object.create(null);
  bare.k = 1;
  assert.deepStrictEqual({ ...roundTrip(bare) }, { k: 1 });
});

test("codec: Map and Set with any keys", () => {
  const key = { k: 1 };
  const map = new Map<unknown, unknown>([[1, "one"], ["two", 2], [key, [key]], [null, undefined]]);
  const back = roundTrip(map);
  assert.deepStrictEqual(back, map);
  const [, , [backKey, backValue]] = back;
  assert.equal((backValue as unknown[])[0], backKey);
  same(new Set([1, "1", 1n, null, { a: 1 }]));
  same(new Map([[new Set([1]), new Map([[2, 3]])]]));
});

test("codec: Date, invalid Date, RegExp", () => {
  same(new Date(1_700_000_000_123));
  const invalid = roundTrip(new Date(NaN));
  assert.ok(invalid instanceof Date && Number.isNaN(invalid.getTime()));
  for (const re of [/a+b/gi, /^x$/msuy, /(?<year>\d{4})/d, /[/]\\/]) {
    const back = roundTrip(re);
    assert.equal(back.source, re.source);
    assert.equal(back.flags, re.flags);
  }
});

test("codec: errors keep class, name, message, stack, cause", () => {
  for (const ctor of [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError]) {
    const error = new ctor("boom", { cause: { code: 42 } });
    const back = roundTrip(error);
    assert.ok(back instanceof ctor);
    assert.equal(back.name, ctor.name);
    assert.equal(back.message, "boom");
    assert.equal(back.stack, error.stack);
    assert.deepStrictEqual(back.cause, { code: 42 });
  }
  assert.equal(Object.hasOwn(roundTrip(new Error("x")), "cause"), false);
});

test("codec: custom error classes come back as Error with their name; AggregateError keeps errors", () => {
  class MyError extends Error {
    constructor(message: string) {
      super(message);
      this.name = "MyError";
    }
  }
  const back = roundTrip(new MyError("mine"));
  assert.equal(Object.getPrototypeOf(back), Error.prototype);
  assert.equal(back.name, "MyError");
  assert.equal(back.message, "mine");
  assert.match(String(back), /^MyError: mine/);
  const aggregate = roundTrip(new AggregateError([new TypeError("a"), 1], "many"));
  assert.ok(aggregate instanceof AggregateError);
  assert.equal(aggregate.message, "many");
  assert.ok(aggregate.errors[0] instanceof TypeError);
  assert.equal(aggregate.errors[1], 1);
});

test("codec: boxed primitives", () => {
  const back = roundTrip([new Number(-0), new String("s"), new Boolean(false), Object(5n), Object(2n ** 80n)]);
  assert.ok(back[0] instanceof Number && Object.is(back[0].valueOf(), -0));
  assert.ok(back[1] instanceof String && back[1].valueOf() === "s");
  assert.ok(back[2] instanceof Boolean && back[2].valueOf() === false);
  assert.equal(typeof back[3], "object");
  assert.equal(back[3].valueOf(), 5n);
  assert.equal(back[4].valueOf(), 2n ** 80n);
});

test("codec: cycles and shared references keep identity", () => {
  const shared = { s: 1 };
  const root: Record<string, unknown> = { a: shared, b: [shared, shared] };
  root.self = root;
  const list: unknown[] = [];
  list.push(list, root);
  root.list = list;
  const map = new Map<unknown, unknown>();
  map.set(map, map);
  root.map = map;
  const error = new Error("loop");
  (error as { cause?: unknown }).cause = error;
  root.error = error;
  const back = roundTrip(root) as typeof root & { b: unknown[]; list: unknown[]; map: Map<unknown, unknown>; error: Error };
  assert.equal(back.self, back);
  assert.equal(back.a, back.b[0]);
  assert.equal(back.b[0], back.b[1]);
  assert.equal(back.list[0], back.list);
  assert.equal(back.list[1], back);
  assert.equal(back.map.get(back.map), back.map);
  assert.equal(back.error.cause, back.error);
});

// --- binary payloads --------------------------------------------------------------------------

const TYPED_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array];

test("codec: every typed array comes back with its type, length and contents", () => {
  for (const ctor of TYPED_ARRAYS) {
    const array = new ctor(Array.from({ length: 37 }, (_, i) => i * 3 - 20));
    const back = roundTrip(array);
    assert.equal(back.constructor, ctor);
    assert.deepStrictEqual(back, array);
  }
  for (const ctor of [BigInt64Array, BigUint64Array]) {
    const array = new ctor(Array.from({ length: 9 }, (_, i) => BigInt(i) * 2n ** 40n));
    assert.deepStrictEqual(roundTrip(array), array);
  }
  const f16 = (globalThis as Record<string, unknown>).Float16Array as Float32ArrayConstructor | undefined;
  if (f16) assert.deepStrictEqual(roundTrip(f16.from([1.5, -2, 65504])), f16.from([1.5, -2, 65504]));
  assert.deepStrictEqual(roundTrip(new Float64Array(0)), new Float64Array(0));
});

test("codec: DataView, ArrayBuffer, SharedArrayBuffer, Node Buffer", () => {
  const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
  const view = roundTrip(new DataView(bytes.buffer, 10, 20));
  assert.ok(view instanceof DataView);
  assert.equal(view.byteLength, 20);
  assert.equal(view.getUint8(0), 10);
  const buffer = roundTrip(bytes.buffer);
  assert.ok(buffer instanceof ArrayBuffer);
  assert.deepStrictEqual(new Uint8Array(buffer), bytes);
  const sab = new SharedArrayBuffer(16);
  new Uint8Array(sab).fill(7);
  const fromShared = roundTrip({ sab, view: new Int32Array(sab, 4, 2) });
  assert.ok(fromShared.sab instanceof ArrayBuffer);
  assert.deepStrictEqual(new Uint8Array(fromShared.sab), new Uint8Array(16).fill(7));
  assert.deepStrictEqual(fromShared.view, new Int32Array(sab, 4, 2));
  const nodeBuffer = roundTrip(Buffer.from("hello"));
  assert.ok(nodeBuffer instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(nodeBuffer), "hello");
});

test("codec: typed arrays are zero-copy views over the region", () => {
  const source = new Float64Array([1, 2, 3, 4]);
  const region = place(encode({ data: source }, hooks));
  const back = decode(region, hooks) as { data: Float64Array };
  assert.equal(back.data.buffer, region.buffer);
  const offset = back.data.byteOffset;
  new DataView(region.buffer).setFloat64(offset + 8, 99, true);
  assert.equal(back.data[1], 99);
  back.data[2] = -1;
  assert.equal(new DataView(region.buffer).getFloat64(offset + 16, true), -1);
});

test("codec: views of one buffer share memory after decoding, and store only the span used", () => {
  const big = new ArrayBuffer(1 << 20);
  const a = new Uint8Array(big, 1000, 16);
  const b = new Float64Array(big, 1008, 4);
  const encoded = encode([a, b], hooks);
  assert.ok(encoded.sizeBytes < 4096, `stored ${encoded.sizeBytes} bytes for a 48-byte span`);
  const [backA, backB] = roundTrip([a, b]);
  assert.equal(backB.byteOffset % 8, 0);
  backB[0] = 1;
  assert.deepStrictEqual(Array.from(backA.subarray(8, 16)), Array.from(new Uint8Array(new Float64Array([1]).buffer)));
});

test("codec: every payload sits at a 64-byte aligned offset", () => {
  const value = {
    a: new Uint8Array(3),
    b: new Float64Array(new ArrayBuffer(800), 8, 5),
    c: new Int16Array(new ArrayBuffer(100), 2, 7),
    d: new ArrayBuffer(65),
    e: tableFromArrays({ x: new Float64Array([1, 2]) }),
    s: "a string that sits in the body before the payloads",
  };
  const encoded = encode(value, hooks);
  const region = place(encoded);
  const view = new DataView(region.buffer, region.byteOffset, region.byteLength);
  const bodyLength = view.getUint32(4, true);
  const count = view.getUint32(12, true);
  assert.equal(count, 5);
  const tableStart = Math.ceil((16 + bodyLength) / 8) * 8;
  let end = 0;
  for (let i = 0; i < count; i++) {
    const offset = view.getUint32(tableStart + i * 24, true);
    const length = view.getUint32(tableStart + i * 24 + 8, true);
    assert.equal(offset % 64, 0, `payload ${i} at ${offset}`);
    assert.ok(offset >= tableStart + count * 24);
    end = Math.max(end, offset + length);
  }
  assert.equal(end, encoded.sizeBytes);
  assert.equal(region.byteOffset % 64, 0);
  const back = decode(region, hooks) as typeof value;
  for (const key of ["a", "b", "c"] as const) assert.equal((back[key].byteOffset - region.byteOffset) % back[key].BYTES_PER_ELEMENT, 0);
  assert.deepStrictEqual(back.b, value.b);
  assert.deepStrictEqual(back.c, value.c);
});

test("codec: writeInto checks its target; an unaligned region is decoded from a copy", () => {
  const encoded = encode(new Float64Array([1, 2]), hooks);
  throwsSerialization(() => encoded.writeInto(new Uint8Array(encoded.sizeBytes - 1)), /needs/);
  throwsSerialization(() => encoded.writeInto(new Uint8Array(new ArrayBuffer(encoded.sizeBytes + 8), 8)), /aligned/);
  const aligned = place(encoded);
  const unaligned = new Uint8Array(new ArrayBuffer(aligned.length + 3), 3);
  unaligned.set(aligned);
  assert.deepStrictEqual(decode(unaligned, hooks), new Float64Array([1, 2]));
});

test("codec: large payloads sit at their source's page offset; the region still fits and decodes", () => {
  // Bytes of a pattern, so a payload written at the wrong place cannot decode equal.
  const big = new Uint8Array(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 8)) & 0xff;
  const value = {
    head: new Float64Array(big.buffer, 8, 1000),
    odd: big.subarray(77_777, 77_777 + 1_100_001),
    tail: new DataView(big.buffer, 2_000_003, 1_048_576),
    other: new BigInt64Array(140_000).fill(-5n),
    small: new Uint16Array([1, 2, 3]),
  };
  for (let round = 0; round < 64; round++) {
    const targetPageOffset = (round * 64 * 37) % 4096;
    const sourceOffsets = new Map<ArrayBufferLike, number>();
    const pageOffsetOf = (source: ArrayBufferLike, byteOffset: number) => {
      if (!sourceOffsets.has(source)) sourceOffsets.set(source, (round * 977 + sourceOffsets.size * 2049) % 4096);
      return (sourceOffsets.get(source)! + byteOffset) % 4096;
    };
    const encoded = encode(value, hooks);
    const region = new Uint8Array(new ArrayBuffer(encoded.sizeBytes + 4096), 64, encoded.sizeBytes);
    encoded.writeInto(region, { targetPageOffset, pageOffsetOf });
    const view = new DataView(region.buffer, region.byteOffset);
    const bodyLength = view.getUint32(4, true);
    const tableStart = Math.ceil((16 + bodyLength) / 8) * 8;
    for (let i = 0; i < view.getUint32(12, true); i++) {
      const offset = view.getUint32(tableStart + i * 24, true);
      const length = view.getUint32(tableStart + i * 24 + 8, true);
      const base = view.getUint32(tableStart + i * 24 + 16, true);
      assert.equal(offset % 64, 0);
      assert.ok(offset + length <= encoded.sizeBytes, `payload ${i} ends at ${offset + length} of ${encoded.sizeBytes}`);
      if (length < 1024 * 1024) continue;
      const source = i === 0 ? big.buffer : value.other.buffer;
      // The destination starts at most 63 bytes before the source within a page, never after.
      const lead = (targetPageOffset + offset - pageOffsetOf(source, base) + 4096) % 4096;
      assert.ok(lead === 0 || lead > 4096 - 64, `round ${round}: payload ${i} runs ${lead} bytes ahead of its source`);
    }
    const back = decode(region, hooks) as typeof value;
    assert.ok(Buffer.from(back.odd).equals(Buffer.from(value.odd)));
    assert.deepStrictEqual(back.head, value.head);
    assert.ok(Buffer.from(back.tail.buffer, back.tail.byteOffset, back.tail.byteLength).equals(Buffer.from(big.buffer, 2_000_003, 1_048_576)));
    assert.deepStrictEqual(back.other, value.other);
    assert.deepStrictEqual(back.small, value.small);
  }
});

// --- Arrow ------------------------------------------------------------------------------------

test("codec: Arrow Table round-trips as IPC with zero-copy columns", () => {
  const table = tableFromArrays({ x: Float64Array.from({ length: 1000 }, (_, i) => i / 2), label: ["a", "b", "c", "d"].flatMap((s) => Array(250).fill(s)) });
  const region = place(encode({ table }, hooks));
  const back = (decode(region, hooks) as { table: Table }).table;
  assert.ok(back instanceof Table);
  assert.equal(back.numRows, 1000);
  assert.deepStrictEqual(back.getChild("x")!.toArray(), table.getChild("x")!.toArray());
  assert.deepStrictEqual(back.getChild("label")!.toArray(), table.getChild("label")!.toArray());
  const values = back.getChild("x")!.data[0].values as Float64Array;
  assert.equal(values.buffer, region.buffer);
  assert.ok(values.byteOffset >= region.byteOffset && values.byteOffset < region.byteOffset + region.length);
});

test("codec: Arrow RecordBatch round-trips", () => {
  const batch = tableFromArrays({ n: Int32Array.from([1, 2, 3]) }).batches[0];
  const back = roundTrip([batch, batch]);
  assert.ok(back[0] instanceof RecordBatch);
  assert.equal(back[0], back[1]);
  assert.deepStrictEqual(Array.from(back[0].getChild("n")!.toArray()), [1, 2, 3]);
});

function variedTables(): Table[] {
  const dictionary = vectorFromArray(["x", "y", "x", "z"], new Dictionary(new Utf8(), new Int32()));
  return [
    tableFromArrays({ f: new Float64Array([1, 2, 3]), s: ["a", "bb", "ccc"], i: Int32Array.from([1, 2, 3]) }),
    tableFromJSON([{ a: { x: 1, y: "q" }, l: [1, 2], d: new Date(0), b: true, n: null }, { a: { x: 2, y: "r" }, l: [3], d: new Date(1), b: false, n: 5 }]),
    new Table({ dictionary }),
    tableFromArrays({ empty: new Float64Array(0) }),
  ];
}

test("codec: Arrow tables of nested, dictionary, nullable and empty columns pass the metadata check", () => {
  for (const table of variedTables()) {
    const back = roundTrip(table);
    assert.equal(back.numRows, table.numRows);
    assert.equal(String(back.schema), String(table.schema));
    assert.deepStrictEqual(JSON.parse(JSON.stringify(back.toArray())), JSON.parse(JSON.stringify(table.toArray())));
  }
});

test("codec: corrupt Arrow payloads fail cleanly", () => {
  let seed = 99;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (const table of variedTables()) {
    const valid = place(encode(table, hooks));
    for (let i = 0; i < 1500; i++) {
      const bytes = aligned(valid);
      for (let f = 0; f < 1 + random() * 3; f++) {
        const at = 64 + Math.floor(random() * (bytes.length - 64));
        bytes[at] = random() < 0.3 ? 0xff : random() * 256;
      }
      decodeHostile(bytes);
    }
  }
}, { timeoutMs: 30_000 });

// --- refs -------------------------------------------------------------------------------------

test("codec: refs anywhere are found, deduplicated and rebuilt", () => {
  const r1 = refWithId(1);
  const r2 = refWithId(2);
  const r1Again = new FakeRef(r1.id.slice());
  const value = { top: r1, list: [r2, r1], map: new Map([[r2, new Set([r1Again])]]), err: new Error("e", { cause: r2 }) };
  const encoded = encode(value, hooks);
  assert.equal(encoded.refIds.length, 2);
  assert.deepStrictEqual(encoded.refIds.map((id) => id[24]), [1, 2]);
  const back = decode(place(encoded), hooks) as typeof value;
  assert.ok(back.top instanceof FakeRef);
  assert.deepStrictEqual(back.top.id, r1.id);
  assert.equal(back.list[1], back.top);
  assert.notEqual([...back.map.values()][0].values().next().value, back.top);
  assert.deepStrictEqual([...[...back.map.values()][0]][0], r1Again);
  assert.equal((back.err.cause as FakeRef).id[24], 2);
  assert.deepStrictEqual(encode({ none: [1, "x"] }, hooks).refIds, []);
});

test("codec: a bad refId result is a SerializationError", () => {
  const badHooks = { refId: (v: unknown) => (v instanceof FakeRef ? new Uint8Array(3) : undefined), makeRef: hooks.makeRef };
  throwsSerialization(() => encode({ r: refWithId(1) }, badHooks), /value\.r: refId returned 3 bytes/);
});

// Their speed is measured by bench/codec_bench.ts, not here: a time bound fails on a busy machine.
test("codec: 10,000 refs encode and decode, every id in place", () => {
  const refs = Array.from({ length: 10_000 }, (_, i) => refWithId(i));
  roundTrip(refs);
  const encoded = encode(refs, hooks);
  const back = decode(place(encoded), hooks) as FakeRef[];
  assert.equal(encoded.refIds.length, 10_000);
  assert.equal(back.length, 10_000);
  for (const i of [0, 1, 4999, 9999]) assert.deepStrictEqual(back[i].id, refs[i].id);
});

// --- custom classes ---------------------------------------------------------------------------

class Point {
  x: number;
  y: number;
  constructor(x: number, y: number) {
    this.x = x;
    this.y = y;
  }
}

test("codec: registered classes round-trip, nested and with payloads inside", () => {
  registerSerializer(Point, { serialize: (p) => [p.x, p.y], deserialize: ([x, y]) => new Point(x, y) });
  try {
    const p = new Point(1, 2);
    const back = roundTrip({ p, again: p, list: [new Point(3, 4)] });
    assert.ok(back.p instanceof Point);
    assert.deepStrictEqual(back.p, p);
    assert.equal(back.again, back.p);
    assert.deepStrictEqual(back.list[0], new Point(3, 4));
    class Point3 extends Point {}
    assert.ok(roundTrip(new Point3(5, 6)) instanceof Point);
  } finally {
    deregisterSerializer(Point);
  }
});

test("codec: a serializer name is how another process finds the class", () => {
  class Blob {
    data: Float32Array;
    ref: FakeRef;
    constructor(data: Float32Array, ref: FakeRef) {
      this.data = data;
      this.ref = ref;
    }
  }
  registerSerializer(Blob, { serialize: (b) => ({ data: b.data, ref: b.ref }), deserialize: (d) => new Blob(d.data, d.ref) }, "my.Blob");
  const encoded = encode(new Blob(new Float32Array([1, 2]), refWithId(9)), hooks);
  const region = place(encoded);
  assert.equal(encoded.refIds.length, 1);
  const back = decode(region, hooks) as Blob;
  assert.ok(back instanceof Blob);
  assert.equal(back.data.buffer, region.buffer);
  deregisterSerializer(Blob);
  throwsSerialization(() => decode(region, hooks), /class "my\.Blob".*registerSerializer/);
  throwsSerialization(() => encode({ b: new Blob(new Float32Array(1), refWithId(1)) }, hooks), /value\.b: class Blob has no serializer/);
});

test("codec: serializer misuse is reported", () => {
  class A {}
  class B {}
  registerSerializer(A, { serialize: () => 1, deserialize: () => new A() }, "same");
  try {
    throwsSerialization(() => registerSerializer(B, { serialize: () => 1, deserialize: () => new B() }, "same"), /already registered/);
    registerSerializer(A, { serialize: () => 2, deserialize: () => new A() }, "same");
  } finally {
    deregisterSerializer(A);
  }
  class Loop {
    self = this;
  }
  registerSerializer(Loop, { serialize: (l) => ({ inner: l.self }), deserialize: () => new Loop() });
  try {
    throwsSerialization(() => encode({ l: new Loop() }, hooks), /value\.l<serialized Loop>\.inner: .*refers back/);
  } finally {
    deregisterSerializer(Loop);
  }
  class Fails {}
  registerSerializer(Fails, { serialize: () => 0, deserialize: () => { throw new Error("nope"); } });
  try {
    throwsSerialization(() => roundTrip(new Fails()), /deserializer of class "Fails" threw: nope/);
  } finally {
    deregisterSerializer(Fails);
  }
});

test("codec: a serializer may call encode re-entrantly", () => {
  class Wrapped {}
  registerSerializer(Wrapped, { serialize: () => encode({ inner: "x".repeat(100) }, hooks).sizeBytes, deserialize: () => new Wrapped() });
  try {
    const back = roundTrip({ w: new Wrapped(), after: "after", more: [1, 2, 3] });
    assert.ok(back.w instanceof Wrapped);
    assert.deepStrictEqual(back.more, [1, 2, 3]);
  } finally {
    deregisterSerializer(Wrapped);
  }
});

// --- what cannot be stored --------------------------------------------------------------------

test("codec: unstorable values name their path", () => {
  class Thing {}
  const cases: [unknown, RegExp][] = [
    [() => 1, /^cannot store value: functions cannot be stored/],
    [{ a: [0, 1, 2, { b: function named() {} }] }, /^cannot store value\.a\[3\]\.b: functions cannot be stored \(named\)/],
    [{ "odd key": [Symbol("s")] }, /^cannot store value\["odd key"\]\[0\]: symbols cannot be stored/],
    [{ m: new Map([["k", { w: new WeakMap() }]]) }, /^cannot store value\.m\.get\("k"\)\.w: WeakMap objects cannot be stored/],
    [new Map<unknown, number>([[{}, 1], [new WeakSet(), 2]]), /^cannot store value<map key #1>: WeakSet objects cannot be stored/],
    [new Set([1, new WeakRef({})]), /^cannot store value<set item #1>: WeakRef objects cannot be stored/],
    [[Promise.resolve()], /^cannot store value\[0\]: Promise objects cannot be stored/],
    [{ deep: { t: new Thing() } }, /^cannot store value\.deep\.t: class Thing has no serializer/],
    [new Error("e", { cause: { f: Math.max } }), /^cannot store value\.cause\.f: functions cannot be stored \(max\)/],
    [{ get bad() { throw new Error("getter"); } }, /^cannot store value\.bad: reading it threw: getter/],
  ];
  for (const [value, pattern] of cases) throwsSerialization(() => encode(value, hooks), pattern);
});

test("codec: a value nested too deeply is a SerializationError with a bounded message", () => {
  let deep: unknown = 0;
  for (let i = 0; i < 1_000_000; i++) deep = { next: deep };
  const error = throwsSerialization(() => encode(deep, hooks), /nested too deeply/);
  assert.ok(error.message.length < 1000, error.message);
});

test("codec: a failed encode leaves the codec usable", () => {
  throwsSerialization(() => encode({ a: "x".repeat(5000), f: () => 0 }, hooks));
  same({ ok: "x".repeat(5000) });
});

// --- hostile input ----------------------------------------------------------------------------

function mediumValue(): unknown {
  return {
    name: "medium",
    numbers: [1, -1, 2 ** 40, 0.5, -0],
    text: "héllo wörld ".repeat(5),
    nested: { map: new Map<unknown, unknown>([["k", [1n, 2n ** 70n]]]), set: new Set([null, true]) },
    when: new Date(0),
    re: /re/g,
    err: new RangeError("r"),
    bytes: new Uint8Array([1, 2, 3]),
    floats: new Float64Array([1.5, 2.5]),
    table: tableFromArrays({ v: Int32Array.from([1, 2, 3]) }),
    ref: refWithId(3),
  };
}

/** Decodes hostile bytes: a SerializationError or a value are fine, anything else fails the test. */
function decodeHostile(bytes: Uint8Array): void {
  try {
    decode(bytes, hooks);
  } catch (error) {
    if (!(error instanceof SerializationError)) throw new Error(`non-SerializationError: ${error}`, { cause: error });
    assert.match(error.message, /corrupt object data|not supported|no serializer|deserializer/);
  }
}

function aligned(bytes: Uint8Array): Uint8Array {
  const region = new Uint8Array(new ArrayBuffer(bytes.length + 64), 64, bytes.length);
  region.set(bytes);
  return region;
}

test("codec: every truncation of a valid region fails cleanly", () => {
  const full = place(encode(mediumValue(), hooks));
  for (let n = 0; n < full.length; n++) {
    throwsSerialization(() => decode(aligned(full.subarray(0, n)), hooks), /corrupt object data/);
  }
});

test("codec: random bytes and random corruption never crash or hang", () => {
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: Math.floor(random() * 200) }, () => random() * 256);
    if (i % 2 === 0 && bytes.length >= 4) bytes.set([0x4f, 0x53, 0x56, 1]);
    decodeHostile(aligned(bytes));
  }
  const valid = place(encode(mediumValue(), hooks));
  for (let i = 0; i < 3000; i++) {
    const bytes = aligned(valid);
    const flips = 1 + Math.floor(random() * 3);
    for (let f = 0; f < flips; f++) bytes[Math.floor(random() * bytes.length)] = random() * 256;
    decodeHostile(bytes);
  }
}, { timeoutMs: 30_000 });

/** A region holding a hand-written body and no payloads. */
function region(body: number[]): Uint8Array {
  const bytes = new Uint8Array(16 + body.length);
  bytes.set([0x4f, 0x53, 0x56, 1, body.length]);
  bytes.set(body, 16);
  return aligned(bytes);
}

test("codec: absurd lengths are rejected before allocating", () => {
  const huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
  throwsSerialization(() => decode(region([7, ...huge]), hooks), /needs/);
  throwsSerialization(() => decode(region([12, ...huge]), hooks), /count/);
  throwsSerialization(() => decode(region([13, 0xff, 0xff, 0xff, 0x7f]), hooks), /count/);
  throwsSerialization(() => decode(region([10, ...huge]), hooks), /array length/);
  throwsSerialization(() => decode(region([10, 3, 1]), hooks), /ends early/);
  throwsSerialization(() => decode(region([28, 0]), hooks), /back-reference/);
  throwsSerialization(() => decode(region([0x80, 0x80]), hooks), /stray/);
  throwsSerialization(() => decode(region([0]), hooks), /unknown tag/);
  const headerLies = region([0x80]);
  headerLies[12] = 0xff;
  throwsSerialization(() => decode(headerLies, hooks), /table/);
  const longArray = region([10, 0xff, 0xff, 0xff, 0xff, 0x0f, 11, 0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.equal((decode(longArray, hooks) as unknown[]).length, 2 ** 32 - 1);
  const deep = region([...Array(200_000).fill(10).flatMap((t) => [t, 1]), 0x80]);
  throwsSerialization(() => decode(deep, hooks), /corrupt object data/);
});

test("codec: foreign data and other versions are named as such", () => {
  throwsSerialization(() => decode(new Uint8Array(64), hooks), /bad magic/);
  const future = region([0x80]);
  future[3] = 9;
  throwsSerialization(() => decode(future, hooks), /version 9/);
});

test("codec: a __proto__ key stays an own property", () => {
  const hostile = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}');
  const back = roundTrip(hostile) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.ok(Object.hasOwn(back, "__proto__"));
  assert.deepStrictEqual(Object.getOwnPropertyDescriptor(back, "__proto__")!.value, { polluted: true });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(back.polluted, undefined);
  const error = roundTrip(Object.assign(new Error("x"), { name: "__proto__" }));
  assert.equal(error.name, "__proto__");
  assert.equal(Object.getPrototypeOf(error), Error.prototype);
});

// --- the format is the same everywhere --------------------------------------------------------

test("codec: the bytes are identical on every runtime", () => {
  const value = { n: [0, -1, 1e100, -0], s: "ü😀", b: -(2n ** 100n), d: new Date(86_400_000), m: new Map([[1, new Set(["x"])]]), f: new Int16Array([1, -2]), ab: new ArrayBuffer(3) };
  const region = place(encode(value, hooks));
  let hash = 0x811c9dc5;
  for (const byte of region) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  assert.equal(region.length, 259);
  assert.equal(hash.toString(16), "240cdd7d");
});

test("codec: describeHead names a value's kind from its first 64 bytes alone", () => {
  const head = (value: unknown) => place(encode(value, hooks)).slice(0, DESCRIBE_HEAD_BYTES);
  const cases: Array<[unknown, string]> = [
    [new Uint8Array(1000), "Uint8Array"],
    [new Float64Array(8), "Float64Array"],
    [new DataView(new ArrayBuffer(8)), "DataView"],
    [new ArrayBuffer(100), "ArrayBuffer"],
    [{ a: 1 }, "object"],
    [[1, 2], "array"],
    ["x".repeat(500), "string"],
    [7, "number"],
    [-0.5, "number"],
    [2n ** 70n, "bigint"],
    [true, "boolean"],
    [null, "null"],
    [undefined, "undefined"],
    [new Map(), "Map"],
    [new Date(0), "Date"],
    [new TypeError("t"), "Error"],
    [tableFromArrays({ x: new Int32Array([1]) }), "Arrow table"],
    [refWithId(3), "ObjectRef"],
  ];
  for (const [value, kind] of cases) assert.equal(describeHead(head(value)), kind, kind);
  registerSerializer(Point, { serialize: (p) => [p.x, p.y], deserialize: ([x, y]) => new Point(x, y) }, "geometry/Point");
  try {
    assert.equal(describeHead(head(new Point(1, 2))), "geometry/Point");
  } finally {
    deregisterSerializer(Point);
  }
  assert.equal(describeHead(new Uint8Array(64)), undefined, "zeros: not read");
  assert.equal(describeHead(head({ a: 1 }).subarray(0, 16)), undefined, "no body: cannot tell");
  assert.equal(describeHead(new TextEncoder().encode("raw bytes of another client, not this format")), "bytes");
});
