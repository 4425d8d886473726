/** `InitOptions`: their defaults and their checks. */
import { statfsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ObjstoreError } from "./errors.ts";

/** Where spilled objects go (SPEC "Lifecycle"). */
export type SpillOption =
  | { type: "filesystem"; directory?: string }
  | { type: "s3"; bucket: string; prefix?: string; endpoint?: string; region?: string }
  | false;

/** Options of `init()`; all optional. */
export interface InitOptions {
  /** Bytes of shared memory for objects. Default: 30% of system memory, capped by /dev/shm. */
  objectStoreMemory?: number;
  /** Task worker processes on this node. Default: the number of CPUs. */
  numWorkers?: number;
  /** Spill target; default a fresh folder under the OS temp dir; `false` disables spilling. */
  spill?: SpillOption;
  /** Fraction of `objectStoreMemory` above which cold objects spill (default 0.8). */
  spillThreshold?: number;
  /** Absent: embedded single node. `"redis://host:port"`: join that cluster. */
  address?: string;
  /** Processes passing the same name share one store; absent: a fresh private name. */
  storeName?: string;
  /** Fault the store's first GiB in from a background thread so puts copy at warm speed (default true). */
  prefault?: boolean;
}

export interface ResolvedOptions {
  objectStoreMemory: number;
  numWorkers: number;
  spill: SpillOption;
  spillThreshold: number;
  address: string | undefined;
  storeName: string | undefined;
  prefault: boolean;
}

const storeNamePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

function invalid(message: string): never {
  throw new TypeError(`init: ${message}`);
}

/** The shared memory this machine can give a store: free space of /dev/shm. */
export function shmFreeBytes(): number {
  try {
    const s = statfsSync("/dev/shm");
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return os.totalmem();
  }
}

/** Shared memory of the store's index per byte of objects, at most: one object per KiB, each
 * with 128 bytes of slot and up to 32 bytes of hash table (zig/src/layout.zig). */
const INDEX_BYTES_PER_BYTE = 160 / 1024;

function defaultMemory(): number {
  const wanted = Math.floor(os.totalmem() * 0.3);
  const capped = Math.min(wanted, Math.floor((shmFreeBytes() * 0.95) / (1 + INDEX_BYTES_PER_BYTE)));
  return Math.max(64 * 1024 * 1024, capped - (capped % 4096));
}

export function resolveOptions(options: InitOptions = {}): ResolvedOptions {
  if (typeof options !== "object" || options === null) invalid("options must be an object");
  const memory = options.objectStoreMemory ?? defaultMemory();
  if (!Number.isSafeInteger(memory) || memory < 4096) {
    invalid(`objectStoreMemory must be a whole number of bytes ≥ 4096, got ${options.objectStoreMemory}`);
  }
  const available = shmFreeBytes();
  if (memory > available) {
    throw new ObjstoreError(
      `init: objectStoreMemory of ${memory} bytes is more than /dev/shm can give (${available} bytes free); ` +
        "ask for less, or enlarge /dev/shm",
    );
  }
  const numWorkers = options.numWorkers ?? os.availableParallelism();
  if (!Number.isSafeInteger(numWorkers) || numWorkers < 0) invalid(`numWorkers must be a whole number ≥ 0, got ${options.numWorkers}`);
  const spillThreshold = options.spillThreshold ?? 0.8;
  if (typeof spillThreshold !== "number" || !(spillThreshold > 0 && spillThreshold <= 1)) {
    invalid(`spillThreshold must be a fraction in (0, 1], got ${options.spillThreshold}`);
  }
  const storeName = options.storeName;
  if (storeName !== undefined && (typeof storeName !== "string" || !storeNamePattern.test(storeName))) {
    invalid(`storeName must be 1–200 letters, digits, '-', '_' or '.' (not first), got ${JSON.stringify(storeName)}`);
  }
  if (options.address !== undefined && (typeof options.address !== "string" || !options.address.startsWith("redis://"))) {
    invalid(`address must be "redis://host:port", got ${JSON.stringify(options.address)}`);
  }
  return {
    objectStoreMemory: memory,
    numWorkers,
    spill: resolveSpill(options.spill),
    spillThreshold,
    address: options.address,
    storeName,
    prefault: options.prefault ?? true,
  };
}

function resolveSpill(spill: SpillOption | undefined): SpillOption {
  if (spill === undefined) return { type: "filesystem" };
  if (spill === false) return false;
  if (typeof spill !== "object" || spill === null) invalid("spill must be an object or false");
  if (spill.type === "filesystem") {
    if (spill.directory !== undefined && (typeof spill.directory !== "string" || spill.directory === "")) {
      invalid(`spill.directory must be a path, got ${JSON.stringify(spill.directory)}`);
    }
    return { type: "filesystem", directory: spill.directory === undefined ? undefined : path.resolve(spill.directory) };
  }
  if (spill.type === "s3") {
    if (typeof spill.bucket !== "string" || spill.bucket === "") invalid("spill.bucket must name an S3 bucket");
    return spill;
  }
  invalid(`spill.type must be "filesystem" or "s3", got ${JSON.stringify((spill as { type: unknown }).type)}`);
}
