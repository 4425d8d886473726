/** The Node shim: koffi (pointers are bigints). */
import koffi from "koffi";
import process from "node:process";
import type { NativePointer, NativeSymbols, NativeType, RuntimeShim } from "./symbols.ts";
import { symbols } from "./symbols.ts";
import { collectV8Garbage, releaseV8KeptObjects } from "./v8_gc.ts";

const spelling: Record<NativeType, string> = {
  pointer: "void *",
  buffer: "void *",
  u32: "uint32_t",
  i32: "int32_t",
  f64: "double",
};

export const shim: RuntimeShim = {
  runtime: "node",
  open(path: string): NativeSymbols {
    const library = koffi.load(path);
    const bound: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(symbols)) {
      bound[name] = library.func(name, spelling[spec.result], spec.args.map((t) => spelling[t]));
    }
    return bound as NativeSymbols;
  },
  view(base: NativePointer, offsetBytes: number, lengthBytes: number): ArrayBuffer {
    // Past 4 GiB koffi aborts the process instead of throwing; the caller keeps under it.
    return koffi.view((base as bigint) + BigInt(offsetBytes), lengthBytes);
  },
  maxViewBytes: 2 ** 32,
  unrefTimer(timer) {
    (timer as unknown as { unref(): void }).unref();
  },
  scriptCommand(script) {
    return { command: process.execPath, args: ["--expose-gc", script] };
  },
  collectGarbage() {
    collectV8Garbage();
  },
  releaseKeptObjects() {
    releaseV8KeptObjects();
  },
};
