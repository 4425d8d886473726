/**
 * Whether a process of this machine still runs, by the same rule as the store's own test
 * (zig/src/sys.zig `isAlive`), so that no part of the library takes a process for dead while
 * the store still sees it attached.
 */
import { readFileSync } from "node:fs";

/**
 * True until /proc says `pid` is gone, or a zombie whose other threads have ended too. A
 * killed process with many threads (Bun's, Deno's) is a zombie leader for a while before its
 * last thread is gone: taking it for dead then would act before the store does.
 */
export function processRuns(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [state, threads] = [fields[0], Number(fields[17])];
    return (state !== "Z" && state !== "X") || threads > 1;
  } catch {
    return false;
  }
}
