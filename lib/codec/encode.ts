/**
 * Value → data region. One pass over the value writes the body into a reused buffer and collects
 * ref ids and out-of-band buffers; copying the payloads waits for `writeInto`, so a large typed
 * array is copied once, straight into the store.
 *
 * What is kept follows structuredClone: own enumerable string keys of plain objects, array
 * elements and holes, identity of shared objects. Like structuredClone it drops symbol keys,
 * extra (non-index) properties of arrays, extra properties of errors, the prototype of
 * null-prototype objects and the resizability of buffers; subclasses of built-ins come back as
 * the built-in (errors keep their `name`). Unlike it, strings travel as UTF-8, so a lone
 * surrogate becomes U+FFFD.
 *
 * @module
 */
import { arrowToIPC, isArrowRecordBatch, isArrowTable } from "./arrow.ts";
import { ErrorFlag, HEADER_BYTES, PAYLOAD_ALIGN, REF_ID_BYTES, SMALL_INT_TAG, Tag } from "./format.ts";
import { writeHeader } from "./header.ts";
import { IdSet } from "./ids.ts";
import { DATA_VIEW_KIND, VIEW_KIND_BY_NAME } from "./kinds.ts";
import { indexStep, keyStep, mapKeyStep, mapValueStep, setStep, toSerializationError, Unstorable, withStep } from "./paths.ts";
import { PayloadTable } from "./payloads.ts";
import { type Registration, registrationFor } from "./registry.ts";
import { encodeTiny, isInt32, NO_REF_IDS } from "./tiny.ts";
import type { EncodeHooks, Encoded, PagePlacement } from "./types.ts";
import { type ByteWriter, returnWriter, takeWriter } from "./writer.ts";
import { SerializationError } from "../errors.ts";

/**
 * Measures `value` and prepares it for the store. Throws SerializationError, naming the path to
 * the culprit, if any part of it cannot be stored.
 */
export function encode(value: unknown, hooks: EncodeHooks): Encoded {
  const tiny = encodeTiny(value);
  if (tiny !== undefined) return tiny;
  const writer = takeWriter();
  try {
    const encoder = new Encoder(writer, hooks);
    encoder.value(value);
    return new EncodedRegion(writer.finish(), encoder.payloads ?? NO_PAYLOADS, encoder.refIds);
  } catch (error) {
    throw toSerializationError(error);
  } finally {
    returnWriter(writer);
  }
}

/** The result of {@link encode} for anything beyond the tiny fast path. */
class EncodedRegion implements Encoded {
  readonly sizeBytes: number;
  readonly refIds: Uint8Array[];
  private readonly body: Uint8Array;
  private readonly payloads: PayloadTable;

  constructor(body: Uint8Array, payloads: PayloadTable, refIds: Uint8Array[]) {
    this.body = body;
    this.payloads = payloads;
    this.refIds = refIds;
    this.sizeBytes = payloads.layout(HEADER_BYTES + body.length);
  }

  writeInto(target: Uint8Array, pages?: PagePlacement): void {
    if (target.length < this.sizeBytes) {
      throw new SerializationError(`target holds ${target.length} bytes, the value needs ${this.sizeBytes}`);
    }
    const count = this.payloads.spans.length;
    if (count > 0 && target.byteOffset % PAYLOAD_ALIGN !== 0) {
      throw new SerializationError(`target must start at a ${PAYLOAD_ALIGN}-byte aligned offset, not ${target.byteOffset}`);
    }
    writeHeader(target, this.body.length, count);
    target.set(this.body, HEADER_BYTES);
    if (count === 0) return;
    const view = new DataView(target.buffer, target.byteOffset, this.sizeBytes);
    this.payloads.writeInto(target, view, HEADER_BYTES + this.body.length, pages);
  }
}

const NO_PAYLOADS = new PayloadTable();
const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;

// deno-lint-ignore no-explicit-any
type Handler = (encoder: Encoder, value: any) => void;

/** Built-in classes by constructor; subclasses are matched with instanceof and stored as the base class. */
// deno-lint-ignore ban-types
const BUILTINS: [Function, Handler][] = [
  [Map, (e, v: Map<unknown, unknown>) => e.map(v)],
  [Set, (e, v: Set<unknown>) => e.set(v)],
  [Date, (e, v: Date) => e.date(v)],
  [RegExp, (e, v: RegExp) => e.regexp(v)],
  [Error, (e, v: Error) => e.error(v)],
  [ArrayBuffer, (e, v: ArrayBuffer) => e.arrayBuffer(v)],
  [Number, (e, v: object) => e.boxed(Tag.BoxedNumber, v)],
  [String, (e, v: object) => e.boxed(Tag.BoxedString, v)],
  [Boolean, (e, v: object) => e.boxed(Tag.BoxedBoolean, v)],
  [BigInt, (e, v: object) => e.boxed(Tag.BoxedBigInt, v)],
];
if (typeof SharedArrayBuffer === "function") {
  BUILTINS.push([SharedArrayBuffer, (e, v: SharedArrayBuffer) => e.arrayBuffer(v)]);
}
const BUILTIN_BY_PROTOTYPE = new Map<object, Handler>(BUILTINS.map(([ctor, handler]) => [ctor.prototype, handler]));

/** Walks one value, writing its body and collecting its refs and payloads. */
class Encoder {
  /** Created on the first binary payload; most values have none. */
  payloads: PayloadTable | undefined;
  private readonly w: ByteWriter;
  private readonly hooks: EncodeHooks;
  /** Back-reference index of every object written so far, in first-seen order. */
  private seen: Map<object, number> | undefined;
  /** Objects whose custom serializer is running: a reference back to one cannot be decoded. */
  private inSerializer: Set<object> | undefined;
  private ids: IdSet | undefined;

  constructor(writer: ByteWriter, hooks: EncodeHooks) {
    this.w = writer;
    this.hooks = hooks;
  }

  get refIds(): Uint8Array[] {
    return this.ids === undefined ? NO_REF_IDS : this.ids.ids;
  }

  value(value: unknown): void {
    switch (typeof value) {
      case "number":
        return this.number(value);
      case "string":
        this.w.u8(Tag.String);
        return this.w.string(value);
      case "boolean":
        return this.w.u8(value ? Tag.True : Tag.False);
      case "undefined":
        return this.w.u8(Tag.Undefined);
      case "bigint":
        return this.bigint(value);
      case "object":
        return value === null ? this.w.u8(Tag.Null) : this.object(value);
      case "function":
        throw new Unstorable(`functions cannot be stored (${value.name || "anonymous function"})`);
      default:
        throw new Unstorable(`${typeof value}s cannot be stored`);
    }
  }

  private number(value: number): void {
    if (!isInt32(value)) {
      this.w.u8(Tag.Float64);
      this.w.f64(value);
    } else if (value >= 0 && value < 0x80) {
      this.w.u8(SMALL_INT_TAG + value);
    } else {
      this.w.u8(Tag.Int32);
      this.w.i32(value);
    }
  }

  private bigint(value: bigint): void {
    if (value >= MIN_I64 && value <= MAX_I64) {
      this.w.u8(Tag.BigInt64);
      return this.w.i64(value);
    }
    const negative = value < 0n;
    const magnitude = bigintBytes(negative ? -value : value);
    this.w.u8(Tag.BigInt);
    this.w.u8(negative ? 1 : 0);
    this.w.varint(magnitude.length);
    this.w.raw(magnitude);
  }

  private object(value: object): void {
    const seen = (this.seen ??= new Map());
    const index = seen.get(value);
    if (index !== undefined) return this.backRef(value, index);
    seen.set(value, seen.size);
    const id = this.hooks.refId(value);
    if (id !== undefined) return this.ref(id);
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) return this.plain(value as Record<string, unknown>);
    if (proto === Array.prototype) return this.array(value as unknown[]);
    const registration = registrationFor(proto);
    if (registration !== undefined) return this.custom(value, registration);
    const handler = BUILTIN_BY_PROTOTYPE.get(proto);
    if (handler !== undefined) return handler(this, value);
    this.other(value);
  }

  /** Subclasses of built-ins, Arrow values, and what cannot be stored. */
  private other(value: object): void {
    if (Array.isArray(value)) return this.array(value);
    if (ArrayBuffer.isView(value)) return this.view(value);
    if (isArrowTable(value)) return this.arrow(Tag.ArrowTable, value);
    if (isArrowRecordBatch(value)) return this.arrow(Tag.ArrowRecordBatch, value);
    for (const [ctor, handler] of BUILTINS) {
      if (value instanceof ctor) return handler(this, value);
    }
    throw new Unstorable(describeUnstorable(value));
  }

  private backRef(value: object, index: number): void {
    if (this.inSerializer?.has(value)) {
      throw new Unstorable("it refers back to an object that is being serialized by its custom serializer (a cycle a serializer cannot rebuild)");
    }
    this.w.tagged(Tag.BackRef, index);
  }

  private ref(id: Uint8Array): void {
    if (!(id instanceof Uint8Array) || id.length !== REF_ID_BYTES) {
      throw new Unstorable(`refId returned ${id instanceof Uint8Array ? id.length + " bytes" : typeof id}, not a ${REF_ID_BYTES}-byte id`);
    }
    this.w.u8(Tag.Ref);
    this.w.raw(id);
    (this.ids ??= new IdSet()).add(id);
  }

  private plain(value: Record<string, unknown>): void {
    const keys = Object.keys(value);
    this.w.tagged(Tag.Object, keys.length);
    let i = 0;
    try {
      for (; i < keys.length; i++) {
        this.w.string(keys[i]);
        this.value(value[keys[i]]);
      }
    } catch (error) {
      throw withStep(error, keyStep(keys[i]));
    }
  }

  private array(value: unknown[]): void {
    const n = value.length;
    this.w.tagged(Tag.Array, n);
    let i = 0;
    try {
      for (; i < n; i++) {
        const item = value[i];
        if (item === undefined && !(i in value)) return this.sparseTail(value, i);
        this.value(item);
      }
    } catch (error) {
      throw withStep(error, indexStep(i));
    }
  }

  /**
   * The rest of an array from its first hole on: walks the present indices only (Object.keys
   * lists them first, ascending), so `new Array(1e9)` costs nothing.
   */
  private sparseTail(value: unknown[], from: number): void {
    let next = from;
    try {
      for (const key of Object.keys(value)) {
        const index = Number(key);
        if (!(index >= next && index < value.length) || String(index) !== key) continue;
        if (index > next) this.w.tagged(Tag.Holes, index - next);
        next = index;
        this.value(value[index]);
        next = index + 1;
      }
    } catch (error) {
      throw withStep(error, indexStep(next));
    }
    if (next < value.length) this.w.tagged(Tag.Holes, value.length - next);
  }

  map(value: Map<unknown, unknown>): void {
    this.w.tagged(Tag.Map, value.size);
    let position = 0;
    for (const [key, item] of value) {
      if (position === value.size) break;
      this.child(key, mapKeyStep(position));
      this.child(item, mapValueStep(key, position));
      position++;
    }
    if (position !== value.size) throw new Unstorable("the Map changed while it was being stored");
  }

  set(value: Set<unknown>): void {
    this.w.tagged(Tag.Set, value.size);
    let position = 0;
    for (const item of value) {
      if (position === value.size) break;
      this.child(item, setStep(position++));
    }
    if (position !== value.size) throw new Unstorable("the Set changed while it was being stored");
  }

  /** Encodes a value outside the hot array/object loops, adding `step` to any failure. */
  private child(value: unknown, step: string): void {
    try {
      this.value(value);
    } catch (error) {
      throw withStep(error, step);
    }
  }

  date(value: Date): void {
    this.w.u8(Tag.Date);
    this.w.f64(value.getTime());
  }

  regexp(value: RegExp): void {
    this.w.u8(Tag.RegExp);
    this.w.string(value.source);
    this.w.string(value.flags);
  }

  /** Name, message, stack, cause and (for AggregateError) errors: what structuredClone keeps, plus custom names. */
  error(value: Error): void {
    const { name, message, stack } = value;
    const hasCause = Object.hasOwn(value, "cause");
    const errors = value instanceof AggregateError && Array.isArray(value.errors) ? value.errors : undefined;
    this.w.u8(Tag.Error);
    this.w.string(typeof name === "string" ? name : "Error");
    this.w.string(typeof message === "string" ? message : String(message ?? ""));
    const flags = (typeof stack === "string" ? ErrorFlag.Stack : 0) | (hasCause ? ErrorFlag.Cause : 0) |
      (errors !== undefined ? ErrorFlag.Errors : 0);
    this.w.u8(flags);
    if (typeof stack === "string") this.w.string(stack);
    if (hasCause) this.child(value.cause, ".cause");
    if (errors !== undefined) this.child(errors, ".errors");
  }

  boxed(tag: number, value: object): void {
    const primitive = value.valueOf();
    this.w.u8(tag);
    if (tag === Tag.BoxedBigInt) return this.bigint(primitive as bigint);
    if (tag === Tag.BoxedString) return this.w.string(primitive as string);
    if (tag === Tag.BoxedBoolean) return this.w.u8(primitive ? 1 : 0);
    this.w.f64(primitive as number);
  }

  arrayBuffer(value: ArrayBufferLike): void {
    if ((value as ArrayBuffer).detached) throw new Unstorable("a detached ArrayBuffer cannot be stored");
    this.w.tagged(Tag.ArrayBuffer, (this.payloads ??= new PayloadTable()).cover(value, 0, value.byteLength));
    this.w.varint(value.byteLength);
  }

  private view(value: ArrayBufferView): void {
    const kind = VIEW_KIND_BY_NAME.get((value as unknown as Record<symbol, string>)[Symbol.toStringTag]);
    if (kind === undefined) throw new Unstorable(describeUnstorable(value));
    if ((value.buffer as ArrayBuffer).detached) throw new Unstorable("a view of a detached ArrayBuffer cannot be stored");
    const { byteOffset, byteLength } = value;
    this.w.u8(Tag.View);
    this.w.u8(kind);
    this.w.varint((this.payloads ??= new PayloadTable()).cover(value.buffer, byteOffset, byteOffset + byteLength));
    this.w.varint(byteOffset);
    this.w.varint(kind === DATA_VIEW_KIND ? byteLength : (value as Uint8Array).length);
  }

  private arrow(tag: number, value: object): void {
    const ipc = arrowToIPC(value as Parameters<typeof arrowToIPC>[0]);
    this.w.tagged(tag, (this.payloads ??= new PayloadTable()).add(ipc));
  }

  private custom(value: object, registration: Registration): void {
    this.w.u8(Tag.Custom);
    this.w.string(registration.name);
    (this.inSerializer ??= new Set()).add(value);
    try {
      this.value(registration.serializer.serialize(value));
    } catch (error) {
      throw withStep(error, `<serialized ${registration.name}>`);
    } finally {
      this.inSerializer!.delete(value);
    }
  }
}

/** Magnitude bytes, least significant first. */
function bigintBytes(magnitude: bigint): Uint8Array {
  const hex = magnitude.toString(16);
  const bytes = new Uint8Array(Math.ceil(hex.length / 2));
  for (let i = 0, end = hex.length; i < bytes.length; i++, end -= 2) {
    bytes[i] = parseInt(hex.slice(Math.max(0, end - 2), end), 16);
  }
  return bytes;
}

/** Why an object is not storable, naming its class. */
function describeUnstorable(value: object): string {
  const ctor = (value as { constructor?: unknown }).constructor;
  const name = typeof ctor === "function" && ctor.name ? ctor.name : "an anonymous class";
  if (typeof ctor === "function" && /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(ctor))) {
    return `${name} objects cannot be stored`;
  }
  return `class ${name} has no serializer (register one with registerSerializer)`;
}
