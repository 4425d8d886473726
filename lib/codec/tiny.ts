/**
 * Fast paths for values that are a single number, boolean, null or undefined: the commonest
 * task results. Their regions are at most 25 bytes, so they skip the writer, the memo and the
 * payload table; the one-byte ones are shared constants, making `encode(0)` allocation-free.
 *
 * @module
 */
import { HEADER_BYTES, SMALL_INT_TAG, Tag } from "./format.ts";
import { writeHeader } from "./header.ts";
import type { Encoded } from "./types.ts";

/** The refIds of every value without refs. */
export const NO_REF_IDS: Uint8Array[] = Object.freeze([]) as unknown as Uint8Array[];

const scratch = new DataView(new ArrayBuffer(8));

/** A region whose body is one tag byte. */
class TagEncoded implements Encoded {
  readonly sizeBytes = HEADER_BYTES + 1;
  readonly refIds = NO_REF_IDS;
  private readonly tag: number;

  constructor(tag: number) {
    this.tag = tag;
  }

  writeInto(target: Uint8Array): void {
    writeHeader(target, 1, 0);
    target[HEADER_BYTES] = this.tag;
  }
}

/** A region whose body is an Int32 or Float64 tag and its 4 or 8 bytes. */
class NumberEncoded implements Encoded {
  readonly sizeBytes: number;
  readonly refIds = NO_REF_IDS;
  private readonly value: number;

  constructor(value: number, isInt32: boolean) {
    this.value = value;
    this.sizeBytes = HEADER_BYTES + (isInt32 ? 5 : 9);
  }

  writeInto(target: Uint8Array): void {
    const bodyLength = this.sizeBytes - HEADER_BYTES;
    writeHeader(target, bodyLength, 0);
    target[HEADER_BYTES] = bodyLength === 5 ? Tag.Int32 : Tag.Float64;
    if (bodyLength === 5) scratch.setInt32(0, this.value, true);
    else scratch.setFloat64(0, this.value, true);
    for (let i = 1; i < bodyLength; i++) target[HEADER_BYTES + i] = scratch.getUint8(i - 1);
  }
}

const SMALL_INTS = Array.from({ length: 0x80 }, (_, i) => new TagEncoded(SMALL_INT_TAG + i));
const UNDEFINED = new TagEncoded(Tag.Undefined);
const NULL = new TagEncoded(Tag.Null);
const TRUE = new TagEncoded(Tag.True);
const FALSE = new TagEncoded(Tag.False);

/** The encoding of `value` if it is a number, boolean, null or undefined; else `undefined`. */
export function encodeTiny(value: unknown): Encoded | undefined {
  switch (typeof value) {
    case "number":
      return encodeNumber(value);
    case "boolean":
      return value ? TRUE : FALSE;
    case "undefined":
      return UNDEFINED;
    default:
      return value === null ? NULL : undefined;
  }
}

function encodeNumber(value: number): Encoded {
  if (!isInt32(value)) return new NumberEncoded(value, false);
  return value >= 0 && value < 0x80 ? SMALL_INTS[value] : new NumberEncoded(value, true);
}

/** True for numbers the Int32 tag holds exactly (not -0, which only Float64 keeps). */
export function isInt32(value: number): boolean {
  return (value | 0) === value && (value !== 0 || 1 / value > 0);
}

/** The value of a one-byte body, or `NOT_TINY` if that tag needs the full decoder. */
export function decodeTag(tag: number): unknown {
  if (tag >= SMALL_INT_TAG) return tag - SMALL_INT_TAG;
  switch (tag) {
    case Tag.Undefined:
      return undefined;
    case Tag.Null:
      return null;
    case Tag.True:
      return true;
    case Tag.False:
      return false;
  }
  return NOT_TINY;
}

/** Marks a tag {@link decodeTag} does not handle. */
export const NOT_TINY: unique symbol = Symbol("not tiny");
