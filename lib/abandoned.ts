/**
 * Stores whose processes all died without leaving (killed with SIGKILL, or crashed): nothing of
 * theirs ran at exit, so whoever looks next removes them, with their spill files and channels.
 * `init` and `objstore status` look (ARCHITECTURE.md, "Leaving a store").
 */
import { readdirSync } from "node:fs";
import type { Library } from "./ffi/load.ts";
import { NativeStore } from "./store/native_store.ts";
import { isChannelFile, removeChannelsOfMissingStores, removeOrphanedChannels } from "./tasks/channel.ts";

const SHM_DIRECTORY = "/dev/shm";
const STORE_PREFIX = "objstore-";

/** Names of the stores in /dev/shm. */
export function storeNames(): string[] {
  return readdirSync(SHM_DIRECTORY)
    .filter((f) => f.startsWith(STORE_PREFIX) && !isChannelFile(f))
    .map((f) => f.slice(STORE_PREFIX.length))
    .sort();
}

/**
 * Removes every store of this machine none of whose processes is alive; returns their names.
 * A store in use is only looked at (its client table, without attaching); another user's, or
 * one this library cannot read, is left alone.
 */
export function removeAbandonedStores(library: Library): string[] {
  const removed: string[] = [];
  for (const name of storeNames()) {
    try {
      NativeStore.destroy(library, name);
    } catch {
      continue; // in use, gone meanwhile, or not ours to judge
    }
    removeOrphanedChannels(name);
    removed.push(name);
  }
  removeChannelsOfMissingStores();
  return removed;
}
