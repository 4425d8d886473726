/**
 * A bounds-checked cursor over untrusted bytes: every read checks what remains first, so corrupt
 * input ends in {@link corrupt} rather than a crash, a hang or a giant allocation.
 *
 * @module
 */
import { SerializationError } from "../errors.ts";

/** Strings shorter than this are decoded by hand when ASCII: cheaper than a TextDecoder call. */
const SHORT_STRING = 32;
const MAX_VARINT_BYTES = 8;

const utf8 = new TextDecoder();
/** Object keys up to this many bytes go through {@link keyCache}. */
const CACHED_KEY_BYTES = 24;
/**
 * Recently decoded object keys by a hash of their bytes. Reusing one string per key spares the
 * engine from creating and internalizing a fresh string for every property of every object,
 * which dominates the decoding of small records.
 */
const keyCache: ({ bytes: Uint8Array; key: string } | undefined)[] = new Array(4096).fill(undefined);
/** Numbers are read through this little scratch view, so a decode needs no DataView of its own. */
const scratch = new DataView(new ArrayBuffer(8));

/** The one error corrupt input produces. */
export function corruption(reason: string, cause?: unknown): SerializationError {
  return new SerializationError(`corrupt object data: ${reason}`, cause === undefined ? undefined : { cause });
}

/** Longest piece of decoded text quoted in an error message: corrupt data must not make a giant one. */
const EXCERPT_CHARS = 100;

/** `text` for an error message: as is when short, else its start and its length. */
export function excerpt(text: string): string {
  return text.length <= EXCERPT_CHARS ? text : `${text.slice(0, EXCERPT_CHARS)}… (${text.length} characters)`;
}

/** Throws {@link corruption}; typed `never` so it can end expressions. */
export function corrupt(reason: string, cause?: unknown): never {
  throw corruption(reason, cause);
}

/** Reads the body fields of the format between `pos` and `end`. */
export class ByteReader {
  readonly bytes: Uint8Array;
  pos: number;
  end: number;

  constructor(bytes: Uint8Array, pos: number, end: number) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }

  /** Bytes left before `end`. */
  remaining(): number {
    return this.end - this.pos;
  }

  /** Checks that `n` more bytes exist. */
  need(n: number): void {
    if (n > this.end - this.pos) corrupt(`needs ${n} bytes at offset ${this.pos}, ${this.end - this.pos} left`);
  }

  u8(): number {
    if (this.pos >= this.end) corrupt(`ends early at offset ${this.pos}`);
    return this.bytes[this.pos++];
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const b = this.u8();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value <= Number.MAX_SAFE_INTEGER ? value : corrupt(`varint too large at ${this.pos}`);
      scale *= 0x80;
    }
    return corrupt(`varint too long at offset ${this.pos}`);
  }

  /** A count of items that each take at least `minBytes`: bounded by what remains. */
  count(minBytes: number): number {
    const n = this.varint();
    if (n * minBytes > this.end - this.pos) corrupt(`count ${n} exceeds the remaining bytes at ${this.pos}`);
    return n;
  }

  i32(): number {
    this.need(4);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
  }

  f64(): number {
    this.toScratch();
    return scratch.getFloat64(0, true);
  }

  i64(): bigint {
    this.toScratch();
    return scratch.getBigInt64(0, true);
  }

  /** Moves the next 8 bytes into the scratch view. */
  private toScratch(): void {
    this.need(8);
    for (let i = 0; i < 8; i++) scratch.setUint8(i, this.bytes[this.pos + i]);
    this.pos += 8;
  }

  /** `n` bytes as a view (no copy). */
  span(n: number): Uint8Array {
    this.need(n);
    const start = this.pos;
    this.pos += n;
    return this.bytes.subarray(start, start + n);
  }

  /** Fills `target` with the next bytes, by hand: it is short (an id) and `set` has a fixed cost. */
  copyInto(target: Uint8Array): void {
    const n = target.length;
    this.need(n);
    for (let i = 0; i < n; i++) target[i] = this.bytes[this.pos + i];
    this.pos += n;
  }

  /** `str`: varint length, UTF-8 bytes (invalid sequences become U+FFFD, as TextDecoder does). */
  string(): string {
    return this.text(this.varint());
  }

  /** The next `n` bytes as UTF-8. */
  private text(n: number): string {
    if (n === 0) return "";
    this.need(n);
    const start = this.pos;
    this.pos += n;
    return (n < SHORT_STRING && this.ascii(start, n)) || this.utf8(start, n);
  }

  /** An object key: a `str`, served from the key cache when short. */
  key(): string {
    const n = this.varint();
    if (n === 0 || n > CACHED_KEY_BYTES) return this.text(n);
    this.need(n);
    const start = this.pos;
    this.pos += n;
    const bytes = this.bytes;
    let hash = n;
    for (let i = start; i < start + n; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
    const slot = (hash >>> 20) & 4095;
    const cached = keyCache[slot];
    if (cached !== undefined && sameBytes(cached.bytes, bytes, start, n)) return cached.key;
    const key = this.ascii(start, n) || this.utf8(start, n);
    keyCache[slot] = { bytes: bytes.slice(start, start + n), key };
    return key;
  }

  /** The ASCII string at `start`, or "" when a byte is not ASCII (the caller then falls back). */
  private ascii(start: number, n: number): string {
    const bytes = this.bytes;
    let s = "";
    for (let i = start; i < start + n; i++) {
      const c = bytes[i];
      if (c >= 0x80) return "";
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** TextDecoder refuses views of shared memory; such bytes are copied first. */
  private utf8(start: number, n: number): string {
    const view = this.bytes.subarray(start, start + n);
    const shared = typeof SharedArrayBuffer === "function" && view.buffer instanceof SharedArrayBuffer;
    return utf8.decode(shared ? view.slice() : view);
  }
}

function sameBytes(cached: Uint8Array, bytes: Uint8Array, start: number, n: number): boolean {
  if (cached.length !== n) return false;
  for (let i = 0; i < n; i++) if (cached[i] !== bytes[start + i]) return false;
  return true;
}
