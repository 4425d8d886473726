/**
 * Placement groups, as in Ray: bundles of resources reserved together, for tasks and actors
 * that must run side by side (`PACK`, `STRICT_PACK`) or apart (`SPREAD`, `STRICT_SPREAD`). In a
 * cluster the bundles are reserved on its nodes, in the directory, all or nothing
 * (`Directory.reserveBundles`), so two groups never take the same room; outside one, on this
 * driver's workers. A reservation lasts until `remove()`, the driver's end, or its death (the
 * node's keeper gives back what a killed driver reserved).
 *
 * What a reservation holds back is room for other groups: tasks outside any group are placed
 * as before (by what nodes have, not by what groups reserved).
 */
import { randomBytes } from "node:crypto";
import { ObjstoreError } from "../errors.ts";
import { type Session, session } from "../session.ts";
import {
  type Bundle,
  type Capacity,
  checkBundles,
  checkStrategy,
  lacksForBundle,
  placeBundles,
  type PlacementStrategy,
  type Requirements,
  whyBundlesInfeasible,
  withoutBundle,
  workerSlots,
} from "../cluster/placement.ts";

/** How often a group waiting for room looks again. */
const RESERVE_RETRY_MS = 500;

/** Options of `placementGroup`. */
export interface PlacementGroupOptions {
  /** How the bundles go on nodes (default "PACK"). */
  strategy?: PlacementStrategy;
}

/** The groups of this process that hold (or wait for) a reservation on this machine alone. */
const localGroups = new Set<PlacementGroup>();
/** Every group of this process not removed: given back at shutdown. */
const liveGroups = new Set<PlacementGroup>();

/**
 * Bundles of resources reserved together. Tasks and actors run in one with
 * `.options({ placementGroup, placementGroupBundleIndex })`; a task submitted before the group
 * is ready waits for it.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ numWorkers: 2 });
 * const group = os.placementGroup([{ CPU: 1 }, { CPU: 1 }], { strategy: "PACK" });
 * await group.ready();
 * const where = os.remote(() => 42);
 * console.log(await os.get(where.options({ placementGroup: group, placementGroupBundleIndex: 1 }).remote()));
 * group.remove();
 * await os.shutdown();
 * ```
 */
export class PlacementGroup {
  /** Unique in the cluster. */
  readonly id: string;
  readonly bundles: readonly Bundle[];
  readonly strategy: PlacementStrategy;
  readonly #session: Session;
  /** The node of each bundle once reserved (0 outside a cluster). */
  #nodes: number[] | undefined;
  #removed = false;
  readonly #ready: Promise<void>;
  #resolveReady!: () => void;
  #rejectReady!: (error: Error) => void;
  #givenBack: Promise<void> = Promise.resolve();
  /** Actors started in it (killed with it). */
  readonly #actors: (() => void)[] = [];

  /** @internal Use `placementGroup()`. */
  constructor(s: Session, bundles: readonly Bundle[], strategy: PlacementStrategy) {
    this.#session = s;
    this.id = randomBytes(8).toString("hex");
    this.bundles = bundles;
    this.strategy = strategy;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {}); // its failure is the caller's to see through ready()
    liveGroups.add(this);
    void this.#reserveUntilDone();
  }

  /** Resolves once every bundle is reserved; rejects if it never can be, or is removed first. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** True once every bundle is reserved, waiting at most `timeoutSeconds` (Ray's `pg.wait`). */
  async wait(timeoutSeconds: number): Promise<boolean> {
    if (typeof timeoutSeconds !== "number" || !(timeoutSeconds >= 0)) throw new TypeError(`wait: timeoutSeconds must be ≥ 0, got ${timeoutSeconds}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutSeconds * 1000)));
    try {
      return await Promise.race([this.#ready.then(() => true, () => false), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Gives its bundles back and kills the actors started in it; tasks waiting for it fail. */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    liveGroups.delete(this);
    localGroups.delete(this);
    this.#rejectReady(new ObjstoreError(`placement group ${this.id} was removed`));
    for (const kill of this.#actors.splice(0)) kill();
    const nodes = this.#nodes;
    this.#nodes = undefined;
    const cluster = this.#session.cluster;
    if (nodes === undefined || cluster === undefined) return;
    this.#givenBack = cluster.directory().then(async (directory) => {
      for (const [i, node] of nodes.entries()) await directory.release(node, this.#field(i));
    }).catch(() => {}); // Redis away: the node's keeper gives them back once this process ends
  }

  /** @internal Settles once a removed group's bundles are given back. */
  givenBack(): Promise<void> {
    return this.#givenBack;
  }

  /**
   * @internal The bundle a task or actor asking `needs` runs in: `index`, or else the first
   * with room for it. Throws, naming what is missing, if it has none.
   */
  bundleFor(needs: Requirements, index: number | undefined): number {
    if (this.#removed) throw new ObjstoreError(`placement group ${this.id} was removed`);
    const asked = { CPU: needs.numCpus, ...needs.resources };
    const fits = (i: number) => lacksForBundle(asked, { nodeNumber: 0, cpus: this.bundles[i].CPU ?? 0, resources: this.bundles[i] });
    if (index !== undefined) {
      if (!Number.isInteger(index) || index < 0 || index >= this.bundles.length) {
        throw new TypeError(`options: placementGroupBundleIndex must be a whole number from 0 to ${this.bundles.length - 1}, got ${index}`);
      }
      const lacks = fits(index);
      if (lacks !== undefined) throw new ObjstoreError(`bundle ${index} of placement group ${this.id} (${JSON.stringify(this.bundles[index])}) lacks ${lacks}: ask for less (numCpus: 0 for no worker slot) or choose another bundle`);
      return index;
    }
    const first = this.bundles.findIndex((_, i) => fits(i) === undefined);
    if (first < 0) throw new ObjstoreError(`no bundle of placement group ${this.id} has room for ${JSON.stringify(asked)}: its bundles are ${JSON.stringify(this.bundles)}`);
    return first;
  }

  /** @internal The node of bundle `index` once the group is ready (0 outside a cluster). */
  async nodeOf(index: number): Promise<number> {
    await this.#ready;
    if (this.#removed || this.#nodes === undefined) throw new ObjstoreError(`placement group ${this.id} was removed`);
    return this.#nodes[index];
  }

  /** @internal The node of bundle `index` if the group is ready now. */
  nodeNow(index: number): number | undefined {
    return this.#removed ? undefined : this.#nodes?.[index];
  }

  /** @internal Kills an actor started in it when it is removed. */
  onRemove(kill: () => void): void {
    if (this.#removed) kill();
    else this.#actors.push(kill);
  }

  #field(index: number): string {
    return `${this.#session.cluster!.borrows.holder}|${this.id}|${index}`;
  }

  async #reserveUntilDone(): Promise<void> {
    while (!this.#removed && this.#nodes === undefined) {
      try {
        const placed = this.#session.cluster === undefined ? this.#reserveHere() : await this.#reserveInCluster();
        if (placed !== undefined && !this.#removed) {
          this.#nodes = placed;
          this.#resolveReady();
          return;
        }
      } catch (error) {
        this.#rejectReady(error as Error); // before remove() says "removed"
        this.remove();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, RESERVE_RETRY_MS));
    }
  }

  /** Outside a cluster: room on this driver's workers, less what its other groups hold. */
  #reserveHere(): number[] | undefined {
    const all: Capacity = { nodeNumber: 0, cpus: this.#session.options.numWorkers, resources: {} };
    if (placeBundles(this.bundles, this.strategy, [all]) === undefined) {
      throw new ObjstoreError(`placement group ${JSON.stringify(this.bundles)} (${this.strategy}) can never be reserved: ${whyBundlesInfeasible(this.bundles, this.strategy, [all])} (outside a cluster there is one node: this driver's ${all.cpus} workers, and no custom resources)`);
    }
    let left = all;
    for (const group of localGroups) {
      if (group.#session.closed) localGroups.delete(group); // of a session ended without a scheduler
      else for (const bundle of group.bundles) left = withoutBundle(left, bundle);
    }
    const placed = placeBundles(this.bundles, this.strategy, [left]);
    if (placed !== undefined) localGroups.add(this);
    return placed;
  }

  async #reserveInCluster(): Promise<number[] | undefined> {
    const cluster = this.#session.cluster!;
    const nodes = (await cluster.reloadNodes()).filter((node) => node.alive);
    const capacities = nodes.map((node): Capacity => ({
      nodeNumber: node.nodeNumber,
      cpus: workerSlots(node, cluster.node.nodeNumber, this.#session.options.numWorkers),
      resources: node.resources,
    }));
    if (placeBundles(this.bundles, this.strategy, capacities) === undefined) {
      throw new ObjstoreError(`placement group ${JSON.stringify(this.bundles)} (${this.strategy}) can never be reserved: ${whyBundlesInfeasible(this.bundles, this.strategy, capacities)}`);
    }
    const directory = await cluster.directory();
    // A silent node (its heartbeat lapsed) may be dead: no bundle goes there until it beats.
    const silent = new Set(nodes.filter((node) => node.silent).map((node) => node.nodeNumber));
    const left: Capacity[] = [];
    for (const capacity of capacities) {
      if (silent.has(capacity.nodeNumber)) continue;
      let room = capacity;
      for (const bundle of (await directory.reservations(capacity.nodeNumber)).values()) room = withoutBundle(room, bundle);
      left.push(room);
    }
    const placed = placeBundles(this.bundles, this.strategy, left);
    if (placed === undefined) return undefined;
    const byNode = new Map(capacities.map((capacity) => [capacity.nodeNumber, { CPU: capacity.cpus, ...capacity.resources }]));
    const reserved = await directory.reserveBundles(placed.map((node, i) => ({
      nodeNumber: node,
      field: this.#field(i),
      bundle: { ...this.bundles[i] },
      capacity: byNode.get(node)!,
    })));
    return reserved ? placed : undefined;
  }
}

/**
 * Reserves `bundles` of resources (`CPU`: worker slots, and custom resources by name) on the
 * nodes of the cluster, or on this driver's workers; returns the group at once, ready once its
 * bundles are reserved (`await group.ready()`). A group no node set can ever take fails its
 * `ready()` at once, naming what is missing.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ numWorkers: 2 });
 * const group = os.placementGroup([{ CPU: 1 }, { CPU: 1 }], { strategy: "SPREAD" });
 * console.log(await group.wait(10)); // true
 * os.removePlacementGroup(group);
 * await os.shutdown();
 * ```
 */
export function placementGroup(bundles: Record<string, number>[], options: PlacementGroupOptions = {}): PlacementGroup {
  return new PlacementGroup(session(), checkBundles(bundles), checkStrategy(options.strategy ?? "PACK"));
}

/** Removes a placement group: `group.remove()`. */
export function removePlacementGroup(group: PlacementGroup): void {
  if (!(group instanceof PlacementGroup)) throw new TypeError("removePlacementGroup: expected a placement group");
  group.remove();
}

/** @internal Gives back every group of this process (its session ends). */
export async function removeAllPlacementGroups(): Promise<void> {
  const groups = [...liveGroups];
  for (const group of groups) group.remove();
  await Promise.all(groups.map((group) => group.givenBack()));
}
