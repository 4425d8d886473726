/**
 * Where a task runs in a cluster, in Ray's words:
 * - `"DEFAULT"`: the node holding the most bytes of its ref arguments (locality), else this
 *   node while the driver's own workers keep up, else the least loaded node (spillback);
 * - `"SPREAD"`: round robin over the nodes that can run it;
 * - node affinity (`{ nodeId, soft }`): that node; if it cannot run it, a soft affinity falls
 *   back to the default and a hard one fails at once, naming the node.
 * Only nodes that have what the task asks for are considered (`numCpus`: a node has one per
 * worker; custom `resources`, declared by `objstore start --resources`). A task no node can
 * ever run fails at once, naming what is missing.
 */
import { ObjstoreError } from "../errors.ts";
import type { NodeStatus } from "./directory.ts";

/** How a task is placed (`remote(fn).options({ scheduling })`). */
export type Scheduling = "DEFAULT" | "SPREAD" | { nodeId: string; soft?: boolean };

/** What a task asks of the node it runs on. */
export interface Requirements {
  /** Worker slots (default 1). */
  numCpus: number;
  /** Custom resources by name (default none). */
  resources: Readonly<Record<string, number>>;
}

/** What placement knows of one task. */
export interface Placing extends Requirements {
  scheduling: Scheduling;
  /** Bytes of its ref arguments each node holds (the node that made each), as far as known. */
  argBytes: ReadonlyMap<number, number>;
}

/** What placement knows of the submitting process's own node. */
export interface LocalNode {
  nodeNumber: number;
  /** The driver's own workers, which run tasks placed on this node (without any, a task
   * placed here goes to the node's process, as to any other node). */
  workers: number;
  /** True while the driver's own workers have tasks waiting for them. */
  saturated: boolean;
}

/** Checks a `scheduling` option; a TypeError names what is wrong. */
export function checkScheduling(scheduling: unknown): Scheduling {
  if (scheduling === "DEFAULT" || scheduling === "SPREAD") return scheduling;
  if (typeof scheduling === "object" && scheduling !== null && typeof (scheduling as { nodeId?: unknown }).nodeId === "string") {
    const soft = (scheduling as { soft?: unknown }).soft;
    if (soft === undefined || typeof soft === "boolean") return { nodeId: (scheduling as { nodeId: string }).nodeId, soft };
  }
  throw new TypeError(`options: scheduling must be "DEFAULT", "SPREAD" or { nodeId: string, soft?: boolean }, got ${JSON.stringify(scheduling)}`);
}

/** Checks `numCpus` and `resources` options; a TypeError names what is wrong. */
export function checkRequirements(numCpus: unknown, resources: unknown): Requirements {
  if (typeof numCpus !== "number" || !(numCpus >= 0) || !Number.isFinite(numCpus)) throw new TypeError(`options: numCpus must be a number ≥ 0, got ${numCpus}`);
  if (typeof resources !== "object" || resources === null || Array.isArray(resources)) {
    throw new TypeError(`options: resources must be an object of names to amounts, e.g. { GPU: 1 }, got ${JSON.stringify(resources)}`);
  }
  for (const [name, amount] of Object.entries(resources)) {
    if (typeof amount !== "number" || !(amount >= 0) || !Number.isFinite(amount)) throw new TypeError(`options: resources.${name} must be an amount ≥ 0, got ${amount}`);
  }
  return { numCpus, resources: resources as Record<string, number> };
}

/** What `node` lacks of `needs`, in words; undefined if it has it all. */
export function missing(needs: Requirements, cpus: number, resources: Readonly<Record<string, number>>): string | undefined {
  if (needs.numCpus > cpus) return `numCpus ${needs.numCpus} (it has ${cpus})`;
  for (const [name, amount] of Object.entries(needs.resources)) {
    if (amount > (resources[name] ?? 0)) return `${name} ${amount} (it has ${resources[name] ?? 0})`;
  }
  return undefined;
}

/** Worker slots node `node` offers: its workers, and on the driver's own node (`localNodeNumber`)
 * the driver's own (`localWorkers`), which run what is placed there. */
export function workerSlots(node: NodeStatus, localNodeNumber: number, localWorkers: number): number {
  return node.nodeNumber === localNodeNumber ? Math.max(localWorkers, node.numWorkers) : node.numWorkers;
}

/**
 * The node number to run a task on. `nodes` is the cluster as last seen; `turn` counts the
 * placements so far (for round robin); `excluded` are nodes the task must avoid (one that died
 * under it).
 */
export function placeTask(task: Placing, nodes: readonly NodeStatus[], local: LocalNode, turn: number, excluded: ReadonlySet<number> = new Set()): number {
  const cpusOf = (n: NodeStatus) => workerSlots(n, local.nodeNumber, local.workers);
  const alive = nodes.filter((n) => n.alive && !excluded.has(n.nodeNumber));
  const able = alive.filter((n) => missing(task, cpusOf(n), n.resources) === undefined).sort((a, b) => a.nodeNumber - b.nodeNumber);
  const scheduling = task.scheduling;
  if (typeof scheduling === "object") {
    const wanted = nodes.find((n) => n.nodeId === scheduling.nodeId || n.storeName === scheduling.nodeId);
    if (wanted !== undefined && able.includes(wanted)) return wanted.nodeNumber;
    if (!scheduling.soft) {
      const why = wanted === undefined
        ? "is not a node of the cluster"
        : !wanted.alive ? "is not alive" : excluded.has(wanted.nodeNumber) ? "died under this task" : `lacks ${missing(task, cpusOf(wanted), wanted.resources)}`;
      throw new ObjstoreError(`scheduling: node ${scheduling.nodeId} ${why}; nodes that can run it: ${describe(able)} (or pass soft: true to run elsewhere)`);
    }
  }
  if (able.length === 0) throw new ObjstoreError(`no node of the cluster can run this task: ${infeasible(task, alive, cpusOf)}`);
  // A silent node (its heartbeat lapsed) may be dead: only when every able node is silent.
  const beating = able.filter((n) => !n.silent);
  const candidates = beating.length > 0 ? beating : able;
  if (scheduling === "SPREAD") return candidates[turn % candidates.length].nodeNumber;
  return placeByDefault(task, candidates, local, turn);
}

function placeByDefault(task: Placing, able: NodeStatus[], local: LocalNode, turn: number): number {
  // Locality: the node holding the most argument bytes, if it can run the task.
  let best: NodeStatus | undefined;
  for (const node of able) {
    const bytes = task.argBytes.get(node.nodeNumber) ?? 0;
    if (bytes > 0 && (best === undefined || bytes > (task.argBytes.get(best.nodeNumber) ?? 0))) best = node;
  }
  if (best !== undefined) return best.nodeNumber;
  const here = able.find((n) => n.nodeNumber === local.nodeNumber);
  if (here !== undefined && local.workers > 0 && !local.saturated) return here.nodeNumber;
  // Spillback: the least loaded node (tasks running per worker), in turn among equals.
  const loadOf = (n: NodeStatus) => n.nodeNumber === local.nodeNumber && local.workers > 0 ? (local.saturated ? 1 : 0) : (n.load?.running ?? 0) / Math.max(1, n.numWorkers);
  const least = Math.min(...able.map(loadOf));
  const calm = able.filter((n) => loadOf(n) === least);
  return calm[turn % calm.length].nodeNumber;
}

function infeasible(task: Requirements, alive: NodeStatus[], cpusOf: (n: NodeStatus) => number): string {
  if (alive.length === 0) return "no node is alive";
  const asks = [`numCpus ${task.numCpus}`, ...Object.entries(task.resources).map(([name, amount]) => `${name} ${amount}`)].join(", ");
  return `it needs ${asks}; ${alive.map((n) => `${n.storeName} lacks ${missing(task, cpusOf(n), n.resources)}`).join("; ")}`;
}

function describe(nodes: readonly NodeStatus[]): string {
  return nodes.length === 0 ? "none" : nodes.map((n) => `${n.nodeId} (${n.storeName})`).join(", ");
}

/** One bundle of a placement group: `CPU` (worker slots) and custom resources, by name. */
export type Bundle = Readonly<Record<string, number>>;

/** How a placement group's bundles go on nodes, in Ray's words. */
export type PlacementStrategy = "PACK" | "SPREAD" | "STRICT_PACK" | "STRICT_SPREAD";

/** What a node offers bundles: its worker slots and custom resources (less what is reserved). */
export interface Capacity {
  nodeNumber: number;
  cpus: number;
  resources: Readonly<Record<string, number>>;
}

/** Checks a placement group's bundles; a TypeError names what is wrong. */
export function checkBundles(bundles: unknown): Bundle[] {
  if (!Array.isArray(bundles) || bundles.length === 0) {
    throw new TypeError(`placementGroup: bundles must be a non-empty array of { resource: amount }, e.g. [{ CPU: 1 }, { CPU: 1, GPU: 1 }], got ${JSON.stringify(bundles)}`);
  }
  bundles.forEach((bundle, i) => {
    if (typeof bundle !== "object" || bundle === null || Array.isArray(bundle) || Object.keys(bundle).length === 0) {
      throw new TypeError(`placementGroup: bundle ${i} must be a non-empty { resource: amount }, e.g. { CPU: 1 }, got ${JSON.stringify(bundle)}`);
    }
    for (const [name, amount] of Object.entries(bundle)) {
      if (typeof amount !== "number" || !(amount >= 0) || !Number.isFinite(amount)) throw new TypeError(`placementGroup: bundle ${i}: ${name} must be an amount ≥ 0, got ${amount}`);
    }
  });
  return bundles as Bundle[];
}

/** Checks a placement strategy; a TypeError names what is wrong. */
export function checkStrategy(strategy: unknown): PlacementStrategy {
  if (strategy === "PACK" || strategy === "SPREAD" || strategy === "STRICT_PACK" || strategy === "STRICT_SPREAD") return strategy;
  throw new TypeError(`placementGroup: strategy must be "PACK", "SPREAD", "STRICT_PACK" or "STRICT_SPREAD", got ${JSON.stringify(strategy)}`);
}

/** What `node` lacks of `bundle`, in words; undefined if it has it all. */
export function lacksForBundle(bundle: Bundle, node: Capacity): string | undefined {
  for (const [name, amount] of Object.entries(bundle)) {
    const has = name === "CPU" ? node.cpus : node.resources[name] ?? 0;
    if (amount > has + 1e-9) return `${name} ${amount} (it has ${has})`;
  }
  return undefined;
}

/** What `node` has left once `bundle` is taken from it. */
export function withoutBundle(node: Capacity, bundle: Bundle): Capacity {
  const resources = { ...node.resources };
  let cpus = node.cpus;
  for (const [name, amount] of Object.entries(bundle)) {
    if (name === "CPU") cpus -= amount;
    else resources[name] = (resources[name] ?? 0) - amount;
  }
  return { nodeNumber: node.nodeNumber, cpus, resources };
}

/**
 * The node of each bundle, or undefined if `nodes` cannot take them all by `strategy`:
 * STRICT_PACK all on one node; PACK on as few as it can (one if any fits them all); SPREAD over
 * as many as it can; STRICT_SPREAD each on a node of its own. First fit, in node order (a
 * STRICT_SPREAD that only a search would find is not found).
 */
export function placeBundles(bundles: readonly Bundle[], strategy: PlacementStrategy, nodes: readonly Capacity[]): number[] | undefined {
  const sorted = [...nodes].sort((a, b) => a.nodeNumber - b.nodeNumber);
  if (strategy === "STRICT_PACK" || strategy === "PACK") {
    const all = bundles.reduce<Record<string, number>>((sum, bundle) => {
      for (const [name, amount] of Object.entries(bundle)) sum[name] = (sum[name] ?? 0) + amount;
      return sum;
    }, {});
    const one = sorted.find((node) => lacksForBundle(all, node) === undefined);
    if (one !== undefined) return bundles.map(() => one.nodeNumber);
    if (strategy === "STRICT_PACK") return undefined;
  }
  const left = new Map(sorted.map((node) => [node.nodeNumber, node]));
  const used = new Map<number, number>();
  const placed: number[] = [];
  for (const bundle of bundles) {
    const candidates = sorted.filter((node) => lacksForBundle(bundle, left.get(node.nodeNumber)!) === undefined)
      .filter((node) => strategy !== "STRICT_SPREAD" || !used.has(node.nodeNumber));
    // PACK: nodes already used first; SPREAD: the least used first.
    const order = (node: Capacity) => strategy === "PACK" ? -(used.get(node.nodeNumber) ?? 0) : used.get(node.nodeNumber) ?? 0;
    const chosen = candidates.sort((a, b) => order(a) - order(b) || a.nodeNumber - b.nodeNumber)[0];
    if (chosen === undefined) return undefined;
    placed.push(chosen.nodeNumber);
    used.set(chosen.nodeNumber, (used.get(chosen.nodeNumber) ?? 0) + 1);
    left.set(chosen.nodeNumber, withoutBundle(left.get(chosen.nodeNumber)!, bundle));
  }
  return placed;
}

/** Why no cluster of `nodes` (with nothing reserved) can ever take the bundles. */
export function whyBundlesInfeasible(bundles: readonly Bundle[], strategy: PlacementStrategy, nodes: readonly Capacity[]): string {
  if (nodes.length === 0) return "no node is alive";
  if (strategy === "STRICT_SPREAD" && bundles.length > nodes.length) return `STRICT_SPREAD puts each of its ${bundles.length} bundles on a node of its own, and ${nodes.length} node(s) are alive`;
  for (const [i, bundle] of bundles.entries()) {
    if (nodes.every((node) => lacksForBundle(bundle, node) !== undefined)) {
      return `no node has bundle ${i} (${JSON.stringify(bundle)}): ${nodes.map((node) => `node ${node.nodeNumber} lacks ${lacksForBundle(bundle, node)}`).join("; ")}`;
    }
  }
  return strategy === "STRICT_PACK" ? `no node has all ${bundles.length} bundles together` : "the nodes cannot take all its bundles at once";
}
