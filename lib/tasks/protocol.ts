/**
 * Messages between the driver and its worker processes: one JSON object per line on the
 * worker's stdin (driver → worker) and stdout (worker → driver). Protocol lines start with
 * MARK, so anything a task prints to stdout passes through to the driver's output untouched.
 * Values never travel here: arguments and results live in the store, messages carry ids.
 */

export const MARK = "\u0001os ";

/** How a function reaches a worker: by source, or by module URL and export name. */
export type FunctionSpec =
  | { kind: "source"; source: string; name: string }
  | { kind: "module"; url: string; name: string };

export type ToWorker =
  /** Defines function `fn` for later `run`s. */
  | { t: "define"; fn: number; spec: FunctionSpec }
  /** Registers a custom serializer (SPEC: they apply in workers too). */
  | { t: "serializer"; name: string; cls: string; serialize: string; deserialize: string }
  /** Runs `fn` (or, in an actor, method `method`) on the arguments stored under `args`. */
  | { t: "run"; task: number; fn?: number; method?: string; args: string; returns: string[] }
  /** Makes this worker an actor: constructs class `fn` with the arguments under `args`. */
  | { t: "actor"; fn: number; args: string }
  /** The driver holds the results now: drop the worker's creator references. */
  | { t: "release"; ids: string[] };

export type FromWorker =
  | { t: "ready"; pid: number }
  /** The task's returns are sealed in the store (values or failures). */
  | { t: "done"; task: number };

export interface RemoteErrorInfo {
  name: string;
  message: string;
  stack: string;
}

export function encodeMessage(message: ToWorker | FromWorker): string {
  return MARK + JSON.stringify(message) + "\n";
}

/**
 * Splits a byte stream into lines; protocol lines go to `onMessage`, others to `onOther`.
 */
export function lineReader(onMessage: (message: unknown) => void, onOther: (line: string) => void): (chunk: string) => void {
  let pending = "";
  return (chunk: string) => {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (line.startsWith(MARK)) onMessage(JSON.parse(line.slice(MARK.length)));
      else onOther(line);
    }
  };
}
