/**
 * Reading a store of this machine from the command line (`objstore memory`, `status`,
 * `dashboard`): attaching without creating, and what the processes using it are.
 */
import { readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { loadLibrary } from "../ffi/load.ts";
import { NativeStore } from "../store/native_store.ts";
import { processRuns } from "../processes.ts";

/** Attaches to store `name`, first reclaiming what dead processes held: a dead process is
 * never shown, nor counted as holding an object. */
export async function attach(name: string): Promise<NativeStore> {
  const store = NativeStore.open(await loadLibrary(), name, { create: false, exclusive: false, capacityBytes: 0, prefault: false });
  store.maintain();
  return store;
}

/** A process using a store, as `objstore status` lists it. */
export interface StoreProcess {
  pid: number;
  role: "driver" | "worker";
  command: string;
}

/** The pids attached to `store`, other than this process. */
export function otherPids(store: NativeStore): number[] {
  return [...new Set(store.attachedPids())].filter((pid) => pid !== process.pid);
}

/** Whether `pid` is a driver or a worker (workers run lib/tasks/worker_main), and its command line. */
export function describeProcess(pid: number): StoreProcess {
  const command = commandLine(pid);
  return { pid, role: command.includes("worker_main") ? "worker" : "driver", command: command.slice(0, 100) };
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return ""; // exited meanwhile
  }
}

/** Which JavaScript runtime `pid` runs ("node", "deno", "bun"), from its executable; else its name. */
export function runtimeOf(pid: number): string {
  let executable: string;
  try {
    executable = path.basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    executable = path.basename(commandLine(pid).split(" ")[0] ?? "");
  }
  const known = /^(node|deno|bun)/.exec(executable);
  return known?.[1] ?? (executable || "?");
}

export { processRuns };
