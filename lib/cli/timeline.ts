/**
 * `objstore timeline`: the recent tasks of a store as a Chrome trace (the JSON "Trace Event
 * Format" that chrome://tracing and https://ui.perfetto.dev open), as `ray timeline` writes.
 *
 * - each task a worker ran: a complete event (`ph: "X"`) on the worker's row (pid and tid = the
 *   worker's pid), named after its function, with its task number, driver, arguments' size and
 *   whether it failed;
 * - each submission: an instant event (`ph: "i"`) on the driver's row, and a flow (`ph: "s"` →
 *   `ph: "f"`) from it to the run, so the viewer draws an arrow from submit to start;
 * - process and thread names (`ph: "M"`): "driver 1234 (node)", "worker 1240 (deno)".
 *
 * Timestamps are microseconds from the first event (`otherData.startEpochMicros` says when).
 */
import type { ProcessTaskEvents } from "../tasks/task_events.ts";

/** One event of the trace (the fields this writer uses). */
export interface TraceEvent {
  name: string;
  cat?: string;
  ph: "X" | "i" | "s" | "f" | "M";
  ts?: number;
  dur?: number;
  pid: number;
  tid: number;
  s?: "t" | "p" | "g";
  id?: number;
  bp?: "e";
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: "ms";
  otherData: { store: string; startEpochMicros: number; processes: number; tasks: number };
}

/** A flow's id: the driver's pid and its task number, as one number. */
function flowId(driverPid: number, task: number): number {
  return driverPid * 2 ** 31 + task;
}

/** The trace of `processes` (one store's task event files). */
export function chromeTrace(store: string, processes: ProcessTaskEvents[]): ChromeTrace {
  const submits = new Map<number, { startMicros: number; argBytes: number; name: string }>();
  let origin = Infinity;
  for (const p of processes) {
    for (const e of p.events) {
      origin = Math.min(origin, e.startMicros);
      if (e.kind === "submit") submits.set(flowId(p.pid, e.task), e);
    }
  }
  if (origin === Infinity) origin = 0;
  const at = (micros: number) => Math.max(0, Math.round((micros - origin) * 1000) / 1000);
  const events: TraceEvent[] = [];
  let tasks = 0;
  for (const p of processes) {
    const label = `${p.role} ${p.pid} (${p.runtime})${p.alive ? "" : ", exited"}`;
    events.push({ name: "process_name", ph: "M", pid: p.pid, tid: p.pid, args: { name: label } });
    events.push({ name: "thread_name", ph: "M", pid: p.pid, tid: p.pid, args: { name: p.role === "driver" ? "submits" : "tasks" } });
    const ran = new Set<number>();
    for (const e of p.events) {
      if (e.kind === "submit") {
        events.push({ name: `submit ${e.name}`, cat: "submit", ph: "i", s: "t", ts: at(e.startMicros), pid: p.pid, tid: p.pid, args: { task: e.task, argBytes: e.argBytes } });
        continue;
      }
      tasks += 1;
      const id = flowId(p.parentPid, e.task);
      const submit = submits.get(id);
      const args: Record<string, unknown> = { task: e.task, driver: p.parentPid, failed: e.kind === "ranFailed" };
      if (submit !== undefined) args.argBytes = submit.argBytes;
      events.push({ name: e.name, cat: "task", ph: "X", ts: at(e.startMicros), dur: at(e.endMicros) - at(e.startMicros), pid: p.pid, tid: p.pid, args });
      // One arrow per task (a retried task's later runs start from the same submit).
      if (submit !== undefined && !ran.has(e.task)) {
        ran.add(e.task);
        events.push({ name: "submit", cat: "flow", ph: "s", id, ts: at(submit.startMicros), pid: p.parentPid, tid: p.parentPid });
        events.push({ name: "submit", cat: "flow", ph: "f", bp: "e", id, ts: at(e.startMicros), pid: p.pid, tid: p.pid });
      }
    }
  }
  return { traceEvents: events, displayTimeUnit: "ms", otherData: { store, startEpochMicros: origin, processes: processes.length, tasks } };
}

/**
 * What is wrong with `trace` as a Chrome trace, or an empty list: the checks chrome://tracing's
 * JSON importer and Perfetto rely on (used by the tests, and by `objstore timeline` before it writes).
 */
export function traceProblems(trace: unknown): string[] {
  const problems: string[] = [];
  if (typeof trace !== "object" || trace === null || !Array.isArray((trace as ChromeTrace).traceEvents)) return ["no traceEvents array"];
  const starts = new Set<string>();
  const finishes: string[] = [];
  for (const [i, e] of (trace as ChromeTrace).traceEvents.entries()) {
    const where = `event ${i} (${JSON.stringify(e).slice(0, 80)})`;
    if (typeof e.name !== "string") problems.push(`${where}: name is not a string`);
    if (!["X", "i", "s", "f", "M"].includes(e.ph)) problems.push(`${where}: phase ${e.ph} is not one this writer uses`);
    if (!Number.isSafeInteger(e.pid) || !Number.isSafeInteger(e.tid)) problems.push(`${where}: pid and tid must be integers`);
    if (e.ph === "M") {
      if (typeof e.args?.name !== "string") problems.push(`${where}: a metadata event needs args.name`);
      continue;
    }
    if (typeof e.ts !== "number" || !(e.ts >= 0)) problems.push(`${where}: ts must be a number ≥ 0`);
    if (e.ph === "X" && (typeof e.dur !== "number" || !(e.dur >= 0))) problems.push(`${where}: a complete event needs dur ≥ 0`);
    if (e.ph === "i" && !["t", "p", "g"].includes(e.s ?? "t")) problems.push(`${where}: an instant event's scope must be t, p or g`);
    if (e.ph === "s" || e.ph === "f") {
      if (e.id === undefined || typeof e.cat !== "string") problems.push(`${where}: a flow event needs id and cat`);
      (e.ph === "s" ? starts.add.bind(starts) : finishes.push.bind(finishes))(`${e.cat}:${e.id}`);
    }
  }
  for (const f of finishes) if (!starts.has(f)) problems.push(`flow ${f} ends without a start`);
  return problems;
}
