/**
 * put, get, wait and free: values into and out of this node's shared-memory store.
 *
 * `get` of a value holding binary payloads hands out views over shared memory; each such
 * value gets an ArrayBuffer of its own, and the object stays pinned until that buffer is
 * garbage collected, so a view never outlives its pin. Values without payloads are copied out
 * and unpinned at once.
 */
import { SpinBackoff } from "./spin_backoff.ts";
import { decode, encode } from "./codec/mod.ts";
import { readHeader } from "./codec/header.ts";
import { HEADER_BYTES } from "./codec/format.ts";
import type { DecodeHooks, EncodeHooks } from "./codec/types.ts";
import { GetTimeoutError, ObjectStoreFullError, ObjstoreError } from "./errors.ts";
import { ObjectRef, type Producer } from "./object_ref.ts";
import { ID_BYTES, toHex } from "./ids.ts";
import { type Session, session } from "./session.ts";
import { Presence, Status } from "./store/status.ts";
import type { PinnedObject } from "./store/native_store.ts";
import type { ClusterClient } from "./cluster/cluster.ts";
import { errorFor } from "./store/status.ts";
import { TaskFailure } from "./tasks/failure.ts";
import { droppedViewsNeedATurn, nextTurn, pinUntilCollected, viewingBuffer } from "./pins.ts";
import { bringIntoMemory, RESTORE_ROOM_WAIT_MS } from "./restore.ts";
import { makeRoom, noRoomError } from "./room.ts";

const encodeHooks: EncodeHooks = {
  refId(value: unknown): Uint8Array | undefined {
    if (!(value instanceof ObjectRef)) return undefined;
    value.checkUsable();
    return value.bytes;
  },
};

const hooksBySession = new WeakMap<Session, DecodeHooks>();

function decodeHooks(s: Session): DecodeHooks {
  let hooks = hooksBySession.get(s);
  if (hooks === undefined) {
    hooks = {
      makeRef(id: Uint8Array): unknown {
        // The containing object holds `id` alive, so taking a reference succeeds (a ref to
        // another node's object is a borrow, taken before the container can go).
        const outcome = s.addRef(id);
        return outcome === "absent" ? new ObjectRef(id, undefined) : new ObjectRef(id, s, outcome === "held");
      },
    };
    hooksBySession.set(s, hooks);
  }
  return hooks;
}

/**
 * Stores `value` in shared memory and returns its ref; the object is sealed on return.
 * `put` a large value once and pass the ref to many tasks instead of the value itself.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 64 * 1024 * 1024 });
 * const ref = os.put(new Float64Array([1, 2, 3]));
 * console.log(await os.get(ref)); // Float64Array(3) [ 1, 2, 3 ] — a view over shared memory
 * await os.shutdown();
 * ```
 */
export function put<T>(value: T): ObjectRef<T> {
  const s = session();
  if (value instanceof ObjectRef) {
    throw new TypeError("put: the value is already an ObjectRef; pass the ref itself instead of putting it again");
  }
  const id = s.newId();
  putWithId(s, id, value);
  return new ObjectRef<T>(id, s);
}

/**
 * @internal Stores `value` under a given id (a task's return, or its failure). Refs inside
 * are kept alive by the object, as with `put`. The caller holds the new reference. In a
 * cluster, a ref to another node's object is not a child in this store: the object holds it
 * on that node until it is deleted (lib/cluster/borrows.ts `contain`).
 */
export function putWithId(s: Session, id: Uint8Array, value: unknown): void {
  const encoded = encode(value, encodeHooks);
  const cluster = s.cluster;
  const foreign = cluster === undefined ? [] : encoded.refIds.filter((child) => cluster.mayHoldElsewhere(child));
  const childIds = foreign.length === 0 ? encoded.refIds : encoded.refIds.filter((child) => !cluster!.mayHoldElsewhere(child));
  const children = childIds.length === 0 ? undefined : concatIds(childIds);
  const target = createMakingRoom(s, id, encoded.sizeBytes, children, childIds.length);
  try {
    encoded.writeInto(target, s.store);
  } catch (error) {
    s.store.abort(id);
    throw error;
  }
  s.store.seal(id);
  if (foreign.length > 0) holdForeignChildren(cluster!, id, foreign);
}

function holdForeignChildren(cluster: ClusterClient, id: Uint8Array, children: Uint8Array[]): void {
  const byHex = new Map(children.map((child) => [toHex(child), child]));
  cluster.borrows.contain(toHex(id), [...byHex.values()], [...byHex.keys()]);
}

/**
 * @internal Stores a task's arguments. Refs inside are not tracked as children: they may name
 * results still being computed, so the task record holds them alive instead (`onRef` is told
 * each ref the arguments hold, nested or not).
 */
export function putArguments(s: Session, args: unknown[], onRef: (ref: ObjectRef) => void): ObjectRef {
  const hooks: EncodeHooks = {
    refId(value: unknown): Uint8Array | undefined {
      const id = encodeHooks.refId(value);
      if (id !== undefined) onRef(value as ObjectRef);
      return id;
    },
  };
  const encoded = encode(args, hooks);
  const id = s.newId();
  const target = createMakingRoom(s, id, encoded.sizeBytes, undefined, 0);
  encoded.writeInto(target, s.store);
  s.store.seal(id);
  return new ObjectRef(id, s);
}

/** Creates the object; when the store is full, makes room first (see `makeRoom`). */
function createMakingRoom(s: Session, id: Uint8Array, sizeBytes: number, children: Uint8Array | undefined, childCount: number): Uint8Array {
  for (let attempt = 1; ; attempt++) {
    const target = s.store.create(id, sizeBytes, children, childCount);
    if (typeof target !== "number") return target;
    // Read now: making room runs other calls, which replace the last error.
    const detail = s.store.lastError();
    const full = target === Status.storeFull || target === Status.indexFull;
    if (!full || attempt === MAKE_ROOM_ATTEMPTS || !makeRoom(s, sizeBytes * attempt, target === Status.indexFull)) {
      throw putFailure(s, target, detail, sizeBytes);
    }
  }
}

const MAKE_ROOM_ATTEMPTS = 4;

function concatIds(ids: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(ids.length * ID_BYTES);
  for (let i = 0; i < ids.length; i++) all.set(ids[i], i * ID_BYTES);
  return all;
}

function putFailure(s: Session, status: number, detail: string, sizeBytes: number): Error {
  if (status === Status.storeFull) return noRoomError(s, `put: no room for an object of ${sizeBytes} bytes`, sizeBytes);
  if (status === Status.indexFull) {
    // The object limit, not the bytes: the detail names the limit and how to raise it.
    return new ObjectStoreFullError(`put: ${detail}.`);
  }
  return errorFor(status, detail, "put");
}

/** Options of `get`. */
export interface GetOptions {
  /** Seconds to wait for the objects (Ray's unit); absent = forever, 0 = do not wait. */
  timeout?: number;
  /** Stops waiting when aborted: `get` rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The value of a ref, or the values of a list of refs in the same order. Binary payloads
 * come back as read-only views over shared memory, whatever their size.
 * Get a list in one call rather than one `get` per ref in a loop.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 64 * 1024 * 1024 });
 * const [a, b] = await os.get([os.put(1), os.put("two")]);
 * await os.shutdown();
 * ```
 */
export function get<T>(ref: ObjectRef<T>, options?: GetOptions): Promise<T>;
/** The values of a tuple of refs, in the same order, each typed by its ref. */
export function get<T extends readonly ObjectRef[]>(refs: T, options?: GetOptions): Promise<{ [K in keyof T]: T[K] extends ObjectRef<infer V> ? V : never }>;
/** The values of a list of refs, in the same order. */
export function get(refs: ObjectRef[], options?: GetOptions): Promise<unknown[]>;
export async function get(refOrRefs: ObjectRef | readonly ObjectRef[], options: GetOptions = {}): Promise<unknown> {
  const s = session();
  const deadline = deadlineOf("get", options.timeout);
  if (droppedViewsNeedATurn(s)) await nextTurn();
  if (!Array.isArray(refOrRefs)) {
    checkRef("get", refOrRefs);
    const now = getNow(s, refOrRefs as ObjectRef);
    return now !== notReady ? now : await getOne(s, refOrRefs as ObjectRef, deadline, options.signal);
  }
  const refs: readonly ObjectRef[] = refOrRefs;
  for (const ref of refs) checkRef("get", ref);
  const values = new Array<unknown>(refs.length);
  let fetchedUpTo = 0;
  for (let i = 0; i < refs.length; i++) {
    const now = getNow(s, refs[i]);
    if (now !== notReady) {
      values[i] = now;
      continue;
    }
    // Objects on other nodes come in parallel, a few ahead of the one awaited.
    for (; fetchedUpTo < Math.min(refs.length, i + FETCH_AHEAD); fetchedUpTo++) fetchAhead(s, refs[fetchedUpTo], deadline);
    values[i] = await getOne(s, refs[i], deadline, options.signal);
  }
  return values;
}

/** Pulls of other nodes' objects a list's get keeps going ahead of the one it awaits. */
const FETCH_AHEAD = 8;

/** Starts pulling `ref`'s object if it is on another node, once its producer (if any) is done;
 * its get then finds it here or shares the pull. Failures are the get's to report. */
function fetchAhead(s: Session, ref: ObjectRef, deadline: number): void {
  const cluster = s.cluster;
  if (cluster === undefined || !cluster.mayHoldElsewhere(ref.bytes)) return;
  const start = () => {
    if (s.store.contains(ref.bytes) !== Presence.absent) return;
    cluster.fetch(ref.bytes, ref.id, deadline - Date.now()).catch(() => {});
  };
  const producer = ref.producer;
  if (producer !== undefined && !producer.settled) producer.done.then(start, () => {});
  else start();
}

const notReady = Symbol("not ready");

/** The value if it is in memory now (the common case), without a promise; else `notReady`. */
function getNow(s: Session, ref: ObjectRef): unknown {
  if (ref.producer !== undefined && !ref.producer.settled) return notReady;
  if (!ref.acquire()) return notReady;
  const pinned = s.store.get(ref.bytes);
  return typeof pinned === "number" ? notReady : valueOfPinned(s, ref.bytes, pinned);
}

function checkRef(what: string, ref: unknown): asserts ref is ObjectRef {
  if (!(ref instanceof ObjectRef)) throw new TypeError(`${what}: expected an ObjectRef, got ${describe(ref)}`);
  ref.checkUsable();
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

/** Milliseconds since the epoch by which to give up; Infinity for no timeout. */
function deadlineOf(what: string, timeout: number | undefined): number {
  if (timeout === undefined || timeout === null) return Infinity;
  if (typeof timeout !== "number" || !(timeout >= 0)) {
    throw new TypeError(`${what}: timeout is in seconds and must be ≥ 0, got ${timeout}`);
  }
  return Date.now() + timeout * 1000;
}

async function getOne(s: Session, ref: ObjectRef, deadline: number, signal: AbortSignal | undefined): Promise<unknown> {
  let backoffMs = 0;
  const roomDeadline = Date.now() + RESTORE_ROOM_WAIT_MS;
  while (true) {
    signal?.throwIfAborted();
    const producer = ref.producer;
    if (producer !== undefined && !producer.settled) {
      if ((producer.spinMicros ?? 0) > 0 && spinForResult(producer)) continue;
      await settledBy(producer.done, deadline, signal, ref);
      continue;
    }
    const pinned = ref.acquire() ? s.store.get(ref.bytes) : Status.notSealed;
    if (typeof pinned !== "number") {
      // Pulled from another node: this process holds its own reference now.
      s.cluster?.settled(ref.id);
      return valueOfPinned(s, ref.bytes, pinned);
    }
    if (await bringIntoMemory(s, ref, pinned, roomDeadline, deadline) === "get again") continue;
    if (Date.now() >= deadline) throw new GetTimeoutError(`get: ${ref} was not ready within the timeout`);
    backoffMs = await pause(backoffMs, deadline, signal);
  }
}

const spinBackoff = new SpinBackoff();

/**
 * Waits for a quick task by spinning on its worker's channel: this CPU stays awake, so the
 * worker's report needs no wake-up, and it is handled here at once, without a turn of the
 * event loop. True if the task settled.
 */
function spinForResult(producer: Producer): boolean {
  if (spinBackoff.skip()) return false;
  const settled = producer.spinUntilSettled!();
  spinBackoff.record(settled);
  return settled;
}

/** Waits for `done`, but not past the deadline and not past an abort. */
function settledBy(done: Promise<void>, deadline: number, signal: AbortSignal | undefined, ref: ObjectRef): Promise<void> {
  if (deadline === Infinity && signal === undefined) return done;
  return new Promise<void>((resolve, reject) => {
    const timer = deadline === Infinity ? undefined : setTimeout(() => {
      finish();
      reject(new GetTimeoutError(`get: ${ref} was not ready within the timeout`));
    }, Math.max(0, deadline - Date.now()));
    const aborted = () => {
      finish();
      reject(signal!.reason);
    };
    function finish() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
    }
    signal?.addEventListener("abort", aborted, { once: true });
    done.then(() => {
      finish();
      resolve();
    });
  });
}

/** Waits a little longer each time (up to 10 ms), never past the deadline. */
async function pause(backoffMs: number, deadline: number, signal: AbortSignal | undefined): Promise<number> {
  const next = Math.min(10, backoffMs === 0 ? 0.1 : backoffMs * 2);
  const waitMs = Math.max(0, Math.min(next, deadline - Date.now()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(done, waitMs);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
  return next;
}

/** The value of the object `get` pinned; a stored task failure is thrown as its error. */
function valueOfPinned(s: Session, id: Uint8Array, pinned: PinnedObject): unknown {
  const value = readPinned(s, id, pinned);
  if (value instanceof TaskFailure) throw value.toError();
  return value;
}

function readPinned(s: Session, id: Uint8Array, { offsetBytes, sizeBytes }: PinnedObject): unknown {
  let keepPinned = false;
  try {
    // The header alone first: an object with buffers is read through a view of its own, and
    // viewing all of a large one twice would double what V8 counts.
    const head = s.store.bytes(offsetBytes, Math.min(sizeBytes, HEADER_BYTES));
    if (readHeader(head, sizeBytes).bufferCount === 0) return decode(s.store.bytes(offsetBytes, sizeBytes), decodeHooks(s));
    const key = toHex(id);
    // A buffer still viewing this object holds a pin already: reuse both.
    const existing = viewingBuffer(s, key);
    if (existing !== undefined) return decode(new Uint8Array(existing), decodeHooks(s));
    const own = s.store.ownView(offsetBytes, sizeBytes);
    const value = decode(new Uint8Array(own), decodeHooks(s));
    pinUntilCollected(s, key, id, own);
    keepPinned = true;
    return value;
  } finally {
    if (!keepPinned) s.store.release(id);
  }
}

/** Options of `wait`. */
export interface WaitOptions {
  /** How many ready refs to wait for: 1 to `refs.length` (default 1). */
  numReturns?: number;
  /** Seconds; absent = forever, 0 = do not wait. */
  timeout?: number;
  /** In a cluster: ready means "its value is on this node" (default true: `wait` pulls the
   * objects made on other nodes and counts them once here), or with false, "its value is
   * somewhere in the cluster" (nothing is pulled), as in Ray. */
  fetchLocal?: boolean;
  /** Stops waiting when aborted: `wait` rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Waits until `numReturns` of `refs` are ready or the timeout passes; returns
 * `[ready, pending]`, both in the order of `refs`.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 64 * 1024 * 1024 });
 * const refs = [os.put(1), os.put(2)];
 * const [ready, pending] = await os.wait(refs, { numReturns: 2, timeout: 5.0 });
 * await os.shutdown();
 * ```
 */
export async function wait<T extends ObjectRef>(refs: readonly T[], options: WaitOptions = {}): Promise<[T[], T[]]> {
  const s = session();
  if (!Array.isArray(refs)) throw new TypeError(`wait: expected an array of ObjectRefs, got ${describe(refs)}`);
  const seen = new Set<string>();
  for (const ref of refs) {
    checkRef("wait", ref);
    if (seen.has(ref.id)) throw new ObjstoreError(`wait: ${ref} appears more than once; refs must be unique`);
    seen.add(ref.id);
  }
  const numReturns = options.numReturns ?? 1;
  if (!Number.isInteger(numReturns) || numReturns < 1 || numReturns > refs.length) {
    throw new ObjstoreError(`wait: numReturns must be a whole number from 1 to refs.length (${refs.length}), got ${numReturns}`);
  }
  const deadline = deadlineOf("wait", options.timeout);
  const lost = new Set<ObjectRef>();
  let backoffMs = 0;
  const fetchLocal = options.fetchLocal ?? true;
  while (true) {
    options.signal?.throwIfAborted();
    const ready: T[] = [];
    const pending: T[] = [];
    for (const ref of refs) {
      if (ready.length < numReturns && isReady(s, ref, lost, fetchLocal ? deadline : undefined)) ready.push(ref);
      else pending.push(ref);
    }
    if (ready.length >= numReturns || Date.now() >= deadline) return [ready, pending];
    backoffMs = await pause(backoffMs, deadline, options.signal);
  }
}

/**
 * Whether `ref` counts as ready for `wait`. An object made on another node and not here is
 * pulled in the background until `fetchDeadline` (one pull per object: `ClusterClient.fetch`
 * shares them) and ready once here; without a fetch deadline (`fetchLocal: false`) it is ready
 * where it is. Those no node has join `lost`.
 */
function isReady(s: Session, ref: ObjectRef, lost: Set<ObjectRef>, fetchDeadline: number | undefined): boolean {
  if (ref.producer !== undefined && !ref.producer.settled) return false;
  const presence = s.store.contains(ref.bytes);
  const cluster = s.cluster;
  if (presence === Presence.absent && cluster?.mayHoldElsewhere(ref.bytes) && !lost.has(ref) && fetchDeadline !== undefined) {
    cluster.fetch(ref.bytes, ref.id, fetchDeadline - Date.now()).catch(() => {
      if (!s.tasks()?.rebuild?.(ref)) lost.add(ref);
    });
    return false;
  }
  // A lost object is "ready": its get fails at once instead of waiting forever, as in Ray.
  return presence === Presence.sealed || presence === Presence.spilled || presence === Presence.absent;
}

/**
 * Releases refs at once, like disposing each; a released ref can no longer be used, and each
 * object is deleted once no other reference holds it.
 */
export function free(refs: ObjectRef | readonly ObjectRef[]): void {
  session();
  const list: readonly ObjectRef[] = Array.isArray(refs) ? refs : [refs as ObjectRef];
  for (const ref of list) {
    if (!(ref instanceof ObjectRef)) throw new TypeError(`free: expected ObjectRefs, got ${describe(ref)}`);
  }
  for (const ref of list) ref[Symbol.dispose]();
}

/** Memory of this node's store, in bytes and objects. */
export interface MemoryStats {
  /** Bytes of shared memory for objects (`objectStoreMemory`). */
  capacityBytes: number;
  /** Bytes taken by objects in memory. */
  usedBytes: number;
  /** Bytes of objects pinned by views some process holds (they cannot spill or be freed). */
  pinnedBytes: number;
  /** Objects in the store, in memory or spilled. */
  objectCount: number;
  /** Bytes of objects whose only copy is spilled (on disk or in S3). Copies of other nodes'
   * objects evicted from memory are not counted: nothing of them is on disk (a get pulls them
   * again). */
  spilledBytes: number;
  /** Objects whose only copy is spilled. */
  spilledObjects: number;
  /** Bytes restored from spill files so far (a total since the store was made). */
  restoredBytes: number;
  /** Objects restored so far. */
  restoredObjectsTotal: number;
  /** Bytes of objects that left memory for a spill file so far (written to one, or dropped
   * from memory with their copy already there): with `restoredBytes`, the spill and restore
   * rates are these totals' differences. */
  spilledBytesTotal: number;
  /** Objects that left memory for a spill file so far. */
  spilledObjectsTotal: number;
}

/** The state of this node's store, in bytes and objects. */
export function memoryStats(): MemoryStats {
  const { attachedProcesses: _, ...stats } = session().store.stats();
  return stats;
}
