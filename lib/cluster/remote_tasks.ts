/**
 * A driver's tasks running on other nodes: each request goes, signed, into the request list
 * of the node chosen (its keeper hands it to the node's executor, lib/tasks/node_executor.ts);
 * the outcome comes back through this process's reply list. While any is out, a loop reads
 * the replies and, once a second, looks for nodes that died under their tasks.
 *
 * Replies: `d <task> <attempt> <node>` (its results are sealed on that node), `e <task>
 * <attempt> <error class> <why>` (it could not be run there), `l <task> <attempt>` (it failed
 * on an object it could not find, an argument lost with its node: the driver makes it again
 * and retries), `f <task> <attempt> <node>` (an actor call sent to the actor's owner went on
 * to the actor's node), `h <hex>` (a node's keeper holds an object this process hands over).
 *
 * A process whose actor handles went to other processes also serves requests in its list
 * (`t <mac> <json>`: calls of its actors by those processes), as long as it runs.
 */
import type { Directory } from "./directory.ts";
import { goneHolders, holderNode } from "./holds.ts";
import { signRequest, type TaskRequest } from "./task_requests.ts";

/** What the scheduler is told. */
export interface RemoteTaskEvents {
  /** Its results are sealed on node `keptOn` (undefined: the node it was sent to). */
  done(task: number, attempt: number, keptOn: number | undefined): void;
  /** An actor call sent to the actor's owner went on to node `node`. */
  movedTo(task: number, attempt: number, node: number): void;
  /** A signed request of another process for this one (a call of an actor it owns). */
  request(text: string): void;
  /** A node's keeper holds object `hex`, handed over by this process. */
  held(hex: string): void;
  /** Owners of actors this process called are gone, with calls out. */
  ownersDied(owners: ReadonlySet<string>): void;
  refused(task: number, attempt: number, errorName: string, why: string): void;
  /** It failed on an object it could not find there (and stored nothing). */
  lostAnObject(task: number, attempt: number, why: string): void;
  /** Nodes that were running tasks of this process are no longer alive. */
  nodesDied(nodeNumbers: ReadonlySet<number>): void;
}

const REPLIES_MAX = 256;
const REPLY_WAIT_MS = 250;
const NODE_CHECK_INTERVAL_MS = 500;

export class RemoteTasks {
  readonly #directory: () => Promise<Directory>;
  readonly #holder: string;
  readonly #token: string;
  readonly #events: RemoteTaskEvents;
  /** Tasks out per node. */
  readonly #outByNode = new Map<number, number>();
  /** Actor calls out per owner they were sent to (also counted on the owner's node). */
  readonly #outByOwner = new Map<string, number>();
  /** True once this process serves other processes' requests: the loop runs until close. */
  #serving = false;
  #loop: Promise<void> | undefined;
  #checkedMs = 0;
  #closed = false;

  constructor(directory: () => Promise<Directory>, holder: string, token: string, events: RemoteTaskEvents) {
    this.#directory = directory;
    this.#holder = holder;
    this.#token = token;
    this.#events = events;
  }

  /** Sends `request` to node `nodeNumber`; its outcome comes as an event. */
  send(nodeNumber: number, request: TaskRequest): void {
    count(this.#outByNode, nodeNumber, 1);
    const text = signRequest(this.#token, request);
    this.#directory().then((directory) => directory.sendHolds(nodeNumber, [text])).catch((error) => {
      this.#events.refused(request.task, request.attempt, "DirectoryUnavailableError", `could not reach the cluster's directory: ${(error as Error).message}`);
    });
    this.#ensureLoop();
  }

  /** Sends an actor call (or kill) to the actor's `owner`, which passes it on to the actor. */
  sendToOwner(owner: string, request: TaskRequest): void {
    const nodeNumber = holderNode(owner);
    count(this.#outByNode, nodeNumber, 1);
    count(this.#outByOwner, owner, 1);
    this.reply(owner, signRequest(this.#token, request), () => {
      this.#events.refused(request.task, request.attempt, "DirectoryUnavailableError", "could not reach the cluster's directory");
    });
    this.#ensureLoop();
  }

  /** A call sent to `owner` ended (its node's count is `ended`'s). */
  endedOwner(owner: string): void {
    count(this.#outByOwner, owner, -1);
  }

  /** A call sent to `owner` went on to node `nodeNumber`: it is out there now. */
  movedTo(owner: string, nodeNumber: number): void {
    this.ended(holderNode(owner));
    this.endedOwner(owner);
    count(this.#outByNode, nodeNumber, 1);
  }

  /** Serves other processes' requests from now on (this process's actor handles went out). */
  serve(): void {
    this.#serving = true;
    this.#ensureLoop();
  }

  /** Puts `text` in process `holder`'s reply list. */
  reply(holder: string, text: string, failed: () => void = () => {}): void {
    this.#directory().then((directory) => directory.sendReplies(holder, [text])).catch(failed);
  }

  /** Asks node `nodeNumber`'s keeper to hold `hexes` for `holder`, each `held` once it does. */
  handOver(nodeNumber: number, hexes: string[], holder: string): void {
    const texts = hexes.map((hex) => `+${hex} ${holder} !${this.#holder}`);
    this.#directory().then((directory) => directory.sendHolds(nodeNumber, texts)).catch(() => {});
    this.#ensureLoop();
  }

  /** Runs the loop while tasks are out. A task sent as the loop was ending (after its last
   * look, before it was marked ended) starts it again. */
  #ensureLoop(): void {
    if (this.#loop !== undefined) return;
    this.#loop = this.#run().finally(() => {
      this.#loop = undefined;
      if (this.#wanted()) this.#ensureLoop();
    });
  }

  /** Sends `request` to node `nodeNumber` expecting no reply (an actor to start or kill). */
  post(nodeNumber: number, request: TaskRequest): void {
    const text = signRequest(this.#token, request);
    this.#directory().then((directory) => directory.sendHolds(nodeNumber, [text])).catch(() => {
      // Its calls, sent the same way, fail in turn and say why.
    });
  }

  /** A task sent to `nodeNumber` ended (done, refused, or moved away from a dead node). */
  ended(nodeNumber: number): void {
    count(this.#outByNode, nodeNumber, -1);
  }

  async close(): Promise<void> {
    this.#closed = true;
    // The loop's last wait may not hold the process (it only served): this does, until it ends.
    const holding = setTimeout(() => {}, 2 * REPLY_WAIT_MS + 10_000);
    try {
      await this.#loop;
    } finally {
      clearTimeout(holding);
    }
  }

  async #run(): Promise<void> {
    const directory = await this.#directory();
    while (this.#wanted()) {
      try {
        // With nothing out, the loop only serves other processes: the program may end meanwhile.
        const waiting = this.#outByNode.size > 0;
        for (const reply of await directory.takeReplies(this.#holder, REPLIES_MAX, REPLY_WAIT_MS, waiting)) this.#handle(reply);
        if (Date.now() - this.#checkedMs >= NODE_CHECK_INTERVAL_MS) await this.#checkNodes(directory);
      } catch {
        // Redis away: the tasks stay out; their nodes are checked again once it is back.
        await new Promise((resolve) => setTimeout(resolve, REPLY_WAIT_MS));
      }
    }
  }

  #wanted(): boolean {
    return (this.#outByNode.size > 0 || this.#serving) && !this.#closed;
  }

  #handle(reply: string): void {
    if (reply.startsWith("t ")) return this.#events.request(reply);
    const [verb, task, attempt, ...rest] = reply.split(" ");
    const [errorName, ...why] = rest;
    if (verb === "d") this.#events.done(Number(task), Number(attempt), rest[0] === undefined ? undefined : Number(rest[0]));
    else if (verb === "f") this.#events.movedTo(Number(task), Number(attempt), Number(rest[0]));
    else if (verb === "h") this.#events.held(task);
    else if (verb === "e") this.#events.refused(Number(task), Number(attempt), errorName, why.join(" "));
    else if (verb === "l") this.#events.lostAnObject(Number(task), Number(attempt), rest.join(" "));
  }

  async #checkNodes(directory: Directory): Promise<void> {
    this.#checkedMs = Date.now();
    const alive = new Set((await directory.nodes()).filter((node) => node.alive).map((node) => node.nodeNumber));
    const dead = new Set([...this.#outByNode.keys()].filter((nodeNumber) => !alive.has(nodeNumber)));
    if (dead.size > 0) this.#events.nodesDied(dead);
    const gone = await goneHolders(directory, [...this.#outByOwner.keys()], alive);
    if (gone.size > 0) this.#events.ownersDied(gone);
  }
}

/** Adds `delta` to `key`'s count in `counts`; a count that reaches 0 leaves the map. */
function count<K>(counts: Map<K, number>, key: K, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta;
  if (next > 0) counts.set(key, next);
  else counts.delete(key);
}
