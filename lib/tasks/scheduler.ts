/**
 * The driver's side of tasks: a task waits until the refs it takes are sealed, then goes to
 * the least busy worker (a few in flight per worker, so a batch of submissions and of results
 * each cost one pipe write). Results are written into the store by the worker under ids chosen
 * here, so `remote()` returns refs at once and values never pass through the driver.
 *
 * A worker that dies mid-task is replaced and its tasks retried (`maxRetries`); after that their
 * results are `WorkerCrashedError` failures. Actors get a worker of their own, fed in call order.
 *
 * In a cluster, a task placed on another node (lib/cluster/placement.ts) is sent to that
 * node's process (lib/cluster/remote_tasks.ts), which runs it on its workers under the return
 * ids minted here for that node; a node that dies under it costs a retry elsewhere, then
 * `NodeDiedError`.
 */
import { setImmediate } from "node:timers";
import { ObjstoreError } from "../errors.ts";
import { ObjectRef } from "../object_ref.ts";
import type { Session } from "../session.ts";
import { fromHex, ID_BYTES, toHex } from "../ids.ts";
import { acquireFinished } from "../object_ref.ts";
import { Presence } from "../store/status.ts";
import { type FailureKind, TaskFailure } from "./failure.ts";
import { encodeRun, type FromWorker, type FunctionSpec, type WireArguments } from "./protocol.ts";
import { RunTimes } from "./run_times.ts";
import { shippedSerializers } from "./serializers.ts";
import { type Actor, noRefs, packArguments, type PackedArguments, type RemoteActor, storeFailure, Task } from "./task.ts";
import { waitUntilDead, WorkerProcess } from "./worker_process.ts";
import type { ActorOptions, FunctionRecord, SerializerRecord, SubmitOptions, Submitter } from "./submitter.ts";
import { SPIN_MICROS } from "../spin_backoff.ts";
import { RemoteTasks } from "../cluster/remote_tasks.ts";
import type { TaskRequest } from "../cluster/task_requests.ts";
import type { NodeStatus } from "../cluster/directory.ts";
import { trace } from "../cluster/debug.ts";
import { missing, type Placing, placeTask } from "../cluster/placement.ts";
import { nodeNumberOf } from "../cluster/node_number.ts";

/**
 * Tasks sent to one worker before it reports any done. Quick tasks (their function ran under
 * QUICK_TASK_MICROS lately) go many at a time, so submissions and results travel in batches;
 * others few at a time, so one slow task does not hold back many queued behind it.
 */
const IN_FLIGHT_QUICK = 64;
const IN_FLIGHT_OTHER = 4;
/**
 * What the lineage of tasks run on other nodes may cost, at most (Ray's `max_lineage_bytes`,
 * 1 GiB there): past it, the oldest tasks are let go, and their results become ones that
 * cannot be rebuilt.
 */
const LINEAGE_MAX_BYTES = 64 * 1024 * 1024;
/** How often the lineage of results no ref reaches any longer is let go. */
const LINEAGE_SWEEP_MS = 2000;
/** How long a task that lost an argument waits for the argument's node to be seen dead
 * (its heartbeat expires) before it is sent again anyway, and how often it looks. */
const LOST_OBJECT_WAIT_MS = 6000;
const LOST_OBJECT_POLL_MS = 500;
/** How long shutdown waits for workers to leave on their own. */
const WORKER_EXIT_WAIT_MS = 2000;
/** How long an exiting driver waits for the workers it killed to be dead. */
const ABANDON_WAIT_MS = 1000;

let driverFunctionIds = 1_000_000_000;

/** How a task run locally is placed again after its results were lost. */
const defaultPlacing: Placing = { scheduling: "DEFAULT", numCpus: 1, resources: {}, argBytes: new Map() };

/** Ids for functions workers submit; apart from those `remote()` numbers in this process. */
function nextDriverFunctionId(): number {
  return driverFunctionIds++;
}

export class Scheduler implements Submitter {
  readonly #session: Session;
  readonly #numWorkers: number;
  readonly #workers: WorkerProcess[] = [];
  readonly #ready: Task[] = [];
  readonly #tasks = new Map<number, Task>();
  readonly #actors = new Map<number, Actor>();
  /** Actors of this process started on other nodes. */
  readonly #remoteActors = new Map<number, RemoteActor>();
  /** Unfinished tasks by the hex id of each of their returns: built on first use, since only
   * workers name results by id (nested submissions, cancels). */
  #producers: Map<string, Task> | undefined;
  /** Functions workers submitted, by "<pid>:<their id>". */
  readonly #workerFunctions = new Map<string, FunctionRecord>();
  readonly #runTimes = new RunTimes();
  /** Tasks out on other nodes of the cluster, by task number. */
  readonly #remoteTasks = new Map<number, Task>();
  #remote: RemoteTasks | undefined;
  #placements = 0;
  /** Finished tasks run on other nodes, by the hex of each return: what rebuilds a result lost
   * with its node. In the order they finished (the oldest go first past the bound). */
  readonly #lineage = new Map<string, Task>();
  #lineageBytes = 0;
  #lineageSweep: ReturnType<typeof setInterval> | undefined;
  #nextTask = 1;
  #nextActor = 1;
  #closing = false;
  #busy = false;
  /** An idle scheduler lets go of its workers at the next turn of the event loop, if still idle. */
  #idleCheckQueued = false;

  constructor(session: Session, numWorkers: number) {
    this.#session = session;
    this.#numWorkers = numWorkers;
  }

  /** Submits `fn(...args)`; returns the refs of its results at once. */
  submit(fn: FunctionRecord, args: unknown[], options: SubmitOptions): ObjectRef[] {
    const placing: Placing = {
      scheduling: options.scheduling ?? "DEFAULT",
      numCpus: options.numCpus ?? 1,
      resources: options.resources ?? {},
      argBytes: this.#argBytes(args),
    };
    let node: number | undefined;
    try {
      node = this.#placement(placing, new Set());
    } catch (error) {
      throw new ObjstoreError(`${fn.name}.remote(): ${(error as Error).message}`);
    }
    if (node === undefined && this.#numWorkers === 0) throw new ObjstoreError(`${fn.name}.remote(): init({ numWorkers: 0 }) has no workers to run tasks`);
    const task = this.#newTask(fn.name, { fn }, args, options.numReturns, options.maxRetries, node);
    if (node === undefined) {
      this.#whenArgumentsReady(task, () => this.#enqueue(task));
    } else {
      task.node = node;
      task.placing = placing;
      this.#whenArgumentsReady(task, () => this.#sendToNode(task));
    }
    return this.#returnRefs(task);
  }

  /**
   * @internal Runs a task another node's driver sent here (lib/tasks/node_executor.ts) on this
   * process's workers, storing its results under `returnIds`; returns refs to them.
   */
  runFor(fn: FunctionRecord, args: WireArguments, returnIds: Uint8Array[], retries: number): ObjectRef[] {
    const task = this.#register(new Task(this.#nextTask++, fn.name, { fn }, { wire: args, ref: undefined }, noRefs, returnIds, retries));
    this.#enqueue(task);
    return this.#returnRefs(task);
  }

  /**
   * The node to run a task on in a cluster, or undefined for this process's own workers.
   * Outside a cluster, a task asking for more than this machine has fails at once.
   */
  #placement(placing: Placing, excluded: ReadonlySet<number>): number | undefined {
    const cluster = this.#session.cluster;
    if (cluster === undefined) {
      if (this.#numWorkers === 0) return undefined; // said by `submit`, as without a cluster
      const lacks = missing(placing, this.#numWorkers, {});
      if (lacks !== undefined) throw new ObjstoreError(`no node can run it: this one lacks ${lacks}; custom resources need a cluster (objstore start --resources)`);
      return undefined;
    }
    const local = { nodeNumber: cluster.node.nodeNumber, workers: this.#numWorkers, saturated: this.#ready.length > 0 };
    // The common case needs no view of the cluster: arguments here (or none), workers free.
    const onlyHere = [...placing.argBytes.keys()].every((n) => n === local.nodeNumber);
    if (placing.scheduling === "DEFAULT" && local.workers > 0 && !local.saturated && onlyHere && excluded.size === 0 && missing(placing, local.workers, {}) === undefined) {
      return undefined;
    }
    const node = placeTask(placing, cluster.nodesView(), local, this.#placements++, excluded);
    return node === local.nodeNumber && local.workers > 0 ? undefined : node;
  }

  /** Bytes of a task's ref arguments by the node holding them: this store's by their size,
   * another node's counted as 1 (their size is not known here). */
  #argBytes(args: unknown[]): Map<number, number> {
    const byNode = new Map<number, number>();
    const cluster = this.#session.cluster;
    if (cluster === undefined) return byNode;
    for (const arg of args) {
      if (!(arg instanceof ObjectRef)) continue;
      const here = this.#session.store.contains(arg.bytes) !== Presence.absent;
      const node = here ? cluster.node.nodeNumber : nodeNumberOf(arg.bytes) || cluster.node.nodeNumber;
      byNode.set(node, (byNode.get(node) ?? 0) + (here ? this.#session.store.sizeOf(arg.bytes) : 1));
    }
    return byNode;
  }

  /**
   * Starts an actor: its own worker process, constructing `cls` with `args`; in a cluster,
   * on the node its options place it on (by default this one).
   */
  createActor(cls: FunctionRecord, args: unknown[], options: ActorOptions = {}): number {
    const id = this.#nextActor++;
    const heldRefs: ObjectRef[] = [];
    const packed = packArguments(this.#session, args, (ref) => heldRefs.push(this.#copyRef(ref)));
    const placing: Placing = { scheduling: options.scheduling ?? "DEFAULT", numCpus: options.numCpus ?? 1, resources: options.resources ?? {}, argBytes: new Map() };
    let node: number | undefined;
    try {
      node = this.#actorPlacement(placing, new Set());
    } catch (error) {
      throw new ObjstoreError(`${cls.name}.remote(): ${(error as Error).message}`);
    }
    const maxConcurrency = options.maxConcurrency ?? 1;
    if (node === undefined) {
      this.#startActor(id, cls, packed, heldRefs, maxConcurrency);
      return id;
    }
    const actor: RemoteActor = {
      id, cls, node, incarnation: 0, restartsLeft: options.maxRestarts ?? 0, maxConcurrency, placing, args: packed, heldRefs, queue: [], dead: undefined,
    };
    this.#remoteActors.set(id, actor);
    this.#postActor(actor);
    return id;
  }

  /** @internal Starts an actor another node's driver placed here; returns its number here. */
  createActorFor(cls: FunctionRecord, args: WireArguments, maxConcurrency: number): number {
    const id = this.#nextActor++;
    this.#startActor(id, cls, { wire: args, ref: undefined }, [], maxConcurrency);
    return id;
  }

  #startActor(id: number, cls: FunctionRecord, args: PackedArguments, heldRefs: ObjectRef[], maxConcurrency: number): void {
    const worker = this.#spawn(id);
    this.#actors.set(id, { id, cls, worker, args, heldRefs, queue: [], dead: undefined });
    worker.send({ t: "define", fn: cls.id, spec: cls.spec });
    worker.defined.add(cls.id);
    worker.send(maxConcurrency > 1 ? { t: "actor", fn: cls.id, args: args.wire, maxConcurrency } : { t: "actor", fn: cls.id, args: args.wire });
  }

  /** Where an actor starts: undefined for a worker of this process (it needs no free one). */
  #actorPlacement(placing: Placing, excluded: ReadonlySet<number>): number | undefined {
    const cluster = this.#session.cluster;
    if (cluster === undefined || (placing.scheduling === "DEFAULT" && Object.keys(placing.resources).length === 0 && excluded.size === 0)) return undefined;
    const local = { nodeNumber: cluster.node.nodeNumber, workers: Math.max(1, this.#numWorkers), saturated: false };
    const node = placeTask(placing, cluster.nodesView(), local, this.#placements++, excluded);
    return node === local.nodeNumber ? undefined : node;
  }

  /** Calls `method` on an actor; calls run in the order they are made. */
  callActor(actorId: number, method: string, args: unknown[], numReturns: number): ObjectRef[] {
    const remoteActor = this.#remoteActors.get(actorId);
    if (remoteActor !== undefined) return this.#callRemoteActor(remoteActor, method, args, numReturns);
    const actor = this.#actors.get(actorId);
    if (actor === undefined) throw new ObjstoreError(`no actor ${actorId} in this process`);
    const task = this.#newTask(`${actor.cls.name}.${method}`, { method, actor }, args, numReturns, 0);
    return this.#queueCall(actor, task);
  }

  /** @internal Calls an actor another node's driver started here, storing under `returnIds`. */
  callActorFor(actorId: number, method: string, args: WireArguments, returnIds: Uint8Array[]): ObjectRef[] {
    const actor = this.#actors.get(actorId)!;
    const task = this.#register(new Task(this.#nextTask++, `${actor.cls.name}.${method}`, { method, actor }, { wire: args, ref: undefined }, noRefs, returnIds, 0));
    return this.#queueCall(actor, task);
  }

  #queueCall(actor: Actor, task: Task): ObjectRef[] {
    const refs = this.#returnRefs(task);
    if (actor.dead !== undefined) {
      this.#fail(task, actor.dead.kind, actor.dead.error);
      return refs;
    }
    actor.queue.push(task);
    this.#pumpActor(actor);
    return refs;
  }

  killActor(actorId: number): void {
    const remoteActor = this.#remoteActors.get(actorId);
    if (remoteActor !== undefined && remoteActor.dead === undefined) {
      this.#remote?.post(remoteActor.node, this.#actorRequest(remoteActor, "kill"));
      this.#actorDied(remoteActor, new TaskFailure("actor", { name: "ActorDiedError", message: `actor ${remoteActor.cls.name} was killed`, stack: "" }, remoteActor.cls.name));
      return;
    }
    const actor = this.#actors.get(actorId);
    if (actor === undefined || actor.dead !== undefined) return;
    actor.dead = new TaskFailure("crash", { name: "WorkerCrashedError", message: `actor ${actor.cls.name} was killed`, stack: "" }, actor.cls.name);
    actor.worker.kill();
  }

  /** Cancels a task: a queued one never runs; a running one's worker is killed. */
  cancel(ref: ObjectRef): void {
    const task = ref.producer as Task | undefined;
    if (task !== undefined) this.#cancelTask(task);
  }

  #cancelTask(task: Task): void {
    if (task.settled) return;
    task.cancelled = true;
    const queued = this.#ready.indexOf(task);
    if (queued >= 0) this.#ready.splice(queued, 1);
    const inActorQueue = task.actor?.queue.indexOf(task) ?? -1;
    if (inActorQueue >= 0) task.actor!.queue.splice(inActorQueue, 1);
    if (task.worker !== undefined && task.actor === undefined) {
      task.worker.kill(); // its other tasks are retried without spending their retries
      return;
    }
    if (task.worker === undefined) this.#fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
  }

  /** Makes a custom serializer known to every worker, now and later. */
  addSerializer(record: SerializerRecord): void {
    for (const worker of this.#allWorkers()) worker.send({ t: "serializer", ...record });
  }

  /** Stops every worker: asks them to leave (stdin closes), then kills the ones that stay. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#lineageSweep);
    for (const task of new Set(this.#lineage.values())) this.#dropLineage(task);
    await this.#remote?.close();
    const workers = this.#allWorkers().filter((w) => !w.exited);
    const exits = workers.map((w) => new Promise<void>((resolve) => w.child.once("exit", () => resolve())));
    for (const w of workers) {
      w.send({ t: "leave" });
      w.flush();
      w.child.stdin!.end();
    }
    const timer = setTimeout(() => workers.forEach((w) => w.kill()), WORKER_EXIT_WAIT_MS);
    await Promise.all(exits);
    clearTimeout(timer);
  }

  /** Ends every worker and waits (briefly) until they are dead: this exiting process then
   * finds itself the store's last and removes it (else the last worker's reaper does). */
  abandon(): void {
    this.#closing = true;
    const workers = this.#allWorkers().filter((w) => !w.exited);
    for (const w of workers) w.abandon();
    waitUntilDead(workers.map((w) => w.child.pid).filter((pid) => pid !== undefined), ABANDON_WAIT_MS);
  }

  #newTask(name: string, target: { fn?: FunctionRecord; method?: string; actor?: Actor }, args: unknown[], numReturns: number, retries: number, node?: number): Task {
    let argRefs: ObjectRef[] | undefined;
    let heldRefs: ObjectRef[] | undefined;
    for (const a of args) if (a instanceof ObjectRef) (argRefs ??= []).push(this.#copyRef(a));
    const packed = packArguments(this.#session, args, (ref) => {
      if (!args.includes(ref)) (heldRefs ??= []).push(this.#copyRef(ref));
    });
    const mint = () => node === undefined ? this.#session.newId() : this.#session.newIdOn(node);
    const returnIds = numReturns === 1 ? [mint()] : Array.from({ length: numReturns }, mint);
    const task = this.#register(new Task(this.#nextTask++, name, target, packed, argRefs ?? noRefs, returnIds, retries));
    if (heldRefs !== undefined) task.heldRefs = heldRefs;
    return task;
  }

  #register(task: Task): Task {
    this.#tasks.set(task.id, task);
    if (this.#producers !== undefined) for (const hex of task.returnHex) this.#producers.set(hex, task);
    return task;
  }

  #producersByHex(): Map<string, Task> {
    if (this.#producers === undefined) {
      this.#producers = new Map();
      for (const task of this.#tasks.values()) for (const hex of task.returnHex) this.#producers.set(hex, task);
    }
    return this.#producers;
  }

  #forget(task: Task): void {
    this.#tasks.delete(task.id);
    if (this.#producers !== undefined) for (const hex of task.returnHex) this.#producers.delete(hex);
  }

  #returnRefs(task: Task): ObjectRef[] {
    return task.returnIds.map((id) => this.#pendingRef(task, id));
  }

  #pendingRef(task: Task, id: Uint8Array): ObjectRef {
    const ref = new ObjectRef(id, this.#session, false);
    ref.producer = task;
    task.returnRefs.push(new WeakRef(ref));
    return ref;
  }

  /** A task's own ref to an argument, so the caller may free theirs meanwhile. */
  #copyRef(ref: ObjectRef): ObjectRef {
    ref.checkUsable();
    return this.#refTo(ref.hex());
  }

  /** A ref of the driver's own to `hex`: pending if a task here still produces it. */
  #refTo(hex: string): ObjectRef {
    const producer = this.#producersByHex().get(hex);
    if (producer !== undefined && !producer.settled) return this.#pendingRef(producer, fromHex(hex, ID_BYTES)!);
    return ObjectRef.fromHex(hex);
  }

  /** A task submitted by a worker from inside one of its tasks (or a call through a handle). */
  #submitFromWorker(worker: WorkerProcess, message: Extract<FromWorker, { t: "submit" }>): void {
    const actor = message.actor === undefined ? undefined : this.#actors.get(message.actor);
    const fn = message.fn === undefined ? undefined : this.#workerFunction(worker, message.fn, message.spec);
    const name = actor !== undefined ? `${actor.cls.name}.${message.method}` : (fn?.name ?? "task");
    const returnIds = message.returns.map((hex) => fromHex(hex, ID_BYTES)!);
    const deps = message.deps.map((hex) => this.#refTo(hex));
    const task = this.#register(new Task(this.#nextTask++, name, { fn, method: message.method, actor }, { wire: message.args, ref: undefined }, deps, returnIds, message.maxRetries));
    task.requester = worker;
    worker.outstanding += 1;
    if (message.actor !== undefined && actor === undefined) {
      return this.#fail(task, "error", { name: "ObjstoreError", message: `no actor ${message.actor}: handles work only in the driver that created the actor and its workers`, stack: "" });
    }
    if (actor === undefined) return this.#whenArgumentsReady(task, () => this.#enqueue(task));
    if (actor.dead !== undefined) return this.#fail(task, actor.dead.kind, actor.dead.error);
    actor.queue.push(task);
    this.#pumpActor(actor);
  }

  #workerFunction(worker: WorkerProcess, fnId: number, spec: FunctionSpec | undefined): FunctionRecord {
    const key = `${worker.child.pid}:${fnId}`;
    let record = this.#workerFunctions.get(key);
    if (record === undefined) {
      if (spec === undefined) throw new ObjstoreError(`worker ${worker.child.pid} submitted function ${fnId} without defining it`);
      record = { id: nextDriverFunctionId(), name: spec.name, spec };
      this.#workerFunctions.set(key, record);
    }
    return record;
  }

  /** Hands a worker-submitted task's results to its requester: the driver holds them until
   * the requester says it took its own references. */
  #resolveForRequester(task: Task, driverHolds: boolean): void {
    const requester = task.requester!;
    requester.outstanding -= 1;
    for (const id of task.returnIds) {
      if (!driverHolds && this.#session.store.addRef(id) !== 0) continue;
      if (requester.exited) this.#session.store.dropRef(id);
      else requester.heldForIt.set(toHex(id), id);
    }
    requester.send({ t: "resolved", ids: task.returnHex });
  }

  /** Calls `then` once every ref argument of `task` is in the store. */
  #whenArgumentsReady(task: Task, then: () => void): void {
    const waiting = task.argRefs.filter((ref) => !this.#isAvailable(ref));
    if (waiting.length === 0) return then();
    const producers = waiting.map((ref) => ref.producer?.done).filter((p) => p !== undefined);
    if (producers.length === waiting.length) {
      Promise.all(producers).then(() => this.#whenArgumentsReady(task, then));
    } else {
      setTimeout(() => this.#whenArgumentsReady(task, then), 2); // written by another process
    }
  }

  #isAvailable(ref: ObjectRef): boolean {
    if (ref.producer !== undefined && !ref.producer.settled) return false;
    const presence = this.#session.store.contains(ref.bytes);
    // An absent ref is lost, not late: let the task run and fail on it.
    return presence !== Presence.writing;
  }

  #enqueue(task: Task): void {
    if (task.cancelled) return this.#fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
    this.#ready.push(task);
    this.#dispatch();
  }

  #dispatch(): void {
    while (this.#ready.length > 0 && !this.#closing) {
      const worker = this.#leastBusyWorker(this.#ready[0]);
      if (worker === undefined) break;
      this.#send(worker, this.#ready.shift()!);
    }
    // A worker waiting on tasks it submitted holds no CPU: run others beside it (as Ray
    // does), or nested tasks would deadlock a full pool.
    const capacity = this.#numWorkers + this.#workers.filter((w) => w.outstanding > 0).length;
    if (this.#ready.length > 0 && this.#workers.length < capacity && !this.#closing) {
      const missing = Math.min(capacity - this.#workers.length, this.#ready.length);
      for (let i = 0; i < missing; i++) this.#workers.push(this.#spawn(undefined));
    }
    this.#updateKeepAlive();
  }

  #leastBusyWorker(task: Task): WorkerProcess | undefined {
    const quick = this.#isQuick(task);
    let best: WorkerProcess | undefined;
    for (const w of this.#workers) {
      // A worker waiting on tasks it submitted runs nothing else until they finish.
      if (!w.ready || w.exited || w.outstanding > 0) continue;
      const limit = quick && w.slowInFlight === 0 ? IN_FLIGHT_QUICK : IN_FLIGHT_OTHER;
      if (w.inFlight.size >= limit) continue;
      if (best === undefined || w.inFlight.size < best.inFlight.size) best = w;
    }
    return best;
  }

  /** True if recent runs of `task`'s function (or actor method) were quick; false if none ran yet. */
  #isQuick(task: Task): boolean {
    return this.#runTimes.isQuick(task.runKey);
  }

  #send(worker: WorkerProcess, task: Task): void {
    const fn = task.fn!;
    if (!worker.defined.has(fn.id)) {
      worker.send({ t: "define", fn: fn.id, spec: fn.spec });
      worker.defined.add(fn.id);
    }
    task.worker = worker;
    worker.inFlight.add(task.id);
    task.sentAsSlow = !this.#isQuick(task);
    task.spinMicros = task.sentAsSlow ? 0 : SPIN_MICROS;
    if (task.sentAsSlow) worker.slowInFlight += 1;
    worker.sendEncoded(encodeRun(task.id, { fn: fn.id }, task.args.wire, task.returnHex));
  }

  #sendToNode(task: Task): void {
    if (task.settled) return;
    if (task.cancelled) return this.#fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
    const cluster = this.#session.cluster!;
    // Arguments made on nodes known dead are made again first.
    const nodes = cluster.nodesView();
    if (task.argRefs.filter((arg) => this.#rebuildIfGone(arg, nodes)).length > 0) {
      return this.#whenArgumentsReady(task, () => this.#sendToNode(task));
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
    this.#updateKeepAlive();
  }

  #ensureRemote(): void {
    const cluster = this.#session.cluster!;
    this.#remote ??= new RemoteTasks(() => cluster.directory(), cluster.borrows.holder, cluster.node.token, {
      done: (id, attempt) => this.#remoteDone(id, attempt),
      refused: (id, attempt, errorName, why) => this.#remoteRefused(id, attempt, errorName, why),
      lostAnObject: (id, attempt, why) => this.#remoteLostAnObject(id, attempt, why),
      nodesDied: (dead) => this.#nodesDied(dead),
    });
  }

  /** The node a task was sent to stored its results: they are kept there for this process. */
  #remoteDone(id: number, attempt: number): void {
    trace(() => `done task ${id}.${attempt}${this.#remoteTasks.get(id)?.attempt === attempt ? "" : " (stale)"}`);
    const task = this.#remoteOut(id, attempt);
    if (task === undefined) return;
    const borrows = this.#session.cluster!.borrows;
    const referenced = task.returnRefs.some((weak) => weak.deref() !== undefined);
    const keep = () => task.returnIds.forEach((returnId, i) => borrows.keptOn(returnId, task.returnHex[i], task.node!, referenced));
    // Results of another node: where the refs' holds go must be known before they are taken.
    // Of this node: the refs hold them in this store once taken, and the keeper's hold goes.
    if (task.node !== this.#session.nodeNumber) keep();
    if (task.retriesLeft > 0 && task.fn !== undefined) this.#keepLineage(task);
    this.#complete(task);
    if (task.node === this.#session.nodeNumber) keep();
  }

  #remoteRefused(id: number, attempt: number, errorName: string, why: string): void {
    const task = this.#remoteOut(id, attempt);
    if (task !== undefined) this.#fail(task, "error", { name: errorName, message: `node ${task.node} could not run it: ${why}`, stack: "" });
  }

  /**
   * A task sent elsewhere failed on an object it could not find: an argument lost with its
   * node. Once the view of the cluster shows that node dead (its heartbeat expires within
   * seconds), the arguments made by tasks there are made again, and the task is sent anew.
   */
  #remoteLostAnObject(id: number, attempt: number, why: string): void {
    trace(() => `task ${id}.${attempt} lost an object: ${why}`);
    const task = this.#remoteOut(id, attempt);
    if (task === undefined) return;
    if (task.retriesLeft-- <= 0) {
      this.#fail(task, "error", { name: "ObjectLostError", message: `an object it read was lost, and it has no retries left: ${why}`, stack: "" });
      return;
    }
    task.attempt += 1;
    void this.#retryAfterLoss(task, Date.now() + LOST_OBJECT_WAIT_MS);
  }

  async #retryAfterLoss(task: Task, giveUpWaitingMs: number): Promise<void> {
    const cluster = this.#session.cluster!;
    while (!task.settled && !this.#closing) {
      const nodes = await cluster.reloadNodes().catch(() => cluster.nodesView());
      const rebuilt = [...task.argRefs, ...task.heldRefs].filter((ref) => this.#rebuildIfGone(ref, nodes)).length;
      if (rebuilt > 0 || Date.now() >= giveUpWaitingMs) break;
      await new Promise((resolve) => setTimeout(resolve, LOST_OBJECT_POLL_MS));
    }
    if (task.settled || this.#closing) return;
    let node: number | undefined;
    try {
      node = this.#placement(task.placing ?? defaultPlacing, new Set());
    } catch (error) {
      this.#fail(task, "node", { name: "NodeDiedError", message: `an object it read was lost, and ${(error as Error).message}`, stack: "" });
      return;
    }
    task.node = node;
    this.#whenArgumentsReady(task, () => node === undefined ? this.#enqueue(task) : this.#sendToNode(task));
  }

  /** The task `id` as sent in try `attempt`, no longer out; undefined if that try is stale. */
  #remoteOut(id: number, attempt: number): Task | undefined {
    const task = this.#remoteTasks.get(id);
    if (task === undefined || task.attempt !== attempt) return undefined;
    this.#remoteTasks.delete(id);
    this.#remote!.ended(task.node!);
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
      this.#session.library.shim.unrefTimer(this.#lineageSweep);
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
    if (task === undefined || this.#closing) return false;
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
    this.#register(task);
    let node: number | undefined;
    try {
      node = this.#placement(task.placing ?? defaultPlacing, new Set());
    } catch (error) {
      this.#fail(task, "node", { name: "NodeDiedError", message: `its result was lost with its node, and ${(error as Error).message}`, stack: "" });
      return true;
    }
    task.node = node;
    const nodes = this.#session.cluster!.nodesView();
    for (const arg of task.argRefs) this.#rebuildIfGone(arg, nodes);
    this.#whenArgumentsReady(task, () => node === undefined ? this.#enqueue(task) : this.#sendToNode(task));
    return true;
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
    return !alive && this.#session.store.contains(arg.bytes) === Presence.absent && this.rebuild(arg);
  }

  /** Nodes died under tasks of this process: each is retried elsewhere while it has retries. */
  #nodesDied(dead: ReadonlySet<number>): void {
    trace(() => `nodes died: ${[...dead].join(",")}`);
    for (const task of [...this.#remoteTasks.values()]) {
      if (!dead.has(task.node!)) continue;
      const died = task.node!;
      this.#remoteOut(task.id, task.attempt);
      if (task.settled) continue;
      if (task.remoteActor !== undefined) {
        // As in Ray: a call out when its actor's node dies fails; the actor may start again.
        this.#fail(task, "actor", { name: "ActorDiedError", message: `the node it ran on (${died}) died during the call`, stack: "" });
        this.#remoteActorLost(task.remoteActor, died, dead);
        continue;
      }
      if (task.cancelled) {
        this.#fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
        continue;
      }
      if (task.retriesLeft-- <= 0) {
        this.#fail(task, "node", { name: "NodeDiedError", message: `node ${died} died while running it, and it has no retries left`, stack: "" });
        continue;
      }
      let node: number | undefined;
      try {
        node = this.#placement(task.placing ?? defaultPlacing, dead);
      } catch (error) {
        this.#fail(task, "node", { name: "NodeDiedError", message: `node ${died} died while running it, and ${(error as Error).message}`, stack: "" });
        continue;
      }
      task.attempt += 1;
      task.node = node;
      if (node === undefined) this.#enqueue(task);
      else this.#sendToNode(task);
    }
  }

  #callRemoteActor(actor: RemoteActor, method: string, args: unknown[], numReturns: number): ObjectRef[] {
    const task = this.#newTask(`${actor.cls.name}.${method}`, { method }, args, numReturns, 0, actor.node);
    task.remoteActor = actor;
    const refs = this.#returnRefs(task);
    if (actor.dead !== undefined) {
      this.#fail(task, actor.dead.kind, actor.dead.error);
      return refs;
    }
    actor.queue.push(task);
    this.#pumpRemoteActor(actor);
    return refs;
  }

  /** Sends an actor's queued calls in order, each once its arguments are ready. */
  #pumpRemoteActor(actor: RemoteActor): void {
    while (actor.queue.length > 0 && actor.dead === undefined) {
      const head = actor.queue[0];
      if (!head.argRefs.every((ref) => this.#isAvailable(ref))) {
        this.#whenArgumentsReady(head, () => this.#pumpRemoteActor(actor));
        return;
      }
      actor.queue.shift();
      if (head.settled) continue;
      head.node = actor.node;
      head.attempt = actor.incarnation;
      this.#remoteTasks.set(head.id, head);
      this.#remote!.send(actor.node, { ...this.#actorRequest(actor, "call"), task: head.id, method: head.method, args: head.args.wire, returns: head.returnHex });
    }
    this.#updateKeepAlive();
  }

  #postActor(actor: RemoteActor): void {
    this.#ensureRemote();
    const cls = actor.cls;
    this.#remote!.post(actor.node, { ...this.#actorRequest(actor, "actor"), fn: { id: cls.id, name: cls.name, spec: cls.spec }, args: actor.args.wire, maxConcurrency: actor.maxConcurrency });
  }

  #actorRequest(actor: RemoteActor, kind: "actor" | "call" | "kill"): TaskRequest {
    const holder = this.#session.cluster!.borrows.holder;
    return { kind, task: 0, attempt: actor.incarnation, holder, actor: actor.id, returns: [], args: [] };
  }

  /** The node of `actor` died: its calls out fail; it starts again elsewhere if it may. */
  #remoteActorLost(actor: RemoteActor, died: number, excluded: ReadonlySet<number>): void {
    if (actor.dead !== undefined || actor.node !== died) return;
    if (actor.restartsLeft > 0) {
      try {
        const node = this.#actorPlacement(actor.placing, excluded) ?? this.#session.cluster!.node.nodeNumber;
        actor.restartsLeft -= 1;
        actor.incarnation += 1;
        actor.node = node;
        this.#postActor(actor);
        this.#pumpRemoteActor(actor);
        return;
      } catch { /* nowhere to restart: it is dead */ }
    }
    this.#actorDied(actor, new TaskFailure("actor", { name: "ActorDiedError", message: `the node it ran on (${died}) died, and it has no restarts left`, stack: "" }, actor.cls.name));
  }

  #actorDied(actor: RemoteActor, failure: TaskFailure): void {
    actor.dead = failure;
    for (const task of actor.queue.splice(0)) this.#fail(task, failure.kind, failure.error);
    actor.heldRefs.forEach((ref) => ref[Symbol.dispose]());
    actor.args.ref?.[Symbol.dispose]();
  }

  #pumpActor(actor: Actor): void {
    while (actor.queue.length > 0 && actor.worker.ready) {
      const head = actor.queue[0];
      if (!head.argRefs.every((ref) => this.#isAvailable(ref))) {
        this.#whenArgumentsReady(head, () => this.#pumpActor(actor));
        break;
      }
      actor.queue.shift();
      head.worker = actor.worker;
      head.spinMicros = this.#isQuick(head) ? SPIN_MICROS : 0;
      actor.worker.inFlight.add(head.id);
      actor.worker.sendEncoded(encodeRun(head.id, { method: head.method! }, head.args.wire, head.returnHex));
    }
    this.#updateKeepAlive();
  }

  #spawn(actorId: number | undefined): WorkerProcess {
    const worker = new WorkerProcess(this.#session.library, this.#session.store.name, this.#session.workerEnvironment(), {
      onMessage: (w, message) => this.#onMessage(w, message),
      onExit: (w) => this.#onExit(w),
    }, actorId);
    for (const record of shippedSerializers) worker.send({ t: "serializer", ...record });
    worker.keepAlive(this.#busy);
    return worker;
  }

  #onMessage(worker: WorkerProcess, message: FromWorker): void {
    switch (message.t) {
      case "ready":
        worker.ready = true;
        if (worker.actorId !== undefined) this.#pumpActor(this.#actors.get(worker.actorId)!);
        else this.#dispatch();
        return;
      case "done": {
        for (let i = 0; i < message.tasks.length; i++) {
          const task = this.#tasks.get(message.tasks[i]);
          worker.inFlight.delete(message.tasks[i]);
          if (task === undefined) continue;
          if (task.sentAsSlow) worker.slowInFlight -= 1;
          task.sentAsSlow = false;
          this.#runTimes.record(task.runKey, message.micros[i]);
          if (message.lost?.includes(task.id)) task.lostAnObject = true;
          this.#complete(task);
          worker.release(task.id);
        }
        if (worker.actorId === undefined) this.#dispatch();
        else this.#updateKeepAlive();
        return;
      }
      case "submit":
        return this.#submitFromWorker(worker, message);
      case "acquired":
        for (const hex of message.ids) {
          const id = worker.heldForIt.get(hex);
          if (id === undefined) continue;
          worker.heldForIt.delete(hex);
          this.#session.store.dropRef(id);
        }
        return;
      case "cancel": {
        const task = this.#producersByHex().get(message.id);
        if (task !== undefined) this.#cancelTask(task);
        return;
      }
      case "kill":
        return this.killActor(message.actor);
    }
  }

  /** The returns are sealed: the refs the program still has take their references. */
  #complete(task: Task): void {
    this.#forget(task);
    if (task.requester !== undefined) this.#resolveForRequester(task, false);
    acquireFinished(task.returnRefs);
    task.settle();
  }

  /** Stores `failure` as every return of the task, which ends it. */
  #fail(task: Task, kind: FailureKind, error: { name: string; message: string; stack: string }): void {
    if (this.#remoteTasks.get(task.id) === task) this.#remoteOut(task.id, task.attempt);
    storeFailure(this.#session, task, new TaskFailure(kind, error, task.name));
    this.#forget(task);
    if (task.requester !== undefined) this.#resolveForRequester(task, true);
    task.settle();
  }

  #onExit(worker: WorkerProcess): void {
    for (const id of worker.heldForIt.values()) this.#session.store.dropRef(id);
    worker.heldForIt.clear();
    const actor = worker.actorId === undefined ? undefined : this.#actors.get(worker.actorId);
    const lost = [...worker.inFlight].map((id) => this.#tasks.get(id)).filter((t): t is Task => t !== undefined);
    // Finished but unreported tasks keep their results: take them before the reclaim of the
    // dead worker's creator references frees them.
    const finished = lost.filter((t) => t.returnIds.every((id) => this.#session.store.contains(id) === Presence.sealed));
    for (const task of finished) this.#complete(task);
    this.#session.store.maintain();
    const crash = { name: "WorkerCrashedError", message: `the worker running it died`, stack: "" };
    for (const task of lost) {
      if (task.settled) continue;
      if (task.cancelled) this.#fail(task, "cancel", { name: "TaskCancelledError", message: "cancelled", stack: "" });
      else if (actor !== undefined) this.#fail(task, actor.dead?.kind ?? "crash", actor.dead?.error ?? crash);
      else if (this.#closing) this.#fail(task, "crash", crash);
      else if (this.#cancelledNeighbour(lost) || task.retriesLeft-- > 0) this.#ready.push(task);
      else this.#fail(task, "crash", { ...crash, message: `the worker running it died, and so did its retries` });
    }
    if (actor !== undefined) {
      actor.dead ??= new TaskFailure("crash", crash, actor.cls.name);
      for (const task of actor.queue.splice(0)) this.#fail(task, actor.dead.kind, actor.dead.error);
      return;
    }
    const at = this.#workers.indexOf(worker);
    if (at >= 0) this.#workers.splice(at, 1);
    this.#dispatch();
  }

  /** A worker killed to cancel one task does not cost the others their retries. */
  #cancelledNeighbour(lost: Task[]): boolean {
    return lost.some((t) => t.cancelled);
  }

  #allWorkers(): WorkerProcess[] {
    return [...this.#workers, ...[...this.#actors.values()].map((a) => a.worker)];
  }

  /**
   * Workers keep the program alive only while tasks are in flight. Letting go waits for the
   * event loop's next turn: a loop of one-at-a-time tasks is idle between each two for a
   * moment only, and flipping every worker's handles twice per task cost time (and, on Deno,
   * a listener per flip on a pipe not yet connected).
   */
  #updateKeepAlive(): void {
    if (this.#tasks.size > 0) return this.#keepAlive(true);
    if (!this.#busy || this.#idleCheckQueued) return;
    this.#idleCheckQueued = true;
    setImmediate(() => {
      this.#idleCheckQueued = false;
      if (this.#tasks.size === 0) this.#keepAlive(false);
    });
  }

  #keepAlive(busy: boolean): void {
    if (busy === this.#busy) return;
    this.#busy = busy;
    for (const worker of this.#allWorkers()) worker.keepAlive(busy);
  }
}
