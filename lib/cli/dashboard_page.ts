/**
 * The dashboard's page: one HTML document with its script, reading the JSON API once a second
 * (lib/cli/dashboard.ts) and drawing with uPlot (served beside it). Figures carry their exact
 * value in `data-value`, for scripts and the browser test.
 */

/** The page, titled with what it watches. */
export function dashboardPage(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>objstore: ${escapeHtml(title)}</title>
<link rel="stylesheet" href="uplot.min.css">
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1c2430; }
  header { background: #1c2430; color: #fff; padding: 10px 20px; display: flex; gap: 20px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .sub { opacity: .7; }
  main { padding: 12px 20px; display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 10px 14px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  .cards { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 8px; }
  .card { background: #f0f3f7; border-radius: 4px; padding: 4px 10px; }
  .card b { display: block; font-size: 16px; }
  .card small { color: #5b6675; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
  th.sortable { cursor: pointer; color: #1f5fbf; }
  td.num, th.num { text-align: right; }
  td.id { font-family: ui-monospace, monospace; font-size: 12px; }
  .dead { color: #b3261e; }
  .alive { color: #1b7f3b; }
  #problem { background: #fde7e7; color: #8a1c1c; padding: 6px 20px; display: none; }
  .pager { display: flex; gap: 8px; align-items: center; margin: 6px 0; }
  input[type=search] { padding: 3px 6px; width: 260px; }
</style>
</head>
<body>
<header><h1 id="title">objstore: ${escapeHtml(title)}</h1><span class="sub">updated <span id="updated" data-sampled-ms="0">never</span></span></header>
<div id="problem"></div>
<main>
  <section>
    <h2>Memory</h2>
    <div class="cards">
      <div class="card"><small>in shared memory</small><b data-stat="usedBytes">–</b></div>
      <div class="card"><small>pinned</small><b data-stat="pinnedBytes">–</b></div>
      <div class="card"><small>spilled</small><b data-stat="spilledBytes">–</b></div>
      <div class="card"><small>capacity</small><b data-stat="capacityBytes">–</b></div>
      <div class="card"><small>objects</small><b data-stat="objectCount" data-kind="count">–</b></div>
      <div class="card"><small>spilled objects</small><b data-stat="spilledObjects" data-kind="count">–</b></div>
      <div class="card"><small>spilled so far</small><b data-stat="spilledBytesTotal">–</b></div>
      <div class="card"><small>restored so far</small><b data-stat="restoredBytes">–</b></div>
    </div>
    <div id="chart-memory" class="chart"></div>
  </section>
  <section>
    <h2>Spilling and restoring</h2>
    <div id="chart-spill" class="chart"></div>
    <h2 style="margin-top:10px">Tasks</h2>
    <div class="cards">
      <div class="card"><small>pending</small><b data-task="pending">–</b></div>
      <div class="card"><small>running</small><b data-task="running">–</b></div>
      <div class="card"><small>finished</small><b data-task="finished">–</b></div>
      <div class="card"><small>failed</small><b data-task="failed">–</b></div>
      <div class="card"><small>retried</small><b data-task="retried">–</b></div>
    </div>
    <div id="chart-tasks" class="chart"></div>
  </section>
  <section class="wide">
    <h2>Objects <small id="objects-summary"></small></h2>
    <div class="pager">
      <input id="filter" type="search" placeholder="filter: id, type, state, node or pinning pid">
      <button id="prev">◀</button><span id="page">–</span><button id="next">▶</button>
    </div>
    <table id="objects"><thead><tr>
      <th class="sortable" data-sort="id">id</th><th class="sortable num" data-sort="sizeBytes">size</th><th class="sortable" data-sort="type">type</th>
      <th class="sortable" data-sort="state">where</th><th class="sortable num" data-sort="referencingProcesses">refs</th>
      <th class="sortable" data-sort="pinningProcesses">pinned by</th><th class="sortable num" data-sort="containedBy">in</th>
      <th class="sortable" data-sort="node">node</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Processes</h2>
    <table id="processes"><thead><tr><th class="num">pid</th><th>role</th><th>runtime</th><th>state</th><th class="num">tasks</th><th>command</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Nodes</h2>
    <table id="nodes"><thead><tr><th>node</th><th>store</th><th>state</th><th class="num">used</th><th class="num">pinned</th><th class="num">spilled</th><th class="num">capacity</th><th class="num">objects</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script src="uplot.min.js"></script>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const PAGE_ROWS = 50;
const table = { offset: 0, sort: "sizeBytes", order: "desc", filter: "" };

async function api(path) {
  const response = await fetch(path, { headers: token ? { authorization: "Bearer " + token } : {}, cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? n + " B" : value.toFixed(1) + " " + units[unit];
}
const holder = (p) => p.role ? p.pid + " (" + [p.runtime, p.role].filter(Boolean).join(" ") + ")" : String(p.pid);
const rate = (n) => n === null || n === undefined ? "–" : bytes(n) + "/s";
const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; };
function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => { const tr = document.createElement("tr"); tr.append(...cells); return tr; }));
}

function chart(id, series, axisValues) {
  const el = document.getElementById(id);
  const opts = {
    width: Math.max(300, el.clientWidth || 500), height: 190,
    series: [{}, ...series.map(([label, stroke, fill]) => ({ label, stroke, fill, width: 1.5, spanGaps: false }))],
    axes: [{}, { values: (u, values) => values.map(axisValues), size: 84 }],
    scales: { x: { time: true } },
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}
const memoryChart = chart("chart-memory", [
  ["in shared memory", "#1f77b4", "rgba(31,119,180,0.15)"], ["pinned", "#d62728"], ["spilled", "#9467bd"], ["capacity", "#7f7f7f"],
], bytes);
const spillChart = chart("chart-spill", [["spilled /s", "#9467bd"], ["restored /s", "#2ca02c"]], rate);
const tasksChart = chart("chart-tasks", [["tasks finished /s", "#ff7f0e", "rgba(255,127,14,0.15)"]], (n) => n === null ? "–" : n.toFixed(0));

function showProblem(text) {
  const el = document.getElementById("problem");
  el.textContent = text || "";
  el.style.display = text ? "block" : "none";
}

async function refreshMemory() {
  const m = await api("api/memory");
  document.getElementById("title").textContent = "objstore: " + m.title;
  showProblem(m.problem);
  const updated = document.getElementById("updated");
  updated.dataset.sampledMs = String(m.sampledMs);
  updated.textContent = m.sampledMs ? new Date(m.sampledMs).toLocaleTimeString() : "never";
  for (const el of document.querySelectorAll("[data-stat]")) {
    const value = m.stats ? m.stats[el.dataset.stat] : undefined;
    el.dataset.value = value === undefined || value === null ? "" : String(value);
    el.textContent = value === undefined || value === null ? "–" : el.dataset.kind === "count" ? value.toLocaleString("en") : bytes(value);
  }
  const h = m.history;
  const xs = h.map((s) => Math.round(s.tMs / 1000));
  memoryChart.setData([xs, h.map((s) => s.usedBytes), h.map((s) => s.pinnedBytes), h.map((s) => s.spilledBytes), h.map((s) => s.capacityBytes)]);
  spillChart.setData([xs, h.map((s) => s.spillBytesPerS), h.map((s) => s.restoreBytesPerS)]);
}

async function refreshTasks() {
  const t = await api("api/tasks");
  for (const el of document.querySelectorAll("[data-task]")) {
    const value = t.counts[el.dataset.task];
    el.dataset.value = String(value);
    el.textContent = value.toLocaleString("en");
  }
  tasksChart.setData([t.history.map((s) => Math.round(s.tMs / 1000)), t.history.map((s) => s.tasksPerS)]);
}

async function refreshObjects() {
  const q = new URLSearchParams({ offset: String(table.offset), limit: String(PAGE_ROWS), sort: table.sort, order: table.order, filter: table.filter });
  const o = await api("api/objects?" + q);
  const summary = document.getElementById("objects-summary");
  summary.dataset.total = String(o.total);
  summary.dataset.matched = String(o.matched);
  summary.textContent = o.matched === o.total ? o.total.toLocaleString("en") + " objects" : o.matched.toLocaleString("en") + " of " + o.total.toLocaleString("en") + " objects";
  const pages = Math.max(1, Math.ceil(o.matched / PAGE_ROWS));
  document.getElementById("page").textContent = "page " + (Math.floor(table.offset / PAGE_ROWS) + 1) + " of " + pages;
  fill(document.querySelector("#objects tbody"), o.rows.map((r) => [
    cell(r.id, "id"), cell(bytes(r.sizeBytes), "num"), cell(r.type === null ? "—" : r.type), cell(r.state), cell(String(r.referencingProcesses), "num"),
    cell(r.pinnedBy === null ? "–" : r.pinnedBy.map(holder).join(", "), "pins"),
    cell(r.containedBy === null ? "–" : String(r.containedBy), "num"), cell(r.node),
  ]));
}

async function refreshProcesses() {
  const p = await api("api/processes");
  fill(document.querySelector("#processes tbody"), p.processes.map((r) => [
    cell(String(r.pid), "num"), cell(r.role), cell(r.runtime), cell(r.alive ? "alive" : "dead", r.alive ? "alive" : "dead"),
    cell(String(r.tasks), "num"), cell(r.command),
  ]));
}

async function refreshNodes() {
  const n = await api("api/nodes");
  fill(document.querySelector("#nodes tbody"), n.nodes.map((r) => n.mode === "cluster" ? [
    cell(r.nodeNumber + " " + r.host + ":" + r.transferPort), cell(r.storeName), cell(r.silent ? "silent" : r.alive ? "alive" : "dead", r.alive && !r.silent ? "alive" : "dead"),
    cell(bytes(r.load ? r.load.usedBytes : null), "num"), cell(bytes(r.load ? r.load.pinnedBytes : null), "num"),
    cell(bytes(r.load ? r.load.spilledBytes : null), "num"), cell(bytes(r.capacityBytes), "num"), cell(r.load ? String(r.load.objectCount) : "–", "num"),
  ] : [
    cell(r.node), cell(r.store || "–"), cell(r.alive ? "alive" : "no store", r.alive ? "alive" : "dead"),
    cell(bytes(r.usedBytes), "num"), cell(bytes(r.pinnedBytes), "num"), cell(bytes(r.spilledBytes), "num"),
    cell(bytes(r.capacityBytes), "num"), cell(r.objectCount === null ? "–" : String(r.objectCount), "num"),
  ]));
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    await Promise.all([refreshMemory(), refreshTasks(), refreshObjects(), refreshProcesses(), refreshNodes()]);
    document.body.dataset.refreshed = String(Date.now());
  } catch (error) {
    showProblem("cannot reach the dashboard's server: " + error.message);
  } finally {
    refreshing = false;
  }
}

for (const th of document.querySelectorAll("th[data-sort]")) {
  th.addEventListener("click", () => {
    table.order = table.sort === th.dataset.sort && table.order === "desc" ? "asc" : "desc";
    table.sort = th.dataset.sort;
    table.offset = 0;
    refreshObjects();
  });
}
let filterTimer;
document.getElementById("filter").addEventListener("input", (event) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { table.filter = event.target.value; table.offset = 0; refreshObjects(); }, 200);
});
document.getElementById("prev").addEventListener("click", () => { table.offset = Math.max(0, table.offset - PAGE_ROWS); refreshObjects(); });
document.getElementById("next").addEventListener("click", () => {
  const matched = Number(document.getElementById("objects-summary").dataset.matched || 0);
  if (table.offset + PAGE_ROWS < matched) { table.offset += PAGE_ROWS; refreshObjects(); }
});
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
