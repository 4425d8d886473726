/**
 * Messages between the driver and its worker processes: one JSON object per line, through
 * the worker's channel (channel.ts). Values never travel here: arguments and results live in
 * the store, messages carry ids. The worker's stdin and stdout carry only doorbells (DOORBELL:
 * "look at the channel") and, on stdout, whatever a task prints, passed through untouched.
 */

/** The byte that rings a doorbell; stripped from a worker's stdout before it is passed on. */
export const DOORBELL = "\u0001";

/** How a function reaches a worker: by source, or by module URL and export name. */
export type FunctionSpec =
  | { kind: "source"; source: string; name: string }
  | { kind: "module"; url: string; name: string };

export type ToWorker =
  /** Defines function `fn` for later `run`s. */
  | { t: "define"; fn: number; spec: FunctionSpec }
  /** Registers a custom serializer (SPEC: they apply in workers too). */
  | { t: "serializer"; name: string; cls: string; serialize: string; deserialize: string }
  /** Runs `fn` (or, in an actor, method `method`) on `args`. */
  | { t: "run"; task: number; fn?: number; method?: string; args: WireArguments; returns: string[] }
  /** Makes this worker an actor: constructs class `fn` with `args`. */
  | { t: "actor"; fn: number; args: WireArguments; maxConcurrency?: number }
  /** The driver holds these tasks' results now: drop the worker's creator references. */
  | { t: "release"; tasks: number[] }
  /** Tasks this worker submitted are done; the driver holds their results until `acquired`. */
  | { t: "resolved"; ids: string[] }
  /** The driver shuts down and closes the worker's stdin next: leave at once. */
  | { t: "leave" };

/**
 * A task's arguments: the hex id of the array stored in the store, or — when every argument
 * is a plain JSON value (finite number, short string, boolean, null) — the array itself, which
 * saves a put and a get for the most common small calls (Ray inlines small arguments too).
 */
export type WireArguments = string | Array<number | string | boolean | null>;

/** Above this many characters of strings, arguments go through the store (zero-copy) rather
 * than through the channel as JSON. */
const INLINE_STRING_CHARS_MAX = 16 * 1024;

/** True if `args` survive a JSON round trip unchanged and are small. */
export function isInlineable(args: unknown[]): args is Array<number | string | boolean | null> {
  let stringChars = 0;
  for (const a of args) {
    const kind = typeof a;
    if (kind === "string") {
      stringChars += (a as string).length;
      if (stringChars > INLINE_STRING_CHARS_MAX) return false;
      continue;
    }
    if (a === null || kind === "boolean") continue;
    if (kind === "number" && Number.isFinite(a) && !Object.is(a, -0)) continue;
    return false;
  }
  return true;
}

export type FromWorker =
  | { t: "ready"; pid: number }
  /** These tasks' returns are sealed in the store (values or failures); each ran `micros`. */
  | { t: "done"; tasks: number[]; micros: number[]; lost?: number[] }
  /** A task submitted from inside a task: `fn` (with its spec the first time) or an actor call. */
  | { t: "submit"; fn?: number; spec?: FunctionSpec; actor?: number; owner?: string; method?: string; args: WireArguments; deps: string[]; returns: string[]; maxRetries: number }
  /** The worker took references to these results: the driver can drop its own. */
  | { t: "acquired"; ids: string[] }
  | { t: "cancel"; id: string }
  | { t: "kill"; actor: number; owner?: string };

export interface RemoteErrorInfo {
  name: string;
  message: string;
  stack: string;
}

export function encodeMessage(message: ToWorker | FromWorker): string {
  return JSON.stringify(message) + "\n";
}

/** `encodeMessage` of a `run`, the most frequent message, without building its object first. */
export function encodeRun(task: number, target: { fn: number } | { method: string }, args: WireArguments, returns: string[]): string {
  const which = "fn" in target ? `"fn":${target.fn}` : `"method":${JSON.stringify(target.method)}`;
  const wire = typeof args === "string" ? `"${args}"` : args.length === 0 ? "[]" : JSON.stringify(args);
  return `{"t":"run","task":${task},${which},"args":${wire},"returns":["${returns.join('","')}"]}\n`;
}

/**
 * Splits a channel's text into messages; a message split between two reads waits for its end.
 * A message handled here may cause another read (a handler that pumps the channel): its text
 * queues behind the messages not yet handled, so order holds.
 */
export function messageReader(onMessage: (message: unknown) => void): (text: string) => void {
  let pending = "";
  let reading = false;
  return (text: string) => {
    pending += text;
    if (reading) return;
    reading = true;
    try {
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        onMessage(JSON.parse(line));
      }
    } finally {
      reading = false;
    }
  };
}
