/**
 * One worker process as the driver sees it: spawn, a batched message channel, and exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { RuntimeShim } from "../ffi/symbols.ts";
import { encodeMessage, type FromWorker, lineReader, type ToWorker } from "./protocol.ts";

/** How long a release waits for a message to ride along with. */
const RELEASE_DELAY_MS = 5;

const workerScript = fileURLToPath(new URL("./worker_main.ts", import.meta.url));

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
  #released: string[] = [];
  #releaseTimer: ReturnType<typeof setTimeout> | undefined;
  #keptAlive = true;
  readonly #shim: RuntimeShim;

  constructor(shim: RuntimeShim, storeName: string, environment: Record<string, string>, events: WorkerEvents, actorId?: number) {
    this.actorId = actorId;
    this.#shim = shim;
    const { command, args } = shim.scriptCommand(workerScript);
    this.child = spawn(command, args, {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, ...environment, OBJSTORE_STORE: storeName },
    });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", lineReader(
      (message) => events.onMessage(this, message as FromWorker),
      (line) => process.stdout.write(line + "\n"),
    ));
    this.child.stdin!.on("error", () => {}); // a dead worker's pipe; its exit is handled below
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      events.onExit(this, code, signal);
    });
  }

  /** Queues a message; every message queued in one turn of the event loop goes in one write. */
  send(message: ToWorker): void {
    this.sendEncoded(encodeMessage(message));
  }

  /** As `send`, for a message already encoded (protocol.ts). */
  sendEncoded(line: string): void {
    if (this.exited) return;
    this.#outbox += line;
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Lets the worker drop its creator references to `ids`. Not urgent: it rides along with the
   * next message (the next task, usually), or goes on its own after RELEASE_DELAY_MS.
   */
  release(ids: readonly string[]): void {
    if (this.exited) return;
    for (const id of ids) this.#released.push(id);
    if (this.#releaseTimer !== undefined) return;
    this.#releaseTimer = setTimeout(() => this.flush(), RELEASE_DELAY_MS);
    this.#shim.unrefTimer(this.#releaseTimer);
  }

  /** Writes what is queued now rather than at the end of this turn. */
  flush(): void {
    this.#flushQueued = false;
    if (this.#released.length > 0) {
      this.#outbox = encodeMessage({ t: "release", ids: this.#released }) + this.#outbox;
      this.#released = [];
      clearTimeout(this.#releaseTimer);
      this.#releaseTimer = undefined;
    }
    if (!this.exited && this.#outbox !== "") this.child.stdin!.write(this.#outbox);
    this.#outbox = "";
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
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
