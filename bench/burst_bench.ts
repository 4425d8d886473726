/**
 * Tasks after a burst (issue 15, item 3): in one process, the task and actor workloads of
 * `ray microbenchmark` before and after what Ray's own order runs first — `put(0)` with the ref
 * dropped, puts of an 800 MiB array, a get of an object holding 10,000 refs. Whatever ran
 * before, task and actor throughput should stay within 0.8× of the fresh figures.
 *
 *   node --expose-gc bench/burst_bench.ts [--quick] [--sleep S] [--store-mib N] [--placement same|split]
 *   deno run -A --v8-flags=--expose-gc bench/burst_bench.ts [--quick]
 *   bun bench/burst_bench.ts [--quick]
 *
 * (`bench/run_all.sh` runs all three, and Ray the same sequence in one driver with
 * bench/ray_burst.py.) The store is a default one (30 % of RAM, capped by /dev/shm), as a
 * program that calls `init()` gets, or `--store-mib N`; `--quick` (CI smoke) uses 256 MiB
 * (not prefaulted), 40 MiB arrays and the harness's short rounds.
 *
 * Phases, each workload through Ray's `timeit` (bench/lib/harness.ts):
 *   fresh   tasks_sync        get(f.remote()), f returns an 8-byte Uint8Array        × 1
 *           tasks_async       get([f.remote() × 1000])                                × 1000
 *           wait_1k_refs      1000 × f.remote(), then 1000 × [ready, pending] = wait(pending)
 *           actor_sync        get(a.small_value.remote()) on one actor               × 1
 *           actor_async       get([a.small_value.remote() × 1000])                    × 1000
 *   burst   put_dropped       put(0), the ref dropped (no free): Ray's put calls as Python runs them
 *           put_800mib        put of an 800 MiB BigInt64Array, disposed; GB/s (10⁹ B)
 *           get_10k_refs      get of an object holding 10,000 refs, the refs dropped
 *   after   the fresh workloads again
 * One-in-flight rates (tasks_sync, actor_sync) are bimodal on a 2-vCPU VM unless the processes
 * are placed (bench/tasks_bench.ts explains why): `--placement same` pins the driver and its
 * workers to CPU 0, `split` the driver to 0 and the workers to 1 (after each warm-up).
 * Progress goes to stderr; stdout gets one JSON line: the three phases, memoryStats after each,
 * and after/fresh per workload.
 */
import process from "node:process";
import * as os from "../mod.ts";
import {
  emit,
  HARNESS,
  loadavg,
  log,
  MiB,
  option,
  pin,
  pinChildren,
  placementOption,
  quick,
  type Rate,
  runtime,
  runtimeVersion,
  timeit as harnessTimeit,
} from "./lib/harness.ts";

class Actor {
  small_value() {
    return "ok";
  }
}

const BATCH = 1000;
const BIG_ELEMENTS = quick ? 5 * MiB : 100 * MiB;
const sleepS = Number(option("--sleep") ?? 0);
const placement = placementOption();
if (placement !== "free") pin(process.pid, 0, true);

function timeit(name: string, fn: () => unknown, multiplier = 1): Promise<Rate> {
  return harnessTimeit(name, fn, { multiplier, sleepS, afterWarmup: placement === "split" ? () => pinChildren(1) : undefined });
}

type Phase = Record<string, Rate>;

async function taskPhase(label: string): Promise<Phase> {
  const small = os.remote(function small_array() {
    return new Uint8Array(8);
  });
  const actorClass = os.remote(Actor);
  const phase: Phase = {};
  phase.tasks_sync = await timeit(`${label}: tasks sync`, async () => {
    const ref = small.remote();
    await os.get(ref);
    os.free(ref);
  });
  phase.tasks_async = await timeit(`${label}: tasks async`, async () => {
    const refs = Array.from({ length: BATCH }, () => small.remote());
    await os.get(refs);
    os.free(refs);
  }, BATCH);
  phase.wait_1k_refs = await timeit(`${label}: wait on 1k refs`, async () => {
    const all = Array.from({ length: BATCH }, () => small.remote());
    let pending = all;
    for (let i = 0; i < BATCH; i++) [, pending] = await os.wait(pending);
    os.free(all);
  });
  const actor = actorClass.remote();
  try {
    phase.actor_sync = await timeit(`${label}: 1:1 actor calls sync`, async () => {
      const ref = actor.small_value.remote();
      await os.get(ref);
      os.free(ref);
    });
    phase.actor_async = await timeit(`${label}: 1:1 actor calls async`, async () => {
      const refs = Array.from({ length: BATCH }, () => actor.small_value.remote());
      await os.get(refs);
      os.free(refs);
    }, BATCH);
  } finally {
    os.kill(actor);
  }
  return phase;
}

async function burstPhase(): Promise<Phase> {
  const phase: Phase = {};
  await recorded(phase, "put_dropped", () =>
    timeit("burst: put(0), ref dropped", () => {
      os.put(0);
    }));
  const big = new BigInt64Array(BIG_ELEMENTS);
  for (let i = 0; i < big.length; i += 512) big[i] = BigInt(i); // every page written
  await recorded(phase, "put_800mib", () =>
    timeit(`burst: put ${(BIG_ELEMENTS * 8) / MiB} MiB (GB/s)`, () => {
      os.put(big)[Symbol.dispose]();
    }, (BIG_ELEMENTS * 8) / 1e9));
  await recorded(phase, "get_10k_refs", async () => {
    const inner = Array.from({ length: 10_000 }, () => os.put(0));
    const outer = os.put(inner);
    os.free(inner);
    try {
      return await timeit("burst: get of an object holding 10k refs", async () => {
        await os.get(outer); // its 10,000 refs dropped, as Python drops them
      });
    } finally {
      os.free(outer);
    }
  });
  return phase;
}

/** Runs a burst workload; a failure (before issue 15, the store's index filled) is recorded
 * and the sequence goes on, as Ray's does. */
async function recorded(phase: Phase, key: string, body: () => Promise<Rate>): Promise<void> {
  try {
    phase[key] = await body();
  } catch (error) {
    log(`${key} FAILED: ${(error as Error).message}`);
    phase[key] = { mean: 0, std: 0, rounds: [], error: String(error) } as Rate;
  }
}

function stats(): Record<string, number> {
  const { objectCount, usedBytes, pinnedBytes } = os.memoryStats();
  return { objectCount, usedBytes, pinnedBytes, rssBytes: process.memoryUsage().rss };
}

const loadBefore = loadavg();
const started = performance.now();
const storeMib = Number(option("--store-mib") ?? (quick ? 256 : 0));
const { storeName } = await os.init({ ...(storeMib > 0 ? { objectStoreMemory: storeMib * MiB } : {}), prefault: !quick });
const capacityBytes = os.memoryStats().capacityBytes;
log(`burst_bench on ${runtime} ${runtimeVersion}: store ${storeName}, ${(capacityBytes / 2 ** 30).toFixed(2)} GiB`);
let result: Record<string, unknown>;
try {
  const fresh = await taskPhase("fresh");
  const afterFresh = stats();
  const burst = await burstPhase();
  const afterBurst = stats();
  const after = await taskPhase("after the burst");
  const ratios: Record<string, number> = {};
  for (const key of Object.keys(fresh)) ratios[key] = after[key].mean / fresh[key].mean;
  log(`after/fresh: ${Object.entries(ratios).map(([k, r]) => `${k} ${r.toFixed(2)}`).join(", ")}`);
  result = {
    fresh,
    burst,
    after,
    after_vs_fresh: ratios,
    memory: { after_fresh: afterFresh, after_burst: afterBurst, after_tasks: stats() },
  };
} finally {
  await os.shutdown();
}
emit({
  runtime,
  runtime_version: runtimeVersion,
  quick,
  placement,
  harness: `Ray's timeit: ${HARNESS.warmup_s} s warm-up, ${HARNESS.rounds} rounds of ≥ ${HARNESS.round_s} s, mean ± std (sleep ${sleepS} s)`,
  store_bytes: capacityBytes,
  big_bytes: BIG_ELEMENTS * 8,
  load_before: loadBefore,
  load_after: loadavg(),
  seconds: (performance.now() - started) / 1000,
  ...result,
});
