/**
 * The session between `init()` and `shutdown()`: this process's attachment to its node's
 * store, the ids it mints, and the janitor that reclaims what dead processes held.
 *
 * A program that ends without `shutdown()` leaves the store through the library (it closes
 * what is open at exit, and on SIGINT/SIGTERM/SIGHUP: zig/src/exits.zig); what only
 * TypeScript knows, its worker processes, goes in the `exit` event.
 */
import { chmodSync, lstatSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import process from "node:process";
import { NotInitializedError, ObjstoreError } from "./errors.ts";
import { loadLibrary } from "./ffi/load.ts";
import type { Library } from "./ffi/load.ts";
import { setRefOwner } from "./object_ref.ts";
import { forgetHoldings, releaseDroppedRefs } from "./dropped_refs.ts";
import type { ObjectRef, RefOwner } from "./object_ref.ts";
import { NativeStore } from "./store/native_store.ts";
import { ID_BYTES, IdMinter, toHex } from "./ids.ts";
import { ClusterClient, findLocalNode } from "./cluster/cluster.ts";
import { stampNodeNumber, stampOwner } from "./cluster/node_number.ts";
import { Status } from "./store/status.ts";
import { type InitOptions, resolveOptions, type ResolvedOptions } from "./options.ts";
import { removeOrphanedChannels } from "./tasks/channel.ts";
import { removeAbandonedStores } from "./abandoned.ts";
import { type S3SpillConfig, S3Spill } from "./spill/s3_spill.ts";

/** How often dead processes' references are reclaimed (SPEC: within a second). */
const MAINTAIN_INTERVAL_MS = 250;
/** How a worker learns its store spills to S3: the driver's `spill` option, as JSON. */
const SPILL_ENV = "OBJSTORE_SPILL";
/** How a worker learns its node's number in a cluster, to mint ids other nodes can locate. */
const NODE_NUMBER_ENV = "OBJSTORE_NODE_NUMBER";
/** How a worker learns its cluster's address, to fetch and hold other nodes' objects. */
const CLUSTER_ADDRESS_ENV = "OBJSTORE_CLUSTER_ADDRESS";
/** A worker's environment in a cluster: its driver's name there, which the driver's actor
 * handles carry when they leave the worker (lib/tasks/remote.ts). */
export const ACTOR_OWNER_ENV = "OBJSTORE_ACTOR_OWNER";

/** What `init()` resolves to. */
export interface InitResult {
  /** The name of this node's store: pass it as `storeName` to share the store with other processes. */
  storeName: string;
  /** This process's node, as hex. */
  nodeId: string;
}

/**
 * What the session needs of the tasks layer it holds (lib/tasks/: the driver's scheduler, or a
 * worker's forwarder to its driver): to end it. The tasks layer starts itself on the first
 * remote call and hands itself over with `setTasks`, so this module never imports it (the
 * layers go ffi, codec → store → session → objects → tasks, each importing only below).
 */
export interface TasksOfSession {
  /** Ends what the tasks layer started (its workers), letting them leave. */
  close(): Promise<void>;
  /** The process is exiting (no event loop turns again): ends what it started, synchronously. */
  abandon(): void;
  /**
   * In a cluster: `ref`'s object is lost with its node; true if the task that made it runs
   * again (`ref.producer` is set: a get waits for it), false if nothing can make it again.
   */
  rebuild?(ref: ObjectRef): boolean;
}

/** What a session is made with beyond its store and options. */
interface SessionParts {
  /** Copies spill files to S3 and reads them back, when the store spills there. */
  s3Spill?: S3Spill;
  /** Whether this process copies spill files out (default true; workers only read copies back). */
  copiesOut?: boolean;
  /** The cluster joined through this machine's node (`init({ address })`). */
  cluster?: ClusterClient;
  /** A worker's node number in its cluster (its driver's session has `cluster`). */
  nodeNumber?: number;
}

export class Session implements RefOwner {
  readonly store: NativeStore;
  readonly library: Library;
  readonly options: ResolvedOptions;
  readonly nodeId: string;
  #ids: IdMinter;
  readonly #janitor: ReturnType<typeof setInterval>;
  /** Copies spill files to S3 and reads them back, when the store spills there. */
  readonly s3Spill: S3Spill | undefined;

  /** Whether this process copies spill files out (workers only read copies back). */
  readonly #copiesOut: boolean;

  /** The cluster this process joined through its node (`init({ address })`), if any. */
  cluster: ClusterClient | undefined;
  /** The number of this process's node in its cluster, the first 4 bytes of the ids it mints (0: none). */
  nodeNumber: number;
  /** The cluster's directory address, passed on to workers. */
  #clusterAddress: string | undefined;

  constructor(library: Library, store: NativeStore, options: ResolvedOptions, parts: SessionParts = {}) {
    const { s3Spill, copiesOut = true, cluster, nodeNumber = 0 } = parts;
    this.library = library;
    this.store = store;
    this.options = options;
    this.s3Spill = s3Spill;
    this.#copiesOut = copiesOut;
    this.cluster = cluster;
    this.#clusterAddress = options.address;
    this.nodeNumber = cluster?.node.nodeNumber ?? nodeNumber;
    this.nodeId = cluster?.node.nodeId ?? toHex(randomBytes(16));
    this.#ids = Session.#minter(this.nodeNumber);
    this.#janitor = setInterval(() => this.#tidy(), MAINTAIN_INTERVAL_MS);
    library.shim.unrefTimer(this.#janitor);
    process.on("exit", this.#exiting);
  }

  /** The process is exiting without `shutdown()`: its workers go now (the library, closing the
   * store at exit, then finds them dead and removes the store if no one else is left). */
  readonly #exiting = () => {
    this.closed = true;
    this.#tasks?.abandon();
  };

  #tidy(): void {
    this.store.maintain();
    releaseDroppedRefs(false);
    if (this.s3Spill !== undefined && this.#copiesOut) {
      this.s3Spill.pump().catch((error) => process.emitWarning(`objstore: S3 spilling: ${(error as Error).message}`));
    }
  }

  static #minter(nodeNumber: number): IdMinter {
    const idPrefix = randomBytes(ID_BYTES - 8);
    if (nodeNumber !== 0) {
      stampNodeNumber(idPrefix, nodeNumber);
      stampOwner(idPrefix, { nodeNumber, pid: process.pid });
    }
    return new IdMinter(idPrefix);
  }

  /**
   * @internal A node's own process joins its cluster once registered (lib/node.ts): from now
   * on its ids carry the node's number, and its workers fetch from the cluster. Before any
   * id is minted.
   */
  joinCluster(cluster: ClusterClient, address: string): void {
    if (this.cluster !== undefined) throw new ObjstoreError("joinCluster: this process is in a cluster already");
    this.cluster = cluster;
    this.#clusterAddress = address;
    this.nodeNumber = cluster.node.nodeNumber;
    this.#ids = Session.#minter(this.nodeNumber);
  }

  /** What a worker process needs in its environment beyond the store's name. */
  workerEnvironment(): Record<string, string> {
    const spill = this.options.spill;
    const environment: Record<string, string> = spill !== false && spill.type === "s3" ? { [SPILL_ENV]: JSON.stringify(spill) } : {};
    if (this.nodeNumber !== 0) environment[NODE_NUMBER_ENV] = String(this.nodeNumber);
    if (this.cluster !== undefined && this.#clusterAddress !== undefined) environment[CLUSTER_ADDRESS_ENV] = this.#clusterAddress;
    if (this.cluster !== undefined) environment[ACTOR_OWNER_ENV] = this.cluster.borrows.holder;
    return environment;
  }

  /** A fresh object id: a per-process prefix (in a cluster: its node and owner,
   * lib/cluster/node_number.ts) and a counter, so no two processes collide (lib/ids.ts). */
  newId(): Uint8Array {
    return this.#ids.next();
  }

  /** A fresh id for an object node `nodeNumber` will make (a task's result run there). */
  newIdOn(nodeNumber: number): Uint8Array {
    const id = this.#ids.next();
    stampNodeNumber(id, nodeNumber);
    return id;
  }

  addRef(id: Uint8Array): "held" | "unsealed" | "absent" {
    // A ref to another node's object is a borrow: its node keeps it while this process holds
    // one (lib/cluster/borrows.ts); the first get fetches it.
    if (this.cluster?.mayHoldElsewhere(id)) {
      this.cluster.borrows.take(id, toHex(id));
      return "held";
    }
    const status = this.store.addRef(id);
    if (status === Status.ok) return "held";
    // Busy: another process's transition did not end within the spin; like an object still
    // being written, it is taken on a later try, never given up for gone.
    if (status === Status.notSealed || status === Status.busy) return "unsealed";
    return "absent";
  }

  dropRef(id: Uint8Array): void {
    if (this.closed) return;
    if (this.cluster?.mayHoldElsewhere(id)) this.cluster.borrows.give(toHex(id));
    else this.store.dropRef(id);
  }

  releaseKeptObjects(): void {
    this.library.shim.releaseKeptObjects();
  }

  collectGarbage(): void {
    this.library.shim.releaseKeptObjects();
    this.library.shim.collectGarbage();
  }

  /** True after shutdown: late finalizers of this session's refs and views do nothing. */
  closed = false;
  #tasks: TasksOfSession | undefined;

  /** The tasks layer of this process, once started (see `TasksOfSession`). */
  tasks(): TasksOfSession | undefined {
    return this.#tasks;
  }

  /** @internal Called by the tasks layer as it starts (lib/tasks/remote.ts, worker_main.ts). */
  setTasks(tasks: TasksOfSession): void {
    this.#tasks = tasks;
  }

  async close(): Promise<void> {
    process.off("exit", this.#exiting);
    await this.#tasks?.close();
    this.closed = true;
    forgetHoldings(this);
    clearInterval(this.#janitor);
    // Before the store goes: the borrows release the copies they hold in it.
    await this.cluster?.close();
    await this.s3Spill?.idle();
    // The last process removes the store, its spill files and its default spill folder.
    const wasLast = this.store.close();
    if (wasLast) {
      removeOrphanedChannels(this.store.name);
      await this.s3Spill?.removeAll().catch((error) => {
        process.emitWarning(`objstore: could not delete the S3 copies of store ${this.store.name}'s spill files: ${(error as Error).message}`);
      });
    }
    this.s3Spill?.close();
  }
}

let current: Session | undefined;

/** The session, or `NotInitializedError`. */
export function session(): Session {
  if (current === undefined) throw new NotInitializedError();
  return current;
}

/**
 * Starts objstore in this process: attaches to (or creates) this node's store.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * const { storeName } = await os.init({ objectStoreMemory: 256 * 1024 * 1024 });
 * console.log(storeName);
 * await os.shutdown();
 * ```
 */
export async function init(options?: InitOptions): Promise<InitResult> {
  if (current !== undefined) {
    throw new ObjstoreError("init: objstore is already initialized in this process; call shutdown() first");
  }
  const resolved = resolveOptions(options);
  if (resolved.address !== undefined) return await initInCluster(resolved, resolved.address);
  const library = await loadLibrary();
  removeAbandonedStores(library);
  const name = resolved.storeName ?? `s${toHex(randomBytes(8))}`;
  const store = NativeStore.open(library, name, {
    create: true,
    exclusive: false,
    capacityBytes: resolved.objectStoreMemory,
    prefault: resolved.prefault,
  });
  let s3Spill: S3Spill | undefined;
  try {
    configureSpill(store, resolved);
    if (resolved.spill !== false && resolved.spill.type === "s3") {
      s3Spill = new S3Spill(store, resolved.spill, defaultSpillDirectory(name));
      await s3Spill.check();
    }
  } catch (error) {
    s3Spill?.close();
    // A refused init leaves nothing behind: the store goes with its last process, and so does
    // the default spill folder configureSpill may have made (natively, with the store).
    store.close();
    throw error;
  }
  current = new Session(library, store, resolved, { s3Spill });
  setRefOwner(current);
  return { storeName: name, nodeId: current.nodeId };
}

/**
 * Attaches to the node of this machine in the cluster at `address` (started by `objstore
 * start`, which made the store and set its spilling): this process puts into and gets from
 * that node's store, and fetches what it lacks from the cluster's other nodes.
 */
async function initInCluster(resolved: ResolvedOptions, address: string): Promise<InitResult> {
  if (resolved.storeName !== undefined) {
    throw new ObjstoreError("init: storeName is the node's in a cluster; pick the node with init({ address, node }) instead");
  }
  const node = findLocalNode(address, resolved.node);
  const library = await loadLibrary();
  const store = NativeStore.open(library, node.storeName, { create: false, exclusive: false, capacityBytes: 0, prefault: false });
  let cluster: ClusterClient;
  try {
    cluster = await ClusterClient.attach(library, address, node, store);
  } catch (error) {
    store.close();
    throw error;
  }
  current = new Session(library, store, resolved, { cluster });
  setRefOwner(current);
  return { storeName: node.storeName, nodeId: current.nodeId };
}

/**
 * Points the store at its spill folder, if this process created the store. The default, `<tmp>/objstore-spill-<store>`, is the
 * same for every process of the store, so whichever leaves last can remove it; it must be a
 * real directory of ours (not a link planted by another user).
 */
function configureSpill(store: NativeStore, options: ResolvedOptions): void {
  if (!store.created) return; // the creator's settings hold for the whole store
  if (options.spill === false) {
    store.configureSpill("");
    return;
  }
  // S3 spilling stages its files in the default folder.
  if (options.spill.type === "filesystem" && options.spill.directory !== undefined) {
    store.configureSpill(options.spill.directory);
    store.spillInBackground(options.spillThreshold);
    return;
  }
  const directory = defaultSpillDirectory(store.name);
  store.configureSpill(directory);
  store.spillInBackground(options.spillThreshold);
  const info = lstatSync(directory);
  if (!info.isDirectory() || (typeof process.getuid === "function" && info.uid !== process.getuid())) {
    throw new ObjstoreError(`init: ${directory} exists and is not a directory of this user; remove it or pass spill.directory`);
  }
  // The library made it 0700; one left from elsewhere is ours (same user) to make private too.
  if ((info.mode & 0o077) !== 0) chmodSync(directory, 0o700);
}

function defaultSpillDirectory(storeName: string): string {
  return path.join(os.tmpdir(), `objstore-spill-${storeName}`);
}

/**
 * @internal Attaches a worker process to the store its driver made; the worker never
 * creates a store, and takes the store's settings as they are.
 */
export async function initWorker(storeName: string): Promise<Session> {
  if (current !== undefined) throw new ObjstoreError("initWorker: already initialized");
  const library = await loadLibrary();
  const store = NativeStore.open(library, storeName, { create: false, exclusive: false, capacityBytes: 0, prefault: false });
  const spill = process.env[SPILL_ENV] ? JSON.parse(process.env[SPILL_ENV]) as S3SpillConfig : undefined;
  const s3Spill = spill === undefined ? undefined : new S3Spill(store, spill, defaultSpillDirectory(storeName));
  const nodeNumber = Number(process.env[NODE_NUMBER_ENV] ?? 0);
  const address = process.env[CLUSTER_ADDRESS_ENV];
  const options = resolveOptions({ objectStoreMemory: 4096, numWorkers: 0, spill: spill ?? false });
  // A worker of a cluster's node fetches and holds other nodes' objects as its driver does.
  let cluster: ClusterClient | undefined;
  try {
    cluster = address === undefined ? undefined : await ClusterClient.attach(library, address, findLocalNode(address, storeName), store, true);
  } catch (error) {
    store.close();
    throw error;
  }
  current = new Session(library, store, options, { s3Spill, copiesOut: false, nodeNumber, cluster });
  setRefOwner(current);
  return current;
}

/**
 * Stops objstore in this process: releases every ref and pin it holds and detaches. The
 * last process to leave a store removes it and its spill files.
 */
export async function shutdown(): Promise<void> {
  const closing = current;
  current = undefined;
  setRefOwner(undefined);
  await closing?.close();
}

/** True between `init()` and `shutdown()`. */
export function isInitialized(): boolean {
  return current !== undefined;
}
