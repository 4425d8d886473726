/**
 * Object ids: their size, how a process mints them, and their hex form (as `ObjectRef.id`, in
 * messages between driver and workers, and in `objstore memory`). Imports nothing: every layer
 * may use it.
 */

/** Bytes of an object id, as Ray's ObjectID. */
export const ID_BYTES = 28;

/** Ids minted per slab: V8 takes ~0.5 µs per new small typed array, and ids come by the thousand. */
const ID_SLAB_IDS = 1024;

/**
 * Mints fresh ids: a random per-process prefix (ID_BYTES - 8 bytes) and a 64-bit counter, so no
 * two processes collide. Ids are cut from a slab: V8 takes ~0.5 µs per new small typed array.
 */
export class IdMinter {
  readonly #prefix: Uint8Array;
  #counter = 0;
  #slab = new Uint8Array(0);
  #slabUsed = 0;

  /** `prefix`: ID_BYTES - 8 random bytes, this process's own. */
  constructor(prefix: Uint8Array) {
    if (prefix.length !== ID_BYTES - 8) throw new RangeError(`IdMinter: the prefix must be ${ID_BYTES - 8} bytes, got ${prefix.length}`);
    this.#prefix = prefix;
  }

  /** A fresh id, never returned before by this minter. */
  next(): Uint8Array {
    if (this.#slabUsed === this.#slab.length) {
      this.#slab = new Uint8Array(ID_BYTES * ID_SLAB_IDS);
      this.#slabUsed = 0;
    }
    const id = this.#slab.subarray(this.#slabUsed, this.#slabUsed + ID_BYTES);
    this.#slabUsed += ID_BYTES;
    id.set(this.#prefix);
    const n = ++this.#counter;
    writeU32(id, ID_BYTES - 8, n % 2 ** 32);
    writeU32(id, ID_BYTES - 4, Math.floor(n / 2 ** 32));
    return id;
  }
}

function writeU32(target: Uint8Array, at: number, value: number): void {
  target[at] = value & 0xff;
  target[at + 1] = (value >>> 8) & 0xff;
  target[at + 2] = (value >>> 16) & 0xff;
  target[at + 3] = value >>> 24;
}

/** True if `a` and `b` hold the same bytes. */
export function sameId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return a.length === b.length;
}

const hexDigits = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** `bytes` as lower-case hex, two digits a byte. */
export function toHex(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += hexDigits[bytes[i]];
  return text;
}

/** The bytes of `hex`, or undefined if it is not `sizeBytes` bytes of hex digits. Results are
 * cut from a shared slab: a new small typed array costs V8 ~0.5 µs, and ids come by the thousand. */
export function fromHex(hex: string, sizeBytes: number): Uint8Array | undefined {
  if (hex.length !== sizeBytes * 2) return undefined;
  if (hexSlabUsed + sizeBytes > hexSlab.length) {
    hexSlab = new Uint8Array(Math.max(HEX_SLAB_BYTES, sizeBytes));
    hexSlabUsed = 0;
  }
  const bytes = hexSlab.subarray(hexSlabUsed, hexSlabUsed + sizeBytes);
  for (let i = 0; i < sizeBytes; i++) {
    const high = hexValue(hex.charCodeAt(2 * i));
    const low = hexValue(hex.charCodeAt(2 * i + 1));
    if ((high | low) < 0) return undefined;
    bytes[i] = high * 16 + low;
  }
  hexSlabUsed += sizeBytes;
  return bytes;
}

const HEX_SLAB_BYTES = 4096;
let hexSlab = new Uint8Array(HEX_SLAB_BYTES);
let hexSlabUsed = 0;

/** 0–15 for a hex digit's char code, -1 for anything else. */
function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  const lower = code | 32;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1; // a-f, A-F
}
