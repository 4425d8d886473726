/**
 * One worker process as the driver sees it: spawn, its message channel (messages of one turn
 * of the event loop go in one send), and exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Library } from "../ffi/load.ts";
import { processRuns } from "../processes.ts";
import { Channel } from "./channel.ts";
import { DOORBELL, encodeMessage, type FromWorker, messageReader, type ToWorker } from "./protocol.ts";

/** Queued messages this long are sent without waiting for the end of the turn (~60 runs). */
const EARLY_FLUSH_CHARS = 8 * 1024;
/** How long a release waits for a message to ride along with. */
const RELEASE_DELAY_MS = 5;

/** The worker's entry point beside this module: `.ts` in a checkout and on JSR, `.js` as
 * compiled for npm (a compiler rewrites import specifiers, not URLs). */
const workerEntry = new URL(`./worker_main${import.meta.url.slice(import.meta.url.lastIndexOf("."))}`, import.meta.url);
/** A path, or on JSR (Deno only) the module's https URL. */
const workerScript = workerEntry.protocol === "file:" ? fileURLToPath(workerEntry) : workerEntry.href;

export interface WorkerEvents {
  onMessage(worker: WorkerProcess, message: FromWorker): void;
  onExit(worker: WorkerProcess, code: number | null, signal: string | null): void;
}

export class WorkerProcess {
  readonly child: ChildProcess;
  /** Function ids this worker has been sent. */
  readonly defined = new Set<number>();
  /** Task ids sent to this worker and not yet done, in order. */
  readonly inFlight = new Set<number>();
  /** How many of those are not known to be quick. */
  slowInFlight = 0;
  /** Set when this worker is an actor's. */
  readonly actorId: number | undefined;
  ready = false;
  exited = false;
  /** Tasks this worker submitted that have not finished. */
  outstanding = 0;
  /** Results of those tasks the driver holds until this worker has its own references. */
  readonly heldForIt = new Map<string, Uint8Array>();
  #outbox = "";
  #flushQueued = false;
  /** Results the driver holds now, whose creator references the worker may drop. */
  #released: number[] = [];
  #releaseTimer: ReturnType<typeof setTimeout> | undefined;
  #keptAlive = true;
  readonly #library: Library;
  readonly #channel: Channel;
  readonly #read: (text: string) => void;

  constructor(library: Library, storeName: string, environment: Record<string, string>, events: WorkerEvents, actorId?: number) {
    this.actorId = actorId;
    this.#library = library;
    this.#channel = Channel.create(library, storeName, () => this.child.stdin!.write(DOORBELL));
    this.#read = messageReader((message) => events.onMessage(this, message as FromWorker));
    const { command, args } = library.shim.scriptCommand(workerScript);
    this.child = spawn(command, args, {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, ...environment, OBJSTORE_STORE: storeName, OBJSTORE_CHANNEL: this.#channel.name },
    });
    this.child.stdout!.setEncoding("utf8");
    // Any read looks at the channel: a doorbell rung into a full pipe is dropped (zig/src/Channel.zig).
    this.child.stdout!.on("data", (chunk: string) => {
      const printed = chunk.includes(DOORBELL) ? chunk.replaceAll(DOORBELL, "") : chunk;
      if (printed !== "") process.stdout.write(printed);
      this.pump();
    });
    this.child.stdin!.on("error", () => {}); // a dead worker's pipe; its exit is handled below
    this.child.on("exit", (code, signal) => {
      this.exited = true; // first: nothing handled below may send it more work
      this.#channel.receiveAll(this.#read); // what it reported before it died (tasks it finished)
      this.#channel.close();
      events.onExit(this, code, signal);
    });
  }

  /** Handles every message waiting in the channel, then parks it (the doorbell rang). */
  pump(): void {
    if (!this.exited) this.#channel.pump(this.#read);
  }

  /**
   * Waits for `task` to settle by spinning on the channel for up to `spinMicros` (its result
   * is due within microseconds: waking this process for it would cost more); true if it did.
   */
  spinUntilSettled(task: { readonly settled: boolean }, spinMicros: number): boolean {
    if (this.exited) return false;
    this.flush();
    try {
      this.#channel.spinUntil(this.#read, spinMicros, () => task.settled || this.exited);
    } finally {
      this.pump();
    }
    return task.settled;
  }

  /** Queues a message; every message queued in one turn of the event loop goes in one write. */
  send(message: ToWorker): void {
    this.sendEncoded(encodeMessage(message));
  }

  /** As `send`, for a message already encoded (protocol.ts). */
  sendEncoded(line: string): void {
    if (this.exited) return;
    this.#outbox += line;
    // A long batch goes in pieces, so the worker starts on it while the rest is submitted.
    if (this.#outbox.length >= EARLY_FLUSH_CHARS) return this.flush();
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Lets the worker drop its creator references to `task`'s results. Not urgent: it rides along with the
   * next message (the next task, usually), or goes on its own after RELEASE_DELAY_MS.
   */
  release(task: number): void {
    if (this.exited) return;
    this.#released.push(task);
    if (this.#releaseTimer !== undefined) return;
    this.#releaseTimer = setTimeout(() => this.flush(true), RELEASE_DELAY_MS);
    this.#library.shim.unrefTimer(this.#releaseTimer);
  }

  /**
   * Sends what is queued now rather than at the end of this turn. Releases go only with other
   * messages, or on their own when `releasesToo` (their timer).
   */
  flush(releasesToo = false): void {
    this.#flushQueued = false;
    if (this.#outbox === "" && !releasesToo) return;
    if (this.#released.length > 0) {
      this.#outbox = encodeMessage({ t: "release", tasks: this.#released }) + this.#outbox;
      this.#released = [];
      clearTimeout(this.#releaseTimer);
      this.#releaseTimer = undefined;
    }
    if (!this.exited) this.#channel.send(this.#outbox);
    this.#outbox = "";
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }

  /**
   * The driver is exiting: ends the worker and removes its channel (it may not have opened it
   * yet). SIGTERM, not SIGKILL: the library in the worker then leaves the store for it (a
   * reaper, zig/src/exits.zig), so whichever of them goes last removes it, however long the
   * worker takes to die. Nothing is handled after this; the exit event will not come.
   */
  abandon(): void {
    if (this.exited) return;
    this.exited = true;
    this.child.kill("SIGTERM");
    this.#channel.close();
  }

  /** Whether this worker keeps the driver's process alive: only while it has work. */
  keepAlive(alive: boolean): void {
    if (alive === this.#keptAlive || this.exited) return;
    this.#keptAlive = alive;
    if (alive) this.#ref();
    else this.#unref();
  }

  #unref(): void {
    this.child.unref();
    (this.child.stdout as unknown as { unref?(): void }).unref?.();
    (this.child.stdin as unknown as { unref?(): void }).unref?.();
  }

  #ref(): void {
    this.child.ref();
    (this.child.stdout as unknown as { ref?(): void }).ref?.();
    (this.child.stdin as unknown as { ref?(): void }).ref?.();
  }
}

/**
 * Waits, without the event loop, until each of `pids` has ended (a killed child stays a zombie
 * until its parent's loop reaps it), for at most `timeoutMs`.
 */
export function waitUntilDead(pids: number[], timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let waiting = pids;
  while (waiting.length > 0 && Date.now() < deadline) {
    waiting = waiting.filter(processRuns);
    if (waiting.length > 0) Atomics.wait(sleeper, 0, 0, 1);
  }
}

