/**
 * The scheduler's side in a cluster: which node a task or actor goes to (lib/cluster/placement.ts),
 * sending tasks and actor calls to other nodes (lib/cluster/remote_tasks.ts) and hearing their
 * outcome, placing them again when a node dies under them, and the lineage that makes a result
 * lost with its node again. The scheduler (lib/tasks/scheduler.ts) keeps the tasks; this module
 * asks it, through `DispatchHost`, to complete, fail or queue them.
 */
import { ObjectRef } from "../object_ref.ts";
import type { Session } from "../session.ts";
import { ObjstoreError } from "../errors.ts";
import { Presence } from "../store/status.ts";
import { trace } from "../cluster/debug.ts";
import { deathDeclaredWithinMs, type NodeStatus } from "../cluster/directory.ts";
import { nodeNumberOf } from "../cluster/node_number.ts";
import { holderNode } from "../cluster/holds.ts";
import { missing, type Placing, placeTask } from "../cluster/placement.ts";
import { RemoteTasks } from "../cluster/remote_tasks.ts";
import { signRequest, type TaskRequest } from "../cluster/task_requests.ts";
import type { WireArguments } from "./protocol.ts";
import { ActorOwner } from "./actor_owner.ts";
import { type FailureKind, TaskFailure } from "./failure.ts";
import type { Actor, RemoteActor, Task } from "./task.ts";
import type { FunctionRecord } from "./submitter.ts";

/**
 * What the lineage of tasks run on other nodes may cost, at most (Ray's `max_lineage_bytes`,
 * 1 GiB there): past it, the oldest tasks are let go, and their results become ones that
 * cannot be rebuilt.
 */
const LINEAGE_MAX_BYTES = 64 * 1024 * 1024;
/** How often the lineage of results no ref reaches any longer is let go. */
const LINEAGE_SWEEP_MS = 2000;
/** How often a task that lost an argument looks whether the argument's node was declared dead
 * (it waits as long as that takes, `deathDeclaredWithinMs`, then is sent again anyway). */
const LOST_OBJECT_POLL_MS = 500;
/** How long a task to be placed again waits for a node able to run it before it fails. */
const PLACE_AGAIN_WAIT_MS = 15_000;
/** How long one look for a result being written on another node waits for its seal. */
const SEAL_WAIT_MS = 5000;

/** How a task is placed again after its results were lost, if it was placed without options. */
export const defaultPlacing: Placing = { scheduling: "DEFAULT", numCpus: 1, resources: {}, argBytes: new Map() };

type ErrorInfo = { name: string; message: string; stack: string };

/** What the cluster side needs of the scheduler. */
export interface DispatchHost {
  readonly session: Session;
  /** The driver's own workers. */
  readonly numWorkers: number;
  /** Tasks waiting for the driver's own workers. */
  waiting(): number;
  closing(): boolean;
  newTask(name: string, target: { fn?: FunctionRecord; method?: string; actor?: Actor }, args: unknown[], numReturns: number, retries: number, node?: number): Task;
  register(task: Task): Task;
  returnRefs(task: Task): ObjectRef[];
  complete(task: Task): void;
  fail(task: Task, kind: FailureKind, error: ErrorInfo): void;
  enqueue(task: Task): void;
  whenArgumentsReady(task: Task, then: () => void): void;
  isAvailable(ref: ObjectRef): boolean;
  updateKeepAlive(): void;
  /** Calls an actor this process runs in its own workers for another process, storing under
   * `returnIds`; undefined if it has no such actor. */
  callOwnActorFor(actorId: number, method: string, args: WireArguments, returnIds: Uint8Array[]): ObjectRef[] | undefined;
  killActor(actorId: number): void;
}

export class ClusterDispatch {
  readonly #host: DispatchHost;
  /** Actors of this process started on other nodes. */
  readonly remoteActors = new Map<number, RemoteActor>();
  /** Tasks out on other nodes of the cluster, by task number. */
  readonly #remoteTasks = new Map<number, Task>();
  #remote: RemoteTasks | undefined;
  #placements = 0;
  /** Finished tasks run on other nodes, by the hex of each return: what rebuilds a result lost
   * with its node. In the order they finished (the oldest go first past the bound). */
  readonly #lineage = new Map<string, Task>();
  #lineageBytes = 0;
  #lineageSweep: ReturnType<typeof setInterval> | undefined;
  /** Calls of other processes' actors not sent yet, per "<owner>#<actor>", in call order. */
  readonly #foreignQueues = new Map<string, Task[]>();
  /** Nodes that refused this process's requests (another cluster token): never placed on. */
  readonly #refusing = new Set<number>();
  /** Owners seen gone: their actors are gone with them. */
  readonly #goneOwners = new Set<string>();
  /** Serves other processes' calls of this process's actors, once their handles went out. */
  #actorOwner: ActorOwner | undefined;

  constructor(host: DispatchHost) {
    this.#host = host;
  }

  /** Forgets `task` if it is out on another node (it failed here: cancel, say). */
  forgetIfOut(task: Task): void {
    if (this.#remoteTasks.get(task.id) === task) this.remoteOut(task.id, task.attempt);
  }

  /** Kills an actor started on another node; false if `actorId` is not one. */
  killActor(actorId: number): boolean {
    const actor = this.remoteActors.get(actorId);
    if (actor === undefined) return false;
    if (actor.dead !== undefined) return true;
    this.#remote?.post(actor.node, this.actorRequest(actor, "kill"));
    this.actorDied(actor, new TaskFailure("actor", { name: "ActorDiedError", message: `actor ${actor.cls.name} was killed`, stack: "" }, actor.cls.name));
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.#lineageSweep);
    for (const task of new Set(this.#lineage.values())) this.#dropLineage(task);
    await this.#remote?.close();
  }

  /**
   * The node to run a task on in a cluster, or undefined for this process's own workers.
   * Outside a cluster, a task asking for more than this machine has fails at once.
   */
  placement(placing: Placing, excluded: ReadonlySet<number>): number | undefined {
    const cluster = this.#host.session.cluster;
    if (cluster === undefined) {
      if (this.#host.numWorkers === 0) return undefined; // said by `submit`, as without a cluster
      const lacks = missing(placing, this.#host.numWorkers, {});
      if (lacks !== undefined) throw new ObjstoreError(`no node can run it: this one lacks ${lacks}; custom resources need a cluster (objstore start --resources)`);
      return undefined;
    }
    const local = { nodeNumber: cluster.node.nodeNumber, workers: this.#host.numWorkers, saturated: this.#host.waiting() > 0 };
    // The common case needs no view of the cluster: arguments here (or none), workers free.
    const onlyHere = [...placing.argBytes.keys()].every((n) => n === local.nodeNumber);
    if (placing.scheduling === "DEFAULT" && local.workers > 0 && !local.saturated && onlyHere && excluded.size === 0 && missing(placing, local.workers, {}) === undefined) {
      return undefined;
    }
    const avoided = this.#refusing.size === 0 ? excluded : new Set([...excluded, ...this.#refusing]);
    const node = placeTask(placing, cluster.nodesView(), local, this.#placements++, avoided);
    return node === local.nodeNumber && local.workers > 0 ? undefined : node;
  }

  /** Bytes of a task's ref arguments by the node holding them: this store's by their size,
   * another node's counted as 1 (their size is not known here). */
  argBytes(args: unknown[]): Map<number, number> {
    const byNode = new Map<number, number>();
    const cluster = this.#host.session.cluster;
    if (cluster === undefined) return byNode;
    for (const arg of args) {
      if (!(arg instanceof ObjectRef)) continue;
      const here = this.#host.session.store.contains(arg.bytes) !== Presence.absent;
      const node = here ? cluster.node.nodeNumber : nodeNumberOf(arg.bytes) || cluster.node.nodeNumber;
      byNode.set(node, (byNode.get(node) ?? 0) + (here ? this.#host.session.store.sizeOf(arg.bytes) : 1));
    }
    return byNode;
  }

  /** Where an actor starts: undefined for a worker of this process (it needs no free one). */
  actorPlacement(placing: Placing, excluded: ReadonlySet<number>): number | undefined {
    const cluster = this.#host.session.cluster;
    if (cluster === undefined || (placing.scheduling === "DEFAULT" && Object.keys(placing.resources).length === 0 && excluded.size === 0)) return undefined;
    const local = { nodeNumber: cluster.node.nodeNumber, workers: Math.max(1, this.#host.numWorkers), saturated: false };
    const node = placeTask(placing, cluster.nodesView(), local, this.#placements++, excluded);
    return node === local.nodeNumber ? undefined : node;
  }

  sendToNode(task: Task): void {
    if (task.settled) return;
    if (task.cancelled) return this.#host.fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
    const cluster = this.#host.session.cluster!;
    // Arguments made on nodes known dead are made again first.
    const nodes = cluster.nodesView();
    if (task.argRefs.filter((arg) => this.#rebuildIfGone(arg, nodes)).length > 0) {
      return this.#host.whenArgumentsReady(task, () => this.sendToNode(task));
    }
    this.#ensureRemote();
    const fn = task.fn!;
    trace(() => `send task ${task.id}.${task.attempt} ${task.name} to node ${task.node} returns ${task.returnHex.map((h) => h.slice(0, 12)).join(",")}`);
    this.#remoteTasks.set(task.id, task);
    this.#remote!.send(task.node!, {
      task: task.id,
      attempt: task.attempt,
      holder: cluster.borrows.holder,
      fn: { id: fn.id, name: fn.name, spec: fn.spec },
      args: task.args.wire,
      returns: task.returnHex,
    });
    this.#host.updateKeepAlive();
  }

  #ensureRemote(): void {
    const cluster = this.#host.session.cluster!;
    this.#remote ??= new RemoteTasks(() => cluster.directory(), cluster.borrows.holder, cluster.node.token, {
      done: (id, attempt, keptOn) => this.#remoteDone(id, attempt, keptOn),
      refused: (id, attempt, errorName, why) => this.#remoteRefused(id, attempt, errorName, why),
      lostAnObject: (id, attempt, why) => this.#remoteLostAnObject(id, attempt, why),
      nodesDied: (dead) => this.#nodesDied(dead),
      movedTo: (id, attempt, node) => this.#foreignCallMoved(id, attempt, node),
      request: (text) => this.#actorOwner!.serve(text),
      held: (hex) => this.#actorOwner?.held(hex),
      ownersDied: (owners) => this.#ownersDied(owners),
    });
  }

  /** The node a task was sent to stored its results: they are kept there for this process. */
  #remoteDone(id: number, attempt: number, keptOn: number | undefined): void {
    trace(() => `done task ${id}.${attempt}${this.#remoteTasks.get(id)?.attempt === attempt ? "" : " (stale)"}`);
    const task = this.remoteOut(id, attempt);
    if (task === undefined) return;
    if (keptOn !== undefined) task.node = keptOn;
    if (task.requester !== undefined && task.node !== this.#host.session.nodeNumber) return void this.#bringHomeFor(task);
    const borrows = this.#host.session.cluster!.borrows;
    const referenced = task.returnRefs.some((weak) => weak.deref() !== undefined);
    const keep = () => task.returnIds.forEach((returnId, i) => borrows.keptOn(returnId, task.returnHex[i], task.node!, referenced));
    // Results of another node: where the refs' holds go must be known before they are taken.
    // Of this node: the refs hold them in this store once taken, and the keeper's hold goes.
    if (task.node !== this.#host.session.nodeNumber) keep();
    if (task.retriesLeft > 0 && task.fn !== undefined) this.#keepLineage(task);
    this.#host.complete(task);
    if (task.node === this.#host.session.nodeNumber) keep();
  }

  /**
   * A worker's call ran elsewhere (an actor of another process): its results come into this
   * node's store, where the worker's refs take them, before it hears they are done. Until
   * then this process borrows them (the hold the node keeping them has for it).
   */
  async #bringHomeFor(task: Task): Promise<void> {
    const cluster = this.#host.session.cluster!;
    task.returnIds.forEach((id, i) => cluster.borrows.keptOn(id, task.returnHex[i], task.node!, true));
    const refs = task.returnHex.map((hex) => ObjectRef.fromHex(hex));
    try {
      for (const ref of refs) {
        while (!(await cluster.fetch(ref.bytes, ref.id, SEAL_WAIT_MS))) { /* still being written there */ }
      }
      this.#host.complete(task);
    } catch (error) {
      this.#host.fail(task, "error", { name: (error as Error).name, message: `its results could not be brought from node ${task.node}: ${(error as Error).message}`, stack: "" });
    } finally {
      for (const ref of refs) ref[Symbol.dispose]();
    }
  }

  #remoteRefused(id: number, attempt: number, errorName: string, why: string): void {
    const task = this.remoteOut(id, attempt);
    if (task === undefined) return;
    const affinity = task.placing?.scheduling;
    const pinned = typeof affinity === "object" && !affinity.soft;
    if (errorName === "ClusterAuthError" && task.fn !== undefined && !pinned) {
      // A node started with another token: in the directory, but not of this cluster for us.
      this.#refusing.add(task.node!);
      return void this.#placeAgain(task, new Set(), `node ${task.node} refused it (${why})`);
    }
    this.#host.fail(task, "error", { name: errorName, message: `node ${task.node} could not run it: ${why}`, stack: "" });
  }

  /**
   * A task sent elsewhere failed on an object it could not find: an argument lost with its
   * node. Once the view of the cluster shows that node dead (declared within seconds of its
   * last beat), the arguments made by tasks there are made again, and the task is sent anew.
   */
  #remoteLostAnObject(id: number, attempt: number, why: string): void {
    trace(() => `task ${id}.${attempt} lost an object: ${why}`);
    const task = this.remoteOut(id, attempt);
    if (task === undefined) return;
    if (task.retriesLeft-- <= 0) {
      this.#host.fail(task, "error", { name: "ObjectLostError", message: `an object it read was lost, and it has no retries left: ${why}`, stack: "" });
      return;
    }
    task.attempt += 1;
    const nodes = this.#host.session.cluster!.nodesView();
    const waitMs = nodes.length === 0 ? deathDeclaredWithinMs() : Math.max(...nodes.map((node) => deathDeclaredWithinMs(node.heartbeatIntervalMs)));
    void this.#retryAfterLoss(task, Date.now() + waitMs);
  }

  async #retryAfterLoss(task: Task, giveUpWaitingMs: number): Promise<void> {
    const cluster = this.#host.session.cluster!;
    while (!task.settled && !this.#host.closing()) {
      const nodes = await cluster.reloadNodes().catch(() => cluster.nodesView());
      const rebuilt = [...task.argRefs, ...task.heldRefs].filter((ref) => this.#rebuildIfGone(ref, nodes)).length;
      if (rebuilt > 0 || Date.now() >= giveUpWaitingMs) break;
      await new Promise((resolve) => setTimeout(resolve, LOST_OBJECT_POLL_MS));
    }
    await this.#placeAgain(task, new Set(), "an object it read was lost");
  }

  /** The task `id` as sent in try `attempt`, no longer out; undefined if that try is stale. */
  remoteOut(id: number, attempt: number): Task | undefined {
    const task = this.#remoteTasks.get(id);
    if (task === undefined || task.attempt !== attempt) return undefined;
    this.#remoteTasks.delete(id);
    this.#remote!.ended(task.node!);
    if (task.foreignActor?.atOwner) this.#remote!.endedOwner(task.foreignActor.owner);
    return task.settled ? undefined : task;
  }

  #keepLineage(task: Task): void {
    task.keepsArguments = true;
    for (const hex of task.returnHex) this.#lineage.set(hex, task);
    this.#lineageBytes += task.lineageBytes;
    for (const oldest of this.#lineage.values()) {
      if (this.#lineageBytes <= LINEAGE_MAX_BYTES) break;
      this.#dropLineage(oldest);
    }
    if (this.#lineageSweep === undefined) {
      this.#lineageSweep = setInterval(() => this.#sweepLineage(), LINEAGE_SWEEP_MS);
      this.#host.session.library.shim.unrefTimer(this.#lineageSweep);
    }
  }

  #dropLineage(task: Task): void {
    for (const hex of task.returnHex) this.#lineage.delete(hex);
    this.#lineageBytes -= task.lineageBytes;
    task.keepsArguments = false;
    if (task.settled) task.releaseArguments();
  }

  /** Lets go of the lineage of results no ref of this process reaches any longer. */
  #sweepLineage(): void {
    for (const task of new Set(this.#lineage.values())) {
      if (task.settled && !task.returnRefs.some((weak) => weak.deref() !== undefined)) this.#dropLineage(task);
    }
    if (this.#lineage.size === 0) {
      clearInterval(this.#lineageSweep);
      this.#lineageSweep = undefined;
    }
  }

  /**
   * `ref`'s object was lost with the node that made it: runs its task again (its arguments
   * made by tasks on nodes that are gone are rebuilt first), if its lineage is kept and it has
   * retries left. True if `ref` now waits for it.
   */
  rebuild(ref: ObjectRef): boolean {
    const task = this.#lineage.get(ref.id);
    if (task === undefined || this.#host.closing()) return false;
    if (!task.settled) {
      this.#waitFor(task, ref);
      return true;
    }
    if (task.retriesLeft <= 0) return false;
    trace(() => `rebuild task ${task.id} for ${ref.id.slice(0, 12)}`);
    task.retriesLeft -= 1;
    task.unsettle();
    task.attempt += 1;
    for (const weak of task.returnRefs) {
      const live = weak.deref();
      if (live !== undefined) live.producer = task;
    }
    this.#waitFor(task, ref);
    this.#host.register(task);
    const nodes = this.#host.session.cluster!.nodesView();
    for (const arg of task.argRefs) this.#rebuildIfGone(arg, nodes);
    void this.#placeAgain(task, new Set(), "its result was lost with its node");
    return true;
  }

  /**
   * Places `task` again and sends it once its arguments are ready. A cluster that shows no node
   * able to run it (a moment when heartbeats are late under load, or nodes restarting) is
   * looked at again for a while before the task fails.
   */
  async #placeAgain(task: Task, excluded: ReadonlySet<number>, why: string): Promise<void> {
    const cluster = this.#host.session.cluster!;
    const giveUpMs = Date.now() + PLACE_AGAIN_WAIT_MS;
    while (true) {
      if (task.settled || this.#host.closing()) return;
      try {
        const node = this.placement(task.placing ?? defaultPlacing, excluded);
        task.node = node;
        this.#host.whenArgumentsReady(task, () => node === undefined ? this.#host.enqueue(task) : this.sendToNode(task));
        return;
      } catch (error) {
        if (Date.now() >= giveUpMs) {
          this.#host.fail(task, "node", { name: "NodeDiedError", message: `${why}, and ${(error as Error).message}`, stack: "" });
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, LOST_OBJECT_POLL_MS));
      await cluster.reloadNodes().catch(() => {});
    }
  }

  #waitFor(task: Task, ref: ObjectRef): void {
    if (ref.producer === task) return;
    ref.producer = task;
    task.returnRefs.push(new WeakRef(ref));
  }

  /** Rebuilds `arg` if the task that made it ran on a node not alive in `nodes`; true if it did. */
  #rebuildIfGone(arg: ObjectRef, nodes: readonly NodeStatus[]): boolean {
    const producer = this.#lineage.get(arg.id);
    if (producer === undefined || !producer.settled || producer.node === undefined) return false;
    const alive = nodes.some((node) => node.alive && node.nodeNumber === producer.node);
    return !alive && this.#host.session.store.contains(arg.bytes) === Presence.absent && this.rebuild(arg);
  }

  /** Nodes died under tasks of this process: each is retried elsewhere while it has retries. */
  #nodesDied(dead: ReadonlySet<number>): void {
    trace(() => `nodes died: ${[...dead].join(",")}`);
    for (const task of [...this.#remoteTasks.values()]) {
      if (!dead.has(task.node!)) continue;
      const died = task.node!;
      this.remoteOut(task.id, task.attempt);
      if (task.settled) continue;
      if (task.foreignActor !== undefined) {
        this.#host.fail(task, "actor", { name: "ActorDiedError", message: `the node it ran on (${died}) died during the call`, stack: "" });
        continue;
      }
      if (task.remoteActor !== undefined) {
        // As in Ray: a call out when its actor's node dies fails; the actor may start again.
        this.#host.fail(task, "actor", { name: "ActorDiedError", message: `the node it ran on (${died}) died during the call`, stack: "" });
        this.#remoteActorLost(task.remoteActor, died, dead);
        continue;
      }
      if (task.cancelled) {
        this.#host.fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
        continue;
      }
      if (task.retriesLeft-- <= 0) {
        this.#host.fail(task, "node", { name: "NodeDiedError", message: `node ${died} died while running it, and it has no retries left`, stack: "" });
        continue;
      }
      task.attempt += 1;
      void this.#placeAgain(task, dead, `node ${died} died while running it`);
    }
  }

  callActor(actor: RemoteActor, method: string, args: unknown[], numReturns: number): ObjectRef[] {
    const task = this.#host.newTask(`${actor.cls.name}.${method}`, { method }, args, numReturns, 0, actor.node);
    task.remoteActor = actor;
    const refs = this.#host.returnRefs(task);
    if (actor.dead !== undefined) {
      this.#host.fail(task, actor.dead.kind, actor.dead.error);
      return refs;
    }
    actor.queue.push(task);
    this.#pumpRemoteActor(actor);
    return refs;
  }

  /** Sends an actor's queued calls in order, each once its arguments are ready. */
  #pumpRemoteActor(actor: RemoteActor): void {
    const waiting = actor.dead === undefined && !this.#sendInOrder(actor.queue, () => this.#pumpRemoteActor(actor), (head) => {
      head.node = actor.node;
      head.attempt = actor.incarnation;
      this.#remoteTasks.set(head.id, head);
      this.#remote!.send(actor.node, { ...this.actorRequest(actor, "call"), task: head.id, method: head.method, args: head.args.wire, returns: head.returnHex });
    });
    if (!waiting) this.#host.updateKeepAlive();
  }

  /**
   * Sends `queue`'s calls in call order, each once its arguments are ready (`send`; a call
   * settled meanwhile is dropped). A head `failsAtOnce` takes is failed without waiting. Returns
   * false if it stopped at a head whose arguments are not ready (then `pump` runs once they are).
   */
  #sendInOrder(queue: Task[], pump: () => void, send: (task: Task) => void, failsAtOnce: (task: Task) => boolean = () => false): boolean {
    while (queue.length > 0) {
      const head = queue[0];
      if (failsAtOnce(head)) {
        queue.shift();
        continue;
      }
      if (!head.argRefs.every((ref) => this.#host.isAvailable(ref))) {
        this.#host.whenArgumentsReady(head, pump);
        return false;
      }
      queue.shift();
      if (!head.settled) send(head);
    }
    return true;
  }

  postActor(actor: RemoteActor): void {
    this.#ensureRemote();
    const cls = actor.cls;
    this.#remote!.post(actor.node, { ...this.actorRequest(actor, "actor"), fn: { id: cls.id, name: cls.name, spec: cls.spec }, args: actor.args.wire, maxConcurrency: actor.maxConcurrency });
  }

  actorRequest(actor: RemoteActor, kind: "actor" | "call" | "kill"): TaskRequest {
    const holder = this.#host.session.cluster!.borrows.holder;
    return { kind, task: 0, attempt: actor.incarnation, holder, actor: actor.id, returns: [], args: [] };
  }

  /** The node of `actor` died: its calls out fail; it starts again elsewhere if it may. */
  #remoteActorLost(actor: RemoteActor, died: number, excluded: ReadonlySet<number>): void {
    if (actor.dead !== undefined || actor.node !== died) return;
    if (actor.restartsLeft > 0) {
      try {
        const node = this.actorPlacement(actor.placing, excluded) ?? this.#host.session.cluster!.node.nodeNumber;
        actor.restartsLeft -= 1;
        actor.incarnation += 1;
        actor.node = node;
        this.postActor(actor);
        this.#pumpRemoteActor(actor);
        return;
      } catch { /* nowhere to restart: it is dead */ }
    }
    this.actorDied(actor, new TaskFailure("actor", { name: "ActorDiedError", message: `the node it ran on (${died}) died, and it has no restarts left`, stack: "" }, actor.cls.name));
  }

  actorDied(actor: RemoteActor, failure: TaskFailure): void {
    actor.dead = failure;
    for (const task of actor.queue.splice(0)) this.#host.fail(task, failure.kind, failure.error);
    actor.heldRefs.forEach((ref) => ref[Symbol.dispose]());
    actor.args.ref?.[Symbol.dispose]();
  }


  /**
   * Calls actor `actorId` of another process, `owner` (its handle came here in a value or a
   * task's arguments). The call goes to the owner, which knows where the actor runs now and
   * passes it on; the calls of this process reach it in the order made, each once its
   * arguments are ready.
   */
  callForeignActor(task: Task, owner: string, actorId: number): void {
    task.foreignActor = { owner, actorId, atOwner: true };
    if (this.#host.session.cluster === undefined) {
      this.#host.fail(task, "error", { name: "ObjstoreError", message: `actor ${actorId} belongs to process ${owner} of a cluster; this process is not in that cluster`, stack: "" });
      return;
    }
    const key = `${owner}#${actorId}`;
    let queue = this.#foreignQueues.get(key);
    if (queue === undefined) this.#foreignQueues.set(key, queue = []);
    queue.push(task);
    this.#ensureRemote();
    this.#pumpForeign(key, queue);
  }

  #pumpForeign(key: string, queue: Task[]): void {
    const holder = this.#host.session.cluster!.borrows.holder;
    const send = (head: Task) => {
      const { owner, actorId } = head.foreignActor!;
      head.node = holderNode(owner);
      this.#remoteTasks.set(head.id, head);
      this.#remote!.sendToOwner(owner, { kind: "call", task: head.id, attempt: head.attempt, holder, owner, actor: actorId, method: head.method, args: head.args.wire, returns: head.returnHex });
    };
    const ownerGone = (head: Task) => {
      if (!this.#goneOwners.has(head.foreignActor!.owner)) return false;
      this.#failOwnerGone(head);
      return true;
    };
    if (!this.#sendInOrder(queue, () => this.#pumpForeign(key, queue), send, ownerGone)) return;
    this.#foreignQueues.delete(key);
    this.#host.updateKeepAlive();
  }

  /** Kills actor `actorId` of another process, `owner`. */
  killForeignActor(owner: string, actorId: number): void {
    const cluster = this.#host.session.cluster;
    if (cluster === undefined) throw new ObjstoreError(`kill: actor ${actorId} belongs to process ${owner} of a cluster; this process is not in that cluster`);
    this.#ensureRemote();
    this.#remote!.reply(owner, signRequest(cluster.node.token, { kind: "kill", task: 0, attempt: 0, holder: cluster.borrows.holder, owner, actor: actorId, returns: [], args: [] }));
  }

  /** A call sent to its actor's owner went on to node `node`: that node's death fails it now. */
  #foreignCallMoved(id: number, attempt: number, node: number): void {
    const task = this.#remoteTasks.get(id);
    if (task?.foreignActor === undefined || task.attempt !== attempt || !task.foreignActor.atOwner) return;
    this.#remote!.movedTo(task.foreignActor.owner, node);
    task.foreignActor.atOwner = false;
    task.node = node;
  }

  #ownersDied(owners: ReadonlySet<string>): void {
    for (const owner of owners) this.#goneOwners.add(owner);
    for (const task of [...this.#remoteTasks.values()]) {
      if (task.foreignActor?.atOwner && owners.has(task.foreignActor.owner)) {
        this.remoteOut(task.id, task.attempt);
        this.#failOwnerGone(task);
      }
    }
  }

  #failOwnerGone(task: Task): void {
    const { owner, actorId } = task.foreignActor!;
    const message = `actor ${actorId} is gone with its owner, process ${owner} (an actor lives as long as the driver that made it)`;
    this.#host.fail(task, "actor", { name: "ActorDiedError", message, stack: "" });
  }

  /** Lets other processes call this process's actors through handles it gave out. */
  serveActors(): void {
    this.#ensureRemote();
    this.#actorOwner ??= new ActorOwner(this.#host.session.cluster!, this.#remote!, {
      onNode: (actorId) => this.remoteActors.get(actorId),
      callHere: (actorId, method, args, returnIds) => this.#host.callOwnActorFor(actorId, method, args, returnIds),
      kill: (actorId) => this.#host.killActor(actorId),
    });
    this.#remote!.serve();
  }

}
