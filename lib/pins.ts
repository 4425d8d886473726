/**
 * Pins held for the program's views: a value with binary payloads comes back over an
 * ArrayBuffer of its own, and the object stays pinned until that buffer is collected.
 *
 * Collection is lazy, so a store full of objects pinned only by unreachable views would wait
 * for a garbage collection that an idle program never runs. When room is short, the library
 * runs one itself and releases, at once, the pins whose buffers are gone.
 */
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
