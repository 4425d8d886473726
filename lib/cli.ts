/**
 * The `objstore` command: `memory` (the objects of a store, like `ray memory`), `status`
 * (the stores on this machine) and `destroy` (remove a store whose processes all died).
 */
import { readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import process from "node:process";
import { loadLibrary } from "./ffi/load.ts";
import { type ListedObject, NativeStore, type StoreStats } from "./store/native_store.ts";
import { removeOrphanedChannels } from "./tasks/channel.ts";
import { segmentPath, shown, storeNameProblem } from "./options.ts";
import { removeAbandonedStores, storeNames } from "./abandoned.ts";
import { ClusterNode, type NodeOptions, stopLocalNodes } from "./node.ts";
import { confirmationMs, Directory, type NodeStatus, redactedUrl } from "./cluster/directory.ts";
import { listClusterObjects } from "./cluster/listing.ts";
import { attach, describeProcess, otherPids, type StoreProcess } from "./cli/local_store.ts";
import { Dashboard } from "./cli/dashboard.ts";
import { ClusterSource, type DashboardSource, LocalSource } from "./cli/dashboard_data.ts";
import { chromeTrace, traceProblems } from "./cli/timeline.ts";
import { readTaskEvents, storesWithTaskEvents } from "./tasks/task_events.ts";

const usage = `usage: objstore <command> [options]

commands:
  memory [--store NAME] [--json]   list the objects of a store: id, size, references, pins, where
  memory --address URL [--json]    list the objects of a cluster: where each copy is, who holds it
  status [--json]                  list the stores on this machine and the processes using them
                                   (stores whose processes all died are removed first)
  status --address URL [--json]    list the nodes of a cluster: address, memory, objects, alive
  destroy NAME                     remove a store none of whose processes is alive, and the
                                   worker channels its killed drivers left
  start --address URL [--token T] [--node-ip IP] [--port N] [--object-store-memory BYTES]
        [--num-workers N] [--resources JSON] [--heartbeat-ms MS] [--store NAME]
        [--transport tcp|quic]
                                   start a node of the cluster whose directory (Redis) is at URL
                                   (redis://[:PASSWORD@]HOST:PORT); it runs until stopped. The
                                   token (or OBJSTORE_CLUSTER_TOKEN) is the cluster's secret.
                                   quic: also serve transfers over QUIC (UDP, same port number
                                   as --port if given), which its processes use to pull from
                                   other QUIC nodes; Deno with --unstable-net only
  stop [--store NAME]              stop the nodes of this machine (or the one of store NAME)
  dashboard [--store NAME | --address URL] [--port N] [--host ADDRESS] [--token T]
                                   serve a live web page of a store (or a cluster): memory,
                                   spilling, objects, processes, tasks; on 127.0.0.1:8265 unless
                                   told; another address needs --token (or OBJSTORE_DASHBOARD_TOKEN)
  timeline [--store NAME] [-o FILE]
                                   write the store's recent tasks as a Chrome trace (open it in
                                   https://ui.perfetto.dev or chrome://tracing); FILE - is stdout

A store is named by init({ storeName }); without --store, memory shows the only store there is.
Exit status: 0 done, 1 the command failed (no such store, still in use), 2 a wrong command line.`;

/** A command line this program cannot run as written: exit code 2, with the usage. */
class UsageError extends Error {}

/** The parsed command line: a command and the options and operands it takes. */
interface Invocation {
  command: "memory" | "status" | "destroy" | "start" | "stop" | "dashboard" | "timeline" | "help";
  store?: string;
  json: boolean;
  /** The values of the other options, by name (`--port` → `port`). */
  values: Record<string, string>;
}

const NODE_OPTIONS = ["--address", "--token", "--node-ip", "--port", "--object-store-memory", "--num-workers", "--resources", "--heartbeat-ms", "--store", "--transport"];

/** Options each command takes, and whether it takes a store name operand. */
const COMMANDS = {
  memory: { options: ["--store", "--json", "--address"], operand: false },
  status: { options: ["--json", "--address"], operand: false },
  destroy: { options: [] as string[], operand: true },
  start: { options: NODE_OPTIONS, operand: false },
  stop: { options: ["--store"], operand: false },
  dashboard: { options: ["--store", "--address", "--port", "--host", "--token"], operand: false },
  timeline: { options: ["--store", "-o", "--output"], operand: false },
} as const;

/**
 * Runs the command line `args`; returns the exit code: 0 done, 1 the command failed (a store
 * missing or busy), 2 the command line is wrong. Output goes to `print`, complaints to `printError`.
 */
export async function runCli(
  args: string[],
  print: (line: string) => void = console.log,
  printError: (line: string) => void = console.error,
): Promise<number> {
  try {
    return await run(parse(args), args, print, printError);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    printError(`objstore: ${error.message}\n\n${usage}`);
    return 2;
  }
}

async function run(invocation: Invocation, args: string[], print: (line: string) => void, printError: (line: string) => void): Promise<number> {
  switch (invocation.command) {
    case "help":
      print(usage);
      return args.length === 0 ? 2 : 0;
    case "memory":
      if (invocation.values.address !== undefined) {
        if (invocation.store !== undefined) throw new UsageError("memory takes --store or --address, not both");
        return await clusterMemory(invocation.values.address, invocation.json, print);
      }
      return await memory(invocation.store, invocation.json, print, printError);
    case "status":
      if (invocation.values.address !== undefined) return await clusterStatus(invocation.values.address, invocation.json, print);
      return await status(invocation.json, print);
    case "destroy":
      await destroy(invocation.store!);
      print(`removed store ${invocation.store}`);
      return 0;
    case "start":
      return await startNode(invocation, print, printError);
    case "stop":
      return await stopNodes(invocation.store, print);
    case "dashboard":
      if (invocation.values.address !== undefined && invocation.store !== undefined) throw new UsageError("dashboard takes --store or --address, not both");
      return await runDashboard(invocation, print);
    case "timeline":
      return timeline(invocation.store, invocation.values.output, print, printError);
  }
}

/** Checks every argument; anything unknown, repeated, missing or malformed is a UsageError. */
function parse(args: string[]): Invocation {
  const [command, ...rest] = args;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") return { command: "help", json: false, values: {} };
  if (!Object.hasOwn(COMMANDS, command)) throw new UsageError(`unknown command ${shown(command)}`);
  const spec = COMMANDS[command as keyof typeof COMMANDS];
  const invocation: Invocation = { command: command as keyof typeof COMMANDS, json: false, values: {} };
  const seen = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === "--help" || arg === "-h") return { command: "help", json: false, values: {} };
    if (arg.startsWith("-")) {
      if (!(spec.options as readonly string[]).includes(arg)) throw new UsageError(`${command} does not take the option ${shown(arg)}`);
      if (seen.has(arg)) throw new UsageError(`${arg} is given twice`);
      seen.add(arg);
      if (arg === "--json") invocation.json = true;
      else if (arg === "--store") invocation.store = storeName(rest[i + 1]?.startsWith("--") ? undefined : rest[++i], `${arg} needs a store name`);
      else {
        const value = rest[i + 1]?.startsWith("--") ? undefined : rest[++i];
        if (value === undefined) throw new UsageError(`${arg} needs a value`);
        const name = arg === "-o" ? "output" : arg.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
        if (invocation.values[name] !== undefined) throw new UsageError(`${arg} is given twice`);
        invocation.values[name] = value;
      }
    } else if (spec.operand && invocation.store === undefined) {
      invocation.store = storeName(arg, "");
    } else {
      throw new UsageError(`${command} does not take the argument ${shown(arg)}`);
    }
  }
  if (spec.operand && invocation.store === undefined) throw new UsageError(`${command} needs a store name`);
  if (invocation.command === "start" && invocation.values.address === undefined) throw new UsageError("start needs --address redis://HOST:PORT (the cluster's directory)");
  return invocation;
}

/** `name` checked as a store name; `missing` is the complaint when there is none. */
function storeName(name: string | undefined, missing: string): string {
  if (name === undefined) throw new UsageError(missing);
  const problem = storeNameProblem(name);
  if (problem !== undefined) throw new UsageError(problem);
  return name;
}

export { storeNames };

/**
 * Removes a store whose processes all died. A segment this library cannot read (another
 * version's, or damaged) is removed if no process on the machine maps it.
 */
async function destroy(name: string): Promise<void> {
  try {
    NativeStore.destroy(await loadLibrary(), name);
    removeOrphanedChannels(name);
  } catch (error) {
    if (!/incompatible|not a usable objstore segment/.test((error as Error).message)) throw error;
    const path = segmentPath(name);
    const users = processesMapping(path);
    if (users.length > 0) throw new Error(`${path} is still mapped by processes ${users.join(", ")}`);
    unlinkSync(path);
  }
}

/** Pids of the processes that have `path` itself mapped (from /proc/<pid>/maps), not a file
 * whose name merely starts with it. */
export function processesMapping(path: string): number[] {
  const pids: number[] = [];
  const maps = (line: string) => line.endsWith(` ${path}`) || line.endsWith(` ${path} (deleted)`);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/maps`, "utf8").split("\n").some(maps)) pids.push(Number(entry));
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}

async function memory(
  name: string | undefined,
  json: boolean,
  print: (line: string) => void,
  printError: (line: string) => void,
): Promise<number> {
  if (name === undefined) {
    const names = storeNames();
    if (names.length !== 1) {
      printError(`objstore: ${names.length === 0 ? "no stores on this machine" : `several stores, pick one with --store: ${names.join(", ")}`}`);
      return names.length === 0 ? 1 : 2;
    }
    name = names[0];
  }
  const store = await attach(name);
  let stats: StoreStats;
  let objects: ListedObject[];
  let processes: number;
  try {
    stats = store.stats();
    objects = store.list();
    processes = otherPids(store).length;
  } finally {
    store.close();
  }
  if (json) {
    print(JSON.stringify({ store: name, ...stats, attachedProcesses: processes, objects }));
    return 0;
  }
  print(`store ${name}: ${bytes(stats.usedBytes)} of ${bytes(stats.capacityBytes)} used ` +
    `(${percent(stats.usedBytes, stats.capacityBytes)}), ${bytes(stats.pinnedBytes)} pinned, ` +
    `${processes} process${processes === 1 ? "" : "es"} attached`);
  print("");
  print(`${"ID".padEnd(56)}  ${"SIZE".padStart(10)}  ${"REFS".padStart(4)}  ${"PINS".padStart(4)}  ${"IN".padStart(2)}  WHERE`);
  for (const o of objects) {
    print(`${o.id}  ${bytes(o.sizeBytes).padStart(10)}  ${String(o.referencingProcesses).padStart(4)}  ` +
      `${String(o.pinningProcesses).padStart(4)}  ${String(o.containedBy).padStart(2)}  ${o.state}`);
  }
  print("");
  const inMemory = objects.filter((o) => o.state !== "spilled");
  print(`${objects.length} objects: ${inMemory.length} in memory (${bytes(sum(inMemory))}), ` +
    `${stats.spilledObjects} spilled (${bytes(stats.spilledBytes)}); ` +
    "REFS/PINS count processes holding a reference/view, IN counts objects containing it");
  return 0;
}

interface StoreStatus extends StoreStats {
  store: string;
  processes: StoreProcess[];
}

async function status(json: boolean, print: (line: string) => void): Promise<number> {
  const removed = removeAbandonedStores(await loadLibrary());
  const rows: StoreStatus[] = [];
  const unreadable: Array<{ store: string; error: string }> = [];
  for (const name of storeNames()) {
    try {
      const store = await attach(name);
      try {
        const stats = store.stats();
        const processes = otherPids(store).map(describeProcess);
        rows.push({ store: name, ...stats, attachedProcesses: processes.length, processes });
      } finally {
        store.close();
      }
    } catch (error) {
      unreadable.push({ store: name, error: (error as Error).message });
    }
  }
  if (json) {
    print(JSON.stringify({ nodes: [{ node: hostname(), stores: rows, unreadable, removed }] }));
    return 0;
  }
  print(`node ${hostname()} (this machine; a cluster's nodes: objstore status --address URL)`);
  print(`${"STORE".padEnd(30)}  ${"CAPACITY".padStart(10)}  ${"USED".padStart(10)}  ${"OBJECTS".padStart(8)}  PROCESSES`);
  for (const r of rows) {
    const workers = r.processes.filter((p) => p.role === "worker").length;
    print(`${r.store.padEnd(30)}  ${bytes(r.capacityBytes).padStart(10)}  ${bytes(r.usedBytes).padStart(10)}  ` +
      `${String(r.objectCount).padStart(8)}  ${r.processes.length - workers} driver(s), ${workers} worker(s)`);
    for (const p of r.processes) print(`    ${String(p.pid).padStart(7)}  ${p.role.padEnd(6)}  ${p.command}`);
  }
  if (rows.length === 0) print("(no stores on this machine)");
  for (const name of removed) print(`removed store ${name}: its processes all died without leaving it`);
  for (const u of unreadable) print(`${u.store}: ${u.error}`);
  return 0;
}

function sum(objects: ListedObject[]): number {
  return objects.reduce((total, o) => total + o.sizeBytes, 0);
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${((100 * part) / whole).toFixed(1)}%`;
}

/** 1536 → "1.5 KiB". */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A whole number of `what` from the command line; a UsageError naming the option otherwise. */
function wholeNumber(text: string | undefined, option: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value > max) throw new UsageError(`${option} must be a whole number up to ${max}, got ${shown(text)}`);
  return value;
}

/** `--heartbeat-ms`: how often a node says it is alive; silent after three missed, declared
 * dead if still silent an interval later. */
function heartbeatOption(text: string | undefined): number | undefined {
  const value = wholeNumber(text, "--heartbeat-ms", 60_000);
  if (value !== undefined && value < 50) throw new UsageError(`--heartbeat-ms must be at least 50, got ${value}`);
  return value;
}

/** `--transport tcp|quic`: whether a node also serves and pulls over QUIC. */
function transportOption(text: string | undefined): "tcp" | "quic" | undefined {
  if (text === undefined || text === "tcp" || text === "quic") return text;
  throw new UsageError(`--transport must be tcp or quic, got ${shown(text)}`);
}

/** `--resources '{"GPU": 2}'`: custom resources a node declares, checked. */
function resourcesOption(text: string): Record<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`--resources must be a JSON object of names to amounts, e.g. '{"GPU": 2}', got ${shown(text)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--resources must be a JSON object of names to amounts, e.g. '{"GPU": 2}', got ${shown(text)}`);
  }
  for (const [name, amount] of Object.entries(parsed)) {
    if (typeof amount !== "number" || !(amount >= 0) || !Number.isFinite(amount)) throw new UsageError(`--resources: ${name} must be an amount ≥ 0, got ${shown(String(amount))}`);
  }
  return parsed as Record<string, number>;
}

/**
 * `objstore start`: runs a node until SIGINT, SIGTERM or `objstore stop`. A node the cluster
 * declared dead (silent too long: a cut link, a stopped process) leaves and joins again as a
 * new node: the others have let go of what its processes held and made again what it made, so
 * it may not go on as the old one.
 */
async function startNode(invocation: Invocation, print: (line: string) => void, printError: (line: string) => void): Promise<number> {
  const values = invocation.values;
  const token = values.token ?? process.env.OBJSTORE_CLUSTER_TOKEN;
  if (token === undefined || token === "") {
    throw new UsageError("start needs the cluster token: --token T or OBJSTORE_CLUSTER_TOKEN (the same on every node)");
  }
  const options: NodeOptions = {
    address: values.address!,
    token,
    nodeIp: values.nodeIp,
    port: wholeNumber(values.port, "--port", 65535),
    objectStoreMemory: wholeNumber(values.objectStoreMemory, "--object-store-memory", Number.MAX_SAFE_INTEGER),
    numWorkers: wholeNumber(values.numWorkers, "--num-workers", 63),
    resources: values.resources === undefined ? undefined : resourcesOption(values.resources),
    heartbeatMs: heartbeatOption(values.heartbeatMs),
    storeName: invocation.store,
    transport: transportOption(values.transport),
  };
  // Listening before the node starts: a signal while it starts stops it once started.
  let signaled!: () => void;
  let stopAsked = false;
  const leaving = new Promise<void>((resolve) => (signaled = resolve));
  const onSignal = () => {
    stopAsked = true;
    signaled();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  for (let rejoin = false; ; rejoin = true) {
    let node: ClusterNode;
    try {
      node = await ClusterNode.start(options);
    } catch (error) {
      if (!rejoin) throw error;
      printError(`objstore: the node could not join the cluster again: ${whyNoRejoin(options.storeName!, error as Error)}`);
      return 1;
    }
    const f = node.file;
    options.storeName = f.storeName;
    const quic = f.quicPort === undefined ? "" : ` and QUIC (udp ${f.quicPort})`;
    print(`node ${f.nodeId} (number ${f.nodeNumber}) started: store ${f.storeName}, transfers on ${f.host}:${f.transferPort}${quic}, directory ${f.address}`);
    const declaredDead = await Promise.race([leaving.then(() => false), node.declaredDead.then(() => true)]);
    if (declaredDead) {
      printError(`objstore: node ${f.nodeId} (number ${f.nodeNumber}) was declared dead by the cluster: its heartbeat was silent for three beats and still an interval later (a cut link, a stopped process, a machine stalled for seconds; a longer --heartbeat-ms rides out longer stalls). The other nodes have let go of what its processes held and its objects are lost to them, so it leaves and joins again as a new node.`);
    }
    await node.stop();
    print(`node ${f.nodeId} stopped`);
    if (stopAsked) return 0; // also when the signal came while a dead node was leaving
  }
}

/** Why a node declared dead could not join again: usually programs still attached to its
 * store, which lost their node with it. */
function whyNoRejoin(storeName: string, error: Error): string {
  const users = processesMapping(segmentPath(storeName)).filter((pid) => pid !== process.pid);
  if (users.length === 0) return error.message;
  return `its store ${storeName} is still used by process${users.length > 1 ? "es" : ""} ${users.join(", ")} (programs attached to the node it was, which lost their node with it); start it again once they have ended, or with another --store`;
}

async function stopNodes(storeName: string | undefined, print: (line: string) => void): Promise<number> {
  const stopped = await stopLocalNodes(storeName);
  for (const node of stopped) print(`stopped node ${node.nodeId} (store ${node.storeName}, pid ${node.pid})`);
  if (stopped.length === 0) print("no nodes run on this machine");
  return 0;
}

/** The longest `objstore status --address` waits for a silent node to be heard from or declared dead. */
const STATUS_SETTLE_MAX_MS = 3000;

/**
 * The cluster's nodes, once every silent one has beaten again or been declared dead (up to
 * `STATUS_SETTLE_MAX_MS`): a one-off look at a cluster nobody else watches (its only node was
 * killed) would otherwise find it silent for ever, since death needs two readings.
 */
async function settledNodes(directory: Directory): Promise<NodeStatus[]> {
  let nodes = await directory.nodes();
  const waitMs = Math.max(0, ...nodes.filter((n) => n.silent).map((n) => confirmationMs(n.heartbeatIntervalMs) + 500));
  const deadline = Date.now() + Math.min(waitMs, STATUS_SETTLE_MAX_MS);
  while (nodes.some((n) => n.silent) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    nodes = await directory.nodes();
  }
  return nodes;
}

/** `objstore status --address`: the nodes of a cluster, alive or not. */
async function clusterStatus(address: string, json: boolean, print: (line: string) => void): Promise<number> {
  const directory = await Directory.connect(address);
  try {
    const nodes = await settledNodes(directory);
    if (json) {
      print(JSON.stringify({ address: redactedUrl(address), nodes }));
      return 0;
    }
    print(`cluster ${redactedUrl(address)}: ${nodes.filter((n) => n.alive).length} of ${nodes.length} nodes alive`);
    print(`${"NODE".padEnd(6)}  ${"ADDRESS".padEnd(21)}  ${"STORE".padEnd(24)}  ${"USED".padStart(10)}  ${"CAPACITY".padStart(10)}  ${"OBJECTS".padStart(8)}  STATE`);
    for (const n of nodes) {
      print(`${String(n.nodeNumber).padEnd(6)}  ${`${n.host}:${n.transferPort}`.padEnd(21)}  ${n.storeName.padEnd(24)}  ` +
        `${(n.load ? bytes(n.load.usedBytes) : "-").padStart(10)}  ${bytes(n.capacityBytes).padStart(10)}  ` +
        `${String(n.load?.objectCount ?? "-").padStart(8)}  ${n.silent ? "silent (missed its heartbeats)" : n.alive ? "alive" : "dead"}${n.quic ? `, QUIC on udp ${n.quic.port}` : ""}`);
    }
    return 0;
  } finally {
    await directory.close();
  }
}

/** `objstore memory --address`: every object of a cluster, and where each copy is. */
async function clusterMemory(address: string, json: boolean, print: (line: string) => void): Promise<number> {
  const directory = await Directory.connect(address);
  try {
    const memory = await listClusterObjects(directory);
    if (json) {
      print(JSON.stringify({ address: redactedUrl(address), ...memory }));
      return 0;
    }
    print(`cluster ${redactedUrl(address)}: ${memory.objects.length} objects on ${memory.answered.length} nodes`);
    print("");
    print(`${"ID".padEnd(56)}  ${"SIZE".padStart(10)}  ${"MADE ON".padStart(7)}  ${"HELD FOR".padStart(8)}  COPIES (node:where:refs)`);
    for (const o of memory.objects) {
      const copies = o.locations.map((l) => `${l.nodeNumber}:${l.where}:${l.refCount}`).join(" ");
      print(`${o.id}  ${bytes(o.sizeBytes).padStart(10)}  ${String(o.madeOn).padStart(7)}  ${String(o.heldFor.length).padStart(8)}  ${copies}`);
    }
    print("");
    print("MADE ON is the node that made it (its primary); HELD FOR counts processes and objects of other nodes holding it");
    if (memory.missing.length > 0) print(`nodes ${memory.missing.join(", ")} did not answer: their objects are not shown`);
    if (memory.truncated) print("some nodes listed only their first 10000 objects");
    return 0;
  } finally {
    await directory.close();
  }
}

/** `objstore dashboard`: serves the page until SIGINT or SIGTERM. */
async function runDashboard(invocation: Invocation, print: (line: string) => void): Promise<number> {
  const values = invocation.values;
  const host = values.host ?? "127.0.0.1";
  const token = values.token ?? process.env.OBJSTORE_DASHBOARD_TOKEN;
  const port = wholeNumber(values.port, "--port", 65535) ?? 8265;
  if (values.token === "") throw new UsageError("--token must not be empty");
  let source: DashboardSource;
  if (values.address !== undefined) {
    source = new ClusterSource(await Directory.connect(values.address), values.address);
  } else {
    if (invocation.store === undefined && storeNames().length > 1) {
      throw new UsageError(`several stores, pick one with --store: ${storeNames().join(", ")}`);
    }
    source = new LocalSource(invocation.store);
  }
  let dashboard: Dashboard;
  try {
    dashboard = await Dashboard.start({ source, host, port, token: token === "" ? undefined : token });
  } catch (error) {
    await source.close();
    throw error;
  }
  let signaled!: () => void;
  const leaving = new Promise<void>((resolve) => (signaled = resolve));
  process.once("SIGINT", () => signaled());
  process.once("SIGTERM", () => signaled());
  print(`dashboard of ${source.title} on ${dashboard.url}`);
  await leaving;
  await dashboard.close();
  return 0;
}

/** `objstore timeline`: the store's recent tasks as a Chrome trace, into a file or stdout. */
function timeline(name: string | undefined, output: string | undefined, print: (line: string) => void, printError: (line: string) => void): number {
  if (name === undefined) {
    const names = storesWithTaskEvents();
    if (names.length !== 1) {
      printError(`objstore: ${names.length === 0 ? "no store on this machine has recorded tasks" : `several stores recorded tasks, pick one with --store: ${names.join(", ")}`}`);
      return names.length === 0 ? 1 : 2;
    }
    name = names[0];
  }
  const processes = readTaskEvents(name);
  if (processes.length === 0) {
    printError(`objstore: store ${name} has recorded no tasks (recording is off with OBJSTORE_TASK_EVENTS=0)`);
    return 1;
  }
  const trace = chromeTrace(name, processes);
  const problems = traceProblems(trace);
  if (problems.length > 0) throw new Error(`the trace is not valid (a bug): ${problems.slice(0, 3).join("; ")}`);
  const text = JSON.stringify(trace);
  if (output === "-") {
    print(text);
    return 0;
  }
  const file = output ?? `timeline-${name}.json`;
  writeFileSync(file, text);
  print(`wrote ${trace.otherData.tasks} task runs of ${processes.length} processes (store ${name}) to ${file}: ` +
    "open it in https://ui.perfetto.dev or chrome://tracing");
  return 0;
}
