/**
 * A program that ends without shutdown() — its last line, process.exit, Deno.exit, an uncaught
 * exception, an unhandled rejection, SIGINT, SIGTERM — exits as it would without objstore
 * (never by a crash), releases what it held, and, as the store's last process, removes the
 * store, its spill folder and its workers. Each program is a real child process of this
 * runtime (tests/fixtures/exits.ts).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os_ from "node:os";
import path from "node:path";
import process from "node:process";
import { isDeepStrictEqual } from "node:util";
import * as os from "../mod.ts";
import { loadLibrary } from "../lib/ffi/load.ts";
import { NativeStore } from "../lib/store/native_store.ts";
import { test } from "./harness.ts";
import { currentRuntime, eventually, root, start, uniqueStoreName } from "./helpers.ts";

const fixture = path.join(root, "tests", "fixtures", "exits.ts");

interface Ending {
  /** The fixture's mode (see tests/fixtures/exits.ts). */
  mode: string;
  /** A signal the test sends once the program is ready. */
  signal?: "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGKILL";
  /** What the program would end with without objstore. */
  code: number | null;
  endSignal?: string;
  /** Printed on stderr, for the exception cases. */
  stderr?: RegExp;
  /** Printed on stdout after "ready" (the program's own handler ran). */
  stdout?: string;
}

const endings: Ending[] = [
  { mode: "end", code: 0 },
  { mode: "exit", code: 3 },
  { mode: "throw", code: 1, stderr: /boom: thrown after init/ },
  { mode: "reject", code: 1, stderr: /boom: rejected after init/ },
  { mode: "wait", signal: "SIGINT", code: null, endSignal: "SIGINT" },
  { mode: "wait", signal: "SIGTERM", code: null, endSignal: "SIGTERM" },
  { mode: "wait", signal: "SIGHUP", code: null, endSignal: "SIGHUP" },
  { mode: "handler", signal: "SIGINT", code: 7, stdout: "handled SIGINT" },
  { mode: "handler", signal: "SIGTERM", code: 7, stdout: "handled SIGTERM" },
];
if (currentRuntime === "deno") endings.push({ mode: "deno-exit", code: 4 });

function describeEnding(e: Ending): string {
  return e.signal === undefined ? e.mode : `${e.mode} + ${e.signal}`;
}

const segment = (storeName: string) => `/dev/shm/objstore-${storeName}`;
const spillFolder = (storeName: string) => path.join(os_.tmpdir(), `objstore-spill-${storeName}`);

/** True if `signal` is ignored by process `pid` (inherited: a runtime started in a
 * background job ignores SIGINT, and Deno passes that on to its children). */
function ignores(pid: number, signal: "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGKILL"): boolean {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("SigIgn:"))!;
  const bit = BigInt({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15, SIGKILL: 9 }[signal]) - 1n;
  return ((BigInt(`0x${line.split(/\s+/)[1]}`) >> bit) & 1n) === 1n;
}

/** True while `pid` runs (a zombie has ended: it waits only to be reaped). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  } catch {
    return false;
  }
}

interface Ended {
  ownId: string;
  workerPids: number[];
  code: number | null;
  signal: string | null;
  stdout: string[];
  stderr: string;
}

/** Runs the fixture to its end; undefined if the signal to send is ignored here (see `ignores`). */
async function runProgram(storeName: string, ending: Ending, tasks: boolean | "busy", sharedHexes: string[] = []): Promise<Ended | undefined> {
  const mode = tasks === "busy" ? `${ending.mode}+busy` : tasks ? `${ending.mode}+tasks` : ending.mode;
  const child = start(currentRuntime, fixture, [storeName, mode, ...sharedHexes]);
  let ready: string[];
  try {
    ready = (await child.line()).split(" ");
  } catch (error) {
    child.kill();
    throw error;
  }
  assert.equal(ready[0], "ready");
  const stdout: string[] = [];
  const reading = (async () => {
    try {
      while (true) stdout.push(await child.line());
    } catch { /* exited */ }
  })();
  if (ending.signal !== undefined) {
    const pid = child.pid;
    if (ignores(pid, ending.signal)) {
      child.kill();
      await child.exited;
      return undefined;
    }
    process.kill(pid, ending.signal);
  }
  const { code, signal, stderr } = await child.exited;
  await reading;
  return { ownId: ready[1], workerPids: ready.slice(2).map(Number), code, signal, stdout, stderr };
}

function assertEndedAsWithout(ended: Ended, ending: Ending, what: string): void {
  assert.deepStrictEqual({ code: ended.code, signal: ended.signal }, { code: ending.code, signal: ending.endSignal ?? null }, `${what}: ${ended.stderr}`);
  assert.doesNotMatch(ended.stderr, /Segmentation fault|SIGSEGV|panic|core dumped/i, what);
  if (ending.stderr !== undefined) assert.match(ended.stderr, ending.stderr, what);
  if (ending.stdout !== undefined) assert.ok(ended.stdout.includes(ending.stdout), `${what}: printed ${JSON.stringify(ended.stdout)}`);
}

for (const ending of endings) {
  test(`a program that ends by ${describeEnding(ending)} without shutdown exits as it would, and removes its store (${currentRuntime})`, async () => {
    const storeName = uniqueStoreName(`exit-${ending.mode}`);
    try {
      const ended = await runProgram(storeName, ending, false);
      if (ended === undefined) return;
      assertEndedAsWithout(ended, ending, describeEnding(ending));
      // Exits that run code remove the store before the process is gone; on a signal, the
      // reaper it forked does, once the process is dead.
      await eventually(() => !existsSync(segment(storeName)), 5000, `${segment(storeName)} removed`);
      await eventually(() => !existsSync(spillFolder(storeName)), 5000, `${spillFolder(storeName)} removed`);
    } finally {
      destroyQuietly(storeName);
    }
  }, { timeoutMs: 60_000 });
}

// A driver killed outright runs nothing: its workers see their pipes close, wait for it to be
// dead, reclaim it and leave, the last removing the store.
const killed: Ending = { mode: "wait", signal: "SIGKILL", code: null, endSignal: "SIGKILL" };
for (const ending of [...endings.filter((e) => ["end", "throw", "wait"].includes(e.mode) && (e.signal === undefined || e.signal === "SIGTERM")), killed]) {
  test(`a program with a worker and an actor that ends by ${describeEnding(ending)} takes its workers and its store with it (${currentRuntime})`, async () => {
    const storeName = uniqueStoreName(`exit-tasks-${ending.mode}`);
    try {
      const ended = await runProgram(storeName, ending, true);
      if (ended === undefined) return;
      assertEndedAsWithout(ended, ending, `${describeEnding(ending)} with workers`);
      assert.equal(ended.workerPids.length, 2, `worker pids: ${ended.workerPids}`);
      await eventually(() => !ended.workerPids.some(running), 10_000, `workers ${ended.workerPids} ended`);
      await eventually(() => !existsSync(segment(storeName)), 10_000, `${segment(storeName)} removed`);
      const channels = readdirSync("/dev/shm").filter((f) => f.startsWith(`objstore-ch-${storeName}-`));
      assert.deepStrictEqual(channels, [], "channel files left");
    } finally {
      destroyQuietly(storeName);
    }
  }, { timeoutMs: 60_000 });
}

// Workers busy in a synchronous task never turn their event loop, so never see their pipes
// close: the library's watch of their parent ends them (zig/src/parent_watch.zig).
test(`a program killed (SIGKILL) while its worker and actor run synchronous loops of two minutes takes them with it within seconds, and its store (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName("exit-busy");
  let ended: Ended | undefined;
  try {
    ended = (await runProgram(storeName, killed, "busy"))!;
    assertEndedAsWithout(ended, killed, "SIGKILL with busy workers");
    assert.equal(ended.workerPids.length, 2, `worker pids: ${ended.workerPids}`);
    const workerPids = ended.workerPids;
    await eventually(() => !workerPids.some(running), 10_000, `busy workers ${workerPids} ended`);
    await eventually(() => !existsSync(segment(storeName)), 10_000, `${segment(storeName)} removed`);
  } finally {
    for (const pid of ended?.workerPids ?? []) if (running(pid)) process.kill(pid, "SIGKILL");
    destroyQuietly(storeName);
  }
}, { timeoutMs: 60_000 });

for (const ending of endings.filter((e) => ["end", "exit", "throw", "reject"].includes(e.mode) || e.endSignal === "SIGTERM")) {
  test(`a store shared with a living process keeps its objects when a program ends by ${describeEnding(ending)}, and drops the program's refs and pins (${currentRuntime})`, async () => {
    const storeName = uniqueStoreName(`exit-shared-${ending.mode}`);
    // The neighbour is stopped while the program ends: its janitor cannot reclaim for it.
    const neighbour = start(currentRuntime, fixture, [storeName, "hold"]);
    try {
      const keptId = (await neighbour.line()).split(" ")[1];
      process.kill(neighbour.pid, "SIGSTOP");
      const ended = await runProgram(storeName, ending, false, [keptId]);
      if (ended === undefined) return;
      assertEndedAsWithout(ended, ending, describeEnding(ending));
      const look = () =>
        inspect(storeName, (store) => ({
          objects: store.list().map((o) => ({ id: o.id, referencingProcesses: o.referencingProcesses, pinningProcesses: o.pinningProcesses })),
          pids: [...new Set(store.attachedPids())].filter((pid) => pid !== process.pid),
        }));
      const expected = { objects: [{ id: keptId, referencingProcesses: 1, pinningProcesses: 1 }], pids: [neighbour.pid] };
      // A program that exits releases what it held itself, before it is gone; a signalled one's
      // reaper does it once the program is dead.
      if (ending.signal !== undefined) await eventuallyAsync(async () => isDeepStrictEqual(await look(), expected), 5000, "the reaper reclaimed");
      assert.deepStrictEqual(await look(), expected, "the neighbour's object stays, held by it alone; the program's own is gone");
    } finally {
      try {
        process.kill(neighbour.pid, "SIGCONT");
        neighbour.send("bye");
      } catch { /* it failed to start */ }
    }
    assert.equal((await neighbour.exited).code, 0);
    assert.ok(!existsSync(segment(storeName)), "removed by its last process");
  }, { timeoutMs: 60_000 });
}

async function eventuallyAsync(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test(`a store whose only process was killed (SIGKILL) is removed by the next init, with its spill folder (${currentRuntime})`, async () => {
  const abandoned = uniqueStoreName("abandoned");
  const mine = uniqueStoreName("after-abandoned");
  const child = start(currentRuntime, fixture, [abandoned, "wait"]);
  try {
    assert.match(await child.line(), /^ready /);
  } finally {
    child.kill();
  }
  assert.equal((await child.exited).signal, "SIGKILL");
  assert.ok(existsSync(segment(abandoned)), "nothing ran in the killed process");
  await os.init({ storeName: mine, objectStoreMemory: 16 * 1024 * 1024, prefault: false });
  try {
    assert.ok(!existsSync(segment(abandoned)), "init removed the abandoned store");
    assert.ok(!existsSync(spillFolder(abandoned)), "and its spill folder");
  } finally {
    await os.shutdown();
    destroyQuietly(abandoned);
  }
}, { timeoutMs: 60_000 });

/** Attaches to look at the store, reclaiming nothing itself (a closing last process would). */
async function inspect<T>(storeName: string, look: (store: NativeStore) => T): Promise<T> {
  const store = NativeStore.open(await loadLibrary(), storeName, { create: false, exclusive: false, capacityBytes: 0, prefault: false });
  try {
    return look(store);
  } finally {
    store.close(false);
  }
}

function destroyQuietly(storeName: string): void {
  rmSync(segment(storeName), { force: true });
  rmSync(spillFolder(storeName), { force: true, recursive: true });
}
