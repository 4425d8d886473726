/**
 * One attachment to a named store through libobjstore: typed wrappers over the C ABI, and
 * views of the shared segment. Small objects' bytes are cut from a few cached windows, so
 * reading one costs a `subarray`, not a new view; windows are bounded in size and number
 * (`RuntimeShim.windowBytes`, `windowBudgetBytes`) because V8 counts each as memory.
 */
import type { PagePlacement } from "../codec/types.ts";
import type { Library } from "../ffi/load.ts";
import { isNullPointer, type NativePointer, type NativeSymbols, type UserViews } from "../ffi/symbols.ts";
import { ObjectStoreFullError, ObjstoreError } from "../errors.ts";
import { errorFor, Status } from "./status.ts";
import { ID_BYTES, toHex } from "../ids.ts";

const OPEN_CREATE = 1;
const OPEN_EXCLUSIVE = 2;
const OPEN_PREFAULT = 4;
const CLOSE_REMOVE_IF_LAST = 1;

const encoder = new TextEncoder();
const messageBuffer = new Uint8Array(1024);
const noChildren = new Uint8Array(28);

/** Where a spilled object's record lies (`fileState`: see FileState). */
export interface SpillLocation {
  fileState: number;
  serial: number;
  offsetBytes: number;
  regionSizeBytes: number;
}

/** Where an object `get` pinned lies in the segment (`bytes`, `ownView` read it there). */
export interface PinnedObject {
  readonly offsetBytes: number;
  readonly sizeBytes: number;
}

/** A spill file this process claimed, to copy out or to delete its remote copy. */
export interface SpillFileClaim {
  fileIndex: number;
  serial: number;
  sizeBytes: number;
}

/** The states of a spill file (zig/src/layout.zig FileState; tests/codes.test.ts checks they agree). */
export const FileState = { free: 0, writing: 1, local: 2, uploading: 3, remote: 4, remoteUnused: 5, remoteDeleting: 6, uploadOrphaned: 7 } as const;

export interface OpenOptions {
  create: boolean;
  exclusive: boolean;
  capacityBytes: number;
  prefault: boolean;
}

export interface StoreStats {
  capacityBytes: number;
  usedBytes: number;
  pinnedBytes: number;
  objectCount: number;
  spilledBytes: number;
  spilledObjects: number;
  restoredBytes: number;
  attachedProcesses: number;
  spilledBytesTotal: number;
  spilledObjectsTotal: number;
  restoredObjectsTotal: number;
}

/**
 * Bytes of one record of `objstore_list`: the id (ID_BYTES), then a u32 at 28, the state (1
 * writing, 2 in memory, 3 spilled); u64 bit masks at 32 of the processes referencing it and at
 * 40 of those pinning it (bit c: client index c, see `clientPids`); an f64 at 48, the size;
 * u32s at 56, the objects containing it, and 60, the refs it contains.
 */
export const LIST_RECORD_BYTES = 64;

/** Processes a store can have attached at once (zig/src/layout.zig client_count_max). */
export const CLIENTS_MAX = 64;

/** The number of bits set in a u32. */
export function bitCount(word: number): number {
  let n = word >>> 0;
  n = n - ((n >>> 1) & 0x55555555);
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return Math.imul((n + (n >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

export interface ListedObject {
  id: string;
  state: "writing" | "memory" | "spilled";
  sizeBytes: number;
  referencingProcesses: number;
  pinningProcesses: number;
  containedBy: number;
}

/** The message and detail of the last failed call on this thread. */
export function lastError(symbols: NativeSymbols): string {
  const n = symbols.objstore_last_error(messageBuffer, messageBuffer.length);
  return new TextDecoder().decode(messageBuffer.subarray(0, n));
}

/** What `objstore_list` is given for heads when none are asked for (a buffer, never read). */
const noHeads = new Uint8Array(8);

/** Pages are 4 KiB, and the segment starts on a page. */
const PAGE_BYTES = 4096;

/**
 * One attachment. It is also the page placement of the object `create` made last (see
 * PagePlacement): the segment starts on a page, so an offset in it is an address mod 4096.
 */
export class NativeStore implements PagePlacement {
  readonly name: string;
  /** True if this process created the store (and so decides its settings). */
  readonly created: boolean;
  readonly #library: Library;
  readonly #symbols: NativeSymbols;
  #handle: NativePointer;
  readonly #result: Float64Array;
  readonly #base: NativePointer;
  readonly #segmentBytes: number;
  readonly #windowBytes: number;
  /** Window `k` views the segment from `k * #windowBytes`; made as objects there are read. */
  readonly #windows: (Uint8Array | undefined)[] = [];
  #windowCount = 0;
  readonly #maxWindows: number;
  readonly #userViews: UserViews;
  readonly #sealSequence: Int32Array;
  #createdOffsetBytes = 0;
  /** The view of its own `create` made for the object being written (see `#retireWriteView`). */
  #writeView: ArrayBuffer | undefined;

  private constructor(library: Library, handle: NativePointer, name: string) {
    this.name = name;
    this.#library = library;
    this.#symbols = library.symbols;
    this.#handle = handle;
    this.#result = new Float64Array(library.shim.view(library.symbols.objstore_result(handle), 0, 64));
    this.created = this.#result[2] === 1;
    this.#base = library.symbols.objstore_segment_base(handle);
    this.#segmentBytes = library.symbols.objstore_segment_size(handle);
    this.#windowBytes = Math.min(this.#segmentBytes, library.shim.windowBytes, library.shim.maxViewBytes);
    this.#maxWindows = Math.max(1, Math.floor(library.shim.windowBudgetBytes / this.#windowBytes));
    const windowedBytes = Math.min(this.#segmentBytes, this.#maxWindows * this.#windowBytes);
    this.#userViews = library.shim.userViews(this.#base, this.#segmentBytes, windowedBytes);
    const sequenceOffset = library.symbols.objstore_seal_sequence_offset();
    this.#sealSequence = new Int32Array(this.#window(0)!.buffer, sequenceOffset, 1);
  }

  /** Opens (creates or attaches to) the store `name`. */
  static open(library: Library, name: string, options: OpenOptions): NativeStore {
    const bytes = encoder.encode(name);
    const flags = (options.create ? OPEN_CREATE : 0) | (options.exclusive ? OPEN_EXCLUSIVE : 0) |
      (options.prefault ? OPEN_PREFAULT : 0);
    const handle = library.symbols.objstore_open(bytes, bytes.length, flags, options.capacityBytes, 0);
    if (isNullPointer(handle)) {
      const status = library.symbols.objstore_last_status();
      throw errorFor(status, lastError(library.symbols), `cannot open store '${name}'`);
    }
    return new NativeStore(library, handle, name);
  }

  /** Removes a store no living process uses. */
  static destroy(library: Library, name: string): void {
    const bytes = encoder.encode(name);
    const status = library.symbols.objstore_destroy(bytes, bytes.length);
    if (status !== Status.ok) throw errorFor(status, lastError(library.symbols), `cannot destroy store '${name}'`);
  }

  /** Detaches; the last process removes the store and its spill files (unless `removeIfLast`
   * is false: then nothing else happens, not even reclaiming what dead processes held). */
  close(removeIfLast = true): boolean {
    this.#retireWriteView();
    this.#userViews.close();
    const removed = this.#symbols.objstore_close(this.#handle, removeIfLast ? CLOSE_REMOVE_IF_LAST : 0) === 1;
    this.#handle = null;
    this.#windows.length = 0;
    this.#windowCount = 0;
    return removed;
  }

  #fail(status: number, context: string): never {
    throw errorFor(status, lastError(this.#symbols), context);
  }

  /** Creates an unsealed object; returns the bytes to write into. */
  create(id: Uint8Array, sizeBytes: number, children: Uint8Array | undefined, childCount: number): Uint8Array | number {
    const status = this.#symbols.objstore_create(this.#handle, id, sizeBytes, children ?? noChildren, childCount);
    if (status !== Status.ok) return status;
    this.#createdOffsetBytes = this.#result[0];
    this.#retireWriteView();
    const windowed = this.#windowed(this.#createdOffsetBytes, sizeBytes);
    if (windowed !== undefined) return windowed;
    this.#writeView = this.ownView(this.#createdOffsetBytes, sizeBytes);
    return new Uint8Array(this.#writeView);
  }

  /** The view `create` made for the object being written is not used past its seal or abort. */
  #retireWriteView(): void {
    if (this.#writeView === undefined) return;
    this.#userViews.retire(this.#writeView);
    this.#writeView = undefined;
  }

  /** Where the data of the object `create` made last starts within its page. */
  get targetPageOffset(): number {
    return this.#createdOffsetBytes % PAGE_BYTES;
  }

  /** Where byte `byteOffset` of `source` lies within its page (its address mod 4096). */
  pageOffsetOf(source: ArrayBufferLike, byteOffset: number): number {
    return this.#symbols.objstore_page_offset(new Uint8Array(source, byteOffset, 1));
  }

  /** The message of the last failure, for callers that handle a status themselves. */
  lastError(): string {
    return lastError(this.#symbols);
  }

  seal(id: Uint8Array): void {
    this.#retireWriteView();
    const status = this.#symbols.objstore_seal(this.#handle, id);
    if (status !== Status.ok) this.#fail(status, "seal");
  }

  abort(id: Uint8Array): void {
    this.#retireWriteView();
    this.#symbols.objstore_abort(this.#handle, id);
  }

  /**
   * Pins a sealed object: where it lies, or the status that says why not (never `Status.ok`).
   * The core leaves the place in this handle's result area, read here at once, before any
   * other call replaces it.
   */
  get(id: Uint8Array): PinnedObject | number {
    const status = this.#symbols.objstore_get(this.#handle, id);
    if (status !== Status.ok) return status;
    return { offsetBytes: this.#result[0], sizeBytes: this.#result[1] };
  }

  release(id: Uint8Array): void {
    this.#symbols.objstore_release(this.#handle, id);
  }

  addRef(id: Uint8Array): number {
    return this.#symbols.objstore_ref_add(this.#handle, id);
  }

  dropRef(id: Uint8Array): number {
    return this.#symbols.objstore_ref_drop(this.#handle, id);
  }

  /** One of `Presence`. */
  contains(id: Uint8Array): number {
    return this.#symbols.objstore_contains(this.#handle, id);
  }

  /** The object's data size, in memory or spilled; 0 if it is gone. */
  sizeOf(id: Uint8Array): number {
    return this.#symbols.objstore_size(this.#handle, id) === Status.ok ? this.#result[1] : 0;
  }

  restore(id: Uint8Array): number {
    return this.#symbols.objstore_restore(this.#handle, id);
  }

  /** Restores a spilled object from its record's region, fetched from a remote copy. */
  restoreRegion(id: Uint8Array, region: Uint8Array): number {
    return this.#symbols.objstore_restore_region(this.#handle, id, region, region.byteLength);
  }

  /** Where a spilled object's record is, or a status if it is not spilled. */
  spillLocation(id: Uint8Array): SpillLocation | number {
    const status = this.#symbols.objstore_spill_location(this.#handle, id);
    if (status !== Status.ok) return status;
    const r = this.#result;
    return { fileState: r[0], serial: r[1], offsetBytes: r[2], regionSizeBytes: r[3] };
  }

  /** Claims a local spill file to copy to remote storage; undefined if none waits. */
  claimUpload(): SpillFileClaim | undefined {
    return this.#claimed(this.#symbols.objstore_upload_claim(this.#handle));
  }

  /** Ends an upload claim: `copied` if the remote copy is complete (the local file goes). */
  finishUpload(claim: SpillFileClaim, copied: boolean): void {
    const status = this.#symbols.objstore_upload_finish(this.#handle, claim.fileIndex, claim.serial, copied ? 1 : 0);
    if (status !== Status.ok) this.#fail(status, "finish upload");
  }

  /** Claims a remote copy whose objects are all gone, to delete it. */
  claimRemoteDelete(): SpillFileClaim | undefined {
    return this.#claimed(this.#symbols.objstore_remote_delete_claim(this.#handle));
  }

  finishRemoteDelete(claim: SpillFileClaim, deleted: boolean): void {
    const status = this.#symbols.objstore_remote_delete_finish(this.#handle, claim.fileIndex, claim.serial, deleted ? 1 : 0);
    if (status !== Status.ok) this.#fail(status, "finish remote delete");
  }

  #claimed(found: number): SpillFileClaim | undefined {
    if (found !== 1) return undefined;
    const r = this.#result;
    return { fileIndex: r[0], serial: r[1], sizeBytes: r[2] };
  }

  maintain(): number {
    return this.#symbols.objstore_maintain(this.#handle);
  }

  /** Bumped by every process on each seal, abort and delete: a cheap "has anything changed". */
  sealSequence(): number {
    return Atomics.load(this.#sealSequence, 0);
  }

  stats(): StoreStats {
    const out = new Float64Array(11);
    this.#symbols.objstore_stats(this.#handle, out);
    return {
      capacityBytes: out[0],
      usedBytes: out[1],
      pinnedBytes: out[2],
      objectCount: out[3],
      spilledBytes: out[4],
      spilledObjects: out[5],
      restoredBytes: out[6],
      attachedProcesses: out[7],
      spilledBytesTotal: out[8],
      spilledObjectsTotal: out[9],
      restoredObjectsTotal: out[10],
    };
  }

  /** Pids of the processes attached to the store. */
  attachedPids(): number[] {
    return Array.from(this.clientPids()).filter((pid) => pid !== 0);
  }

  /** The pid of each attached process at its client index (CLIENTS_MAX entries, 0 where none
   * is): bit c of a listing's holder masks is the process at index c. */
  clientPids(): Uint32Array {
    const out = new Uint32Array(CLIENTS_MAX);
    this.#symbols.objstore_clients(this.#handle, out);
    return out;
  }

  /**
   * The raw records (LIST_RECORD_BYTES each, see `objstore_list` in objstore.h) of up to
   * `out.length / LIST_RECORD_BYTES` objects from slot `cursor` on: how many it wrote, and the
   * cursor to go on from (0: the listing is complete). For listings too large to make an object
   * of each (the dashboard's). With `heads`, `headBytes` of it per record get the first bytes of
   * each object's value if it is sealed in memory (zeros otherwise): what kind of value it is,
   * read without pinning it or copying more.
   */
  listRecords(cursor: number, out: Uint8Array, heads?: { bytes: Uint8Array; headBytes: number }): { count: number; next: number } {
    let capacity = Math.floor(out.length / LIST_RECORD_BYTES);
    if (heads !== undefined) capacity = Math.min(capacity, Math.floor(heads.bytes.length / heads.headBytes));
    const count = this.#symbols.objstore_list(this.#handle, cursor, out, capacity, heads?.bytes ?? noHeads, heads?.headBytes ?? 0);
    return { count, next: this.#result[2] };
  }

  /** Every object of the store, as `objstore memory` shows them. */
  list(): ListedObject[] {
    const recordBytes = LIST_RECORD_BYTES;
    const capacity = 1024;
    const buffer = new Uint8Array(recordBytes * capacity);
    const view = new DataView(buffer.buffer);
    const objects: ListedObject[] = [];
    let cursor = 0;
    do {
      const count = this.#symbols.objstore_list(this.#handle, cursor, buffer, capacity, noHeads, 0);
      for (let i = 0; i < count; i++) {
        const at = i * recordBytes;
        const state = view.getUint32(at + 28, true);
        objects.push({
          id: toHex(buffer.subarray(at, at + ID_BYTES)),
          state: state === 1 ? "writing" : state === 2 ? "memory" : "spilled",
          referencingProcesses: bitCount(view.getUint32(at + 32, true)) + bitCount(view.getUint32(at + 36, true)),
          pinningProcesses: bitCount(view.getUint32(at + 40, true)) + bitCount(view.getUint32(at + 44, true)),
          containedBy: view.getUint32(at + 56, true),
          sizeBytes: view.getFloat64(at + 48, true),
        });
      }
      cursor = this.#result[2];
    } while (cursor !== 0);
    return objects;
  }

  configureSpill(directory: string): void {
    const bytes = encoder.encode(directory);
    const status = this.#symbols.objstore_spill_configure(this.#handle, bytes, bytes.length);
    if (status !== Status.ok) this.#fail(status, "spill directory");
  }

  /** Keeps use under `thresholdFraction` of capacity from a native thread of this process. */
  spillInBackground(thresholdFraction: number): void {
    const status = this.#symbols.objstore_spill_background(this.#handle, thresholdFraction);
    if (status !== Status.ok) this.#fail(status, "background spilling");
  }

  /** Spills least recently used objects; returns the bytes freed (0 when spilling is off). */
  /**
   * Spills least recently used objects to free `targetBytes`; returns the bytes freed. A full
   * spill disk means the store cannot make room: ObjectStoreFullError, saying which disk.
   */
  spill(targetBytes: number): number {
    const status = this.#symbols.objstore_spill(this.#handle, targetBytes);
    if (status === Status.spillDisabled) return 0;
    if (status === Status.noSpace) throw new ObjectStoreFullError(`no room in memory, and spilling cannot make any: ${this.lastError()}`);
    if (status !== Status.ok) this.#fail(status, "spill");
    return this.#result[3];
  }

  /**
   * `sizeBytes` bytes of the segment from `offsetBytes`: cut from a cached window if they lie in
   * one and the windows' budget allows it, else a view of their own.
   */
  bytes(offsetBytes: number, sizeBytes: number): Uint8Array {
    return this.#windowed(offsetBytes, sizeBytes) ?? new Uint8Array(this.ownView(offsetBytes, sizeBytes));
  }

  /** The bytes cut from a window, if they lie in one and the windows' budget allows it. */
  #windowed(offsetBytes: number, sizeBytes: number): Uint8Array | undefined {
    if (this.#windowBytes === this.#segmentBytes) return this.#windows[0]!.subarray(offsetBytes, offsetBytes + sizeBytes);
    const k = Math.floor(offsetBytes / this.#windowBytes);
    const lastK = Math.floor((offsetBytes + Math.max(sizeBytes, 1) - 1) / this.#windowBytes);
    const window = k === lastK ? this.#window(k) : undefined;
    const start = k * this.#windowBytes;
    return window?.subarray(offsetBytes - start, offsetBytes - start + sizeBytes);
  }

  /**
   * A fresh ArrayBuffer over exactly these bytes, for values handed to the user. On V8 it is
   * traded for reserve that V8 already counts, so it starts no collection (lib/ffi/v8_views.ts).
   */
  ownView(offsetBytes: number, sizeBytes: number): ArrayBuffer {
    if (sizeBytes > this.#library.shim.maxViewBytes) {
      throw new ObjstoreError(
        `an object of ${sizeBytes} bytes cannot be viewed on ${this.#library.shim.runtime} ` +
          `(at most ${this.#library.shim.maxViewBytes} bytes per view); use Deno for larger objects`,
      );
    }
    return this.#userViews.view(offsetBytes, sizeBytes);
  }

  /**
   * Window `k`, made if the budget allows (undefined if not). Windows are kept until the store
   * closes, never swapped: a window dropped while a caller still wrote through a `subarray` of
   * it would lose the writes if it were detached, and stay counted by V8 until collected if not.
   */
  #window(k: number): Uint8Array | undefined {
    const window = this.#windows[k];
    if (window !== undefined || this.#windowCount === this.#maxWindows) return window;
    const start = k * this.#windowBytes;
    const made = new Uint8Array(this.#library.shim.view(this.#base, start, Math.min(this.#windowBytes, this.#segmentBytes - start)));
    this.#windows[k] = made;
    this.#windowCount += 1;
    return made;
  }
}
