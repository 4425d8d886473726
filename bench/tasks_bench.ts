/**
 * The task and actor workloads of `ray microbenchmark`, through the public API only, on whichever
 * runtime starts this file:
 *
 *   node bench/tasks_bench.ts [--quick] [--only NAME[,NAME]] [--placement same|split]
 *   deno run -A bench/tasks_bench.ts [--quick]
 *   bun bench/tasks_bench.ts [--quick]
 *
 * (`bench/run_tasks.sh` runs all three and compares them with Ray, piscina and tinypool.)
 *
 * Workloads (Ray's keys; `small_value` returns "ok", as Ray's returns b"ok"):
 *   single_client_tasks_sync    await get(f.remote())                               × 1
 *   single_client_tasks_async   await get([f.remote() × 1000])                      × 1000
 *   1_1_actor_calls_sync        await get(a.small_value.remote())                   × 1
 *   1_1_actor_calls_async       await get([a.small_value.remote() × 1000])          × 1000
 * and, for the comparison with the thread pools (bench/pool_bench.ts), a task taking a 1 MiB
 * Uint8Array, `put` once and passed by ref (arrives as a zero-copy view):
 *   arg_1mib_sync / arg_1mib_async  (1 / 1000 in flight)
 * Every result ref is freed right after its get (Python drops Ray's refs the same way).
 *
 * Floors, measured in the same run: a bare pipe ping-pong between this process and a child of
 * the same runtime (this file with --echo), over the same node:child_process pipes, line framing
 * and JSON that the scheduler uses, with no store and no scheduler: pipe_pingpong_sync (one
 * message in flight) and pipe_pingpong_async (1000 messages in one write, then all the replies).
 *
 * `--placement same|split` pins the processes (taskset; default: the kernel places them): `same`
 * puts the driver and every child on CPU 0; `split` the driver on CPU 0 and its children on CPU 1
 * (pinned after each warm-up, since workers start on the first task). On the 2-vCPU VM this was
 * written on, a wake-up across vCPUs costs ~30 µs of CPU per side instead of ~5 (the floor runs
 * at ~90k/s on one vCPU and ~13k/s across two), and the kernel picks either depending on load,
 * so one-in-flight figures are bimodal unless placed.
 *
 * For every workload, where the time goes during the timed rounds (from /proc, per op):
 * wall µs; CPU µs of the driver and of its child processes (workers); run-queue wait µs (time
 * runnable but not running: other load on the machine); voluntary context switches (sleeps
 * and wake-ups); read and write system calls (/proc/PID/io syscr/syscw: pipe reads and writes,
 * and eventfd wake-ups of the event loop). In a one-in-flight workload, wall − driver CPU −
 * worker CPU is the time when neither side runs (wake-up latency); negative when they overlap.
 *
 * Harness, as Ray's `timeit` (ray/_private/ray_microbenchmark_helpers.py) minus its 10 s sleep
 * (`--sleep S` restores it): run `fn` for 1 s and count → `step = count // 10 + 1` → 4 rounds,
 * each running `fn` in groups of `step` until ≥ 2 s → rate = multiplier × calls / elapsed; mean
 * and std of the 4. `--quick` (CI smoke, < 10 s): 0.05 s warm-up, 3 rounds of 0.1 s.
 *
 * Progress goes to stderr; stdout gets one JSON line.
 */
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime: "deno" | "bun" | "node" = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const args: string[] = runtime === "deno" ? g.Deno.args : process.argv.slice(2);

if (args.includes("--echo")) {
  // The floor's child: every chunk read goes straight back in one write.
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => process.stdout.write(chunk));
  process.stdin.on("end", () => process.exit(0));
} else {
  await main();
}

/** Mean, std (population, as numpy's) and the rates of each round. */
interface Rate {
  mean: number;
  std: number;
  rounds: number[];
  split?: Split;
}

function log(message: string): void {
  process.stderr.write(message + "\n");
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

// ---------------------------------------------------------------------------------------------
// Where the time goes: CPU, run-queue wait and context switches of this process and its children.

interface ProcTimes {
  cpuNs: number;
  waitNs: number;
  voluntary: number;
  involuntary: number;
  /** read/write-family system calls (/proc/PID/io syscr, syscw): pipe reads and writes, mostly. */
  reads: number;
  writes: number;
}

interface TreeSample {
  at: number;
  driver: ProcTimes;
  children: Map<number, ProcTimes>;
}

/** Per op, over the timed rounds. µs; switches as counts. */
interface Split {
  wall_us: number;
  driver_cpu_us: number;
  workers_cpu_us: number;
  /** wall − driver CPU − workers CPU: neither side on a CPU (meaningful with one op in flight). */
  neither_running_us: number;
  driver_runqueue_wait_us: number;
  workers_runqueue_wait_us: number;
  driver_voluntary_switches: number;
  workers_voluntary_switches: number;
  driver_involuntary_switches: number;
  workers_involuntary_switches: number;
  driver_read_syscalls: number;
  workers_read_syscalls: number;
  driver_write_syscalls: number;
  workers_write_syscalls: number;
  children: number;
}

/**
 * CPU time is the process's utime + stime (/proc/PID/stat), which keeps the time of threads
 * that have exited (a sum over /proc/PID/task would lose it); 10 ms ticks, fine over rounds of
 * seconds. Run-queue wait and context switches are summed over the live threads.
 */
function readProc(pid: number): ProcTimes | undefined {
  const times: ProcTimes = { cpuNs: 0, waitNs: 0, voluntary: 0, involuntary: 0, reads: 0, writes: 0 };
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    times.reads = Number(/syscr:\s+(\d+)/.exec(io)?.[1] ?? 0);
    times.writes = Number(/syscw:\s+(\d+)/.exec(io)?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime, stime (fields 14, 15), in USER_HZ = 100 ticks (a function, not a module constant:
    // main() runs before the module's later declarations are initialized).
    times.cpuNs = (Number(fields[11]) + Number(fields[12])) * 1e7;
  } catch {
    return undefined;
  }
  for (const tid of tasks) {
    try {
      const [, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
      times.waitNs += wait;
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      times.voluntary += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      times.involuntary += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch { /* the thread ended */ }
  }
  return times;
}

function childPids(parent: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === parent) pids.push(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

function sampleTree(): TreeSample {
  const children = new Map<number, ProcTimes>();
  for (const pid of childPids(process.pid)) {
    const t = readProc(pid);
    if (t !== undefined) children.set(pid, t);
  }
  return { at: performance.now(), driver: readProc(process.pid)!, children };
}

function splitOf(a: TreeSample, b: TreeSample, ops: number): Split {
  const sumChildren = (key: keyof ProcTimes) => {
    let total = 0;
    for (const [pid, after] of b.children) total += after[key] - (a.children.get(pid)?.[key] ?? 0);
    return total;
  };
  const wallUs = ((b.at - a.at) * 1000) / ops;
  const driverCpu = (b.driver.cpuNs - a.driver.cpuNs) / 1000 / ops;
  const workersCpu = sumChildren("cpuNs") / 1000 / ops;
  return {
    wall_us: wallUs,
    driver_cpu_us: driverCpu,
    workers_cpu_us: workersCpu,
    neither_running_us: wallUs - driverCpu - workersCpu,
    driver_runqueue_wait_us: (b.driver.waitNs - a.driver.waitNs) / 1000 / ops,
    workers_runqueue_wait_us: sumChildren("waitNs") / 1000 / ops,
    driver_voluntary_switches: (b.driver.voluntary - a.driver.voluntary) / ops,
    workers_voluntary_switches: sumChildren("voluntary") / ops,
    driver_involuntary_switches: (b.driver.involuntary - a.driver.involuntary) / ops,
    workers_involuntary_switches: sumChildren("involuntary") / ops,
    driver_read_syscalls: (b.driver.reads - a.driver.reads) / ops,
    workers_read_syscalls: sumChildren("reads") / ops,
    driver_write_syscalls: (b.driver.writes - a.driver.writes) / ops,
    workers_write_syscalls: sumChildren("writes") / ops,
    children: b.children.size,
  };
}

/** Pins every thread of `pid` (or only its main thread) to `cpu`. */
function pin(pid: number, cpu: number, allThreads: boolean): void {
  try {
    execFileSync("taskset", [...(allThreads ? ["-a"] : []), "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
  } catch (error) {
    throw new Error(`taskset failed for pid ${pid}: ${error}`);
  }
}

/** Pins the children of this process (workers, the echo child), all their threads, to `cpu`. */
function pinChildren(cpu: number): void {
  for (const child of childPids(process.pid)) pin(child, cpu, true);
}

// ---------------------------------------------------------------------------------------------
// The floor: a child of the same runtime (this file with --echo) over node:child_process pipes,
// with the scheduler's framing (MARK + JSON + newline).

interface Echo {
  roundTrip(n: number): Promise<void>;
  close(): Promise<void>;
}

function startEcho(): Echo {
  const script = fileURLToPath(import.meta.url);
  const command = runtime === "deno" ? g.Deno.execPath() : process.execPath;
  const childArgs = runtime === "deno" ? ["run", "-A", script, "--echo"] : [script, "--echo"];
  const child = spawn(command, childArgs, { stdio: ["pipe", "pipe", "inherit"] });
  child.stdout!.setEncoding("utf8");
  const MARK = "\u0001os ";
  let pending = "";
  let waiting = 0;
  let wake: (() => void) | undefined;
  child.stdout!.on("data", (chunk: string) => {
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      JSON.parse(line.slice(MARK.length));
      if (--waiting === 0) wake!();
    }
  });
  const roundTrip = (n: number) =>
    new Promise<void>((resolve) => {
      waiting = n;
      wake = resolve;
      let out = "";
      for (let i = 0; i < n; i++) out += MARK + JSON.stringify({ t: "done", task: i }) + "\n";
      child.stdin!.write(out);
    });
  return {
    roundTrip,
    async close() {
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const os = await import("../mod.ts");
  const quick = args.includes("--quick");
  const onlyAt = args.indexOf("--only");
  const only = onlyAt >= 0 ? new Set(args[onlyAt + 1].split(",")) : undefined;
  const sleepAt = args.indexOf("--sleep");
  const SLEEP_S = sleepAt >= 0 ? Number(args[sleepAt + 1]) : 0;
  const WARMUP_S = quick ? 0.05 : 1;
  const ROUNDS = quick ? 3 : 4;
  const ROUND_S = quick ? 0.1 : 2;
  const placementAt = args.indexOf("--placement");
  const placement = placementAt >= 0 ? args[placementAt + 1] : "free";
  if (!["free", "same", "split"].includes(placement)) throw new Error(`--placement same|split, got ${placement}`);
  if (placement !== "free") pin(process.pid, 0, true);
  const BATCH = 1000;
  const MiB = 1024 * 1024;
  const runtimeVersion = runtime === "deno" ? g.Deno.version.deno : runtime === "bun" ? g.Bun.version : process.version;

  /** Ray's `timeit`, with the /proc split of the timed rounds. */
  async function timeit(name: string, fn: () => Promise<unknown>, multiplier = 1): Promise<Rate> {
    if (SLEEP_S > 0) await new Promise((r) => setTimeout(r, SLEEP_S * 1000));
    let count = 0;
    let start = performance.now();
    while (performance.now() - start < WARMUP_S * 1000) {
      await fn();
      count++;
    }
    const step = Math.floor(count / 10) + 1;
    const rounds: number[] = [];
    let calls = 0;
    if (placement === "split") pinChildren(1);
    const before = sampleTree();
    for (let r = 0; r < ROUNDS; r++) {
      count = 0;
      start = performance.now();
      while (performance.now() - start < ROUND_S * 1000) {
        for (let i = 0; i < step; i++) await fn();
        count += step;
      }
      rounds.push((multiplier * count) / ((performance.now() - start) / 1000));
      calls += count;
    }
    const after = sampleTree();
    const mean = rounds.reduce((a, b) => a + b, 0) / rounds.length;
    const std = Math.sqrt(rounds.reduce((a, b) => a + (b - mean) ** 2, 0) / rounds.length);
    const split = splitOf(before, after, calls * multiplier);
    log(
      `${name} per second ${fmt(mean)} +- ${fmt(std)}  ` +
        `[per op: wall ${fmt(split.wall_us)} µs, driver CPU ${fmt(split.driver_cpu_us)}, workers CPU ${fmt(split.workers_cpu_us)}, ` +
        `run-queue wait ${fmt(split.driver_runqueue_wait_us)}+${fmt(split.workers_runqueue_wait_us)}, ` +
        `sleeps ${fmt(split.driver_voluntary_switches)}+${fmt(split.workers_voluntary_switches)}, ` +
        `writes ${fmt(split.driver_write_syscalls)}+${fmt(split.workers_write_syscalls)}, reads ${fmt(split.driver_read_syscalls)}+${fmt(split.workers_read_syscalls)}]`,
    );
    return { mean, std, rounds, split };
  }

  const wanted = (name: string) => only === undefined || only.has(name);
  const results: Record<string, Rate> = {};
  const floors: Record<string, Rate> = {};
  const loadBefore = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const t0 = performance.now();

  // --- the floor
  const echo = startEcho();
  await echo.roundTrip(1);
  if (wanted("pipe_pingpong_sync")) floors.pipe_pingpong_sync = await timeit("pipe ping-pong sync (floor)", () => echo.roundTrip(1));
  if (wanted("pipe_pingpong_async")) floors.pipe_pingpong_async = await timeit("pipe ping-pong async (floor)", () => echo.roundTrip(BATCH), BATCH);

  await os.init({ objectStoreMemory: 512 * MiB, numWorkers: 2 });
  try {
    const smallValue = os.remote(function small_value() {
      return "ok";
    });
    if (wanted("single_client_tasks_sync")) {
      results.single_client_tasks_sync = await timeit("single client tasks sync", async () => {
        const ref = smallValue.remote();
        await os.get(ref);
        os.free(ref);
      });
    }
    if (wanted("single_client_tasks_async")) {
      results.single_client_tasks_async = await timeit("single client tasks async", async () => {
        const refs = Array.from({ length: BATCH }, () => smallValue.remote());
        await os.get(refs);
        os.free(refs);
      }, BATCH);
    }
    if (wanted("1_1_actor_calls_sync") || wanted("1_1_actor_calls_async")) {
      class Actor {
        small_value() {
          return "ok";
        }
      }
      const actorClass = os.remote(Actor);
      if (wanted("1_1_actor_calls_sync")) {
        const a = actorClass.remote();
        results["1_1_actor_calls_sync"] = await timeit("1:1 actor calls sync", async () => {
          const ref = a.small_value.remote();
          await os.get(ref);
          os.free(ref);
        });
        os.kill(a);
      }
      if (wanted("1_1_actor_calls_async")) {
        const a = actorClass.remote();
        results["1_1_actor_calls_async"] = await timeit("1:1 actor calls async", async () => {
          const refs = Array.from({ length: BATCH }, () => a.small_value.remote());
          await os.get(refs);
          os.free(refs);
        }, BATCH);
        os.kill(a);
      }
    }
    if (wanted("arg_1mib_sync") || wanted("arg_1mib_async")) {
      const big = os.put(new Uint8Array(MiB).fill(1));
      const takesArray = os.remote(function length(array: Uint8Array) {
        return array.length;
      });
      if (wanted("arg_1mib_sync")) {
        results.arg_1mib_sync = await timeit("1 MiB argument by ref, sync", async () => {
          const ref = takesArray.remote(big);
          await os.get(ref);
          os.free(ref);
        });
      }
      if (wanted("arg_1mib_async")) {
        results.arg_1mib_async = await timeit("1 MiB argument by ref, async", async () => {
          const refs = Array.from({ length: BATCH }, () => takesArray.remote(big));
          await os.get(refs);
          os.free(refs);
        }, BATCH);
      }
      os.free(big);
    }
  } finally {
    await os.shutdown();
    await echo.close();
  }

  process.stdout.write(JSON.stringify({
    runtime,
    runtime_version: runtimeVersion,
    quick,
    placement,
    harness: `Ray's timeit: ${WARMUP_S} s warm-up, ${ROUNDS} rounds of ≥ ${ROUND_S} s, mean ± std (sleep ${SLEEP_S} s)`,
    num_workers: 2,
    load_before: loadBefore,
    load_after: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    seconds: (performance.now() - t0) / 1000,
    results,
    floors,
  }) + "\n");
}
