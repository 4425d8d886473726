/**
 * The errors of @objstore/core. Every error the library throws on purpose extends
 * {@link ObjstoreError}, so callers can tell the store's failures from their own with one
 * `instanceof`.
 *
 * @module
 */

/** Base class of every error thrown by @objstore/core. */
export class ObjstoreError extends Error {
  /** Same arguments as `Error`; `name` is set to the concrete class name so logs stay readable. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A value cannot be stored (its message names the path to the culprit, e.g. `value.a[3].b`),
 * or stored bytes cannot be turned back into a value (corrupt data, an unregistered class).
 */
export class SerializationError extends ObjstoreError {}

/** An API call came before `init()` (or after `shutdown()`). */
export class NotInitializedError extends ObjstoreError {
  /** An error that says to call `init()` first (or `message`). */
  constructor(message = "objstore is not initialized: call `await init()` first") {
    super(message);
  }
}

/** `get` did not see its objects within `timeout` seconds. */
export class GetTimeoutError extends ObjstoreError {}

/** A task threw; `remoteName`, the message and the remote stack are kept, the original is `cause`. */
export class TaskError extends ObjstoreError {
  /** The name of the error class thrown in the task (e.g. `RangeError`). */
  readonly remoteName: string;
  /** The stack of the error in the worker process. */
  readonly remoteStack: string;
  /** A task's error as seen by its caller: `remoteName` and `remoteStack` describe the original. */
  constructor(message: string, remoteName: string, remoteStack: string, options?: ErrorOptions) {
    super(message, options);
    this.remoteName = remoteName;
    this.remoteStack = remoteStack;
  }
}

/** The task was cancelled with `cancel(ref)` before it finished. */
export class TaskCancelledError extends ObjstoreError {}

/** The worker running the task died, and retries (`maxRetries`) ran out. */
export class WorkerCrashedError extends ObjstoreError {}

/** The actor's process or node died (or it was killed), and it is not restarted (`maxRestarts`). */
export class ActorDiedError extends ObjstoreError {}

/** The node running the task died (or left), and retries (`maxRetries`) ran out. */
export class NodeDiedError extends ObjstoreError {}

/** The object is gone: freed, its ref released, or its spilled copy missing or corrupt. */
export class ObjectLostError extends ObjstoreError {}

/** The process that owned the object died and the object cannot be recovered. */
export class OwnerDiedError extends ObjstoreError {}

/** A `put` cannot fit even after spilling; the message gives the sizes. Nothing stored is lost. */
export class ObjectStoreFullError extends ObjstoreError {}

/** A connection between nodes was refused: the peer holds another cluster token (`--token`,
 * `OBJSTORE_CLUSTER_TOKEN`) than this process. */
export class ClusterAuthError extends ObjstoreError {}

/** The cluster's directory (Redis) did not answer within its timeout, or refused us. */
export class DirectoryUnavailableError extends ObjstoreError {}
