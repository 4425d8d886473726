/**
 * V8's collector, driven from JavaScript on Node and Deno:
 *
 * - a full garbage collection without `--expose-gc` on the command line: the flag can be set at
 *   run time, and a fresh context then has `gc`;
 * - the end of V8's hold on WeakRef targets: V8 keeps every target made or read by a WeakRef
 *   alive until the current job ends (`ClearKeptObjects`, which it runs at a microtask
 *   checkpoint). A context of our own with `microtaskMode: "afterEvaluate"` runs a checkpoint
 *   of its own (empty) microtask queue after each script, and that checkpoint clears the
 *   isolate's kept objects, so a synchronous loop can let the collector take the targets of
 *   WeakRefs it made. The program's own microtasks do not run.
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

let checkpoint: { script: vm.Script; context: vm.Context } | undefined;

export function releaseV8KeptObjects(): void {
  checkpoint ??= {
    script: new vm.Script("0"),
    context: vm.createContext({}, { microtaskMode: "afterEvaluate" }),
  };
  checkpoint.script.runInContext(checkpoint.context);
}
