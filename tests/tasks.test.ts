/** SPEC "Tasks and actors": remote functions and actors on worker processes. */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os_ from "node:os";
import path from "node:path";
import process from "node:process";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { currentRuntime, root, start, uniqueStoreName } from "./helpers.ts";

const MiB = 1024 * 1024;

async function withCluster<T>(work: () => Promise<T>, options: os.InitOptions = {}): Promise<T> {
  await os.init({ objectStoreMemory: 512 * MiB, prefault: false, numWorkers: 2, ...options });
  try {
    return await work();
  } finally {
    await os.shutdown();
  }
}

test("SPEC examples: total of a put array, 100 tasks with wait, shift → stats chained by refs", () =>
  withCluster(async () => {
    const ref = os.put(new Float64Array(1000 * 1000));
    const total = os.remote((arr: Float64Array) => arr.reduce((a, b) => a + b, 0));
    assert.equal(await os.get(total.remote(ref)), 0);

    const task = os.remote((i: number) => i * i);
    const refs = Array.from({ length: 100 }, (_, i) => task.remote(i));
    const [ready, pending] = await os.wait(refs, { numReturns: 10, timeout: 5.0 });
    assert.equal(ready.length, 10);
    assert.equal(pending.length, 90);
    assert.deepStrictEqual(await os.get(refs), refs.map((_, i) => i * i));

    const shift = os.remote((arr: Float64Array, n: number) => arr.map((x) => x + n));
    const stats = os.remote((arr: Float64Array) => {
      const mean = arr.reduce((a, b) => a + b, 0) / arr.length;
      const std = Math.sqrt(arr.reduce((a, b) => a + (b - mean) ** 2, 0) / arr.length);
      return [mean, std];
    });
    assert.deepStrictEqual(await os.get(stats.remote(shift.remote(ref, 5))), [5, 0]);
  }), { timeoutMs: 120_000 });

test("refs returned by a task are refs; nested refs arrive as refs, top-level ones as values", () =>
  withCluster(async () => {
    const inner = os.put([1, 2, 3]);
    const probe = os.remote((top: number[], nested: { ref: { hex?: () => string } }) => {
      return { top, nestedHex: typeof nested.ref?.hex === "function" ? nested.ref.hex() : "not a ref" };
    });
    const result = (await os.get(probe.remote(inner, { ref: inner }))) as { top: number[]; nestedHex: string };
    assert.deepStrictEqual(result.top, [1, 2, 3]);
    assert.equal(result.nestedHex, inner.hex());
  }), { timeoutMs: 60_000 });

test("numReturns: a task returns several refs", () =>
  withCluster(async () => {
    const split = os.remote((n: number) => [n, n * 2, n * 3]).options({ numReturns: 3 });
    const refs = split.remote(7) as os.ObjectRef[];
    assert.equal(refs.length, 3);
    assert.deepStrictEqual(await os.get(refs), [7, 14, 21]);
    const wrong = os.remote((n: number) => n).options({ numReturns: 2 });
    await assert.rejects(os.get((wrong.remote(1) as os.ObjectRef[])[0]), /numReturns: 2/);
    assert.throws(() => os.remote((n: number) => n).options({ numReturns: 0 }), /numReturns/);
  }), { timeoutMs: 60_000 });

test("a task asking for more than this machine has fails at once, naming what is missing; scheduling is ignored without a cluster", () =>
  withCluster(async () => {
    const where = os.remote(() => 1);
    assert.throws(() => where.options({ resources: { GPU: 1 } }).remote(), /anonymous\.remote\(\): no node can run it: this one lacks GPU 1 \(it has 0\)/);
    assert.throws(() => where.options({ numCpus: 3 }).remote(), /lacks numCpus 3 \(it has 2\)/);
    assert.throws(() => where.options({ resources: { GPU: -1 } }), /resources\.GPU must be an amount ≥ 0/);
    assert.throws(() => where.options({ scheduling: "EVERYWHERE" as "SPREAD" }), /scheduling must be "DEFAULT", "SPREAD" or \{ nodeId/);
    assert.equal(await os.get(where.options({ numCpus: 2, scheduling: "SPREAD" }).remote() as os.ObjectRef<number>), 1);
  }), { timeoutMs: 60_000 });

test("a task that throws stores TaskError; a task taking a failed ref fails the same way", () =>
  withCluster(async () => {
    const fails = os.remote(function explode(n: number) {
      if (n > 0) throw new RangeError(`too big: ${n}`);
      return n;
    });
    const failed = fails.remote(5);
    const error = await os.get(failed).then(() => undefined, (e) => e);
    assert.ok(error instanceof os.TaskError);
    assert.ok(error instanceof os.ObjstoreError);
    assert.equal(error.remoteName, "RangeError");
    assert.match(error.message, /explode.*too big: 5/);
    assert.match(error.remoteStack, /too big: 5/);
    assert.ok(error.cause instanceof Error);
    assert.equal((error.cause as Error).message, "too big: 5");

    const double = os.remote((n: number) => n * 2);
    const downstream = await os.get(double.remote(failed)).then(() => undefined, (e) => e);
    assert.ok(downstream instanceof os.TaskError);
    assert.equal(downstream.remoteName, "RangeError");
    assert.match((downstream.cause as Error).message, /too big: 5/);
  }), { timeoutMs: 60_000 });

test("a function that reads an outer variable fails with an error naming it", () =>
  withCluster(async () => {
    // Not a constant: Bun's transpiler inlines constants into the function's source.
    const factor = [3].length + 2;
    const scaled = os.remote((n: number) => n * factor);
    await assert.rejects(os.get(scaled.remote(2)), (error: unknown) => {
      assert.ok(error instanceof os.TaskError);
      assert.match((error as Error).message, /'factor'/);
      return true;
    });
  }), { timeoutMs: 60_000 });

test("a worker that dies mid-task is replaced and the task retried; maxRetries: 0 gives WorkerCrashedError", () =>
  withCluster(async () => {
    const dir = mkdtempSync(path.join(os_.tmpdir(), "objstore-retry-"));
    try {
      const dieOnce = os.remote(async (marker: string) => {
        const fs = await import("node:fs");
        const process = (await import("node:process")).default;
        if (!fs.existsSync(marker)) {
          fs.writeFileSync(marker, "died once");
          process.kill(process.pid, "SIGKILL");
        }
        return "survived";
      });
      assert.equal(await os.get(dieOnce.remote(path.join(dir, "a"))), "survived");
      assert.ok(existsSync(path.join(dir, "a")));
      const noRetry = dieOnce.options({ maxRetries: 0 });
      await assert.rejects(os.get(noRetry.remote(path.join(dir, "b")) as os.ObjectRef), os.WorkerCrashedError);
      // The pool is whole again.
      assert.equal(await os.get(os.remote((n: number) => n + 1).remote(1)), 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }), { timeoutMs: 120_000 });

test("cancel: a running task is interrupted, a pending one never runs", () =>
  withCluster(async () => {
    const spin = os.remote(() => {
      while (true) { /* until cancelled */ }
    });
    const running = spin.remote();
    await new Promise((resolve) => setTimeout(resolve, 300));
    os.cancel(running);
    await assert.rejects(os.get(running, { timeout: 10 }), os.TaskCancelledError);

    const slow = os.remote(async (ms: number) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return ms;
    });
    const first = slow.remote(200);
    const second = slow.remote(10);
    os.cancel(second);
    await assert.rejects(os.get(second, { timeout: 10 }), os.TaskCancelledError);
    assert.equal(await os.get(first, { timeout: 10 }), 200);
    assert.throws(() => os.cancel("x" as unknown as os.ObjectRef), TypeError);
  }, { numWorkers: 1 }), { timeoutMs: 60_000 });

test("actors: state kept, calls in order, in their own process; kill fails pending calls", () =>
  withCluster(async () => {
    class Counter {
      n = 0;
      inc(k: number) {
        return (this.n += k);
      }
      async pid() {
        return (await import("node:process")).default.pid;
      }
    }
    const C = os.remote(Counter);
    const a = C.remote();
    const b = C.remote();
    const calls = Array.from({ length: 50 }, (_, i) => a.inc.remote(i + 1));
    assert.deepStrictEqual(await os.get(calls), calls.map((_, i) => ((i + 1) * (i + 2)) / 2));
    assert.equal(await os.get(b.inc.remote(1)), 1);
    const [pidA, pidB] = await os.get([a.pid.remote(), b.pid.remote()]);
    assert.notEqual(pidA, pidB);
    os.kill(a);
    await assert.rejects(os.get(a.inc.remote(1), { timeout: 10 }), os.WorkerCrashedError);
    assert.equal(await os.get(b.inc.remote(1)), 2, "other actors live on");
    await assert.rejects(os.get((b as unknown as Record<string, { remote(): os.ObjectRef }>).nope.remote()), /no method 'nope'/);
    assert.throws(() => os.kill({} as os.ActorHandle<unknown>), TypeError);
  }), { timeoutMs: 60_000 });

test("actor maxConcurrency: async methods interleave up to N at once, started in order; the default runs one at a time", () =>
  withCluster(async () => {
    class Sleeper {
      active = 0;
      most = 0;
      started: number[] = [];
      async nap(i: number, ms: number) {
        this.started.push(i);
        this.active++;
        this.most = Math.max(this.most, this.active);
        await new Promise((resolve) => setTimeout(resolve, ms));
        this.active--;
        return i;
      }
      report() {
        return { most: this.most, started: this.started };
      }
    }
    const Actor = os.remote(Sleeper);
    assert.throws(() => Actor.options({ maxConcurrency: 0 }), /maxConcurrency must be a whole number ≥ 1/);
    for (const [limit, expectedMost] of [[3, 3], [undefined, 1]] as const) {
      const sleeper = (limit === undefined ? Actor : Actor.options({ maxConcurrency: limit })).remote();
      const naps = Array.from({ length: 7 }, (_, i) => sleeper.nap.remote(i, 150));
      assert.deepEqual(await os.get(naps), [0, 1, 2, 3, 4, 5, 6]);
      const { most, started } = await os.get(sleeper.report.remote()) as { most: number; started: number[] };
      assert.equal(most, expectedMost, `at most ${expectedMost} at once with maxConcurrency ${limit}`);
      assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6], "started in the order called");
      os.kill(sleeper);
    }
  }), { timeoutMs: 60_000 });

test("an actor whose constructor throws fails every call with that error", () =>
  withCluster(async () => {
    class Broken {
      constructor() {
        throw new Error("cannot build");
      }
      call() {
        return 1;
      }
    }
    const handle = os.remote(Broken).remote();
    await assert.rejects(os.get(handle.call.remote()), /cannot build/);
  }), { timeoutMs: 60_000 });

test("a worker reads a 100 MB argument zero-copy: its private memory grows by far less", () =>
  withCluster(async () => {
    const big = os.put(new Float64Array(100 * MiB / 8).fill(1));
    const measure = os.remote(async (arr: Float64Array) => {
      const fs = await import("node:fs");
      const anon = () => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
      const before = anon();
      let sum = 0;
      for (let i = 0; i < arr.length; i += 512) sum += arr[i]; // touch every page
      return { grewBytes: anon() - before, sum };
    });
    const { grewBytes, sum } = (await os.get(measure.remote(big))) as { grewBytes: number; sum: number };
    assert.equal(sum, (100 * MiB) / 8 / 512);
    assert.ok(grewBytes < 10 * MiB, `worker private memory grew by ${grewBytes} bytes`);
  }), { timeoutMs: 60_000 });

test("refs held by queued tasks keep their objects; unreferenced results are deleted", () =>
  withCluster(async () => {
    const identity = os.remote((x: Uint8Array) => x.length);
    const arg = os.put(new Uint8Array(MiB));
    const result = identity.remote(arg);
    os.free(arg); // the task still holds it
    assert.equal(await os.get(result), MiB);
    os.free(result);
    const dropped = os.remote(() => new Uint8Array(MiB));
    await os.get(os.remote(() => 0).remote()); // workers warm
    (() => void dropped.remote())();
    await new Promise((resolve) => setTimeout(resolve, 500));
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    if (g.Bun) g.Bun.gc(true);
    else g.gc?.();
    const deadline = Date.now() + 5000;
    while (os.memoryStats().objectCount > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (g.Bun) g.Bun.gc(true);
      else g.gc?.();
    }
    assert.equal(os.memoryStats().objectCount, 0, "results nobody references are deleted");
  }), { timeoutMs: 60_000 });

test("remote of something that is not a function is a TypeError; numWorkers 0 cannot run tasks", async () => {
  await withCluster(async () => {
    assert.throws(() => os.remote(5 as unknown as () => void), TypeError);
    assert.throws(() => os.remote(Math.max), /built in/);
  });
  await withCluster(async () => {
    assert.throws(() => os.remote(() => 1).remote(), /numWorkers: 0/);
  }, { numWorkers: 0 });
});

test("actor handles can be passed to tasks, which call the actor through them", () =>
  withCluster(async () => {
    class Counter {
      n = 0;
      inc(k: number) {
        return (this.n += k);
      }
    }
    const counter = os.remote(Counter).remote();
    const bump = os.remote(async (handle: os.ActorHandle<Counter>, k: number) => {
      const core = await import("@objstore/core");
      return await core.get(handle.inc.remote(k));
    });
    assert.equal(await os.get(bump.remote(counter, 5), { timeout: 30 }), 5);
    await os.get([bump.remote(counter, 1), counter.inc.remote(10)], { timeout: 30 });
    assert.equal(await os.get(counter.inc.remote(0)), 16, "calls from the driver and from tasks reach one actor");
  }), { timeoutMs: 60_000 });

test("refs nested in a queued task's arguments keep their objects after the caller frees them", () =>
  withCluster(async () => {
    const slow = os.remote(async (ms: number) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return ms;
    });
    const read = os.remote(async (items: { ref: os.ObjectRef<string> }[]) => {
      const core = await import("@objstore/core");
      return await core.get(items[0].ref);
    });
    await os.get(slow.remote(1)); // the worker is up
    const nested = os.put("the value nested in an argument");
    const busy = slow.remote(300); // keeps the only worker busy: the next call waits in the queue
    const result = read.remote([{ ref: nested }]);
    os.free(nested);
    assert.equal(await os.get(result, { timeout: 30 }), "the value nested in an argument");
    await os.get(busy);
  }, { numWorkers: 1 }), { timeoutMs: 60_000 });

test("refs passed to an actor's constructor, at the top or nested, outlive the caller's refs", () =>
  withCluster(async () => {
    const Keeper = os.remote(class Keeper {
      direct: Uint8Array;
      nested: os.ObjectRef<string>;
      constructor(direct: Uint8Array, holder: { ref: os.ObjectRef<string> }) {
        this.direct = direct;
        this.nested = holder.ref;
      }
      async read(): Promise<string> {
        const core = await import("@objstore/core");
        return `${this.direct.length} ${await core.get(this.nested)}`;
      }
    });
    const direct = os.put(new Uint8Array(1000));
    const nested = os.put("kept for the actor");
    const keeper = Keeper.remote(direct, { ref: nested });
    os.free([direct, nested]); // before the actor's process has even started
    assert.equal(await os.get(keeper.read.remote(), { timeout: 30 }), "1000 kept for the actor");
    os.kill(keeper);
  }), { timeoutMs: 60_000 });

test("refs nested in the arguments of a task submitted from a task keep their objects", () =>
  withCluster(async () => {
    const outer = os.remote(async () => {
      const core = await import("@objstore/core");
      const slow = core.remote(async (ms: number) => {
        await new Promise((resolve) => setTimeout(resolve, ms));
        return ms;
      });
      const read = core.remote(async (items: { ref: os.ObjectRef<string> }[]) => {
        const inner = await import("@objstore/core");
        return await inner.get(items[0].ref);
      });
      const nested = core.put("nested, from a task");
      const busy = slow.remote(300);
      const result = read.remote([{ ref: nested }]);
      core.free(nested);
      const value = await core.get(result);
      await core.get(busy);
      return value;
    });
    assert.equal(await os.get(outer.remote(), { timeout: 30 }), "nested, from a task");
  }, { numWorkers: 2 }), { timeoutMs: 60_000 });

test("tasks submit tasks and get their results, even with a single worker", () =>
  withCluster(async () => {
    const outer = os.remote(async (n: number) => {
      const core = await import("@objstore/core");
      const square = core.remote((x: number) => x * x);
      const values = await core.get(Array.from({ length: n }, (_, i) => square.remote(i)));
      return values.reduce((a: number, b: number) => a + b, 0);
    });
    assert.equal(await os.get(outer.remote(10), { timeout: 30 }), 285);
  }, { numWorkers: 1 }), { timeoutMs: 60_000 });

test("4 KiB channels: messages larger than a ring, full rings, 3 workers and 3 actors at once, a worker killed with its ring full", async () => {
  const markerDir = mkdtempSync(path.join(os_.tmpdir(), "objstore-channel-"));
  const storeName = uniqueStoreName("channel");
  process.env.OBJSTORE_CHANNEL_BYTES = "4096";
  try {
    const child = start(currentRuntime, path.join(root, "tests", "fixtures", "channel_stress.ts"), [storeName, markerDir]);
    const report = JSON.parse(await child.line());
    const exit = await child.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.deepStrictEqual(report, { tasks: 600, actorCalls: 300, fanOuts: 4, killed: true, mismatches: [], leftovers: [] });
  } finally {
    delete process.env.OBJSTORE_CHANNEL_BYTES;
    rmSync(markerDir, { recursive: true, force: true });
  }
}, { timeoutMs: 120_000 });

test("a store with the longest allowed name (200 characters) runs tasks and actors", () =>
  withCluster(async () => {
    const double = os.remote((n: number) => n * 2);
    assert.equal(await os.get(double.remote(21)), 42);
    class Echo {
      echo(s: string) {
        return s;
      }
    }
    const echo = os.remote(Echo).remote();
    assert.equal(await os.get(echo.echo.remote("hi")), "hi");
    os.kill(echo);
  }, { storeName: `t${process.pid}-`.padEnd(200, "n") }), { timeoutMs: 60_000 });

test("a loop of tasks on fresh 1 MiB arguments does not fill a 32 MiB store with the worker's pins", () =>
  withCluster(async () => {
    const ends = os.remote((a: Uint8Array) => a[0] + a[a.length - 1]);
    for (let i = 0; i < 200; i++) {
      const arg = os.put(new Uint8Array(MiB).fill(i & 0xff));
      const result = ends.remote(arg);
      os.free(arg);
      assert.equal(await os.get(result), 2 * (i & 0xff));
      os.free(result);
    }
    assert.ok(os.memoryStats().pinnedBytes < 16 * MiB, `pinned: ${os.memoryStats().pinnedBytes}`);
  }, { objectStoreMemory: 32 * MiB, numWorkers: 1 }), { timeoutMs: 120_000 });
