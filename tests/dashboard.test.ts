/**
 * `objstore dashboard` in a real browser: Debian's Chromium, headless, driven over the DevTools
 * Protocol (tests/chromium.ts), loads the page of a store this test fills, spills and runs tasks
 * on; the page's figures must be `memoryStats()`'s, its charts drawn, its tables right. A
 * screenshot goes to tests/output/ (ignored by git; CI keeps it). Also: the JSON API's checks
 * and token, without a browser.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { tableFromArrays } from "apache-arrow";
import * as os from "../mod.ts";
import { readTaskEvents, taskEventsDirectory } from "../lib/tasks/task_events.ts";
import { openPage } from "./chromium.ts";
import { cli, startDashboard } from "./dashboard_helpers.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, root, start, uniqueStoreName } from "./helpers.ts";

const outputDir = path.join(root, "tests", "output");

async function stop(child: Child): Promise<void> {
  child.kill();
  await child.exited;
}

/** Columns of the objects table (1-based, for :nth-child). */
const TYPE = 3;
const WHERE = 4;
const PINNED_BY = 6;

const STATS = ["capacityBytes", "usedBytes", "pinnedBytes", "objectCount", "spilledBytes", "spilledObjects", "restoredBytes", "spilledBytesTotal"] as const;

test(`objstore dashboard in headless Chromium shows memoryStats(), objects, processes and tasks, and draws its charts (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName(`dash-${currentRuntime}`);
  await os.init({ storeName, objectStoreMemory: 16 * 1024 * 1024, numWorkers: 2, prefault: false });
  let dashboard: Child | undefined;
  let page: Awaited<ReturnType<typeof openPage>> | undefined;
  try {
    const square = os.remote(function square(x: number) {
      return x * x;
    });
    const fail = os.remote(function fail() {
      throw new Error("on purpose");
    });
    class Counter {
      n = 0;
      held: unknown;
      add(k: number) {
        return (this.n += k);
      }
      /** Keeps a view of `value` (a pin while it is reachable); says which process holds it. */
      hold(value: unknown) {
        this.held = value;
        return (globalThis as unknown as { process: { pid: number } }).process.pid;
      }
    }
    const counter = os.remote(Counter).remote();
    assert.equal(await os.get(counter.add.remote(2)), 2);
    const kept: os.ObjectRef[] = [];
    // 24 MiB into a 16 MiB store: the oldest spill.
    for (let i = 0; i < 24; i++) kept.push(os.put(new Uint8Array(1024 * 1024).fill(i)));
    const first = await os.get(Array.from({ length: 200 }, (_, i) => i).map((i) => square.remote(i)));
    assert.equal(first[199], 199 * 199);
    const started = await startDashboard(["--store", storeName]);
    dashboard = started.child;
    page = await openPage(started.url);
    await waitFor(page, "document.body.dataset.refreshed !== undefined", "the page's first refresh");

    // While the page watches: more tasks, one failing, a restore; the page's counts move.
    const finishedBefore = await taskCount(page, "finished");
    const more = Array.from({ length: 300 }, (_, i) => i).map((i) => square.remote(i));
    await assert.rejects(os.get(fail.remote()), /on purpose/);
    assert.equal((await os.get(kept[0]) as Uint8Array)[0], 0, "the oldest object is restored from its spill file");
    await os.get(more);
    const tasksRun = 200 + 300 + 1 + 1;
    await waitFor(page, `Number(document.querySelector('[data-task=finished]').dataset.value) === ${tasksRun - 1}`, `${tasksRun - 1} finished tasks on the page`);
    assert.ok(finishedBefore < tasksRun - 1, `the page showed ${finishedBefore} finished first`);
    assert.equal(await taskCount(page, "failed"), 1);
    assert.equal(await taskCount(page, "pending") + await taskCount(page, "running"), 0);

    // The figures: the page's must be memoryStats()'s, read when the store holds still.
    const stats = await quiescentStats(page);
    assert.ok(stats.spilledObjects > 0 && stats.restoredBytes > 0, `the store spilled and restored: ${JSON.stringify(stats)}`);

    // The charts: three canvases of real size, with the series drawn in their colours.
    const charts = await page.evaluate<Array<{ id: string; width: number; height: number; points: number; stroke: number }>>(`
      [["chart-memory", memoryChart, [31, 119, 180]], ["chart-spill", spillChart, [148, 103, 189]], ["chart-tasks", tasksChart, [255, 127, 14]]].map(([id, chart, rgb]) => {
        const canvas = document.querySelector("#" + id + " canvas");
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let stroke = 0;
        for (let i = 0; i < pixels.length; i += 4) {
          if (Math.abs(pixels[i] - rgb[0]) < 8 && Math.abs(pixels[i + 1] - rgb[1]) < 8 && Math.abs(pixels[i + 2] - rgb[2]) < 8 && pixels[i + 3] > 200) stroke++;
        }
        return { id, width: canvas.width, height: canvas.height, points: chart.data[0].length, stroke };
      })`);
    for (const c of charts) {
      assert.ok(c.width > 200 && c.height > 100, `${c.id} is ${c.width}×${c.height}`);
      assert.ok(c.points >= 2, `${c.id} has ${c.points} samples`);
      assert.ok(c.stroke > 20, `${c.id}: its series is drawn (${c.stroke} pixels of its colour)`);
    }
    const lastUsed = await page.evaluate<number>("memoryChart.data[1].at(-1)");
    assert.equal(lastUsed, stats.usedBytes, "the memory chart ends at the store's use");

    // The objects: all of them counted, sorted by size on the server, filtered to the spilled.
    // The table refreshes on its own request: its count may be one refresh behind the figures.
    await waitFor(page, `document.getElementById('objects-summary').dataset.total === "${stats.objectCount}"`, `${stats.objectCount} objects counted in the table`);
    const sizes = await page.evaluate<string[]>("[...document.querySelectorAll('#objects tbody tr td:nth-child(2)')].map((td) => td.textContent)");
    assert.equal(sizes[0], "1.0 MiB", "largest first");
    await filterObjects(page, "spilled");
    await waitFor(page, `document.getElementById('objects-summary').dataset.matched === "${stats.spilledObjects}"`, `${stats.spilledObjects} spilled objects in the table`);
    const states = await page.evaluate<string[]>(`[...document.querySelectorAll('#objects tbody tr td:nth-child(${WHERE})')].map((td) => td.textContent)`);
    assert.ok(states.length > 0 && states.every((s) => s === "spilled"), states.join(","));
    const spilledTypes = await page.evaluate<string[]>(`[...document.querySelectorAll('#objects tbody tr td:nth-child(${TYPE})')].map((td) => td.textContent)`);
    assert.ok(spilledTypes.every((t) => t === "—"), `a spilled object's type is not read: ${spilledTypes.join(",")}`);

    // The processes: this driver and its two workers, on this runtime, alive.
    const processes = await page.evaluate<string[][]>("[...document.querySelectorAll('#processes tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent))");
    const mine = processes.find((row) => row[0] === String(process.pid));
    assert.deepEqual(mine?.slice(0, 5), [String(process.pid), "driver", currentRuntime, "alive", String(tasksRun)], JSON.stringify(processes));
    const workers = processes.filter((row) => (row[1] === "worker" || row[1] === "actor") && row[3] === "alive");
    assert.equal(workers.length, 3, JSON.stringify(processes));
    assert.equal(workers.filter((row) => row[1] === "actor").length, 1, JSON.stringify(processes));
    assert.equal(workers.reduce((sum, row) => sum + Number(row[4]), 0), tasksRun, "the workers and the actor ran every task");

    // The spill rate: after more puts spill, a sample's rate is the difference of memoryStats()'s
    // total since the sample before, a second; the page draws it.
    const spilledBefore = os.memoryStats().spilledBytesTotal;
    for (let i = 0; i < 8; i++) kept.push(os.put(new Uint8Array(1024 * 1024).fill(100 + i)));
    const spilledAfter = os.memoryStats().spilledBytesTotal;
    assert.ok(spilledAfter >= spilledBefore + 4 * 1024 * 1024, `8 MiB more spilled ${spilledAfter - spilledBefore} bytes`);
    type SpillSample = { tMs: number; spillBytesPerS: number; restoreBytesPerS: number; spilledBytesTotal: number; restoredBytesTotal: number };
    const history = async () => (await (await fetch(new URL("api/memory", started.url))).json()).history as SpillSample[];
    const deadline = Date.now() + 10_000;
    while ((await history()).at(-1)!.spilledBytesTotal < spilledAfter) {
      assert.ok(Date.now() < deadline, "no sample after the spill");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const samples = await history();
    const rose = samples.findIndex((s) => s.spilledBytesTotal >= spilledAfter);
    assert.ok(rose > 0, JSON.stringify(samples.slice(0, 3)));
    const spillRate = samples[rose].spillBytesPerS;
    assert.ok(spillRate > 0, `the spill rate after a spill: ${JSON.stringify(samples[rose])}`);
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1], samples[i]];
      assert.equal(b.spillBytesPerS, ((b.spilledBytesTotal - a.spilledBytesTotal) * 1000) / (b.tMs - a.tMs), `spill rate of sample ${i}`);
      assert.equal(b.restoreBytesPerS, ((b.restoredBytesTotal - a.restoredBytesTotal) * 1000) / (b.tMs - a.tMs), `restore rate of sample ${i}`);
    }
    assert.ok(samples.at(-1)!.restoredBytesTotal > 0);
    await waitFor(page, `spillChart.data[1].includes(${spillRate})`, `the spill rate ${spillRate} drawn`);

    // Who pins an object: this driver holds a view of it, and so does the actor.
    const pinned = os.put(new Float64Array(8192).fill(1.5));
    const view = await os.get(pinned) as Float64Array;
    const actorPid = await os.get(counter.hold.remote(pinned)) as number;
    assert.notEqual(actorPid, process.pid);
    const expectedPins = [{ pid: process.pid, role: "driver", runtime: currentRuntime }, { pid: actorPid, role: "actor", runtime: currentRuntime }]
      .sort((a, b) => a.pid - b.pid);
    await filterObjects(page, pinned.id);
    const pinsShown = expectedPins.map((p) => `${p.pid} (${p.runtime} ${p.role})`);
    await waitFor(page, `(() => { const td = document.querySelector('#objects tbody tr td:nth-child(${PINNED_BY})'); return ${JSON.stringify(pinsShown)}.every((p) => td.textContent.includes(p)); })()`, `the pids pinning ${pinned.id}`);
    const apiRow = (await (await fetch(new URL(`api/objects?filter=${pinned.id}`, started.url))).json()).rows[0];
    assert.deepEqual([...apiRow.pinnedBy].sort((a: { pid: number }, b: { pid: number }) => a.pid - b.pid), expectedPins);
    assert.equal(apiRow.pinningProcesses, 2);
    await filterObjects(page, String(actorPid));
    await waitFor(page, `[...document.querySelectorAll('#objects tbody tr td:nth-child(1)')].some((td) => td.textContent === "${pinned.id}")`, `the object pinned by ${actorPid} when filtered by its pid`);
    // Every row shown is pinned by it (or has its digits in its id: the filter matches ids too).
    const filtered = await page.evaluate<string[][]>(`[...document.querySelectorAll('#objects tbody tr')].map((tr) => [tr.children[0].textContent, tr.children[${PINNED_BY - 1}].textContent])`);
    assert.ok(filtered.every(([id, pins]) => pins.includes(`${actorPid} (`) || id.includes(String(actorPid))), JSON.stringify(filtered));
    assert.equal(view[8191], 1.5);

    // What kind of value each object is, from its first bytes, on the page and in the API.
    const failed = fail.remote();
    await assert.rejects(os.get(failed), /on purpose/);
    const kinds: Array<[os.ObjectRef, string]> = [
      [kept.at(-1)!, "Uint8Array"],
      [pinned, "Float64Array"],
      [os.put({ a: 1, b: "two" }), "object"],
      [os.put([1, 2, 3]), "array"],
      [os.put("hello"), "string"],
      [os.put(42.5), "number"],
      [os.put(new ArrayBuffer(64)), "ArrayBuffer"],
      [os.put(tableFromArrays({ x: new Float64Array([1, 2, 3]) })), "Arrow table"],
      [failed, "task error"],
    ];
    for (const [ref, type] of kinds) {
      await filterObjects(page, ref.id);
      await waitFor(page, `(() => { const tr = document.querySelector('#objects tbody tr'); return tr.children[0].textContent === "${ref.id}" && tr.children[${TYPE - 1}].textContent === ${JSON.stringify(type)}; })()`, `${ref.id} as a ${type}`);
    }
    const apiTypes = (await (await fetch(new URL("api/objects?limit=1000&sort=type&order=asc", started.url))).json()).rows as Array<{ id: string; type: string | null }>;
    for (const [ref, type] of kinds) assert.equal(apiTypes.find((r) => r.id === ref.id)?.type, type, ref.id);
    const names = apiTypes.map((r) => r.type);
    const known = names.filter((t) => t !== null) as string[];
    assert.deepEqual(known, [...known].sort(), "sorted by type");
    assert.deepEqual(names.slice(known.length), names.filter((t) => t === null), "the unknown last");
    await filterObjects(page, "task err");
    await waitFor(page, `[...document.querySelectorAll('#objects tbody tr')].some((tr) => tr.children[0].textContent === "${failed.id}")`, "the failed task's result when filtered by its type");
    assert.ok((await page.evaluate<string[]>(`[...document.querySelectorAll('#objects tbody tr td:nth-child(${TYPE})')].map((td) => td.textContent)`)).every((t) => t === "task error"));

    mkdirSync(outputDir, { recursive: true });
    const shot = path.join(outputDir, `dashboard-${currentRuntime}.png`);
    await page.screenshot(shot);
    assert.ok(statSync(shot).size > 20_000, "a screenshot of the page");
    kept.length = 0;
  } finally {
    // Each step whatever the others do: a store left initialized would fail every later test.
    const steps = [() => page?.close(), () => dashboard && stop(dashboard), () => os.shutdown(), () => removeTaskEvents(storeName)];
    const problems: unknown[] = [];
    for (const step of steps) await Promise.resolve().then(step).catch((error) => problems.push(error));
    if (problems.length > 0) throw problems[0];
  }
}, { timeoutMs: 60_000 });

test(`objstore dashboard's API pages objects on the server, refuses bad queries, and needs its token beyond loopback (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName(`dash-api-${currentRuntime}`);
  await os.init({ storeName, objectStoreMemory: 16 * 1024 * 1024, prefault: false });
  const children: Child[] = [];
  try {
    const refs = Array.from({ length: 120 }, (_, i) => i).map((i) => os.put(new Uint8Array(i * 10)));
    const local = await startDashboard(["--store", storeName]);
    children.push(local.child);
    const api = async (p: string, headers: Record<string, string> = {}) => {
      const response = await fetch(new URL(p, local.url), { headers });
      return { status: response.status, body: await response.json() };
    };
    const pageOne = await api("api/objects?offset=0&limit=50&sort=sizeBytes&order=asc");
    assert.equal(pageOne.status, 200);
    assert.equal(pageOne.body.total, 120);
    assert.equal(pageOne.body.rows.length, 50);
    const pageThree = await api("api/objects?offset=100&limit=50&sort=sizeBytes&order=asc");
    assert.equal(pageThree.body.rows.length, 20);
    const sizes = [...pageOne.body.rows, ...pageThree.body.rows].map((r: { sizeBytes: number }) => r.sizeBytes);
    assert.deepEqual(sizes, [...sizes].sort((a, b) => a - b), "sorted ascending across pages");
    const byId = await api("api/objects?limit=1000&sort=id&order=asc");
    const ids = byId.body.rows.map((r: { id: string }) => r.id);
    assert.deepEqual(ids, [...refs.map((r) => r.id)].sort(), "every object, sorted by id");
    const one = await api(`api/objects?filter=${refs[7].id}`);
    assert.deepEqual(one.body.rows.map((r: { id: string }) => r.id), [refs[7].id]);
    for (const [query, problem] of [["limit=100000", /limit must be a whole number up to 1000/], ["sort=colour", /sort must be one of/], ["order=up", /order must be asc or desc/], ["offset=-1", /offset must be a whole number/]] as const) {
      const bad = await api(`api/objects?${query}`);
      assert.equal(bad.status, 400, query);
      assert.match(bad.body.error, problem);
    }
    assert.equal((await api("api/nope")).status, 404);
    const nodes = await api("api/nodes");
    assert.equal(nodes.body.nodes[0].objectCount, 120);

    // More kinds of value than a table numbers (255): the rest are "other".
    const classes = Array.from({ length: 300 }, () => class {});
    classes.forEach((cls, i) => os.registerSerializer(cls, { serialize: () => i, deserialize: () => new cls() }, `Kind${i}`));
    try {
      const many = classes.map((cls) => os.put(new cls()));
      await new Promise((resolve) => setTimeout(resolve, 1100)); // the listing is a second old at most
      const typed = (await api("api/objects?limit=1000&sort=type&order=asc")).body.rows as Array<{ type: string | null }>;
      const counts = new Map<string | null, number>();
      for (const row of typed) counts.set(row.type, (counts.get(row.type) ?? 0) + 1);
      // Numbered as listed (slot order, the order of the puts): Uint8Array, Kind0 to Kind252, then "other".
      assert.equal(counts.get("Uint8Array"), 120);
      assert.equal(counts.get("Kind0"), 1);
      assert.equal(counts.get("Kind252"), 1);
      assert.equal(counts.get("Kind253"), undefined);
      assert.equal(counts.get("other"), 300 - 253);
      assert.equal(counts.size, 255);
      many.length = 0;
    } finally {
      for (const cls of classes) os.deregisterSerializer(cls);
    }

    // Beyond loopback: refused without a token; with one, every request must carry it.
    const refused = start(currentRuntime, cli, ["dashboard", "--store", storeName, "--host", "0.0.0.0", "--port", "0"]);
    const { code, stderr } = await refused.exited;
    assert.notEqual(code, 0);
    assert.match(stderr, /listens on 0\.0\.0\.0, beyond this machine: give it --token/);
    const guarded = await startDashboard(["--store", storeName, "--host", "0.0.0.0", "--token", "s3cret"]);
    children.push(guarded.child);
    const port = new URL(guarded.url).port;
    assert.equal(new URL(guarded.url).searchParams.get("token"), "s3cret");
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/memory`)).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/memory`, { headers: { authorization: "Bearer wrong!" } })).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/memory`, { headers: { authorization: "Bearer s3cret" } })).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/?token=s3cret`)).status, 200);
    refs.length = 0;
  } finally {
    for (const child of children) await stop(child);
    await os.shutdown();
  }
}, { timeoutMs: 60_000 });

/** Removes the task event files of `storeName`'s processes (kept after them for timelines). */
function removeTaskEvents(storeName: string): void {
  for (const p of readTaskEvents(storeName, false)) rmSync(path.join(taskEventsDirectory(), `${storeName}@${p.pid}`), { force: true });
}

/** Polls `expression` in the page until it is true (up to 15 s). */
async function waitFor(page: { evaluate<T>(e: string): Promise<T> }, expression: string, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  // False while the page is still loading (no body yet, say).
  const guarded = `(() => { try { return Boolean(${expression}); } catch { return false; } })()`;
  while (!(await page.evaluate<boolean>(guarded))) {
    if (Date.now() > deadline) {
      const tasks = await page.evaluate<string>("JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-task]')].map((el) => [el.dataset.task, el.dataset.value])))");
      throw new Error(`the page never showed ${what} (${expression}); its task counts: ${tasks}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Types `text` into the objects table's filter. */
async function filterObjects(page: { evaluate<T>(e: string): Promise<T> }, text: string): Promise<void> {
  await page.evaluate(`(() => { const input = document.getElementById("filter"); input.value = ${JSON.stringify(text)}; input.dispatchEvent(new Event("input")); })()`);
}

async function taskCount(page: { evaluate<T>(e: string): Promise<T> }, state: string): Promise<number> {
  return Number(await page.evaluate<string>(`document.querySelector('[data-task=${state}]').dataset.value`));
}

/**
 * memoryStats() when the page shows a sample taken after it and it has not changed since: the
 * page's figures must then be exactly these. Tries again while the store still moves (workers
 * dropping their references to results, say).
 */
async function quiescentStats(page: { evaluate<T>(e: string): Promise<T> }): Promise<os.MemoryStats> {
  const deadline = Date.now() + 20_000;
  let mismatch = "";
  while (Date.now() < deadline) {
    const before = os.memoryStats();
    const readMs = Date.now();
    await waitFor(page, `Number(document.getElementById('updated').dataset.sampledMs) > ${readMs}`, "a sample taken after memoryStats()");
    const shown = await page.evaluate<Record<string, string>>(
      `Object.fromEntries([...document.querySelectorAll('[data-stat]')].map((el) => [el.dataset.stat, el.dataset.value]))`,
    );
    const after = os.memoryStats();
    if (JSON.stringify(before) !== JSON.stringify(after)) continue;
    mismatch = STATS.filter((key) => shown[key] !== String(after[key])).map((key) => `${key}: page ${shown[key]}, memoryStats() ${after[key]}`).join("; ");
    if (mismatch === "") return after;
  }
  throw new Error(`the page's figures never matched memoryStats(): ${mismatch || "the store kept changing"}`);
}
