/**
 * Room in the store's memory, for a put or a restore that finds it full: what to free first
 * (`makeRoom`), and, when nothing can be freed, the error that says why (`noRoomError`).
 */
import { ObjectStoreFullError } from "./errors.ts";
import { pinnedForViewsBytes, releaseUnreachablePins } from "./pins.ts";
import { releaseDroppedRefs } from "./dropped_refs.ts";
import type { Session } from "./session.ts";

/**
 * Frees about `sizeBytes`, or with `slots` an index slot: first the pins of views the program
 * no longer reaches (a collection finds them, a millisecond or so, where spilling writes to
 * disk), then by spilling the least recently used unpinned objects (which frees bytes, not
 * slots), then by releasing the references of refs the program dropped (after a collection:
 * lib/dropped_refs.ts). False if none helped. Views handed out in the current turn of the event
 * loop are found only after it ends (see lib/pins.ts).
 */
export function makeRoom(s: Session, sizeBytes: number, slots = false): boolean {
  if (pinnedForViewsBytes() > 0 && releaseUnreachablePins(s) > 0) return true;
  if (!slots && s.store.spill(sizeBytes) > 0) return true;
  return releaseDroppedRefs(true) > 0;
}

/**
 * Why `sizeBytes` more cannot fit in the store's memory (objectStoreMemory), from one snapshot
 * of its figures: what is in it, what keeps it there, and what to do.
 */
export function noRoomError(s: Session, what: string, sizeBytes: number): ObjectStoreFullError {
  const stats = s.store.stats();
  const limit = `store '${s.store.name}' has objectStoreMemory = ${stats.capacityBytes} bytes`;
  if (sizeBytes > stats.capacityBytes) {
    return new ObjectStoreFullError(`${what}: ${limit}, less than the object. Init with a larger objectStoreMemory.`);
  }
  const viewsBytes = Math.min(pinnedForViewsBytes(), stats.pinnedBytes);
  const pinnedBy = viewsBytes === stats.pinnedBytes
    ? "by views this process handed out"
    : viewsBytes > 0
    ? `(${viewsBytes} by views this process handed out, the rest by other processes)`
    : "by other processes";
  const spills = s.options.spill !== false || !s.store.created;
  return new ObjectStoreFullError(
    `${what}: ${limit}; ${stats.usedBytes} are taken, ${stats.pinnedBytes} of them pinned ${pinnedBy}` +
      `${spills ? "" : ", and spilling is off (spill: false)"}. ` +
      "Drop views you no longer read (a view dropped in the current turn of the event loop is found only once it ends: " +
      "await between a loop of gets and the puts after it), free refs you no longer need, " +
      `${spills ? "" : "turn spilling on, "}or init with a larger objectStoreMemory.`,
  );
}
