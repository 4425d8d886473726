/**
 * The messages between the soak's orchestrator (soak.ts) and its clients (client.ts): one JSON
 * object per line, orchestrator → client on the client's stdin, client → orchestrator on its
 * stdout.
 */

/** A client's settings, from the orchestrator (its third argument, as JSON). */
export interface ClientConfig {
  seed: number;
  /** Largest payload put, in bytes. */
  maxBytes: number;
  /** Largest payload a task returns. */
  maxTaskBytes: number;
  /** Owned refs are let go of, oldest first, beyond this many bytes… */
  ownedBytes: number;
  /** …or this many refs. */
  ownedCount: number;
  /** Fraction of released refs dropped without `free` (left to the garbage collector). */
  dropFraction: number;
  /** Concurrent loops of operations (so tasks are in flight while gets and puts go on). */
  lanes: number;
  /** The store's capacity (the creator's holds; this only has to be valid). */
  storeBytes: number;
  /**
   * Faults to inject, to check that the checks catch them (SOAK_INJECT): "corrupt" flips a byte
   * of a view over shared memory once per client, "lose" frees a held ref once per client but
   * keeps using it. Empty in a real run.
   */
  inject: string;
}

/** How a client is told to end; all but "shutdown" leave without calling `shutdown()`. */
export type EndMode =
  /** `await shutdown()`, then `process.exit(0)`: exit code 0. */
  | "shutdown"
  /** `process.exit(0)` with refs, pins, workers and an actor still held: exit code 0. */
  | "exit"
  /** Stops its work and lets the event loop run dry, refs still held: exit code 0. */
  | "return"
  /** Throws an uncaught exception, refs still held: exit code 1. */
  | "throw"
  /** The orchestrator sends SIGTERM (no handler): ended by SIGTERM. */
  | "sigterm";

export const END_MODES: readonly EndMode[] = ["shutdown", "exit", "return", "throw", "sigterm"];

/** Orchestrator → client. */
export type ToClient =
  /** Borrow this ref (another client's, offered with `offer`) with `ObjectRef.fromHex`. */
  | { t: "take"; hex: string; sum: string; binaryBytes: number; from: number; what: string }
  /** Client `client` was killed or ended: refs borrowed from it must live on. */
  | { t: "died"; client: number }
  /** Stop working and end as `how` says. */
  | { t: "end"; how: EndMode };

/** What a client counts; sent as running totals, so a killed client's last report stands. */
export interface Counters {
  puts: number;
  putBytes: number;
  gets: number;
  /** Objects whose checksum was checked and matched (own, borrowed, nested, task results). */
  verifiedObjects: number;
  /** Binary payload bytes those checksums covered. */
  verifiedBytes: number;
  /** Objects reached through a ref inside another object, and checked. */
  nestedVerified: number;
  containers: number;
  tasks: number;
  /** Objects tasks and the actor checked in their worker processes. */
  verifiedInWorkers: number;
  actorCalls: number;
  offered: number;
  taken: number;
  /** Offers that were gone when this client tried to borrow them (freed by their owner). */
  missed: number;
  borrowedGets: number;
  /** Gets of a borrowed ref whose putting client had died or ended by then. */
  getsAfterOwnerDied: number;
  freed: number;
  /** Refs dropped without `free`, left to the garbage collector. */
  dropped: number;
  /** Puts and restores refused with ObjectStoreFullError (not a violation; see soak.ts). */
  storeFull: number;
}

export function zeroCounters(): Counters {
  return {
    puts: 0, putBytes: 0, gets: 0, verifiedObjects: 0, verifiedBytes: 0, nestedVerified: 0, containers: 0,
    tasks: 0, verifiedInWorkers: 0, actorCalls: 0, offered: 0, taken: 0, missed: 0, borrowedGets: 0,
    getsAfterOwnerDied: 0, freed: 0, dropped: 0, storeFull: 0,
  };
}

export type ViolationKind =
  /** A checksum did not match: in a client, a task or the actor. */
  | "corrupt"
  /** A get of a ref a live process held failed: the object was gone. */
  | "lost"
  /** The actor's state differs from the one its caller kept. */
  | "actor-state"
  /** Anything else that should not happen: a hang, a task that failed for another reason. */
  | "error";

/** Client → orchestrator. */
export type FromClient =
  | { t: "ready"; pid: number }
  /** The first 40 hex digits of every id this client mints (sent after its first put). */
  | { t: "ids"; prefix: string }
  /** A ref this client holds; the orchestrator hands it to another client. */
  | { t: "offer"; hex: string; sum: string; binaryBytes: number; what: string }
  | { t: "counters"; counters: Counters }
  | { t: "violation"; kind: ViolationKind; id?: string; expected?: string; actual?: string; detail: string }
  /** The client's last words before it ends as told (then it prints nothing more). */
  | { t: "ending"; how: EndMode; counters: Counters };
