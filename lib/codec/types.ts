/**
 * The contract between the codec and the store that calls it.
 *
 * @module
 */

/** What the encoder asks the store about the value it walks. */
export interface EncodeHooks {
  /**
   * The 28-byte id when `value` is an ObjectRef, else `undefined`. Called once for every distinct
   * object in the value, before any other check, so refs never reach the generic class handling.
   */
  refId(value: unknown): Uint8Array | undefined;
}

/** What the decoder asks the store to build. */
export interface DecodeHooks {
  /** An ObjectRef for a 28-byte id. `id` is a fresh copy the ref may keep. */
  makeRef(id: Uint8Array): unknown;
}

/** A value measured and ready to be written into the store. */
export interface Encoded {
  /** Total size of the data region, header to the end of the last payload. */
  readonly sizeBytes: number;
  /**
   * Ids of the ObjectRefs anywhere inside the value, each once (compared by content), in the
   * arrays `refId` returned. Do not modify: results without refs share one frozen empty array.
   */
  readonly refIds: Uint8Array[];
  /**
   * Writes the region: exactly `sizeBytes` bytes at the start of `target`, whose `byteOffset`
   * must be 64-byte aligned (the arena guarantees it) so payloads land aligned. Payload bytes are
   * read from the original buffers now, not when `encode` ran. `pages` says where the bytes lie
   * in memory; without it, large payloads are placed at page offset 0 of `target.buffer`.
   */
  writeInto(target: Uint8Array, pages?: PagePlacement): void;
}

/**
 * Where the target and the sources of a write lie within their memory pages. Large payloads are
 * placed at their source's offset within a page (rounded down to 64 bytes): glibc's memcpy runs
 * about 3× slower when the destination is a little ahead of the source within a page (4K
 * aliasing; measured in bench/README.md, "Large puts").
 */
export interface PagePlacement {
  /** The address of `target[0]` mod 4096. */
  readonly targetPageOffset: number;
  /** The address of byte `byteOffset` of `source` mod 4096. */
  pageOffsetOf(source: ArrayBufferLike, byteOffset: number): number;
}
