/**
 * The objects of a whole cluster and where each copy is, for `objstore memory --address`: each
 * alive node's keeper is asked, through its request list, to leave a listing of its store in
 * the directory (lib/cluster/holds.ts); the listings are merged by object.
 */
import { randomBytes } from "node:crypto";
import type { Directory } from "./directory.ts";
import { nodeNumberOfHex } from "./node_number.ts";

/** One object of the cluster. */
export interface ClusterObject {
  id: string;
  sizeBytes: number;
  /** The node that made it (its primary), by number. */
  madeOn: number;
  /** Every node holding it: the primary and the copies, with the state there and the
   * processes of that node holding a reference. */
  locations: { nodeNumber: number; where: string; refCount: number }[];
  /** Who on other nodes holds it: processes (`p:<node>:<pid>:…`) and objects (`c:<node>:<id>`). */
  heldFor: string[];
}

export interface ClusterMemory {
  objects: ClusterObject[];
  /** Alive nodes that answered, and those that did not within the wait. */
  answered: number[];
  missing: number[];
  /** True if some node listed only the first of its objects. */
  truncated: boolean;
}

/** Asks every alive node for its objects, waiting up to `waitMs` for the answers. */
export async function listClusterObjects(directory: Directory, waitMs = 3000): Promise<ClusterMemory> {
  const alive = (await directory.nodes()).filter((node) => node.alive).map((node) => node.nodeNumber);
  const nonce = randomBytes(8).toString("hex");
  for (const nodeNumber of alive) await directory.sendHolds(nodeNumber, [`m ${nonce}`]);
  const deadline = Date.now() + waitMs;
  let listings = await directory.listings(nonce);
  while (listings.length < alive.length && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    listings = await directory.listings(nonce);
  }
  const byId = new Map<string, ClusterObject>();
  for (const listing of listings) {
    for (const o of listing.objects) {
      let object = byId.get(o.id);
      if (object === undefined) {
        const madeOn = nodeNumberOfHex(o.id);
        byId.set(o.id, object = { id: o.id, sizeBytes: o.sizeBytes, madeOn, locations: [], heldFor: [] });
      }
      object.locations.push({ nodeNumber: listing.nodeNumber, where: o.where, refCount: o.refCount });
      object.heldFor.push(...listing.heldFor[o.id] ?? []);
    }
  }
  const answered = listings.map((listing) => listing.nodeNumber);
  return {
    objects: [...byId.values()].sort((a, b) => a.madeOn - b.madeOn || a.id.localeCompare(b.id)),
    answered,
    missing: alive.filter((nodeNumber) => !answered.includes(nodeNumber)),
    truncated: listings.some((listing) => listing.truncated),
  };
}
