/**
 * A worker process: attaches to its driver's store, then runs the tasks the driver sends, one
 * at a time, in order. Arguments are read from the store (top-level refs resolved, zero-copy);
 * results are written into the store under ids the driver chose; only ids cross the channel.
 *
 * Started by the driver (lib/tasks/worker_process.ts) with OBJSTORE_STORE and OBJSTORE_CHANNEL
 * set; not for direct use.
 */
import process from "node:process";
import { setImmediate } from "node:timers";
import { get, putWithId } from "../objects.ts";
import { fromHex, ID_BYTES } from "../ids.ts";
import { ObjectRef } from "../object_ref.ts";
import { initWorker } from "../session.ts";
import type { Session } from "../session.ts";
import { registerSerializer } from "../codec/mod.ts";
import { ObjstoreError, TaskError } from "../errors.ts";
import { describeError, TaskFailure } from "./failure.ts";
import { Forwarder } from "./forwarder.ts";
import { QUICK_TASK_MICROS, SPIN_MICROS, SpinBackoff } from "../spin_backoff.ts";
import "./remote.ts"; // actor handles passed to tasks decode into working handles
import { Channel } from "./channel.ts";
import { waitUntilDead } from "./worker_process.ts";
import { pinnedForViewsBytes, releaseUnreachablePins } from "../pins.ts";
import { taskEvents } from "./task_events.ts";
import { encodeMessage, type FromWorker, type FunctionSpec, messageReader, type RemoteErrorInfo, type ToWorker, type WireArguments } from "./protocol.ts";

// Task output goes to stderr: the driver's stdout is for the program's own output.
console.log = console.error;
console.info = console.error;

const storeName = process.env.OBJSTORE_STORE;
if (!storeName) {
  console.error("objstore worker: OBJSTORE_STORE is not set; workers are started by the driver");
  process.exit(2);
}
const session: Session = await initWorker(storeName);
// A task that keeps this process busy must not keep it alive for long once its parent died
// (SIGKILLed): the library ends it then (zig/src/parent_watch.zig); an idle worker leaves in
// order first, when its stdin ends.
const PARENT_GONE_GRACE_MS = 2000;
if (session.library.symbols.objstore_watch_parent(process.ppid, PARENT_GONE_GRACE_MS) !== 0) {
  console.error(`objstore worker: cannot watch its parent ${process.ppid}; it ends when its stdin does`);
}
const STDOUT_FD = 1;
// The doorbell goes straight to fd 1, not through process.stdout: a runtime may hold a stream
// write until its event loop turns, and a worker spinning through quick tasks turns it rarely.
const channel = Channel.open(session.library, process.env.OBJSTORE_CHANNEL, () => session.library.symbols.objstore_doorbell_ring(STDOUT_FD));
const forwarder = new Forwarder(session, send);
session.setTasks(forwarder);
/** The tasks this worker runs, for the dashboard and the timeline (lib/tasks/task_events.ts). */
const events = taskEvents(storeName, "worker", session.library.shim.runtime, (timer) => session.library.shim.unrefTimer(timer));

type Callable = (...args: unknown[]) => unknown;

const functions = new Map<number, { name: string; value: Promise<unknown> }>();
let actor: { instance: Record<string, unknown>; className: string } | undefined;
let actorFailure: TaskFailure | undefined;
/** Calls of this actor that may run at once (its async methods interleave); 1: in order. */
let actorConcurrency = 1;
/** Calls running now, when more than one may. */
const runningCalls = new Set<Promise<void>>();
/** The results of each task run here, referenced until the driver has its own references. */
const creatorRefs = new Map<number, Uint8Array[]>();
const inbox: ToWorker[] = [];
let running = false;
let outbox = "";
/** Finished tasks not reported yet, and how long each ran: reported together in one message. */
const finished: number[] = [];
const finishedMicros: number[] = [];
/** Finished tasks not reported yet that failed on an object they could not find. */
const lostTasks: number[] = [];
/** When the oldest unreported task finished (performance.now()). */
let oldestFinishedMs = 0;

/**
 * Results are reported in batches: while more tasks wait in the inbox, one write reports them
 * all. A task done more than this long ago is reported before the next task starts, so a slow
 * task does not hold back the results of the quick ones before it for long.
 */
const REPORT_DELAY_MAX_MS = 1;
/** How long a worker whose driver went away waits for the driver to be dead. */
const DRIVER_EXIT_WAIT_MS = 2000;

function send(message: FromWorker): void {
  outbox += encodeMessage(message);
  // A task awaiting what it submitted would wait forever for a flush at its end.
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flush);
  }
}

function reportDone(task: number, micros: number, lostAnObject: boolean): void {
  if (lostAnObject) lostTasks.push(task);
  if (finished.length === 0) {
    oldestFinishedMs = performance.now();
    // Reported at the latest when the event loop turns (the next task awaits I/O, say).
    setImmediate(flush);
  }
  finished.push(task);
  finishedMicros.push(micros);
}

let flushQueued = false;

function flush(): void {
  flushQueued = false;
  if (finished.length > 0) {
    outbox += encodeMessage(lostTasks.length === 0 ? { t: "done", tasks: finished, micros: finishedMicros } : { t: "done", tasks: finished, micros: finishedMicros, lost: lostTasks });
    finished.length = 0;
    finishedMicros.length = 0;
    lostTasks.length = 0;
  }
  if (outbox === "") return;
  channel.send(outbox);
  outbox = "";
}

/** Evaluates a function shipped as source. It must be self-contained (SPEC "Tasks"). */
function load(spec: FunctionSpec): Promise<unknown> {
  if (spec.kind === "module") {
    return import(spec.url).then((module) => {
      const value = module[spec.name];
      if (value === undefined) throw new ObjstoreError(`${spec.url} has no export named '${spec.name}'`);
      return value;
    });
  }
  try {
    return Promise.resolve(new Function(`"use strict"; return (${spec.source});`)());
  } catch (error) {
    return Promise.reject(error);
  }
}

function idsOf(hexes: string[]): Uint8Array[] {
  return hexes.map((hex) => fromHex(hex, ID_BYTES)!);
}

/** Reads a task's arguments; a top-level ref arrives as its value. */
async function resolveArguments(wire: WireArguments): Promise<unknown[]> {
  if (typeof wire !== "string") return wire;
  const argsRef = ObjectRef.fromHex<unknown[]>(wire);
  try {
    const args = (await get(argsRef)) as unknown[];
    const refs = args.filter((a): a is ObjectRef => a instanceof ObjectRef);
    const values = refs.length === 0 ? [] : await get(refs);
    // The function sees values, never these refs: release them now, not at some later GC.
    for (const ref of refs) ref[Symbol.dispose]();
    let next = 0;
    return args.map((a) => (a instanceof ObjectRef ? values[next++] : a));
  } finally {
    argsRef[Symbol.dispose]();
  }
}

/** Explains the ReferenceError of a function that used a variable of its outer scope. */
function explain(error: unknown, taskName: string): unknown {
  if (!(error instanceof ReferenceError)) return error;
  const match = /^(\w+) is not defined$/.exec(error.message) ?? /^Can't find variable: (\w+)$/.exec(error.message);
  if (match === null) return error;
  const better = new ReferenceError(
    `${taskName} reads '${match[1]}', which is not defined in the worker: remote functions are ` +
      `shipped by source and must be self-contained — pass '${match[1]}' as an argument or import it inside the function`,
  );
  better.stack = `${better.name}: ${better.message}\n${(error.stack ?? "").split("\n").slice(1).join("\n")}`;
  return better;
}

function failureOf(error: unknown, taskName: string): TaskFailure {
  if (error instanceof TaskError) {
    // An argument was a failed ref: fail the same way, without running.
    return new TaskFailure("error", { name: error.remoteName, message: (error.cause as Error).message, stack: error.remoteStack }, taskName);
  }
  return new TaskFailure("error", describeError(explain(error, taskName)), taskName);
}

function storeReturns(task: number, returns: string[], value: unknown, failure: TaskFailure | undefined, taskName: string): void {
  const ids = idsOf(returns);
  let values: unknown[];
  if (failure !== undefined) {
    values = ids.map(() => failure);
  } else if (ids.length === 1) {
    values = [value];
  } else if (Array.isArray(value) && value.length === ids.length) {
    values = value;
  } else {
    const error: RemoteErrorInfo = {
      name: "TypeError",
      message: `${taskName} has numReturns: ${ids.length} but returned ${Array.isArray(value) ? `${value.length} values` : "a non-array"}`,
      stack: "",
    };
    values = ids.map(() => new TaskFailure("error", error, taskName));
  }
  for (let i = 0; i < ids.length; i++) {
    try {
      putWithId(session, ids[i], values[i]);
    } catch (error) {
      putWithId(session, ids[i], new TaskFailure("error", describeError(error), taskName));
    }
  }
  creatorRefs.set(task, ids);
}

async function run(message: Extract<ToWorker, { t: "run" }>): Promise<void> {
  const startMs = performance.now();
  const fn = message.fn === undefined ? undefined : functions.get(message.fn);
  const taskName = actor !== undefined ? `${actor.className}.${message.method}` : (fn?.name ?? "task");
  let value: unknown;
  let failure: TaskFailure | undefined = actorFailure;
  if (failure === undefined) {
    try {
      const args = await resolveArguments(message.args);
      const callable = actor !== undefined ? methodOf(message.method!) : (await fn!.value) as Callable;
      value = callable(...args);
      if (value instanceof Promise) value = await value;
    } catch (error) {
      failure = failureOf(error, taskName);
    }
  }
  storeReturns(message.task, message.returns, value, failure, taskName);
  releaseCollectedArguments();
  const endMs = performance.now();
  lastRunMicros = Math.round((endMs - startMs) * 1000);
  events?.ran(message.task, taskName, startMs, endMs, failure !== undefined);
  reportDone(message.task, lastRunMicros, failure?.error.name === "ObjectLostError");
}

/**
 * The views of a task's arguments pin their objects until this process's collector finds them
 * unreachable, and a worker allocates so little that it rarely looks: a loop of tasks on fresh
 * arguments would fill the store with pins. Once a quarter of the store more is pinned for views
 * than after the last look, look now (a collection costs about a millisecond).
 */
function releaseCollectedArguments(): void {
  if (pinnedForViewsBytes() <= collectAbovePinnedBytes) return;
  releaseUnreachablePins(session);
  collectAbovePinnedBytes = pinnedForViewsBytes() + storeCapacityBytes / 4;
}

const storeCapacityBytes = session.store.stats().capacityBytes;
let collectAbovePinnedBytes = storeCapacityBytes / 4;

function methodOf(name: string): Callable {
  const method = actor!.instance[name];
  if (typeof method !== "function") throw new TypeError(`${actor!.className} has no method '${name}'`);
  return (method as Callable).bind(actor!.instance);
}

async function becomeActor(message: Extract<ToWorker, { t: "actor" }>): Promise<void> {
  const cls = functions.get(message.fn)!;
  actorConcurrency = message.maxConcurrency ?? 1;
  events?.setRole("actor");
  try {
    const args = await resolveArguments(message.args);
    const Class = (await cls.value) as new (...a: unknown[]) => Record<string, unknown>;
    actor = { instance: new Class(...args), className: cls.name };
  } catch (error) {
    actor = { instance: {}, className: cls.name };
    actorFailure = failureOf(error, `${cls.name} constructor`);
  }
}

async function handle(message: ToWorker): Promise<void> {
  switch (message.t) {
    case "define":
      functions.set(message.fn, { name: message.spec.name, value: load(message.spec) });
      functions.get(message.fn)!.value.catch(() => {}); // reported when a task uses it
      return;
    case "serializer": {
      const make = (source: string) => new Function(`"use strict"; return (${source});`)();
      registerSerializer(make(message.cls), { serialize: make(message.serialize), deserialize: make(message.deserialize) }, message.name);
      return;
    }
    case "run": {
      if (actor === undefined || actorConcurrency <= 1) return await run(message);
      // Started in order; up to `actorConcurrency` run at once, interleaving at their awaits.
      const call: Promise<void> = run(message).finally(() => runningCalls.delete(call));
      runningCalls.add(call);
      if (runningCalls.size >= actorConcurrency) await Promise.race(runningCalls);
      return;
    }
    case "actor":
      return await becomeActor(message);
    case "resolved":
      return forwarder.onResolved(message.ids);
    case "release":
      for (const task of message.tasks) {
        const ids = creatorRefs.get(task);
        if (ids === undefined) continue;
        creatorRefs.delete(task);
        for (const id of ids) session.store.dropRef(id);
      }
      return;
  }
}

/** Runs queued messages in order; results are sent in batches between awaits. */
async function drain(): Promise<void> {
  if (running) return;
  running = true;
  clearTimeout(idleCollection);
  let turnedMs = performance.now();
  try {
    while (true) {
      // What came while the last task ran, without waiting for the doorbell's turn of the loop.
      if (inbox.length === 0) read(channel.receive());
      if (inbox.length === 0) spinForNext();
      if (inbox.length === 0) break;
      await handle(inbox.shift()!);
      if (inbox.length === 0 || (finished.length > 0 && performance.now() - oldestFinishedMs > REPORT_DELAY_MAX_MS)) flush();
      if (performance.now() - turnedMs > LOOP_TURN_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turnedMs = performance.now();
      }
    }
  } finally {
    running = false;
    flush();
    idleCollection = setTimeout(() => session.library.shim.collectGarbage(), IDLE_COLLECT_MS);
    pump();
  }
}

/**
 * Quick tasks run back to back without a turn of the event loop; this often one is let
 * through, for what only a turn runs: timers, the release of views the collector found
 * unreachable (their objects stay pinned until then), the driver's pipe closing.
 */
const LOOP_TURN_EVERY_MS = 10;

/**
 * After quick tasks the next one usually follows at once: spin on the channel for it, awake
 * and listening, so the driver need not ring to wake an idle CPU.
 */
function spinForNext(): void {
  if (lastRunMicros >= QUICK_TASK_MICROS || spinBackoff.skip()) return;
  flush();
  parkIfTheLoopTurns();
  // Until a task comes: other messages (releases) are handled on the way.
  spinBackoff.record(channel.spinUntil(read, SPIN_MICROS, () => inbox.length > 0));
}

let parkCheckQueued = false;

/**
 * A listening worker is not rung: if a task it runs then waits on the event loop (for I/O,
 * or for a "resolved" message), park, so that messages ring again. Quick tasks run from one
 * spin to the next without a turn of the loop, and never get here.
 */
function parkIfTheLoopTurns(): void {
  if (parkCheckQueued) return;
  parkCheckQueued = true;
  setImmediate(() => {
    parkCheckQueued = false;
    pump();
  });
}

/** Handles every message waiting in the channel, then parks it (until the doorbell rings). */
function pump(): void {
  channel.pump(read);
}

let lastRunMicros = Infinity;
const spinBackoff = new SpinBackoff();

/**
 * An idle worker allocates nothing, so its garbage collector would never run and the views
 * and refs its finished tasks dropped would pin their objects forever: collect once idle.
 */
const IDLE_COLLECT_MS = 50;
let idleCollection: ReturnType<typeof setTimeout> | undefined;

const read = messageReader((message) => {
  const m = message as ToWorker;
  if (m.t === "leave") {
    leaving = true;
    return;
  }
  // Resolutions cannot wait behind the running task: it may be the one waiting for them.
  if (m.t === "resolved" || m.t === "release") {
    void handle(m);
    return;
  }
  inbox.push(m);
  void drain();
});
process.stdin.on("data", pump);
// The driver shut down (it said "leave" first) or is gone: so is every reason to run. A gone
// driver's pipes close while it exits, when one killed without cleanup still looks alive: wait
// for it to be dead, since the last worker to leave removes the store only if it finds every
// other process dead.
let leaving = false;
const driverPid = process.ppid;
process.stdin.on("end", () => {
  pump();
  if (!leaving) waitUntilDead([driverPid], DRIVER_EXIT_WAIT_MS);
  process.exit(0);
});
send({ t: "ready", pid: process.pid });
pump();
