/**
 * The task and actor workloads of `ray microbenchmark`, through the public API only, on whichever
 * runtime starts this file:
 *
 *   node bench/tasks_bench.ts [--quick] [--only NAME[,NAME]] [--placement same|split] [--sleep S]
 *   deno run -A bench/tasks_bench.ts [--quick]
 *   bun bench/tasks_bench.ts [--quick]
 *
 * (`bench/run_all.sh` runs all three and compares them with Ray, piscina and tinypool.)
 *
 * Workloads, Ray's keys and fixtures (ray/_private/ray_perf.py): `small_value` returns "ok" (Ray:
 * b"ok"); `Actor` has small_value, small_value_arg(x), small_value_batch(n) (submits n small_value
 * tasks and gets them); `AsyncActor` the same as async methods; `Client(servers)` calls n
 * small_value (or small_value_arg(put(0))) on each of its actors and gets them. N = the number of
 * CPUs // 2 (at least 1), as Ray's n_cpu.
 *   single_client_tasks_sync        get(f.remote())                                      × 1
 *   single_client_tasks_async       get([f.remote() × 1000])                             × 1000
 *   multi_client_put_calls_Plasma_Store   get([do_put_small.remote() × 10]), each put(0) × 100   × 1000
 *   multi_client_put_gigabytes      get([do_put.remote() × 10]), each puts a zeroed Float64Array of
 *                                   10 Mi elements (80 MiB) × 10; GB/s in 10⁹ B (Ray: nominal 8/call)
 *   single_client_wait_1k_refs      1000 × f.remote(), then 1000 × [ready, pending] = wait(pending)
 *   multi_client_tasks_async        4 Actors, small_value_batch(10000) each, get all    × 40000
 *   1_1_actor_calls_sync / _async   on one Actor, 1 / 1000 in flight
 *   1_n_actor_calls_async           a Client over N Actors, small_value_batch(5000)      × 5000·N
 *   n_n_actor_calls_async           4 tasks, each 5000 calls round-robin over N Actors   × 20000
 *   n_n_actor_calls_with_arg_async  N Clients with one Actor each, small_value_batch_arg(1000) × 1000·N
 *   1_1_async_actor_calls_sync / _async / _with_args_async   the same on one AsyncActor
 * and, for the comparison with the thread pools (bench/pool_bench.ts), a task taking a 1 MiB
 * Uint8Array, `put` once and passed by ref (arrives as a zero-copy view):
 *   arg_1mib_sync / arg_1mib_async  (1 / 1000 in flight)
 * Every result ref is freed right after its get (Python drops Ray's refs the same way).
 * `--quick` shrinks the batch sizes (10000 → 500, 5000 → 250, 1000 per client → 100, 80 MiB → 8 MiB).
 *
 * Floors, measured in the same run: a bare pipe ping-pong between this process and a child of
 * the same runtime (this file with --echo), over node:child_process pipes with line framing and
 * JSON, as the scheduler talked before it had shared-memory channels (zig/src/Channel.zig), with
 * no store and no scheduler: pipe_pingpong_sync (one message in flight) and pipe_pingpong_async
 * (1000 messages in one write, then all the replies). One-in-flight tasks now pass it: what
 * the channel saves is this floor. And the same echo over a channel (lib/tasks/channel.ts), both
 * sides spinning: channel_pingpong_sync / channel_pingpong_async, the floor of the task path now.
 *
 * `--placement same|split` pins the processes (taskset; default: the kernel places them): `same`
 * puts the driver and every child on CPU 0; `split` the driver on CPU 0 and its children on CPU 1
 * (pinned after each warm-up, since workers start on the first task). On the 2-vCPU VM this was
 * written on, a wake-up across vCPUs costs ~30 µs of CPU per side instead of ~5 (the floor runs
 * at ~90k/s on one vCPU and ~13k/s across two), and the kernel picks either depending on load,
 * so one-in-flight figures are bimodal unless placed.
 *
 * For every workload, where the time goes during the timed rounds (bench/lib/harness.ts
 * processTreeProbe, per op): wall µs; CPU µs of the driver and of its child processes (workers);
 * run-queue wait µs; voluntary context switches; read and write system calls. In a
 * one-in-flight workload, wall − driver CPU − worker CPU is the time when neither side runs.
 *
 * Harness: Ray's `timeit` (bench/lib/harness.ts) without its 10 s sleep (`--sleep S` restores
 * it). Progress goes to stderr; stdout gets one JSON line.
 */
import { spawn } from "node:child_process";
import { cpus } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  emit,
  g,
  HARNESS,
  loadavg,
  MiB,
  option,
  optionSet,
  pin,
  pinChildren,
  placementOption,
  processTreeProbe,
  quick,
  type Rate,
  runtime,
  runtimeVersion,
  args,
  summarize,
  timeit as harnessTimeit,
} from "./lib/harness.ts";

// ---------------------------------------------------------------------------------------------
// Ray's fixtures (ray_perf.py). Shipped to the workers by source: self-contained.

class Actor {
  small_value() {
    return "ok";
  }
  small_value_arg(_x: unknown) {
    return "ok";
  }
  async small_value_batch(n: number) {
    const core = await import("@objstore/core");
    const f = core.remote(function small_value() {
      return "ok";
    });
    const refs = Array.from({ length: n }, () => f.remote());
    await core.get(refs);
    core.free(refs);
  }
}

class AsyncActor {
  async small_value() {
    return "ok";
  }
  async small_value_with_arg(_x: unknown) {
    return "ok";
  }
}

class Client {
  // deno-lint-ignore no-explicit-any
  servers: any[];
  // deno-lint-ignore no-explicit-any
  constructor(servers: any) {
    this.servers = Array.isArray(servers) ? servers : [servers];
  }
  async small_value_batch(n: number) {
    const core = await import("@objstore/core");
    const refs = [];
    for (const s of this.servers) for (let i = 0; i < n; i++) refs.push(s.small_value.remote());
    await core.get(refs);
    core.free(refs);
  }
  async small_value_batch_arg(n: number) {
    const core = await import("@objstore/core");
    const x = core.put(0);
    const refs = [];
    for (const s of this.servers) for (let i = 0; i < n; i++) refs.push(s.small_value_arg.remote(x));
    await core.get(refs);
    core.free(refs);
    core.free(x);
  }
}

if (args.includes("--echo")) {
  // The floor's child: every chunk read goes straight back in one write.
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => process.stdout.write(chunk));
  process.stdin.on("end", () => process.exit(0));
} else if (args.includes("--echo-channel")) {
  await echoChannel(args[args.indexOf("--echo-channel") + 1]);
} else {
  await main();
}

// ---------------------------------------------------------------------------------------------
// The pipe floor: a child of the same runtime (this file with --echo) over node:child_process
// pipes, with the framing the scheduler used on them (MARK + JSON + newline).

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
// The channel floor: the same echo over a driver↔worker channel (lib/tasks/channel.ts), both
// sides spinning, one JSON line each way; no store, no scheduler. What the task path costs
// above it is the scheduler's and the worker's own work.

async function echoChannel(name: string): Promise<void> {
  const { loadLibrary } = await import("../lib/ffi/load.ts");
  const { Channel } = await import("../lib/tasks/channel.ts");
  const channel = Channel.open(await loadLibrary(), name, () => {});
  while (true) {
    const text = channel.receive(1_000_000);
    if (text === "") continue;
    if (text.includes('"exit"')) process.exit(0);
    channel.send(text);
  }
}

async function startChannelEcho(): Promise<Echo> {
  const { loadLibrary } = await import("../lib/ffi/load.ts");
  const { Channel } = await import("../lib/tasks/channel.ts");
  const channel = Channel.create(await loadLibrary(), `bench-${process.pid}`, () => {});
  const script = fileURLToPath(import.meta.url);
  const command = runtime === "deno" ? g.Deno.execPath() : process.execPath;
  const childArgs = runtime === "deno" ? ["run", "-A", script, "--echo-channel", channel.name] : [script, "--echo-channel", channel.name];
  const child = spawn(command, childArgs, { stdio: ["ignore", "inherit", "inherit"] });
  channel.listen();
  const roundTrip = (n: number) => {
    let out = "";
    for (let i = 0; i < n; i++) out += JSON.stringify({ t: "done", task: i }) + "\n";
    channel.send(out);
    let pending = "";
    let received = 0;
    while (received < n) {
      pending += channel.receive(1_000_000);
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        JSON.parse(pending.slice(0, end));
        pending = pending.slice(end + 1);
        received += 1;
      }
    }
    return Promise.resolve();
  };
  return {
    roundTrip,
    async close() {
      const exited = new Promise((r) => child.once("exit", r));
      channel.send('{"t":"exit"}\n');
      await exited;
      channel.close();
    },
  };
}

async function main(): Promise<void> {
  const os = await import("../mod.ts");
  const only = optionSet("--only");
  const sleepS = Number(option("--sleep") ?? 0);
  const placement = placementOption();
  if (placement !== "free") pin(process.pid, 0, true);
  const BATCH = 1000;
  const N_CPU = Math.max(1, Math.floor(cpus().length / 2));
  const size = (full: number, small: number) => (quick ? small : full);

  /** Ray's `timeit`, with the /proc split of the timed rounds. */
  const timeit = (name: string, fn: () => Promise<unknown>, multiplier = 1): Promise<Rate> =>
    harnessTimeit(name, fn, {
      multiplier,
      sleepS,
      afterWarmup: placement === "split" ? () => pinChildren(1) : undefined,
      probe: processTreeProbe,
    });

  const wanted = (name: string) => only === undefined || only.has(name);
  const results: Record<string, Rate> = {};
  const floors: Record<string, Rate> = {};
  const errors: Record<string, string> = {};
  const loadBefore = loadavg();
  const t0 = performance.now();
  /** Runs one workload; a failure is recorded and the next workload runs. */
  const run = async (key: string, body: () => Promise<Rate>) => {
    if (!wanted(key)) return;
    try {
      results[key] = await body();
    } catch (error) {
      errors[key] = String((error as Error)?.stack ?? error).split("\n").slice(0, 3).join("\n");
      process.stderr.write(`${key} FAILED: ${errors[key]}\n`);
    }
  };

  // --- the floor
  const echo = startEcho();
  await echo.roundTrip(1);
  if (wanted("pipe_pingpong_sync")) floors.pipe_pingpong_sync = await timeit("pipe ping-pong sync (floor)", () => echo.roundTrip(1));
  if (wanted("pipe_pingpong_async")) floors.pipe_pingpong_async = await timeit("pipe ping-pong async (floor)", () => echo.roundTrip(BATCH), BATCH);
  if (wanted("channel_pingpong_sync") || wanted("channel_pingpong_async")) {
    const channelEcho = await startChannelEcho();
    await channelEcho.roundTrip(1);
    if (wanted("channel_pingpong_sync")) floors.channel_pingpong_sync = await timeit("channel ping-pong sync (floor)", () => channelEcho.roundTrip(1));
    if (wanted("channel_pingpong_async")) floors.channel_pingpong_async = await timeit("channel ping-pong async (floor)", () => channelEcho.roundTrip(BATCH), BATCH);
    await channelEcho.close();
  }

  await os.init({ objectStoreMemory: 512 * MiB, numWorkers: 2 });
  try {
    const smallValue = os.remote(function small_value() {
      return "ok";
    });
    await run("single_client_tasks_sync", () =>
      timeit("single client tasks sync", async () => {
        const ref = smallValue.remote();
        await os.get(ref);
        os.free(ref);
      }));
    await run("single_client_tasks_async", () =>
      timeit("single client tasks async", async () => {
        const refs = Array.from({ length: BATCH }, () => smallValue.remote());
        await os.get(refs);
        os.free(refs);
      }, BATCH));

    await run("multi_client_put_calls_Plasma_Store", () => {
      const doPutSmall = os.remote(async function do_put_small() {
        const core = await import("@objstore/core");
        for (let i = 0; i < 100; i++) core.put(0)[Symbol.dispose]();
      });
      return timeit("multi client put calls", async () => {
        const refs = Array.from({ length: 10 }, () => doPutSmall.remote());
        await os.get(refs);
        os.free(refs);
      }, 1000);
    });
    await run("multi_client_put_gigabytes", () => {
      const elements = size(10 * MiB, MiB);
      const doPut = os.remote(async function do_put(elements: number) {
        const core = await import("@objstore/core");
        for (let i = 0; i < 10; i++) core.put(new Float64Array(elements))[Symbol.dispose]();
      });
      return timeit(`multi client put gigabytes (GB, ${elements * 8 / MiB} MiB puts)`, async () => {
        const refs = Array.from({ length: 10 }, () => doPut.remote(elements));
        await os.get(refs);
        os.free(refs);
      }, (10 * 10 * elements * 8) / 1e9);
    });
    await run("single_client_wait_1k_refs", () =>
      timeit("single client wait 1k refs", async () => {
        const all = Array.from({ length: BATCH }, () => smallValue.remote());
        let pending = all;
        for (let i = 0; i < BATCH; i++) [, pending] = await os.wait(pending);
        os.free(all);
      }));

    const actorClass = os.remote(Actor);
    const asyncActorClass = os.remote(AsyncActor);
    const clientClass = os.remote(Client);
    /** Starts actors, waits until they answer, runs `body`, kills them. */
    const withActors = async <T>(handles: object[], body: () => Promise<T>): Promise<T> => {
      try {
        return await body();
      } finally {
        // deno-lint-ignore no-explicit-any
        for (const h of handles) os.kill(h as any);
      }
    };

    await run("multi_client_tasks_async", () => {
      const n = size(10_000, 500), m = 4;
      const actors = Array.from({ length: m }, () => actorClass.remote());
      return withActors(actors, () =>
        timeit(`multi client tasks async (${m} actors × ${n})`, async () => {
          const refs = actors.map((a) => a.small_value_batch.remote(n));
          await os.get(refs);
          os.free(refs);
        }, n * m));
    });
    for (const [prefix, cls] of [["1_1_actor_calls", actorClass], ["1_1_async_actor_calls", asyncActorClass]] as const) {
      const label = prefix.replaceAll("_", " ").replace("1 1", "1:1").replace("async actor", "async-actor");
      await run(`${prefix}_sync`, () => {
        const a = cls.remote();
        return withActors([a], () =>
          timeit(`${label} sync`, async () => {
            const ref = a.small_value.remote();
            await os.get(ref);
            os.free(ref);
          }));
      });
      await run(`${prefix}_async`, () => {
        const a = cls.remote();
        return withActors([a], () =>
          timeit(`${label} async`, async () => {
            const refs = Array.from({ length: BATCH }, () => a.small_value.remote());
            await os.get(refs);
            os.free(refs);
          }, BATCH));
      });
    }
    await run("1_1_async_actor_calls_with_args_async", () => {
      const a = asyncActorClass.remote();
      return withActors([a], () =>
        timeit("1:1 async-actor calls with args async", async () => {
          const refs = Array.from({ length: BATCH }, (_, i) => a.small_value_with_arg.remote(i));
          await os.get(refs);
          os.free(refs);
        }, BATCH));
    });
    await run("1_1_actor_calls_concurrent", () => {
      const a = actorClass.options({ maxConcurrency: 16 }).remote();
      return withActors([a], () =>
        timeit("1:1 actor calls concurrent (maxConcurrency 16)", async () => {
          const refs = Array.from({ length: BATCH }, () => a.small_value.remote());
          await os.get(refs);
          os.free(refs);
        }, BATCH));
    });
    // Ray's: 100 groups of one bundle, each waited for, then all removed.
    await run("placement_group_create/removal", () =>
      timeit("placement group create/removal (100 groups of one bundle)", async () => {
        const groups = Array.from({ length: 100 }, () => os.placementGroup([{ CPU: 0.001 }]));
        for (const group of groups) if (!(await group.wait(30))) throw new Error("a placement group was not ready within 30 s");
        for (const group of groups) group.remove();
      }, 100));
    await run("1_n_actor_calls_async", () => {
      const n = size(5000, 250);
      const actors = Array.from({ length: N_CPU }, () => actorClass.remote());
      const client = clientClass.remote(actors);
      return withActors([...actors, client], () =>
        timeit(`1:n actor calls async (${N_CPU} actors)`, async () => {
          const ref = client.small_value_batch.remote(n);
          await os.get(ref);
          os.free(ref);
        }, n * N_CPU));
    });
    await run("n_n_actor_calls_async", () => {
      const n = size(5000, 250), m = 4;
      const actors = Array.from({ length: N_CPU }, () => actorClass.remote());
      // deno-lint-ignore no-explicit-any
      const work = os.remote(async function work(actors: any[], n: number) {
        const core = await import("@objstore/core");
        const refs = Array.from({ length: n }, (_, i) => actors[i % actors.length].small_value.remote());
        await core.get(refs);
        core.free(refs);
      });
      return withActors(actors, () =>
        timeit(`n:n actor calls async (${m} tasks, ${N_CPU} actors)`, async () => {
          const refs = Array.from({ length: m }, () => work.remote(actors, n));
          await os.get(refs);
          os.free(refs);
        }, m * n));
    });
    await run("n_n_actor_calls_with_arg_async", () => {
      const n = size(1000, 100);
      const actors = Array.from({ length: N_CPU }, () => actorClass.remote());
      const clients = actors.map((a) => clientClass.remote(a));
      return withActors([...actors, ...clients], () =>
        timeit(`n:n actor calls with arg async (${N_CPU} clients)`, async () => {
          const refs = clients.map((c) => c.small_value_batch_arg.remote(n));
          await os.get(refs);
          os.free(refs);
        }, n * clients.length));
    });

    if (wanted("arg_1mib_sync") || wanted("arg_1mib_async")) {
      const big = os.put(new Uint8Array(MiB).fill(1));
      const takesArray = os.remote(function length(array: Uint8Array) {
        return array.length;
      });
      await run("arg_1mib_sync", () =>
        timeit("1 MiB argument by ref, sync", async () => {
          const ref = takesArray.remote(big);
          await os.get(ref);
          os.free(ref);
        }));
      await run("arg_1mib_async", () =>
        timeit("1 MiB argument by ref, async", async () => {
          const refs = Array.from({ length: BATCH }, () => takesArray.remote(big));
          await os.get(refs);
          os.free(refs);
        }, BATCH));
      os.free(big);
    }
  } finally {
    await os.shutdown();
    await echo.close();
  }

  const overheads: Record<string, unknown> = {};
  if (wanted("task_events_overhead")) {
    try {
      overheads.task_events = await taskEventsOverhead(os, BATCH);
    } catch (error) {
      errors.task_events_overhead = String((error as Error)?.stack ?? error).split("\n").slice(0, 3).join("\n");
    }
  }

  emit({
    runtime,
    runtime_version: runtimeVersion,
    quick,
    placement,
    harness: `Ray's timeit: ${HARNESS.warmup_s} s warm-up, ${HARNESS.rounds} rounds of ≥ ${HARNESS.round_s} s, mean ± std (sleep ${sleepS} s)`,
    num_workers: 2,
    n_cpu: N_CPU,
    load_before: loadBefore,
    load_after: loadavg(),
    seconds: (performance.now() - t0) / 1000,
    results,
    floors,
    overheads,
    errors,
  });
}

/**
 * What recording task events (lib/tasks/task_events.ts, for the dashboard and the timeline)
 * costs: `single_client_tasks_async` with recording on and off (OBJSTORE_TASK_EVENTS=0, which
 * the workers inherit), each in a fresh session, in alternating pairs so that drift in the
 * machine's load falls on both. Reports each side's rate and the ratio on/off (1 = free).
 */
async function taskEventsOverhead(os: typeof import("../mod.ts"), batch: number): Promise<{ on: Rate; off: Rate; ratio: number; pairs: number; round_s: number; record_ns_per_task: number; share_of_task: number }> {
  const pairs = quick ? 2 : 6;
  const roundMs = quick ? 500 : 3000;
  const rates: { on: number[]; off: number[] } = { on: [], off: [] };
  const previous = process.env.OBJSTORE_TASK_EVENTS;
  try {
    for (let pair = 0; pair < pairs; pair++) {
      for (const mode of pair % 2 === 0 ? ["off", "on"] as const : ["on", "off"] as const) {
        if (mode === "off") process.env.OBJSTORE_TASK_EVENTS = "0";
        else delete process.env.OBJSTORE_TASK_EVENTS;
        await os.init({ objectStoreMemory: 256 * MiB, numWorkers: 2 });
        try {
          const smallValue = os.remote(function small_value() {
            return "ok";
          });
          const round = async () => {
            const refs = Array.from({ length: batch }, () => smallValue.remote());
            await os.get(refs);
            os.free(refs);
          };
          for (let i = 0; i < 3; i++) await round(); // workers started and warm
          let tasks = 0;
          const start = performance.now();
          while (performance.now() - start < roundMs) {
            await round();
            tasks += batch;
          }
          rates[mode].push(tasks / ((performance.now() - start) / 1000));
          process.stderr.write(`task events ${mode}: ${Math.round(rates[mode].at(-1)!)} tasks/s\n`);
        } finally {
          await os.shutdown();
        }
      }
    }
  } finally {
    if (previous === undefined) delete process.env.OBJSTORE_TASK_EVENTS;
    else process.env.OBJSTORE_TASK_EVENTS = previous;
  }
  const on = summarize(rates.on);
  const off = summarize(rates.off);
  // On a loaded machine the throughput pair is noisy; what recording costs each task, in CPU, is
  // not: the driver's submit and end and the worker's run, timed in a loop (no file: the file is
  // written once a second), as a share of a task's time at the rate measured with recording off.
  const { TaskEventRecorder } = await import("../lib/tasks/task_events.ts");
  const recorder = new TaskEventRecorder("bench-unwritten", "driver", runtime);
  const calls = quick ? 200_000 : 2_000_000;
  const best = [];
  // CPU time, not wall time: on a loaded machine the loop waits for a CPU too.
  for (let attempt = 0; attempt < 3; attempt++) {
    const start = process.cpuUsage();
    for (let task = 0; task < calls; task++) {
      recorder.submitted(task, "small_value", 2); // the driver, at submit
      recorder.ran(task, "small_value", 1000 + task, 1001 + task, false); // the worker: its run's times are taken anyway
      recorder.ended(false); // the driver, at the result
    }
    const used = process.cpuUsage(start);
    best.push(((used.user + used.system) * 1000) / calls);
  }
  const recordNs = Math.min(...best);
  return { on, off, ratio: on.mean / off.mean, pairs, round_s: roundMs / 1000, record_ns_per_task: recordNs, share_of_task: (recordNs * off.mean) / 1e9 };
}
