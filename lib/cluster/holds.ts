/**
 * A node's hold keeper: it keeps this node's objects alive for the processes and objects of
 * other nodes that refer to them (lib/cluster/borrows.ts sends the requests), and tidies what
 * this node's own processes and objects left in the directory.
 *
 * It runs in the node's process (`objstore start`), whose store reference on an object stands
 * for every holder elsewhere: one reference per held object, taken with the first holder and
 * dropped with the last. Requests come through the node's list in the directory, in the order
 * they were sent:
 *   `+<hex> <holder>`  hold the object for the holder; with ` !<process>` after it, tell that
 *                      process (`h <hex>` in its reply list) once held: it hands the object
 *                      over, and lets go of its own ref only then
 *   `-<hex> <holder>`  the holder lets it go
 *   `x <holder>`       the holder is gone (its process ended or died): it lets all go
 *   `m <nonce>`        leave a listing of this node's objects for `objstore memory`
 *   `t <mac> <json>`   run a task for a driver elsewhere (handed to `onTask`: the node's
 *                      executor, lib/tasks/node_executor.ts)
 * Holders are `p:<node>:<pid>:<nonce>` (a process) and `c:<node>:<hex>` (an object holding refs).
 *
 * Once a second it also tidies up:
 *   - a process of this node that held refs elsewhere (or joined the cluster) and died: the
 *     nodes are told (`x`), and the directory records it killed (`Directory.recordDeath`);
 *   - an object of this node holding refs elsewhere that is deleted: its holds are released;
 *   - a copy this node is listed as holding that is gone: it is unlisted;
 *   - holders on nodes that are dead: their holds here are released;
 *   - bundles reserved here by placement groups whose owner is gone: released;
 *   - holds on objects still being written are taken once they are sealed.
 */
import type { NativeStore } from "../store/native_store.ts";
import { Presence, Status } from "../store/status.ts";
import { fromHex, ID_BYTES } from "../ids.ts";
import { processRuns } from "../processes.ts";
import type { Directory, NodeObjects } from "./directory.ts";
import { nodeNumberOfHex } from "./node_number.ts";

/** Requests taken from the list at once, at most. */
const TAKE_MAX = 1000;
/** How long one take waits for requests (also how long `stop` may wait for it). */
const TAKE_WAIT_MS = 250;
const TIDY_INTERVAL_MS = 1000;
/** Objects listed per node for `objstore memory`, at most. */
const LISTING_MAX = 10_000;

/** The node number in a holder's name. */
export function holderNode(holder: string): number {
  return Number(holder.split(":")[1]);
}

/**
 * Which of `holders` are gone: their node is not among `aliveNodes`, or no longer lists them
 * (their keeper saw them end, or killed). Asks the directory once per node.
 */
export async function goneHolders(directory: Directory, holders: Iterable<string>, aliveNodes: ReadonlySet<number>): Promise<Set<string>> {
  const listed = new Map<number, Map<string, number>>();
  const gone = new Set<string>();
  for (const holder of holders) {
    const nodeNumber = holderNode(holder);
    if (aliveNodes.has(nodeNumber)) {
      if (!listed.has(nodeNumber)) listed.set(nodeNumber, await directory.holders(nodeNumber));
      if (listed.get(nodeNumber)!.has(holder)) continue;
    }
    gone.add(holder);
  }
  return gone;
}

export class HoldKeeper {
  readonly #directory: Directory;
  readonly #store: NativeStore;
  readonly #nodeNumber: number;
  /** Held objects: hex → holders. The keeper holds one store reference per entry. */
  readonly #held = new Map<string, Set<string>>();
  readonly #byHolder = new Map<string, Set<string>>();
  /** Holds asked for objects still being written: hex → holders. */
  readonly #pending = new Map<string, Set<string>>();
  #running: Promise<void> | undefined;
  #stopped = false;
  #tidiedMs = 0;
  /** The last error the loop met (Redis away): it goes on and tries again. */
  lastError: Error | undefined;

  /** Where task requests go (none: they are refused). */
  onTask: ((request: string) => void) | undefined;

  constructor(directory: Directory, store: NativeStore, nodeNumber: number) {
    this.#directory = directory;
    this.#store = store;
    this.#nodeNumber = nodeNumber;
  }

  start(): void {
    this.#running ??= this.#run();
  }

  /** Stops the loop; the holds go with the node's store reference. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  /** Objects held for other nodes: hex → holders. */
  heldFor(): Map<string, ReadonlySet<string>> {
    return this.#held;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      try {
        const requests = await this.#directory.takeHolds(this.#nodeNumber, TAKE_MAX, TAKE_WAIT_MS);
        for (const request of requests) await this.handle(request);
        if (Date.now() - this.#tidiedMs >= TIDY_INTERVAL_MS) {
          this.#tidiedMs = Date.now();
          await this.#tidy();
        }
      } catch (error) {
        this.lastError = error as Error;
        await new Promise((resolve) => setTimeout(resolve, TAKE_WAIT_MS));
      }
    }
  }

  /** Handles one request of the list (see the module's doc). */
  async handle(request: string): Promise<void> {
    if (request.startsWith("t ")) return this.onTask?.(request);
    const [verb, subject, holder, ack] = [request[0], ...request.slice(1).trim().split(" ")];
    if (verb === "+") {
      this.hold(subject, holder);
      // Asked for by a process handing the object over (it lets go of its own ref on this).
      if (ack?.startsWith("!")) await this.#directory.sendReplies(ack.slice(1), [`h ${subject}`]);
    }
    else if (verb === "-") this.#release(subject, holder);
    else if (verb === "x") this.#releaseHolder(subject);
    else if (verb === "m") await this.#directory.putListing(subject, this.#listing());
  }

  /** Holds object `hex` of this node for `holder` (a no-op if it is gone). */
  hold(hex: string, holder: string): void {
    const holders = this.#held.get(hex);
    if (holders !== undefined) {
      holders.add(holder);
      this.#index(holder, hex);
      return;
    }
    const id = fromHex(hex, ID_BYTES);
    if (id === undefined) return;
    const status = this.#store.addRef(id);
    if (status === Status.ok) {
      this.#held.set(hex, new Set([holder]));
      this.#index(holder, hex);
    } else if (status === Status.notSealed || status === Status.busy) {
      let waiting = this.#pending.get(hex);
      if (waiting === undefined) this.#pending.set(hex, waiting = new Set());
      waiting.add(holder);
    }
    // Absent: gone before the hold came (its refs were all dropped first); nothing to keep.
  }

  #index(holder: string, hex: string): void {
    let hexes = this.#byHolder.get(holder);
    if (hexes === undefined) this.#byHolder.set(holder, hexes = new Set());
    hexes.add(hex);
  }

  #release(hex: string, holder: string): void {
    const waiting = this.#pending.get(hex);
    if (waiting?.delete(holder) && waiting.size === 0) this.#pending.delete(hex);
    const holders = this.#held.get(hex);
    if (holders === undefined || !holders.delete(holder)) return;
    const hexes = this.#byHolder.get(holder)!;
    hexes.delete(hex);
    if (hexes.size === 0) this.#byHolder.delete(holder);
    if (holders.size > 0) return;
    this.#held.delete(hex);
    this.#store.dropRef(fromHex(hex, ID_BYTES)!);
  }

  #releaseHolder(holder: string): void {
    for (const hex of [...this.#byHolder.get(holder) ?? []]) this.#release(hex, holder);
    for (const [hex, waiting] of this.#pending) {
      if (waiting.delete(holder) && waiting.size === 0) this.#pending.delete(hex);
    }
  }

  async #tidy(): Promise<void> {
    this.#takePending();
    const aliveNodes = (await this.#directory.nodes()).filter((node) => node.alive).map((node) => node.nodeNumber);
    await this.#tellDeadProcesses(aliveNodes);
    await this.#releaseDeletedContainers();
    await this.#unlistGoneCopies();
    await this.#releaseOrphanedBundles(aliveNodes);
    this.#releaseDeadNodes(new Set(aliveNodes));
  }

  #takePending(): void {
    for (const [hex, waiting] of [...this.#pending]) {
      this.#pending.delete(hex);
      for (const holder of waiting) this.hold(hex, holder);
    }
  }

  async #tellDeadProcesses(aliveNodes: number[]): Promise<void> {
    const holders = await this.#directory.holders(this.#nodeNumber);
    const deadPids = [...holders].filter(([, pid]) => !processRuns(pid));
    if (deadPids.length === 0) return;
    for (const [, pid] of deadPids) await this.#directory.recordDeath(this.#nodeNumber, pid);
    const dead = deadPids.map(([holder]) => holder);
    for (const nodeNumber of aliveNodes) await this.#directory.sendHolds(nodeNumber, dead.map((holder) => `x ${holder}`));
    for (const holder of dead) await this.#directory.removeHolder(this.#nodeNumber, holder);
  }

  async #releaseDeletedContainers(): Promise<void> {
    for (const [hex, children] of await this.#directory.containers(this.#nodeNumber)) {
      const id = fromHex(hex, ID_BYTES);
      if (id !== undefined && this.#store.contains(id) !== Presence.absent) continue;
      const byNode = new Map<number, string[]>();
      for (const child of children) {
        const nodeNumber = nodeNumberOfHex(child);
        byNode.set(nodeNumber, [...byNode.get(nodeNumber) ?? [], `-${child} c:${this.#nodeNumber}:${hex}`]);
      }
      for (const [nodeNumber, requests] of byNode) await this.#directory.sendHolds(nodeNumber, requests);
      await this.#directory.removeContainer(this.#nodeNumber, hex);
    }
  }

  async #unlistGoneCopies(): Promise<void> {
    for (const hex of await this.#directory.copiesHeldBy(this.#nodeNumber)) {
      const id = fromHex(hex, ID_BYTES);
      if (id !== undefined && this.#store.contains(id) !== Presence.absent) continue;
      await this.#directory.removeCopy(hex, this.#nodeNumber);
    }
  }

  /** Bundles reserved here by placement groups whose owner is gone (killed, or its node). */
  async #releaseOrphanedBundles(aliveNodes: number[]): Promise<void> {
    const reserved = await this.#directory.reservations(this.#nodeNumber);
    if (reserved.size === 0) return;
    const ownerOf = (field: string) => field.split("|")[0];
    const gone = await goneHolders(this.#directory, new Set([...reserved.keys()].map(ownerOf)), new Set(aliveNodes));
    for (const field of reserved.keys()) {
      if (gone.has(ownerOf(field))) await this.#directory.release(this.#nodeNumber, field);
    }
  }

  #releaseDeadNodes(alive: Set<number>): void {
    if (this.#byHolder.size === 0 && this.#pending.size === 0) return;
    alive.add(this.#nodeNumber);
    const holders = new Set([...this.#byHolder.keys(), ...[...this.#pending.values()].flatMap((set) => [...set])]);
    for (const holder of holders) {
      if (!alive.has(holderNode(holder))) this.#releaseHolder(holder);
    }
  }

  #listing(): NodeObjects {
    const objects = this.#store.list();
    const heldFor: Record<string, string[]> = {};
    for (const [hex, holders] of this.#held) heldFor[hex] = [...holders];
    return {
      nodeNumber: this.#nodeNumber,
      objects: objects.slice(0, LISTING_MAX).map((o) => ({ id: o.id, sizeBytes: o.sizeBytes, refCount: o.referencingProcesses, where: o.state })),
      heldFor,
      truncated: objects.length > LISTING_MAX,
    };
  }
}
