/**
 * Deduplicates ObjectRef ids by content: an open-addressing hash set over the id bytes, so a
 * value holding thousands of refs costs neither a string nor a Map entry per ref.
 *
 * @module
 */

const INITIAL_SLOTS = 64;

/** A set of ids (byte arrays) compared by content, keeping first-seen order. */
export class IdSet {
  readonly ids: Uint8Array[] = [];
  /** Hash of each id in `ids`, kept so growing never rehashes bytes. */
  private hashes: number[] = [];
  /** 1 + index into `ids`, or 0 for an empty slot; at most half full. */
  private slots = new Int32Array(INITIAL_SLOTS);

  /** Adds `id` unless an equal id is already present. */
  add(id: Uint8Array): void {
    const h = hash(id);
    const mask = this.slots.length - 1;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot];
      if (entry === 0) {
        this.ids.push(id);
        this.hashes.push(h);
        this.slots[slot] = this.ids.length;
        if (this.ids.length * 2 > this.slots.length) this.grow();
        return;
      }
      if (this.hashes[entry - 1] === h && sameBytes(this.ids[entry - 1], id)) return;
    }
  }

  private grow(): void {
    const slots = new Int32Array(this.slots.length * 4);
    const mask = slots.length - 1;
    for (let i = 0; i < this.ids.length; i++) {
      let slot = this.hashes[i] & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
    }
    this.slots = slots;
  }
}

/** Mixes the id four bytes at a time (ids are 28 bytes; a ragged tail is folded in byte-wise). */
function hash(bytes: Uint8Array): number {
  let h = bytes.length;
  let i = 0;
  for (; i + 4 <= bytes.length; i += 4) {
    const word = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    h = Math.imul(h ^ word, 0x9e3779b1);
    h ^= h >>> 15;
  }
  for (; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
