/**
 * What every benchmark of bench/ shares, on Node, Deno and Bun: the runtime, the command line,
 * Ray's `timeit`, the garbage collector, and where the time goes from /proc.
 *
 * `timeit` is Ray's (ray/_private/ray_microbenchmark_helpers.py) minus its 10 s sleep (`sleepS`
 * restores it): run `fn` for 1 s and count → `step = count // 10 + 1` → 4 rounds, each running
 * `fn` in groups of `step` until ≥ 2 s → rate = multiplier × calls / elapsed; mean and std
 * (population, as numpy's) of the 4. `--quick` (CI smoke): 0.05 s warm-up, 3 rounds of 0.1 s.
 *
 * Progress goes to stderr (`log`); a benchmark's result is one JSON line on stdout (`emit`).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";

// deno-lint-ignore no-explicit-any
export const g = globalThis as any;
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
export const runtimeVersion: string = runtime === "deno" ? g.Deno.version.deno : runtime === "bun" ? g.Bun.version : process.version;
export const args: string[] = runtime === "deno" ? g.Deno.args : process.argv.slice(2);
export const quick = args.includes("--quick");
export const MiB = 1024 * 1024;

/** The value after `--name` on the command line. */
export function option(name: string): string | undefined {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}

/** `--name a,b`: the set of names, or undefined (all). */
export function optionSet(name: string): Set<string> | undefined {
  const value = option(name);
  return value === undefined ? undefined : new Set(value.split(","));
}

export const HARNESS = { warmup_s: quick ? 0.05 : 1, rounds: quick ? 3 : 4, round_s: quick ? 0.1 : 2 };

export function log(message: string): void {
  process.stderr.write(message + "\n");
}

/** Writes the benchmark's result, one JSON line. */
export function emit(result: unknown): void {
  process.stdout.write(JSON.stringify(result) + "\n");
}

export function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

export function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

/** Mean, std (population, as numpy's) and the rate of each round; `split`: per-op costs. */
export interface Rate {
  mean: number;
  std: number;
  rounds: number[];
  split?: Record<string, number>;
}

export function summarize(rounds: number[]): Rate {
  const mean = rounds.reduce((a, b) => a + b, 0) / rounds.length;
  const std = Math.sqrt(rounds.reduce((a, b) => a + (b - mean) ** 2, 0) / rounds.length);
  return { mean, std, rounds };
}

/** Measures something over the timed rounds: `after(before(), ops)` → per-op figures. */
export interface Probe<T = unknown> {
  before(): T;
  after(before: T, ops: number): Record<string, number>;
}

export interface TimeitOptions {
  multiplier?: number;
  /** Runs after each group of `step` calls with the clock stopped (releasing results). */
  cleanup?: () => void;
  /** Ray's sleep before the warm-up, seconds (Ray: 10; ours: 0). */
  sleepS?: number;
  /** Runs once between the warm-up and the rounds (pinning processes started by the warm-up). */
  afterWarmup?: () => void;
  probe?: Probe;
}

/** Ray's `timeit`. `fn` may be synchronous (then it is not awaited) or return a promise. */
export async function timeit(name: string, fn: () => unknown, options: TimeitOptions = {}): Promise<Rate> {
  const { multiplier = 1, cleanup, sleepS = 0, afterWarmup, probe } = options;
  if (sleepS > 0) await new Promise((r) => setTimeout(r, sleepS * 1000));
  const first = fn(); // one untimed call tells whether to await
  const isAsync = first instanceof Promise;
  if (isAsync) await first;
  cleanup?.();
  let count = 0;
  let start = performance.now();
  while (performance.now() - start < HARNESS.warmup_s * 1000) {
    if (isAsync) await fn();
    else fn();
    count++;
    if (cleanup) {
      const paused = performance.now();
      cleanup();
      start += performance.now() - paused;
    }
  }
  const step = Math.floor(count / 10) + 1;
  afterWarmup?.();
  const rounds: number[] = [];
  let calls = 0;
  const sample = probe?.before();
  for (let r = 0; r < HARNESS.rounds; r++) {
    let excluded = 0;
    count = 0;
    start = performance.now();
    while (performance.now() - start - excluded < HARNESS.round_s * 1000) {
      if (isAsync) for (let i = 0; i < step; i++) await fn();
      else for (let i = 0; i < step; i++) fn();
      count += step;
      if (cleanup) {
        const paused = performance.now();
        cleanup();
        excluded += performance.now() - paused;
      }
    }
    rounds.push((multiplier * count) / ((performance.now() - start - excluded) / 1000));
    calls += count;
  }
  const rate = summarize(rounds);
  if (probe) rate.split = probe.after(sample, calls * multiplier);
  const split = rate.split ? `  [per op: ${Object.entries(rate.split).filter(([k]) => /wall|cpu/.test(k)).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}]` : "";
  log(`${name} per second ${fmt(rate.mean)} +- ${fmt(rate.std)}${split}`);
  return rate;
}

/** Collects garbage so unreachable views unpin and forgotten refs drop, then lets finalizers run. */
export async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    if (typeof g.gc === "function") g.gc();
    else if (g.Bun?.gc) g.Bun.gc(true);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// ---------------------------------------------------------------------------------------------
// Where the time goes: CPU, run-queue wait, context switches and syscalls, from /proc.

export interface ProcTimes {
  cpuNs: number;
  waitNs: number;
  voluntary: number;
  involuntary: number;
  /** read/write-family system calls (/proc/PID/io syscr, syscw): pipe reads and writes, mostly. */
  reads: number;
  writes: number;
}

/**
 * CPU time is the process's utime + stime (/proc/PID/stat, 10 ms ticks), which keeps the time of
 * threads that have exited (a sum over /proc/PID/task would lose it). Run-queue wait and context
 * switches are summed over the live threads.
 */
export function readProc(pid: number | "self"): ProcTimes | undefined {
  const times: ProcTimes = { cpuNs: 0, waitNs: 0, voluntary: 0, involuntary: 0, reads: 0, writes: 0 };
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    times.reads = Number(/syscr:\s+(\d+)/.exec(io)?.[1] ?? 0);
    times.writes = Number(/syscw:\s+(\d+)/.exec(io)?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    times.cpuNs = (Number(fields[11]) + Number(fields[12])) * 1e7; // utime, stime: USER_HZ = 100
  } catch {
    return undefined;
  }
  for (const tid of tasks) {
    try {
      const [, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
      times.waitNs += wait;
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      times.voluntary += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      times.involuntary += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch { /* the thread ended */ }
  }
  return times;
}

export function childPids(parent: number): number[] {
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

interface TreeSample {
  at: number;
  driver: ProcTimes;
  children: Map<number, ProcTimes>;
}

/**
 * Per op, over the timed rounds, for this process (the driver) and its children (workers):
 * wall µs, CPU µs, wall − CPU (neither side running, with one op in flight), run-queue wait µs,
 * voluntary/involuntary switches, read/write syscalls.
 */
export const processTreeProbe: Probe<TreeSample> = {
  before: sampleTree,
  after(a, ops) {
    const b = sampleTree();
    const sumChildren = (key: keyof ProcTimes) => {
      let total = 0;
      for (const [pid, after] of b.children) total += after[key] - (a.children.get(pid)?.[key] ?? 0);
      return total;
    };
    const own = (key: keyof ProcTimes) => b.driver[key] - a.driver[key];
    const wallUs = ((b.at - a.at) * 1000) / ops;
    const driverCpu = own("cpuNs") / 1000 / ops;
    const workersCpu = sumChildren("cpuNs") / 1000 / ops;
    return {
      wall_us: wallUs,
      driver_cpu_us: driverCpu,
      workers_cpu_us: workersCpu,
      neither_running_us: wallUs - driverCpu - workersCpu,
      driver_runqueue_wait_us: own("waitNs") / 1000 / ops,
      workers_runqueue_wait_us: sumChildren("waitNs") / 1000 / ops,
      driver_voluntary_switches: own("voluntary") / ops,
      workers_voluntary_switches: sumChildren("voluntary") / ops,
      driver_involuntary_switches: own("involuntary") / ops,
      workers_involuntary_switches: sumChildren("involuntary") / ops,
      driver_read_syscalls: own("reads") / ops,
      workers_read_syscalls: sumChildren("reads") / ops,
      driver_write_syscalls: own("writes") / ops,
      workers_write_syscalls: sumChildren("writes") / ops,
      children: b.children.size,
    };
  },
};

function sampleTree(): TreeSample {
  const children = new Map<number, ProcTimes>();
  for (const pid of childPids(process.pid)) {
    const t = readProc(pid);
    if (t !== undefined) children.set(pid, t);
  }
  return { at: performance.now(), driver: readProc(process.pid)!, children };
}

/** Per op, for this whole process (all its threads: a thread pool's workers are among them). */
export const selfProbe: Probe<{ at: number; times: ProcTimes }> = {
  before: () => ({ at: performance.now(), times: readProc("self")! }),
  after(a, ops) {
    const b = readProc("self")!;
    return {
      wall_us: ((performance.now() - a.at) * 1000) / ops,
      process_cpu_us: (b.cpuNs - a.times.cpuNs) / 1000 / ops,
      runqueue_wait_us: (b.waitNs - a.times.waitNs) / 1000 / ops,
      voluntary_switches: (b.voluntary - a.times.voluntary) / ops,
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Placement: `--placement same|split` pins processes or threads with taskset.

/** `--placement`: "free" (the kernel places), "same" (all on CPU 0) or "split" (driver 0, rest 1). */
export function placementOption(): "free" | "same" | "split" {
  const placement = option("--placement") ?? "free";
  if (placement !== "free" && placement !== "same" && placement !== "split") {
    throw new Error(`--placement same|split, got ${placement}`);
  }
  return placement;
}

/** Pins `pid` (a process with all its threads, or one thread) to `cpu`. */
export function pin(pid: number | string, cpu: number, allThreads: boolean): void {
  try {
    execFileSync("taskset", [...(allThreads ? ["-a"] : []), "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
  } catch (error) {
    throw new Error(`taskset failed for pid ${pid}: ${error}`);
  }
}

/** Pins the children of this process (workers, the echo child), all their threads, to `cpu`. */
export function pinChildren(cpu: number): void {
  for (const child of childPids(process.pid)) pin(child, cpu, true);
}
