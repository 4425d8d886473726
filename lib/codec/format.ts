/**
 * The portable value format: one byte layout written and read identically by Deno, Bun and
 * Node, so a value put from one runtime is read by the others.
 *
 * Data region (all integers little-endian; offsets relative to the start of the region, which
 * the store places at a 64-byte aligned address):
 *
 * ```text
 * 0   u8[3]  magic "OSV"              a foreign or zeroed region fails here, not mid-value
 * 3   u8     version (1)              a future layout is a clear error, not garbage
 * 4   u64    body length B            (lo u32, hi u32): bodies may exceed 4 GiB
 * 12  u32    buffer count N
 * 16  body   B bytes: the value tree, see Tag
 * 16+B rounded up to 8:
 *     table  N entries of 3 × u64 (lo u32, hi u32 each):
 *            offset   where the payload starts; a multiple of 64
 *            length   payload bytes
 *            base     byte offset in the source ArrayBuffer that payload byte 0 came from
 * payloads   each at its 64-aligned offset, in table order and not overlapping, zero padding
 *            between; the region ends where the last payload ends (at 16 + B when N = 0)
 * ```
 *
 * A payload is read whole (copied as an ArrayBuffer, parsed as an Arrow stream) by at most one
 * tag of the body, as the encoder writes it; readers refuse more, so no body can make a decode
 * cost more memory or time than the region's size allows.
 *
 * Payloads: one per distinct source ArrayBuffer (or SharedArrayBuffer), holding only the span
 * that the value's views use (the whole buffer once a bare ArrayBuffer is part of the value),
 * widened down to a multiple of 8 so every view keeps its element alignment; `base` lets views
 * in the body keep their original byte offsets. An Arrow table or record batch gets a payload
 * of its own holding an IPC stream.
 *
 * Body grammar: each value is a tag byte followed by its fields. `varint` is unsigned LEB128
 * (at most 8 bytes, values below 2^53; non-minimal forms are accepted because the writer pads
 * string lengths it reserves up front). `str` is varint UTF-8 byte length + bytes. Every object
 * (anything that is not a primitive) takes the next back-reference index when its tag is read,
 * before its children, so cycles and shared references decode to the same identity.
 *
 * @module
 */

/** The three magic bytes "OSV" followed by the version byte. */
export const MAGIC = [0x4f, 0x53, 0x56] as const;

/** Bumped on any incompatible layout change; readers reject other versions. */
export const VERSION = 1;

/** Bytes before the body. */
export const HEADER_BYTES = 16;

/** Bytes per buffer-table entry: offset, length, base as u64 each. */
export const TABLE_ENTRY_BYTES = 24;

/** Payload alignment: a cache line, and enough for Arrow's zero-copy column reads. */
export const PAYLOAD_ALIGN = 64;

/** Table alignment: lets the u32 fields be read at natural alignment. */
export const TABLE_ALIGN = 8;

/** Size of an ObjectRef id (Ray's ObjectID). */
export const REF_ID_BYTES = 28;

/** Tag bytes of the body. Tag 0 is unused so that zeroed memory never decodes as a value. */
export const Tag = {
  Undefined: 1,
  Null: 2,
  False: 3,
  True: 4,
  /** i32 */
  Int32: 5,
  /** f64; covers -0, NaN, ±Infinity */
  Float64: 6,
  /** str */
  String: 7,
  /** i64: bigints in the signed 64-bit range, the common case */
  BigInt64: 8,
  /** u8 sign (1 = negative), varint n, n bytes of magnitude, least significant first */
  BigInt: 9,
  /** varint length, then elements; Holes may stand for runs of missing elements */
  Array: 10,
  /** varint run length: that many array holes (only inside Array) */
  Holes: 11,
  /** varint count, then count × (str key, value) */
  Object: 12,
  /** varint count, then count × (key, value) */
  Map: 13,
  /** varint count, then count values */
  Set: 14,
  /** f64 time value (NaN for an invalid date) */
  Date: 15,
  /** str source, str flags */
  RegExp: 16,
  /** str name, str message, u8 flags (ErrorFlag), [str stack], [cause value], [errors value] */
  Error: 17,
  /** f64 */
  BoxedNumber: 18,
  /** str */
  BoxedString: 19,
  /** u8 0 or 1 */
  BoxedBoolean: 20,
  /** a BigInt64 or BigInt value */
  BoxedBigInt: 21,
  /** varint buffer index, varint byte length; decodes to a copy (see decode.ts) */
  ArrayBuffer: 22,
  /** u8 ViewKind, varint buffer index, varint byte offset in source, varint element count */
  View: 23,
  /** varint buffer index of an Arrow IPC stream */
  ArrowTable: 24,
  /** varint buffer index of an Arrow IPC stream holding exactly one batch */
  ArrowRecordBatch: 25,
  /** str registered name, then the serializer's output as a value */
  Custom: 26,
  /** 28 bytes of ObjectRef id */
  Ref: 27,
  /** varint index of an object seen earlier */
  BackRef: 28,
} as const;

/** Tags at or above this byte are small non-negative integers: `tag - SMALL_INT_TAG`. */
export const SMALL_INT_TAG = 0x80;

/** Bits of the Error flags byte saying which optional fields follow. */
export const ErrorFlag = { Stack: 1, Cause: 2, Errors: 4 } as const;

/** Rounds `n` up to a multiple of `alignment` (a power of two, `n` below 2^53). */
export function alignUp(n: number, alignment: number): number {
  const rest = n % alignment;
  return rest === 0 ? n : n + alignment - rest;
}
