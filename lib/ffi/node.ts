/** The Node shim: koffi (pointers are bigints). */
import koffi from "koffi";
import process from "node:process";
import v8 from "node:v8";
import type { NativePointer, NativeSymbols, NativeType, RuntimeShim } from "./symbols.ts";
import { symbols } from "./symbols.ts";
import { collectV8Garbage, releaseV8KeptObjects } from "./v8_gc.ts";
import { ReservedViews, reserveBytesFor, V8_WINDOW_BUDGET_BYTES, V8_WINDOW_BYTES } from "./v8_views.ts";

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
    accountViewsInHeapLimit();
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
  userViews(base, segmentBytes, windowedBytes) {
    const make = (offsetBytes: number, lengthBytes: number) => shim.view(base, offsetBytes, lengthBytes);
    return new ReservedViews(make, reserveBytesFor(segmentBytes, windowedBytes));
  },
  maxViewBytes: 2 ** 32,
  windowBytes: V8_WINDOW_BYTES,
  windowBudgetBytes: V8_WINDOW_BUDGET_BYTES,
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
  quic: undefined,
};

/**
 * V8 counts the bytes of every view over native memory as external memory. Before V8 14 (Node
 * 24 has 13.6) it starts a full collection whenever that count grows 64 MiB past its lowest
 * point since the last one, so each get of an object over 64 MiB, which makes one view of it,
 * cost a collection: 7-30 ms for 256 MiB here, against 0.15 ms with this flag. Newer V8 (Deno
 * 2.9 runs 15.0) always works as the flag says: external memory is one more part of the heap's
 * global limit, which grows with it. (Views of 64 MiB or more no longer grow the count at all,
 * lib/ffi/v8_views.ts; the flag still governs every other external buffer of the program.)
 * `OBJSTORE_KEEP_V8_FLAGS=1` leaves V8's flags alone.
 */
function accountViewsInHeapLimit(): void {
  const v8Major = Number(process.versions.v8.split(".")[0]);
  if (v8Major >= 14 || process.env.OBJSTORE_KEEP_V8_FLAGS === "1") return;
  v8.setFlagsFromString("--external-memory-accounted-in-global-limit");
}
