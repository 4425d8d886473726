/**
 * The soak's payloads and their checksums. A payload is made from a `PayloadSpec` (kind, size,
 * seed) by `makePayload`, the same bytes on every runtime, so whoever knows a spec knows the
 * checksum of the value it makes. `checksum` walks any value the store accepts (typed arrays,
 * ArrayBuffer, DataView, plain values, Map, Set, Date, RegExp, bigint, ObjectRefs inside) and
 * returns 16 hex digits: the type of every part goes in with its contents, so a Float64Array
 * that comes back as a Uint8Array, a string that lost a character or a ref that names another
 * object all change it.
 *
 * Imported by the soak's clients, by its task functions (tasks.ts) and, through a dynamic import,
 * by its actor: one definition of "the same value" everywhere.
 */

/** How to make a payload: the same spec makes the same value on every runtime. */
export interface PayloadSpec {
  kind: PayloadKind;
  /** Roughly how many bytes of data: exact for binary kinds, an estimate for plain values. */
  bytes: number;
  /** For kind "typed": which typed array. */
  type?: TypedArrayName;
  seed: number;
}

export type PayloadKind = "typed" | "arraybuffer" | "dataview" | "plain" | "mixed";

export const TYPED_ARRAYS = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float16Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;
export type TypedArrayName = (typeof TYPED_ARRAYS)[number];

const KiB = 1024;

/** A small, fast PRNG (xorshift32): deterministic from its seed on every runtime. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = (seed >>> 0) || 0x9e3779b9;
  }
  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }
  /** A uniform float in [0, 1). */
  next(): number {
    return this.u32() / 2 ** 32;
  }
  /** A whole number in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A size from `min` to `max` bytes, log-uniform: as many tiny values as huge ones. */
  logSize(min: number, max: number): number {
    return Math.floor(Math.exp(Math.log(min) + this.next() * (Math.log(max) - Math.log(min))));
  }
}

/**
 * A random spec: binary payloads from a byte to `maxBytes`, plain values up to 64 KiB (the codec
 * walks those value by value, so big ones would only slow the soak down).
 */
export function randomSpec(random: Random, maxBytes: number): PayloadSpec {
  const seed = random.u32();
  const roll = random.next();
  // Sizes log-uniform from a byte, and 40% of them big: enough bytes to make the store spill.
  const binaryBytes = () => (random.chance(0.4) ? random.int(maxBytes / 4, maxBytes) : random.logSize(1, maxBytes));
  if (roll < 0.45) return { kind: "typed", type: random.pick(TYPED_ARRAYS), bytes: binaryBytes(), seed };
  if (roll < 0.55) return { kind: "arraybuffer", bytes: binaryBytes(), seed };
  if (roll < 0.62) return { kind: "dataview", bytes: binaryBytes(), seed };
  if (roll < 0.85) return { kind: "plain", bytes: random.logSize(8, 64 * KiB), seed };
  return { kind: "mixed", bytes: random.logSize(16, Math.min(maxBytes, 1024 * KiB)), seed };
}

/** The value a spec makes. */
export function makePayload(spec: PayloadSpec): unknown {
  const random = new Random(spec.seed);
  switch (spec.kind) {
    case "typed":
      return makeTyped(spec.type!, spec.bytes, random);
    case "arraybuffer":
      return randomBytes(spec.bytes, random).buffer;
    case "dataview": {
      const bytes = randomBytes(spec.bytes + 16, random);
      // A view that starts and ends inside its buffer: only the viewed bytes are stored.
      return new DataView(bytes.buffer, 8, spec.bytes);
    }
    case "plain":
      return makePlain(spec.bytes, random);
    case "mixed":
      return {
        label: `mixed-${spec.seed}`,
        samples: makeTyped(random.pick(TYPED_ARRAYS), spec.bytes, random),
        raw: randomBytes(random.int(0, 256), random).buffer,
        meta: makePlain(Math.min(2 * KiB, spec.bytes), random),
        at: new Date(1_700_000_000_000 + random.int(0, 1e9)),
      };
  }
}

function randomBytes(count: number, random: Random): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(count);
  const words = new Uint32Array(bytes.buffer, 0, count >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = random.u32();
  for (let i = words.length * 4; i < count; i++) bytes[i] = random.u32() & 0xff;
  return bytes;
}

function makeTyped(type: TypedArrayName, bytes: number, random: Random): ArrayBufferView {
  const Ctor = (globalThis as unknown as Record<string, { new (b: ArrayBuffer): ArrayBufferView; BYTES_PER_ELEMENT: number }>)[type];
  const elementBytes = Ctor.BYTES_PER_ELEMENT;
  const length = Math.floor(bytes / elementBytes);
  // Random bits: floats include NaNs with payloads and -0, which must come back bit for bit.
  return new Ctor(randomBytes(length * elementBytes, random).buffer);
}

const WORDS = ["kiwi", "Δέλτα", "東京", "emoji 🦀🧪", "tab\tnewline\n", "", "quote\"back\\slash", "ünïcödé"];

/** A tree of plain values of about `bytes` bytes: objects, arrays, Map, Set, Date, RegExp, bigint. */
function makePlain(bytes: number, random: Random): unknown {
  let budget = bytes;
  const leaf = (): unknown => {
    budget -= 8;
    switch (random.int(0, 9)) {
      case 0:
        return random.int(-1e9, 1e9);
      case 1:
        return (random.next() - 0.5) * 1e300;
      case 2:
        return random.pick([0, -0, Infinity, -Infinity, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE]);
      case 3: {
        const text = random.pick(WORDS).repeat(random.int(1, 4)) + random.u32().toString(36);
        budget -= text.length * 2;
        return text;
      }
      case 4:
        return BigInt(random.u32()) * BigInt(random.u32()) * (random.chance(0.5) ? -1n : 1n);
      case 5:
        return random.pick([true, false, null, undefined]);
      case 6:
        return new Date(random.int(0, 2e12));
      case 7:
        return new RegExp(`^a+${random.int(0, 99)}$`, random.pick(["", "g", "iu"]));
      default:
        return `s${random.u32()}`;
    }
  };
  const node = (depth: number): unknown => {
    if (depth > 4 || budget <= 0 || random.chance(0.3)) return leaf();
    const width = random.int(1, 8);
    switch (random.int(0, 3)) {
      case 0:
        return Array.from({ length: width }, () => node(depth + 1));
      case 1: {
        const object: Record<string, unknown> = {};
        for (let i = 0; i < width; i++) object[`k${random.int(0, 999)}_${i}`] = node(depth + 1);
        return object;
      }
      case 2:
        return new Map(Array.from({ length: width }, (_, i) => [`m${i}`, node(depth + 1)] as const));
      default:
        return new Set(Array.from({ length: width }, () => `e${random.u32()}`));
    }
  };
  const items: unknown[] = [];
  while (budget > 0) items.push(node(0));
  return items.length === 1 ? items[0] : items;
}

/**
 * FNV-1a over 32-bit words in two lanes with different offsets: fast enough to check MiBs in
 * a few milliseconds, and any flipped bit changes the result.
 */
class Hasher {
  a = 0x811c9dc5;
  b = 0x01000193 ^ 0x5bd1e995;
  /** Bytes fed in binary payloads (what "bytes verified" counts). */
  binaryBytes = 0;
  word(w: number): void {
    this.a = Math.imul(this.a ^ w, 0x01000193);
    this.b = Math.imul(this.b ^ (w + 0x7f4a7c15), 0x5bd1e995) ^ (this.b >>> 15);
  }
  text(s: string): void {
    this.word(s.length);
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
  }
  bytes(view: Uint8Array): void {
    this.word(view.length);
    this.binaryBytes += view.length;
    const aligned = view.byteOffset % 4 === 0;
    const wordCount = aligned ? view.length >>> 2 : 0;
    if (wordCount > 0) {
      const words = new Uint32Array(view.buffer, view.byteOffset, wordCount);
      let a = this.a;
      let b = this.b;
      for (let i = 0; i < wordCount; i++) {
        const w = words[i];
        a = Math.imul(a ^ w, 0x01000193);
        b = Math.imul(b ^ (w + 0x7f4a7c15), 0x5bd1e995) ^ (b >>> 15);
      }
      this.a = a;
      this.b = b;
    }
    for (let i = wordCount * 4; i < view.length; i++) this.word(view[i]);
  }
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, "0") + (this.b >>> 0).toString(16).padStart(8, "0");
  }
}

/** Anything with `hex()`: an ObjectRef, without importing the library here. */
interface RefLike {
  hex(): string;
}

function isRef(value: object): value is RefLike {
  return value.constructor?.name === "ObjectRef" && typeof (value as RefLike).hex === "function";
}

const f64 = new Float64Array(1);
const f64Words = new Uint32Array(f64.buffer);

function feed(h: Hasher, value: unknown, depth: number): void {
  if (depth > 64) throw new Error("checksum: value nested deeper than 64 levels");
  switch (typeof value) {
    case "undefined":
      return h.word(1);
    case "boolean":
      return h.word(value ? 3 : 2);
    case "number":
      f64[0] = value;
      h.word(4);
      h.word(f64Words[0]);
      return h.word(f64Words[1]);
    case "bigint":
      h.word(5);
      return h.text(value.toString(16));
    case "string":
      h.word(6);
      return h.text(value);
    case "object":
      break;
    default:
      throw new Error(`checksum: cannot checksum a ${typeof value}`);
  }
  if (value === null) return h.word(7);
  if (isRef(value)) {
    h.word(8);
    return h.text(value.hex());
  }
  if (value instanceof ArrayBuffer) {
    h.word(9);
    return h.bytes(new Uint8Array(value));
  }
  if (ArrayBuffer.isView(value)) {
    h.word(10);
    h.text(Object.prototype.toString.call(value));
    return h.bytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  if (Array.isArray(value)) {
    h.word(11);
    h.word(value.length);
    for (const item of value) feed(h, item, depth + 1);
    return;
  }
  if (value instanceof Map) {
    h.word(12);
    h.word(value.size);
    for (const [k, v] of value) {
      feed(h, k, depth + 1);
      feed(h, v, depth + 1);
    }
    return;
  }
  if (value instanceof Set) {
    h.word(13);
    h.word(value.size);
    for (const item of value) feed(h, item, depth + 1);
    return;
  }
  if (value instanceof Date) {
    h.word(14);
    return feed(h, value.getTime(), depth + 1);
  }
  if (value instanceof RegExp) {
    h.word(15);
    h.text(value.source);
    return h.text(value.flags);
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) {
    throw new Error(`checksum: unexpected ${value.constructor?.name ?? "object"} (a plain object was expected)`);
  }
  h.word(16);
  const keys = Object.keys(value);
  h.word(keys.length);
  for (const key of keys) {
    h.text(key);
    feed(h, (value as Record<string, unknown>)[key], depth + 1);
  }
}

/** The checksum of a value (16 hex digits) and how many binary bytes it covered. */
export function checksumOf(value: unknown): { sum: string; binaryBytes: number } {
  const h = new Hasher();
  feed(h, value, 0);
  return { sum: h.hex(), binaryBytes: h.binaryBytes };
}

/** The checksum of a value: 16 hex digits. */
export function checksum(value: unknown): string {
  return checksumOf(value).sum;
}

/** A short description of a spec for messages: `Float64Array 1048576 B seed 123`. */
export function describeSpec(spec: PayloadSpec): string {
  return `${spec.kind === "typed" ? spec.type : spec.kind} ${spec.bytes} B seed ${spec.seed}`;
}

/** Two checksums chained (an actor's running state): order matters. */
export function chain(state: string, sum: string): string {
  const h = new Hasher();
  h.text(state);
  h.text(sum);
  return h.hex();
}
