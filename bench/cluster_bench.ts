/**
 * Tasks across three nodes of one machine (issue 14, item 7), on whichever runtime starts this
 * file; bench/run_cluster.sh starts Redis and the three nodes (`objstore start`, one worker
 * each) and runs it on node, deno and bun beside Ray 2.60 (bench/ray_cluster.py):
 *
 *   node bench/cluster_bench.ts --address URL --nodes A,B,C --pids PA,PB,PC [--quick]
 *
 * This process is a driver attached to node A (`init({ address, node: A, numWorkers: 0 })`), so
 * every task runs in one of the three nodes' workers, as in Ray's Cluster where the driver's
 * raylet is one of three with one CPU each. Workloads (the same in bench/ray_cluster.py):
 *
 * - tasks: N trivial tasks (return 0) with scheduling "SPREAD", all submitted, then gathered
 *   with one `get`; tasks per second. N = 2,000 (--quick: 200), an untimed warm-up round, then
 *   5 rounds (--quick: 2).
 * - mapreduce: M map tasks (SPREAD) each returning S MiB (every page written: the map's index
 *   at byte 0, a fill byte elsewhere), then R reduce tasks (SPREAD) each taking all M map refs
 *   as arguments and returning a checksum of one byte per 4 KiB page of each (so every page of
 *   every map output is read on the reducer's node: pulled there unless made there). Wall time
 *   from the first submit to having the R checksums, each checked. M=64, S=16, R=8 (--quick:
 *   8, 1, 2); 3 rounds (--quick: 2).
 * - lineage: a task with soft affinity to node B returns S MiB (its node's store name in the
 *   first bytes); `wait` with fetchLocal false until it is done (nothing pulled here), then B's
 *   `objstore start` process is killed (SIGKILL, PB) and a `get` of the result is timed until it
 *   returns the bytes made again elsewhere. This includes noticing B's death: its heartbeat
 *   expires after 3 s by design (ARCHITECTURE.md "Tasks across nodes"). Once per run (B stays
 *   dead), last.
 *
 * Progress goes to stderr; stdout gets one JSON line.
 */
import process from "node:process";
import * as os from "../mod.ts";
import { emit, fmt, loadavg, log, MiB, option, quick, runtime, runtimeVersion } from "./lib/harness.ts";

const address = required("--address");
const [nodeA, nodeB] = required("--nodes").split(",");
const pidB = Number(required("--pids").split(",")[1]);
const TASKS = Number(option("--tasks") ?? (quick ? 200 : 2000));
const TASK_ROUNDS = quick ? 2 : 5;
const MAPS = Number(option("--maps") ?? (quick ? 8 : 64));
const MAP_BYTES = Number(option("--map-mib") ?? (quick ? 1 : 16)) * MiB;
const REDUCERS = Number(option("--reducers") ?? (quick ? 2 : 8));
const MAPREDUCE_ROUNDS = quick ? 2 : 3;
const LINEAGE_BYTES = (quick ? 1 : 16) * MiB;
const PAGE = 4096;
const GET_TIMEOUT_S = 300;

function required(name: string): string {
  const value = option(name);
  if (value === undefined) throw new Error(`cluster_bench: ${name} is required (see the comment at the top of bench/cluster_bench.ts)`);
  return value;
}

/** The byte map `index` fills its output with (byte 0 is the index itself). */
const fillOf = (index: number) => (index * 7 + 1) & 0xff;

/** What a reducer returns for the M map outputs: one byte per page and the last byte, summed. */
function expectedChecksum(maps: number, bytes: number): number {
  const pages = Math.ceil(bytes / PAGE);
  let sum = 0;
  for (let i = 0; i < maps; i++) sum += (i & 0xff) + (pages - 1) * fillOf(i) + fillOf(i);
  return sum;
}

const noop = os.remote(() => 0).options({ scheduling: "SPREAD" });
const mapTask = os.remote((index: number, bytes: number) => {
  const out = new Uint8Array(bytes).fill((index * 7 + 1) & 0xff);
  out[0] = index & 0xff;
  return out;
}).options({ scheduling: "SPREAD" });
const reduceTask = os.remote((...parts: Uint8Array[]) => {
  let sum = 0;
  for (const part of parts) {
    for (let at = 0; at < part.length; at += 4096) sum += part[at];
    sum += part[part.length - 1];
  }
  return sum;
}).options({ scheduling: "SPREAD" });
/** S MiB, every page written, the store name of the node that made it in the first bytes. */
const produce = os.remote((bytes: number) => {
  const out = new Uint8Array(bytes).fill(0x5a);
  const name = new TextEncoder().encode(process.env.OBJSTORE_STORE ?? "?");
  out[0] = name.length;
  out.set(name, 1);
  return out;
});

function spread(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1], rounds: values };
}

async function tasksRound(): Promise<number> {
  const start = performance.now();
  const refs = Array.from({ length: TASKS }, () => noop.remote() as os.ObjectRef<number>);
  const values = await os.get(refs, { timeout: GET_TIMEOUT_S });
  const seconds = (performance.now() - start) / 1000;
  if (values.length !== TASKS || values.some((v) => v !== 0)) throw new Error("tasks: a task returned something other than 0");
  return TASKS / seconds;
}

async function benchTasks() {
  log(`tasks: warm-up round of ${TASKS}`);
  await tasksRound();
  const rates: number[] = [];
  for (let r = 0; r < TASK_ROUNDS; r++) {
    rates.push(await tasksRound());
    log(`tasks: ${TASKS} SPREAD over 3 nodes: ${fmt(rates[r])}/s (load ${loadavg()})`);
  }
  return { count: TASKS, per_s: spread(rates) };
}

async function mapReduceRound(): Promise<number> {
  const start = performance.now();
  const maps = Array.from({ length: MAPS }, (_, i) => mapTask.remote(i, MAP_BYTES) as os.ObjectRef<Uint8Array>);
  const reduces = Array.from({ length: REDUCERS }, () => reduceTask.remote(...maps) as os.ObjectRef<number>);
  const sums = await os.get(reduces, { timeout: GET_TIMEOUT_S });
  const seconds = (performance.now() - start) / 1000;
  const expected = expectedChecksum(MAPS, MAP_BYTES);
  sums.forEach((sum, i) => {
    if (sum !== expected) throw new Error(`mapreduce: reducer ${i} returned ${sum}, expected ${expected}`);
  });
  return seconds;
}

async function benchMapReduce() {
  const times: number[] = [];
  for (let r = 0; r < MAPREDUCE_ROUNDS; r++) {
    times.push(await mapReduceRound());
    log(`mapreduce: ${MAPS} maps × ${MAP_BYTES / MiB} MiB, ${REDUCERS} reducers reading all: ${times[r].toFixed(2)} s (load ${loadavg()})`);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the round's objects go
  }
  return { maps: MAPS, map_bytes: MAP_BYTES, reducers: REDUCERS, wall_s: spread(times) };
}

function madeOn(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes.subarray(1, 1 + bytes[0]));
}

async function benchLineage() {
  const ref = produce.options({ scheduling: { nodeId: nodeB, soft: true } }).remote(LINEAGE_BYTES) as os.ObjectRef<Uint8Array>;
  const [ready] = await os.wait([ref], { fetchLocal: false, timeout: GET_TIMEOUT_S });
  if (ready.length !== 1) throw new Error("lineage: the task on node B did not finish");
  log(`lineage: ${LINEAGE_BYTES / MiB} MiB made on node B (${nodeB}); killing its process ${pidB}`);
  process.kill(pidB, "SIGKILL");
  const start = performance.now();
  const bytes = await os.get(ref, { timeout: GET_TIMEOUT_S });
  const seconds = (performance.now() - start) / 1000;
  const where = madeOn(bytes);
  if (bytes.length !== LINEAGE_BYTES || bytes[bytes.length - 1] !== 0x5a) throw new Error("lineage: the object made again has wrong bytes");
  if (where === nodeB) throw new Error(`lineage: the object still came from ${nodeB}, which was killed`);
  log(`lineage: made again on ${where} in ${seconds.toFixed(2)} s`);
  return { bytes: LINEAGE_BYTES, seconds, made_again_on: where === nodeA ? "the driver's node" : "the third node" };
}

const loadBefore = loadavg();
log(`cluster_bench on ${runtime} ${runtimeVersion}: driver on ${nodeA}, load ${loadBefore}`);
await os.init({ address, node: nodeA, numWorkers: 0 });
try {
  const tasks = await benchTasks();
  const mapreduce = await benchMapReduce();
  const lineage = await benchLineage();
  emit({ runtime, version: runtimeVersion, load_before: loadBefore, load_after: loadavg(), tasks, mapreduce, lineage });
} finally {
  await os.shutdown();
}
process.exit(0);
