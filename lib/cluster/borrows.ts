/**
 * The references this process holds to objects made on other nodes of its cluster, and the
 * requests that make those nodes keep the objects for it (ARCHITECTURE.md, "References across
 * nodes").
 *
 * An object lives in the store of the node that made it (its primary) while any process of the
 * cluster references it. A process of another node tells the primary's keeper
 * (lib/cluster/holds.ts) when it takes its first ref to the object (`+<hex> <holder>`) and
 * when it drops its last (`-<hex> <holder>`); an object of this node holding refs to other
 * nodes' objects (a container) has them held in its own name (`c:<node>:<hex>`), released by
 * this node's keeper once the container is deleted. The local copy a pull brought here is held
 * by one store reference of this process while it holds any ref to the object.
 *
 * Why this order is safe: every request of this process goes out over one connection in the
 * order it was made, so a keeper hears a hold taken while decoding a container before the
 * release of that container (which is what held the object until then).
 */
import type { Directory } from "./directory.ts";
import { nodeNumberOf } from "./node_number.ts";
import { toHex } from "../ids.ts";

/** What a borrow needs from this node's store. */
export interface LocalCopies {
  /** Takes a reference on this node's copy; true if there is a sealed copy here. */
  holdCopy(id: Uint8Array): boolean;
  dropCopy(id: Uint8Array): void;
}

interface Borrow {
  readonly id: Uint8Array;
  /** Refs of this process to the object. */
  refs: number;
  /** Whether this process holds a reference on the local copy. */
  holdsCopy: boolean;
}

type Request =
  | { kind: "hold"; nodeNumber: number; text: string }
  | { kind: "container"; hex: string; children: string[] };

/** One process's borrows. */
export class Borrows {
  /** This process's name in its requests: `p:<node>:<pid>:<nonce>`. */
  readonly holder: string;
  readonly pid: number;
  readonly #nodeNumber: number;
  readonly #copies: LocalCopies;
  readonly #directory: () => Promise<Directory>;
  readonly #byHex = new Map<string, Borrow>();
  /** Objects kept by another node than the one their id names (a task's result run
   * elsewhere): hex → that node. */
  readonly #keptOn = new Map<string, number>();
  /** Nodes this process sent holds to, told when it leaves. */
  readonly #toldNodes = new Set<number>();
  #queue: Request[] = [];
  #flushing: Promise<void> = Promise.resolve();
  #flushScheduled = false;
  #registered = false;
  #closed = false;
  /** The last error a flush met (a lost request: the object may be freed early or kept late). */
  lastError: Error | undefined;

  constructor(nodeNumber: number, pid: number, copies: LocalCopies, directory: () => Promise<Directory>) {
    this.#nodeNumber = nodeNumber;
    this.holder = `p:${nodeNumber}:${pid}:${Math.random().toString(36).slice(2, 10)}`;
    this.#copies = copies;
    this.#directory = directory;
    this.pid = pid;
  }

  /** True if `id` was made on another node (or is kept by one: a task's result run there,
   * whatever its id says): its refs are borrows. */
  isForeign(id: Uint8Array): boolean {
    const made = nodeNumberOf(id);
    if (made !== 0 && made !== this.#nodeNumber) return true;
    return this.#keptOn.size > 0 && this.#keptOn.has(toHex(id));
  }

  /** One more ref of this process to the foreign object `id`. */
  take(id: Uint8Array, hex: string): void {
    let borrow = this.#byHex.get(hex);
    if (borrow === undefined) {
      borrow = { id, refs: 0, holdsCopy: this.#copies.holdCopy(id) };
      this.#byHex.set(hex, borrow);
      this.#send(this.#keeperOf(id, hex), `+${hex} ${this.holder}`);
    }
    borrow.refs += 1;
  }

  /** One ref fewer; the last one releases the copy here and the hold on the primary. */
  give(hex: string): void {
    const borrow = this.#byHex.get(hex);
    if (borrow === undefined) return;
    borrow.refs -= 1;
    if (borrow.refs > 0) return;
    this.#byHex.delete(hex);
    if (borrow.holdsCopy) this.#copies.dropCopy(borrow.id);
    this.#send(this.#keeperOf(borrow.id, hex), `-${hex} ${this.holder}`);
    this.#keptOn.delete(hex);
  }

  /**
   * Object `hex` is kept for this process by node `nodeNumber` (which ran the task making
   * it), whatever its id says: holds and releases go there. A result no ref of this process
   * reaches any longer is released at once, and so is one of this node (its refs hold it in
   * the store here: call this after they took their references).
   */
  keptOn(id: Uint8Array, hex: string, nodeNumber: number, stillReferenced: boolean): void {
    if (nodeNumber === this.#nodeNumber) {
      // Kept in this node's store: this process's refs hold it here (a borrow takes its copy
      // now), so the keeper's hold goes.
      this.copyArrived(hex);
      this.#send(nodeNumber, `-${hex} ${this.holder}`);
      return;
    }
    if (!stillReferenced && !this.#byHex.has(hex)) {
      this.#send(nodeNumber, `-${hex} ${this.holder}`);
      return;
    }
    if (nodeNumber !== nodeNumberOf(id)) this.#keptOn.set(hex, nodeNumber);
  }

  /** The node keeping object `hex` for this process when it is not the one its id names. */
  keptBy(hex: string): number | undefined {
    return this.#keptOn.get(hex);
  }

  #keeperOf(id: Uint8Array, hex: string): number {
    return this.#keptOn.get(hex) ?? nodeNumberOf(id);
  }

  /** A copy arrived here: a process holding refs to the object holds the copy too. */
  copyArrived(hex: string): void {
    const borrow = this.#byHex.get(hex);
    if (borrow === undefined || borrow.holdsCopy) return;
    borrow.holdsCopy = this.#copies.holdCopy(borrow.id);
  }

  /** Object `hex` of this node holds `children` (other nodes' objects) until it is deleted. */
  contain(hex: string, children: Uint8Array[], childHexes: string[]): void {
    const holder = `c:${this.#nodeNumber}:${hex}`;
    children.forEach((child, i) => this.#send(nodeNumberOf(child), `+${childHexes[i]} ${holder}`));
    // After its holds: this node's keeper releases them once it sees the record and the
    // object gone, so the record must not come first.
    this.#queue.push({ kind: "container", hex, children: childHexes });
  }

  /** Refs held to other nodes' objects, by hex. */
  get size(): number {
    return this.#byHex.size;
  }

  #send(nodeNumber: number, text: string): void {
    if (this.#closed) return;
    this.#toldNodes.add(nodeNumber);
    this.#queue.push({ kind: "hold", nodeNumber, text });
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // After the current job: a loop decoding many refs sends them in a few commands.
    setTimeout(() => void this.flush(), 0);
  }

  /**
   * Records this process among its node's processes (once): its node's keeper tells the
   * cluster when it dies, and a borrower of an object it owns asks whether it still lives
   * (`ClusterClient.fetch`). A driver does so as it joins, before it hands out any id.
   */
  async register(): Promise<void> {
    if (!this.#registered) await this.#record(await this.#directory());
  }

  /** Issues the record at once (so that commands issued after it on the connection follow it). */
  #record(directory: Directory): Promise<void> {
    this.#registered = true;
    return directory.addHolder(this.#nodeNumber, this.holder, this.pid);
  }

  /** Sends what is queued, in order; resolves once Redis has it. */
  flush(): Promise<void> {
    this.#flushScheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(() => this.#sendInOrder(queue)).catch((error) => {
      this.lastError = error as Error;
    });
    return this.#flushing;
  }

  async #sendInOrder(queue: Request[]): Promise<void> {
    const directory = await this.#directory();
    const sent: Promise<unknown>[] = [];
    // Recorded before any hold: if this process dies, its node's keeper finds it by this.
    if (!this.#registered) sent.push(this.#record(directory));
    // Issued without awaiting in between: one connection keeps their order. Neighbouring
    // holds to one node go in one command.
    for (let i = 0; i < queue.length;) {
      const request = queue[i];
      if (request.kind === "container") {
        sent.push(directory.addContainer(this.#nodeNumber, request.hex, request.children));
        i += 1;
        continue;
      }
      const texts: string[] = [];
      for (; i < queue.length; i++) {
        const next = queue[i];
        if (next.kind !== "hold" || next.nodeNumber !== request.nodeNumber) break;
        texts.push(next.text);
      }
      sent.push(directory.sendHolds(request.nodeNumber, texts));
    }
    await Promise.all(sent);
  }

  /**
   * Releases every borrow (the session ends): the copies here, and the holds on every node
   * this process told, in one "holder gone" each.
   */
  async close(): Promise<void> {
    for (const borrow of this.#byHex.values()) {
      if (borrow.holdsCopy) this.#copies.dropCopy(borrow.id);
    }
    this.#byHex.clear();
    for (const nodeNumber of this.#toldNodes) this.#send(nodeNumber, `x ${this.holder}`);
    this.#closed = true;
    await this.flush();
    if (this.#registered) {
      const directory = await this.#directory();
      await directory.removeHolder(this.#nodeNumber, this.holder).catch(() => {});
    }
  }
}
