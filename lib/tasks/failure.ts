/**
 * A task's failure, stored in place of its return values so that `get` of any of them throws:
 * `TaskError` for an error the task threw, `WorkerCrashedError` when its worker died and
 * retries ran out, `NodeDiedError` when its node did, `TaskCancelledError` after `cancel`.
 */
import { registerSerializer } from "../codec/mod.ts";
import { ActorDiedError, NodeDiedError, type ObjstoreError, TaskCancelledError, TaskError, WorkerCrashedError } from "../errors.ts";
import type { RemoteErrorInfo } from "./protocol.ts";

export type FailureKind = "error" | "crash" | "node" | "actor" | "cancel";

export class TaskFailure {
  readonly kind: FailureKind;
  readonly error: RemoteErrorInfo;
  /** The task that failed ("total", "Counter.inc"). */
  readonly task: string;

  constructor(kind: FailureKind, error: RemoteErrorInfo, task: string) {
    this.kind = kind;
    this.error = error;
    this.task = task;
  }

  /** The error `get` throws for this failure. */
  toError(): ObjstoreError {
    const { name, message, stack } = this.error;
    switch (this.kind) {
      case "crash":
        return new WorkerCrashedError(`${this.task}: ${message}`);
      case "node":
        return new NodeDiedError(`${this.task}: ${message}`);
      case "actor":
        return new ActorDiedError(`${this.task}: ${message}`);
      case "cancel":
        return new TaskCancelledError(`${this.task} was cancelled`);
      default: {
        const cause = new Error(message);
        cause.name = name;
        cause.stack = stack;
        return new TaskError(`${this.task} failed: ${name}: ${message}`, name, stack, { cause });
      }
    }
  }
}

/** What is known of a thrown value, for storing. */
export function describeError(error: unknown): RemoteErrorInfo {
  if (error instanceof Error) {
    return { name: error.name, message: error.message, stack: error.stack ?? `${error.name}: ${error.message}` };
  }
  return { name: "Error", message: String(error), stack: String(error) };
}

registerSerializer(TaskFailure, {
  serialize: (f: TaskFailure) => [f.kind, f.error.name, f.error.message, f.error.stack, f.task],
  deserialize: ([kind, name, message, stack, task]: string[]) =>
    new TaskFailure(kind as FailureKind, { name, message, stack }, task),
}, "@objstore/TaskFailure");
