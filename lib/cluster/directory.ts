/**
 * The cluster's directory in Redis: which nodes there are (and which are alive), where the
 * copies of objects are beyond their primary, and a notice when an object is sealed. It holds
 * no object data. Every call is bounded: Redis unreachable past `timeoutMs` is a
 * `DirectoryUnavailableError`, never a hang.
 *
 * Keys (all under one prefix, `objstore` by default; clusters may share a Redis by prefix):
 * - `<p>:node-seq`        the last node number handed out (INCR; numbers are never reused)
 * - `<p>:nodes`           hash: node number → the node's record (JSON, `NodeRecord`)
 * - `<p>:alive:<n>`       the node's load (JSON, `NodeLoad`), expiring unless refreshed: a node
 *                         whose key has expired is dead
 * - `<p>:copies:<hex>`    set: numbers of the nodes holding a copy of the object
 * - channel `<p>:sealed`  the hex of each object sealed that a node asked to be told about
 */
import { DirectoryUnavailableError, ObjstoreError } from "../errors.ts";

/** What a node says about itself when it joins. */
export interface NodeRecord {
  /** Small and unique in the cluster; the first bytes of every object id the node mints. */
  nodeNumber: number;
  nodeId: string;
  /** The address other nodes and the command line reach it at. */
  host: string;
  /** Its control port (requests between nodes). */
  port: number;
  /** Its transfer port (object bytes). */
  transferPort: number;
  storeName: string;
  hostname: string;
  pid: number;
  startedMs: number;
  capacityBytes: number;
  numWorkers: number;
  resources: Record<string, number>;
}

/** What a node reports with each heartbeat. */
export interface NodeLoad {
  usedBytes: number;
  objectCount: number;
  workers: number;
  heartbeatMs: number;
}

/** A node as the directory sees it now. */
export interface NodeStatus extends NodeRecord {
  alive: boolean;
  /** The last heartbeat's load, while the node is alive. */
  load: NodeLoad | undefined;
}

export interface DirectoryOptions {
  /** Key prefix of this cluster (default `objstore`). */
  prefix?: string;
  /** How long a call may wait for Redis before it fails (default 5 s). */
  timeoutMs?: number;
}

// The subset of @redis/client used here: the module is imported on first use, so stores that
// never join a cluster do not load it.
interface RedisClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  on(event: "error", listener: (error: Error) => void): unknown;
  incr(key: string): Promise<number>;
  hSet(key: string, field: string, value: string): Promise<number>;
  hDel(key: string, field: string): Promise<number>;
  hGetAll(key: string): Promise<Record<string, string>>;
  set(key: string, value: string, options: { expiration: { type: "PX"; value: number } }): Promise<unknown>;
  del(key: string | string[]): Promise<number>;
  mGet(keys: string[]): Promise<(string | null)[]>;
  sAdd(key: string, member: string): Promise<number>;
  sRem(key: string, member: string): Promise<number>;
  sMembers(key: string): Promise<string[]>;
  publish(channel: string, message: string): Promise<number>;
  subscribe(channel: string, listener: (message: string) => void): Promise<void>;
  duplicate(): RedisClient;
}

/** One process's connection to the directory. */
export class Directory {
  readonly #client: RedisClient;
  #subscriber: RedisClient | undefined;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #where: string;
  #lastError: Error | undefined;

  private constructor(client: RedisClient, prefix: string, timeoutMs: number, where: string) {
    this.#client = client;
    this.#prefix = prefix;
    this.#timeoutMs = timeoutMs;
    this.#where = where;
    client.on("error", (error) => {
      this.#lastError = error;
    });
  }

  /** Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`). */
  static async connect(url: string, options: DirectoryOptions = {}): Promise<Directory> {
    const where = redactedUrl(url);
    const timeoutMs = options.timeoutMs ?? 5000;
    const prefix = options.prefix ?? "objstore";
    if (!/^rediss?:\/\//.test(url)) {
      throw new ObjstoreError(`cluster address ${where}: expected redis://[:PASSWORD@]HOST:PORT`);
    }
    const { createClient } = await import("@redis/client");
    const client = createClient({
      url,
      // Bounded connects, and reconnects that keep trying (Redis restarted) with a backoff;
      // each call below has its own deadline.
      socket: { connectTimeout: timeoutMs, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) },
    }) as unknown as RedisClient;
    const directory = new Directory(client, prefix, timeoutMs, where);
    try {
      await directory.#bounded("connect", () => client.connect());
    } catch (error) {
      client.destroy();
      throw error;
    }
    return directory;
  }

  #key(...parts: (string | number)[]): string {
    return [this.#prefix, ...parts].join(":");
  }

  /** Runs a Redis call, failing with DirectoryUnavailableError past the timeout. */
  async #bounded<T>(what: string, call: () => Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const cause = this.#lastError;
        reject(new DirectoryUnavailableError(
          `the cluster directory at ${this.#where} did not answer ${what} within ${this.#timeoutMs} ms` +
            `${cause ? ` (${cause.message})` : ""}: check that Redis runs there and that the address and password are right`,
          { cause },
        ));
      }, this.#timeoutMs);
    });
    try {
      return await Promise.race([call(), deadline]);
    } catch (error) {
      if (error instanceof DirectoryUnavailableError) throw error;
      const message = (error as Error).message ?? String(error);
      if (/WRONGPASS|NOAUTH|invalid password|AUTH/i.test(message)) {
        throw new DirectoryUnavailableError(
          `the cluster directory at ${this.#where} refused the password (${message}): pass it as redis://:PASSWORD@HOST:PORT`,
          { cause: error },
        );
      }
      throw new DirectoryUnavailableError(`the cluster directory at ${this.#where} failed ${what}: ${message}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Registers a node and returns the number it is known by (the record's `nodeNumber` is ignored). */
  async registerNode(record: Omit<NodeRecord, "nodeNumber">, load: NodeLoad, ttlMs: number): Promise<number> {
    const nodeNumber = await this.#bounded("INCR", () => this.#client.incr(this.#key("node-seq")));
    if (!Number.isSafeInteger(nodeNumber) || nodeNumber < 1 || nodeNumber > 0xffff_ffff) {
      throw new ObjstoreError(`the cluster directory handed out node number ${nodeNumber}; node numbers are 32-bit`);
    }
    const full: NodeRecord = { ...record, nodeNumber };
    await this.#bounded("HSET", () => this.#client.hSet(this.#key("nodes"), String(nodeNumber), JSON.stringify(full)));
    await this.heartbeat(nodeNumber, load, ttlMs);
    return nodeNumber;
  }

  /** Says the node is alive for `ttlMs` more, with its current load. */
  async heartbeat(nodeNumber: number, load: NodeLoad, ttlMs: number): Promise<void> {
    await this.#bounded("SET", () =>
      this.#client.set(this.#key("alive", nodeNumber), JSON.stringify(load), { expiration: { type: "PX", value: ttlMs } }));
  }

  /** Removes a node that leaves (its objects go with it). */
  async deregisterNode(nodeNumber: number): Promise<void> {
    await this.#bounded("DEL", () => this.#client.del(this.#key("alive", nodeNumber)));
    await this.#bounded("HDEL", () => this.#client.hDel(this.#key("nodes"), String(nodeNumber)));
  }

  /** Every node that joined and has not left, alive or not, by node number. */
  async nodes(): Promise<NodeStatus[]> {
    const records = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("nodes")));
    const parsed = Object.values(records).map((text) => JSON.parse(text) as NodeRecord)
      .sort((a, b) => a.nodeNumber - b.nodeNumber);
    if (parsed.length === 0) return [];
    const loads = await this.#bounded("MGET", () => this.#client.mGet(parsed.map((n) => this.#key("alive", n.nodeNumber))));
    return parsed.map((record, i) => {
      const load = loads[i] === null ? undefined : JSON.parse(loads[i]!) as NodeLoad;
      return { ...record, alive: load !== undefined, load };
    });
  }

  /** Records that node `nodeNumber` holds a copy of object `hex`. */
  async addCopy(hex: string, nodeNumber: number): Promise<void> {
    await this.#bounded("SADD", () => this.#client.sAdd(this.#key("copies", hex), String(nodeNumber)));
  }

  /** Records that node `nodeNumber` no longer holds a copy of object `hex`. */
  async removeCopy(hex: string, nodeNumber: number): Promise<void> {
    await this.#bounded("SREM", () => this.#client.sRem(this.#key("copies", hex), String(nodeNumber)));
  }

  /** The nodes holding a copy of object `hex` (beyond its primary), by number. */
  async copies(hex: string): Promise<number[]> {
    const members = await this.#bounded("SMEMBERS", () => this.#client.sMembers(this.#key("copies", hex)));
    return members.map(Number).sort((a, b) => a - b);
  }

  /** Tells the subscribers that object `hex` is sealed. */
  async publishSealed(hex: string): Promise<void> {
    await this.#bounded("PUBLISH", () => this.#client.publish(this.#key("sealed"), hex));
  }

  /** Calls `listener` with the hex of each object announced sealed from now on. */
  async onSealed(listener: (hex: string) => void): Promise<void> {
    if (this.#subscriber === undefined) {
      const subscriber = this.#client.duplicate();
      subscriber.on("error", (error) => {
        this.#lastError = error;
      });
      await this.#bounded("connect", () => subscriber.connect());
      this.#subscriber = subscriber;
    }
    const subscriber = this.#subscriber;
    await this.#bounded("SUBSCRIBE", () => subscriber.subscribe(this.#key("sealed"), listener));
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    for (const client of [this.#subscriber, this.#client]) {
      if (client === undefined) continue;
      try {
        await this.#bounded("QUIT", () => client.close());
      } catch {
        client.destroy();
      }
    }
  }
}

/** The URL without its password, for messages. */
export function redactedUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*)@/, (_, scheme: string, auth: string) => `${scheme}${auth.includes(":") ? `${auth.split(":")[0]}:***` : "***"}@`);
}
