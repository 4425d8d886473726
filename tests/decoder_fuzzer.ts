/**
 * A seeded fuzzer for the value decoder (lib/codec/decode.ts), which reads bytes another process
 * of any runtime wrote: a trust boundary. Each case starts from valid encodings of many kinds of
 * values and mutates them (bytes set, flipped, inserted, deleted, duplicated; truncation; varints,
 * header and payload-table fields replaced by boundary values; two encodings spliced), or builds
 * a body from the format's grammar with lying lengths. Case `n` of seed `s` depends on nothing
 * else, so any failure replays alone.
 *
 * The oracle ({@link checkDecode}): decoding returns a value or throws a SerializationError with a
 * bounded message; the built-in prototypes are unchanged; every view of the result lies inside
 * the region; the result holds no more objects and copied bytes than the region has bytes.
 */
import { Dictionary, Int32, RecordBatch, Table, tableFromArrays, tableFromJSON, Type, Utf8, vectorFromArray } from "apache-arrow";
import { decode, encode, registerSerializer } from "../lib/codec/mod.ts";
import { SerializationError } from "../lib/errors.ts";

// --- randomness -------------------------------------------------------------------------------

/** sfc32: small, fast, and the same on every engine. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0;
    this.b = (stream ^ 0x9e3779b9) >>> 0;
    this.c = 0x243f6a88;
    this.d = 1;
    for (let i = 0; i < 16; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

// --- the values encoded -----------------------------------------------------------------------

/** Stands in for the store's ObjectRef. */
export class FuzzRef {
  readonly id: Uint8Array;
  constructor(id: Uint8Array) {
    this.id = id;
  }
}

/** A registered class: its deserializer sees whatever data a corrupt region holds. */
export class FuzzBox {
  readonly inner: unknown;
  constructor(inner: unknown) {
    this.inner = inner;
  }
}
registerSerializer(FuzzBox, {
  serialize: (box) => [box.inner],
  deserialize: (data: unknown) => {
    if (!Array.isArray(data) || data.length !== 1) throw new TypeError("FuzzBox data must be a one-element array");
    return new FuzzBox(data[0]);
  },
}, "FuzzBox");

export const hooks = {
  refId: (value: unknown) => (value instanceof FuzzRef ? value.id : undefined),
  makeRef: (id: Uint8Array) => new FuzzRef(id),
};

const STRINGS = ["", "a", "__proto__", "constructor", "prototype", "toString", "héllo", "😀", "x".repeat(40), "ü".repeat(100)];
const KEYS = ["a", "b", "__proto__", "constructor", "prototype", "hasOwnProperty", "valueOf", "length", "0", "key with space"];
const NUMBERS = [0, -0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53, 0.5, NaN, Infinity, -Infinity, Number.MIN_VALUE];
const BIGINTS = [0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n, -(2n ** 200n), 123456789012345678901234567890n];
const VIEW_CTORS = [
  "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
  "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "Float16Array",
].map((name) => (globalThis as unknown as Record<string, (new (b: ArrayBuffer, o: number, n: number) => ArrayBufferView) & { BYTES_PER_ELEMENT: number } | undefined>)[name])
  .filter((ctor) => ctor !== undefined);

const ARROW_VALUES: object[] = [
  tableFromArrays({ i: Int32Array.from([1, 2, 3]), f: Float64Array.from([0.5, 1.5, 2.5]) }),
  new Table({ s: vectorFromArray(["a", "b", "a", null], new Dictionary(new Utf8(), new Int32())) }),
  tableFromJSON([{ n: 1, s: "x", b: true }, { n: null, s: null, b: false }]),
  new RecordBatch({ v: vectorFromArray([1, 2, null]).data[0] }),
  tableFromArrays({ e: new Float64Array(0) }),
];

/** A random storable value, at most `depth` containers deep; `seen` lets later parts share or cycle. */
export function randomValue(r: Rng, depth = 0, seen: object[] = []): unknown {
  const leaf = depth >= 4 || r.chance(0.35);
  switch (leaf ? r.int(9) : 9 + r.int(10)) {
    case 0:
      return r.int(128);
    case 1:
      return r.pick(NUMBERS);
    case 2:
      return r.pick(STRINGS) + (r.chance(0.2) ? "z".repeat(r.int(300)) : "");
    case 3:
      return r.pick([true, false, null, undefined]);
    case 4:
      return r.pick(BIGINTS);
    case 5:
      return r.pick([new Date(r.int(2 ** 31) * 1000), new Date(NaN), /a+b/gi, new RegExp("(x|y)*", "u")]);
    case 6:
      return binary(r, seen);
    case 7:
      return new FuzzRef(r.bytes(28));
    case 8:
      return seen.length > 0 && r.chance(0.5) ? r.pick(seen) : r.pick(ARROW_VALUES);
    case 9: {
      const array: unknown[] = [];
      seen.push(array);
      for (let i = r.int(6); i > 0; i--) array.push(randomValue(r, depth + 1, seen));
      return array;
    }
    case 10: {
      const array: unknown[] = new Array(r.pick([3, 100, 2 ** 20, 2 ** 32 - 1]));
      seen.push(array);
      for (let i = r.int(4); i > 0; i--) array[r.int(array.length)] = randomValue(r, depth + 1, seen);
      return array;
    }
    case 11: {
      const object: Record<string, unknown> = r.chance(0.2) ? Object.create(null) : {};
      seen.push(object);
      for (let i = r.int(6); i > 0; i--) {
        Object.defineProperty(object, r.pick(KEYS), { value: randomValue(r, depth + 1, seen), enumerable: true, writable: true, configurable: true });
      }
      return object;
    }
    case 12: {
      const map = new Map<unknown, unknown>();
      seen.push(map);
      for (let i = r.int(4); i > 0; i--) map.set(randomValue(r, depth + 1, seen), randomValue(r, depth + 1, seen));
      return map;
    }
    case 13: {
      const set = new Set<unknown>();
      seen.push(set);
      for (let i = r.int(4); i > 0; i--) set.add(randomValue(r, depth + 1, seen));
      return set;
    }
    case 14: {
      const error = r.chance(0.3)
        ? new AggregateError([randomValue(r, depth + 1, seen)], "agg")
        : new (r.pick([Error, TypeError, RangeError]))(r.pick(STRINGS), r.chance(0.5) ? { cause: randomValue(r, depth + 1, seen) } : undefined);
      if (r.chance(0.3)) error.name = r.pick(["Custom", "__proto__", "constructor"]);
      seen.push(error);
      return fixedStack(error);
    }
    case 15:
      return r.pick([new Number(r.pick(NUMBERS)), new String(r.pick(STRINGS)), new Boolean(r.chance(0.5)), Object(r.pick(BIGINTS))]);
    case 16:
      return new FuzzBox(randomValue(r, depth + 1, []));
    case 17:
      return seen.length > 0 ? r.pick(seen) : [];
    default:
      return { a: randomValue(r, depth + 1, seen), b: [randomValue(r, depth + 1, seen)] };
  }
}

/** A typed array, DataView or ArrayBuffer, often sharing a buffer with another part of the value. */
function binary(r: Rng, seen: object[]): object {
  const shared = seen.find((o) => o instanceof ArrayBuffer) as ArrayBuffer | undefined;
  const buffer = shared !== undefined && r.chance(0.5) ? shared : new ArrayBuffer(8 * r.pick([0, 1, 3, 17, 600]));
  const random = new Rng(buffer.byteLength);
  new Uint8Array(buffer).set(random.bytes(buffer.byteLength));
  if (r.chance(0.2)) {
    seen.push(buffer);
    return buffer;
  }
  if (r.chance(0.15)) return new DataView(buffer, r.int(buffer.byteLength + 1));
  const ctor = r.pick(VIEW_CTORS);
  const elements = Math.floor(buffer.byteLength / ctor.BYTES_PER_ELEMENT);
  const start = r.int(elements + 1);
  return new ctor(buffer, start * ctor.BYTES_PER_ELEMENT, r.int(elements - start + 1));
}

/** Valid regions of random values (the mutation corpus), plus fixed ones that reach every tag. */
export function corpus(seed: number, count: number): Uint8Array[] {
  const r = new Rng(seed, 0xc0de);
  const regions: Uint8Array[] = [];
  for (const value of fixedValues()) regions.push(encoded(value)!);
  while (regions.length < count) {
    const region = encoded(randomValue(r));
    if (region !== undefined) regions.push(region);
  }
  return regions;
}

function fixedValues(): unknown[] {
  const buffer = new ArrayBuffer(64);
  const cyclic: Record<string, unknown> = { name: "cycle" };
  cyclic.self = cyclic;
  return [
    { n: [0, -1, 2 ** 40, 0.5, -0], s: "héllo", b: [1n, 2n ** 70n], d: new Date(0), re: /re/g },
    [new Map<unknown, unknown>([["k", new Set([null, true])]]), new Number(1), new String("s"), new Boolean(true), Object(5n)],
    fixedStack(Object.assign(new RangeError("r", { cause: fixedStack(new Error("c")) }), { name: "Named" })),
    fixedStack(new AggregateError([fixedStack(new Error("a"))], "agg")),
    { buffer, bytes: new Uint8Array(buffer, 8, 16), floats: new Float64Array(buffer, 16, 4), view: new DataView(buffer, 4, 8) },
    { table: ARROW_VALUES[0], dictionary: ARROW_VALUES[1], batch: ARROW_VALUES[3] },
    [new FuzzBox({ x: 1 }), new FuzzRef(new Uint8Array(28).fill(7)), cyclic, [, , 3]],
    JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}'),
    new BigUint64Array([1n, 2n ** 64n - 1n]),
  ];
}

/** `error` with a stack that does not depend on where it was made: the corpus is the same from any caller. */
function fixedStack<E extends Error>(error: E): E {
  error.stack = `${error.name}: ${error.message}\n    at fuzz (corpus)`;
  return error;
}

/** The region of `value`, or undefined if it cannot be stored (a cycle through a FuzzBox). */
function encoded(value: unknown): Uint8Array | undefined {
  try {
    const e = encode(value, hooks);
    const region = aligned(e.sizeBytes);
    e.writeInto(region);
    return region.slice();
  } catch (error) {
    if (error instanceof SerializationError) return undefined;
    throw error;
  }
}

/** The region `encode` makes of `value`, placed as the arena would place it. */
export function regionOf(value: unknown): Uint8Array {
  const region = encoded(value);
  if (region === undefined) throw new Error("the value cannot be stored");
  return place(region);
}

/** Guard bytes around every region decoded: a view reaching them escaped its region. */
const GUARD_BYTES = 128;
const GUARD = 0xee;

/** A zeroed region of `n` bytes, 64-byte aligned, between guard bytes in a buffer of its own. */
export function aligned(n: number, fill?: (region: Uint8Array) => void): Uint8Array {
  const whole = new Uint8Array(n + 2 * GUARD_BYTES).fill(GUARD);
  const region = whole.subarray(GUARD_BYTES, GUARD_BYTES + n);
  region.fill(0);
  fill?.(region);
  return region;
}

/** `bytes` placed as the arena would place a region. */
export function place(bytes: Uint8Array): Uint8Array {
  return aligned(bytes.length, (region) => region.set(bytes));
}

// --- mutation ---------------------------------------------------------------------------------

const INTERESTING = [0, 1, 2, 0x7f, 0x80, 0xff, 0x3fff, 0x4000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53];

function varintBytes(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

interface Layout {
  bodyStart: number;
  bodyEnd: number;
  tableStart: number;
  bufferCount: number;
}

function layoutOf(bytes: Uint8Array): Layout {
  const bodyLength = readU32(bytes, 4) + readU32(bytes, 8) * 2 ** 32;
  const bodyEnd = Math.max(0, Math.min(bytes.length, 16 + bodyLength));
  return { bodyStart: 16, bodyEnd, tableStart: Math.ceil(bodyEnd / 8) * 8, bufferCount: readU32(bytes, 12) };
}

function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0) || 0;
}

function writeU32(bytes: Uint8Array, at: number, value: number): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = (value >>> (8 * i)) & 0xff;
}

function writeU64(bytes: Uint8Array, at: number, value: number): void {
  writeU32(bytes, at, value % 2 ** 32);
  writeU32(bytes, at + 4, Math.floor(value / 2 ** 32));
}

/** Replaces bytes [at, at + removed) with `inserted`, keeping the header's body length true when asked. */
function splice(bytes: Uint8Array, at: number, removed: number, inserted: ArrayLike<number>, fixLength: boolean): Uint8Array {
  removed = Math.max(0, Math.min(removed, bytes.length - at));
  const out = new Uint8Array(bytes.length - removed + inserted.length);
  out.set(bytes.subarray(0, at));
  out.set(inserted, at);
  out.set(bytes.subarray(at + removed), at + inserted.length);
  if (fixLength && bytes.length >= 16) {
    const { bodyEnd } = layoutOf(bytes);
    if (at + removed <= bodyEnd) writeU64(out, 4, bodyEnd - 16 - removed + inserted.length);
  }
  return out;
}

/** One mutation of a region (a new array; `bytes` is left as it was). */
function mutate(r: Rng, bytes: Uint8Array, all: Uint8Array[]): Uint8Array {
  const { bodyStart, bodyEnd, tableStart, bufferCount } = layoutOf(bytes);
  const inBody = () => Math.min(bytes.length, bodyStart + r.int(Math.max(1, bodyEnd - bodyStart)));
  const fix = r.chance(0.8);
  switch (r.int(12)) {
    case 0: {
      const out = bytes.slice();
      out[r.int(out.length)] = r.chance(0.5) ? r.int(256) : r.pick([0, 1, 0x7f, 0x80, 0xff, 10, 11, 12, 28]);
      return out;
    }
    case 1: {
      const out = bytes.slice();
      out[r.int(out.length)] ^= 1 << r.int(8);
      return out;
    }
    case 2:
      return splice(bytes, inBody(), 0, r.bytes(1 + r.int(8)), fix);
    case 3: {
      const at = inBody();
      return splice(bytes, at, Math.min(1 + r.int(8), bodyEnd - at), [], fix);
    }
    case 4: {
      const from = inBody();
      const chunk = bytes.slice(from, Math.min(bodyEnd, from + 1 + r.int(32)));
      return splice(bytes, inBody(), 0, chunk, fix);
    }
    case 5: {
      const at = inBody();
      return splice(bytes, at, Math.min(r.int(9), bodyEnd - at), varintBytes(r.pick(INTERESTING)), fix);
    }
    case 6: {
      if (bufferCount === 0 || tableStart + 24 * bufferCount > bytes.length) return mutate(r, bytes, all);
      const out = bytes.slice();
      const at = tableStart + 24 * r.int(bufferCount) + 8 * r.int(3);
      const value = r.chance(0.5) ? r.pick(INTERESTING) : r.pick([64, bytes.length, bytes.length - 64, tableStart]);
      if (r.chance(0.1)) writeU32(out, at + 4, r.u32());
      else writeU64(out, at, value);
      return out;
    }
    case 7: {
      const out = bytes.slice();
      if (r.chance(0.5)) writeU32(out, 12, r.pick([0, 1, 2, bufferCount + 1, 2 ** 31, 2 ** 32 - 1]));
      else writeU64(out, 4, r.pick([0, 1, bodyEnd - 16 - 1, bodyEnd - 16 + 1, bytes.length, 2 ** 32, 2 ** 53 - 1]));
      return out;
    }
    case 8:
      return bytes.slice(0, r.int(bytes.length));
    case 9: {
      // Bytes inside a payload: reaches Arrow's metadata checks and the values views expose.
      if (bufferCount === 0 || tableStart >= bytes.length) return mutate(r, bytes, all);
      const start = tableStart + 24 * bufferCount;
      if (start >= bytes.length) return mutate(r, bytes, all);
      const out = bytes.slice();
      for (let i = 1 + r.int(4); i > 0; i--) out[start + r.int(out.length - start)] = r.int(256);
      return out;
    }
    case 10: {
      const other = r.pick(all);
      const { bodyStart: s, bodyEnd: e } = layoutOf(other);
      const from = s + r.int(Math.max(1, e - s));
      return splice(bytes, inBody(), r.int(4), other.subarray(from, Math.min(e, from + 1 + r.int(64))), fix);
    }
    default: {
      const out = new Uint8Array(bytes.length + 1 + r.int(64));
      out.set(bytes);
      out.set(r.bytes(out.length - bytes.length), bytes.length);
      return out;
    }
  }
}

// --- bodies from the grammar ------------------------------------------------------------------

/** A body that follows the grammar, with lengths, indices and counts that sometimes lie. */
function grammarBody(r: Rng, out: number[], depth: number, budget: { left: number }): void {
  const length = () => (r.chance(0.85) ? r.int(4) : r.pick(INTERESTING));
  const str = () => {
    const n = r.chance(0.9) ? r.int(6) : r.pick(INTERESTING);
    out.push(...varintBytes(n), ...r.bytes(Math.min(n, 8)));
  };
  if (--budget.left < 0 || depth > 12) {
    out.push(0x80 + r.int(0x80));
    return;
  }
  const tag = r.chance(0.03) ? r.int(256) : 1 + r.int(28);
  out.push(tag);
  switch (tag) {
    case 5:
      out.push(...r.bytes(4));
      break;
    case 6: case 8: case 15: case 18:
      out.push(...r.bytes(8));
      break;
    case 7: case 19:
      str();
      break;
    case 9: case 21:
      if (tag === 21) out.push(r.pick([8, 9, 7]));
      out.push(r.int(3), ...varintBytes(length()), ...r.bytes(r.int(9)));
      break;
    case 10: {
      const n = length();
      out.push(...varintBytes(n));
      for (let i = Math.min(n, 6); i > 0; i--) {
        if (r.chance(0.2)) out.push(11, ...varintBytes(length()));
        else grammarBody(r, out, depth + 1, budget);
      }
      break;
    }
    case 11:
      out.push(...varintBytes(length()));
      break;
    case 12: case 13: case 14: {
      const n = length();
      out.push(...varintBytes(n));
      for (let i = Math.min(n, 5); i > 0; i--) {
        if (tag === 12) str();
        else grammarBody(r, out, depth + 1, budget);
        if (tag !== 14) grammarBody(r, out, depth + 1, budget);
      }
      break;
    }
    case 16:
      str();
      str();
      break;
    case 17: {
      str();
      str();
      const flags = r.chance(0.9) ? r.int(8) : r.int(256);
      out.push(flags);
      if (flags & 1) str();
      if (flags & 2) grammarBody(r, out, depth + 1, budget);
      if (flags & 4) grammarBody(r, out, depth + 1, budget);
      break;
    }
    case 20:
      out.push(r.int(3));
      break;
    case 22:
      out.push(...varintBytes(length()), ...varintBytes(r.chance(0.7) ? r.int(200) : r.pick(INTERESTING)));
      break;
    case 23:
      out.push(r.int(15), ...varintBytes(length()), ...varintBytes(r.int(100)), ...varintBytes(r.chance(0.8) ? r.int(50) : r.pick(INTERESTING)));
      break;
    case 24: case 25: case 28:
      out.push(...varintBytes(length()));
      break;
    case 26:
      if (r.chance(0.8)) out.push(7, ..."FuzzBox".split("").map((c) => c.charCodeAt(0)));
      else str();
      grammarBody(r, out, depth + 1, budget);
      break;
    case 27:
      out.push(...r.bytes(r.chance(0.9) ? 28 : r.int(28)));
      break;
  }
}

/** A region around a grammar body, with a payload table of 0–3 plausible or lying entries. */
function grammarRegion(r: Rng): Uint8Array {
  const body: number[] = [];
  grammarBody(r, body, 0, { left: 1 + r.int(40) });
  const count = r.chance(0.6) ? 0 : 1 + r.int(3);
  const tableStart = Math.ceil((16 + body.length) / 8) * 8;
  let cursor = Math.ceil((tableStart + 24 * count) / 64) * 64;
  const entries: number[][] = [];
  for (let i = 0; i < count; i++) {
    const length = r.chance(0.8) ? r.int(300) : r.pick(INTERESTING);
    const base = r.chance(0.7) ? 0 : r.pick([8, 64, 2 ** 32, 2 ** 53 - 1]);
    entries.push([r.chance(0.9) ? cursor : r.pick(INTERESTING), length, base]);
    if (length < 1000) cursor = Math.ceil((cursor + length) / 64) * 64;
  }
  const size = count === 0 ? 16 + body.length : Math.max(cursor, tableStart + 24 * count) + r.int(64);
  const bytes = new Uint8Array(size);
  bytes.set([0x4f, 0x53, 0x56, 1]);
  writeU64(bytes, 4, body.length);
  writeU32(bytes, 12, count);
  bytes.set(body, 16);
  entries.forEach(([offset, length, base], i) => {
    writeU64(bytes, tableStart + 24 * i, offset);
    writeU64(bytes, tableStart + 24 * i + 8, length);
    writeU64(bytes, tableStart + 24 * i + 16, base);
  });
  for (let i = Math.max(tableStart + 24 * count, 16 + body.length); i < size; i++) bytes[i] = r.int(256);
  return bytes;
}

/** The bytes of case `index` of `seed`: a function of those two numbers and the corpus alone. */
export function fuzzCase(seed: number, index: number, all: Uint8Array[]): Uint8Array {
  const r = new Rng(seed, index + 1);
  const kind = r.int(10);
  if (kind < 6) {
    let bytes = r.pick(all);
    for (let i = 1 + (r.chance(0.7) ? 0 : r.int(4)); i > 0; i--) bytes = mutate(r, bytes, all);
    return bytes;
  }
  if (kind < 9) return grammarRegion(r);
  const bytes = r.bytes(r.int(300));
  if (bytes.length >= 16 && r.chance(0.8)) {
    bytes.set([0x4f, 0x53, 0x56, 1]);
    writeU64(bytes, 4, r.int(bytes.length - 15));
    writeU32(bytes, 12, r.chance(0.7) ? 0 : r.int(4));
  }
  return bytes;
}

// --- the oracle -------------------------------------------------------------------------------

/** Longest message a decode error may have: corrupt input must not become a giant log line. */
export const MAX_MESSAGE_CHARS = 1000;

const PROTOTYPES: Record<string, object> = {
  Object: Object.prototype, Array: Array.prototype, Function: Function.prototype, Map: Map.prototype,
  Set: Set.prototype, Error: Error.prototype, RegExp: RegExp.prototype, Date: Date.prototype,
  String: String.prototype, Number: Number.prototype, Boolean: Boolean.prototype, BigInt: BigInt.prototype,
  Promise: Promise.prototype, ArrayBuffer: ArrayBuffer.prototype, Uint8Array: Uint8Array.prototype,
  TypedArray: Object.getPrototypeOf(Uint8Array.prototype), FuzzBox: FuzzBox.prototype, FuzzRef: FuzzRef.prototype,
};

/** The own keys and prototype of every built-in prototype, as text: equal before and after a case. */
export function prototypesSnapshot(): string {
  let text = "";
  for (const [name, proto] of Object.entries(PROTOTYPES)) {
    const parent = Object.getPrototypeOf(proto);
    const parentName = Object.keys(PROTOTYPES).find((n) => PROTOTYPES[n] === parent) ?? String(parent);
    text += `${name}<${parentName}>:${Reflect.ownKeys(proto).map(String).join(",")};`;
  }
  return text;
}

const ALLOWED_PROTOTYPES = new Set<object | null>([...Object.values(PROTOTYPES), ...[
  EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError, DataView,
  Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array,
  BigInt64Array, BigUint64Array, ...VIEW_CTORS,
].map((ctor) => ctor.prototype)]);

/** What went wrong with one case, or undefined if the decoder behaved. */
export function checkDecode(bytes: Uint8Array, before: string): string | undefined {
  const region = place(bytes);
  let value: unknown;
  try {
    value = decode(region, hooks);
  } catch (error) {
    if (!(error instanceof SerializationError)) return `threw ${describe(error)}`;
    if (error.message.length > MAX_MESSAGE_CHARS) return `a ${error.message.length}-character message: ${error.message.slice(0, 200)}…`;
    if (!/^corrupt object data: |not supported by this runtime|no serializer is registered|deserializer of class/.test(error.message)) {
      return `unexpected message: ${error.message}`;
    }
  }
  if (prototypesSnapshot() !== before) return "a built-in prototype changed";
  return value === undefined ? undefined : checkValue(value, region);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error);
}

/**
 * Walks a decoded value: known prototypes only; views inside the region; no more objects, and
 * no more bytes copied out, than the region has bytes.
 */
function checkValue(value: unknown, region: Uint8Array): string | undefined {
  const seen = new Set<object>();
  const stack: unknown[] = [value];
  let copiedBytes = 0;
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item !== "object" || item === null || seen.has(item)) continue;
    seen.add(item);
    if (seen.size > region.length) return `${seen.size} objects out of a ${region.length}-byte region`;
    const proto = Object.getPrototypeOf(item);
    if (!ALLOWED_PROTOTYPES.has(proto) && !isArrow(item)) return `an object with an unexpected prototype (${proto?.constructor?.name})`;
    if (ArrayBuffer.isView(item)) {
      const problem = checkView(item, region);
      if (problem !== undefined) return problem;
      continue;
    }
    if (item instanceof ArrayBuffer) {
      if (item !== region.buffer) copiedBytes += item.byteLength;
      if (copiedBytes > region.length) return `${copiedBytes} bytes copied out of a ${region.length}-byte region`;
      continue;
    }
    if (isArrow(item)) {
      const problem = checkArrow(item, region);
      if (problem !== undefined) return problem;
      continue;
    }
    if (item instanceof Map) for (const [k, v] of item) stack.push(k, v);
    else if (item instanceof Set) for (const v of item) stack.push(v);
    else if (item instanceof FuzzBox) stack.push(item.inner);
    else if (item instanceof Error) stack.push((item as { cause?: unknown }).cause, (item as { errors?: unknown }).errors);
    else if (!(item instanceof FuzzRef)) for (const key of Object.keys(item)) stack.push((item as Record<string, unknown>)[key]);
  }
  return undefined;
}

function checkView(view: ArrayBufferView, region: Uint8Array): string | undefined {
  if (view.buffer !== region.buffer) return undefined;
  const start = region.byteOffset;
  const end = start + region.byteLength;
  if (view.byteOffset < start || view.byteOffset + view.byteLength > end) {
    return `a ${view.constructor.name} over bytes ${view.byteOffset}+${view.byteLength} outside the region ${start}+${region.byteLength}`;
  }
  return undefined;
}

function isArrow(value: object): boolean {
  const brands = value as Record<symbol, unknown>;
  return brands[Symbol.for("apache-arrow/Table")] === true || brands[Symbol.for("apache-arrow/RecordBatch")] === true;
}

/**
 * Every column buffer of an Arrow table or batch that views the region lies inside it, and it
 * claims no more rows than the region has bits (but for columns of the Null type, which take none).
 */
function checkArrow(value: object, region: Uint8Array): string | undefined {
  const { numRows, schema } = value as Table;
  if (numRows > region.length * 8 + 64 && !schema.fields.every((f) => f.typeId === Type.Null)) {
    return `an Arrow value of ${numRows} rows out of a ${region.length}-byte region`;
  }
  const batches = (value as { batches?: RecordBatch[] }).batches ?? [value as RecordBatch];
  const stack: unknown[] = batches.map((b) => b.data);
  const seen = new Set<unknown>();
  while (stack.length > 0) {
    const data = stack.pop() as Record<string, unknown> | undefined;
    if (data === undefined || data === null || seen.has(data)) continue;
    seen.add(data);
    for (const key of ["values", "valueOffsets", "nullBitmap", "typeIds"]) {
      const buffer = data[key];
      if (ArrayBuffer.isView(buffer)) {
        const problem = checkView(buffer, region);
        if (problem !== undefined) return `Arrow ${key}: ${problem}`;
      }
    }
    stack.push(...((data.children as unknown[]) ?? []));
    const dictionary = data.dictionary as { data?: unknown[] } | undefined;
    if (dictionary?.data) stack.push(...dictionary.data);
  }
  return undefined;
}

/** Hex of the first bytes of a failing case, to paste into a regression test. */
export function hexOf(bytes: Uint8Array, max = 400): string {
  let text = "";
  for (let i = 0; i < Math.min(bytes.length, max); i++) text += bytes[i].toString(16).padStart(2, "0");
  return bytes.length > max ? `${text}… (${bytes.length} bytes)` : text;
}

// --- hand-built regions -----------------------------------------------------------------------

/** Unsigned LEB128, as the format writes lengths and counts. */
export function varint(value: number): number[] {
  return varintBytes(value);
}

/**
 * A table entry: `bytes` laid out after the table as the encoder would, or `aliasOf` another
 * entry (the same offset and length, which the format forbids); `offset` and `base` may lie.
 */
export interface PayloadEntry {
  bytes?: Uint8Array;
  aliasOf?: number;
  offset?: number;
  base?: number;
}

/** A region around a hand-written `body` and its payloads, placed as the arena would place it. */
export function buildRegion(body: ArrayLike<number>, payloads: PayloadEntry[] = []): Uint8Array {
  const tableStart = Math.ceil((16 + body.length) / 8) * 8;
  let cursor = payloads.length === 0 ? 16 + body.length : tableStart + 24 * payloads.length;
  const spans = payloads.map((p) => {
    if (p.bytes === undefined) return { at: 0, length: 0 };
    const at = Math.ceil(cursor / 64) * 64;
    cursor = at + p.bytes.length;
    return { at, length: p.bytes.length };
  });
  const bytes = new Uint8Array(cursor);
  bytes.set([0x4f, 0x53, 0x56, 1]);
  writeU64(bytes, 4, body.length);
  writeU32(bytes, 12, payloads.length);
  bytes.set(body, 16);
  payloads.forEach((p, i) => {
    const span = spans[p.aliasOf ?? i];
    writeU64(bytes, tableStart + 24 * i, p.offset ?? span.at);
    writeU64(bytes, tableStart + 24 * i + 8, span.length);
    writeU64(bytes, tableStart + 24 * i + 16, p.base ?? 0);
    if (p.bytes !== undefined) bytes.set(p.bytes, span.at);
  });
  return place(bytes);
}

/** `unit` repeated `count` times, then `tail`. */
export function repeated(unit: number[], count: number, tail: number[] = []): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) for (const b of unit) out.push(b);
  for (const b of tail) out.push(b);
  return out;
}

/** The Arrow IPC stream the encoder stores for `value` (a table or a record batch). */
export function arrowPayload(value: object): Uint8Array {
  const region = encoded(value)!;
  const { tableStart } = layoutOf(region);
  const view = new DataView(region.buffer, region.byteOffset);
  return region.slice(view.getUint32(tableStart, true), view.getUint32(tableStart, true) + view.getUint32(tableStart + 8, true));
}

export { ARROW_VALUES };

/**
 * Where, in an Arrow IPC stream, the first record batch keeps its row count and its field nodes
 * (each an int64 length and an int64 null count): for tests that make a batch lie.
 */
export function recordBatchFields(stream: Uint8Array): { lengthAt: number; nodesAt: number; nodeCount: number } {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const target = (at: number) => at + view.getInt32(at, true);
  /** Position of field `index` of the table at `at`, or 0. */
  const field = (at: number, index: number) => {
    const vtable = at - view.getInt32(at, true);
    const slot = 4 + 2 * index;
    if (slot >= view.getInt16(vtable, true)) return 0;
    const offset = view.getInt16(vtable + slot, true);
    return offset === 0 ? 0 : at + offset;
  };
  for (let pos = 0; pos + 8 <= stream.length;) {
    const metaLength = view.getInt32(pos + 4, true);
    const root = target(pos + 8);
    const headerTypeAt = field(root, 1);
    const headerType = headerTypeAt === 0 ? 0 : view.getUint8(headerTypeAt);
    const bodyLengthAt = field(root, 3);
    const bodyLength = bodyLengthAt === 0 ? 0 : Number(view.getBigInt64(bodyLengthAt, true));
    if (headerType === 3) {
      const batch = target(field(root, 2));
      const nodes = target(field(batch, 1));
      return { lengthAt: field(batch, 0), nodesAt: nodes + 4, nodeCount: view.getInt32(nodes, true) };
    }
    pos += 8 + metaLength + bodyLength;
  }
  throw new Error("no record batch in the stream");
}
