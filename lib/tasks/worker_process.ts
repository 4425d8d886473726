/**
 * One worker process as the driver sees it: spawn, a batched message channel, and exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { RuntimeShim } from "../ffi/symbols.ts";
import { encodeMessage, type FromWorker, lineReader, type ToWorker } from "./protocol.ts";

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

  constructor(shim: RuntimeShim, storeName: string, events: WorkerEvents, actorId?: number) {
    this.actorId = actorId;
    const { command, args } = shim.scriptCommand(workerScript);
    this.child = spawn(command, args, {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, OBJSTORE_STORE: storeName },
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
    if (this.exited) return;
    this.#outbox += encodeMessage(message);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      if (!this.exited && this.#outbox !== "") this.child.stdin!.write(this.#outbox);
      this.#outbox = "";
    });
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }

  /** Lets the driver exit while this worker is idle. */
  unref(): void {
    this.child.unref();
    (this.child.stdout as unknown as { unref?(): void }).unref?.();
    (this.child.stdin as unknown as { unref?(): void }).unref?.();
  }

  ref(): void {
    this.child.ref();
    (this.child.stdout as unknown as { ref?(): void }).ref?.();
    (this.child.stdin as unknown as { ref?(): void }).ref?.();
  }
}
