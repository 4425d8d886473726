/** The Deno shim: `Deno.dlopen`. */
import type { NativePointer, NativeSymbols, NativeType, RuntimeShim } from "./symbols.ts";
import { symbols } from "./symbols.ts";
import { denoQuic } from "./deno_quic.ts";
import { collectV8Garbage, releaseV8KeptObjects } from "./v8_gc.ts";
import { ReservedViews, reserveBytesFor, V8_WINDOW_BUDGET_BYTES, V8_WINDOW_BYTES } from "./v8_views.ts";

// deno-lint-ignore no-explicit-any
const Deno = (globalThis as any).Deno;

const spelling: Record<NativeType, string> = {
  pointer: "pointer",
  buffer: "buffer",
  u32: "u32",
  i32: "i32",
  f64: "f64",
};

export const shim: RuntimeShim = {
  runtime: "deno",
  open(path: string): NativeSymbols {
    const table: Record<string, { parameters: string[]; result: string }> = {};
    for (const [name, spec] of Object.entries(symbols)) {
      table[name] = { parameters: spec.args.map((t) => spelling[t]), result: spelling[spec.result] };
    }
    return Deno.dlopen(path, table).symbols as NativeSymbols;
  },
  view(base: NativePointer, offsetBytes: number, lengthBytes: number): ArrayBuffer {
    return Deno.UnsafePointerView.getArrayBuffer(base, lengthBytes, offsetBytes);
  },
  userViews(base, segmentBytes, windowedBytes) {
    const make = (offsetBytes: number, lengthBytes: number) => shim.view(base, offsetBytes, lengthBytes);
    return new ReservedViews(make, reserveBytesFor(segmentBytes, windowedBytes));
  },
  maxViewBytes: 2 ** 53,
  windowBytes: V8_WINDOW_BYTES,
  windowBudgetBytes: V8_WINDOW_BUDGET_BYTES,
  unrefTimer(timer) {
    Deno.unrefTimer(timer as unknown as number);
  },
  scriptCommand(script) {
    // Workers get QUIC when their node has it: they pull over it too.
    const quic = shim.quic === undefined ? [] : ["--unstable-net"];
    return { command: Deno.execPath(), args: ["run", "-A", ...quic, "--v8-flags=--expose-gc", script] };
  },
  collectGarbage() {
    collectV8Garbage();
  },
  releaseKeptObjects() {
    releaseV8KeptObjects();
  },
  quic: denoQuic(),
};
