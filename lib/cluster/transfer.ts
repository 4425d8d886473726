/**
 * Objects moved between nodes, by the native library (zig/src/transfer/): a node's store
 * served to the other nodes of its cluster, and objects pulled from them into it. Bytes never
 * pass through JavaScript: the sender writes from shared memory to the socket, the receiver's
 * kernel into the new object, each chunk checked by CRC32C.
 */
import type { Library } from "../ffi/load.ts";
import { isNullPointer, type NativePointer, type NativeSymbols } from "../ffi/symbols.ts";
import { lastError } from "../store/native_store.ts";
import { errorFor, Status } from "../store/status.ts";
import { ObjectStoreFullError, ObjstoreError } from "../errors.ts";

/** Where a node listens for transfers. */
export interface TransferAddress {
  /** An IPv4 address, dotted ("127.0.0.1"; "0.0.0.0" to serve on every address). */
  readonly host: string;
  readonly port: number;
}

export interface PullOptions {
  /** Connections for one large object (1 to 16). */
  readonly connections?: number;
  /** How long a source may wait for the object to be sealed before it answers. */
  readonly waitMs?: number;
}

/** How a pull ended, when it did not fail: the object's size, or why there was nothing to pull. */
export type PullOutcome = number | "exists" | "not-sealed";

/**
 * A pull found no room for the object in this node's store, even after evicting the copies of
 * other nodes' objects: the program makes `sizeBytes` of room (lib/room.ts) and pulls again.
 */
export class NoRoomForPullError extends ObjectStoreFullError {
  readonly sizeBytes: number;

  constructor(sizeBytes: number, message: string) {
    super(message);
    this.sizeBytes = sizeBytes;
  }
}

/** A source's record in a pull's list: IPv4 address, then port, big-endian. */
const SOURCE_RECORD_BYTES = 6;
const SOURCES_MAX = 16;
const POLL_MAX_MS = 16;
const encoder = new TextEncoder();

/** The four bytes of a dotted IPv4 address; throws naming the address if it is not one. */
export function ipv4Bytes(host: string): Uint8Array {
  const parts = host.split(".");
  const bytes = parts.map((part) => (/^\d{1,3}$/.test(part) ? Number(part) : NaN));
  if (bytes.length !== 4 || bytes.some((b) => !(b >= 0 && b <= 255))) {
    throw new ObjstoreError(`'${host}' is not an IPv4 address (like 198.18.0.2): nodes reach each other over IPv4`);
  }
  return new Uint8Array(bytes);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ObjstoreError(`port must be an integer from 0 to 65535, got ${port}`);
}

function tokenBytes(token: string): Uint8Array {
  const bytes = encoder.encode(token);
  if (bytes.length === 0 || bytes.length > 1024) {
    throw new ObjstoreError(`the cluster token must be 1 to 1024 bytes, got ${bytes.length}: set --token or OBJSTORE_CLUSTER_TOKEN`);
  }
  return bytes;
}

/** A node's store as the transfer threads see it (an attachment of their own). */
export class TransferEndpoint {
  readonly #symbols: NativeSymbols;
  #handle: NativePointer | undefined;
  readonly #servers = new Set<TransferServer>();
  readonly #pulls = new Set<Promise<PullOutcome>>();

  private constructor(symbols: NativeSymbols, handle: NativePointer) {
    this.#symbols = symbols;
    this.#handle = handle;
  }

  /** Attaches to the existing store `storeName`. */
  static open(library: Library, storeName: string): TransferEndpoint {
    const name = encoder.encode(storeName);
    const handle = library.symbols.objstore_endpoint_open(name, name.length);
    if (isNullPointer(handle)) {
      throw errorFor(library.symbols.objstore_last_status(), lastError(library.symbols), `transfers: cannot attach to store '${storeName}'`);
    }
    return new TransferEndpoint(library.symbols, handle);
  }

  /** Set when `close` starts: no pull starts after, so none can outlive the endpoint. */
  #closing = false;

  #open(): NativePointer {
    if (this.#handle === undefined || this.#closing) throw new ObjstoreError("transfers: the endpoint is closed");
    return this.#handle;
  }

  /** Serves this store to nodes that present `token`, until the server is stopped. */
  serve(address: TransferAddress, token: string): TransferServer {
    checkPort(address.port);
    const ip = ipv4Bytes(address.host);
    const ipNumber = ((ip[0] << 24) | (ip[1] << 16) | (ip[2] << 8) | ip[3]) >>> 0;
    const secret = tokenBytes(token);
    const handle = this.#symbols.objstore_serve(this.#open(), ipNumber, address.port, secret, secret.length);
    if (isNullPointer(handle)) {
      throw errorFor(this.#symbols.objstore_last_status(), lastError(this.#symbols), `transfers: cannot serve on ${address.host}:${address.port}`);
    }
    const server = new TransferServer(this.#symbols, handle, address.host, () => this.#servers.delete(server));
    this.#servers.add(server);
    return server;
  }

  /**
   * Pulls object `id` from the first of `sources` that holds it into this store. Resolves to
   * its size once it is sealed here; to "exists" if this node has it or is pulling it already
   * (wait for its seal as for any object); to "not-sealed" if its sources are still writing
   * it after `waitMs`. The object is visible here as being written from the start, so other
   * processes of the node wait for its seal. Rejects with ObjectLostError (no source has it,
   * or none could send it), ClusterAuthError or ObjectStoreFullError.
   */
  pull(id: Uint8Array, sources: readonly TransferAddress[], token: string, options: PullOptions = {}): Promise<PullOutcome> {
    if (sources.length === 0 || sources.length > SOURCES_MAX) {
      throw new ObjstoreError(`transfers: a pull needs 1 to ${SOURCES_MAX} sources, got ${sources.length}`);
    }
    const records = new Uint8Array(sources.length * SOURCE_RECORD_BYTES);
    sources.forEach((source, i) => {
      checkPort(source.port);
      records.set(ipv4Bytes(source.host), i * SOURCE_RECORD_BYTES);
      new DataView(records.buffer).setUint16(i * SOURCE_RECORD_BYTES + 4, source.port);
    });
    const secret = tokenBytes(token);
    const pull = this.#symbols.objstore_pull_start(this.#open(), id, records, sources.length, secret, secret.length, options.connections ?? 4, options.waitMs ?? 0);
    if (isNullPointer(pull)) throw errorFor(this.#symbols.objstore_last_status(), lastError(this.#symbols), "transfers: cannot start a pull");
    const done = this.#finishWhenDone(pull);
    this.#pulls.add(done);
    void done.catch(() => {}).finally(() => this.#pulls.delete(done));
    return done;
  }

  async #finishWhenDone(pull: NativePointer): Promise<PullOutcome> {
    let waitMs = 0;
    while (this.#symbols.objstore_pull_done(pull) === 0) {
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      waitMs = Math.min(POLL_MAX_MS, waitMs * 2 + 1);
    }
    const out = new Float64Array(8);
    const status = this.#symbols.objstore_pull_finish(pull, out);
    if (status === Status.exists) return "exists";
    if (status === Status.notSealed) return "not-sealed";
    if (status === Status.storeFull) throw new NoRoomForPullError(out[1], `transfers: pull: ${lastError(this.#symbols)}`);
    if (status !== Status.ok) throw errorFor(status, lastError(this.#symbols), "transfers: pull");
    return out[1];
  }

  /** Gives up the endpoint's reference on a pulled object: take one of your own first. */
  handOver(id: Uint8Array): void {
    const status = this.#symbols.objstore_endpoint_hand_over(this.#open(), id);
    if (status !== Status.ok) throw errorFor(status, lastError(this.#symbols), "transfers: hand over");
  }

  /** Stops every server, waits for every pull, then detaches (dropping what it still holds). */
  async close(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined || this.#closing) return;
    this.#closing = true;
    for (const server of [...this.#servers]) server.stop();
    await Promise.allSettled([...this.#pulls]);
    this.#handle = undefined;
    this.#symbols.objstore_endpoint_close(handle);
  }
}

/** A running transfer server. */
export class TransferServer {
  readonly #symbols: NativeSymbols;
  #handle: NativePointer | undefined;
  readonly #onStop: () => void;
  /** The address it listens on (the port is the one chosen when 0 was asked). */
  readonly address: TransferAddress;

  constructor(symbols: NativeSymbols, handle: NativePointer, host: string, onStop: () => void) {
    this.#symbols = symbols;
    this.#handle = handle;
    this.#onStop = onStop;
    this.address = { host, port: symbols.objstore_serve_port(handle) };
  }

  /** Disconnects every peer and stops listening. */
  stop(): void {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    this.#symbols.objstore_serve_stop(handle);
    this.#onStop();
  }
}
