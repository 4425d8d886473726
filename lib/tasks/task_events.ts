/**
 * Task events, for `objstore dashboard` and `objstore timeline` (which run in other processes):
 * each driver and worker keeps its recent task events in a ring of fixed size, with counters,
 * and writes both to a small file of its own at most once a second and at exit:
 * `/dev/shm/.objstore-tasks-<uid>/<store>@<pid>` (0600, in a 0700 folder).
 *
 * What each side records (the timeline joins them by driver pid and task number):
 * - a driver: each task submitted (its number, when, its function, its arguments' encoded size),
 *   and counters of tasks finished, failed and retried; how many are pending and running now is
 *   asked of its scheduler when the file is written.
 * - a worker: each task it ran (number, start, end, function, failed or not); its driver is its
 *   parent process.
 *
 * Recording costs a few stores into typed arrays per task (bench/tasks_bench.ts measures it
 * against recording off: `OBJSTORE_TASK_EVENTS=0`). Memory is fixed when the recorder starts:
 * RING_EVENTS events of EVENT_FIELDS doubles (192 KiB) and at most NAMES_MAX function names.
 *
 * A file outlives its process so that `objstore timeline` can read a program that ended; files
 * of ended recorders go after an hour, beyond the last 4 stores and beyond 16 MiB in all, removed
 * by whoever starts recording or reads them (`pruneTaskEventFiles`). A file is as large as the
 * events it holds (48 bytes each).
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { segmentPath } from "../options.ts";
import { processRuns } from "../processes.ts";

/** Events kept per process (the oldest are overwritten). */
export const RING_EVENTS = 4096;
/** Doubles per event: kind, task, start µs, end µs, name, argument bytes. */
const EVENT_FIELDS = 6;
/** Distinct function names kept per process; later ones are recorded as OTHER_NAME. */
const NAMES_MAX = 256;
const OTHER_NAME = "(other functions)";
/** How often a recorder with news writes its file. */
const WRITE_EVERY_MS = 1000;
/** How long files of ended recorders are kept (for a timeline of a program that ended). */
const KEEP_ENDED_MS = 60 * 60 * 1000;
/** The stores whose ended recorders' files are kept: those that ended last. */
const ENDED_STORES_MAX = 4;
/** The bytes of ended recorders' files kept in all (in /dev/shm: memory). */
const ENDED_BYTES_MAX = 16 * 1024 * 1024;
/** The environment variable that turns recording off ("0"); workers inherit it. */
export const TASK_EVENTS_ENV = "OBJSTORE_TASK_EVENTS";
const FORMAT_VERSION = 1;

/** What an event is. */
export const EventKind = { submit: 1, ran: 2, ranFailed: 3 } as const;

/**
 * Cumulative counts: of a driver's tasks (finished: results sealed, which includes a task whose
 * function threw, its error stored as its result; failed: failures the driver stored, a crash or
 * a cancel); of a worker's runs (finished, or failed: its function threw).
 */
export interface TaskCounters {
  submitted: number;
  finished: number;
  failed: number;
  retried: number;
}

/** How many of a driver's tasks wait and run now. */
export interface TaskGauges {
  pending: number;
  running: number;
}

export type ProcessRole = "driver" | "worker" | "actor";

/** The folder of every store's task event files (one per user: stores are the user's own). */
export function taskEventsDirectory(): string {
  return `/dev/shm/.objstore-tasks-${process.getuid?.() ?? "user"}`;
}

/** Records this process's task events; one per process (see `taskEvents`). */
export class TaskEventRecorder {
  readonly storeName: string;
  #role: ProcessRole;
  readonly path: string;
  readonly #runtime: string;
  readonly #ring = new Float64Array(RING_EVENTS * EVENT_FIELDS);
  /** Events ever recorded; the ring holds the last RING_EVENTS. */
  #total = 0;
  readonly #names: string[] = [];
  readonly #nameIndex = new Map<string, number>();
  #lastName = "";
  #lastNumber = 0;
  readonly counters: TaskCounters = { submitted: 0, finished: 0, failed: 0, retried: 0 };
  #gauges: (() => TaskGauges) | undefined;
  #dirty = true;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #startedMs = Date.now();
  /** Epoch microseconds at performance.now() = 0, so events cost one performance.now(). */
  readonly #originMicros = performance.timeOrigin * 1000;

  constructor(storeName: string, role: ProcessRole, runtime: string) {
    this.storeName = storeName;
    this.#role = role;
    this.#runtime = runtime;
    this.path = path.join(taskEventsDirectory(), `${storeName}@${process.pid}`);
  }

  /** Starts writing the file (now, then once a second while there is news, and at exit). */
  start(unref: (timer: ReturnType<typeof setInterval>) => void): void {
    mkdirSync(taskEventsDirectory(), { recursive: true, mode: 0o700 });
    pruneTaskEventFiles();
    this.write();
    this.#timer = setInterval(() => this.writeIfNew(), WRITE_EVERY_MS);
    unref(this.#timer);
  }

  /** What this process is: a worker that became an actor says so. */
  setRole(role: ProcessRole): void {
    this.#role = role;
    this.#dirty = true;
  }

  /** The scheduler's view of its pending and running tasks, asked when the file is written. */
  setGauges(gauges: () => TaskGauges): void {
    this.#gauges = gauges;
  }

  /** Microseconds since the epoch, for events. */
  nowMicros(): number {
    return this.#originMicros + performance.now() * 1000;
  }

  /** A driver submitted task `task` of function `name`, its arguments `argBytes` encoded. */
  submitted(task: number, name: string, argBytes: number): void {
    this.counters.submitted += 1;
    this.#record(EventKind.submit, task, this.nowMicros(), 0, name, argBytes);
  }

  /** A worker ran task `task` from `startMs` (performance.now()) to `endMs`. */
  ran(task: number, name: string, startMs: number, endMs: number, failed: boolean): void {
    if (failed) this.counters.failed += 1;
    else this.counters.finished += 1;
    this.#record(failed ? EventKind.ranFailed : EventKind.ran, task, this.#originMicros + startMs * 1000, this.#originMicros + endMs * 1000, name, 0);
  }

  #record(kind: number, task: number, startMicros: number, endMicros: number, name: string, argBytes: number): void {
    const at = (this.#total % RING_EVENTS) * EVENT_FIELDS;
    const ring = this.#ring;
    ring[at] = kind;
    ring[at + 1] = task;
    ring[at + 2] = startMicros;
    ring[at + 3] = endMicros;
    ring[at + 4] = this.#nameNumber(name);
    ring[at + 5] = argBytes;
    this.#total += 1;
    this.#dirty = true;
  }

  /** A driver's task ended: its results sealed, or its failure stored. */
  ended(failed: boolean): void {
    if (failed) this.counters.failed += 1;
    else this.counters.finished += 1;
    this.#dirty = true;
  }

  /** A driver's task runs again (its worker died). */
  retrying(): void {
    this.counters.retried += 1;
    this.#dirty = true;
  }

  #nameNumber(name: string): number {
    // Most tasks in a row call the same function: one comparison instead of a lookup.
    if (name === this.#lastName) return this.#lastNumber;
    const number = this.#lookUpName(name);
    this.#lastName = name;
    this.#lastNumber = number;
    return number;
  }

  #lookUpName(name: string): number {
    const known = this.#nameIndex.get(name);
    if (known !== undefined) return known;
    const shown = this.#names.length < NAMES_MAX - 1 ? name : OTHER_NAME;
    const number = this.#nameIndex.get(shown) ?? this.#names.push(shown) - 1;
    this.#nameIndex.set(shown, number);
    return number;
  }

  /**
   * Writes the file: a little-endian u32 byte count of a JSON header, the header, zeros to a
   * multiple of 8 bytes, then the ring's events oldest first. Written aside and renamed, so a
   * reader never sees half a file.
   */
  write(): void {
    this.#dirty = false;
    const count = Math.min(this.#total, RING_EVENTS);
    const header: TaskEventsHeader = {
      version: FORMAT_VERSION,
      pid: process.pid,
      parentPid: process.ppid,
      role: this.#role,
      runtime: this.#runtime,
      store: this.storeName,
      startedMs: this.#startedMs,
      writtenMs: Date.now(),
      total: this.#total,
      names: this.#names,
      counters: this.counters,
      gauges: this.#gauges?.() ?? { pending: 0, running: 0 },
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const eventsAt = align8(4 + json.length);
    const bytes = new Uint8Array(eventsAt + count * EVENT_FIELDS * 8);
    new DataView(bytes.buffer).setUint32(0, json.length, true);
    bytes.set(json, 4);
    const events = new Float64Array(bytes.buffer, eventsAt, count * EVENT_FIELDS);
    const first = this.#total <= RING_EVENTS ? 0 : this.#total % RING_EVENTS;
    events.set(this.#ring.subarray(first * EVENT_FIELDS, count * EVENT_FIELDS));
    if (first > 0) events.set(this.#ring.subarray(0, first * EVENT_FIELDS), (count - first) * EVENT_FIELDS);
    try {
      const aside = `${this.path}.${process.pid}.tmp`;
      writeFileSync(aside, bytes, { mode: 0o600 });
      renameSync(aside, this.path);
    } catch { /* /dev/shm full or the folder removed: the dashboard shows less, tasks go on */ }
  }

  /** Writes the file if something happened since it was last written (at exit, say). */
  writeIfNew(): void {
    if (this.#dirty) this.write();
  }

  /** Stops writing (the file stays, for the timeline). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.writeIfNew();
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

let recorder: TaskEventRecorder | undefined;

/**
 * This process's recorder, started on first use; undefined if recording is off
 * (`OBJSTORE_TASK_EVENTS=0`). A worker that becomes an actor says so with `role`.
 */
export function taskEvents(storeName: string, role: ProcessRole, runtime: string, unref: (timer: ReturnType<typeof setInterval>) => void): TaskEventRecorder | undefined {
  if (process.env[TASK_EVENTS_ENV] === "0") return undefined;
  if (recorder === undefined || recorder.storeName !== storeName) {
    // A process that used another store before (a program that shut down and started again).
    if (recorder === undefined) process.on("exit", () => recorder?.writeIfNew());
    recorder?.stop();
    recorder = new TaskEventRecorder(storeName, role, runtime);
    recorder.start(unref);
  }
  return recorder;
}

/** What a file says before its events. */
export interface TaskEventsHeader {
  version: number;
  pid: number;
  parentPid: number;
  role: ProcessRole;
  runtime: string;
  store: string;
  startedMs: number;
  writtenMs: number;
  total: number;
  names: string[];
  counters: TaskCounters;
  gauges: TaskGauges;
}

/** One recorded event, read back. */
export interface TaskEvent {
  kind: "submit" | "ran" | "ranFailed";
  task: number;
  startMicros: number;
  endMicros: number;
  name: string;
  argBytes: number;
}

/** One process's file, read back. */
export interface ProcessTaskEvents extends TaskEventsHeader {
  alive: boolean;
  events: TaskEvent[];
}

const KIND_NAMES = { [EventKind.submit]: "submit", [EventKind.ran]: "ran", [EventKind.ranFailed]: "ranFailed" } as const;

/** Parses a task events file; throws naming the file if it is not one. */
export function parseTaskEvents(bytes: Uint8Array, file: string, withEvents = true): ProcessTaskEvents {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) throw new Error(`${file}: not a task events file (too short)`);
  const jsonBytes = view.getUint32(0, true);
  if (4 + jsonBytes > bytes.length) throw new Error(`${file}: not a task events file (header past the end)`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + jsonBytes))) as TaskEventsHeader;
  if (header.version !== FORMAT_VERSION) throw new Error(`${file}: task events format ${header.version}, this objstore reads ${FORMAT_VERSION}`);
  const events: TaskEvent[] = [];
  if (withEvents) {
    const eventsAt = align8(4 + jsonBytes);
    const count = Math.floor((bytes.length - eventsAt) / (EVENT_FIELDS * 8));
    for (let i = 0; i < count; i++) {
      const at = eventsAt + i * EVENT_FIELDS * 8;
      const field = (k: number) => view.getFloat64(at + k * 8, true);
      const kind = KIND_NAMES[field(0) as 1 | 2 | 3];
      if (kind === undefined) continue;
      events.push({ kind, task: field(1), startMicros: field(2), endMicros: field(3), name: header.names[field(4)] ?? "?", argBytes: field(5) });
    }
  }
  return { ...header, alive: processRuns(header.pid), events };
}

/** The files of `storeName` (every store's if undefined), as [store, pid, path]. */
function taskEventFiles(storeName: string | undefined): Array<{ store: string; pid: number; path: string }> {
  let names: string[];
  try {
    names = readdirSync(taskEventsDirectory());
  } catch {
    return [];
  }
  const files = [];
  for (const name of names) {
    const match = /^(.+)@(\d+)$/.exec(name);
    if (match === null || (storeName !== undefined && match[1] !== storeName)) continue;
    files.push({ store: match[1], pid: Number(match[2]), path: path.join(taskEventsDirectory(), name) });
  }
  return files;
}

/** The stores that have task event files, newest written first. */
export function storesWithTaskEvents(): string[] {
  const newest = new Map<string, number>();
  for (const f of taskEventFiles(undefined)) {
    try {
      newest.set(f.store, Math.max(newest.get(f.store) ?? 0, statSync(f.path).mtimeMs));
    } catch { /* gone meanwhile */ }
  }
  return [...newest].sort((a, b) => b[1] - a[1]).map(([store]) => store);
}

/** Every process's task events of `storeName` (files that cannot be read are skipped). */
export function readTaskEvents(storeName: string, withEvents = true): ProcessTaskEvents[] {
  pruneTaskEventFiles();
  const read: ProcessTaskEvents[] = [];
  for (const f of taskEventFiles(storeName)) {
    try {
      read.push(parseTaskEvents(withEvents ? readFileSync(f.path) : headerBytes(f.path), f.path, withEvents));
    } catch { /* gone meanwhile, or another version's */ }
  }
  return read.sort((a, b) => a.pid - b.pid);
}

/** The length and header of a file, without its events (the dashboard reads these every second). */
function headerBytes(file: string): Uint8Array {
  const fd = openSync(file, "r");
  try {
    const length = new Uint8Array(4);
    if (readSync(fd, length, 0, 4, 0) < 4) return length.subarray(0, 0);
    const jsonBytes = new DataView(length.buffer).getUint32(0, true);
    const bytes = new Uint8Array(4 + jsonBytes);
    bytes.set(length);
    readSync(fd, bytes, 4, jsonBytes, 4);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes the files of ended recorders: a dead process's, or one whose store is gone (its program
 * shut down, or moved on to another store). They are kept for a timeline of a program that ended,
 * but only KEEP_ENDED_MS, only for the ENDED_STORES_MAX stores that ended last, and ENDED_BYTES_MAX
 * in all (the oldest go first). Also removes asides a killed writer left. Returns how many it removed.
 */
export function pruneTaskEventFiles(): number {
  const ended: Array<{ store: string; path: string; mtimeMs: number; sizeBytes: number }> = [];
  for (const f of taskEventFiles(undefined)) {
    if (processRuns(f.pid) && existsSync(segmentPath(f.store))) continue;
    try {
      const stat = statSync(f.path);
      ended.push({ store: f.store, path: f.path, mtimeMs: stat.mtimeMs, sizeBytes: stat.size });
    } catch { /* gone meanwhile */ }
  }
  ended.sort((a, b) => b.mtimeMs - a.mtimeMs);
  const now = Date.now();
  const keptStores = new Set<string>();
  let keptBytes = 0;
  const doomed: string[] = [];
  for (const f of ended) {
    if (!keptStores.has(f.store) && keptStores.size < ENDED_STORES_MAX) keptStores.add(f.store);
    const keep = now - f.mtimeMs <= KEEP_ENDED_MS && keptStores.has(f.store) && keptBytes + f.sizeBytes <= ENDED_BYTES_MAX;
    if (keep) keptBytes += f.sizeBytes;
    else doomed.push(f.path);
  }
  try {
    for (const name of readdirSync(taskEventsDirectory())) {
      const match = /@\d+\.(\d+)\.tmp$/.exec(name);
      if (match !== null && !processRuns(Number(match[1]))) doomed.push(path.join(taskEventsDirectory(), name));
    }
  } catch { /* no folder */ }
  let removed = 0;
  for (const file of doomed) {
    try {
      unlinkSync(file);
      removed += 1;
    } catch { /* gone meanwhile */ }
  }
  return removed;
}
