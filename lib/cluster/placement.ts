/**
 * Where a task runs in a cluster, in Ray's words: `"DEFAULT"` (this node while it has workers,
 * else another), `"SPREAD"` (round robin over the nodes with workers), or node affinity
 * (`{ nodeId, soft }`: that node; if it is not alive, a soft affinity falls back to the
 * default and a hard one fails at once, naming the node).
 */
import { ObjstoreError } from "../errors.ts";
import type { NodeStatus } from "./directory.ts";

/** How a task is placed (`remote(fn).options({ scheduling })`). */
export type Scheduling = "DEFAULT" | "SPREAD" | { nodeId: string; soft?: boolean };

/** What placement knows of the submitting process's own node. */
export interface LocalNode {
  nodeNumber: number;
  /** Whether the submitting process has workers of its own to run tasks here (else a task
   * placed on this node goes to the node's process, as to any other node). */
  hasWorkers: boolean;
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

/**
 * The node number to run a task on. `nodes` is the cluster as last seen; `turn` counts the
 * placements so far (for round robin); `excluded` are nodes the task must avoid (one that died
 * under it).
 */
export function placeTask(scheduling: Scheduling, nodes: readonly NodeStatus[], local: LocalNode, turn: number, excluded: ReadonlySet<number> = new Set()): number {
  const candidates = nodes.filter((n) => n.alive && !excluded.has(n.nodeNumber) && (n.numWorkers > 0 || (n.nodeNumber === local.nodeNumber && local.hasWorkers)))
    .map((n) => n.nodeNumber);
  if (local.hasWorkers && !excluded.has(local.nodeNumber) && !candidates.includes(local.nodeNumber)) candidates.push(local.nodeNumber);
  candidates.sort((a, b) => a - b);
  if (typeof scheduling === "object") {
    const wanted = nodes.find((n) => n.nodeId === scheduling.nodeId || n.storeName === scheduling.nodeId);
    if (wanted !== undefined && candidates.includes(wanted.nodeNumber)) return wanted.nodeNumber;
    if (!scheduling.soft) {
      const why = wanted === undefined ? "is not a node of the cluster" : !wanted.alive ? "is not alive" : excluded.has(wanted.nodeNumber) ? "died under this task" : "has no workers";
      throw new ObjstoreError(`scheduling: node ${scheduling.nodeId} ${why}; nodes that can run tasks: ${describe(nodes, candidates)} (or pass soft: true to run elsewhere)`);
    }
    return placeTask("DEFAULT", nodes, local, turn, excluded);
  }
  if (candidates.length === 0) {
    throw new ObjstoreError(`no node of the cluster can run tasks: none alive has workers${excluded.size > 0 ? ` (nodes ${[...excluded].join(", ")} died under this task)` : ""}`);
  }
  if (scheduling === "DEFAULT" && candidates.includes(local.nodeNumber)) return local.nodeNumber;
  return candidates[turn % candidates.length];
}

function describe(nodes: readonly NodeStatus[], candidates: number[]): string {
  if (candidates.length === 0) return "none";
  return candidates.map((number) => {
    const node = nodes.find((n) => n.nodeNumber === number);
    return node === undefined ? `${number}` : `${node.nodeId} (${node.storeName})`;
  }).join(", ");
}
