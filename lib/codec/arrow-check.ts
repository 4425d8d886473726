/**
 * Checks the metadata of an Arrow IPC stream before apache-arrow reads it. Arrow trusts the
 * FlatBuffers lengths it finds: a corrupt vector length makes it loop over (and allocate for)
 * millions of phantom entries until the process runs out of memory, which no try/catch can stop.
 * This walk bounds every table, string and vector that Arrow's reader follows, and the total
 * number of tables, so the worst Arrow can then meet is a clean throw.
 *
 * Only metadata is read (a few hundred bytes per message): the cost does not grow with the data.
 *
 * @module
 */
import { corrupt } from "./reader.ts";

/** How a table field is laid out, for the fields that hold references. */
type FieldKind =
  | { readonly ref: "table"; readonly table: TableShape }
  | { readonly ref: "tables"; readonly table: TableShape }
  | { readonly ref: "vector"; readonly elementBytes: number }
  | { readonly ref: "union"; readonly typeField: number; readonly tables: Readonly<Record<number, TableShape>> };

/** Reference fields of a FlatBuffers table, by field index; scalar fields need no check. */
type TableShape = Readonly<Record<number, FieldKind>>;

const string: FieldKind = { ref: "vector", elementBytes: 1 };
const KEY_VALUE: TableShape = { 0: string, 1: string };
const metadata: FieldKind = { ref: "tables", table: KEY_VALUE };
const NO_REFS: TableShape = {};

/** Field.type, by Arrow's Type enum; only Timestamp (timezone) and Union (typeIds) hold references. */
const TYPE_TABLES: Record<number, TableShape> = { 10: { 1: string }, 14: { 1: { ref: "vector", elementBytes: 4 } } };
for (let type = 1; type <= 26; type++) TYPE_TABLES[type] ??= NO_REFS;

const DICTIONARY_ENCODING: TableShape = { 1: { ref: "table", table: NO_REFS } };
const FIELD: Record<number, FieldKind> = { 0: string, 3: { ref: "union", typeField: 2, tables: TYPE_TABLES }, 4: { ref: "table", table: DICTIONARY_ENCODING }, 6: metadata };
FIELD[5] = { ref: "tables", table: FIELD };

const SCHEMA: TableShape = { 1: { ref: "tables", table: FIELD }, 2: metadata, 3: { ref: "vector", elementBytes: 8 } };
const RECORD_BATCH: TableShape = {
  1: { ref: "vector", elementBytes: 16 },
  2: { ref: "vector", elementBytes: 16 },
  3: { ref: "table", table: NO_REFS },
  4: { ref: "vector", elementBytes: 8 },
};
const DICTIONARY_BATCH: TableShape = { 1: { ref: "table", table: RECORD_BATCH } };
/** MessageHeader union: Schema, DictionaryBatch, RecordBatch (tensors are not part of a table stream). */
const HEADERS: Record<number, TableShape> = { 1: SCHEMA, 2: DICTIONARY_BATCH, 3: RECORD_BATCH };
const MESSAGE: TableShape = { 2: { ref: "union", typeField: 1, tables: HEADERS }, 4: metadata };
const HEADER_TYPE_FIELD = 1;
const HEADER_FIELD = 2;
const BODY_LENGTH_FIELD = 3;
const SCHEMA_TYPE = 1;
const DICTIONARY_BATCH_TYPE = 2;
const RECORD_BATCH_TYPE = 3;
const DICTIONARY_DATA_FIELD = 1;
const SCHEMA_FIELDS_FIELD = 1;
const FIELD_TYPE_TYPE_FIELD = 2;
const FIELD_DICTIONARY_FIELD = 4;
const FIELD_CHILDREN_FIELD = 5;
const BATCH_LENGTH_FIELD = 0;
const NODES_FIELD = 1;
/** FieldNode: int64 length, int64 null count. */
const FIELD_NODE_BYTES = 16;
const NULL_TYPE = 1;

/** A field of the schema, in the pre-order that a record batch's field nodes follow. */
interface FlatField {
  readonly topLevel: boolean;
  /** The Null type: its rows take no bytes, so any row count is cheap. */
  readonly isNull: boolean;
}

const CONTINUATION = 0xffffffff;

/**
 * Throws SerializationError unless every message of `ipc` has well-formed, bounded metadata, and
 * every record batch's row counts agree with its schema and fit its body.
 */
export function checkIpcStream(ipc: Uint8Array): void {
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  let pos = 0;
  let fields: FlatField[] | undefined;
  for (;;) {
    if (pos + 8 > ipc.length) corrupt("Arrow stream ends without an end marker");
    if (view.getUint32(pos, true) !== CONTINUATION) corrupt(`Arrow message at ${pos} lacks its marker`);
    const metaLength = view.getInt32(pos + 4, true);
    if (metaLength === 0) return;
    if (metaLength < 0 || metaLength > ipc.length - pos - 8) corrupt(`Arrow metadata length ${metaLength} at ${pos}`);
    const meta = new DataView(ipc.buffer, ipc.byteOffset + pos + 8, metaLength);
    const walk = new MetadataWalk(meta);
    const bodyLength = walk.message();
    fields = walk.schemaFields() ?? fields;
    walk.recordBatchRows(fields, bodyLength);
    pos += 8 + metaLength;
    if (bodyLength > ipc.length - pos) corrupt(`Arrow body of ${bodyLength} bytes overruns the stream`);
    pos += bodyLength;
  }
}

/** One message's FlatBuffer, walked with every offset checked against its length. */
class MetadataWalk {
  private readonly view: DataView;
  /** Real tables are distinct and at least 4 bytes each: more visits means shared or looping offsets. */
  private budget: number;

  constructor(view: DataView) {
    this.view = view;
    this.budget = view.byteLength / 4;
  }

  /** Checks the whole message and returns its body length. */
  message(): number {
    const root = this.target(0);
    this.table(root, MESSAGE);
    const bodyLength = this.int64(this.fieldPosition(root, BODY_LENGTH_FIELD, 8));
    const headerType = this.fieldPosition(root, HEADER_TYPE_FIELD, 1);
    if (headerType !== 0 && this.view.getUint8(headerType) === DICTIONARY_BATCH_TYPE) this.dictionary(root, bodyLength);
    return bodyLength;
  }

  /** The schema's fields flattened in pre-order, if this message is a schema. */
  schemaFields(): FlatField[] | undefined {
    const schema = this.header(SCHEMA_TYPE);
    if (schema === 0) return undefined;
    const fields: FlatField[] = [];
    this.flatten(schema, SCHEMA_FIELDS_FIELD, true, fields);
    return fields;
  }

  /**
   * Appends the fields of the vector at field `vectorField` of `table`, each followed by its
   * children. A dictionary-encoded field has one node (its indices): its children describe the
   * dictionary's values, which come in dictionary batches.
   */
  private flatten(table: number, vectorField: number, topLevel: boolean, out: FlatField[]): void {
    const position = this.fieldPosition(table, vectorField, 4);
    if (position === 0) return;
    const vector = this.target(position);
    const count = this.i32(vector);
    for (let i = 0; i < count; i++) {
      const field = this.target(vector + 4 + 4 * i);
      const typeAt = this.fieldPosition(field, FIELD_TYPE_TYPE_FIELD, 1);
      const dictionary = this.fieldPosition(field, FIELD_DICTIONARY_FIELD, 4) !== 0;
      out.push({ topLevel, isNull: !dictionary && typeAt !== 0 && this.view.getUint8(typeAt) === NULL_TYPE });
      if (!dictionary) this.flatten(field, FIELD_CHILDREN_FIELD, false, out);
    }
  }

  /**
   * A record batch (if this message is one) has a field node per schema field; its columns have
   * the batch's row count; and no column but a Null one claims more rows than its body has bits.
   * Arrow backfills a validity bitmap of `length / 8` bytes for every column whose row count
   * differs from the batch's: a 1 KiB stream claiming 2^33 rows made it allocate gigabytes.
   */
  recordBatchRows(fields: FlatField[] | undefined, bodyLength: number): void {
    const batch = this.header(RECORD_BATCH_TYPE);
    if (batch === 0) return;
    if (fields === undefined) corrupt("Arrow record batch before its schema");
    const rows = this.int64(this.fieldPosition(batch, BATCH_LENGTH_FIELD, 8));
    const nodesAt = this.fieldPosition(batch, NODES_FIELD, 4);
    const nodes = nodesAt === 0 ? 0 : this.target(nodesAt);
    const count = nodes === 0 ? 0 : this.i32(nodes);
    if (count !== fields.length) corrupt(`Arrow record batch has ${count} field nodes for ${fields.length} fields`);
    const maxRows = bodyLength * 8 + 64;
    for (let i = 0; i < count; i++) {
      const length = this.int64(nodes + 4 + FIELD_NODE_BYTES * i);
      const nullCount = this.int64(nodes + 4 + FIELD_NODE_BYTES * i + 8);
      if (fields[i].topLevel && length !== rows) corrupt(`Arrow column node ${i} has ${length} rows in a batch of ${rows}`);
      if (nullCount > length) corrupt(`Arrow field node ${i} has ${nullCount} nulls in ${length} rows`);
      if (!fields[i].isNull && length > maxRows) corrupt(`Arrow field node ${i} claims ${length} rows in a ${bodyLength}-byte body`);
    }
  }

  /** The header table of this message if it is of union type `type`, else 0. */
  private header(type: number): number {
    const typeAt = this.fieldPosition(this.root(), HEADER_TYPE_FIELD, 1);
    if (typeAt === 0 || this.view.getUint8(typeAt) !== type) return 0;
    return this.child(this.root(), HEADER_FIELD);
  }

  private root(): number {
    return this.target(0);
  }

  /**
   * Arrow memoizes a dictionary into `new Array(length)`, which JavaScriptCore allocates eagerly:
   * bound the length by what the body could hold at one bit per entry.
   */
  private dictionary(root: number, bodyLength: number): void {
    const batch = this.child(this.child(root, HEADER_FIELD), DICTIONARY_DATA_FIELD);
    const nodes = batch === 0 ? 0 : this.fieldPosition(batch, NODES_FIELD, 4);
    if (nodes === 0) return;
    const vector = this.target(nodes);
    if (this.i32(vector) === 0) return;
    const length = this.int64(vector + 4);
    if (length > bodyLength * 8 + 64) corrupt(`Arrow dictionary of ${length} entries in a ${bodyLength}-byte body`);
  }

  /** The table a reference field points to, or 0 when the field (or `at` itself) is absent. */
  private child(at: number, index: number): number {
    const position = at === 0 ? 0 : this.fieldPosition(at, index, 4);
    return position === 0 ? 0 : this.target(position);
  }

  /** A non-negative int64 below 2^53 at `at` (0 when `at` is 0, an absent field). */
  private int64(at: number): number {
    if (at === 0) return 0;
    this.bounds(at, 8);
    const hi = this.view.getInt32(at + 4, true);
    if (hi < 0 || hi >= 2 ** 21) corrupt(`Arrow 64-bit field out of range`);
    return hi * 2 ** 32 + this.view.getUint32(at, true);
  }

  /** Where the offset stored at `at` points (signed, as flatbuffers reads it). */
  private target(at: number): number {
    return at + this.i32(at);
  }

  private table(at: number, shape: TableShape): void {
    if (--this.budget < 0) corrupt("Arrow metadata has more tables than bytes allow");
    for (const key in shape) {
      const position = this.fieldPosition(at, Number(key), 4);
      if (position !== 0) this.field(at, position, shape[key]);
    }
  }

  private field(tableAt: number, position: number, kind: FieldKind): void {
    const at = this.target(position);
    if (kind.ref === "table") return this.table(at, kind.table);
    if (kind.ref === "union") return this.union(tableAt, at, kind);
    const count = this.i32(at);
    const elementBytes = kind.ref === "tables" ? 4 : kind.elementBytes;
    if (count < 0 || count > (this.view.byteLength - at - 4) / elementBytes) corrupt(`Arrow vector of ${count} at ${at} overruns its message`);
    if (kind.ref === "tables") {
      for (let i = 0; i < count; i++) this.table(this.target(at + 4 + 4 * i), kind.table);
    }
  }

  private union(tableAt: number, at: number, kind: FieldKind & { ref: "union" }): void {
    const typeAt = this.fieldPosition(tableAt, kind.typeField, 1);
    const type = typeAt === 0 ? 0 : this.view.getUint8(typeAt);
    const shape = kind.tables[type] ?? corrupt(`Arrow union member type ${type}`);
    this.table(at, shape);
  }

  /**
   * Position of field `index` of the table at `at`, or 0 when absent; its `size` bytes lie within
   * the table. Mirrors flatbuffers' own reads (signed 16-bit vtable entries, `slot < vtable size`)
   * so this walk sees exactly the fields Arrow will.
   */
  private fieldPosition(at: number, index: number, size: number): number {
    const vtable = at - this.i32(at);
    const slot = 4 + 2 * index;
    if (slot >= this.i16(vtable)) return 0;
    const offset = this.i16(vtable + slot);
    if (offset === 0) return 0;
    if (offset < 0 || offset + size > this.i16(vtable + 2) || at + offset + size > this.view.byteLength) {
      corrupt(`Arrow field ${index} of the table at ${at} out of bounds`);
    }
    return at + offset;
  }

  private i16(at: number): number {
    this.bounds(at, 2);
    return this.view.getInt16(at, true);
  }

  private i32(at: number): number {
    this.bounds(at, 4);
    return this.view.getInt32(at, true);
  }

  private bounds(at: number, size: number): void {
    if (!(at >= 0 && at + size <= this.view.byteLength)) corrupt(`Arrow metadata offset ${at} out of bounds`);
  }
}
