/**
 * Pins held for the program's views: a value with binary payloads comes back over an
 * ArrayBuffer of its own, and the object stays pinned until that buffer is collected.
 *
 * Collection is lazy, so a store full of objects pinned only by unreachable views would wait
 * for a garbage collection that an idle program never runs. When room is short, the library
 * runs one itself and releases, at once, the pins whose buffers are gone (their WeakRefs come
 * back empty; finalizers would run only in a later task, too late for a synchronous put).
 *
 * A WeakRef keeps its target alive to the end of the job that made it, so a view handed out in
 * the current turn of the event loop cannot be found unreachable before the turn ends, however
 * often the collector runs. A loop of gets that never lets the loop turn would leave every view
 * it dropped pinned; so once the views handed out in one turn pin a quarter of the store, the
 * next `get` lets the loop turn first (`droppedViewsNeedATurn`).
 */
import { setImmediate } from "node:timers";
import type { Session } from "./session.ts";

interface Pin {
  readonly key: string;
  readonly id: Uint8Array;
  readonly session: Session;
  readonly buffer: WeakRef<ArrayBuffer>;
  readonly sizeBytes: number;
  released: boolean;
}

const live = new Set<Pin>();
let viewedBytes = 0;
/** The buffer of each object currently viewed, by hex id: a second get of the object reuses it. */
const buffers = new Map<string, Pin>();
const collected = new FinalizationRegistry<Pin>(release);

function release(pin: Pin): void {
  if (pin.released) return;
  pin.released = true;
  live.delete(pin);
  viewedBytes -= pin.sizeBytes;
  if (buffers.get(pin.key) === pin) buffers.delete(pin.key);
  if (!pin.session.closed) pin.session.store.release(pin.id);
}

/**
 * The buffer already viewing object `key` in this session, if one is still alive. Reusing it
 * keeps repeated gets of a big object O(1): every new external buffer makes V8 count its
 * size as external memory and, soon, run a full collection.
 */
export function viewingBuffer(session: Session, key: string): ArrayBuffer | undefined {
  const pin = buffers.get(key);
  if (pin === undefined || pin.released || pin.session !== session) return undefined;
  return pin.buffer.deref();
}

/** Keeps the pin on `id` (taken by a get) until `buffer` is garbage collected. */
export function pinUntilCollected(session: Session, key: string, id: Uint8Array, buffer: ArrayBuffer): void {
  const pin: Pin = { key, id, session, buffer: new WeakRef(buffer), sizeBytes: buffer.byteLength, released: false };
  live.add(pin);
  viewedBytes += pin.sizeBytes;
  buffers.set(key, pin);
  collected.register(buffer, pin);
  noteViewedThisTurn(pin.sizeBytes);
}

/** Bytes of the views handed out since the event loop last turned. */
let viewedThisTurnBytes = 0;
let turnNoticed = false;

function noteViewedThisTurn(sizeBytes: number): void {
  viewedThisTurnBytes += sizeBytes;
  if (turnNoticed) return;
  turnNoticed = true;
  setImmediate(() => {
    viewedThisTurnBytes = 0;
    turnNoticed = false;
  });
}

const capacityOf = new WeakMap<Session, number>();

/**
 * True if the views handed out in this turn of the event loop pin a quarter of the store: the
 * caller lets the loop turn (`nextTurn`), after which those the program dropped can be found
 * unreachable when room runs short.
 */
export function droppedViewsNeedATurn(session: Session): boolean {
  if (viewedThisTurnBytes === 0) return false;
  let capacityBytes = capacityOf.get(session);
  if (capacityBytes === undefined) {
    capacityBytes = session.store.stats().capacityBytes;
    capacityOf.set(session, capacityBytes);
  }
  return viewedThisTurnBytes >= capacityBytes / 4;
}

/** Resolves once the event loop has turned (the current job, and the WeakRefs it kept, ended). */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Bytes of the objects pinned for views this process handed out and has not seen collected. */
export function pinnedForViewsBytes(): number {
  return viewedBytes;
}

/** Collects garbage now and releases the pins of views that were unreachable; returns how many. */
export function releaseUnreachablePins(session: Session): number {
  if (live.size === 0) return 0;
  session.library.shim.collectGarbage();
  let released = 0;
  for (const pin of live) {
    if (pin.session !== session || pin.buffer.deref() !== undefined) continue;
    release(pin);
    released += 1;
  }
  return released;
}
