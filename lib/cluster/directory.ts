/**
 * The cluster's directory in Redis: which nodes there are (and which are alive), where the
 * copies of objects are beyond their primary, and who holds references across nodes. It holds
 * no object data. Every call is bounded: Redis unreachable past `timeoutMs` is a
 * `DirectoryUnavailableError`, never a hang.
 *
 * Keys (all under one prefix, `objstore` by default; clusters may share a Redis by prefix):
 * - `<p>:node-seq`        the last node number handed out (INCR; numbers are never reused)
 * - `<p>:nodes`           hash: node number → the node's record (JSON, `NodeRecord`)
 * - `<p>:alive:<n>`       the node's load (JSON, `NodeLoad`), expiring unless refreshed (three
 *                         heartbeats): a node whose key has expired is silent
 * - `<p>:silent`          hash: node number → Redis time (ms) a reader first found it silent;
 *                         its next heartbeat clears it
 * - `<p>:dead`            hash: node number → Redis time (ms) it was declared dead: still silent
 *                         when read again a heartbeat interval (at least 1 s) later. Final: the
 *                         node's next heartbeat is refused and it leaves (`NODES_SCRIPT`)
 * - `<p>:read-at`         Redis time (ms) of the last reading of the nodes' liveness
 * - `<p>:copies:<hex>`    set: numbers of the nodes holding a copy of the object
 * - `<p>:copies-of:<n>`   set: the hexes node n holds copies of (so it can unlist the gone ones)
 * - `<p>:holds:<n>`       list: requests to node n's hold keeper, in the order they were sent
 *                         (lib/cluster/holds.ts: hold, release, holder gone, memory listing)
 * - `<p>:holders:<n>`     hash: holder name → pid, for the processes of node n holding refs to
 *                         objects of other nodes (its keeper tells the others when one dies)
 * - `<p>:containers:<n>`  hash: hex of an object on node n → the hexes of its children on other
 *                         nodes, which it holds until it is deleted
 * - `<p>:replies:<holder>` list: outcomes of the tasks a driver process had run on other nodes
 * - `<p>:memory:<nonce>`  hash: node number → that node's object listing (JSON), for
 *                         `objstore memory --address`; expires
 *
 * Every request to one node goes through one list and is handled in order; a process sends its
 * requests over one connection, so they reach Redis in the order it made them. That order is
 * what keeps an object alive while its reference crosses nodes (ARCHITECTURE.md, "References
 * across nodes").
 */
import { clearTimeout, setTimeout } from "node:timers";
import { DirectoryUnavailableError, ObjstoreError } from "../errors.ts";
import type { QuicAddress } from "./quic/gateway.ts";

/**
 * Reserves bundles all or nothing (`Directory.reserveBundles`). KEYS: each bundle's node's
 * reservations (a hash, field → bundle as JSON); ARGV: per bundle its field, the bundle, and
 * its node's capacity, as JSON.
 */
const RESERVE_SCRIPT = `
local taken = {}
for i, key in ipairs(KEYS) do
  if taken[key] == nil then
    local sum = {}
    for _, text in ipairs(redis.call('HVALS', key)) do
      for name, amount in pairs(cjson.decode(text)) do sum[name] = (sum[name] or 0) + amount end
    end
    taken[key] = sum
  end
  local sum = taken[key]
  local bundle = cjson.decode(ARGV[3 * i - 1])
  local capacity = cjson.decode(ARGV[3 * i])
  for name, amount in pairs(bundle) do
    sum[name] = (sum[name] or 0) + amount
    if sum[name] > (capacity[name] or 0) + 1e-9 then return 0 end
  end
end
for i, key in ipairs(KEYS) do redis.call('HSET', key, ARGV[3 * i - 2], ARGV[3 * i - 1]) end
return 1
`;

/**
 * A heartbeat (`Directory.heartbeat`). KEYS: the node's alive key, the silent hash, the dead
 * hash; ARGV: node number, load (JSON), TTL (ms). 0 if the node was declared dead.
 */
const HEARTBEAT_SCRIPT = `
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

/**
 * Reads the nodes' liveness (`Directory.nodes`). KEYS: the nodes hash, the silent hash, the
 * dead hash, the time of the last reading, then each node's alive key; ARGV: the longest gap
 * between readings that still counts as watching (ms), then per node its number and
 * confirmation time (ms). Per node: its load (beating), "silent", "dead", or "gone" (it left
 * meanwhile).
 *
 * Why not dead at once: an expired key alone is not death. A machine that stalled (a paused
 * VM, every core busy) or a Redis restarted from its file wakes with every key expired before
 * any node's overdue beat ran. So a silent node is declared dead only by a reading at least
 * its confirmation time after the first one that found it silent, with no beat between, and
 * only while the directory was being watched: after a gap between readings longer than
 * ARGV[1] (nobody could read, or nobody ran), every silent node's clock starts again.
 */
const NODES_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
redis.call('SET', KEYS[4], now)
local watched = now - last <= tonumber(ARGV[1])
local out = {}
for i = 5, #KEYS do
  local n = ARGV[2 * (i - 4)]
  local confirm = tonumber(ARGV[2 * (i - 4) + 1])
  local state = 'dead'
  if redis.call('HEXISTS', KEYS[1], n) == 0 then
    state = 'gone'
  elseif redis.call('HEXISTS', KEYS[3], n) == 0 then
    state = redis.call('GET', KEYS[i])
    if state then
      redis.call('HDEL', KEYS[2], n)
    else
      local since = redis.call('HGET', KEYS[2], n)
      if not since or not watched then
        redis.call('HSET', KEYS[2], n, now)
        state = 'silent'
      elseif now - tonumber(since) < confirm then
        state = 'silent'
      else
        redis.call('HSET', KEYS[3], n, now)
        redis.call('HDEL', KEYS[2], n)
        state = 'dead'
      end
    end
  end
  out[#out + 1] = state
end
return out
`;

/** The heartbeat interval of a node whose record predates `heartbeatIntervalMs`. */
const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000;

/** The longest a client waits between attempts to reconnect to Redis (restarted, or away). */
const RECONNECT_BACKOFF_MAX_MS = 250;

/**
 * The least time a silent node has to beat again before it is declared dead: a second, four
 * times the longest a node reconnecting to a restarted Redis waits before it tries again.
 */
const CONFIRMATION_MIN_MS = 1000;

/** A gap between readings of the directory longer than this means nobody was watching (or could):
 * a silent node's confirmation starts again. Each node's keeper reads it once a second. */
const WATCH_GAP_MAX_MS = 2000;

/** How long readers see a silent node before they declare it dead (ms). */
export function confirmationMs(heartbeatIntervalMs = DEFAULT_HEARTBEAT_INTERVAL_MS): number {
  return Math.max(heartbeatIntervalMs, CONFIRMATION_MIN_MS);
}

/**
 * The longest a node that stopped beating (every `heartbeatIntervalMs`) stays alive to readers
 * who read the directory about once a second: its key's three beats, the confirmation, and
 * two readings' delay.
 */
export function deathDeclaredWithinMs(heartbeatIntervalMs = DEFAULT_HEARTBEAT_INTERVAL_MS): number {
  return 3 * heartbeatIntervalMs + confirmationMs(heartbeatIntervalMs) + 2000;
}

/** How long a killed process is remembered as killed (`recordDeath`). */
const DEATHS_KEPT_MS = 60 * 60 * 1000;

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
  /** Where it also serves transfers over QUIC (`objstore start --transport quic`). */
  quic?: QuicAddress;
  storeName: string;
  hostname: string;
  pid: number;
  startedMs: number;
  capacityBytes: number;
  numWorkers: number;
  resources: Record<string, number>;
  /** How often it beats (`objstore start --heartbeat-ms`); its key expires after three. */
  heartbeatIntervalMs?: number;
}

/** What a node reports with each heartbeat. */
export interface NodeLoad {
  usedBytes: number;
  objectCount: number;
  /** Its store's `memoryStats()` figures of the same names (absent from nodes of older versions). */
  pinnedBytes?: number;
  spilledBytes?: number;
  spilledBytesTotal?: number;
  restoredBytes?: number;
  workers: number;
  /** Tasks it runs for drivers on other nodes now. */
  running?: number;
  /** Streams other nodes' processes opened to its QUIC gateway so far. */
  quicStreams?: number;
  heartbeatMs: number;
}

/** A node as the directory sees it now. */
export interface NodeStatus extends NodeRecord {
  /** Not declared dead: beating, or silent for less than a confirmed lapse. */
  alive: boolean;
  /** Its heartbeat lapsed; it is declared dead if it stays silent (see `NODES_SCRIPT`). */
  silent: boolean;
  /** The last heartbeat's load, while the node beats. */
  load: NodeLoad | undefined;
}

export interface DirectoryOptions {
  /** Key prefix of this cluster (default `objstore`). */
  prefix?: string;
  /** How long a call may wait for Redis before it fails (default 5 s). */
  timeoutMs?: number;
  /** Whether the idle connections keep the process alive (default true). A driver's do not:
   * a program ends when its own work does, `shutdown` or not. A call under way holds it (by
   * its deadline's timer) until it ends. */
  keepAlive?: boolean;
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
  hGet(key: string, field: string): Promise<string | null>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  hGetAll(key: string): Promise<Record<string, string>>;
  del(key: string | string[]): Promise<number>;
  unref(): void;
  sAdd(key: string, member: string): Promise<number>;
  sRem(key: string, member: string): Promise<number>;
  sMembers(key: string): Promise<string[]>;
  rPush(key: string, elements: string[]): Promise<number>;
  blmPop(timeoutSeconds: number, keys: string, side: "LEFT", options: { COUNT: number }): Promise<[string, string[]] | null>;
  pExpire(key: string, ms: number): Promise<number>;
  duplicate(): RedisClient;
}

/** A node's listing of the objects in its store, for `objstore memory --address`. */
export interface NodeObjects {
  nodeNumber: number;
  /** Hex, size, and the refs held on it in that store. */
  objects: { id: string; sizeBytes: number; refCount: number; where: string }[];
  /** Objects of this node held for other nodes: hex → holders. */
  heldFor: Record<string, string[]>;
  /** True if the listing stopped at its limit. */
  truncated: boolean;
}

/** One process's connection to the directory. */
export class Directory {
  readonly #client: RedisClient;
  /** For blocking pops, which hold their connection while they wait. */
  #blocking: RedisClient | undefined;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #where: string;
  readonly #keepAlive: boolean;
  #lastError: Error | undefined;

  private constructor(client: RedisClient, prefix: string, timeoutMs: number, where: string, keepAlive: boolean) {
    this.#client = client;
    this.#prefix = prefix;
    this.#timeoutMs = timeoutMs;
    this.#where = where;
    this.#keepAlive = keepAlive;
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
      socket: { connectTimeout: timeoutMs, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, RECONNECT_BACKOFF_MAX_MS) },
    }) as unknown as RedisClient;
    const directory = new Directory(client, prefix, timeoutMs, where, options.keepAlive ?? true);
    try {
      await directory.#bounded("connect", () => client.connect());
      if (!directory.#keepAlive) client.unref();
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
  /** Runs `call`, failing past the timeout; `holdsProcess: false` lets the program end while it waits. */
  async #bounded<T>(what: string, call: () => Promise<T>, extraMs = 0, holdsProcess = true): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const cause = this.#lastError;
        reject(new DirectoryUnavailableError(
          `the cluster directory at ${this.#where} did not answer ${what} within ${this.#timeoutMs} ms` +
            `${cause ? ` (${cause.message})` : ""}: check that Redis runs there and that the address and password are right`,
          { cause },
        ));
      }, this.#timeoutMs + extraMs);
      if (!holdsProcess) timer.unref();
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

  /**
   * Says the node is alive for `ttlMs` more, with its current load. False if the cluster has
   * declared it dead: the others have let go of what its processes held, so it must leave.
   */
  async heartbeat(nodeNumber: number, load: NodeLoad, ttlMs: number): Promise<boolean> {
    const keys = [this.#key("alive", nodeNumber), this.#key("silent"), this.#key("dead")];
    const args = [String(nodeNumber), JSON.stringify(load), String(Math.round(ttlMs))];
    return await this.#bounded("EVAL", () => this.#client.eval(HEARTBEAT_SCRIPT, { keys, arguments: args })) === 1;
  }

  /** Removes a node that leaves (its objects go with it). */
  async deregisterNode(nodeNumber: number): Promise<void> {
    await this.#bounded("DEL", () => this.#client.del(this.#key("alive", nodeNumber)));
    await this.#bounded("HDEL", () => this.#client.hDel(this.#key("nodes"), String(nodeNumber)));
    for (const kind of ["silent", "dead"]) await this.#bounded("HDEL", () => this.#client.hDel(this.#key(kind), String(nodeNumber)));
    await this.forgetNode(nodeNumber);
  }

  /** Removes what the directory says about a node that left or died: its copies, its requests. */
  async forgetNode(nodeNumber: number): Promise<void> {
    for (const hex of await this.copiesHeldBy(nodeNumber)) {
      await this.#bounded("SREM", () => this.#client.sRem(this.#key("copies", hex), String(nodeNumber)));
    }
    const keys = ["copies-of", "holds", "holders", "containers", "died", "reserved"].map((kind) => this.#key(kind, nodeNumber));
    await this.#bounded("DEL", () => this.#client.del(keys));
  }

  /** Every node that joined and has not left, alive or not, by node number. */
  async nodes(): Promise<NodeStatus[]> {
    const records = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("nodes")));
    const parsed = Object.values(records).map((text) => JSON.parse(text) as NodeRecord)
      .sort((a, b) => a.nodeNumber - b.nodeNumber);
    if (parsed.length === 0) return [];
    const keys = [this.#key("nodes"), this.#key("silent"), this.#key("dead"), this.#key("read-at"), ...parsed.map((n) => this.#key("alive", n.nodeNumber))];
    const args = [
      String(WATCH_GAP_MAX_MS),
      ...parsed.flatMap((n) => [String(n.nodeNumber), String(confirmationMs(n.heartbeatIntervalMs))]),
    ];
    const states = await this.#bounded("EVAL", () => this.#client.eval(NODES_SCRIPT, { keys, arguments: args })) as string[];
    return parsed.flatMap((record, i) => {
      const state = states[i];
      if (state === "gone") return [];
      const load = state === "dead" || state === "silent" ? undefined : JSON.parse(state) as NodeLoad;
      return [{ ...record, alive: state !== "dead", silent: state === "silent", load }];
    });
  }

  /** Records that node `nodeNumber` holds a copy of object `hex`. */
  async addCopy(hex: string, nodeNumber: number): Promise<void> {
    await this.#bounded("SADD", () => this.#client.sAdd(this.#key("copies-of", nodeNumber), hex));
    await this.#bounded("SADD", () => this.#client.sAdd(this.#key("copies", hex), String(nodeNumber)));
  }

  /** Records that node `nodeNumber` no longer holds a copy of object `hex`. */
  async removeCopy(hex: string, nodeNumber: number): Promise<void> {
    await this.#bounded("SREM", () => this.#client.sRem(this.#key("copies", hex), String(nodeNumber)));
    await this.#bounded("SREM", () => this.#client.sRem(this.#key("copies-of", nodeNumber), hex));
  }

  /** The nodes holding a copy of object `hex` (beyond its primary), by number. */
  async copies(hex: string): Promise<number[]> {
    const members = await this.#bounded("SMEMBERS", () => this.#client.sMembers(this.#key("copies", hex)));
    return members.map(Number).sort((a, b) => a - b);
  }

  /** Sends requests to node `nodeNumber`'s hold keeper (handled in the order sent). */
  async sendHolds(nodeNumber: number, requests: string[]): Promise<void> {
    if (requests.length === 0) return;
    await this.#bounded("RPUSH", () => this.#client.rPush(this.#key("holds", nodeNumber), requests));
  }

  /**
   * The next requests to node `nodeNumber`'s keeper, up to `max`, waiting up to `waitMs` for
   * one (on a connection of its own: the wait blocks it). Empty if none came.
   */
  async takeHolds(nodeNumber: number, max: number, waitMs: number): Promise<string[]> {
    return await this.#take(this.#key("holds", nodeNumber), max, waitMs);
  }

  /** Sends outcomes of tasks to the driver process `holder`. */
  async sendReplies(holder: string, replies: string[]): Promise<void> {
    if (replies.length === 0) return;
    const key = this.#key("replies", holder);
    await this.#bounded("RPUSH", () => this.#client.rPush(key, replies));
    // A driver that died never reads its list: it goes on its own.
    await this.#bounded("PEXPIRE", () => this.#client.pExpire(key, 24 * 3600 * 1000));
  }

  /** The next outcomes sent to `holder`, as `takeHolds`. */
  /** Takes up to `max` replies for `holder`, waiting up to `waitMs` for one. `holdsProcess:
   * false`: a wait that only serves others (an owner's actors) does not keep a driver running. */
  async takeReplies(holder: string, max: number, waitMs: number, holdsProcess = true): Promise<string[]> {
    return await this.#take(this.#key("replies", holder), max, waitMs, holdsProcess);
  }

  async #take(key: string, max: number, waitMs: number, holdsProcess = true): Promise<string[]> {
    const blocking = await this.#blockingClient();
    // Redis answers within waitMs; the bound covers a Redis that went away meanwhile.
    const reply = await this.#bounded("BLMPOP", () => blocking.blmPop(waitMs / 1000, key, "LEFT", { COUNT: max }), waitMs, holdsProcess);
    return reply === null ? [] : reply[1];
  }

  async #blockingClient(): Promise<RedisClient> {
    if (this.#blocking === undefined) {
      const blocking = this.#client.duplicate();
      blocking.on("error", (error) => {
        this.#lastError = error;
      });
      await this.#bounded("connect", () => blocking.connect());
      if (!this.#keepAlive) blocking.unref();
      this.#blocking = blocking;
    }
    return this.#blocking;
  }

  /** Records a process of node `nodeNumber` that holds refs to other nodes' objects. */
  async addHolder(nodeNumber: number, holder: string, pid: number): Promise<void> {
    await this.#bounded("HSET", () => this.#client.hSet(this.#key("holders", nodeNumber), holder, String(pid)));
  }

  /** The processes of node `nodeNumber` recorded by `addHolder`: holder → pid. */
  async holders(nodeNumber: number): Promise<Map<string, number>> {
    const fields = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("holders", nodeNumber)));
    return new Map(Object.entries(fields).map(([holder, pid]) => [holder, Number(pid)]));
  }

  async removeHolder(nodeNumber: number, holder: string): Promise<void> {
    await this.#bounded("HDEL", () => this.#client.hDel(this.#key("holders", nodeNumber), holder));
  }

  /**
   * Reserves each bundle on its node if every one fits in what that node has left
   * (`capacities[i]`, as `{ CPU, <resource>: amount }`, less what other bundles reserved there);
   * all or nothing, in one step (a Lua script), so two groups never take the same room. `field`
   * names each reservation: "<holder>|<group>|<bundle index>". True if reserved.
   */
  async reserveBundles(entries: { nodeNumber: number; field: string; bundle: Record<string, number>; capacity: Record<string, number> }[]): Promise<boolean> {
    const keys = entries.map((entry) => this.#key("reserved", entry.nodeNumber));
    const args = entries.flatMap((entry) => [entry.field, JSON.stringify(entry.bundle), JSON.stringify(entry.capacity)]);
    return await this.#bounded("EVAL", () => this.#client.eval(RESERVE_SCRIPT, { keys, arguments: args })) === 1;
  }

  /** The bundles reserved on node `nodeNumber`: field → bundle. */
  async reservations(nodeNumber: number): Promise<Map<string, Record<string, number>>> {
    const fields = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("reserved", nodeNumber)));
    return new Map(Object.entries(fields).map(([field, bundle]) => [field, JSON.parse(bundle) as Record<string, number>]));
  }

  /** Gives back a bundle reserved on node `nodeNumber`. */
  async release(nodeNumber: number, field: string): Promise<void> {
    await this.#bounded("HDEL", () => this.#client.hDel(this.#key("reserved", nodeNumber), field));
  }

  /** Records that process `pid` of node `nodeNumber` died (killed, not ended by its program):
   * what it owned and had yet to make raises OwnerDiedError. Kept for an hour. */
  async recordDeath(nodeNumber: number, pid: number): Promise<void> {
    const key = this.#key("died", nodeNumber);
    const nowMs = Date.now();
    await this.#bounded("HSET", () => this.#client.hSet(key, String(pid), String(nowMs)));
    const deaths = await this.#bounded("HGETALL", () => this.#client.hGetAll(key));
    const old = Object.entries(deaths).filter(([, atMs]) => nowMs - Number(atMs) > DEATHS_KEPT_MS).map(([oldPid]) => oldPid);
    for (const oldPid of old) await this.#bounded("HDEL", () => this.#client.hDel(key, oldPid));
  }

  /** Whether process `pid` of node `nodeNumber` died within the hour (see `recordDeath`). */
  async died(nodeNumber: number, pid: number): Promise<boolean> {
    return await this.#bounded("HGET", () => this.#client.hGet(this.#key("died", nodeNumber), String(pid))) !== null;
  }

  /** Records that object `hex` on node `nodeNumber` holds `children` (objects of other nodes). */
  async addContainer(nodeNumber: number, hex: string, children: string[]): Promise<void> {
    await this.#bounded("HSET", () => this.#client.hSet(this.#key("containers", nodeNumber), hex, children.join(" ")));
  }

  /** The containers recorded on node `nodeNumber`: hex → children's hexes. */
  async containers(nodeNumber: number): Promise<Map<string, string[]>> {
    const fields = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("containers", nodeNumber)));
    return new Map(Object.entries(fields).map(([hex, children]) => [hex, children.split(" ").filter((c) => c !== "")]));
  }

  async removeContainer(nodeNumber: number, hex: string): Promise<void> {
    await this.#bounded("HDEL", () => this.#client.hDel(this.#key("containers", nodeNumber), hex));
  }

  /** The objects node `nodeNumber` is listed as holding copies of. */
  async copiesHeldBy(nodeNumber: number): Promise<string[]> {
    return await this.#bounded("SMEMBERS", () => this.#client.sMembers(this.#key("copies-of", nodeNumber)));
  }

  /** Leaves a node's object listing for the `memory` request `nonce`; kept a minute. */
  async putListing(nonce: string, listing: NodeObjects): Promise<void> {
    const key = this.#key("memory", nonce);
    await this.#bounded("HSET", () => this.#client.hSet(key, String(listing.nodeNumber), JSON.stringify(listing)));
    await this.#bounded("PEXPIRE", () => this.#client.pExpire(key, 60_000));
  }

  /** The listings left so far for the `memory` request `nonce`. */
  async listings(nonce: string): Promise<NodeObjects[]> {
    const fields = await this.#bounded("HGETALL", () => this.#client.hGetAll(this.#key("memory", nonce)));
    return Object.values(fields).map((text) => JSON.parse(text) as NodeObjects).sort((a, b) => a.nodeNumber - b.nodeNumber);
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    for (const client of [this.#blocking, this.#client]) {
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
