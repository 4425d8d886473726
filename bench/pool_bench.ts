/**
 * The thread pools people use for tasks on Node today, piscina and tinypool, on the workloads of
 * bench/tasks_bench.ts, with the same harness, on whichever runtime starts this file:
 *
 *   node bench/pool_bench.ts [--quick] [--only piscina|tinypool] [--workloads NAME,…] [--placement same|split]
 *   deno run -A bench/pool_bench.ts [--quick]
 *   bun bench/pool_bench.ts [--quick]
 *
 * The pools are installed (pinned) by bench/run_all.sh into .tools/bench-node/, outside the
 * project's package.json, and imported from there by path. Each pool has 2 worker threads
 * (minThreads = maxThreads = 2, the cores of the bench machine) and default settings otherwise.
 * This file is also the pools' worker module: in a worker thread it only exports the task.
 *
 *   single_client_tasks_sync    await pool.run(null)                          × 1
 *   single_client_tasks_async   await Promise.all([pool.run(null) × 1000])    × 1000
 *   arg_1mib_sync / _async      the same with a 1 MiB Uint8Array argument, which the pool
 *                               copies to the worker (structured clone) on every task
 *
 * The task returns the argument's length (0 for null). Harness: Ray's `timeit`
 * (bench/lib/harness.ts); `--quick`: 0.05 s warm-up, 3 rounds of 0.1 s. Per op, the
 * CPU time of this whole process (all threads: the pool's workers are threads of it) and its
 * voluntary context switches. `--workloads a,b` runs only those; `--placement same|split` pins the
 * threads (taskset): `same` all on CPU 0, `split` the main thread on CPU 0 and the others (the
 * pool's workers among them) on CPU 1, as tasks_bench.ts does with processes. Progress goes to stderr; stdout gets one JSON line.
 */
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { isMainThread } from "node:worker_threads";
import { emit, fmt, HARNESS, log, MiB, optionSet, pin, placementOption, quick, type Rate, runtime, runtimeVersion, selfProbe, timeit as harnessTimeit } from "./lib/harness.ts";

/** The task, in the pools' worker threads. */
export default function task(value: Uint8Array | null): number {
  return value === null ? 0 : value.length;
}

if (isMainThread) await main();

async function main(): Promise<void> {
  const only = optionSet("--only");
  const BATCH = 1000;
  const THREADS = 2;
  const here = fileURLToPath(import.meta.url);
  const modules = new URL("../.tools/bench-node/node_modules/", import.meta.url);
  const placement = placementOption();
  const workloads = optionSet("--workloads");
  const want = (key: string) => workloads === undefined || workloads.has(key);
  /** same: every thread on CPU 0; split: the main thread on CPU 0, every other (the pool's) on CPU 1. */
  const place = () => {
    if (placement === "free") return;
    for (const tid of readdirSync("/proc/self/task")) pin(tid, placement === "split" && Number(tid) !== process.pid ? 1 : 0, false);
  };
  place();
  // place() again after the warm-up: threads the pool or the runtime started since.
  const timeit = (name: string, fn: () => Promise<unknown>, multiplier = 1): Promise<Rate> =>
    harnessTimeit(name, fn, { multiplier, afterWarmup: place, probe: selfProbe });

  interface Pool {
    run(value: unknown): Promise<unknown>;
    destroy(): Promise<unknown>;
  }
  const pools: Record<string, { version: string; make: () => Promise<Pool> }> = {
    piscina: {
      version: JSON.parse(readFileSync(new URL("piscina/package.json", modules), "utf8")).version,
      make: async () => {
        const { Piscina } = await import(new URL("piscina/dist/esm-wrapper.mjs", modules).href);
        return new Piscina({ filename: here, minThreads: THREADS, maxThreads: THREADS }) as Pool;
      },
    },
    tinypool: {
      version: JSON.parse(readFileSync(new URL("tinypool/package.json", modules), "utf8")).version,
      make: async () => {
        const { Tinypool } = await import(new URL("tinypool/dist/index.js", modules).href);
        return new Tinypool({ filename: here, minThreads: THREADS, maxThreads: THREADS }) as Pool;
      },
    },
  };

  const out: Record<string, unknown> = {
    runtime,
    runtime_version: runtimeVersion,
    quick,
    threads: THREADS,
    placement,
    harness: `Ray's timeit: ${HARNESS.warmup_s} s warm-up, ${HARNESS.rounds} rounds of ≥ ${HARNESS.round_s} s, mean ± std`,
  };
  const big = new Uint8Array(MiB).fill(1);
  for (const [name, pool] of Object.entries(pools)) {
    if (only !== undefined && !only.has(name)) continue;
    const entry: Record<string, unknown> = { version: pool.version };
    out[name] = entry;
    let p: Pool | undefined;
    try {
      p = await pool.make();
      const answer = await withTimeout(p.run(big), 30_000, `${name}: the first task did not finish in 30 s`);
      if (answer !== MiB) throw new Error(`${name}: the task returned ${answer}, expected ${MiB}`);
      const results: Record<string, Rate> = {};
      entry.results = results;
      const pool_ = p;
      if (want("single_client_tasks_sync")) results.single_client_tasks_sync = await timeit(`${name} no-op sync`, () => pool_.run(null));
      if (want("single_client_tasks_async")) results.single_client_tasks_async = await timeit(`${name} no-op async`, () => Promise.all(Array.from({ length: BATCH }, () => pool_.run(null))), BATCH);
      if (want("arg_1mib_sync") || want("arg_1mib_async")) results.arg_1mib_sync = await timeit(`${name} 1 MiB argument (copied), sync`, () => pool_.run(big));
      // Deno's node:worker_threads copies typed arrays at ~0.01–0.1 GB/s: a batch of 1000 would
      // take minutes per call. Skip what the sync rate says cannot fit the harness.
      const batchSeconds = results.arg_1mib_sync === undefined ? 0 : BATCH / results.arg_1mib_sync.mean;
      if (!want("arg_1mib_async")) {
        // not asked for
      } else if (batchSeconds > (quick ? 1 : 5)) {
        entry.skipped = { arg_1mib_async: `one batch of ${BATCH} would take ~${batchSeconds.toFixed(0)} s at the sync rate (${fmt(results.arg_1mib_sync.mean)}/s)` };
        log(`${name} 1 MiB argument (copied), async: skipped, ${(entry.skipped as Record<string, string>).arg_1mib_async}`);
      } else {
        results.arg_1mib_async = await timeit(`${name} 1 MiB argument (copied), async`, () => Promise.all(Array.from({ length: BATCH }, () => pool_.run(big))), BATCH);
      }
    } catch (error) {
      entry.error = String((error as Error)?.stack ?? error).split("\n").slice(0, 4).join("\n");
      log(`${name} on ${runtime}: ${entry.error}`);
    } finally {
      if (p !== undefined) await withTimeout(p.destroy(), 10_000, "destroy").catch(() => {});
    }
  }
  emit(out);
  // A pool that hung leaves threads behind: do not wait for them.
  process.exit(0);
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms))),
  ]).finally(() => clearTimeout(timer));
}
