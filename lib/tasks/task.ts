/**
 * A task as the driver tracks it (and the actor a method call runs on): its arguments, the ids
 * of its returns and the refs made to them, where it runs, and how it ends (`settle`, or
 * `storeFailure` first).
 */
import process from "node:process";
import { toHex, sameId } from "../ids.ts";
import type { ObjectRef } from "../object_ref.ts";
import { putArguments, putWithId } from "../objects.ts";
import type { Session } from "../session.ts";
import { describeError, type TaskFailure } from "./failure.ts";
import { isInlineable, type WireArguments } from "./protocol.ts";
import type { FunctionRecord } from "./submitter.ts";
import type { Placing } from "../cluster/placement.ts";
import type { WorkerProcess } from "./worker_process.ts";

/** An actor: an instance of a remote class in a worker process of its own, fed in call order. */
export interface Actor {
  readonly id: number;
  readonly cls: FunctionRecord;
  readonly worker: WorkerProcess;
  /** The constructor's arguments, and the refs they hold, alive as long as the actor. */
  readonly args: PackedArguments;
  readonly heldRefs: readonly ObjectRef[];
  /** Calls not sent yet, in order; the head goes when its arguments are ready. */
  readonly queue: Task[];
  dead: TaskFailure | undefined;
}

/** An actor started on another node of the cluster (lib/tasks/node_executor.ts runs it there). */
export interface RemoteActor {
  readonly id: number;
  readonly cls: FunctionRecord;
  /** Where it runs now, and which incarnation (a restart elsewhere is the next). */
  node: number;
  incarnation: number;
  restartsLeft: number;
  readonly maxConcurrency: number;
  readonly placing: Placing;
  readonly args: PackedArguments;
  readonly heldRefs: readonly ObjectRef[];
  /** Calls not sent yet, in order. */
  readonly queue: Task[];
  dead: TaskFailure | undefined;
}

/** One call of a remote function or actor method, from submission until its results are sealed. */
export class Task {
  readonly id: number;
  readonly name: string;
  readonly fn: FunctionRecord | undefined;
  readonly method: string | undefined;
  readonly actor: Actor | undefined;
  readonly args: PackedArguments;
  /** Refs passed as arguments; the task waits for them, and they stay alive while it may run. */
  readonly argRefs: readonly ObjectRef[];
  /** Refs nested inside the arguments: alive while the task may run (it gets them as refs, so
   * it does not wait for them). */
  heldRefs: readonly ObjectRef[] = noRefs;
  readonly returnIds: Uint8Array[];
  readonly returnHex: string[];
  /** Every ref made to one of the returns (the caller's, and tasks' copies), weakly. */
  readonly returnRefs: WeakRef<ObjectRef>[] = [];
  retriesLeft: number;
  worker: WorkerProcess | undefined;
  /** In a cluster: the node it was sent to, when not this process's workers; and which try. */
  node: number | undefined;
  attempt = 0;
  /** How it was placed in a cluster (placed again the same way after its node died). */
  placing: Placing | undefined;
  /** The actor on another node this call is for. */
  remoteActor: RemoteActor | undefined;
  /** The actor of another process this call is for (its handle came here), and whether the
   * call is still with that owner (else with the node running the actor: `node`). */
  foreignActor: { owner: string; actorId: number; atOwner: boolean } | undefined;
  /** The worker that submitted this task from inside one of its own, if any. */
  requester: WorkerProcess | undefined;
  /** Counted in its worker's `slowInFlight`. */
  sentAsSlow = false;
  /** How long a `get` of a result may spin for it (see SPIN_MICROS); 0 for none. */
  spinMicros = 0;
  /** What run times are averaged by: the function, or the actor's method. */
  readonly runKey: string;
  cancelled = false;
  settled = false;
  /** It failed on an object it could not find (an argument lost with its node, say). */
  lostAnObject = false;
  /** Its arguments outlive it: its results may have to be made again (lineage, in a cluster). */
  keepsArguments = false;
  #done: Promise<void> | undefined;
  #resolve: (() => void) | undefined;

  constructor(id: number, name: string, target: { fn?: FunctionRecord; method?: string; actor?: Actor }, args: PackedArguments, argRefs: readonly ObjectRef[], returnIds: Uint8Array[], retries: number) {
    this.id = id;
    this.name = name;
    this.fn = target.fn;
    this.method = target.method;
    this.actor = target.actor;
    this.args = args;
    this.argRefs = argRefs;
    this.returnIds = returnIds;
    this.returnHex = returnIds.map(toHex);
    this.retriesLeft = retries;
    this.runKey = target.fn !== undefined ? `f${target.fn.id}` : `a${target.actor?.id}.${target.method}`;
  }

  /** Spins briefly for this task to settle (see SPIN_MICROS); true if it did. */
  spinUntilSettled(): boolean {
    if (this.spinMicros === 0 || this.worker === undefined) return false;
    return this.worker.spinUntilSettled(this, this.spinMicros);
  }

  /** Resolves when the task is settled; made only when someone waits (most results are read
   * after they are done, and a promise per task was a measurable share of the driver's GC). */
  get done(): Promise<void> {
    if (this.settled) return Promise.resolve();
    this.#done ??= new Promise<void>((resolve) => (this.#resolve = resolve));
    return this.#done;
  }

  settle(): void {
    this.settled = true;
    this.spinMicros = 0;
    if (!this.keepsArguments) this.releaseArguments();
    this.#resolve?.();
  }

  /** Lets go of the arguments (the task ended, or its lineage was let go). */
  releaseArguments(): void {
    this.args.ref?.[Symbol.dispose]();
    for (const ref of this.argRefs) ref[Symbol.dispose]();
    for (const ref of this.heldRefs) ref[Symbol.dispose]();
  }

  /** Runs again (its results were lost): unsettled, with a fresh `done`. */
  unsettle(): void {
    this.settled = false;
    this.#done = undefined;
    this.#resolve = undefined;
  }

  /** A rough size of what keeping it costs, for the lineage's bound. */
  get lineageBytes(): number {
    return 256 + 64 * this.returnIds.length + (typeof this.args.wire === "string" ? this.args.wire.length : JSON.stringify(this.args.wire).length);
  }
}

/** Arguments as sent to a worker, and the stored object that holds them, if any. */
export interface PackedArguments {
  readonly wire: WireArguments;
  readonly ref: ObjectRef | undefined;
}

/** Stores the arguments unless they go inline; `onRef` is told each ref they hold. */
export function packArguments(session: Session, args: unknown[], onRef: (ref: ObjectRef) => void): PackedArguments {
  if (isInlineable(args)) return { wire: args, ref: undefined };
  const ref = putArguments(session, args, onRef);
  return { wire: ref.hex(), ref };
}

/** Most calls take no refs: one shared empty list instead of a new one per task. */
export const noRefs: readonly ObjectRef[] = Object.freeze([]);

/**
 * Stores `failure` under every return id of `task` (so `get` of any throws it). The reference
 * each put leaves this process goes to the first live ref to that return (the others take
 * their own), or, for a task a worker submitted, stays for its requester.
 */
export function storeFailure(session: Session, task: Task, failure: TaskFailure): void {
  for (const id of task.returnIds) {
    try {
      putWithId(session, id, failure);
    } catch (cause) {
      process.emitWarning(`objstore: could not store the failure of ${task.name}: ${describeError(cause).message}`);
      continue;
    }
    // putWithId left this process one reference: the requester's, or the first live ref's.
    if (task.requester !== undefined) continue;
    let adopted = false;
    for (const ref of liveRefsTo(task, id)) {
      ref.producer = undefined;
      if (adopted) ref.acquire();
      else ref.adopt();
      adopted = true;
    }
    if (!adopted) session.store.dropRef(id);
  }
}

function liveRefsTo(task: Task, id: Uint8Array): ObjectRef[] {
  const refs: ObjectRef[] = [];
  for (const weak of task.returnRefs) {
    const ref = weak.deref();
    if (ref !== undefined && sameId(ref.bytes, id)) refs.push(ref);
  }
  return refs;
}
