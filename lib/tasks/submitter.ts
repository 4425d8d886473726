/**
 * What `remote()` needs from a process, whoever serves it: the driver's `Scheduler` runs tasks
 * in its workers, a worker's `Forwarder` sends them to its driver. Types only, so every module
 * of the tasks layer can name them without importing the scheduler.
 */
import type { ObjectRef } from "../object_ref.ts";
import type { TasksOfSession } from "../session.ts";
import type { FunctionSpec } from "./protocol.ts";
import type { Scheduling } from "../cluster/placement.ts";
import type { PlacementGroup } from "./placement_group.ts";

/** A function or class made remote, as the process that submits it numbers it. */
export interface FunctionRecord {
  readonly id: number;
  readonly name: string;
  readonly spec: FunctionSpec;
}

/** The options a remote function is called with. */
export interface SubmitOptions {
  numReturns: number;
  maxRetries: number;
  /** Where it runs in a cluster (default "DEFAULT"). */
  scheduling?: Scheduling;
  /** Worker slots it needs on its node (default 1). */
  numCpus?: number;
  /** Custom resources it needs on its node (default none). */
  resources?: Record<string, number>;
  /** The placement group it runs in, and which bundle (default: the first with room). */
  placementGroup?: PlacementGroup;
  placementGroupBundleIndex?: number;
}

/** The options an actor is started with. */
export interface ActorOptions {
  scheduling?: Scheduling;
  numCpus?: number;
  resources?: Record<string, number>;
  /** How many times it is started again after its node dies (default 0). */
  maxRestarts?: number;
  /** How many of its calls may run at once (its async methods interleave; default 1). */
  maxConcurrency?: number;
  /** The placement group it starts in (ready), and which bundle (default: the first with room). */
  placementGroup?: PlacementGroup;
  placementGroupBundleIndex?: number;
}

/** A custom serializer as shipped to workers: the class and both functions by their source. */
export interface SerializerRecord {
  name: string;
  cls: string;
  serialize: string;
  deserialize: string;
}

/** What `remote()` needs from a process: the driver's Scheduler, or a worker's Forwarder. */
export interface Submitter extends TasksOfSession {
  submit(fn: FunctionRecord, args: unknown[], options: SubmitOptions): ObjectRef[];
  createActor(cls: FunctionRecord, args: unknown[], options?: ActorOptions): number;
  /** `owner`: the process that made the actor, when not this one's (or, in a worker, its driver). */
  callActor(actorId: number, method: string, args: unknown[], numReturns: number, owner?: string): ObjectRef[];
  killActor(actorId: number, owner?: string): void;
  /** The name the actors this process makes (or, in a worker, its driver's) are reached by
   * from other processes of the cluster ("" outside one); their calls are served from now on. */
  shareActors(): string;
  /** The same name, without serving. */
  actorOwner(): string;
  cancel(ref: ObjectRef): void;
  addSerializer(record: SerializerRecord): void;
}
