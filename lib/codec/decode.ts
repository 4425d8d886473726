/**
 * Data region → value. Typed arrays and DataViews come back as views over `data.buffer` (the
 * store's shared memory, zero copy); Arrow column buffers likewise. A bare ArrayBuffer comes back
 * as a copy, because an ArrayBuffer cannot be a window into a larger one: wrap bytes in a
 * Uint8Array to keep them zero-copy.
 *
 * The input is untrusted: every length is checked against what remains before anything is
 * allocated, keys become own properties (a "__proto__" key never changes a prototype), and any
 * failure is a SerializationError.
 *
 * @module
 */
import { batchFromStream, tableFromStream } from "./arrow.ts";
import { ErrorFlag, HEADER_BYTES, PAYLOAD_ALIGN, REF_ID_BYTES, SMALL_INT_TAG, Tag } from "./format.ts";
import { readHeader } from "./header.ts";
import { ERROR_CONSTRUCTORS, VIEW_KINDS } from "./kinds.ts";
import { isStackOverflow } from "./paths.ts";
import { PayloadLocator } from "./payloads.ts";
import { ByteReader, corrupt, corruption, excerpt } from "./reader.ts";
import { registrationNamed } from "./registry.ts";
import { decodeTag, NOT_TINY } from "./tiny.ts";
import type { DecodeHooks } from "./types.ts";
import { ObjstoreError, SerializationError } from "../errors.ts";

const MAX_ARRAY_LENGTH = 2 ** 32 - 1;
/** Ref ids are carved from slabs of this many: one buffer allocation per slab, not per ref. */
const IDS_PER_SLAB = 256;
/** Placeholder for a custom object whose data is still being decoded. */
const PENDING: unique symbol = Symbol("pending");
const NO_PAYLOADS = new PayloadLocator(new DataView(new ArrayBuffer(0)), 0, 0);
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef");
/** Magnitudes up to this many bytes are spelled by `+=`; longer ones through one flat string. */
const SHORT_BIGINT_BYTES = 32;
const ascii = new TextDecoder();

/**
 * Reads a value from a data region written by `encode`. `data` should start 64-byte aligned in
 * its buffer (a store region does); an unaligned region with payloads is copied first so its
 * views stay valid. Bytes after the end of the value are ignored.
 */
export function decode(data: Uint8Array, hooks: DecodeHooks): unknown {
  const { bodyLength, bufferCount } = readHeader(data);
  if (bufferCount === 0 && bodyLength === 1) {
    const tiny = decodeTag(data[HEADER_BYTES]);
    if (tiny !== NOT_TINY) return tiny;
  }
  try {
    return decodeRegion(bufferCount > 0 && data.byteOffset % PAYLOAD_ALIGN !== 0 ? data.slice() : data, bodyLength, bufferCount, hooks);
  } catch (error) {
    throw asDecodeError(error);
  }
}

function decodeRegion(data: Uint8Array, bodyLength: number, bufferCount: number, hooks: DecodeHooks): unknown {
  const bodyEnd = HEADER_BYTES + bodyLength;
  const reader = new ByteReader(data, HEADER_BYTES, bodyEnd);
  const payloads = bufferCount === 0 ? NO_PAYLOADS : new PayloadLocator(new DataView(data.buffer, data.byteOffset, data.byteLength), bodyEnd, bufferCount);
  const value = new Decoder(reader, payloads, hooks, data).value();
  if (reader.pos !== bodyEnd) corrupt(`${bodyEnd - reader.pos} stray bytes after the value`);
  return value;
}

/**
 * Anything that escapes other than the store's own errors (those of `makeRef`) means the bytes
 * are bad: Arrow's checks, a stack overflow.
 */
function asDecodeError(error: unknown): ObjstoreError {
  if (error instanceof ObjstoreError) return error;
  if (isStackOverflow(error)) return corruption("nesting too deep", error);
  return corruption(excerpt(messageOf(error)), error);
}

/** Walks one body; `objects` mirrors the encoder's back-reference numbering. */
class Decoder {
  private readonly r: ByteReader;
  private readonly payloads: PayloadLocator;
  private readonly hooks: DecodeHooks;
  private readonly data: Uint8Array;
  private readonly objects: unknown[] = [];
  /**
   * Array slots this decode may still preallocate. Each element of a real array takes a byte of
   * body at least, so all of them fit in the body's length; holes do not, and arrays asking for
   * more are built sparse instead: preallocating each array up to what remained let 64 arrays of
   * holes in a 1 MiB region take 512 MiB.
   */
  private slotBudget: number;
  private idSlab = new Uint8Array(0);
  private idSlabUsed = 0;

  constructor(reader: ByteReader, payloads: PayloadLocator, hooks: DecodeHooks, data: Uint8Array) {
    this.r = reader;
    this.payloads = payloads;
    this.hooks = hooks;
    this.data = data;
    this.slotBudget = reader.remaining();
  }

  value(): unknown {
    const tag = this.r.u8();
    if (tag >= SMALL_INT_TAG) return tag - SMALL_INT_TAG;
    switch (tag) {
      case Tag.Undefined:
        return undefined;
      case Tag.Null:
        return null;
      case Tag.False:
        return false;
      case Tag.True:
        return true;
      case Tag.Int32:
        return this.r.i32();
      case Tag.Float64:
        return this.r.f64();
      case Tag.String:
        return this.r.string();
      case Tag.BigInt64:
        return this.r.i64();
      case Tag.BigInt:
        return this.bigint();
      default:
        return this.object(tag);
    }
  }

  private object(tag: number): unknown {
    switch (tag) {
      case Tag.Array:
        return this.array();
      case Tag.Object:
        return this.plain();
      case Tag.Map:
        return this.map();
      case Tag.Set:
        return this.set();
      case Tag.Ref:
        return this.ref();
      case Tag.BackRef:
        return this.backRef();
      case Tag.View:
        return this.view();
      default:
        return this.rare(tag);
    }
  }

  private rare(tag: number): unknown {
    switch (tag) {
      case Tag.Date:
        return this.remember(new Date(this.r.f64()));
      case Tag.RegExp:
        return this.remember(this.regexp());
      case Tag.Error:
        return this.error();
      case Tag.BoxedNumber:
      case Tag.BoxedString:
      case Tag.BoxedBoolean:
      case Tag.BoxedBigInt:
        return this.remember(this.boxed(tag));
      case Tag.ArrayBuffer:
        return this.remember(this.arrayBuffer());
      case Tag.ArrowTable:
      case Tag.ArrowRecordBatch:
        return this.remember(this.arrow(tag));
      case Tag.Custom:
        return this.custom();
      default:
        return corrupt(`unknown tag ${tag} at offset ${this.r.pos - 1}`);
    }
  }

  private remember<T>(value: T): T {
    this.objects.push(value);
    return value;
  }

  private bigint(): bigint {
    const sign = this.r.u8();
    if (sign > 1) corrupt(`bad bigint sign ${sign}`);
    const magnitude = bigintOf(this.r.span(this.r.varint()));
    return sign === 1 ? -magnitude : magnitude;
  }

  /**
   * Preallocated while every element could have its own byte (see `slotBudget`); otherwise (long
   * hole runs, corrupt lengths) made sparse from the start, so it costs its present elements only.
   */
  private array(): unknown[] {
    const length = this.r.varint();
    if (length > MAX_ARRAY_LENGTH) corrupt(`array length ${length}`);
    const r = this.r;
    const preallocate = length <= r.remaining() && length <= this.slotBudget;
    if (preallocate) this.slotBudget -= length;
    const array = this.remember(preallocate ? new Array(length) : sparseArray(length));
    for (let i = 0; i < length;) {
      if (r.pos < r.end && r.bytes[r.pos] === Tag.Holes) {
        r.pos++;
        const run = r.varint();
        if (run === 0 || run > length - i) corrupt(`hole run ${run} overflows the array`);
        i += run;
      } else {
        array[i++] = this.value();
      }
    }
    array.length = length;
    return array;
  }

  private plain(): Record<string, unknown> {
    const count = this.r.count(2);
    const object = this.remember({} as Record<string, unknown>);
    for (let i = 0; i < count; i++) {
      const key = this.r.key();
      const value = this.value();
      if (key === "__proto__") defineOwn(object, key, value, true);
      else object[key] = value;
    }
    return object;
  }

  private map(): Map<unknown, unknown> {
    const count = this.r.count(2);
    const map = this.remember(new Map<unknown, unknown>());
    for (let i = 0; i < count; i++) {
      const key = this.value();
      map.set(key, this.value());
    }
    return map;
  }

  private set(): Set<unknown> {
    const count = this.r.count(1);
    const set = this.remember(new Set<unknown>());
    for (let i = 0; i < count; i++) set.add(this.value());
    return set;
  }

  /** The id is copied into a slab slice: the ref may keep it, and Deno pays ~0.2 µs per new buffer. */
  private ref(): unknown {
    if (this.idSlabUsed === this.idSlab.length) {
      this.idSlab = new Uint8Array(REF_ID_BYTES * IDS_PER_SLAB);
      this.idSlabUsed = 0;
    }
    const id = this.idSlab.subarray(this.idSlabUsed, this.idSlabUsed + REF_ID_BYTES);
    this.idSlabUsed += REF_ID_BYTES;
    this.r.copyInto(id);
    return this.remember(this.hooks.makeRef(id));
  }

  private backRef(): unknown {
    const index = this.r.varint();
    if (index >= this.objects.length) corrupt(`back-reference ${index} to an object not yet seen`);
    const value = this.objects[index];
    if (value === PENDING) corrupt(`back-reference ${index} into an object still being deserialized`);
    return value;
  }

  private regexp(): RegExp {
    const source = this.r.string();
    const flags = this.r.string();
    try {
      return new RegExp(source, flags);
    } catch (error) {
      return corrupt(`invalid RegExp /${excerpt(source)}/${excerpt(flags)}`, error);
    }
  }

  private error(): Error {
    const name = this.r.string();
    const message = this.r.string();
    const flags = this.r.u8();
    if (flags > (ErrorFlag.Stack | ErrorFlag.Cause | ErrorFlag.Errors)) corrupt(`bad error flags ${flags}`);
    const stack = flags & ErrorFlag.Stack ? this.r.string() : undefined;
    const error = this.remember(makeError(name, message));
    if (stack !== undefined) defineOwn(error, "stack", stack, false);
    if (flags & ErrorFlag.Cause) defineOwn(error, "cause", this.value(), false);
    if (flags & ErrorFlag.Errors) defineOwn(error, "errors", this.value(), false);
    return error;
  }

  private boxed(tag: number): object {
    switch (tag) {
      case Tag.BoxedNumber:
        return new Number(this.r.f64());
      case Tag.BoxedString:
        return new String(this.r.string());
      case Tag.BoxedBoolean:
        return new Boolean(this.bit());
    }
    const inner = this.r.u8();
    if (inner === Tag.BigInt64) return Object(this.r.i64());
    return inner === Tag.BigInt ? Object(this.bigint()) : corrupt(`boxed bigint holds tag ${inner}`);
  }

  private bit(): boolean {
    const byte = this.r.u8();
    return byte <= 1 ? byte === 1 : corrupt(`boolean byte ${byte}`);
  }

  /** A copy: see the module doc. */
  private arrayBuffer(): ArrayBuffer {
    const index = this.r.varint();
    const byteLength = this.r.varint();
    const offset = this.payloads.locate(index, 0, byteLength);
    this.payloads.take(index, "an ArrayBuffer");
    return this.data.slice(offset, offset + byteLength).buffer;
  }

  /** A typed array or DataView over the region itself. */
  private view(): ArrayBufferView {
    const kindIndex = this.r.u8();
    const kind = VIEW_KINDS[kindIndex] ?? corrupt(`unknown view kind ${kindIndex}`);
    if (kind.ctor === undefined) throw new SerializationError(`${kind.name} is not supported by this runtime`);
    const index = this.r.varint();
    const byteOffset = this.r.varint();
    const length = this.r.varint();
    const offset = this.data.byteOffset + this.payloads.locate(index, byteOffset, length * kind.elementBytes);
    if (offset % kind.elementBytes !== 0) corrupt(`${kind.name} at misaligned offset ${offset}`);
    return this.remember(new kind.ctor(this.data.buffer, offset, length));
  }

  /** The Arrow value in a payload; Arrow's own complaints are reported with where they arose. */
  private arrow(tag: number): unknown {
    const at = this.r.pos - 1;
    const index = this.r.varint();
    const [offset, length] = this.payloads.whole(index);
    this.payloads.take(index, `the Arrow value at offset ${at}`);
    const stream = this.data.subarray(offset, offset + length);
    try {
      if (tag === Tag.ArrowTable) return tableFromStream(stream);
      return batchFromStream(stream) ?? corrupt(`the Arrow record batch in buffer ${index} holds other than one batch`);
    } catch (error) {
      if (error instanceof SerializationError) throw error;
      return corrupt(`the Arrow stream in buffer ${index} cannot be read: ${excerpt(messageOf(error))}`, error);
    }
  }

  private custom(): unknown {
    const slot = this.objects.length;
    this.objects.push(PENDING);
    const name = this.r.string();
    const registration = registrationNamed(name);
    if (registration === undefined) {
      throw new SerializationError(`cannot read an instance of class "${excerpt(name)}": no serializer is registered under that name in this process (use registerSerializer)`);
    }
    const data = this.value();
    try {
      this.objects[slot] = registration.serializer.deserialize(data);
    } catch (error) {
      throw new SerializationError(`the deserializer of class "${name}" threw: ${excerpt(messageOf(error))}`, { cause: error });
    }
    return this.objects[slot];
  }
}

/**
 * A magnitude from its bytes, least significant first. A long one is spelled into one flat
 * string first: grown by `+=` a byte at a time, the string was a rope of ~32 bytes of heap a
 * byte, and an 8 MiB bigint took 280 MiB and 6 s to read on Node.
 */
function bigintOf(bytes: Uint8Array): bigint {
  if (bytes.length <= SHORT_BIGINT_BYTES) {
    let hex = "0x0";
    for (let i = bytes.length - 1; i >= 0; i--) hex += HEX[bytes[i]];
    return BigInt(hex);
  }
  const digits = new Uint8Array(2 + 2 * bytes.length);
  digits[0] = 0x30; // "0x"
  digits[1] = 0x78;
  for (let i = 0, at = digits.length - 2; i < bytes.length; i++, at -= 2) {
    digits[at] = HEX_DIGITS[bytes[i] >> 4];
    digits[at + 1] = HEX_DIGITS[bytes[i] & 15];
  }
  return BigInt(ascii.decode(digits));
}

/**
 * An empty array of `length` that the engine keeps sparse. Setting `length` on `[]` is not
 * enough: V8 backs an array of up to 2^25 slots with a store of that size (256 MiB from 12 bytes
 * of body), while an element written far out first turns it into a dictionary in V8 and JSC.
 */
function sparseArray(length: number): unknown[] {
  const array: unknown[] = [];
  array[length - 1] = undefined;
  delete array[length - 1];
  return array;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A built-in error of that name, or an Error carrying the custom name. */
function makeError(name: string, message: string): Error {
  const ctor = ERROR_CONSTRUCTORS.get(name);
  if (ctor === (AggregateError as unknown)) return new AggregateError([], message);
  if (ctor !== undefined) return new ctor(message);
  const error = new Error(message);
  defineOwn(error, "name", name, false);
  return error;
}

/** An own data property, created even where assignment would hit a setter (`__proto__`). */
function defineOwn(target: object, key: string, value: unknown, enumerable: boolean): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable, configurable: true });
}
