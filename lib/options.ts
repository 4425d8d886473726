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
  /** Absent: embedded single node. `"redis://host:port"`: join that cluster, through the
   * node of this machine (started by `objstore start`). */
  address?: string;
  /** With `address`, when several nodes of the cluster run on this machine: which one to
   * attach to (its `nodeId` or its store name). */
  node?: string;
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
  node: string | undefined;
  storeName: string | undefined;
  prefault: boolean;
}

/** The options `init` knows: a misspelt one is an error rather than a silent default. */
const KNOWN_OPTIONS: readonly string[] = ["objectStoreMemory", "numWorkers", "spill", "spillThreshold", "address", "node", "storeName", "prefault"];
const FILESYSTEM_SPILL_KEYS: readonly string[] = ["type", "directory"];
const S3_SPILL_KEYS: readonly string[] = ["type", "bucket", "prefix", "endpoint", "region"];

/** Smallest store: one page (zig/src/Segment.zig refuses less). */
const MIN_STORE_BYTES = 4096;
/** Processes one store can have attached (zig/src/layout.zig client_count_max): a driver and its workers. */
const MAX_ATTACHED_PROCESSES = 64;
/** Most workers one driver may ask for: every other process slot of its store. */
export const MAX_WORKERS = MAX_ATTACHED_PROCESSES - 1;
/** Longest spill directory in bytes (zig/src/layout.zig spill_dir_size_max, less room for file names). */
const MAX_SPILL_DIRECTORY_BYTES = 1024 - 64 - 1;

/** As zig/src/shm_names.zig validateStoreName: a file name in /dev/shm, outside the channels' `objstore-ch-`. */
const storeNamePattern = /^(?!ch-)[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
/** What {@link storeNameProblem} accepts, in words. */
export const STORE_NAME_RULE = "1–200 letters, digits, '-', '_' or '.' (not first), not starting with \"ch-\"";

/** The shared-memory segment of store `name`, as zig/src/shm_names.zig names it. */
export function segmentPath(name: string): string {
  return `/dev/shm/objstore-${name}`;
}

/** Why `name` cannot name a store (it becomes a file name in /dev/shm), or undefined if it can. */
export function storeNameProblem(name: unknown): string | undefined {
  if (typeof name === "string" && storeNamePattern.test(name)) return undefined;
  return `a store name must be ${STORE_NAME_RULE}, got ${shown(name)}`;
}

function invalid(message: string): never {
  throw new TypeError(`init: ${message}`);
}

/**
 * A value as an error message shows it: strings quoted (and cut short), other types named, so a
 * symbol or an object with a throwing `toString` cannot break the message.
 */
export function shown(value: unknown): string {
  switch (typeof value) {
    case "string": {
      const cut = value.length > 100 ? `${value.slice(0, 100)}…` : value;
      return `${JSON.stringify(cut)}${value.length > 100 ? ` (${value.length} characters)` : ""}`;
    }
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "bigint":
      return `${value}n (a bigint)`;
    case "object":
      return value === null ? "null" : Array.isArray(value) ? "an array" : "an object";
    default:
      return `a ${typeof value}`;
  }
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

/** True for a plain object (not an array, a class instance or null). */
function isPlainObject(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Refuses keys of `object` that are not in `known`, naming them and the ones that exist. */
function refuseUnknownKeys(object: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) invalid(`unknown ${what} ${shown(key)}; the known ones are ${known.join(", ")}`);
  }
}

/**
 * Checks `init`'s options and fills in the defaults. Every refusal is a TypeError naming the
 * option, what it accepts and what it got; nothing is created before these checks pass.
 */
export function resolveOptions(options: InitOptions = {}): ResolvedOptions {
  if (!isPlainObject(options)) invalid(`options must be an object, got ${shown(options)}`);
  refuseUnknownKeys(options as Record<string, unknown>, KNOWN_OPTIONS, "option");
  for (const [key, value] of Object.entries(options)) {
    if (value === null) invalid(`${key} is null; leave it out for its default`);
  }
  const objectStoreMemory = resolveMemory(options.objectStoreMemory);
  const numWorkers = options.numWorkers ?? Math.min(os.availableParallelism(), MAX_WORKERS);
  if (!Number.isSafeInteger(numWorkers) || numWorkers < 0 || numWorkers > MAX_WORKERS) {
    invalid(`numWorkers must be a whole number from 0 to ${MAX_WORKERS} (a store holds ${MAX_ATTACHED_PROCESSES} processes), got ${shown(options.numWorkers)}`);
  }
  const spillThreshold = options.spillThreshold ?? 0.8;
  if (typeof spillThreshold !== "number" || !(spillThreshold > 0 && spillThreshold <= 1)) {
    invalid(`spillThreshold must be a fraction in (0, 1], got ${shown(options.spillThreshold)}`);
  }
  const storeName = options.storeName;
  if (storeName !== undefined && storeNameProblem(storeName) !== undefined) {
    invalid(`storeName must be ${STORE_NAME_RULE}, got ${shown(storeName)}`);
  }
  if (options.address !== undefined && (typeof options.address !== "string" || !options.address.startsWith("redis://"))) {
    invalid(`address must be "redis://host:port", got ${shown(options.address)}`);
  }
  if (options.node !== undefined && (typeof options.node !== "string" || options.node === "")) {
    invalid(`node must be a node's id or store name, got ${shown(options.node)}`);
  }
  if (options.node !== undefined && options.address === undefined) {
    invalid(`node ${shown(options.node)} is a node of a cluster: give the cluster's address too`);
  }
  if (options.prefault !== undefined && typeof options.prefault !== "boolean") {
    invalid(`prefault must be true or false, got ${shown(options.prefault)}`);
  }
  return {
    objectStoreMemory,
    numWorkers,
    spill: resolveSpill(options.spill),
    spillThreshold,
    address: options.address,
    node: options.node,
    storeName,
    prefault: options.prefault ?? true,
  };
}

function resolveMemory(requested: unknown): number {
  const available = shmFreeBytes();
  const memory = requested ?? defaultMemory();
  if (typeof memory !== "number" || !Number.isSafeInteger(memory) || memory < MIN_STORE_BYTES) {
    invalid(`objectStoreMemory must be a whole number of bytes from ${MIN_STORE_BYTES} to ${available} (what /dev/shm has free), got ${shown(requested)}`);
  }
  if (memory > available) {
    throw new ObjstoreError(
      `init: objectStoreMemory of ${memory} bytes is more than /dev/shm can give (${available} bytes free); ` +
        "ask for less, or enlarge /dev/shm",
    );
  }
  return memory;
}

function resolveSpill(spill: unknown): SpillOption {
  if (spill === undefined) return { type: "filesystem" };
  if (spill === false) return false;
  const shapes = 'false, { type: "filesystem", directory? } or { type: "s3", bucket, prefix?, endpoint?, region? }';
  if (!isPlainObject(spill)) invalid(`spill must be ${shapes}, got ${shown(spill)}`);
  return resolveSpillObject(spill as Record<string, unknown>);
}

function resolveSpillObject(spill: Record<string, unknown>): SpillOption {
  if (spill.type === "filesystem") {
    refuseUnknownKeys(spill, FILESYSTEM_SPILL_KEYS, "spill option");
    return { type: "filesystem", directory: spill.directory === undefined ? undefined : resolveDirectory(spill.directory) };
  }
  if (spill.type === "s3") {
    refuseUnknownKeys(spill, S3_SPILL_KEYS, "spill option");
    if (typeof spill.bucket !== "string" || spill.bucket === "" || /[\0/]/.test(spill.bucket)) {
      invalid(`spill.bucket must name an S3 bucket, got ${shown(spill.bucket)}`);
    }
    for (const key of ["prefix", "region"]) {
      const value = spill[key];
      if (value !== undefined && (typeof value !== "string" || value.includes("\0"))) {
        invalid(`spill.${key} must be a string without NUL, got ${shown(value)}`);
      }
    }
    if (spill.endpoint !== undefined && !isHttpUrl(spill.endpoint)) {
      invalid(`spill.endpoint must be an http:// or https:// URL, got ${shown(spill.endpoint)}`);
    }
    return spill as SpillOption;
  }
  invalid(`spill.type must be "filesystem" or "s3", got ${shown(spill.type)}`);
}

/** An absolute spill directory, or a TypeError saying why `directory` cannot be one. */
function resolveDirectory(directory: unknown): string {
  if (typeof directory !== "string" || directory === "" || directory.includes("\0")) {
    invalid(`spill.directory must be a path (a non-empty string without NUL), got ${shown(directory)}`);
  }
  const absolute = path.resolve(directory);
  const bytes = new TextEncoder().encode(absolute).length;
  if (bytes > MAX_SPILL_DIRECTORY_BYTES) {
    invalid(`spill.directory must be at most ${MAX_SPILL_DIRECTORY_BYTES} bytes once absolute, got ${bytes}: ${shown(absolute)}`);
  }
  return absolute;
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== "string") return false;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}
