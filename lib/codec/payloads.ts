/**
 * The out-of-band buffers of a data region: collected while encoding, laid out at 64-byte
 * aligned offsets after the body, and located again (with every bound checked) when decoding.
 * See format.ts for the layout.
 *
 * @module
 */
import { alignUp, PAYLOAD_ALIGN, TABLE_ALIGN, TABLE_ENTRY_BYTES } from "./format.ts";
import { corrupt } from "./reader.ts";
import type { PagePlacement } from "./types.ts";

/** Views keep their element alignment as long as payloads start at a multiple of this in the source. */
const BASE_ALIGN = 8;
const TWO_32 = 2 ** 32;
const PAGE_BYTES = 4096;
/**
 * Payloads this large are placed at their source's offset within a page (see PagePlacement):
 * copies that miss the caches pay most for a misplaced destination, and the padding stays
 * under 0.4 % of the payload.
 */
export const PAGE_MATCH_MIN_BYTES = 1024 * 1024;
/** The padding page matching may add before one payload. */
const PAGE_MATCH_SLACK = PAGE_BYTES - PAYLOAD_ALIGN;
/** Without placement information: the target's own page offsets, sources taken as page-aligned. */
const PAGE_ALIGNED_SOURCES = (_source: ArrayBufferLike, _byteOffset: number) => 0;

interface Span {
  readonly index: number;
  readonly source: ArrayBufferLike;
  start: number;
  end: number;
  base: number;
  offset: number;
}

/** Payloads of one value being encoded: one per distinct source buffer, plus one per Arrow stream. */
export class PayloadTable {
  readonly spans: Span[] = [];
  private readonly bySource = new Map<ArrayBufferLike, Span>();

  /** The index of `source`'s payload, widened to cover bytes [start, end) of it. */
  cover(source: ArrayBufferLike, start: number, end: number): number {
    const span = this.bySource.get(source);
    if (span === undefined) {
      this.bySource.set(source, this.push(source, start, end));
      return this.spans.length - 1;
    }
    span.start = Math.min(span.start, start);
    span.end = Math.max(span.end, end);
    return span.index;
  }

  /** A payload of its own for `bytes`, which nothing else shares. */
  add(bytes: Uint8Array): number {
    this.push(bytes.buffer, bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    return this.spans.length - 1;
  }

  private push(source: ArrayBufferLike, start: number, end: number): Span {
    const span = { index: this.spans.length, source, start, end, base: 0, offset: 0 };
    this.spans.push(span);
    return span;
  }

  /**
   * Sizes the table and payloads after a body ending at `bodyEnd`; returns the region size. Each
   * large payload gets room to move by up to a page, for {@link place}.
   */
  layout(bodyEnd: number): number {
    if (this.spans.length === 0) return bodyEnd;
    let cursor = this.tableEnd(bodyEnd);
    for (const span of this.spans) {
      span.base = span.start - (span.start % BASE_ALIGN);
      const length = span.end - span.base;
      cursor = alignUp(cursor, PAYLOAD_ALIGN) + (length >= PAGE_MATCH_MIN_BYTES ? PAGE_MATCH_SLACK : 0) + length;
    }
    return cursor;
  }

  private tableEnd(bodyEnd: number): number {
    return alignUp(bodyEnd, TABLE_ALIGN) + this.spans.length * TABLE_ENTRY_BYTES;
  }

  /**
   * Sets each payload's offset: large ones at their source's offset within a page, rounded down
   * to 64 bytes, so the copy's destination never runs ahead of its source within a page. Ends no
   * later than {@link layout} said: each moves by less than the room it was given.
   */
  private place(bodyEnd: number, pages: PagePlacement): void {
    let cursor = this.tableEnd(bodyEnd);
    for (const span of this.spans) {
      const length = span.end - span.base;
      let offset = alignUp(cursor, PAYLOAD_ALIGN);
      if (length >= PAGE_MATCH_MIN_BYTES) {
        const here = (pages.targetPageOffset + offset) % PAGE_BYTES;
        const gap = (pages.pageOffsetOf(span.source, span.base) - here + PAGE_BYTES) % PAGE_BYTES;
        offset += gap - (gap % PAYLOAD_ALIGN);
      }
      span.offset = offset;
      cursor = offset + length;
    }
  }

  /** Writes the table and the payloads (with zeroed gaps) after a body ending at `bodyEnd`. */
  writeInto(target: Uint8Array, view: DataView, bodyEnd: number, pages: PagePlacement | undefined): void {
    this.place(bodyEnd, pages ?? { targetPageOffset: target.byteOffset % PAGE_BYTES, pageOffsetOf: PAGE_ALIGNED_SOURCES });
    let cursor = alignUp(bodyEnd, TABLE_ALIGN);
    target.fill(0, bodyEnd, cursor);
    for (const span of this.spans) {
      writeU64(view, cursor, span.offset);
      writeU64(view, cursor + 8, span.end - span.base);
      writeU64(view, cursor + 16, span.base);
      cursor += TABLE_ENTRY_BYTES;
    }
    for (const span of this.spans) {
      target.fill(0, cursor, span.offset);
      target.set(new Uint8Array(span.source, span.base, span.end - span.base), span.offset);
      cursor = span.offset + span.end - span.base;
    }
  }
}

/** Writes a u64 as (lo u32, hi u32). */
export function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value % TWO_32, true);
  view.setUint32(at + 4, Math.floor(value / TWO_32), true);
}

/** Reads a u64 written by {@link writeU64}, rejecting values beyond 2^53. */
export function readU64(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true);
  if (hi >= 2 ** 21) corrupt(`64-bit field at ${at} is out of range`);
  return hi * TWO_32 + view.getUint32(at, true);
}

/**
 * The payload table of a region being decoded, checked against the region's bounds. Payloads
 * must follow each other without overlap, as the encoder lays them out, and a payload may be
 * copied out (a bare ArrayBuffer) or parsed (an Arrow stream) once: so the memory and time a
 * decode spends on payloads stay within the region's size, whatever the body asks for.
 */
export class PayloadLocator {
  /** offset, length, base for each payload, in table order. */
  private readonly entries: Float64Array;
  /** 1 for each payload already copied or parsed whole. */
  private readonly taken: Uint8Array;

  constructor(view: DataView, bodyEnd: number, count: number) {
    const tableStart = alignUp(bodyEnd, TABLE_ALIGN);
    const tableEnd = tableStart + count * TABLE_ENTRY_BYTES;
    if (count > 0 && tableEnd > view.byteLength) corrupt(`table of ${count} buffers exceeds the ${view.byteLength}-byte region`);
    this.entries = new Float64Array(count * 3);
    this.taken = new Uint8Array(count);
    let previousEnd = tableEnd;
    for (let i = 0; i < count; i++) previousEnd = this.readEntry(view, i, tableStart, previousEnd);
  }

  /** Reads entry `i`, which must start at or after `previousEnd`; returns where it ends. */
  private readEntry(view: DataView, i: number, tableStart: number, previousEnd: number): number {
    const at = tableStart + i * TABLE_ENTRY_BYTES;
    const offset = readU64(view, at);
    const length = readU64(view, at + 8);
    const base = readU64(view, at + 16);
    if (offset % PAYLOAD_ALIGN !== 0 || length > view.byteLength - offset) {
      corrupt(`buffer ${i} (offset ${offset}, length ${length}) lies outside the ${view.byteLength}-byte region`);
    }
    if (offset < previousEnd) corrupt(`buffer ${i} (offset ${offset}) overlaps the table or buffer ${i - 1}, which ends at ${previousEnd}`);
    if (base + length > Number.MAX_SAFE_INTEGER) corrupt(`buffer ${i} has an impossible base ${base}`);
    this.entries[i * 3] = offset;
    this.entries[i * 3 + 1] = length;
    this.entries[i * 3 + 2] = base;
    return offset + length;
  }

  /** Number of payloads. */
  get count(): number {
    return this.entries.length / 3;
  }

  /**
   * Where bytes [byteOffset, byteOffset + byteLength) of payload `index`'s source buffer sit,
   * as an offset into the region.
   */
  locate(index: number, byteOffset: number, byteLength: number): number {
    if (index >= this.count) corrupt(`buffer index ${index} of ${this.count}`);
    const offset = this.entries[index * 3];
    const length = this.entries[index * 3 + 1];
    const base = this.entries[index * 3 + 2];
    if (byteOffset < base || byteLength > base + length - byteOffset) {
      corrupt(`bytes ${byteOffset}+${byteLength} lie outside buffer ${index}`);
    }
    return offset + byteOffset - base;
  }

  /** The whole of payload `index`: its region offset and length. */
  whole(index: number): [number, number] {
    if (index >= this.count) corrupt(`buffer index ${index} of ${this.count}`);
    return [this.entries[index * 3], this.entries[index * 3 + 1]];
  }

  /**
   * Marks payload `index` as copied or parsed by `what`. The encoder writes a bare ArrayBuffer or
   * an Arrow table once (a repeat is a back-reference), so a second claim is corrupt data that
   * would multiply the payload's cost.
   */
  take(index: number, what: string): void {
    if (index >= this.count) corrupt(`buffer index ${index} of ${this.count}`);
    if (this.taken[index] === 1) corrupt(`${what} reads buffer ${index}, which an earlier part of the value already read whole`);
    this.taken[index] = 1;
  }
}
