/**
 * @objstore/core: Ray's object store and remote tasks for TypeScript on Deno, Bun and Node.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 256 * 1024 * 1024 });
 * const ref = os.put(new Float64Array(1_000_000));
 * const view = await os.get(ref); // zero-copy view over shared memory
 * await os.shutdown();
 * ```
 *
 * @module
 */
export { init, isInitialized, shutdown } from "./lib/session.ts";
export type { InitResult } from "./lib/session.ts";
export type { InitOptions, SpillOption } from "./lib/options.ts";
export { free, get, memoryStats, put, wait } from "./lib/objects.ts";
export type { GetOptions, MemoryStats, WaitOptions } from "./lib/objects.ts";
export { ObjectRef } from "./lib/object_ref.ts";
export { deregisterSerializer, registerSerializer } from "./lib/tasks/serializers.ts";
export { cancel, kill, remote } from "./lib/tasks/remote.ts";
export { PlacementGroup, placementGroup, removePlacementGroup } from "./lib/tasks/placement_group.ts";
export type { PlacementGroupOptions } from "./lib/tasks/placement_group.ts";
export type {
  ActorClass,
  ActorClassOptions,
  ActorHandle,
  ActorMethods,
  AnyClass,
  AnyFunction,
  ModuleFunction,
  RemoteArg,
  RemoteArgs,
  RemoteFunction,
  RemoteFunctionWithOptions,
  TaskOptions,
} from "./lib/tasks/remote.ts";
export type { Serializer } from "./lib/codec/mod.ts";
export type { Bundle, PlacementStrategy, Scheduling } from "./lib/cluster/placement.ts";
export {
  ActorDiedError,
  ClusterAuthError,
  DirectoryUnavailableError,
  GetTimeoutError,
  NodeDiedError,
  NotInitializedError,
  ObjectLostError,
  ObjectStoreFullError,
  ObjstoreError,
  OwnerDiedError,
  SerializationError,
  TaskCancelledError,
  TaskError,
  WorkerCrashedError,
} from "./lib/errors.ts";
