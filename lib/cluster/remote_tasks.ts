/**
 * A driver's tasks running on other nodes: each request goes, signed, into the request list
 * of the node chosen (its keeper hands it to the node's executor, lib/tasks/node_executor.ts);
 * the outcome comes back through this process's reply list. While any is out, a loop reads
 * the replies and, once a second, looks for nodes that died under their tasks.
 *
 * Replies: `d <task> <attempt>` (its results are sealed there), `e <task> <attempt> <error
 * class> <why>` (it could not be run there), `l <task> <attempt>` (it failed on an object it
 * could not find, an argument lost with its node: the driver makes it again and retries).
 */
import type { Directory } from "./directory.ts";
import { signRequest, type TaskRequest } from "./task_requests.ts";

/** What the scheduler is told. */
export interface RemoteTaskEvents {
  done(task: number, attempt: number): void;
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
    this.#outByNode.set(nodeNumber, (this.#outByNode.get(nodeNumber) ?? 0) + 1);
    const text = signRequest(this.#token, request);
    this.#directory().then((directory) => directory.sendHolds(nodeNumber, [text])).catch((error) => {
      this.#events.refused(request.task, request.attempt, "DirectoryUnavailableError", `could not reach the cluster's directory: ${(error as Error).message}`);
    });
    this.#ensureLoop();
  }

  /** Runs the loop while tasks are out. A task sent as the loop was ending (after its last
   * look, before it was marked ended) starts it again. */
  #ensureLoop(): void {
    if (this.#loop !== undefined) return;
    this.#loop = this.#run().finally(() => {
      this.#loop = undefined;
      if (this.#outByNode.size > 0 && !this.#closed) this.#ensureLoop();
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
    const out = (this.#outByNode.get(nodeNumber) ?? 0) - 1;
    if (out > 0) this.#outByNode.set(nodeNumber, out);
    else this.#outByNode.delete(nodeNumber);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#loop;
  }

  async #run(): Promise<void> {
    const directory = await this.#directory();
    while (this.#outByNode.size > 0 && !this.#closed) {
      try {
        for (const reply of await directory.takeReplies(this.#holder, REPLIES_MAX, REPLY_WAIT_MS)) this.#handle(reply);
        if (Date.now() - this.#checkedMs >= NODE_CHECK_INTERVAL_MS) await this.#checkNodes(directory);
      } catch {
        // Redis away: the tasks stay out; their nodes are checked again once it is back.
        await new Promise((resolve) => setTimeout(resolve, REPLY_WAIT_MS));
      }
    }
  }

  #handle(reply: string): void {
    const [verb, task, attempt, ...rest] = reply.split(" ");
    const [errorName, ...why] = rest;
    if (verb === "d") this.#events.done(Number(task), Number(attempt));
    else if (verb === "e") this.#events.refused(Number(task), Number(attempt), errorName, why.join(" "));
    else if (verb === "l") this.#events.lostAnObject(Number(task), Number(attempt), rest.join(" "));
  }

  async #checkNodes(directory: Directory): Promise<void> {
    this.#checkedMs = Date.now();
    const alive = new Set((await directory.nodes()).filter((node) => node.alive).map((node) => node.nodeNumber));
    const dead = new Set([...this.#outByNode.keys()].filter((nodeNumber) => !alive.has(nodeNumber)));
    if (dead.size > 0) this.#events.nodesDied(dead);
  }
}
