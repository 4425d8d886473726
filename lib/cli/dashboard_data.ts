/**
 * What `objstore dashboard` shows, gathered the way `objstore memory` and `objstore status` do
 * (lib/cli/local_store.ts, lib/cluster/listing.ts, the directory): one store of this machine,
 * or a cluster's nodes. A sample is taken once a second and kept for the last minutes; the
 * object list is read at most once a second, and only while someone asks for it.
 */
import { hostname } from "node:os";
import { storeNames } from "../abandoned.ts";
import { type Directory, type NodeStatus, redactedUrl } from "../cluster/directory.ts";
import { listClusterObjects } from "../cluster/listing.ts";
import type { StoreStats } from "../store/native_store.ts";
import { type ProcessTaskEvents, readTaskEvents } from "../tasks/task_events.ts";
import { attach, describeProcess, otherPids, processRuns, runtimeOf } from "./local_store.ts";
import { ColumnarObjects, type ObjectPage, type ObjectQuery, type ObjectRow, type ObjectTable, RowObjects } from "./object_table.ts";

export type { ObjectPage, ObjectQuery, ObjectRow };

/** Samples kept: ten minutes at one a second. */
export const HISTORY_SAMPLES = 600;
/** Rows one page of the objects table may ask for. */
export const PAGE_ROWS_MAX = 1000;

/** One second of the store (or the cluster): memory, spill and task rates. */
export interface Sample {
  tMs: number;
  capacityBytes: number;
  usedBytes: number;
  /** Null in a cluster (heartbeats carry only what is used). */
  pinnedBytes: number | null;
  spilledBytes: number | null;
  /** Bytes a second that left memory for spill files, and that came back: the differences
   * of the totals below over the time since the last sample. */
  spillBytesPerS: number | null;
  restoreBytesPerS: number | null;
  /** The totals the rates come from (`memoryStats()`'s spilledBytesTotal and restoredBytes;
   * in a cluster, sums over the nodes that report them). */
  spilledBytesTotal: number | null;
  restoredBytesTotal: number | null;
  /** Tasks finished a second, by the drivers of this machine's store(s). */
  tasksPerS: number;
}

/** The whole-store figures of the last sample, `memoryStats()`'s fields and more. */
export interface MemoryNow extends Partial<StoreStats> {
  capacityBytes: number;
  usedBytes: number;
  objectCount: number;
}

/** One process of the store (or of this machine's nodes). */
export interface ProcessRow {
  pid: number;
  role: string;
  runtime: string;
  alive: boolean;
  /** Attached to the store now. */
  attached: boolean;
  command: string;
  /** Tasks it submitted (a driver) or ran (a worker). */
  tasks: number;
}

/** Task counts by state, summed over the drivers. */
export interface TaskCounts {
  pending: number;
  running: number;
  finished: number;
  failed: number;
  retried: number;
  submitted: number;
}

/** Where the dashboard's figures come from. */
export interface DashboardSource {
  /** What it watches, for the page's title: a store's name or a cluster's address (no password). */
  readonly title: string;
  readonly mode: "store" | "cluster";
  /** Takes this second's sample (called once a second). */
  sample(): Promise<void>;
  readonly history: Sample[];
  /** The last sample's figures and when it was taken; a problem if it could not be taken. */
  memory(): { sampledMs: number; stats: MemoryNow | undefined; problem: string | undefined };
  objects(query: ObjectQuery): Promise<ObjectPage & { listedMs: number }>;
  processes(): ProcessRow[];
  tasks(): TaskCounts;
  nodes(): Promise<unknown[]>;
  close(): Promise<void>;
}

/** Parses and checks the objects table's query string; throws a message naming the bad field. */
export function objectQuery(params: URLSearchParams): ObjectQuery {
  const whole = (name: string, fallback: number, max: number) => {
    const text = params.get(name);
    if (text === null) return fallback;
    const value = Number(text);
    if (!/^\d+$/.test(text) || value > max) throw new Error(`${name} must be a whole number up to ${max}, got ${JSON.stringify(text)}`);
    return value;
  };
  const sort = params.get("sort") ?? "sizeBytes";
  const columns = ["id", "sizeBytes", "type", "state", "referencingProcesses", "pinningProcesses", "containedBy", "node"];
  if (!columns.includes(sort)) throw new Error(`sort must be one of ${columns.join(", ")}, got ${JSON.stringify(sort)}`);
  const order = params.get("order") ?? "desc";
  if (order !== "asc" && order !== "desc") throw new Error(`order must be asc or desc, got ${JSON.stringify(order)}`);
  return {
    offset: whole("offset", 0, Number.MAX_SAFE_INTEGER),
    limit: whole("limit", 50, PAGE_ROWS_MAX),
    sort: sort as keyof ObjectRow,
    descending: order === "desc",
    filter: (params.get("filter") ?? "").trim().toLowerCase(),
  };
}

/** The table of objects, read again only when older than a second (and than twice its cost). */
class ObjectListing {
  #table: ObjectTable = new RowObjects([]);
  #listedMs = 0;
  #costMs = 0;
  #reading: Promise<void> | undefined;
  readonly #read: () => Promise<ObjectTable>;
  readonly #freshMs: number;

  constructor(read: () => Promise<ObjectTable>, freshMs: number) {
    this.#read = read;
    this.#freshMs = freshMs;
  }

  async query(query: ObjectQuery): Promise<ObjectPage & { listedMs: number }> {
    if (Date.now() - this.#listedMs > Math.max(this.#freshMs, 2 * this.#costMs)) {
      this.#reading ??= this.#refresh().finally(() => (this.#reading = undefined));
      await this.#reading;
    }
    return { ...this.#table.page(query), listedMs: this.#listedMs };
  }

  async #refresh(): Promise<void> {
    const started = Date.now();
    this.#table = await this.#read();
    this.#listedMs = Date.now();
    this.#costMs = this.#listedMs - started;
  }
}

/** Keeps the last HISTORY_SAMPLES samples. */
function remember(history: Sample[], sample: Sample): void {
  history.push(sample);
  if (history.length > HISTORY_SAMPLES) history.splice(0, history.length - HISTORY_SAMPLES);
}

/**
 * The task counts of a store's processes: counters of every driver, gauges of the live ones. A
 * task whose function threw ends as "finished" for its driver (its error is its result), so the
 * workers' failed runs move from finished to failed.
 */
function countTasks(files: ProcessTaskEvents[]): TaskCounts {
  const counts: TaskCounts = { pending: 0, running: 0, finished: 0, failed: 0, retried: 0, submitted: 0 };
  for (const f of files) {
    if (f.role !== "driver") {
      counts.finished -= f.counters.failed;
      counts.failed += f.counters.failed;
      continue;
    }
    counts.finished += f.counters.finished;
    counts.failed += f.counters.failed;
    counts.retried += f.counters.retried;
    counts.submitted += f.counters.submitted;
    if (!f.alive) continue;
    counts.pending += f.gauges.pending;
    counts.running += f.gauges.running;
  }
  counts.finished = Math.max(0, counts.finished);
  return counts;
}

/** Processes from the store's attached pids and the task event files (which outlive them). */
function processRows(attachedPids: number[], files: ProcessTaskEvents[]): ProcessRow[] {
  const rows = new Map<number, ProcessRow>();
  for (const pid of attachedPids) {
    const described = describeProcess(pid);
    rows.set(pid, { pid, role: described.role, runtime: runtimeOf(pid), alive: processRuns(pid), attached: true, command: described.command, tasks: 0 });
  }
  for (const f of files) {
    const row = rows.get(f.pid);
    const tasks = f.role === "driver" ? f.counters.submitted : f.total;
    if (row === undefined) {
      rows.set(f.pid, { pid: f.pid, role: f.role, runtime: f.runtime, alive: f.alive, attached: false, command: f.alive ? describeProcess(f.pid).command : "", tasks });
    } else {
      row.role = f.role;
      row.runtime = f.runtime;
      row.tasks = tasks;
    }
  }
  return [...rows.values()].sort((a, b) => Number(b.alive) - Number(a.alive) || a.pid - b.pid);
}

/** How much a second a counter rose between two samples (0 for the first, and for a fall). */
function perSecond(now: number, before: number | undefined, elapsedMs: number): number {
  return before === undefined || elapsedMs <= 0 ? 0 : Math.max(0, ((now - before) * 1000) / elapsedMs);
}

/** One store of this machine: `--store NAME`, or the only store there is. */
export class LocalSource implements DashboardSource {
  readonly mode = "store";
  readonly history: Sample[] = [];
  readonly #fixedName: string | undefined;
  #name: string | undefined;
  #stats: StoreStats | undefined;
  #sampledMs = 0;
  #problem: string | undefined;
  #pids: number[] = [];
  #files: ProcessTaskEvents[] = [];
  #last: { tMs: number; spilledBytesTotal: number; restoredBytes: number; finished: number } | undefined;
  readonly #listing = new ObjectListing(() => this.#readObjects(), 1000);

  constructor(storeName: string | undefined) {
    this.#fixedName = storeName;
    this.#name = storeName;
  }

  get title(): string {
    return this.#name === undefined ? "(no store yet)" : `store ${this.#name}`;
  }

  /** The store watched now: the one named, else the only one, else the last one if still there. */
  #pick(): string | undefined {
    if (this.#fixedName !== undefined) return this.#fixedName;
    const names = storeNames();
    if (names.length === 1) return names[0];
    if (this.#name !== undefined && names.includes(this.#name)) return this.#name;
    this.#problem = names.length === 0 ? "no stores on this machine yet" : `several stores, start the dashboard with --store: ${names.join(", ")}`;
    return undefined;
  }

  async sample(): Promise<void> {
    const tMs = Date.now();
    this.#problem = undefined;
    const name = this.#pick();
    if (name !== this.#name) {
      this.#last = undefined;
      this.history.length = 0;
    }
    this.#name = name;
    if (name === undefined) return;
    try {
      const store = await attach(name);
      try {
        this.#stats = store.stats();
        this.#pids = otherPids(store);
      } finally {
        store.close();
      }
    } catch (error) {
      this.#stats = undefined;
      this.#problem = `store ${name}: ${(error as Error).message}`;
    }
    this.#files = readTaskEvents(name, false);
    this.#sampledMs = tMs;
    const s = this.#stats;
    if (s === undefined) return;
    const finished = countTasks(this.#files).finished;
    const last = this.#last;
    const elapsedMs = last === undefined ? 0 : tMs - last.tMs;
    remember(this.history, {
      tMs,
      capacityBytes: s.capacityBytes,
      usedBytes: s.usedBytes,
      pinnedBytes: s.pinnedBytes,
      spilledBytes: s.spilledBytes,
      spillBytesPerS: perSecond(s.spilledBytesTotal, last?.spilledBytesTotal, elapsedMs),
      restoreBytesPerS: perSecond(s.restoredBytes, last?.restoredBytes, elapsedMs),
      spilledBytesTotal: s.spilledBytesTotal,
      restoredBytesTotal: s.restoredBytes,
      tasksPerS: perSecond(finished, last?.finished, elapsedMs),
    });
    this.#last = { tMs, spilledBytesTotal: s.spilledBytesTotal, restoredBytes: s.restoredBytes, finished };
  }

  memory(): { sampledMs: number; stats: MemoryNow | undefined; problem: string | undefined } {
    return { sampledMs: this.#sampledMs, stats: this.#stats, problem: this.#problem };
  }

  async #readObjects(): Promise<ObjectTable> {
    if (this.#name === undefined) return new RowObjects([]);
    const store = await attach(this.#name);
    try {
      return await ColumnarObjects.read(store, this.#stats?.objectCount ?? 0, hostname());
    } finally {
      store.close();
    }
  }

  async objects(query: ObjectQuery): Promise<ObjectPage & { listedMs: number }> {
    const page = await this.#listing.query(query);
    const known = new Map(this.processes().map((p) => [p.pid, p]));
    for (const row of page.rows) {
      for (const holder of row.pinnedBy ?? []) {
        const described = known.get(holder.pid);
        if (described !== undefined) Object.assign(holder, { role: described.role, runtime: described.runtime });
      }
    }
    return page;
  }

  processes(): ProcessRow[] {
    return processRows(this.#pids, this.#files);
  }

  tasks(): TaskCounts {
    return countTasks(this.#files);
  }

  nodes(): Promise<unknown[]> {
    const s = this.#stats;
    return Promise.resolve([{
      node: hostname(), store: this.#name, alive: s !== undefined, usedBytes: s?.usedBytes ?? null,
      pinnedBytes: s?.pinnedBytes ?? null, spilledBytes: s?.spilledBytes ?? null,
      capacityBytes: s?.capacityBytes ?? null, objectCount: s?.objectCount ?? null,
    }]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A cluster, through its directory: its nodes, their memory from heartbeats, every object. */
export class ClusterSource implements DashboardSource {
  readonly mode = "cluster";
  readonly history: Sample[] = [];
  readonly title: string;
  readonly #directory: Directory;
  #nodes: NodeStatus[] = [];
  #sampledMs = 0;
  #problem: string | undefined;
  #files: ProcessTaskEvents[] = [];
  #pids: number[] = [];
  #lastFinished: { tMs: number; finished: number } | undefined;
  /** Each alive node's spill totals at the last sample, for its rates. */
  #lastTotals = new Map<number, { spilledBytesTotal: number; restoredBytes: number }>();
  readonly #listing = new ObjectListing(() => this.#readObjects(), 3000);

  constructor(directory: Directory, address: string) {
    this.#directory = directory;
    this.title = `cluster ${redactedUrl(address)}`;
  }

  async sample(): Promise<void> {
    const tMs = Date.now();
    try {
      this.#nodes = await this.#directory.nodes();
      this.#problem = undefined;
    } catch (error) {
      this.#problem = (error as Error).message;
      return;
    }
    this.#sampledMs = tMs;
    // Tasks and processes: the stores of this machine's nodes (task events are files of this machine).
    const local = this.#nodes.filter((n) => n.hostname === hostname() && n.alive);
    this.#files = local.flatMap((n) => readTaskEvents(n.storeName, false));
    this.#pids = [];
    for (const n of local) {
      try {
        const store = await attach(n.storeName);
        try {
          this.#pids.push(...otherPids(store));
        } finally {
          store.close();
        }
      } catch { /* gone meanwhile */ }
    }
    const alive = this.#nodes.filter((n) => n.alive);
    const finished = countTasks(this.#files).finished;
    const elapsedMs = tMs - (this.#lastFinished?.tMs ?? tMs);
    remember(this.history, {
      tMs,
      capacityBytes: alive.reduce((sum, n) => sum + n.capacityBytes, 0),
      usedBytes: alive.reduce((sum, n) => sum + (n.load?.usedBytes ?? 0), 0),
      ...this.#spilling(alive, elapsedMs),
      tasksPerS: perSecond(finished, this.#lastFinished?.finished, elapsedMs),
    });
    this.#lastFinished = { tMs, finished };
  }

  /**
   * Pinned and spilled bytes summed over the alive nodes whose heartbeats carry them (null if
   * none does), and the spill and restore rates: each node's totals' differences since the
   * last sample, summed (a node new since then adds none).
   */
  #spilling(alive: NodeStatus[], elapsedMs: number): Pick<Sample, "pinnedBytes" | "spilledBytes" | "spillBytesPerS" | "restoreBytesPerS" | "spilledBytesTotal" | "restoredBytesTotal"> {
    const reporting = alive.filter((n) => n.load?.pinnedBytes !== undefined && n.load.spilledBytesTotal !== undefined);
    const totals = new Map(reporting.map((n) => [n.nodeNumber, { spilledBytesTotal: n.load!.spilledBytesTotal!, restoredBytes: n.load!.restoredBytes ?? 0 }]));
    const last = this.#lastTotals;
    this.#lastTotals = totals;
    if (reporting.length === 0) {
      return { pinnedBytes: null, spilledBytes: null, spillBytesPerS: null, restoreBytesPerS: null, spilledBytesTotal: null, restoredBytesTotal: null };
    }
    const sum = (f: (n: NodeStatus) => number) => reporting.reduce((total, n) => total + f(n), 0);
    const rate = (key: "spilledBytesTotal" | "restoredBytes") =>
      sum((n) => perSecond(totals.get(n.nodeNumber)![key], last.get(n.nodeNumber)?.[key], elapsedMs));
    return {
      pinnedBytes: sum((n) => n.load!.pinnedBytes!),
      spilledBytes: sum((n) => n.load!.spilledBytes ?? 0),
      spillBytesPerS: rate("spilledBytesTotal"),
      restoreBytesPerS: rate("restoredBytes"),
      spilledBytesTotal: sum((n) => n.load!.spilledBytesTotal!),
      restoredBytesTotal: sum((n) => n.load!.restoredBytes ?? 0),
    };
  }

  memory(): { sampledMs: number; stats: MemoryNow | undefined; problem: string | undefined } {
    const alive = this.#nodes.filter((n) => n.alive);
    const last = this.history.at(-1);
    const stats = last === undefined ? undefined : {
      capacityBytes: last.capacityBytes,
      usedBytes: last.usedBytes,
      objectCount: alive.reduce((sum, n) => sum + (n.load?.objectCount ?? 0), 0),
      ...(last.pinnedBytes === null ? {} : { pinnedBytes: last.pinnedBytes, spilledBytes: last.spilledBytes ?? 0 }),
      ...(last.spilledBytesTotal === null ? {} : { spilledBytesTotal: last.spilledBytesTotal, restoredBytes: last.restoredBytesTotal ?? 0 }),
    };
    return { sampledMs: this.#sampledMs, stats, problem: this.#problem };
  }

  async #readObjects(): Promise<ObjectTable> {
    const memory = await listClusterObjects(this.#directory);
    return new RowObjects(memory.objects.map((o) => ({
      id: o.id,
      sizeBytes: o.sizeBytes,
      type: null,
      state: o.locations.map((l) => `${l.nodeNumber}:${l.where}`).join(" "),
      referencingProcesses: o.locations.reduce((sum, l) => sum + l.refCount, 0) + o.heldFor.length,
      pinningProcesses: null,
      pinnedBy: null,
      containedBy: null,
      node: String(o.madeOn),
    })));
  }

  objects(query: ObjectQuery): Promise<ObjectPage & { listedMs: number }> {
    return this.#listing.query(query);
  }

  processes(): ProcessRow[] {
    const rows = processRows(this.#pids, this.#files);
    for (const n of this.#nodes) {
      if (rows.some((r) => r.pid === n.pid && n.hostname === hostname())) continue;
      rows.push({ pid: n.pid, role: `node ${n.nodeNumber} (${n.hostname})`, runtime: "", alive: n.alive, attached: false, command: `objstore start (store ${n.storeName})`, tasks: 0 });
    }
    return rows;
  }

  tasks(): TaskCounts {
    return countTasks(this.#files);
  }

  nodes(): Promise<unknown[]> {
    return Promise.resolve(this.#nodes);
  }

  close(): Promise<void> {
    return this.#directory.close();
  }
}
