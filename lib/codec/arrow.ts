/**
 * Apache Arrow tables and record batches, stored as an IPC stream in a payload of their own.
 * Read back with `tableFromIPC` over a view of the payload, Arrow hands out column buffers that
 * are views of the same memory: the 64-byte aligned payload keeps every IPC body buffer 8-byte
 * aligned, which Arrow needs to avoid a copy.
 *
 * Detection uses Arrow's own `Symbol.for` brands, so tables made by another copy of the library
 * (CommonJS next to ESM) are recognised too.
 *
 * @module
 */
import { Table, tableFromIPC, tableToIPC } from "apache-arrow";
import type { RecordBatch } from "apache-arrow";
import { checkIpcStream } from "./arrow-check.ts";

const TABLE_BRAND = Symbol.for("apache-arrow/Table");
const BATCH_BRAND = Symbol.for("apache-arrow/RecordBatch");

/** True for an Arrow `Table`. */
export function isArrowTable(value: object): value is Table {
  return (value as Record<symbol, unknown>)[TABLE_BRAND] === true;
}

/** True for an Arrow `RecordBatch`. */
export function isArrowRecordBatch(value: object): value is RecordBatch {
  return (value as Record<symbol, unknown>)[BATCH_BRAND] === true;
}

/** The IPC stream of a table or of a single batch. */
export function arrowToIPC(value: Table | RecordBatch): Uint8Array {
  return tableToIPC(isArrowTable(value) ? value : new Table(value), "stream");
}

/** A table whose column buffers are views over `ipc`; the stream's metadata is checked first. */
export function tableFromStream(ipc: Uint8Array): Table {
  checkIpcStream(ipc);
  return tableFromIPC(ipc);
}

/** The one batch of a stream written from a RecordBatch; `undefined` if it holds another count. */
export function batchFromStream(ipc: Uint8Array): RecordBatch | undefined {
  const { batches } = tableFromStream(ipc);
  return batches.length === 1 ? batches[0] : undefined;
}
