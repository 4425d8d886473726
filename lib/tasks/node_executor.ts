/**
 * A node's executor: runs the tasks (and actors) that drivers on other nodes place here
 * (lib/cluster/remote_tasks.ts sends them through this node's request list) on the node
 * process's own workers, under the return ids the driver minted. A request must be signed
 * with the cluster's token (lib/cluster/task_requests.ts), or nothing of it is evaluated.
 *
 * Once a task's results are sealed here, the node's keeper holds them for the driver's
 * process (as if it had sent holds for them) before the driver hears they are done, so they
 * outlive the executor's own refs; the driver's borrows release them later.
 */
import process from "node:process";
import { fromHex, ID_BYTES } from "../ids.ts";
import type { ObjectRef } from "../object_ref.ts";
import { get } from "../objects.ts";
import type { Directory } from "../cluster/directory.ts";
import type { HoldKeeper } from "../cluster/holds.ts";
import { nodeNumberOf } from "../cluster/node_number.ts";
import { openRequest, RefusedRequest, type TaskRequest } from "../cluster/task_requests.ts";
import type { FunctionSpec, WireArguments } from "./protocol.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Task } from "./task.ts";
import type { FunctionRecord } from "./submitter.ts";

/** Ids for the functions other nodes send, apart from those `remote()` numbers here. */
let nextFunctionId = 2_000_000_000;

export class NodeExecutor {
  readonly #scheduler: Scheduler;
  readonly #keeper: HoldKeeper;
  readonly #directory: Directory;
  readonly #token: string;
  readonly #nodeNumber: number;
  /** Functions by "<driver holder>:<its function id>". */
  readonly #functions = new Map<string, FunctionRecord>();
  /** Actors started here for drivers elsewhere: "<owner>#<actor>#<incarnation>" → number here. */
  readonly #actors = new Map<string, number>();
  /** Tasks running here for other nodes' drivers. */
  running = 0;

  constructor(scheduler: Scheduler, keeper: HoldKeeper, directory: Directory, token: string, nodeNumber: number) {
    this.#scheduler = scheduler;
    this.#keeper = keeper;
    this.#directory = directory;
    this.#token = token;
    this.#nodeNumber = nodeNumber;
  }

  /** Runs the signed request `text`; a request not signed with the token is dropped, with a warning. */
  handle(text: string): void {
    const request = openRequest(this.#token, text);
    if (request instanceof RefusedRequest) {
      process.emitWarning(`objstore node: refused a task request: ${request.message}`);
      const to = request.replyTo;
      if (to !== undefined) this.#reply(to.holder, `e ${to.task} ${to.attempt} ClusterAuthError ${request.message}`);
      return;
    }
    const actorKey = `${request.owner ?? request.holder}#${request.actor}#${request.incarnation ?? request.attempt}`;
    if (request.kind === "actor") {
      this.#actors.set(actorKey, this.#scheduler.createActorFor(this.#function(request), request.args as WireArguments, request.maxConcurrency ?? 1));
      return;
    }
    if (request.kind === "kill") {
      const actor = this.#actors.get(actorKey);
      if (actor !== undefined) this.#scheduler.killActor(actor);
      this.#actors.delete(actorKey);
      return;
    }
    let refs: ObjectRef[];
    try {
      const returnIds = request.returns.map((hex) => fromHex(hex, ID_BYTES));
      if (returnIds.some((id) => id === undefined)) throw new Error("a return id is not an id");
      if (request.kind === "call") {
        const actor = this.#actors.get(actorKey);
        if (actor === undefined) {
          this.#reply(request.holder, `e ${request.task} ${request.attempt} ActorDiedError node ${this.#nodeNumber} runs no such actor (it was killed, or its node restarted)`);
          return;
        }
        refs = this.#scheduler.callActorFor(actor, request.method ?? "", request.args as WireArguments, returnIds as Uint8Array[]);
      } else {
        refs = this.#scheduler.runFor(this.#function(request), request.args as WireArguments, returnIds as Uint8Array[], 0);
      }
    } catch (error) {
      this.#reply(request.holder, `e ${request.task} ${request.attempt} ObjstoreError ${(error as Error).message}`);
      return;
    }
    this.running += 1;
    void this.#whenDone(request, refs, refs[0]?.producer as Task | undefined);
  }

  #function(request: TaskRequest): FunctionRecord {
    const fn = request.fn;
    if (fn === undefined) throw new Error("the request names no function");
    const key = `${request.holder}:${fn.id}`;
    let record = this.#functions.get(key);
    if (record === undefined) {
      record = { id: nextFunctionId++, name: fn.name, spec: fn.spec as FunctionSpec };
      this.#functions.set(key, record);
    }
    return record;
  }

  async #whenDone(request: TaskRequest, refs: ObjectRef[], task: Task | undefined): Promise<void> {
    await Promise.all(refs.map((ref) => ref.producer?.done));
    if (request.kind !== "call" && task?.lostAnObject) {
      // An object it read was lost (its node died after the driver sent it): the driver makes
      // it again and sends the task anew. Its failure goes, so the retry can store its results.
      const why = await get(refs[0], { timeout: 0 }).then(() => "", (error) => (error as Error).message);
      for (const ref of refs) ref[Symbol.dispose]();
      this.running -= 1;
      this.#reply(request.holder, `l ${request.task} ${request.attempt} ${why}`);
      return;
    }
    // Sealed here, values or the task's failure: kept for the driver until it lets them go.
    const listed: Promise<void>[] = [];
    for (const ref of refs) {
      this.#keeper.hold(ref.id, request.holder);
      // Made here under another node's id (a retry): listed before anyone is told to fetch it.
      if (nodeNumberOf(ref.bytes) !== this.#nodeNumber) listed.push(this.#directory.addCopy(ref.id, this.#nodeNumber).catch(() => {}));
      ref[Symbol.dispose]();
    }
    await Promise.all(listed);
    this.running -= 1;
    this.#reply(request.holder, `d ${request.task} ${request.attempt} ${this.#nodeNumber}`);
  }

  #reply(holder: string, reply: string): void {
    this.#directory.sendReplies(holder, [reply]).catch((error) => {
      process.emitWarning(`objstore node: could not answer ${holder}: ${(error as Error).message}`);
    });
  }
}
