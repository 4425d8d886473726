/**
 * What an object id says of where it comes from, with no directory lookup per put:
 *
 *   bytes 0..4   the node that makes it (its primary copy): the minting node, or for a task's
 *                result the node the task was placed on (0: not minted in a cluster)
 *   bytes 4..8   the node of its owner, the process that minted it
 *   bytes 8..12  the owner's pid
 *   bytes 12..20 random, then a 64-bit counter (lib/ids.ts)
 *
 * All big-endian. The owner is who can make a missing object (a pending or lost task result):
 * a borrower waits while the owner lives and gets `OwnerDiedError` once it is gone.
 */
import { fromHex, ID_BYTES } from "../ids.ts";

/** The node number an id was minted on (0: not minted in a cluster). */
export function nodeNumberOf(id: Uint8Array): number {
  return ((id[0] << 24) | (id[1] << 16) | (id[2] << 8) | id[3]) >>> 0;
}

/** The node number of the object whose id is `hex` (0 for a hex that is not an id). */
export function nodeNumberOfHex(hex: string): number {
  const id = fromHex(hex, ID_BYTES);
  return id === undefined ? 0 : nodeNumberOf(id);
}

/** Writes `nodeNumber` as the first 4 bytes of `idPrefix`. */
export function stampNodeNumber(idPrefix: Uint8Array, nodeNumber: number): void {
  new DataView(idPrefix.buffer, idPrefix.byteOffset, 4).setUint32(0, nodeNumber);
}

/** The process that minted an id: its node and pid. */
export interface Owner {
  nodeNumber: number;
  pid: number;
}

/** Writes the owner (this process) into bytes 4..12 of `idPrefix`. */
export function stampOwner(idPrefix: Uint8Array, owner: Owner): void {
  const view = new DataView(idPrefix.buffer, idPrefix.byteOffset, 12);
  view.setUint32(4, owner.nodeNumber);
  view.setUint32(8, owner.pid);
}

/** The process that minted `id`. */
export function ownerOf(id: Uint8Array): Owner {
  const view = new DataView(id.buffer, id.byteOffset, 12);
  return { nodeNumber: view.getUint32(4), pid: view.getUint32(8) };
}
