/**
 * A node of a cluster, as `objstore start` runs it: the process that owns the node's store
 * (and its workers), serves the store's objects to the other nodes over TCP, and keeps the node
 * registered in the cluster's directory with a heartbeat that expires if the process dies. It
 * runs until `objstore stop` or a signal; then it deregisters and removes its store.
 *
 * The nodes of this machine are found through their node files (lib/cluster/node_files.ts),
 * which `objstore stop` and drivers read.
 */
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import process from "node:process";
import { init, session, shutdown } from "./session.ts";
import { memoryStats } from "./objects.ts";
import { loadLibrary } from "./ffi/load.ts";
import { Directory, redactedUrl } from "./cluster/directory.ts";
import { TransferEndpoint, type TransferServer } from "./cluster/transfer.ts";
import { HoldKeeper } from "./cluster/holds.ts";
import { ClusterClient } from "./cluster/cluster.ts";
import { NodeExecutor } from "./tasks/node_executor.ts";
import { localScheduler } from "./tasks/remote.ts";
import { ObjstoreError } from "./errors.ts";
import { segmentPath } from "./options.ts";
import { localNodes, type NodeFile, removeNodeFile, writeNodeFile } from "./cluster/node_files.ts";
import { processRuns } from "./processes.ts";
import { dropReporter, QuicGateway } from "./cluster/quic/gateway.ts";
import { QUIC_UNAVAILABLE } from "./ffi/quic.ts";

/** What `objstore start` takes. */
export interface NodeOptions {
  /** The cluster's directory: `redis://[:PASSWORD@]HOST:PORT`. */
  address: string;
  /** The cluster token every connection between nodes proves it holds. */
  token: string;
  /** The address other nodes reach this one at (IPv4). Default 127.0.0.1. */
  nodeIp?: string;
  /** The transfer port; 0 (the default) picks a free one. */
  port?: number;
  objectStoreMemory?: number;
  numWorkers?: number;
  /** Custom resources tasks may ask for (`resources: { name: amount }`), e.g. `{ GPU: 2 }`. */
  resources?: Record<string, number>;
  storeName?: string;
  /** How often the node says it is alive (default 1000 ms). Three beats missed, it is silent;
   * still silent an interval later, the others declare it dead (`objstore start --heartbeat-ms`). */
  heartbeatMs?: number;
  /** "quic": also serve transfers over QUIC, and pull over it from nodes that serve it
   * (Deno with `--unstable-net` only). Default "tcp", which every node serves. */
  transport?: "tcp" | "quic";
}

const DEFAULT_HEARTBEAT_MS = 1000;

/** A running node. */
export class ClusterNode {
  readonly file: NodeFile;
  readonly #directory: Directory;
  readonly #endpoint: TransferEndpoint;
  readonly #server: TransferServer;
  readonly #gateway: QuicGateway | undefined;
  readonly #beat: ReturnType<typeof setInterval>;
  /**
   * Settles if the cluster declares this node dead (it was silent too long: a stop of the
   * process, a machine stalled for seconds). The others have then let go of what its processes
   * held and run its tasks elsewhere, so it must leave (`objstore start` leaves and joins again
   * as a new node).
   */
  readonly declaredDead: Promise<void>;
  #onDeclaredDead!: () => void;
  /** Keeps this node's objects for the holders on other nodes (lib/cluster/holds.ts). */
  readonly #keeper: HoldKeeper;
  readonly #executor: NodeExecutor;
  #stopping: Promise<void> | undefined;

  private constructor(file: NodeFile, directory: Directory, endpoint: TransferEndpoint, server: TransferServer, gateway: QuicGateway | undefined, heartbeatMs: number) {
    this.file = file;
    this.#directory = directory;
    this.#endpoint = endpoint;
    this.#server = server;
    this.#gateway = gateway;
    this.#keeper = new HoldKeeper(directory, session().store, file.nodeNumber);
    const executor = new NodeExecutor(localScheduler(), this.#keeper, directory, file.token, file.nodeNumber);
    this.#executor = executor;
    this.#keeper.onTask = (request) => executor.handle(request);
    this.#keeper.start();
    // A beat that fails (Redis restarting) is retried at the next: the node stays up, and is
    // declared dead by the others only if it stays silent for three beats and one more.
    this.declaredDead = new Promise((resolve) => (this.#onDeclaredDead = resolve));
    this.#beat = setInterval(() => void this.#heartbeat(heartbeatMs).catch(() => {}), heartbeatMs);
  }

  /** Starts a node: its store and workers, its transfer server, its place in the directory. */
  static async start(options: NodeOptions): Promise<ClusterNode> {
    const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const storeName = options.storeName ?? `node-${hostname().replace(/[^A-Za-z0-9_.-]/g, "-")}-${process.pid}`;
    if (existsSync(segmentPath(storeName))) {
      throw new ObjstoreError(`store '${storeName}' exists already: another node (or program) uses it; give this node its own with --store NAME`);
    }
    const quic = options.transport === "quic" ? (await loadLibrary()).shim.quic : undefined;
    if (options.transport === "quic" && quic === undefined) throw new ObjstoreError(`--transport quic: ${QUIC_UNAVAILABLE}`);
    // The directory first: a wrong address fails before anything is made.
    const directory = await Directory.connect(options.address);
    let endpoint: TransferEndpoint | undefined;
    let gateway: QuicGateway | undefined;
    try {
      const { nodeId } = await init({ storeName, objectStoreMemory: options.objectStoreMemory, numWorkers: options.numWorkers });
      const numWorkers = session().options.numWorkers;
      endpoint = TransferEndpoint.open(await loadLibrary(), storeName);
      const host = options.nodeIp ?? "127.0.0.1";
      const server = endpoint.serve({ host, port: options.port ?? 0 }, options.token);
      if (quic !== undefined) {
        gateway = QuicGateway.start(quic, host, options.port ?? 0, server.address, dropReporter(console.error));
      }
      const stats = memoryStats();
      const nodeNumber = await directory.registerNode({
        nodeId,
        host,
        port: 0,
        transferPort: server.address.port,
        ...(gateway === undefined ? {} : { quic: gateway.address }),
        storeName,
        hostname: hostname(),
        pid: process.pid,
        startedMs: Date.now(),
        capacityBytes: stats.capacityBytes,
        numWorkers,
        resources: options.resources ?? {},
        heartbeatIntervalMs: heartbeatMs,
      }, { usedBytes: stats.usedBytes, objectCount: stats.objectCount, workers: numWorkers, heartbeatMs: Date.now() }, 3 * heartbeatMs);
      const file: NodeFile = {
        storeName, nodeId, nodeNumber, pid: process.pid, address: redactedUrl(options.address), host, transferPort: server.address.port, token: options.token,
        ...(gateway === undefined ? {} : { quicPort: gateway.address.port }),
      };
      // The node's own process is a process of the cluster too: its workers fetch other
      // nodes' objects, and the tasks it runs for them hold what they refer to.
      session().joinCluster(await ClusterClient.attach(await loadLibrary(), options.address, file, session().store), options.address);
      writeNodeFile(file);
      return new ClusterNode(file, directory, endpoint, server, gateway, heartbeatMs);
    } catch (error) {
      gateway?.stop();
      await endpoint?.close();
      await shutdown();
      await directory.close();
      throw error;
    }
  }

  async #heartbeat(heartbeatMs: number): Promise<void> {
    const stats = memoryStats();
    const taken = await this.#directory.heartbeat(this.file.nodeNumber, {
      usedBytes: stats.usedBytes,
      objectCount: stats.objectCount,
      pinnedBytes: stats.pinnedBytes,
      spilledBytes: stats.spilledBytes,
      spilledBytesTotal: stats.spilledBytesTotal,
      restoredBytes: stats.restoredBytes,
      workers: session().options.numWorkers,
      running: this.#executor.running,
      ...(this.#gateway === undefined ? {} : { quicStreams: this.#gateway.streamsServed }),
      heartbeatMs: Date.now(),
    }, 3 * heartbeatMs);
    if (taken) return;
    clearInterval(this.#beat);
    this.#onDeclaredDead();
  }

  /** Leaves the cluster: deregisters, stops serving, removes its store. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      clearInterval(this.#beat);
      removeNodeFile(this.file.storeName);
      try {
        await this.#keeper.stop();
        await this.#directory.deregisterNode(this.file.nodeNumber);
      } finally {
        this.#gateway?.stop();
        this.#server.stop();
        await this.#endpoint.close();
        await shutdown();
        await this.#directory.close();
      }
    })();
    return this.#stopping;
  }
}

/**
 * Stops the nodes of this machine (only the one whose store is `storeName`, if given): each is
 * sent SIGTERM and waited for, up to `timeoutMs`. Returns the nodes stopped.
 */
export async function stopLocalNodes(storeName: string | undefined, timeoutMs = 15_000): Promise<NodeFile[]> {
  const nodes = localNodes().filter((node) => storeName === undefined || node.storeName === storeName);
  if (storeName !== undefined && nodes.length === 0) throw new ObjstoreError(`no node with store '${storeName}' runs on this machine`);
  for (const node of nodes) process.kill(node.pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (nodes.some((node) => processRuns(node.pid))) {
    if (Date.now() > deadline) {
      const left = nodes.filter((node) => processRuns(node.pid)).map((node) => `${node.storeName} (pid ${node.pid})`);
      throw new ObjstoreError(`nodes still running ${timeoutMs} ms after SIGTERM: ${left.join(", ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return nodes;
}
