/**
 * The store references held for `ObjectRef`s, and how the ones the program dropped without
 * `free` or `dispose` are found and released — also inside a synchronous loop.
 *
 * Each held reference has a `Holding`, whose WeakRef points at its ObjectRef. A dropped ref is
 * known dead once the collector cleared that WeakRef; a sweep then releases its reference. A
 * FinalizationRegistry would do the same only between tasks, after the loop: a synchronous loop
 * of `put(0)`s with dropped refs kept every object until it filled the store (Ray's own
 * microbenchmark does exactly that, since Python frees a dropped ref at once).
 *
 * V8 keeps the target of every WeakRef made in a job alive until the job ends; `hold` lets it go
 * every `KEPT_BATCH` refs, so that the collections V8 runs by itself in a long loop can take
 * dropped refs.
 *
 * Sweeps:
 * - in `hold`, when the references held doubled since the last sweep (and grew by at least
 *   `SWEEP_MIN`): the refs the collector took meanwhile are released; if that was under half of
 *   them, garbage is collected and the dead released. One sweep per doubling: O(1) per ref, and
 *   a loop of dropped refs runs in flat memory.
 * - from the session's janitor, a few times a second, when the collector ran meanwhile; and
 *   when it did not but the references held doubled (at least `JANITOR_MIN` more), after a
 *   collection of its own, at most once a second: V8 seldom runs a full collection by itself
 *   in a program that allocates little, and only a full one finds dropped refs.
 * - when a `put` finds the store full (`releaseDroppedRefs(true)`).
 */

/** What a holding needs from the session that made it. */
export interface HoldingOwner {
  dropRef(id: Uint8Array): void;
  /** Lets the engine take the WeakRef targets of this job (see `RuntimeShim`). */
  releaseKeptObjects(): void;
  /** Lets the engine take this job's WeakRef targets, then collects garbage. */
  collectGarbage(): void;
}

/** One store reference held for one ref. */
export interface Holding {
  readonly target: WeakRef<object>;
  readonly id: Uint8Array;
  readonly owner: HoldingOwner;
  /** Where it is in `held`; -1 once released. */
  at: number;
}

/** Sweeps run once the references held grew by this many since the last sweep, at least. */
const SWEEP_MIN = 65_536;
/** Refs held between two releases of the engine's kept WeakRef targets. */
const KEPT_BATCH = 1024;
/** The janitor collects garbage itself once the references held grew by this many at least. */
const JANITOR_MIN = 4096;
const JANITOR_COLLECT_INTERVAL_MS = 1000;

const held: Holding[] = [];
let sweepAt = SWEEP_MIN;
/** References held after the last sweep. */
let survivors = 0;
let heldSinceKeptReleased = 0;
let janitorCollectedAt = 0;
/** A throwaway object: gone once the collector has run since the last sweep. */
let collectedSince = new WeakRef<object>({});

/** Tracks the reference this process holds for `target` (an ObjectRef) on object `id`. */
export function hold(target: object, id: Uint8Array, owner: HoldingOwner): Holding {
  const holding: Holding = { target: new WeakRef(target), id, owner, at: held.length };
  held.push(holding);
  if (++heldSinceKeptReleased === KEPT_BATCH) {
    heldSinceKeptReleased = 0;
    owner.releaseKeptObjects();
  }
  if (held.length >= sweepAt) sweepInLoop(owner);
  return holding;
}

/** Releases a holding now (the ref was disposed or freed); once only. */
export function release(holding: Holding): void {
  if (holding.at < 0) return;
  const last = held.pop()!;
  if (last !== holding) {
    held[holding.at] = last;
    last.at = holding.at;
  }
  holding.at = -1;
  holding.owner.dropRef(holding.id);
}

/** References held for refs, dropped or not yet found dropped. */
export function heldCount(): number {
  return held.length;
}

/**
 * Releases the references of refs the collector found unreachable; returns how many. With
 * `collect`, runs the collector first (store full); without (the janitor), sweeps if it ran
 * since the last sweep, or runs it when the references held doubled.
 */
export function releaseDroppedRefs(collect: boolean): number {
  if (held.length === 0) return 0;
  if (!collect && collectedSince.deref() !== undefined) {
    const grown = held.length >= Math.max(survivors + JANITOR_MIN, 2 * survivors);
    const now = Date.now();
    if (!grown || now - janitorCollectedAt < JANITOR_COLLECT_INTERVAL_MS) return 0;
    janitorCollectedAt = now;
    collect = true;
  }
  if (collect) held[held.length - 1].owner.collectGarbage();
  return sweep();
}

/**
 * A sweep inside a loop that may never yield: a collection of our own, then the sweep. (The
 * collections the engine runs by itself in such a loop do not do: V8's young-generation ones
 * keep WeakRef targets, which then outlive them.)
 */
function sweepInLoop(owner: HoldingOwner): void {
  owner.collectGarbage();
  sweep();
  // `deref` kept every survivor alive to the end of the job again.
  owner.releaseKeptObjects();
}

function sweep(): number {
  collectedSince = new WeakRef<object>({});
  let released = 0;
  // Backwards: `release` moves the last holding into the hole, and that one was checked.
  for (let i = held.length - 1; i >= 0; i--) {
    const holding = held[i];
    if (holding.target.deref() !== undefined) continue;
    release(holding);
    released += 1;
  }
  survivors = held.length;
  sweepAt = Math.max(SWEEP_MIN, 2 * held.length);
  return released;
}

/** Forgets the holdings of a session that ended (its references went with it). */
export function forgetHoldings(owner: HoldingOwner): void {
  let kept = 0;
  for (const holding of held) {
    if (holding.owner === owner) {
      holding.at = -1;
      continue;
    }
    holding.at = kept;
    held[kept++] = holding;
  }
  held.length = kept;
  survivors = kept;
  sweepAt = Math.max(SWEEP_MIN, 2 * held.length);
}
