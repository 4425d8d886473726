/**
 * `remote`, `kill` and `cancel`: functions and classes that run in worker processes, and the
 * submitter that serves this process's calls (lib/tasks/submitter.ts).
 */
import { registerSerializer as registerInCodec } from "../codec/mod.ts";
import { ObjectRef } from "../object_ref.ts";
import { ObjstoreError } from "../errors.ts";
import { session } from "../session.ts";
import type { FunctionSpec } from "./protocol.ts";
import { Scheduler } from "./scheduler.ts";
import { sourceOf } from "./source.ts";
import type { ActorOptions, FunctionRecord, SubmitOptions, Submitter } from "./submitter.ts";
import { checkRequirements, checkScheduling, type Scheduling } from "../cluster/placement.ts";
import { PlacementGroup } from "./placement_group.ts";

/** A value, or a ref to one: what a remote function accepts for each parameter. */
export type RemoteArg<T> = T | ObjectRef<T>;
/** The parameters of a remote function or actor method: each a value or a ref to one. */
export type RemoteArgs<P extends unknown[]> = { [K in keyof P]: RemoteArg<P[K]> };
/** Any function `remote` accepts. */
// deno-lint-ignore no-explicit-any
export type AnyFunction = (...args: any[]) => any;
/** Any class `remote` accepts (its instances become actors). */
// deno-lint-ignore no-explicit-any
export type AnyClass = new (...args: any[]) => any;
/** A function named by the module that exports it, for functions that are not self-contained. */
export interface ModuleFunction {
  /** The module's URL, e.g. `new URL("./tasks.ts", import.meta.url)`. */
  module: URL | string;
  /** The name it is exported under. */
  name: string;
}

/** Options of a remote function call. */
export interface TaskOptions {
  /** How many refs `.remote()` returns; with more than 1 the function returns an array of that length. */
  numReturns?: number;
  /** Retries when the worker (or in a cluster, the node) dies mid-task (default 3). */
  maxRetries?: number;
  /**
   * In a cluster, where it runs: `"DEFAULT"` (this node while the driver has workers, else
   * another), `"SPREAD"` (round robin over the nodes with workers), or `{ nodeId, soft }` (that
   * node, by id or store name; if it is not alive a hard affinity fails at once, a soft one
   * runs elsewhere). Ignored outside a cluster.
   */
  scheduling?: Scheduling;
  /** Worker slots it needs on its node (default 1; a node has one per worker). */
  numCpus?: number;
  /** Custom resources it needs on its node, as nodes declare them with `objstore start
   * --resources '{"GPU": 2}'`. A task no node can run fails at once, naming what is missing. */
  resources?: Record<string, number>;
  /** Runs in this placement group (`placementGroup()`), on the node of one of its bundles;
   * a task submitted before the group is ready waits for it. */
  placementGroup?: PlacementGroup;
  /** Which bundle (default: the first with room for `numCpus` and `resources`). */
  placementGroupBundleIndex?: number;
}

/** A function that runs in a worker process: `.remote(...args)` returns refs at once. */
export interface RemoteFunction<F extends AnyFunction> {
  /** Submits a call; returns the ref of its result at once. */
  remote(...args: RemoteArgs<Parameters<F>>): ObjectRef<Awaited<ReturnType<F>>>;
  /** The same function with other options; `numReturns > 1` makes `.remote()` return an array of refs. */
  options(options: TaskOptions): RemoteFunctionWithOptions<F>;
}

/** A remote function with options set: with `numReturns > 1`, `.remote()` returns an array of refs. */
export interface RemoteFunctionWithOptions<F extends AnyFunction> {
  /** Submits a call; returns the ref of its result, or one ref per return with `numReturns > 1`. */
  remote(...args: RemoteArgs<Parameters<F>>): ObjectRef<Awaited<ReturnType<F>>> | ObjectRef[];
  /** The same function with other options. */
  options(options: TaskOptions): RemoteFunctionWithOptions<F>;
}

/** The methods of an actor's class, each callable with `.remote(...args)`. */
export type ActorMethods<T> = {
  [K in keyof T as T[K] extends AnyFunction ? K : never]: T[K] extends AnyFunction
    ? { remote(...args: RemoteArgs<Parameters<T[K]>>): ObjectRef<Awaited<ReturnType<T[K]>>> }
    : never;
};

/** A handle to an actor: `handle.method.remote(...args)` runs the method in the actor's process. */
export type ActorHandle<T> = ActorMethods<T>;

/** A class whose instances live in a worker process of their own. */
export interface ActorClass<C extends AnyClass> {
  /** Starts an actor: a new instance in a worker process of its own; returns its handle. */
  remote(...args: RemoteArgs<ConstructorParameters<C>>): ActorHandle<InstanceType<C>>;
  /** The same class started with options (in a cluster: where, and restarts). */
  options(options: ActorClassOptions): ActorClass<C>;
}

/** Options of an actor class. */
export interface ActorClassOptions {
  /** In a cluster, where it starts (as for tasks; by default on this node). */
  scheduling?: Scheduling;
  numCpus?: number;
  resources?: Record<string, number>;
  /** How many times it is started again, on another node, after its node dies (default 0);
   * calls out when it dies raise `ActorDiedError`, later ones go to the new instance. */
  maxRestarts?: number;
  /** How many of its calls may run at once (default 1: one at a time, in order). With more,
   * its async methods interleave at their awaits; calls still start in the order made. */
  maxConcurrency?: number;
  /** Starts in this placement group (await its `ready()` first); killed when it is removed. */
  placementGroup?: PlacementGroup;
  /** Which bundle (default: the first with room for `numCpus` and `resources`). */
  placementGroupBundleIndex?: number;
}

const actorIdKey = Symbol("objstore.actorId");
const actorOwnerKey = Symbol("objstore.actorOwner");
let nextFunctionId = 1;

/**
 * Makes `fn` (or a class) run in worker processes. A function is shipped by its source and
 * must be self-contained (it may `await import(...)`); a function in a module is named by
 * `{ module, name }`. Refs passed at the top level arrive as their values (zero-copy);
 * refs nested in arguments arrive as refs.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 256 * 1024 * 1024 });
 * const total = os.remote((arr: Float64Array) => arr.reduce((a, b) => a + b, 0));
 * const data = os.put(new Float64Array([1, 2, 3]));
 * console.log(await os.get(total.remote(data))); // 6
 * await os.shutdown();
 * ```
 */
export function remote<C extends AnyClass>(cls: C): ActorClass<C>;
/** A self-contained function, shipped to workers by its source. */
export function remote<F extends AnyFunction>(fn: F): RemoteFunction<F>;
/** A function exported by a module, imported by workers. */
export function remote<F extends AnyFunction>(target: ModuleFunction): RemoteFunction<F>;
export function remote(target: AnyFunction | ModuleFunction): unknown {
  const record = functionRecord(target);
  if (typeof target === "function" && isClass(target)) return actorClass(record);
  return remoteFunction(record, { numReturns: 1, maxRetries: 3 });
}

function isClass(fn: AnyFunction): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

function functionRecord(target: AnyFunction | ModuleFunction): FunctionRecord {
  let spec: FunctionSpec;
  if (typeof target === "function") {
    spec = { kind: "source", source: sourceOf(target), name: target.name || "anonymous" };
  } else if (target !== null && typeof target === "object" && "module" in target && typeof target.name === "string") {
    spec = { kind: "module", url: String(target.module), name: target.name };
  } else {
    throw new TypeError("remote: expected a function, a class, or { module: URL, name }");
  }
  return { id: nextFunctionId++, name: spec.name, spec };
}

function checkOptions(options: TaskOptions, current: SubmitOptions): SubmitOptions {
  const numReturns = options.numReturns ?? current.numReturns;
  const maxRetries = options.maxRetries ?? current.maxRetries;
  if (!Number.isInteger(numReturns) || numReturns < 1) throw new TypeError(`options: numReturns must be a whole number ≥ 1, got ${options.numReturns}`);
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new TypeError(`options: maxRetries must be a whole number ≥ 0, got ${options.maxRetries}`);
  const scheduling = options.scheduling === undefined ? current.scheduling : checkScheduling(options.scheduling);
  const { numCpus, resources } = checkRequirements(options.numCpus ?? current.numCpus ?? 1, options.resources ?? current.resources ?? {});
  const placementGroup = checkGroup(options.placementGroup ?? current.placementGroup);
  const placementGroupBundleIndex = options.placementGroupBundleIndex ?? current.placementGroupBundleIndex;
  return { numReturns, maxRetries, scheduling, numCpus, resources, placementGroup, placementGroupBundleIndex };
}

function checkGroup(group: unknown): PlacementGroup | undefined {
  if (group === undefined || group instanceof PlacementGroup) return group;
  throw new TypeError(`options: placementGroup must be a group made by placementGroup(), got ${JSON.stringify(group)}`);
}

function remoteFunction(record: FunctionRecord, settings: SubmitOptions) {
  return {
    remote(...args: unknown[]) {
      const refs = scheduler().submit(record, args, settings);
      return settings.numReturns === 1 ? refs[0] : refs;
    },
    options(options: TaskOptions) {
      return remoteFunction(record, checkOptions(options, settings));
    },
  };
}

function actorClass(record: FunctionRecord, options: ActorOptions = {}) {
  return {
    remote(...args: unknown[]) {
      return actorHandle(scheduler().createActor(record, args, options), "");
    },
    options(more: ActorClassOptions) {
      return actorClass(record, checkActorOptions({ ...options, ...more }));
    },
  };
}

function checkActorOptions(options: ActorClassOptions): ActorOptions {
  const maxRestarts = options.maxRestarts ?? 0;
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) throw new TypeError(`options: maxRestarts must be a whole number ≥ 0, got ${options.maxRestarts}`);
  const maxConcurrency = options.maxConcurrency ?? 1;
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1) throw new TypeError(`options: maxConcurrency must be a whole number ≥ 1, got ${options.maxConcurrency}`);
  const scheduling = options.scheduling === undefined ? undefined : checkScheduling(options.scheduling);
  const { numCpus, resources } = checkRequirements(options.numCpus ?? 1, options.resources ?? {});
  const placementGroup = checkGroup(options.placementGroup);
  return { scheduling, numCpus, resources, maxRestarts, maxConcurrency, placementGroup, placementGroupBundleIndex: options.placementGroupBundleIndex };
}

/**
 * What an actor handle is underneath: its id, and the process that owns it when that is not
 * this one ("" for this process's own actors, or in a worker its driver's). Stored by both,
 * so a handle passed to a task or put in a value calls the same actor from any process of
 * the cluster.
 */
class ActorHandleTarget {
  readonly [actorIdKey]: number;
  readonly [actorOwnerKey]: string;
  constructor(actorId: number, owner: string) {
    this[actorIdKey] = actorId;
    this[actorOwnerKey] = owner;
  }
}

function actorHandle(actorId: number, owner: string): unknown {
  const methods = new Map<string, unknown>();
  return new Proxy(new ActorHandleTarget(actorId, owner), {
    get(target, property, receiver) {
      if (typeof property !== "string" || property in target) return Reflect.get(target, property, receiver);
      if (property === "then" || property === "toJSON") return undefined;
      let method = methods.get(property);
      if (method === undefined) {
        method = { remote: (...args: unknown[]) => scheduler().callActor(actorId, property, args, 1, owner)[0] };
        methods.set(property, method);
      }
      return method;
    },
  });
}

registerInCodec(ActorHandleTarget, {
  serialize: (handle: ActorHandleTarget) => [handle[actorIdKey], handle[actorOwnerKey] || scheduler().shareActors()],
  deserialize: (stored: number | [number, string]) => {
    // A bare number: stored where there was no cluster; the actor is this process's (or its driver's).
    const [actorId, owner] = typeof stored === "number" ? [stored, ""] : stored;
    return actorHandle(actorId, owner === "" || owner === scheduler().actorOwner() ? "" : owner) as ActorHandleTarget;
  },
}, "@objstore/ActorHandle");

/** @internal This driver's scheduler (a node's process runs other nodes' tasks through it). */
export function localScheduler(): Scheduler {
  const submitter = scheduler();
  if (!(submitter instanceof Scheduler)) throw new ObjstoreError("localScheduler: this process is a worker");
  return submitter;
}

/** Where this process's tasks go: the scheduler, started on the first remote call (a worker
 * forwards to its driver instead: worker_main.ts sets its session's tasks first). */
function scheduler(): Submitter {
  const s = session();
  // Only the tasks layer sets a session's tasks, and always to a Submitter.
  let submitter = s.tasks() as Submitter | undefined;
  if (submitter === undefined) {
    submitter = new Scheduler(s, s.options.numWorkers);
    s.setTasks(submitter);
  }
  return submitter;
}

/** Kills an actor's process; its pending calls fail with `WorkerCrashedError`. */
export function kill(handle: ActorHandle<unknown>): void {
  const id = (handle as { [actorIdKey]?: number })?.[actorIdKey];
  if (typeof id !== "number") throw new TypeError("kill: expected an actor handle");
  scheduler().killActor(id, (handle as { [actorOwnerKey]?: string })[actorOwnerKey] ?? "");
}

/**
 * Cancels the task producing `ref`: a pending task never runs, a running one is interrupted
 * (its worker is replaced). `get` of its results throws `TaskCancelledError`.
 */
export function cancel(ref: ObjectRef): void {
  if (!(ref instanceof ObjectRef)) throw new TypeError("cancel: expected the ObjectRef a task returned");
  scheduler().cancel(ref);
}
