/**
 * Every object id minted on a node of a cluster starts with the node's number (4 bytes,
 * big-endian), so the node that made an object (its primary copy) is known from the id alone,
 * with no directory lookup per put. Ids minted outside a cluster start with 0.
 */

/** The node number an id was minted on (0: not minted in a cluster). */
export function nodeNumberOf(id: Uint8Array): number {
  return ((id[0] << 24) | (id[1] << 16) | (id[2] << 8) | id[3]) >>> 0;
}

/** Writes `nodeNumber` as the first 4 bytes of `idPrefix`. */
export function stampNodeNumber(idPrefix: Uint8Array, nodeNumber: number): void {
  new DataView(idPrefix.buffer, idPrefix.byteOffset, 4).setUint32(0, nodeNumber);
}
