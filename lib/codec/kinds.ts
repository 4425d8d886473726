/**
 * Built-in classes the format names by number or by string: view kinds (typed arrays and
 * DataView) and the standard Error constructors. Both directions share these tables so the
 * numbering cannot drift between encoder and decoder.
 *
 * @module
 */

/** A constructor of a typed array or DataView over (buffer, byteOffset, length). */
export type ViewConstructor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayBufferView;

/** One view kind: its element size (1 for DataView, whose length is in bytes). */
export interface ViewKind {
  readonly name: string;
  readonly ctor: ViewConstructor | undefined;
  readonly elementBytes: number;
}

const globals = globalThis as unknown as Record<string, ViewConstructor | undefined>;

function kind(name: string, elementBytes: number): ViewKind {
  return { name, ctor: globals[name], elementBytes };
}

/**
 * View kinds by their number in the format. Append only: the index is stored. Float16Array is
 * listed even where the runtime lacks it, so such a runtime reports it instead of misreading.
 */
export const VIEW_KINDS: readonly ViewKind[] = [
  kind("Int8Array", 1),
  kind("Uint8Array", 1),
  kind("Uint8ClampedArray", 1),
  kind("Int16Array", 2),
  kind("Uint16Array", 2),
  kind("Int32Array", 4),
  kind("Uint32Array", 4),
  kind("Float32Array", 4),
  kind("Float64Array", 8),
  kind("BigInt64Array", 8),
  kind("BigUint64Array", 8),
  kind("Float16Array", 2),
  kind("DataView", 1),
];

/** Number of a view kind by the name `Symbol.toStringTag` reports, which subclasses share. */
export const VIEW_KIND_BY_NAME: ReadonlyMap<string, number> = new Map(VIEW_KINDS.map((k, i) => [k.name, i]));

/** The kind number of DataView, whose length field counts bytes rather than elements. */
export const DATA_VIEW_KIND = VIEW_KIND_BY_NAME.get("DataView")!;

/** Standard Error classes, looked up by `name` when decoding; a Map so no name reaches Object.prototype. */
export const ERROR_CONSTRUCTORS: ReadonlyMap<string, ErrorConstructor> = new Map([
  ["Error", Error],
  ["EvalError", EvalError],
  ["RangeError", RangeError],
  ["ReferenceError", ReferenceError],
  ["SyntaxError", SyntaxError],
  ["TypeError", TypeError],
  ["URIError", URIError],
  ["AggregateError", AggregateError as unknown as ErrorConstructor],
]);
