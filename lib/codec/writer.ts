/**
 * A growable little-endian byte sink for the body. One instance is reused across `encode` calls
 * so small values cost no buffer allocation; see {@link takeWriter}.
 *
 * @module
 */

const INITIAL_BYTES = 4096;
/** A scratch writer that grew beyond this is not kept, so one huge value does not pin memory. */
const KEEP_BYTES = 1 << 20;
/** Strings shorter than this try a hand-written ASCII loop: cheaper than a TextEncoder call. */
const SHORT_STRING = 64;

/** Bodies up to this size are handed out from {@link slab}. */
const SLAB_BODY_BYTES = 2048;
const SLAB_BYTES = 64 * 1024;

const utf8 = new TextEncoder();
let slab = new Uint8Array(0);
let slabUsed = 0;

/** A copy of `body` in the current slab; a full slab is left to the values that use it. */
function fromSlab(body: Uint8Array): Uint8Array {
  if (slabUsed + body.length > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const copy = slab.subarray(slabUsed, slabUsed + body.length);
  copy.set(body);
  slabUsed += body.length;
  return copy;
}

/** Appends tags, varints, numbers and strings to a buffer that doubles when full. */
export class ByteWriter {
  bytes: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.pos + n > this.bytes.length) this.grow(this.pos + n);
  }

  private grow(needed: number): void {
    let capacity = this.bytes.length * 2;
    while (capacity < needed) capacity *= 2;
    const bytes = new Uint8Array(capacity);
    bytes.set(this.bytes.subarray(0, this.pos));
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer);
  }

  u8(value: number): void {
    this.reserve(1);
    this.bytes[this.pos++] = value;
  }

  /** Unsigned LEB128 of a safe integer; arithmetic rather than bit ops so values above 2^32 work. */
  varint(value: number): void {
    this.reserve(8);
    const bytes = this.bytes;
    let pos = this.pos;
    while (value >= 0x80) {
      bytes[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    bytes[pos++] = value;
    this.pos = pos;
  }

  /** A tag byte followed by a varint: the shape of most container headers. */
  tagged(tag: number, value: number): void {
    this.u8(tag);
    this.varint(value);
  }

  i32(value: number): void {
    this.reserve(4);
    this.view.setInt32(this.pos, value, true);
    this.pos += 4;
  }

  f64(value: number): void {
    this.reserve(8);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  i64(value: bigint): void {
    this.reserve(8);
    this.view.setBigInt64(this.pos, value, true);
    this.pos += 8;
  }

  /** Copies bytes; short ones (ref ids) by hand, which beats the fixed cost of `set`. */
  raw(source: Uint8Array): void {
    const n = source.length;
    this.reserve(n);
    if (n > 64) this.bytes.set(source, this.pos);
    else for (let i = 0; i < n; i++) this.bytes[this.pos + i] = source[i];
    this.pos += n;
  }

  /** `str`: varint UTF-8 length, then the bytes. */
  string(value: string): void {
    if (value.length >= SHORT_STRING || !this.ascii(value)) this.utf8(value);
  }

  /** Writes `value` if it is all ASCII (length fits one varint byte); else writes nothing. */
  private ascii(value: string): boolean {
    const n = value.length;
    this.reserve(n + 1);
    const bytes = this.bytes;
    const start = this.pos + 1;
    for (let i = 0; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) return false;
      bytes[start + i] = c;
    }
    bytes[this.pos] = n;
    this.pos = start + n;
    return true;
  }

  /**
   * The byte length is known only after encoding, so the length field is reserved for the worst
   * case (3 bytes per UTF-16 unit) and filled in with a padded varint of that width.
   */
  private utf8(value: string): void {
    const width = varintWidth(value.length * 3);
    this.reserve(width + value.length * 3);
    const start = this.pos + width;
    const { written } = utf8.encodeInto(value, this.bytes.subarray(start));
    let n = written;
    for (let i = 0; i < width - 1; i++) {
      this.bytes[this.pos + i] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.bytes[this.pos + width - 1] = n;
    this.pos = start + written;
  }

  /**
   * Hands the written bytes out: small bodies as slices of a shared slab (one buffer allocation
   * per many values; Deno pays ~0.2 µs per new buffer), mid-sized ones as a copy, and big ones by
   * giving up the buffer itself.
   */
  finish(): Uint8Array {
    if (this.pos <= SLAB_BODY_BYTES) return fromSlab(this.bytes.subarray(0, this.pos));
    if (this.pos <= KEEP_BYTES) return this.bytes.slice(0, this.pos);
    const body = this.bytes.subarray(0, this.pos);
    this.bytes = new Uint8Array(INITIAL_BYTES);
    this.view = new DataView(this.bytes.buffer);
    return body;
  }

  /** Resets for reuse, dropping a buffer that grew too large to keep around. */
  reset(): void {
    this.pos = 0;
    if (this.bytes.length > KEEP_BYTES) {
      this.bytes = new Uint8Array(INITIAL_BYTES);
      this.view = new DataView(this.bytes.buffer);
    }
  }
}

/** Bytes a minimal varint of `value` takes. */
export function varintWidth(value: number): number {
  let width = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    width++;
  }
  return width;
}

let spare: ByteWriter | undefined = new ByteWriter(INITIAL_BYTES);

/**
 * Borrows the shared writer, or a fresh one when it is already in use (a custom serializer may
 * call `encode` re-entrantly). Pair with {@link returnWriter}.
 */
export function takeWriter(): ByteWriter {
  const writer = spare ?? new ByteWriter(INITIAL_BYTES);
  spare = undefined;
  writer.reset();
  return writer;
}

/** Gives a writer back for the next `encode`. */
export function returnWriter(writer: ByteWriter): void {
  spare = writer;
}
