/**
 * Submissions from inside a task: a worker forwards `remote()` calls and actor-handle calls
 * to its driver, which schedules them like its own. Result ids are chosen here, so refs are
 * returned at once; when the driver reports them resolved, the refs still alive take their
 * references and the driver lets go of its own.
 */
import { ObjstoreError } from "../errors.ts";
import { acquireFinished, ObjectRef, type Producer } from "../object_ref.ts";
import { putArguments } from "../objects.ts";
import process from "node:process";
import { ACTOR_OWNER_ENV, type Session } from "../session.ts";
import { type FromWorker, isInlineable } from "./protocol.ts";
import type { FunctionRecord, SerializerRecord, SubmitOptions, Submitter } from "./submitter.ts";

class ForwardedTask implements Producer {
  settled = false;
  readonly done: Promise<void>;
  readonly refs: WeakRef<ObjectRef>[] = [];
  /** Held until the driver resolves the task: the arguments object and the ref arguments. */
  readonly holds: ObjectRef[];
  resolve!: () => void;

  constructor(holds: ObjectRef[]) {
    this.holds = holds;
    this.done = new Promise<void>((resolve) => (this.resolve = resolve));
  }
}

export class Forwarder implements Submitter {
  readonly #session: Session;
  readonly #send: (message: FromWorker) => void;
  readonly #announced = new Set<number>();
  readonly #pending = new Map<string, ForwardedTask>();

  constructor(session: Session, send: (message: FromWorker) => void) {
    this.#session = session;
    this.#send = send;
  }

  submit(fn: FunctionRecord, args: unknown[], options: SubmitOptions): ObjectRef[] {
    const spec = this.#announced.has(fn.id) ? undefined : fn.spec;
    this.#announced.add(fn.id);
    return this.#forward({ fn: fn.id, spec }, args, options.numReturns, options.maxRetries);
  }

  callActor(actorId: number, method: string, args: unknown[], numReturns: number, owner = ""): ObjectRef[] {
    return this.#forward(owner === "" ? { actor: actorId, method } : { actor: actorId, owner, method }, args, numReturns, 0);
  }

  /** The driver's name: its actors are the ones handles here name (it serves their calls). */
  actorOwner(): string {
    return process.env[ACTOR_OWNER_ENV] ?? "";
  }

  /** The driver's name (it serves its actors' calls since it gave their handles out). */
  shareActors(): string {
    return this.actorOwner();
  }

  createActor(): number {
    throw new ObjstoreError("actors are created by the driver process; create it there and pass its handle to the task");
  }

  killActor(actorId: number, owner = ""): void {
    this.#send(owner === "" ? { t: "kill", actor: actorId } : { t: "kill", actor: actorId, owner });
  }

  cancel(ref: ObjectRef): void {
    this.#send({ t: "cancel", id: ref.hex() });
  }

  /** The driver ships serializers to every worker itself. */
  addSerializer(_record: SerializerRecord): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** A worker starts nothing of its own: its driver's tasks run in the driver's workers. */
  abandon(): void {}

  /** The driver finished these tasks and holds their results for us. */
  onResolved(ids: string[]): void {
    for (const hex of ids) {
      const task = this.#pending.get(hex);
      if (task === undefined || task.settled) continue;
      task.settled = true;
      acquireFinished(task.refs);
      for (const hold of task.holds) hold[Symbol.dispose]();
      task.resolve();
    }
    for (const hex of ids) this.#pending.delete(hex);
    this.#send({ t: "acquired", ids });
  }

  #forward(target: { fn?: number; spec?: FunctionRecord["spec"]; actor?: number; owner?: string; method?: string }, args: unknown[], numReturns: number, maxRetries: number): ObjectRef[] {
    const refArgs = args.filter((a): a is ObjectRef => a instanceof ObjectRef);
    for (const ref of refArgs) ref.checkUsable();
    // Held until the task settles: the refs passed, the ones nested in the arguments, and the
    // stored arguments themselves.
    const holds = refArgs.map((ref) => ObjectRef.fromHex(ref.hex()));
    const argsRef = isInlineable(args) ? undefined : putArguments(this.#session, args, (ref) => {
      if (!args.includes(ref)) holds.push(ObjectRef.fromHex(ref.hex()));
    });
    if (argsRef !== undefined) holds.push(argsRef);
    const task = new ForwardedTask(holds);
    const returnIds = Array.from({ length: numReturns }, () => this.#session.newId());
    const refs = returnIds.map((id) => {
      const ref = new ObjectRef(id, this.#session, false);
      ref.producer = task;
      task.refs.push(new WeakRef(ref));
      this.#pending.set(ref.hex(), task);
      return ref;
    });
    this.#send({
      t: "submit",
      ...target,
      args: argsRef === undefined ? (args as Array<number | string | boolean | null>) : argsRef.hex(),
      deps: refArgs.map((ref) => ref.hex()),
      returns: refs.map((ref) => ref.hex()),
      maxRetries,
    });
    return refs;
  }
}
