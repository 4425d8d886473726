/**
 * The driver's side of tasks: a task waits until the refs it takes are sealed, then goes to
 * the least busy worker (a few in flight per worker, so a batch of submissions and of results
 * each cost one pipe write). Results are written into the store by the worker under ids chosen
 * here, so `remote()` returns refs at once and values never pass through the driver.
 *
 * A worker that dies mid-task is replaced and its tasks retried (`maxRetries`); after that their
 * results are `WorkerCrashedError` failures. Actors get a worker of their own, fed in call order.
 *
 * In a cluster, tasks and actors placed on other nodes go through lib/tasks/cluster_dispatch.ts.
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
import { ClusterDispatch } from "./cluster_dispatch.ts";
import { type PlacementGroup, removeAllPlacementGroups } from "./placement_group.ts";
import type { Placing } from "../cluster/placement.ts";
import { type TaskEventRecorder, taskEvents } from "./task_events.ts";

/**
 * Tasks sent to one worker before it reports any done. Quick tasks (their function ran under
 * QUICK_TASK_MICROS lately) go many at a time, so submissions and results travel in batches;
 * others few at a time, so one slow task does not hold back many queued behind it.
 */
const IN_FLIGHT_QUICK = 64;
const IN_FLIGHT_OTHER = 4;
/** How long shutdown waits for workers to leave on their own. */
const WORKER_EXIT_WAIT_MS = 2000;
/** How long an exiting driver waits for the workers it killed to be dead. */
const ABANDON_WAIT_MS = 1000;

let driverFunctionIds = 1_000_000_000;


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
  /** Unfinished tasks by the hex id of each of their returns: built on first use, since only
   * workers name results by id (nested submissions, cancels). */
  #producers: Map<string, Task> | undefined;
  /** Functions workers submitted, by "<pid>:<their id>". */
  readonly #workerFunctions = new Map<string, FunctionRecord>();
  readonly #runTimes = new RunTimes();
  /** Where tasks and actors go in a cluster, and what follows (lib/tasks/cluster_dispatch.ts). */
  readonly #cluster: ClusterDispatch;
  #nextTask = 1;
  #nextActor = 1;
  #closing = false;
  #busy = false;
  /** An idle scheduler lets go of its workers at the next turn of the event loop, if still idle. */
  #idleCheckQueued = false;
  /** This process's task events, for the dashboard and the timeline (undefined: turned off). */
  readonly #events: TaskEventRecorder | undefined;

  constructor(session: Session, numWorkers: number) {
    this.#session = session;
    this.#numWorkers = numWorkers;
    this.#events = taskEvents(session.store.name, "driver", session.library.shim.runtime, (timer) => session.library.shim.unrefTimer(timer));
    this.#events?.setGauges(() => this.#gauges());
    this.#cluster = new ClusterDispatch({
      session,
      numWorkers,
      waiting: () => this.#ready.length,
      closing: () => this.#closing,
      newTask: (name, target, args, numReturns, retries, node) => this.#newTask(name, target, args, numReturns, retries, node),
      register: (task) => this.#register(task),
      returnRefs: (task) => this.#returnRefs(task),
      complete: (task) => this.#complete(task),
      fail: (task, kind, error) => this.#fail(task, kind, error),
      enqueue: (task) => this.#enqueue(task),
      whenArgumentsReady: (task, then) => this.#whenArgumentsReady(task, then),
      isAvailable: (ref) => this.#isAvailable(ref),
      updateKeepAlive: () => this.#updateKeepAlive(),
      callOwnActorFor: (actorId, method, args, returnIds) => this.#actors.has(actorId) ? this.callActorFor(actorId, method, args, returnIds) : undefined,
      killActor: (actorId) => this.killActor(actorId),
    });
  }

  /** Submits `fn(...args)`; returns the refs of its results at once. */
  submit(fn: FunctionRecord, args: unknown[], options: SubmitOptions): ObjectRef[] {
    const placing: Placing = {
      scheduling: options.scheduling ?? "DEFAULT",
      numCpus: options.numCpus ?? 1,
      resources: options.resources ?? {},
      argBytes: this.#cluster.argBytes(args),
    };
    if (options.placementGroup !== undefined) return this.#submitInGroup(fn, args, options, placing, options.placementGroup);
    let node: number | undefined;
    try {
      node = this.#cluster.placement(placing, new Set());
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
      this.#whenArgumentsReady(task, () => this.#cluster.sendToNode(task));
    }
    return this.#returnRefs(task);
  }

  /** A task in a bundle of a placement group: it runs on the bundle's node once the group is
   * ready (and fails if the group is removed first). */
  #submitInGroup(fn: FunctionRecord, args: unknown[], options: SubmitOptions, placing: Placing, group: PlacementGroup): ObjectRef[] {
    let index: number;
    try {
      index = group.bundleFor(placing, options.placementGroupBundleIndex);
    } catch (error) {
      throw new ObjstoreError(`${fn.name}.remote(): ${(error as Error).message}`);
    }
    const task = this.#newTask(fn.name, { fn }, args, options.numReturns, options.maxRetries);
    group.nodeOf(index).then((node) => {
      if (task.settled) return;
      const here = this.#runsHere(node);
      if (!here) {
        task.node = node;
        task.placing = this.#pinnedTo(node, placing);
      }
      this.#whenArgumentsReady(task, () => here ? this.#enqueue(task) : this.#cluster.sendToNode(task));
    }, (error) => this.#fail(task, "error", { name: "ObjstoreError", message: `its placement group: ${(error as Error).message}`, stack: "" }));
    return this.#returnRefs(task);
  }

  /** `placing` held to node `node` (a bundle's): placed again, it goes there or fails. */
  #pinnedTo(node: number, placing: Placing): Placing {
    const nodeId = this.#session.cluster!.nodesView().find((n) => n.nodeNumber === node)?.nodeId ?? String(node);
    return { ...placing, scheduling: { nodeId, soft: false } };
  }

  /** Whether work placed on node `node` runs in this process's workers (outside a cluster, always). */
  #runsHere(node: number): boolean {
    const cluster = this.#session.cluster;
    return cluster === undefined || (node === cluster.node.nodeNumber && this.#numWorkers > 0);
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
   * Starts an actor: its own worker process, constructing `cls` with `args`; in a cluster,
   * on the node its options place it on (by default this one).
   */
  createActor(cls: FunctionRecord, args: unknown[], options: ActorOptions = {}): number {
    const id = this.#nextActor++;
    const heldRefs: ObjectRef[] = [];
    const packed = packArguments(this.#session, args, (ref) => heldRefs.push(this.#copyRef(ref)));
    let placing: Placing = { scheduling: options.scheduling ?? "DEFAULT", numCpus: options.numCpus ?? 1, resources: options.resources ?? {}, argBytes: new Map() };
    let node: number | undefined;
    try {
      const group = options.placementGroup;
      if (group !== undefined) {
        const bundleNode = group.nodeNow(group.bundleFor(placing, options.placementGroupBundleIndex));
        if (bundleNode === undefined) throw new ObjstoreError(`placement group ${group.id} is not ready: await group.ready() before starting actors in it`);
        group.onRemove(() => this.killActor(id));
        if (!this.#runsHere(bundleNode)) {
          node = bundleNode;
          placing = this.#pinnedTo(node, placing);
        }
      } else {
        node = this.#cluster.actorPlacement(placing, new Set());
      }
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
    this.#cluster.remoteActors.set(id, actor);
    this.#cluster.postActor(actor);
    return id;
  }

  /**
   * The name other processes of the cluster reach this process's actors by (its borrower name;
   * "" outside a cluster): handles going out carry it, and from now on this process serves
   * their calls.
   */
  shareActors(): string {
    if (this.#session.cluster !== undefined) this.#cluster.serveActors();
    return this.actorOwner();
  }

  /** The name this process's actors are reached by from other processes ("" outside a cluster). */
  actorOwner(): string {
    return this.#session.cluster?.borrows.holder ?? "";
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

  /**
   * Calls `method` on an actor; calls run in the order they are made. `owner` names the
   * process that made the actor when it is another one (its handle came here).
   */
  callActor(actorId: number, method: string, args: unknown[], numReturns: number, owner = ""): ObjectRef[] {
    if (owner !== "") {
      const task = this.#newTask(`actor ${actorId}.${method}`, { method }, args, numReturns, 0);
      const refs = this.#returnRefs(task);
      this.#cluster.callForeignActor(task, owner, actorId);
      return refs;
    }
    const remoteActor = this.#cluster.remoteActors.get(actorId);
    if (remoteActor !== undefined) return this.#cluster.callActor(remoteActor, method, args, numReturns);
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

  killActor(actorId: number, owner = ""): void {
    if (owner !== "") return this.#cluster.killForeignActor(owner, actorId);
    if (this.#cluster.killActor(actorId)) return;
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

  /** A result lost with its node: its task runs again if it can (see `ClusterDispatch.rebuild`). */
  rebuild(ref: ObjectRef): boolean {
    return this.#cluster.rebuild(ref);
  }

  /** Makes a custom serializer known to every worker, now and later. */
  addSerializer(record: SerializerRecord): void {
    for (const worker of this.#allWorkers()) worker.send({ t: "serializer", ...record });
  }

  /** Stops every worker: asks them to leave (stdin closes), then kills the ones that stay. */
  async close(): Promise<void> {
    this.#closing = true;
    await removeAllPlacementGroups();
    await this.#cluster.close();
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
    this.#events?.write();
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
    this.#events?.submitted(task.id, task.name, this.#argBytes(task));
    if (this.#producers !== undefined) for (const hex of task.returnHex) this.#producers.set(hex, task);
    return task;
  }

  /** The encoded size of a task's arguments, for its events: stored, or inline (estimated). */
  #argBytes(task: Task): number {
    const wire = task.args.wire;
    if (typeof wire === "string") return this.#session.store.sizeOf(task.args.ref?.bytes ?? fromHex(wire, ID_BYTES)!);
    let bytes = 2;
    for (const a of wire) bytes += typeof a === "string" ? a.length + 3 : 8;
    return bytes;
  }

  /** How many tasks wait and run now, for the task events file (written once a second). */
  #gauges(): { pending: number; running: number } {
    let running = 0;
    for (const worker of this.#allWorkers()) running += worker.inFlight.size;
    return { pending: Math.max(0, this.#tasks.size - running), running };
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
    const actor = message.actor === undefined || message.owner !== undefined ? undefined : this.#actors.get(message.actor);
    const fn = message.fn === undefined ? undefined : this.#workerFunction(worker, message.fn, message.spec);
    const name = actor !== undefined ? `${actor.cls.name}.${message.method}` : (fn?.name ?? "task");
    const returnIds = message.returns.map((hex) => fromHex(hex, ID_BYTES)!);
    const deps = message.deps.map((hex) => this.#refTo(hex));
    const task = this.#register(new Task(this.#nextTask++, name, { fn, method: message.method, actor }, { wire: message.args, ref: undefined }, deps, returnIds, message.maxRetries));
    task.requester = worker;
    worker.outstanding += 1;
    if (message.owner !== undefined && message.actor !== undefined) return this.#cluster.callForeignActor(task, message.owner, message.actor);
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
        return this.killActor(message.actor, message.owner);
    }
  }

  /** The returns are sealed: the refs the program still has take their references. */
  #complete(task: Task): void {
    this.#events?.ended(false);
    this.#forget(task);
    if (task.requester !== undefined) this.#resolveForRequester(task, false);
    acquireFinished(task.returnRefs);
    task.settle();
    // The last task out (one run on another node, say) lets the program end.
    if (this.#tasks.size === 0) this.#updateKeepAlive();
  }

  /** Stores `failure` as every return of the task, which ends it. */
  #fail(task: Task, kind: FailureKind, error: { name: string; message: string; stack: string }): void {
    this.#events?.ended(true);
    this.#cluster.forgetIfOut(task);
    storeFailure(this.#session, task, new TaskFailure(kind, error, task.name));
    this.#forget(task);
    if (task.requester !== undefined) this.#resolveForRequester(task, true);
    task.settle();
    if (this.#tasks.size === 0) this.#updateKeepAlive();
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
      else if (this.#cancelledNeighbour(lost) || task.retriesLeft-- > 0) {
        this.#events?.retrying();
        this.#ready.push(task);
      }
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
