/**
 * The owner's side of actor handles that went to other processes of the cluster: their calls
 * and kills arrive in this process's reply list (lib/cluster/remote_tasks.ts), signed with the
 * cluster's token. A call of an actor on another node is passed on to that node (the caller is
 * told where: `f`, so that node's death fails the call there); a call of an actor in this
 * process's own worker runs here, and its results are handed over to this node's keeper, which
 * holds them for the caller, before this process lets go of them and replies `d`.
 * (ARCHITECTURE.md, "Tasks across nodes".)
 */
import type { ObjectRef } from "../object_ref.ts";
import type { ClusterClient } from "../cluster/cluster.ts";
import { trace } from "../cluster/debug.ts";
import { nodeNumberOf } from "../cluster/node_number.ts";
import type { RemoteTasks } from "../cluster/remote_tasks.ts";
import { openRequest, RefusedRequest, type TaskRequest } from "../cluster/task_requests.ts";
import { fromHex, ID_BYTES } from "../ids.ts";
import type { WireArguments } from "./protocol.ts";
import type { RemoteActor } from "./task.ts";

/** How long an owner waits for its node's keeper to hold a call's results for the caller
 * before it lets go of them anyway (the keeper is gone: so is the caller's way to them). */
const HAND_OVER_WAIT_MS = 10_000;

/** What the owner's scheduler does for it. */
export interface OwnActors {
  /** The actor `actorId` if it runs on another node. */
  onNode(actorId: number): RemoteActor | undefined;
  /** Calls actor `actorId` in this process's worker, storing under `returnIds`; undefined if
   * there is no such actor here. */
  callHere(actorId: number, method: string, args: WireArguments, returnIds: Uint8Array[]): ObjectRef[] | undefined;
  kill(actorId: number): void;
}

export class ActorOwner {
  readonly #cluster: ClusterClient;
  readonly #remote: RemoteTasks;
  readonly #actors: OwnActors;
  /** Results handed over to this node's keeper: what to do once it holds each. */
  readonly #handingOver = new Map<string, () => void>();

  constructor(cluster: ClusterClient, remote: RemoteTasks, actors: OwnActors) {
    this.#cluster = cluster;
    this.#remote = remote;
    this.#actors = actors;
  }

  /** A call (or kill) of one of this process's actors by another process that has its handle. */
  serve(text: string): void {
    const request = openRequest(this.#cluster.node.token, text);
    if (request instanceof RefusedRequest) {
      const to = request.replyTo;
      if (to !== undefined) this.#remote.reply(to.holder, `e ${to.task} ${to.attempt} ClusterAuthError ${request.message}`);
      return;
    }
    const actorId = request.actor ?? 0;
    if (request.kind === "kill") return this.#actors.kill(actorId);
    const fail = (name: string, why: string) => this.#remote.reply(request.holder, `e ${request.task} ${request.attempt} ${name} ${why}`);
    if (request.kind !== "call") return fail("ObjstoreError", "a process serves only calls and kills of its actors");
    const onNode = this.#actors.onNode(actorId);
    if (onNode !== undefined) {
      if (onNode.dead !== undefined) return fail(onNode.dead.error.name, onNode.dead.error.message);
      // The caller hears where it went (that node's death fails the call), then from that node.
      this.#remote.reply(request.holder, `f ${request.task} ${request.attempt} ${onNode.node}`);
      this.#remote.post(onNode.node, { ...request, owner: this.#cluster.borrows.holder, incarnation: onNode.incarnation });
      return;
    }
    trace(() => `serve call ${request.task} of ${request.holder}: actor ${actorId}.${request.method}`);
    const returnIds = request.returns.map((hex) => fromHex(hex, ID_BYTES));
    if (returnIds.some((id) => id === undefined)) return fail("ObjstoreError", "a return id is not an id");
    const refs = this.#actors.callHere(actorId, request.method ?? "", request.args as WireArguments, returnIds as Uint8Array[]);
    if (refs === undefined) return fail("ActorDiedError", `process ${this.#cluster.borrows.holder} has no actor ${actorId} (it was killed)`);
    void this.#handOverWhenDone(request, refs);
  }

  /** This node's keeper holds object `hex`, handed over for a caller. */
  held(hex: string): void {
    this.#handingOver.get(hex)?.();
  }

  /**
   * Once a call served for another process has sealed its results (values or its failure)
   * here, this node's keeper holds them for the caller; then this process lets go of them
   * and tells the caller they are done, and where.
   */
  async #handOverWhenDone(request: TaskRequest, refs: ObjectRef[]): Promise<void> {
    const nodeNumber = this.#cluster.node.nodeNumber;
    await Promise.all(refs.map((ref) => ref.producer?.done));
    const directory = await this.#cluster.directory();
    // Made here under the caller's ids (which name its node): listed before the caller looks.
    await Promise.all(refs.map((ref) => nodeNumberOf(ref.bytes) === nodeNumber ? undefined : directory.addCopy(ref.id, nodeNumber).catch(() => {})));
    const held = refs.map((ref) => this.#whenHeld(ref.id));
    this.#remote.handOver(nodeNumber, refs.map((ref) => ref.id), request.holder);
    trace(() => `call ${request.task} of ${request.holder} done, handing over ${refs.map((ref) => ref.id.slice(0, 12)).join(",")}`);
    await Promise.all(held);
    for (const ref of refs) ref[Symbol.dispose]();
    this.#remote.reply(request.holder, `d ${request.task} ${request.attempt} ${nodeNumber}`);
  }

  #whenHeld(hex: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#handingOver.delete(hex);
        resolve();
      };
      const timer = setTimeout(done, HAND_OVER_WAIT_MS);
      this.#handingOver.set(hex, done);
    });
  }
}
