/**
 * A trace of what the cluster does for this process, on stderr, when OBJSTORE_DEBUG_CLUSTER is
 * set: tasks sent and answered, nodes seen dead, results made again. For finding out why a
 * job waits; off (and free) otherwise.
 */
import process from "node:process";

const on = Boolean(process.env.OBJSTORE_DEBUG_CLUSTER);

/** Writes one line of the trace (nothing unless OBJSTORE_DEBUG_CLUSTER is set). */
export function trace(what: () => string): void {
  if (on) process.stderr.write(`[objstore ${process.pid} ${Date.now() % 100_000}] ${what()}\n`);
}
