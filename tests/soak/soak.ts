/**
 * The soak test: Node, Deno and Bun clients on one named store, one of them SIGKILLed about
 * every second, for 30 s (or `STRESS_SECONDS`). This process is the orchestrator and the
 * observer: it creates the store (small, so it spills), starts the clients (client.ts), kills
 * and replaces them, passes refs between them, and at the end measures how fast the store
 * empties. It holds no refs of its own.
 *
 *   node --expose-gc tests/soak/soak.ts            # 30 s; also runs on deno (-A) and bun
 *   STRESS_SECONDS=600 node --expose-gc tests/soak/soak.ts
 *
 * THE INVARIANTS (any violation is printed with its details, and the exit code is 1):
 *
 *   1. No corrupt read. Every value is put with a checksum (payloads.ts) that travels with its
 *      ref; every read of it — by the client that put it, by a client that borrowed it, through
 *      a ref inside another object, by a task or by the actor in a worker process — is checked.
 *      Task results and actor state are checked against what the caller computed on its own.
 *   2. No lost object that a live process references. A get of a ref a live client (or its
 *      actor) holds fails only if the program freed it. In particular a borrowed ref — taken
 *      with `ObjectRef.fromHex` from another client's `ref.hex()` — keeps its object alive
 *      after the client that put it is killed.
 *   3. The store empties. Within 1 s of the last client's exit the store holds 0 objects and
 *      0 bytes, in memory and in spill (memoryStats, and no spill file left): what killed
 *      clients held was reclaimed by the survivors' janitors (ARCHITECTURE.md "Crash
 *      recovery"), the last of them by this observer's. And once every client and worker
 *      process is gone, none is still counted as attached (or the last process to leave would
 *      not remove the store).
 *   4. Clients end the way the program says. A client told to end by `shutdown()`,
 *      `process.exit(0)`, running dry, an uncaught exception or SIGTERM exits with the code (or
 *      signal) it would have without this library: 0, 0, 0, 1, SIGTERM — never another signal.
 *      Only SIGKILLed clients die of SIGKILL. A client that did not start or end is a violation.
 *   5. No other error: no get hangs (60 s), no task fails but for the reasons above.
 *
 * Not a violation, but counted: `ObjectStoreFullError` on a put or a restore (the store is
 * small; the views clients keep while checking pin memory until their collector runs).
 *
 * Knobs (environment): STRESS_SECONDS (30), SOAK_CLIENTS (4 at a time), SOAK_KILL_EVERY_MS
 * (1000), SOAK_EXIT_WITHOUT_SHUTDOWN (0.25: the fraction of client ends that are not
 * `shutdown()`, split between exit, return, throw and SIGTERM), SOAK_DROP_WITHOUT_FREE (0.2:
 * refs left to the garbage collector instead of freed), SOAK_STORE_MIB (32), SOAK_SPILL_THRESHOLD
 * (0.25: the store spills in the background above a quarter full, so every run spills, however
 * slow the machine), SOAK_MAX_MIB (4: the largest payload), SOAK_RUNTIMES (node,deno,bun), SOAK_SEED (random; printed).
 * SOAK_INJECT=corrupt|lose checks the checks: each client flips a bit of one object in shared
 * memory, or frees one ref it keeps using; the run must then fail with corrupt reads or lost
 * objects.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as os from "../../mod.ts";
import { runCli } from "../../lib/cli.ts";
import { session } from "../../lib/session.ts";
import { command, type Runtime } from "../helpers.ts";
import { type ClientConfig, type Counters, END_MODES, type EndMode, type FromClient, type ToClient, type ViolationKind, zeroCounters } from "./protocol.ts";
import { Random } from "./payloads.ts";

const MiB = 1024 * 1024;
const here = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// Settings.

function numberFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number ≥ 0, got ${JSON.stringify(text)}`);
  return value;
}

const settings = {
  seconds: numberFromEnv("STRESS_SECONDS", 30),
  clients: Math.max(1, Math.round(numberFromEnv("SOAK_CLIENTS", 4))),
  killEveryMs: numberFromEnv("SOAK_KILL_EVERY_MS", 1000),
  exitWithoutShutdown: Math.min(1, numberFromEnv("SOAK_EXIT_WITHOUT_SHUTDOWN", 0.25)),
  dropWithoutFree: Math.min(1, numberFromEnv("SOAK_DROP_WITHOUT_FREE", 0.2)),
  storeBytes: numberFromEnv("SOAK_STORE_MIB", 32) * MiB,
  spillThreshold: numberFromEnv("SOAK_SPILL_THRESHOLD", 0.25),
  maxBytes: numberFromEnv("SOAK_MAX_MIB", 4) * MiB,
  runtimes: (process.env.SOAK_RUNTIMES ?? "node,deno,bun").split(",").map((r) => r.trim()) as Runtime[],
  seed: numberFromEnv("SOAK_SEED", Math.floor(Math.random() * 2 ** 32)) >>> 0,
  inject: process.env.SOAK_INJECT ?? "",
};
if (!["", "corrupt", "lose"].includes(settings.inject)) throw new Error(`SOAK_INJECT must be corrupt or lose, got ${JSON.stringify(settings.inject)}`);
for (const runtime of settings.runtimes) {
  if (!["node", "deno", "bun"].includes(runtime)) throw new Error(`SOAK_RUNTIMES: unknown runtime ${JSON.stringify(runtime)}`);
}

/** The store must be back to empty this soon after the last client's exit (invariant 3). */
const EMPTY_WITHIN_MS = 1000;
/** A client must print "ready" this soon after it starts, and exit this soon after it is told to end. */
const START_TIMEOUT_MS = 60_000;
const END_TIMEOUT_MS = 30_000;
/** A client ends by itself (as told) after a lifetime in this range, unless killed first. */
const LIFETIME_MS = [2_000, 6_000] as const;

const random = new Random(settings.seed);

// ---------------------------------------------------------------------------------------------
// What happened: violations and figures.

interface Violation {
  kind: ViolationKind | "crash" | "not-empty";
  atMs: number;
  who: string;
  detail: string;
  id?: string;
}

const violations: Violation[] = [];
const startedAt = Date.now();
const elapsed = () => Date.now() - startedAt;

function addViolation(v: Omit<Violation, "atMs">): void {
  const full = { ...v, atMs: elapsed() };
  violations.push(full);
  console.log(`VIOLATION [${full.kind}] at ${(full.atMs / 1000).toFixed(1)} s, ${full.who}: ${full.detail}`);
}

interface RuntimeFigures {
  started: number;
  killed: number;
  /** Killed together with its worker processes (the whole process group). */
  killedWithWorkers: number;
  ended: Record<EndMode, number>;
  /** Exit codes and signals seen, e.g. "SIGKILL": 12, "0": 5. */
  exits: Record<string, number>;
}

const figures = new Map<Runtime, RuntimeFigures>();
for (const runtime of settings.runtimes) {
  figures.set(runtime, {
    started: 0, killed: 0, killedWithWorkers: 0,
    ended: Object.fromEntries(END_MODES.map((m) => [m, 0])) as Record<EndMode, number>,
    exits: {},
  });
}
let refsPassed = 0;
const store = { peakObjects: 0, peakUsedBytes: 0, peakPinnedBytes: 0, peakSpilledBytes: 0, peakSpilledObjects: 0, spilledBytesRises: 0, restoredBytes: 0, spillFilesSeen: new Set<string>() };

// ---------------------------------------------------------------------------------------------
// Clients.

class Client {
  readonly id: number;
  readonly runtime: Runtime;
  readonly child: ChildProcess;
  readonly startedAtMs = Date.now();
  ready = false;
  /** From spawn to its "ready" (after init). */
  readyAfterMs: number | undefined;
  /** How it was told to end, or "kill" once killed; undefined while it runs free. */
  fate: EndMode | "kill" | undefined;
  endAtMs: number;
  counters = zeroCounters();
  exited = false;
  exitedAtMs = 0;
  /** Its stderr closed: it and every worker process it started (they share its stderr) are gone. */
  familyGone: Promise<void>;
  familyGoneAtMs = 0;
  #stderrTail = "";
  readonly #onExit: (client: Client) => void;

  constructor(id: number, runtime: Runtime, storeName: string, onExit: (client: Client) => void) {
    this.id = id;
    this.runtime = runtime;
    this.#onExit = onExit;
    this.endAtMs = this.startedAtMs + random.int(LIFETIME_MS[0], LIFETIME_MS[1]);
    const config: ClientConfig = {
      seed: random.u32(),
      maxBytes: settings.maxBytes,
      maxTaskBytes: Math.min(settings.maxBytes, MiB),
      ownedBytes: settings.storeBytes / 2,
      ownedCount: 48,
      dropFraction: settings.dropWithoutFree,
      lanes: 2,
      storeBytes: settings.storeBytes,
      inject: settings.inject,
    };
    const [cmd, args] = command(runtime, path.join(here, "client.ts"));
    // A process group of its own (detached): Ctrl-C reaches only this process, which then kills
    // each client together with its workers, and a group kill is one of the ways clients die.
    this.child = spawn(cmd, [...args, String(id), storeName, JSON.stringify(config)], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      env: { ...process.env, OBJSTORE_QUIET: "1" },
    });
    this.child.stdin!.on("error", () => {}); // writes to a client that just died
    let buffered = "";
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      let at;
      while ((at = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        if (line === "") continue;
        let message: FromClient;
        try {
          message = JSON.parse(line) as FromClient;
        } catch {
          this.#stderrTail = (this.#stderrTail + `[stdout] ${line}\n`).slice(-4000);
          continue;
        }
        this.#handle(message);
      }
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => (this.#stderrTail = (this.#stderrTail + chunk).slice(-4000)));
    this.familyGone = new Promise((resolve) => {
      this.child.stderr!.on("close", () => {
        this.familyGoneAtMs = Date.now();
        resolve();
      });
    });
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      this.exitedAtMs = Date.now();
      this.#judgeExit(code, signal);
      this.#onExit(this);
    });
    this.child.on("error", (error) => {
      addViolation({ kind: "error", who: this.name, detail: `cannot start: ${error.message}` });
    });
  }

  get name(): string {
    return `client ${this.id} (${this.runtime} pid ${this.child.pid})`;
  }

  get stderrTail(): string {
    return this.#stderrTail.trim().split("\n").slice(-12).map((l) => `      | ${l}`).join("\n");
  }

  send(message: ToClient): void {
    if (!this.exited) this.child.stdin!.write(JSON.stringify(message) + "\n");
  }

  #handle(message: FromClient): void {
    switch (message.t) {
      case "ready":
        this.ready = true;
        this.readyAfterMs = Date.now() - this.startedAtMs;
        return;
      case "ids":
        clientsByIdPrefix.set(message.prefix, this);
        return;
      case "counters":
      case "ending":
        this.counters = message.counters;
        return;
      case "offer":
        return passOn(this, message);
      case "violation": {
        const object = message.id === undefined ? "" : ` [expected ${message.expected ?? "?"}, actual ${message.actual ?? "?"}]`;
        const origin = message.id === undefined ? "" : `; the object was ${whoPut(message.id)}`;
        addViolation({ kind: message.kind, who: this.name, detail: message.detail + object + origin, id: message.id });
        return;
      }
    }
  }

  /** SIGKILL: the client alone (its workers notice and exit), or its whole process group. */
  kill(withWorkers: boolean): void {
    if (this.exited || this.fate !== undefined) return;
    this.fate = "kill";
    const f = figures.get(this.runtime)!;
    f.killed += 1;
    if (withWorkers) f.killedWithWorkers += 1;
    try {
      process.kill(withWorkers ? -this.child.pid! : this.child.pid!, "SIGKILL");
    } catch { /* exited meanwhile */ }
  }

  end(how: EndMode): void {
    if (this.exited || this.fate !== undefined) return;
    this.fate = how;
    figures.get(this.runtime)!.ended[how] += 1;
    if (how === "sigterm") process.kill(this.child.pid!, "SIGTERM");
    else this.send({ t: "end", how });
  }

  /** Invariant 4: the exit the program asked for, and only SIGKILL for a killed client. */
  #judgeExit(code: number | null, signal: string | null): void {
    const f = figures.get(this.runtime)!;
    const outcome = signal ?? String(code);
    f.exits[outcome] = (f.exits[outcome] ?? 0) + 1;
    const expected = this.fate === "kill" ? "SIGKILL" : this.fate === undefined ? "to keep running" : expectedExit(this.fate);
    if (this.fate === "kill" && (signal === "SIGKILL" || signal === null)) return; // it may have ended just before
    if (outcome === expected) return;
    addViolation({
      kind: "crash",
      who: this.name,
      detail: `${this.fate === undefined ? "ended unasked" : `told to end by "${this.fate}"`}, ended with ${signal ? `signal ${signal}` : `code ${code}`} ` +
        `(expected ${expected}) after ${((this.exitedAtMs - this.startedAtMs) / 1000).toFixed(1)} s; its stderr:\n${this.stderrTail}`,
    });
  }
}

function expectedExit(how: EndMode): string {
  return { shutdown: "0", exit: "0", return: "0", throw: "1", sigterm: "SIGTERM" }[how];
}

function addCounters(a: Counters, b: Counters): Counters {
  const sum = { ...a };
  for (const key of Object.keys(sum) as (keyof Counters)[]) sum[key] += b[key];
  return sum;
}

const clients = new Map<number, Client>();
/** Which client minted an object id (for violations' details). */
const clientsByIdPrefix = new Map<string, Client>();

/** The client that put object `hex` (or whose task returned it), how and when it ended. */
function whoPut(hex: string): string {
  const client = clientsByIdPrefix.get(hex.slice(0, 40));
  if (client === undefined) return "put by a process that did not say (a worker, or a client killed before its first report)";
  const at = (ms: number) => `${((ms - startedAt) / 1000).toFixed(1)} s`;
  const end = !client.exited ? "still running" : client.fate === "kill" ? `SIGKILLed at ${at(client.exitedAtMs)}` : `ended by ${client.fate} at ${at(client.exitedAtMs)}`;
  return `put by ${client.name}, started at ${at(client.startedAtMs)}, ${end}`;
}
let nextClientId = 1;

/** Hands an offered ref to one or two other running clients. */
function passOn(from: Client, offer: Extract<FromClient, { t: "offer" }>): void {
  const others = [...clients.values()].filter((c) => c !== from && c.ready && c.fate === undefined);
  for (let n = random.chance(0.3) ? 2 : 1; n > 0 && others.length > 0; n--) {
    const to = others.splice(random.int(0, others.length - 1), 1)[0];
    to.send({ t: "take", hex: offer.hex, sum: offer.sum, binaryBytes: offer.binaryBytes, from: from.id, what: offer.what });
    refsPassed += 1;
  }
}

// ---------------------------------------------------------------------------------------------
// The run.

const storeName = `soak-${process.pid}-${random.u32().toString(36)}`;
const spillDirectory = mkdtempSync(path.join(tmpdir(), "objstore-soak-spill-"));
const abort = new AbortController();
let chaos = true;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    abort.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

function checkInterrupted(): void {
  if (abort.signal.aborted) throw new Error("interrupted");
}

function startClient(): Client {
  const runtime = random.pick(settings.runtimes);
  figures.get(runtime)!.started += 1;
  const client = new Client(nextClientId++, runtime, storeName, (exited) => {
    for (const other of clients.values()) if (other !== exited) other.send({ t: "died", client: exited.id });
    if (chaos && !abort.signal.aborted) startClient();
  });
  clients.set(client.id, client);
  return client;
}

/** A way to end, by the configured fraction: `shutdown()` or, evenly, one of the others. */
function pickEndMode(): EndMode {
  if (!random.chance(settings.exitWithoutShutdown)) return "shutdown";
  return random.pick(END_MODES.filter((m) => m !== "shutdown"));
}

function running(): Client[] {
  return [...clients.values()].filter((c) => !c.exited && c.fate === undefined);
}

function sampleStore(): void {
  const s = os.memoryStats();
  store.peakObjects = Math.max(store.peakObjects, s.objectCount);
  store.peakUsedBytes = Math.max(store.peakUsedBytes, s.usedBytes);
  store.peakPinnedBytes = Math.max(store.peakPinnedBytes, s.pinnedBytes);
  store.spilledBytesRises += Math.max(0, s.spilledBytes - lastSpilledBytes);
  lastSpilledBytes = s.spilledBytes;
  store.peakSpilledBytes = Math.max(store.peakSpilledBytes, s.spilledBytes);
  store.peakSpilledObjects = Math.max(store.peakSpilledObjects, s.spilledObjects);
  store.restoredBytes = s.restoredBytes;
  for (const file of spillFiles()) store.spillFilesSeen.add(file);
}
let lastSpilledBytes = 0;

function spillFiles(): string[] {
  try {
    return readdirSync(spillDirectory).filter((f) => f.endsWith(".spill"));
  } catch {
    return [];
  }
}

/** Kills a client about every `killEveryMs`, ends those past their lifetime, replaces both. */
async function chaosPhase(): Promise<void> {
  for (let i = 0; i < settings.clients; i++) startClient();
  const endAt = Date.now() + settings.seconds * 1000;
  let nextKillAt = Date.now() + settings.killEveryMs * (0.5 + random.next());
  let nextProgressAt = Date.now() + 5000;
  while (Date.now() < endAt) {
    checkInterrupted();
    await sleep(50);
    const now = Date.now();
    sampleStore();
    if (settings.killEveryMs > 0 && now >= nextKillAt) {
      const victims = running();
      if (victims.length > 0) random.pick(victims).kill(random.chance(0.25));
      nextKillAt = now + settings.killEveryMs * (0.5 + random.next());
    }
    for (const client of running()) {
      if (now >= client.endAtMs && client.ready) client.end(pickEndMode());
      else if (!client.ready && now - client.startedAtMs > START_TIMEOUT_MS) {
        addViolation({ kind: "error", who: client.name, detail: `did not start within ${START_TIMEOUT_MS / 1000} s; stderr:\n${client.stderrTail}` });
        client.kill(true);
      }
    }
    for (const client of clients.values()) {
      if (!client.exited && client.fate !== undefined && client.fate !== "kill" && now - client.endAtMs > END_TIMEOUT_MS) {
        addViolation({ kind: "crash", who: client.name, detail: `told to end by "${client.fate}", still running after ${END_TIMEOUT_MS / 1000} s; stderr:\n${client.stderrTail}` });
        client.fate = undefined;
        client.kill(true);
      }
    }
    if (now >= nextProgressAt) {
      printProgress();
      nextProgressAt = now + 5000;
    }
  }
}

function printProgress(): void {
  const total = [...clients.values()].reduce((sum, c) => addCounters(sum, c.counters), zeroCounters());
  const s = os.memoryStats();
  console.log(
    `  ${(elapsed() / 1000).toFixed(0).padStart(4)} s: ${running().length} clients running, ${clients.size} started, ` +
      `${total.puts} puts, ${total.gets} gets, ${total.tasks} tasks, ${total.actorCalls} actor calls; ` +
      `store ${s.objectCount} objects, ${mib(s.usedBytes)} used, ${mib(s.pinnedBytes)} pinned, ${mib(s.spilledBytes)} spilled; ` +
      `${violations.length} violations`,
  );
}

/** Ends every client (each as the fraction says), waits for them all; returns the last exit time. */
async function endPhase(): Promise<number> {
  chaos = false;
  for (const client of running()) {
    if (client.ready) client.end(pickEndMode());
    else client.kill(false); // still starting: nothing to end gracefully
  }
  const deadline = Date.now() + END_TIMEOUT_MS;
  while ([...clients.values()].some((c) => !c.exited) && Date.now() < deadline) {
    checkInterrupted();
    sampleStore();
    await sleep(5);
  }
  for (const client of clients.values()) {
    if (client.exited) continue;
    addViolation({ kind: "crash", who: client.name, detail: `told to end by "${client.fate}", still running after ${END_TIMEOUT_MS / 1000} s; stderr:\n${client.stderrTail}` });
    client.fate = undefined;
    client.kill(true);
  }
  while ([...clients.values()].some((c) => !c.exited)) {
    checkInterrupted();
    await sleep(5);
  }
  return Math.max(...[...clients.values()].map((c) => c.exitedAtMs));
}

interface Emptying {
  /** Milliseconds from the last client's exit to an empty store; undefined if it never emptied. */
  emptyAfterMs: number | undefined;
  /** What the store held, each time that changed after the last client's exit. */
  timeline: string[];
  /** What was left when the observer gave up. */
  left?: string;
}

/** Invariant 3: polls the store until it holds nothing, for up to 10 s after the last exit. */
async function measureEmptying(lastExitAtMs: number): Promise<Emptying> {
  const giveUpAt = lastExitAtMs + 10_000;
  const timeline: string[] = [];
  let last = "";
  while (true) {
    checkInterrupted();
    const s = session().store.stats();
    const files = spillFiles();
    const now = `${s.objectCount} objects, ${s.usedBytes} B in memory (${s.pinnedBytes} B pinned), ` +
      `${s.spilledObjects} objects / ${s.spilledBytes} B spilled, ${files.length} spill files, ${s.attachedProcesses} processes attached`;
    if (now !== last) timeline.push(`+${Date.now() - lastExitAtMs} ms: ${now}`);
    last = now;
    const empty = s.objectCount === 0 && s.usedBytes === 0 && s.pinnedBytes === 0 && s.spilledBytes === 0 && s.spilledObjects === 0 && files.length === 0;
    if (empty) return { emptyAfterMs: Date.now() - lastExitAtMs, timeline };
    if (Date.now() >= giveUpAt) return { emptyAfterMs: undefined, timeline, left: now };
    await sleep(5);
  }
}

/**
 * Invariant 3, its second half: once every client process and worker is gone (and a janitor
 * round has passed), only this observer is attached, so its shutdown() will remove the store.
 */
async function checkDetached(): Promise<void> {
  await sleep(600);
  const store = session().store;
  const attached = store.stats().attachedProcesses;
  const others = store.attachedPids().filter((pid) => pid !== process.pid);
  if (attached <= 1 && others.length === 0) return;
  const described = others.map((pid) => `pid ${pid} (${describeProcess(pid)})`);
  const unnamed = attached - 1 - new Set(others).size;
  addViolation({
    kind: "not-empty",
    who: "observer",
    detail: `every client and worker process is gone, yet the store counts ${attached - 1} other attached process(es): ` +
      `${described.join(", ") || "none with a pid"}${unnamed > 0 ? `, and ${unnamed} entr${unnamed === 1 ? "y" : "ies"} with no pid (a process killed while registering)` : ""}; ` +
      "the last process to leave would not remove the store",
  });
}

/** A process as /proc shows it: its state (Z: a zombie, dead but not yet reaped), parent and command. */
function describeProcess(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, parent] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
    return `state ${state}, parent ${parent}${cmdline === "" ? "" : `: ${cmdline.slice(0, 100)}`}`;
  } catch {
    return "no such process";
  }
}

/** The objects still in the store, as `objstore memory` lists them (for a violation's details). */
async function listObjects(): Promise<string[]> {
  const lines: string[] = [];
  await runCli(["memory", "--store", storeName], (line) => lines.push(line)).catch((error) => lines.push(String(error)));
  return lines.map((line) => (/^[0-9a-f]{56} /.test(line) ? `${line}   (${whoPut(line.slice(0, 56))})` : line));
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every client's process group, the store, its channels and the spill folder — also
// after a failure or Ctrl-C.

let cleanedUp = false;

async function cleanUp(): Promise<string[]> {
  if (cleanedUp) return [];
  cleanedUp = true;
  chaos = false;
  const notes: string[] = [];
  for (const client of clients.values()) {
    if (client.familyGoneAtMs !== 0) continue;
    if (!client.exited) client.fate = "kill"; // killed by the cleanup: not a crash
    try {
      process.kill(-client.child.pid!, "SIGKILL");
    } catch { /* the group is gone */ }
  }
  await Promise.race([Promise.all([...clients.values()].map((c) => c.familyGone)), new Promise((r) => setTimeout(r, 10_000))]);
  if (os.isInitialized()) await os.shutdown();
  const segment = `/dev/shm/objstore-${storeName}`;
  if (existsSync(segment)) {
    // Every process of the store is dead by now; one not yet reaped still counts as attached.
    notes.push(`the store segment was still there after the observer, the last process, left`);
    let refused = "";
    for (let attempt = 0; attempt < 25 && existsSync(segment); attempt++) {
      await runCli(["destroy", storeName], () => {}).catch((error) => (refused = String(error)));
      if (existsSync(segment)) await new Promise((r) => setTimeout(r, 200));
    }
    if (existsSync(segment)) {
      notes.push(`objstore destroy refused for 5 s (${refused}); removed ${segment} by hand`);
      unlinkSync(segment);
    }
  }
  const channels = readdirSync("/dev/shm").filter((f) => f.startsWith(`objstore-ch-${storeName}-`));
  if (channels.length > 0) notes.push(`${channels.length} worker channel file(s) left in /dev/shm by killed clients; removed`);
  for (const file of channels) unlinkSync(path.join("/dev/shm", file));
  rmSync(spillDirectory, { recursive: true, force: true });
  return notes;
}

function onSignal(signal: string): void {
  console.log(`\nsoak: ${signal}: stopping, killing the clients and removing the store`);
  abort.abort();
  // main() cleans up and reports; should it be stuck, clean up from here.
  setTimeout(() => void cleanUp().finally(() => process.exit(130)), 20_000).unref?.();
}

// ---------------------------------------------------------------------------------------------
// The report.

function lastClient(): string {
  const last = [...clients.values()].reduce((a, b) => (b.exitedAtMs > a.exitedAtMs ? b : a));
  return `${last.name}, ${last.fate === "kill" ? "SIGKILLed" : `ended by ${last.fate}`}`;
}

const runtimeOf = new Map([...figures].map(([r, f]) => [f, r]));

function medianReadyMs(runtime: Runtime): string {
  const times = [...clients.values()].filter((c) => c.runtime === runtime && c.readyAfterMs !== undefined).map((c) => c.readyAfterMs!).sort((a, b) => a - b);
  return times.length === 0 ? "-" : String(times[times.length >> 1]);
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function table(rows: [string, (f: RuntimeFigures) => number | string][]): void {
  const runtimes = settings.runtimes;
  console.log(`  ${"".padEnd(34)}${runtimes.map((r) => r.padStart(10)).join("")}${"total".padStart(12)}`);
  for (const [label, value] of rows) {
    const cells = runtimes.map((r) => value(figures.get(r)!));
    const total = cells.every((c) => typeof c === "number") ? String((cells as number[]).reduce((a, b) => a + b, 0)) : "";
    console.log(`  ${label.padEnd(34)}${cells.map((c) => String(c).padStart(10)).join("")}${total.padStart(12)}`);
  }
}

function printReport(emptying: Emptying | undefined, lastWorkerAfterMs: number | undefined, notes: string[]): void {
  const countersOf = new Map(settings.runtimes.map((r) => [r, zeroCounters()]));
  for (const client of clients.values()) countersOf.set(client.runtime, addCounters(countersOf.get(client.runtime)!, client.counters));
  const c = (pick: (k: Counters) => number) => (f: RuntimeFigures) => pick(countersOf.get(runtimeOf.get(f)!)!);
  console.log(`\nsoak: ${settings.seconds} s on store ${storeName} (${mib(settings.storeBytes)}, spilling above ${settings.spillThreshold * 100}%, ` +
    `payloads up to ${mib(settings.maxBytes)}), seed ${settings.seed}`);
  console.log(`  ${settings.clients} clients at a time, a SIGKILL every ~${settings.killEveryMs} ms, ` +
    `${(settings.exitWithoutShutdown * 100).toFixed(0)}% of ends without shutdown(), ${(settings.dropWithoutFree * 100).toFixed(0)}% of refs dropped without free`);
  console.log("\nclients");
  table([
    ["started", (f) => f.started],
    ["SIGKILLed", (f) => f.killed],
    ["  of which with their workers", (f) => f.killedWithWorkers],
    ...END_MODES.map((m): [string, (f: RuntimeFigures) => number] => [`ended by ${m}`, (f) => f.ended[m]]),
    ["median ms from start to ready", (f) => medianReadyMs(runtimeOf.get(f)!)],
    ...[...new Set([...figures.values()].flatMap((f) => Object.keys(f.exits)))].sort().map(
      (outcome): [string, (f: RuntimeFigures) => number] => [/^\d+$/.test(outcome) ? `exited with code ${outcome}` : `died of ${outcome}`, (f) => f.exits[outcome] ?? 0],
    ),
  ]);
  console.log("\nwork (from the clients' last reports; a killed client's last 250 ms are not counted)");
  table([
    ["puts", c((k) => k.puts)],
    ["  containers (values holding refs)", c((k) => k.containers)],
    ["  MiB put", c((k) => Math.round(k.putBytes / MiB))],
    ["gets", c((k) => k.gets)],
    ["  of borrowed refs", c((k) => k.borrowedGets)],
    ["  of borrowed refs, putter gone", c((k) => k.getsAfterOwnerDied)],
    ["objects verified (checksum ok)", c((k) => k.verifiedObjects)],
    ["  through refs inside objects", c((k) => k.nestedVerified)],
    ["  in workers (tasks, actor)", c((k) => k.verifiedInWorkers)],
    ["MiB verified", c((k) => Math.round(k.verifiedBytes / MiB))],
    ["tasks", c((k) => k.tasks)],
    ["actor calls", c((k) => k.actorCalls)],
    ["refs offered", c((k) => k.offered)],
    ["refs taken (fromHex)", c((k) => k.taken)],
    ["refs already gone when taken", c((k) => k.missed)],
    ["refs freed", c((k) => k.freed)],
    ["refs dropped for the GC", c((k) => k.dropped)],
    ["store full (put/restore refused)", c((k) => k.storeFull)],
  ]);
  console.log(`  refs passed between processes: ${refsPassed}`);
  console.log("\nstore (sampled every 50 ms)");
  console.log(`  peak ${store.peakObjects} objects, ${mib(store.peakUsedBytes)} used, ${mib(store.peakPinnedBytes)} pinned, ` +
    `${mib(store.peakSpilledBytes)} / ${store.peakSpilledObjects} objects spilled at once`);
  console.log(`  spilled ≥ ${mib(store.spilledBytesRises)} in all (sum of rises), restored ${mib(store.restoredBytes)}, ` +
    `${store.spillFilesSeen.size} spill file names seen`);
  if (emptying !== undefined) {
    console.log(`  time to empty after the last client's exit: ${emptying.emptyAfterMs === undefined ? "never (gave up after 10 s)" : `${emptying.emptyAfterMs} ms`} ` +
      `(limit ${EMPTY_WITHIN_MS} ms); the last client was ${lastClient()}`);
    for (const line of emptying.timeline.slice(0, 30)) console.log(`    ${line}`);
  }
  if (lastWorkerAfterMs !== undefined) {
    console.log(`  the clients' last worker process was gone ${Math.max(0, lastWorkerAfterMs)} ms after the last client's exit`);
  }
  for (const note of notes) console.log(`  note: ${note}`);
  const count = (kinds: Violation["kind"][]) => violations.filter((v) => kinds.includes(v.kind)).length;
  if (abort.signal.aborted) console.log("\ninterrupted: the store's emptying was not measured");
  console.log("\ninvariants");
  console.log(`  1. corrupt reads:                          ${count(["corrupt", "actor-state"])}`);
  console.log(`  2. lost objects a live process referenced: ${count(["lost"])}`);
  console.log(`  3. store empty within ${EMPTY_WITHIN_MS} ms, no one attached: ${count(["not-empty"]) === 0 ? "yes" : "NO"}`);
  console.log(`  4. clients that ended other than asked:    ${count(["crash"])}`);
  console.log(`  5. other errors:                           ${count(["error"])}`);
  if (violations.length > 0) {
    console.log(`\nsoak: FAILED with ${violations.length} violation(s):`);
    for (const v of violations) console.log(`  [${v.kind}] ${(v.atMs / 1000).toFixed(1)} s ${v.who}: ${v.detail}`);
  } else {
    console.log("\nsoak: passed");
  }
}

async function main(): Promise<number> {
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  console.log(`soak: ${settings.seconds} s, runtimes ${settings.runtimes.join(", ")}, store ${storeName}, seed ${settings.seed} ` +
    `(SOAK_SEED=${settings.seed} repeats the choices, not the timing)`);
  let emptying: Emptying | undefined;
  let lastWorkerAfterMs: number | undefined;
  let notes: string[] = [];
  try {
    // The observer: creates the store (its settings hold for every process), holds no refs.
    await os.init({
      storeName,
      objectStoreMemory: settings.storeBytes,
      spill: { type: "filesystem", directory: spillDirectory },
      spillThreshold: settings.spillThreshold,
      numWorkers: 0,
      prefault: false,
    });
    await chaosPhase();
    const lastExitAtMs = await endPhase();
    checkInterrupted();
    emptying = await measureEmptying(lastExitAtMs);
    // Workers share their client's stderr: it closes when the last of them is gone.
    await Promise.race([Promise.all([...clients.values()].map((c) => c.familyGone)), sleep(10_000)]);
    const familiesGone = [...clients.values()].map((c) => c.familyGoneAtMs);
    if (!familiesGone.includes(0)) lastWorkerAfterMs = Math.max(...familiesGone) - lastExitAtMs;
    await checkDetached();
    if (emptying.emptyAfterMs === undefined || emptying.emptyAfterMs > EMPTY_WITHIN_MS) {
      const listing = await listObjects();
      addViolation({
        kind: "not-empty",
        who: "observer",
        detail: (emptying.emptyAfterMs === undefined ? `the store was not empty 10 s after the last client's exit: ${emptying.left}` : `the store took ${emptying.emptyAfterMs} ms to empty`) +
          `\n${listing.slice(0, 40).map((l) => `      | ${l}`).join("\n")}`,
      });
    }
  } catch (error) {
    if (!abort.signal.aborted) addViolation({ kind: "error", who: "orchestrator", detail: (error as Error).stack ?? String(error) });
  } finally {
    notes = await cleanUp();
  }
  printReport(emptying, lastWorkerAfterMs, notes);
  if (abort.signal.aborted) return 130;
  return violations.length === 0 ? 0 : 1;
}

process.exit(await main());
