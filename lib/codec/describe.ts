/**
 * What kind of value a stored region holds, from its first bytes alone (the header and the
 * body's leading tag): for listings that show each object's type without reading it whole.
 *
 * @module
 */
import { HEADER_BYTES, MAGIC, SMALL_INT_TAG, Tag, VERSION } from "./format.ts";
import { VIEW_KINDS } from "./kinds.ts";

/** Bytes of a region's start that `describeHead` needs to name every kind, custom names of up
 * to 45 bytes included. */
export const DESCRIBE_HEAD_BYTES = 64;

const NAMES: Record<number, string> = {
  [Tag.Undefined]: "undefined",
  [Tag.Null]: "null",
  [Tag.False]: "boolean",
  [Tag.True]: "boolean",
  [Tag.Int32]: "number",
  [Tag.Float64]: "number",
  [Tag.String]: "string",
  [Tag.BigInt64]: "bigint",
  [Tag.BigInt]: "bigint",
  [Tag.Array]: "array",
  [Tag.Object]: "object",
  [Tag.Map]: "Map",
  [Tag.Set]: "Set",
  [Tag.Date]: "Date",
  [Tag.RegExp]: "RegExp",
  [Tag.Error]: "Error",
  [Tag.BoxedNumber]: "Number",
  [Tag.BoxedString]: "String",
  [Tag.BoxedBoolean]: "Boolean",
  [Tag.BoxedBigInt]: "BigInt",
  [Tag.ArrayBuffer]: "ArrayBuffer",
  [Tag.ArrowTable]: "Arrow table",
  [Tag.ArrowRecordBatch]: "Arrow record batch",
  [Tag.Ref]: "ObjectRef",
};

/**
 * The kind of value whose region starts with `head`: "Uint8Array", "object", "string",
 * "Arrow table", a registered class's name (`registerSerializer`'s)... ; "bytes" for a region
 * not in this format (raw bytes put by another client of the store); `undefined` for a head of
 * zeros (not read: the object was not in memory) or too short to tell.
 */
export function describeHead(head: Uint8Array): string | undefined {
  if (head.length <= HEADER_BYTES || head.every((byte) => byte === 0)) return undefined;
  if (head[0] !== MAGIC[0] || head[1] !== MAGIC[1] || head[2] !== MAGIC[2] || head[3] !== VERSION) return "bytes";
  const tag = head[HEADER_BYTES];
  if (tag >= SMALL_INT_TAG) return "number";
  if (tag === Tag.View) return VIEW_KINDS[head[HEADER_BYTES + 1]]?.name;
  if (tag === Tag.Custom) return customName(head, HEADER_BYTES + 1) ?? "custom";
  return NAMES[tag];
}

/** The `str` at `at` (varint length, UTF-8), if all of it is in `head`. */
function customName(head: Uint8Array, at: number): string | undefined {
  let length = 0;
  let shift = 0;
  for (let i = 0; i < 4; i++, at++) {
    if (at >= head.length) return undefined;
    length += (head[at] & 0x7f) * 2 ** shift;
    shift += 7;
    if (head[at] < 0x80) {
      at++;
      if (at + length > head.length) return undefined;
      return new TextDecoder("utf-8", { fatal: false }).decode(head.subarray(at, at + length));
    }
  }
  return undefined;
}
