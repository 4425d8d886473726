/**
 * A full garbage collection on V8 (Node, Deno) without `--expose-gc` on the command line:
 * the flag can be set at run time, and a fresh context then has `gc`.
 */
import v8 from "node:v8";
import vm from "node:vm";

let gc: (() => void) | undefined;

export function collectV8Garbage(): void {
  if (gc === undefined) {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  }
  gc();
}
