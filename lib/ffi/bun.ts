/** The Bun shim: `bun:ffi`. */
import { dlopen, toArrayBuffer } from "bun:ffi";
import process from "node:process";
import type { NativePointer, NativeSymbols, NativeType, RuntimeShim } from "./symbols.ts";
import { plainViews, symbols } from "./symbols.ts";

// Typed arrays passed as `ptr` arrive as a pointer to their bytes, at no cost.
const spelling: Record<NativeType, string> = {
  pointer: "ptr",
  buffer: "ptr",
  u32: "u32",
  i32: "i32",
  f64: "f64",
};

export const shim: RuntimeShim = {
  runtime: "bun",
  open(path: string): NativeSymbols {
    const table: Record<string, { args: string[]; returns: string }> = {};
    for (const [name, spec] of Object.entries(symbols)) {
      table[name] = { args: spec.args.map((t) => spelling[t]), returns: spelling[spec.result] };
    }
    // deno-lint-ignore no-explicit-any
    return dlopen(path, table as any).symbols as unknown as NativeSymbols;
  },
  view(base: NativePointer, offsetBytes: number, lengthBytes: number): ArrayBuffer {
    return toArrayBuffer(base as number, offsetBytes, lengthBytes);
  },
  userViews(base) {
    return plainViews((offsetBytes, lengthBytes) => toArrayBuffer(base as number, offsetBytes, lengthBytes));
  },
  maxViewBytes: 2 ** 32,
  // JavaScriptCore does not count views as memory: windows as large as a view can be, unbounded.
  windowBytes: 2 ** 32,
  windowBudgetBytes: Infinity,
  unrefTimer(timer) {
    (timer as unknown as { unref(): void }).unref();
  },
  scriptCommand(script) {
    return { command: process.execPath, args: [script] };
  },
  collectGarbage() {
    (globalThis as unknown as { Bun: { gc(force: boolean): void } }).Bun.gc(true);
  },
  releaseKeptObjects() {
    // JavaScriptCore does not keep WeakRef targets alive to the end of the job.
  },
  quic: undefined,
};
