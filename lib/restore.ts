/**
 * What `get` does when the object is not in memory: the one place that decides where a spilled
 * object's bytes come back from and what to do when there is no room for them.
 *
 *   1. Its local spill file: `objstore_restore` (zig/src/Spiller.zig) reads the record back and
 *      checks its CRC32C.
 *   2. No local file (`spillMissing`): each remote source in turn (`remoteSources`). In a
 *      cluster, first the other nodes (`ClusterClient.restore`): a secondary copy, pulled here
 *      from another node, is evicted under memory pressure without being written (its bytes
 *      are on that node), and a pull fills its slot again. Then S3 (lib/spill/s3_spill.ts: a
 *      ranged read of the file's copy, checked by the core as a file is).
 *   0. An object not in this store, made on another node of the cluster (its ref is a borrow:
 *      `Session.addRef`), is pulled from a node that holds it (`fetchFromCluster`,
 *      lib/cluster/cluster.ts) into this store, then read as any.
 *   3. No room (`storeFull`): make room (lib/room.ts: release the pins of views the program
 *      dropped, else spill the least recently used) and try again; with nothing to free, `get`
 *      waits for pins to go (the event loop turns meanwhile) until its room deadline, then
 *      raises `ObjectStoreFullError`.
 *
 * Each step is one FFI call; the statuses between them are the core's (lib/store/status.ts).
 */
import { ObjectLostError } from "./errors.ts";
import { NoRoomForPullError } from "./cluster/transfer.ts";
import type { ObjectRef } from "./object_ref.ts";
import { makeRoom, noRoomError } from "./room.ts";
import type { Session } from "./session.ts";
import { errorFor, Presence, Status } from "./store/status.ts";

/** How long a restore may wait for pins to go before the store is called full (Ray: 2 s). */
export const RESTORE_ROOM_WAIT_MS = 2000;

/**
 * A place a spilled object's record can be fetched from once its local spill file is gone. It
 * hands the record to the core (`NativeStore.restoreRegion`, which checks it as it checks a
 * file) and returns the core's status; `Status.spillMissing` if it has no copy.
 */
export interface RemoteSource {
  restore(id: Uint8Array, what: string): Promise<number>;
}

/**
 * The remote sources of this process, in the order they are tried: the cluster's other nodes
 * first (a secondary copy evicted here is on the node it came from, in memory), then S3.
 */
function remoteSources(s: Session): readonly RemoteSource[] {
  if (s.cluster === undefined) return s.s3Spill === undefined ? noSources : [s.s3Spill];
  return s.s3Spill === undefined ? [s.cluster] : [s.cluster, s.s3Spill];
}

const noSources: readonly RemoteSource[] = Object.freeze([]);

/** What `get` does next: try `get` again at once, or wait a little first. */
export type NextStep = "get again" | "wait";

/**
 * After `objstore_get` answered `status` (not ok) for `ref`: brings the object into memory if
 * it is spilled (see the module's steps), or says to wait for one being written; throws
 * `ObjectLostError` for an object that is gone, `ObjectStoreFullError` when no room came by
 * `roomDeadlineMs` (a `Date.now()` time), and the core's error for a restore that failed.
 */
export async function bringIntoMemory(s: Session, ref: ObjectRef, status: number, roomDeadlineMs: number, getDeadlineMs: number): Promise<NextStep> {
  if (status === Status.notSealed || (status === Status.absent && s.cluster?.mayHoldElsewhere(ref.bytes))) {
    return await fetchFromCluster(s, ref, roomDeadlineMs, getDeadlineMs);
  }
  if (status !== Status.spilled) {
    throw new ObjectLostError(`get: ${ref} is not in the store (${s.store.lastError()})`);
  }
  const restored = await restore(s, ref);
  if (restored === Status.ok) return "get again";
  if (restored !== Status.storeFull) throw errorFor(restored, s.store.lastError(), `get ${ref}`);
  // No room to bring it back: make some, then try again (or wait for pins to go: the pause
  // after "wait" lets the event loop turn, after which dropped views can be found).
  const sizeBytes = s.store.sizeOf(ref.bytes);
  if (makeRoom(s, sizeBytes)) return "get again";
  if (Date.now() >= roomDeadlineMs) throw noRoomError(s, `get: no room to restore ${ref} (${sizeBytes} bytes)`, sizeBytes);
  return "wait";
}

/**
 * An object not in this store, made on another node of the cluster: pulled from a node that
 * holds it (lib/cluster/cluster.ts). Anything else not sealed yet is being written here: wait.
 * A pull that finds no room (the native side evicted what copies it could) makes room as a
 * restore does: views the program dropped hold pins only the collector finds, then spilling.
 */
async function fetchFromCluster(s: Session, ref: ObjectRef, roomDeadlineMs: number, getDeadlineMs: number): Promise<NextStep> {
  const cluster = s.cluster;
  if (cluster === undefined || !cluster.mayHoldElsewhere(ref.bytes) || s.store.contains(ref.bytes) !== Presence.absent) return "wait";
  let here: boolean;
  try {
    here = await cluster.fetch(ref.bytes, ref.id, getDeadlineMs - Date.now());
  } catch (error) {
    // Lost with its node: the task that made it may run again (lineage), and get waits for it.
    if (error instanceof ObjectLostError && s.tasks()?.rebuild?.(ref)) return "get again";
    if (!(error instanceof NoRoomForPullError)) throw error;
    if (makeRoom(s, error.sizeBytes)) return "get again";
    if (Date.now() >= roomDeadlineMs) throw noRoomError(s, `get: no room to pull ${ref} (${error.sizeBytes} bytes) from another node`, error.sizeBytes);
    return "wait";
  }
  return here ? "get again" : "wait";
}

/** Restores `ref` from its local spill file, else from the first remote source that has it. */
async function restore(s: Session, ref: ObjectRef): Promise<number> {
  let restored = s.store.restore(ref.bytes);
  for (const source of remoteSources(s)) {
    if (restored !== Status.spillMissing) break;
    restored = await source.restore(ref.bytes, `${ref}`);
  }
  return restored;
}
