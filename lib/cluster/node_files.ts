/**
 * The node files of this machine: how its processes find the nodes running on it. Each node
 * (`objstore start`, lib/node.ts) writes `<tmp>/objstore-nodes-<uid>/<store>.json`, 0600 in a
 * 0700 folder: it holds the cluster token, so only the user who runs the node reads it.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import { processRuns } from "../processes.ts";

/** A node's file: how the processes of its machine find it. */
export interface NodeFile {
  storeName: string;
  nodeId: string;
  nodeNumber: number;
  pid: number;
  /** The directory's address with its password hidden. */
  address: string;
  host: string;
  transferPort: number;
  /** Set when the node serves QUIC too (`--transport quic`): its processes then pull over QUIC
   * from nodes that serve it, if their runtime has QUIC. */
  quicPort?: number;
  /** The cluster token, for the processes of this machine that attach to the node. */
  token: string;
}

/** The folder of this user's node files. */
export function nodeFolder(): string {
  return path.join(tmpdir(), `objstore-nodes-${process.getuid?.() ?? "user"}`);
}

function nodeFilePath(storeName: string): string {
  return path.join(nodeFolder(), `${storeName}.json`);
}

/** The nodes of this machine whose process runs (files of dead nodes are removed). */
export function localNodes(): NodeFile[] {
  let names: string[];
  try {
    names = readdirSync(nodeFolder()).filter((name) => name.endsWith(".json"));
  } catch {
    return [];
  }
  const nodes: NodeFile[] = [];
  for (const name of names) {
    const file = path.join(nodeFolder(), name);
    try {
      const node = JSON.parse(readFileSync(file, "utf8")) as NodeFile;
      if (processRuns(node.pid)) nodes.push(node);
      else rmSync(file, { force: true });
    } catch { /* being written, or removed meanwhile */ }
  }
  return nodes.sort((a, b) => a.storeName.localeCompare(b.storeName));
}


export function writeNodeFile(file: NodeFile): void {
  mkdirSync(nodeFolder(), { recursive: true, mode: 0o700 });
  writeFileSync(nodeFilePath(file.storeName), JSON.stringify(file), { mode: 0o600 });
}

export function removeNodeFile(storeName: string): void {
  rmSync(nodeFilePath(storeName), { force: true });
}
