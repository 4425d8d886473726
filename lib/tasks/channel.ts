/**
 * The message channel between the driver and one worker: two byte rings in shared memory
 * (`zig/src/Channel.zig`), so a message costs a copy, not a pipe write, a wake-up and a read.
 *
 * A side that is not looking at its inbound ring is *parked*; a send that finds the other side
 * parked rings its doorbell (`ringPeer`: a byte on the worker's stdin or stdout, which the
 * peer's event loop watches), and the peer `pump`s. A side waiting for a quick reply spins on
 * the ring instead (`listen`, then `receive` with a spin), and nobody rings anything.
 */
import { readdirSync, statSync, unlinkSync } from "node:fs";
import process from "node:process";
import type { Library } from "../ffi/load.ts";
import { isNullPointer, type NativePointer, type NativeSymbols } from "../ffi/symbols.ts";
import { ObjstoreError } from "../errors.ts";
import { errorFor } from "../store/status.ts";
import { lastError } from "../store/native_store.ts";
import { toHex } from "../ids.ts";

const SHM_DIRECTORY = "/dev/shm";
/** Long enough that any live worker has opened (and unlinked) its channel. */
const ORPHAN_AGE_MS = 60_000;

function channelPrefix(storeName: string): string {
  return `objstore-ch-${storeName}-`;
}

/** True for the name of a channel's file in /dev/shm (not a store's). */
export function isChannelFile(fileName: string): boolean {
  return /^objstore-ch-.+-[0-9a-f]{16}$/.test(fileName);
}

/**
 * Removes channel files of `storeName` that no worker ever opened (their driver was killed
 * first), once no process uses the store. Returns how many it removed.
 */
export function removeOrphanedChannels(storeName: string): number {
  const pattern = new RegExp(`^${channelPrefix(storeName).replaceAll(".", "\\.")}[0-9a-f]{16}$`);
  let removed = 0;
  for (const name of readdirSync(SHM_DIRECTORY)) {
    if (!pattern.test(name)) continue;
    const path = `${SHM_DIRECTORY}/${name}`;
    try {
      if (Date.now() - statSync(path).mtimeMs < ORPHAN_AGE_MS) continue;
      unlinkSync(path);
      removed += 1;
    } catch { /* gone meanwhile */ }
  }
  return removed;
}

/**
 * Removes channel files whose store is gone (its last process was killed before its workers
 * opened them), once they are a minute old. Returns how many it removed.
 */
export function removeChannelsOfMissingStores(): number {
  let removed = 0;
  const names = readdirSync(SHM_DIRECTORY);
  const present = new Set(names);
  for (const name of names) {
    if (!isChannelFile(name)) continue;
    const storeName = name.slice("objstore-ch-".length, -"-0123456789abcdef".length);
    if (present.has(`objstore-${storeName}`)) continue;
    const path = `${SHM_DIRECTORY}/${name}`;
    try {
      if (Date.now() - statSync(path).mtimeMs < ORPHAN_AGE_MS) continue;
      unlinkSync(path);
      removed += 1;
    } catch { /* gone meanwhile */ }
  }
  return removed;
}

/** Which end of the channel this process is. */
export const Side = { driver: 0, worker: 1 } as const;
export type Side = typeof Side[keyof typeof Side];

/** Per direction; a send that does not fit waits for room (OBJSTORE_CHANNEL_BYTES for tests). */
const CAPACITY_BYTES = Number(process.env.OBJSTORE_CHANNEL_BYTES ?? 1 << 20);
const WAKE_PEER = 1;
const BLOCKED = 2;
const RECEIVE_CHUNK_BYTES = 64 * 1024;
/** The most one native send takes (its result packs the count into an i32). */
const SEND_MAX_BYTES = 1 << 28;

const encoder = new TextEncoder();
const nameBytes = (name: string) => encoder.encode(name);

export class Channel {
  readonly name: string;
  readonly #symbols: NativeSymbols;
  readonly #handle: NativePointer;
  readonly #side: Side;
  readonly #ringPeer: () => void;
  /** Bytes sent while the ring was full, in order; they go when the peer makes room. */
  readonly #waiting: Uint8Array[] = [];
  readonly #inbound = new Uint8Array(RECEIVE_CHUNK_BYTES);
  readonly #decoder = new TextDecoder();
  #closed = false;

  private constructor(library: Library, name: string, handle: NativePointer, side: Side, ringPeer: () => void) {
    this.name = name;
    this.#symbols = library.symbols;
    this.#handle = handle;
    this.#side = side;
    this.#ringPeer = ringPeer;
  }

  /** Makes a new channel for a worker about to start; the driver's side starts parked (the
   * worker's first messages ring), the worker's listening until its first `park`. */
  static create(library: Library, storeName: string, ringPeer: () => void): Channel {
    const name = `${channelPrefix(storeName)}${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
    const bytes = nameBytes(name);
    const handle = library.symbols.objstore_channel_create(bytes, bytes.length, CAPACITY_BYTES);
    if (isNullPointer(handle)) throw Channel.#failure(library, `create channel ${name}`);
    const channel = new Channel(library, name, handle, Side.driver, ringPeer);
    channel.park();
    return channel;
  }

  /** Opens the channel the driver made for this worker, and removes its name (only the two
   * processes need it, and they have it mapped). */
  static open(library: Library, name: string | undefined, ringPeer: () => void): Channel {
    if (!name) throw new ObjstoreError("OBJSTORE_CHANNEL is not set: workers are started by the driver");
    const bytes = nameBytes(name);
    const handle = library.symbols.objstore_channel_open(bytes, bytes.length);
    if (isNullPointer(handle)) throw Channel.#failure(library, `open channel ${name}`);
    library.symbols.objstore_channel_unlink(bytes, bytes.length);
    return new Channel(library, name, handle, Side.worker, ringPeer);
  }

  static #failure(library: Library, what: string): Error {
    return errorFor(library.symbols.objstore_last_status(), lastError(library.symbols), what);
  }

  /** Sends `text` (whole protocol lines); what does not fit now goes when the peer makes room. */
  send(text: string): void {
    if (this.#closed || text === "") return;
    const bytes = encoder.encode(text);
    if (this.#waiting.length > 0) this.#waiting.push(bytes);
    else this.#write(bytes);
  }

  /** Sends what waited for room; the peer rang because it made some. */
  retry(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      if (!this.#write(this.#waiting.shift()!)) return;
    }
  }

  /** Writes `bytes`; false if some had to wait (kept at the head of `#waiting`). */
  #write(bytes: Uint8Array): boolean {
    let written = 0;
    while (written < bytes.length) {
      const piece = bytes.subarray(written, written + SEND_MAX_BYTES);
      const result = this.#symbols.objstore_channel_send(this.#handle, this.#side, piece, piece.length);
      if (result < 0) throw new ObjstoreError(`channel ${this.name}: send refused (status ${-result})`);
      if (result & WAKE_PEER) this.#ringPeer();
      written += result >>> 2;
      if (result & BLOCKED) break;
    }
    if (written === bytes.length) return true;
    this.#waiting.unshift(bytes.subarray(written));
    return false;
  }

  /** What has arrived ("" if nothing), spinning up to `spinMicros` if nothing has yet. */
  receive(spinMicros = 0): string {
    if (this.#closed) return "";
    let text = "";
    let spin = spinMicros;
    while (true) {
      const result = this.#symbols.objstore_channel_receive(this.#handle, this.#side, this.#inbound, this.#inbound.length, spin);
      if (result < 0) throw new ObjstoreError(`channel ${this.name}: receive refused (status ${-result})`);
      spin = 0;
      const count = result >>> 2;
      if (result & WAKE_PEER) this.#ringPeer();
      if (count === 0) return text;
      text += this.#decoder.decode(this.#inbound.subarray(0, count), { stream: true });
      if (count < this.#inbound.length) return text;
    }
  }

  /** Hands all that has arrived to `read`, until nothing more has. */
  receiveAll(read: (text: string) => void): void {
    let text: string;
    while ((text = this.receive()) !== "") read(text);
  }

  /**
   * Hands all that has arrived to `read`, then parks (the doorbell rang, or a spin ended). If
   * `read` throws, the channel is pumped again on the next turn: a side left listening would
   * never be rung again.
   */
  pump(read: (text: string) => void): void {
    try {
      this.retry();
      do this.receiveAll(read);
      while (!this.park());
    } catch (error) {
      setTimeout(() => this.pump(read), 0);
      throw error;
    }
  }

  /**
   * Listens, and spins up to `spinMicros` until `done()`, handing what arrives to `read` and
   * sending what waited for room; returns `done()`. The channel stays listening: the caller
   * parks it (`pump`) once it stops looking.
   */
  spinUntil(read: (text: string) => void, spinMicros: number, done: () => boolean): boolean {
    this.listen();
    const deadline = performance.now() + spinMicros / 1000;
    while (!done()) {
      const leftMicros = Math.floor((deadline - performance.now()) * 1000);
      if (leftMicros <= 0) break;
      this.retry();
      const text = this.receive(leftMicros);
      if (text !== "") read(text);
    }
    return done();
  }

  /** Stops looking: later sends ring the doorbell. False if something arrived meanwhile
   * (then it stays awake: receive it, and park again). */
  park(): boolean {
    if (this.#closed) return true;
    const result = this.#symbols.objstore_channel_park(this.#handle, this.#side);
    if (result < 0) throw new ObjstoreError(`channel ${this.name}: park refused (status ${-result})`);
    return result === 1;
  }

  /** Looks again (a spinning `receive` follows): the peer's sends need not ring. */
  listen(): void {
    if (!this.#closed) this.#symbols.objstore_channel_listen(this.#handle, this.#side);
  }

  /** Unmaps the rings; removes the name too, in case the worker never opened it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const bytes = nameBytes(this.name);
    this.#symbols.objstore_channel_unlink(bytes, bytes.length);
    this.#symbols.objstore_channel_close(this.#handle);
  }
}
