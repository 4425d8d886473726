/**
 * Views for the program on V8 (Node, Deno) that do not grow V8's count of external memory, so
 * that the first `get` of a large object does not start a garbage collection.
 *
 * Every view the program gets is a fresh ArrayBuffer over the segment (its pin follows that
 * buffer: lib/pins.ts). V8 counts the length of each such buffer as external memory
 * (`BackingStore::PerIsolateAccountingLength`; only shared and empty-deleter backing stores
 * count 0, and neither koffi nor Deno makes those) and checks its limits whenever the count
 * grows 128 KiB past its last check (`Heap::HandleExternalMemoryInterrupt`, synchronously):
 * - past the low point since the last full collection + half the old generation's maximum, it
 *   runs a full collection on the spot (`external_memory_hard_limit`; 3-30 ms here);
 * - past the global limit (heap + external memory, computed at the last full collection) it
 *   starts incremental marking (a scavenge first: 0.2-1 ms here), and finishes it at once when
 *   the limit is overshot by far.
 * The count going down never triggers anything.
 *
 * So each store keeps a reserve: buffers over its segment that nothing reads (`pieces`), made
 * at open and counted by V8 once, there. A view of `n` bytes first detaches reserve buffers of
 * at least `n` bytes (`transfer(0)`: V8 uncounts them at once), then is made: V8's count goes
 * down, then back to at most where it was, so neither limit can be crossed by the view. When
 * the program's view is collected, a piece of its size goes back into the reserve. The view is
 * still its own buffer: the pin rule does not change.
 *
 * What remains: the dip can move V8's low point, and then the view's increment runs V8's check;
 * if the program's own allocations (or the reserve's refill after a collection) have already
 * put V8 past its global limit, that check starts incremental marking inside the `get`.
 *
 * Views smaller than two pieces (64 MiB) are made plainly, counted as before: a swap costs tens
 * of µs (a piece detached, its rest remade: two of V8's checks instead of one), more than V8's
 * check of a small view costs, and a view of two pieces or more leaves over less than half of
 * itself, which the reserve owes itself rather than remaking it inside the `get`. What a view
 * needs beyond the reserve is counted as before too.
 */
import v8 from "node:v8";
import type { UserViews } from "./symbols.ts";

/**
 * Windows over the segment on V8: small enough that what the library keeps counted does not sit
 * near V8's cap whatever the store's size (a window over all of a 7 GiB default store did, and
 * every large view then cost a full collection, 10-45 ms), large enough that most small objects
 * of a busy store fall in one (a view of their own costs 1-4 µs more).
 */
export const V8_WINDOW_BYTES = 256 * 1024 * 1024;

/** A quarter of V8's heap limit in windows (1 GiB with the default 4 GiB heap), which leaves
 * the reserve (`reserveBytesFor`) its full size. */
export const V8_WINDOW_BUDGET_BYTES = Math.max(V8_WINDOW_BYTES, v8.getHeapStatistics().heap_size_limit / 4);

/** The reserve is made in buffers of this size (collected views give back pieces of their own
 * size): a view sinks V8's count by at most its own size + this much before it is made. */
const PIECE_BYTES = 32 * 1024 * 1024;

/**
 * The reserve's size for a store of `segmentBytes` whose windows V8 may count up to
 * `countedBytes`: at most the segment; at most half V8's heap limit, less two pieces, since a
 * swap dips V8's count by up to the view + one piece and the hard limit is half the old
 * generation's maximum; and small enough that what the library keeps counted (windows +
 * reserve) stays within half V8's global cap (twice the old generation's maximum). Past that
 * cap V8's global limit falls below what is counted, and every external allocation of the
 * program would start a collection. No reserve if the windows leave less than a quarter of the
 * heap limit.
 */
export function reserveBytesFor(segmentBytes: number, countedBytes: number): number {
  const heapLimitBytes = v8.getHeapStatistics().heap_size_limit;
  const hardLimitRoomBytes = heapLimitBytes / 2 - 2 * PIECE_BYTES;
  const globalRoomBytes = heapLimitBytes - countedBytes;
  // Windows already near V8's cap leave room for a reserve too small for the views that need it,
  // which would only add to what V8 counts there (measured: the default store's first get of
  // 800 MiB on Node, 1.6-3 ms without a reserve of 192 MiB, 6-8 ms with it).
  if (globalRoomBytes < heapLimitBytes / 4) return 0;
  return Math.max(0, Math.floor(Math.min(segmentBytes, hardLimitRoomBytes, globalRoomBytes)));
}

/**
 * One registry for the views of every store, never collected itself. With one per store, Node 24
 * (V8 13.6) stopped running the cleanup callbacks of other registries once stores had come and
 * gone (the pins' in lib/pins.ts: their buffers were collected, their pins stayed; seen in
 * tests/many_objects.test.ts followed by tests/spill.test.ts).
 */
const collectedViews = new FinalizationRegistry<{ views: ReservedViews; bytes: number }>(({ views, bytes }) => views.giveBack(bytes));

/** Views that trade reserve for counted bytes, keeping V8's count of external memory flat. */
export class ReservedViews implements UserViews {
  readonly #make: (offsetBytes: number, lengthBytes: number) => ArrayBuffer;
  readonly #pieceBytes: number;
  /** Views of at least this size (two pieces) are traded for reserve. */
  readonly swapMinBytes: number;
  /** Buffers over the segment that nothing reads (see `#take`). */
  readonly #pieces: ArrayBuffer[] = [];
  #reserveBytes = 0;
  /** Reserve owed back (bytes too few for a piece, or left over by a large view). */
  #owedBytes = 0;
  /** Reserve lent to the program's live views. */
  #lentBytes = 0;
  /** What each live view took from the reserve (for `retire`). */
  readonly #lentTo = new WeakMap<ArrayBuffer, number>();
  #closed = false;

  /**
   * `make(offsetBytes, lengthBytes)` views the segment (for the program's views and for the
   * reserve's pieces, which are views from offset 0 nobody reads).
   */
  constructor(make: (offsetBytes: number, lengthBytes: number) => ArrayBuffer, reserveBytes: number, pieceBytes = PIECE_BYTES) {
    this.#make = make;
    this.#pieceBytes = Math.min(pieceBytes, reserveBytes);
    this.swapMinBytes = 2 * pieceBytes;
    this.#owedBytes = reserveBytes;
    this.#refill();
  }

  /** Bytes the reserve holds now. */
  get reserveBytes(): number {
    return this.#reserveBytes;
  }

  /** Bytes the reserve holds, owes itself, and has lent to live views: constant. */
  get capacityBytes(): number {
    return this.#reserveBytes + this.#owedBytes + this.#lentBytes;
  }

  view(offsetBytes: number, lengthBytes: number): ArrayBuffer {
    if (this.#closed || lengthBytes < this.swapMinBytes || this.#reserveBytes === 0) return this.#make(offsetBytes, lengthBytes);
    const takenBytes = this.#take(lengthBytes);
    const view = this.#make(offsetBytes, lengthBytes);
    const lentBytes = Math.min(takenBytes, lengthBytes);
    this.#lentBytes += lentBytes;
    this.#lentTo.set(view, lentBytes);
    collectedViews.register(view, { views: this, bytes: lentBytes }, view);
    // Less than a piece (or the piece that fit) is left over: owed, not remade inside the get.
    if (takenBytes > lengthBytes) this.#owedBytes += takenBytes - lengthBytes;
    return view;
  }

  /**
   * Detaches pieces of at least `lengthBytes` in all (or all there are); returns their size.
   * The smallest piece that covers the view alone if there is one (a view of a size seen before
   * finds the piece its predecessor gave back), else pieces from the end.
   */
  #take(lengthBytes: number): number {
    let fit = -1;
    for (let i = 0; i < this.#pieces.length; i++) {
      const size = this.#pieces[i].byteLength;
      if (size >= lengthBytes && (fit < 0 || size < this.#pieces[fit].byteLength)) fit = i;
    }
    let takenBytes = 0;
    if (fit >= 0) {
      const piece = this.#pieces[fit];
      this.#pieces[fit] = this.#pieces[this.#pieces.length - 1];
      this.#pieces.pop();
      takenBytes = piece.byteLength;
      piece.transfer(0);
    }
    while (takenBytes < lengthBytes && this.#pieces.length > 0) {
      const piece = this.#pieces.pop()!;
      takenBytes += piece.byteLength;
      piece.transfer(0);
    }
    this.#reserveBytes -= takenBytes;
    return takenBytes;
  }

  /** Detaches `view` (V8 uncounts it at once) and takes back what it was lent now, not when
   * it is collected: a put's view of 800 MiB would otherwise leave the reserve short. */
  retire(view: ArrayBuffer): void {
    const lentBytes = this.#lentTo.get(view);
    view.transfer(0);
    if (lentBytes === undefined) return;
    this.#lentTo.delete(view);
    collectedViews.unregister(view);
    this.giveBack(lentBytes);
  }

  /** Detaches the reserve (the store is closing; its segment is about to be unmapped). */
  close(): void {
    this.#closed = true;
    for (const piece of this.#pieces) piece.transfer(0);
    this.#pieces.length = 0;
    this.#reserveBytes = 0;
    this.#owedBytes = 0;
  }

  /**
   * A view was collected (`collectedViews`): it comes back as a piece of its own size, so that
   * the next view of that size takes exactly it (V8's count then dips no lower than before the
   * piece was made). A view the reserve could cover only in part comes back as what it took.
   */
  giveBack(bytes: number): void {
    this.#lentBytes -= bytes;
    if (this.#closed) return;
    this.#addPiece(bytes);
    this.#refill();
  }

  /** Makes what is owed into whole pieces (the rest waits for more). */
  #refill(): void {
    while (this.#pieceBytes > 0 && this.#owedBytes >= this.#pieceBytes) {
      this.#owedBytes -= this.#pieceBytes;
      this.#addPiece(this.#pieceBytes);
    }
  }

  /** One more piece of `bytes`, or owed if less than a piece. */
  #addPiece(bytes: number): void {
    if (bytes < this.#pieceBytes) {
      this.#owedBytes += bytes;
      return;
    }
    this.#pieces.push(this.#make(0, bytes));
    this.#reserveBytes += bytes;
  }
}
