/**
 * A process's view of its cluster: what `get` asks when the local store lacks an object, and
 * the borrows that keep other nodes' objects alive while this process refers to them.
 *
 * The node that made an object (its primary copy) is known from the id alone
 * (lib/cluster/node_number.ts). Other copies (pulled by other nodes) are recorded in the
 * directory. A pull brings the object into this node's store, where every process of the node
 * then finds it.
 */
import process from "node:process";
import type { Library } from "../ffi/load.ts";
import type { NativeStore } from "../store/native_store.ts";
import { Status } from "../store/status.ts";
import { ObjectLostError, ObjstoreError, OwnerDiedError } from "../errors.ts";
import { toHex } from "../ids.ts";
import { Borrows } from "./borrows.ts";
import { Directory, type NodeStatus, redactedUrl } from "./directory.ts";
import { localNodes, type NodeFile } from "./node_files.ts";
import { nodeNumberOf, ownerOf } from "./node_number.ts";
import { NoRoomForPullError, type PullOutcome, type TransferAddress, TransferEndpoint } from "./transfer.ts";
import type { QuicAddress } from "./quic/gateway.ts";
import { QuicRelays } from "./quic/relays.ts";
import { QUIC_UNAVAILABLE } from "../ffi/quic.ts";

/** How long a cached view of the cluster's nodes is trusted before a miss reloads it. */
const NODES_TTL_MS = 1000;
/** How long a source may hold a pull waiting for the object to be sealed, per attempt. */
const SEAL_WAIT_MAX_MS = 10_000;
/** How long a borrower waits before it looks again for an object its living owner has yet to
 * make (a task still running, or being run again): each look asks Redis and a node. */
const OWNED_RETRY_MS = 200;

/**
 * The node of this machine to attach to for the cluster at `address`: the only one, or the
 * one whose id or store name is `wanted`.
 */
export function findLocalNode(address: string, wanted: string | undefined): NodeFile {
  const where = redactedUrl(address);
  const ofCluster = localNodes().filter((node) => node.address === where);
  const matching = wanted === undefined ? ofCluster : ofCluster.filter((node) => node.nodeId === wanted || node.storeName === wanted);
  if (matching.length === 1) return matching[0];
  const start = `start one with: objstore start --address ${where}`;
  if (ofCluster.length === 0) throw new ObjstoreError(`init: no node of the cluster at ${where} runs on this machine; ${start}`);
  const names = ofCluster.map((node) => `${node.storeName} (${node.nodeId})`).join(", ");
  if (wanted === undefined) throw new ObjstoreError(`init: several nodes of the cluster at ${where} run on this machine; pick one with init({ node }): ${names}`);
  throw new ObjstoreError(`init: no node '${wanted}' of the cluster at ${where} runs on this machine; its nodes here: ${names}`);
}

/**
 * The QUIC relays of a process whose node serves QUIC, if its runtime has QUIC; without it the
 * process pulls over TCP, which every node serves, and says so once.
 */
function quicRelays(library: Library, node: NodeFile): QuicRelays | undefined {
  if (node.quicPort === undefined) return undefined;
  if (library.shim.quic !== undefined) return new QuicRelays(library.shim.quic);
  console.error(`objstore: node ${node.storeName} uses QUIC, but this process pulls over TCP: ${QUIC_UNAVAILABLE}`);
  return undefined;
}

/** This process's link to its cluster. */
export class ClusterClient {
  readonly node: NodeFile;
  /** The refs this process holds to other nodes' objects. */
  readonly borrows: Borrows;
  readonly #address: string;
  #directory: Promise<Directory> | undefined;
  readonly #endpoint: TransferEndpoint;
  /** Where each living node serves transfers: TCP, and QUIC if it does. */
  #nodes = new Map<number, TransferAddress & { quic?: QuicAddress }>();
  /** Set when this process pulls over QUIC (its node serves QUIC and its runtime has it). */
  readonly #relays: QuicRelays | undefined;
  #nodeStatuses: NodeStatus[] = [];
  #nodesLoadedMs = 0;
  #nodesLoading: Promise<void> | undefined;
  /** Pulls under way in this process, by hex: concurrent gets share one. */
  readonly #pulls = new Map<string, Promise<boolean>>();
  /** Objects no node has yet whose owners live, by hex: when to look again. */
  readonly #notYetMade = new Map<string, number>();

  private constructor(node: NodeFile, address: string, store: NativeStore, endpoint: TransferEndpoint, relays: QuicRelays | undefined) {
    this.node = node;
    this.#address = address;
    this.#endpoint = endpoint;
    this.#relays = relays;
    this.borrows = new Borrows(node.nodeNumber, process.pid, {
      holdCopy: (id) => store.addRef(id) === Status.ok,
      dropCopy: (id) => store.dropRef(id),
    }, () => this.#connected());
  }

  /**
   * Links this process to the cluster at `address` through `node`, whose store is `store`.
   * A driver connects to the directory at once (a wrong address fails `init`); a worker
   * (`lazy`) on first need, since most never reach past their node.
   */
  static async attach(library: Library, address: string, node: NodeFile, store: NativeStore, lazy = false): Promise<ClusterClient> {
    const client = new ClusterClient(node, address, store, TransferEndpoint.open(library, node.storeName), quicRelays(library, node));
    if (lazy) return client;
    try {
      await client.#connected();
      await client.#loadNodes();
      // Listed before it hands out any id: borrowers of what it owns ask whether it lives.
      await client.borrows.register();
      return client;
    } catch (error) {
      await client.#endpoint.close();
      throw error;
    }
  }

  #connected(): Promise<Directory> {
    // A failed connect is tried again by the next call (Redis restarting).
    // The program ends when its own work does: the directory's connections do not hold it.
    this.#directory ??= Directory.connect(this.#address, { keepAlive: false }).catch((error) => {
      this.#directory = undefined;
      throw error;
    });
    return this.#directory;
  }

  /** True if an object absent here may be elsewhere in the cluster (it was minted elsewhere). */
  mayHoldElsewhere(id: Uint8Array): boolean {
    return this.borrows.isForeign(id);
  }

  /**
   * Brings object `id` into this node's store from a node that holds it. Resolves to true once
   * it is here (sealed, or being pulled by another process of the node: a get waits for its
   * seal), false if its sources are still writing it after `waitMs` or its owner has yet to
   * make it. Rejects with ObjectLostError when no node of the cluster holds it and none will,
   * OwnerDiedError when its owner is gone before making it.
   */
  fetch(id: Uint8Array, hex: string, waitMs: number): Promise<boolean> {
    let pull = this.#pulls.get(hex);
    if (pull === undefined) {
      const lookAgainMs = this.#notYetMade.get(hex);
      if (lookAgainMs !== undefined && Date.now() < lookAgainMs) return Promise.resolve(false);
      this.#notYetMade.delete(hex);
      pull = this.#pull(id, hex, Math.max(0, Math.min(waitMs, SEAL_WAIT_MAX_MS)))
        .catch((error) => this.#nowhere(id, hex, error))
        .finally(() => this.#pulls.delete(hex));
      this.#pulls.set(hex, pull);
    }
    return pull;
  }

  /**
   * Brings back this node's evicted copy of object `id` (or one whose spill file is gone) from
   * another node that holds it: the cluster as a remote source of `lib/restore.ts`. Answers the
   * core's status: `ok` once it is here, `spillMissing` if no other node has it, `storeFull`
   * if there was no room for it.
   */
  async restore(id: Uint8Array): Promise<number> {
    try {
      return (await this.fetch(id, toHex(id), SEAL_WAIT_MAX_MS)) ? Status.ok : Status.spillMissing;
    } catch (error) {
      if (error instanceof ObjectLostError) return Status.spillMissing;
      if (error instanceof NoRoomForPullError) return Status.storeFull;
      throw error;
    }
  }

  /**
   * No node has object `id` (`error` says so). Made on a node that is gone: it went with it
   * (ObjectLostError; its owner makes it again if it can). Made on a node alive: its owner
   * decides, as in Ray. While the owner lives, the object may still come (its task runs
   * there, or waits to), so it is not here yet (false); an owner that was killed (or whose
   * node died) never makes it (OwnerDiedError); an owner that ended let it go (ObjectLostError).
   * This process's own objects are its to make again (`error` stands).
   */
  async #nowhere(id: Uint8Array, hex: string, error: unknown): Promise<boolean> {
    if (!(error instanceof ObjectLostError)) throw error;
    const owner = ownerOf(id);
    if (owner.nodeNumber === this.node.nodeNumber && owner.pid === process.pid) throw error;
    if (Date.now() - this.#nodesLoadedMs > NODES_TTL_MS) await this.#loadNodes();
    if (!this.#nodes.has(nodeNumberOf(id))) throw error;
    const directory = await this.#connected();
    const ownerNodeAlive = this.#nodes.has(owner.nodeNumber);
    if (ownerNodeAlive && [...(await directory.holders(owner.nodeNumber)).values()].includes(owner.pid)) {
      this.#notYetMade.set(hex, Date.now() + OWNED_RETRY_MS);
      return false;
    }
    if (ownerNodeAlive && !(await directory.died(owner.nodeNumber, owner.pid))) throw error;
    const ownerName = `process ${owner.pid} on node ${owner.nodeNumber}${ownerNodeAlive ? "" : ", which died"}`;
    throw new OwnerDiedError(`${hex}: its owner (${ownerName}) was killed before the object was made, and no node holds it: it will never be made. Keep the driver that submits a task alive until its results are read.`, { cause: error });
  }

  async #pull(id: Uint8Array, hex: string, waitMs: number): Promise<boolean> {
    const { sources, described } = await this.#sources(id, hex);
    let outcome: PullOutcome;
    try {
      outcome = await this.#endpoint.pull(id, sources, this.node.token, { waitMs });
    } catch (error) {
      if (!(error instanceof ObjectLostError)) throw error;
      throw new ObjectLostError(`${hex} could not be fetched from the cluster (${described}): ${error.message}`, { cause: error });
    }
    if (outcome === "not-sealed") return false;
    if (outcome === "exists") return true;
    // The pull's reference goes once this process holds the copy for its refs (if it still has any).
    this.borrows.copyArrived(hex);
    this.#endpoint.handOver(id);
    // Best effort: a copy the directory does not know of is only a copy others will not use.
    void this.#connected().then((directory) => directory.addCopy(hex, this.node.nodeNumber)).catch(() => {});
    return true;
  }

  /** The nodes to pull `id` from: the node that made it, then those that copied it. */
  async #sources(id: Uint8Array, hex: string): Promise<{ sources: TransferAddress[]; described: string }> {
    const made = nodeNumberOf(id);
    const directory = await this.#connected();
    const kept = this.borrows.keptBy(hex);
    const copies = (await directory.copies(hex)).filter((n) => n !== this.node.nodeNumber && n !== made && n !== kept);
    // The node keeping it for this process first (a task's result run there), then the one
    // its id names, then the copies.
    const wanted = [...(kept === undefined ? [] : [kept]), ...(made === this.node.nodeNumber ? [] : [made]), ...copies];
    const ageMs = Date.now() - this.#nodesLoadedMs;
    // A node missing from the view reloads it (once a second at most); so does an old view
    // (a node that died or came back with another port).
    if ((wanted.some((n) => !this.#nodes.has(n)) && ageMs > NODES_TTL_MS) || ageMs > 10 * NODES_TTL_MS) await this.#loadNodes();
    const found = wanted.map((n) => this.#nodes.get(n)).filter((a) => a !== undefined);
    const sources = await Promise.all(found.map((a) => (this.#relays !== undefined && a.quic !== undefined ? this.#relays.addressFor({ host: a.host, quic: a.quic }) : a)));
    const madeState = this.#nodes.has(made) ? "alive" : "not alive in the cluster";
    const described = `made on node ${made}, ${madeState}; copies listed on ${copies.length === 0 ? "no other node" : `nodes ${copies.join(", ")}`}`;
    if (sources.length === 0) throw new ObjectLostError(`${hex}: no node of the cluster holds it (${described})`);
    return { sources: sources.slice(0, 16), described };
  }

  #loadNodes(): Promise<void> {
    this.#nodesLoading ??= (async () => {
      const nodes = await (await this.#connected()).nodes();
      this.#nodes = new Map(nodes.filter((n) => n.alive).map((n) => [n.nodeNumber, { host: n.host, port: n.transferPort, quic: n.quic }]));
      this.#relays?.keepOnly([...this.#nodes.values()].flatMap(({ host, quic }) => (quic === undefined ? [] : [{ host, quic }])));
      this.#nodeStatuses = nodes;
      this.#nodesLoadedMs = Date.now();
    })().finally(() => (this.#nodesLoading = undefined));
    return this.#nodesLoading;
  }

  /**
   * The cluster's nodes as last seen (for placing tasks, which cannot wait); a view older than
   * a second is reloaded in the background for the next call.
   */
  nodesView(): readonly NodeStatus[] {
    if (Date.now() - this.#nodesLoadedMs > NODES_TTL_MS) void this.#loadNodes().catch(() => {});
    return this.#nodeStatuses;
  }

  /** Reloads the view of the cluster's nodes now. */
  async reloadNodes(): Promise<readonly NodeStatus[]> {
    await this.#loadNodes();
    return this.#nodeStatuses;
  }

  /** The directory, connected on first use. */
  directory(): Promise<Directory> {
    return this.#connected();
  }

  /** A get found object `hex` here: the process holds the copy for its refs from now on. */
  settled(hex: string): void {
    this.borrows.copyArrived(hex);
  }

  /** Ends the borrows (every hold this process has goes), waits for pulls, disconnects. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#pulls.values()]);
    await this.borrows.close().catch(() => {});
    await this.#endpoint.close();
    await this.#relays?.close();
    const directory = await this.#directory?.catch(() => undefined);
    await directory?.close();
  }
}
