/**
 * The one table of libobjstore's C ABI (`zig/include/objstore.h`) that all three runtime shims
 * bind. Types are neutral: each shim maps them to its own FFI's spelling.
 * - `pointer`: an opaque native pointer (the store handle, or a pointer the library returns)
 * - `buffer`: a typed array whose bytes the call reads or writes during the call only
 * Sizes are doubles and everything else 32-bit, which keeps each call on the FFIs' fast paths.
 */
import type { Quic } from "./quic.ts";

export type NativeType = "pointer" | "buffer" | "u32" | "i32" | "f64";

export interface SymbolSpec {
  readonly args: readonly NativeType[];
  readonly result: NativeType;
}

export const symbols = {
  objstore_abi_version: { args: [], result: "u32" },
  objstore_last_status: { args: [], result: "i32" },
  objstore_last_error: { args: ["buffer", "u32"], result: "u32" },
  objstore_open: { args: ["buffer", "u32", "u32", "f64", "u32"], result: "pointer" },
  objstore_close: { args: ["pointer", "u32"], result: "i32" },
  objstore_destroy: { args: ["buffer", "u32"], result: "i32" },
  objstore_result: { args: ["pointer"], result: "pointer" },
  objstore_segment_base: { args: ["pointer"], result: "pointer" },
  objstore_segment_size: { args: ["pointer"], result: "f64" },
  objstore_seal_sequence_offset: { args: [], result: "u32" },
  objstore_page_offset: { args: ["buffer"], result: "u32" },
  objstore_create: { args: ["pointer", "buffer", "f64", "buffer", "u32"], result: "i32" },
  objstore_seal: { args: ["pointer", "buffer"], result: "i32" },
  objstore_abort: { args: ["pointer", "buffer"], result: "i32" },
  objstore_get: { args: ["pointer", "buffer"], result: "i32" },
  objstore_release: { args: ["pointer", "buffer"], result: "i32" },
  objstore_ref_add: { args: ["pointer", "buffer"], result: "i32" },
  objstore_ref_drop: { args: ["pointer", "buffer"], result: "i32" },
  objstore_contains: { args: ["pointer", "buffer"], result: "i32" },
  objstore_size: { args: ["pointer", "buffer"], result: "i32" },
  objstore_wait_sealed: { args: ["pointer", "buffer", "u32"], result: "i32" },
  objstore_maintain: { args: ["pointer"], result: "i32" },
  objstore_stats: { args: ["pointer", "buffer"], result: "i32" },
  objstore_clients: { args: ["pointer", "buffer"], result: "i32" },
  objstore_list: { args: ["pointer", "u32", "buffer", "u32", "buffer", "u32"], result: "i32" },
  objstore_spill_configure: { args: ["pointer", "buffer", "u32"], result: "i32" },
  objstore_spill: { args: ["pointer", "f64"], result: "i32" },
  objstore_spill_object: { args: ["pointer", "buffer"], result: "i32" },
  objstore_restore: { args: ["pointer", "buffer"], result: "i32" },
  objstore_restore_region: { args: ["pointer", "buffer", "buffer", "f64"], result: "i32" },
  objstore_spill_location: { args: ["pointer", "buffer"], result: "i32" },
  objstore_upload_claim: { args: ["pointer"], result: "i32" },
  objstore_upload_finish: { args: ["pointer", "u32", "f64", "u32"], result: "i32" },
  objstore_remote_delete_claim: { args: ["pointer"], result: "i32" },
  objstore_remote_delete_finish: { args: ["pointer", "u32", "f64", "u32"], result: "i32" },
  objstore_spill_background: { args: ["pointer", "f64"], result: "i32" },
  objstore_io_backend: { args: ["pointer"], result: "i32" },
  objstore_channel_create: { args: ["buffer", "u32", "u32"], result: "pointer" },
  objstore_channel_open: { args: ["buffer", "u32"], result: "pointer" },
  objstore_channel_unlink: { args: ["buffer", "u32"], result: "i32" },
  objstore_channel_close: { args: ["pointer"], result: "i32" },
  objstore_channel_send: { args: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  objstore_channel_receive: { args: ["pointer", "u32", "buffer", "u32", "u32"], result: "i32" },
  objstore_channel_park: { args: ["pointer", "u32"], result: "i32" },
  objstore_channel_listen: { args: ["pointer", "u32"], result: "i32" },
  objstore_doorbell_ring: { args: ["i32"], result: "i32" },
  objstore_watch_parent: { args: ["i32", "u32"], result: "i32" },
  objstore_endpoint_open: { args: ["buffer", "u32"], result: "pointer" },
  objstore_endpoint_close: { args: ["pointer"], result: "i32" },
  objstore_endpoint_hand_over: { args: ["pointer", "buffer"], result: "i32" },
  objstore_serve: { args: ["pointer", "u32", "u32", "buffer", "u32"], result: "pointer" },
  objstore_serve_port: { args: ["pointer"], result: "u32" },
  objstore_serve_stop: { args: ["pointer"], result: "i32" },
  objstore_pull_start: { args: ["pointer", "buffer", "buffer", "u32", "buffer", "u32", "u32", "u32"], result: "pointer" },
  objstore_pull_done: { args: ["pointer"], result: "u32" },
  objstore_pull_finish: { args: ["pointer", "buffer"], result: "i32" },
} as const satisfies Record<string, SymbolSpec>;

export type SymbolTable = typeof symbols;

/** An opaque native pointer: a Deno `PointerObject`, a Bun number, a koffi bigint. */
export type NativePointer = unknown;

/** True for the null pointer in any runtime's spelling. */
export function isNullPointer(pointer: NativePointer): boolean {
  return pointer === null || pointer === 0 || pointer === 0n;
}

type JsOf<T extends NativeType> = T extends "pointer" ? NativePointer
  : T extends "buffer" ? ArrayBufferView
  : number;

type JsArgs<A extends readonly NativeType[]> = { [K in keyof A]: A[K] extends NativeType ? JsOf<A[K]> : never };

/** The bound library: one JS function per symbol, typed from the table. */
export type NativeSymbols = {
  [K in keyof SymbolTable]: (...args: JsArgs<SymbolTable[K]["args"]>) => JsOf<SymbolTable[K]["result"]>;
};

/** Views of one store's segment for the program (`NativeStore.ownView`). */
export interface UserViews {
  /** A fresh ArrayBuffer over `lengthBytes` bytes of the segment from `offsetBytes`. */
  view(offsetBytes: number, lengthBytes: number): ArrayBuffer;
  /** The caller is done with `view` (made by `view`; the bytes a put wrote): it is detached now,
   * so that the memory the engine counts for it is freed at once, not when it is collected. */
  retire(view: ArrayBuffer): void;
  /** Lets go of what the views keep (the store is closing; its segment is about to go). */
  close(): void;
}

/** Plain views, one per call, for engines that do not count them as memory (JavaScriptCore). */
export function plainViews(make: (offsetBytes: number, lengthBytes: number) => ArrayBuffer): UserViews {
  return { view: make, retire() {}, close() {} };
}

/** What each runtime shim provides; nothing else in `lib/` knows which runtime it is on. */
export interface RuntimeShim {
  readonly runtime: "deno" | "bun" | "node";
  /** Binds every symbol of the table in the library at `path`. */
  open(path: string): NativeSymbols;
  /** An ArrayBuffer over native memory (no copy). `lengthBytes` ≤ `maxViewBytes`. */
  view(base: NativePointer, offsetBytes: number, lengthBytes: number): ArrayBuffer;
  /** The largest view this runtime can make (Bun and koffi stop at 4 GiB). */
  readonly maxViewBytes: number;
  /** The size of each window the store cuts small objects' bytes from (a `subarray` costs less
   * than a new view: 0.1-0.3 µs against 0.5-4 µs). */
  readonly windowBytes: number;
  /** How many bytes of windows a store may keep at once. V8 counts each window as external
   * memory for as long as it lives, and collects garbage as that count nears its cap; past
   * the budget, objects are read through views of their own. */
  readonly windowBudgetBytes: number;
  /**
   * Views for the program over the segment of `segmentBytes` at `base`, whose windows may
   * view `windowedBytes` of it. On V8 they keep its count of external memory flat, so that a
   * view does not start a collection (lib/ffi/v8_views.ts).
   */
  userViews(base: NativePointer, segmentBytes: number, windowedBytes: number): UserViews;
  /** Lets the process exit while `timer` is pending. */
  unrefTimer(timer: ReturnType<typeof setInterval>): void;
  /** The command that runs the module `script` (a path; on Deno also an https URL) on this
   * runtime, with the garbage collector callable (for worker processes). */
  scriptCommand(script: string): { command: string; args: string[] };
  /** Runs a full garbage collection if the runtime allows it (see `scriptCommand`). */
  collectGarbage(): void;
  /** Lets the collector take the targets of WeakRefs made or read in the current job, which
   * the engine would otherwise keep alive until the job ends (V8 does; JavaScriptCore not). */
  releaseKeptObjects(): void;
  /** QUIC, where the runtime has it (Deno with `--unstable-net`), for the cluster's transfers. */
  readonly quic: Quic | undefined;
}
