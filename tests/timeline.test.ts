/**
 * `objstore timeline`: the tasks a program ran, as a Chrome trace that validates (the structure
 * chrome://tracing and Perfetto read: complete events, instants, flows, names); and the task
 * event files behind it, which outlive a killed driver but not for ever.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import * as os from "../mod.ts";
import { type ChromeTrace, traceProblems } from "../lib/cli/timeline.ts";
import { pruneTaskEventFiles, readTaskEvents, taskEventsDirectory } from "../lib/tasks/task_events.ts";
import { test } from "./harness.ts";
import { currentRuntime, eventually, root, runToEnd, start, uniqueStoreName } from "./helpers.ts";

const cli = path.join(root, "bin", "objstore.ts");

async function run(args: string[]): Promise<{ out: string; code: number | null; stderr: string }> {
  const { lines, stderr, code } = await runToEnd(currentRuntime, cli, args);
  return { out: lines.join("\n"), code, stderr };
}

test(`objstore timeline writes the tasks run as a valid Chrome trace: runs on workers, submits, arrows, argument sizes (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName(`timeline-${currentRuntime}`);
  const folder = mkdtempSync(path.join(tmpdir(), "objstore-timeline-"));
  try {
    await os.init({ storeName, objectStoreMemory: 32 * 1024 * 1024, numWorkers: 2, prefault: false });
    const checksum = os.remote(function checksum(bytes: Uint8Array) {
      let sum = 0;
      for (const b of bytes) sum = (sum + b) % 65521;
      return sum;
    });
    const inline = os.remote(function inline(text: string, n: number) {
      return text.length + n;
    });
    const fail = os.remote(function fail() {
      throw new Error("on purpose");
    });
    const payload = new Uint8Array(10_000).fill(7);
    await os.get(Array.from({ length: 30 }, () => checksum.remote(payload)));
    await os.get(Array.from({ length: 20 }, (_, i) => inline.remote("abc", i)));
    await assert.rejects(os.get(fail.remote()), /on purpose/);
    await os.shutdown(); // the workers write their files as they leave; the timeline is read after the program
    const file = path.join(folder, "trace.json");
    const { out, code, stderr } = await run(["timeline", "--store", storeName, "-o", file]);
    assert.equal(code, 0, stderr);
    assert.match(out, /wrote 51 task runs of 3 processes .* open it in https:\/\/ui\.perfetto\.dev or chrome:\/\/tracing/);

    const trace = JSON.parse(readFileSync(file, "utf8")) as ChromeTrace;
    assert.deepEqual(traceProblems(trace), []);
    const events = trace.traceEvents;
    const runs = events.filter((e) => e.ph === "X");
    assert.equal(runs.length, 51);
    const byName = (name: string) => runs.filter((e) => e.name === name);
    assert.equal(byName("checksum").length, 30);
    assert.equal(byName("inline").length, 20);
    assert.equal(byName("fail").length, 1);
    assert.equal(byName("fail")[0].args!.failed, true);
    assert.ok(byName("checksum").every((e) => (e.args!.argBytes as number) >= 10_000), "stored arguments: their encoded size");
    assert.ok(byName("inline").every((e) => (e.args!.argBytes as number) > 0 && (e.args!.argBytes as number) < 100), "inline arguments: small");
    const workerPids = new Set(runs.map((e) => e.pid));
    assert.equal(workerPids.size <= 2 && !workerPids.has(process.pid), true, "runs are on the workers' rows");
    assert.ok(runs.every((e) => e.args!.driver === process.pid));
    const submits = events.filter((e) => e.ph === "i" && e.pid === process.pid);
    assert.equal(submits.length, 51);
    const names = events.filter((e) => e.ph === "M" && e.name === "process_name").map((e) => e.args!.name as string);
    assert.ok(names.includes(`driver ${process.pid} (${currentRuntime})`), names.join(", "));
    assert.equal(names.filter((n) => n.startsWith("worker ")).length, 2, names.join(", "));
    // One arrow per task, from its submit on the driver to its start on a worker, never backwards.
    const starts = new Map(events.filter((e) => e.ph === "s").map((e) => [e.id, e]));
    const finishes = events.filter((e) => e.ph === "f");
    assert.equal(starts.size, 51);
    assert.equal(finishes.length, 51);
    for (const f of finishes) {
      const s = starts.get(f.id)!;
      assert.equal(s.pid, process.pid);
      assert.ok(workerPids.has(f.pid));
      assert.ok(s.ts! <= f.ts!, `submitted at ${s.ts} µs, started at ${f.ts} µs`);
    }

    const none = await run(["timeline", "--store", uniqueStoreName("no-tasks")]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /has recorded no tasks/);
  } finally {
    rmSync(folder, { recursive: true, force: true });
    for (const p of readTaskEvents(storeName, false)) rmSync(path.join(taskEventsDirectory(), `${storeName}@${p.pid}`), { force: true });
  }
}, { timeoutMs: 60_000 });

test(`a killed driver's task events stay readable, marked dead, and go once an hour old; at most 4 ended stores' files are kept (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName(`killed-events-${currentRuntime}`);
  const driver = start(currentRuntime, path.join(root, "tests", "fixtures", "task_events_driver.ts"), [storeName]);
  try {
    assert.equal(await driver.line(), "ready");
    const alive = readTaskEvents(storeName).find((p) => p.pid === driver.pid);
    assert.ok(alive !== undefined && alive.alive && alive.counters.submitted === 20, JSON.stringify(alive?.counters));
    driver.kill();
    await driver.exited;
    await eventually(() => readTaskEvents(storeName).find((p) => p.pid === driver.pid)?.alive === false, 5000, "the driver seen dead");
    const dead = readTaskEvents(storeName).find((p) => p.pid === driver.pid)!;
    assert.equal(dead.counters.submitted, 20);
    assert.equal(dead.events.filter((e) => e.kind === "submit").length, 20);
    const worker = readTaskEvents(storeName).find((p) => p.role === "worker");
    assert.ok(worker !== undefined, "its worker's file");
    await eventually(() => !readTaskEvents(storeName).some((p) => p.alive), 10_000, "its worker gone after the driver");
    // An hour later, whoever reads (or starts recording) removes them.
    const hourAgo = new Date(Date.now() - 61 * 60 * 1000);
    const files = readTaskEvents(storeName).map((p) => path.join(taskEventsDirectory(), `${storeName}@${p.pid}`));
    assert.equal(files.length, 2);
    for (const f of files) utimesSync(f, hourAgo, hourAgo);
    assert.deepEqual(readTaskEvents(storeName), []);
    for (const f of files) assert.ok(!existsSync(f), `${f} removed`);

    // Files of ended programs are kept for the last 4 stores that ended only.
    const ended = Array.from({ length: 5 }, (_, i) => path.join(taskEventsDirectory(), `${storeName}-ended${i}@${driver.pid}`));
    for (const [i, f] of ended.entries()) {
      writeFileSync(f, "");
      const soon = new Date(Date.now() + (i + 1) * 1000); // newer than any real file
      utimesSync(f, soon, soon);
    }
    pruneTaskEventFiles();
    assert.deepEqual(ended.map((f) => existsSync(f)), [false, true, true, true, true]);
    for (const f of ended) rmSync(f, { force: true });
  } finally {
    driver.kill();
    await driver.exited;
    await run(["destroy", storeName]);
    for (const p of readTaskEvents(storeName, false)) rmSync(path.join(taskEventsDirectory(), `${storeName}@${p.pid}`), { force: true });
  }
}, { timeoutMs: 60_000 });
