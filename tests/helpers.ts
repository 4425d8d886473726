/** Test-only helpers: runtimes to spawn, forced GC, polling. Tests may ask which runtime they are on. */
import { spawn } from "node:child_process";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string) => path.join(root, "node_modules", ".bin", name);

export type Runtime = "node" | "deno" | "bun";
export const runtimes: Runtime[] = ["node", "deno", "bun"];
export const currentRuntime: Runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";

/** The command that runs a TypeScript file on `runtime`, GC exposed. */
export function command(runtime: Runtime, script: string): [string, string[]] {
  switch (runtime) {
    case "node":
      return [bin("node"), ["--expose-gc", script]];
    case "deno":
      // --unstable-net: QUIC (tests/cluster_quic.test.ts); nothing else changes with it.
      return [bin("deno"), ["run", "-A", "--unstable-net", "--v8-flags=--expose-gc", script]];
    case "bun":
      return [bin("bun"), [script]];
  }
}

export interface Child {
  /** Resolves with the next line the child prints. */
  line(): Promise<string>;
  /** Writes a line to the child's stdin. */
  send(text: string): void;
  kill(): void;
  /** The child's process id. */
  readonly pid: number;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

/** Starts `script` with `args` on `runtime`; stdout is read line by line. */
export function start(runtime: Runtime, script: string, args: string[] = []): Child {
  const [cmd, base] = command(runtime, script);
  const child = spawn(cmd, [...base, ...args], { cwd: root, stdio: ["pipe", "pipe", "pipe"], env: process.env });
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  let buffered = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let at;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      const waiter = waiters.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal, stderr }));
    // A command that cannot start (say, node_modules/.bin missing) fails the test, not the run.
    child.on("error", (error) => resolve({ code: null, signal: null, stderr: `${stderr}cannot start ${cmd}: ${error.message}` }));
  });
  return {
    line() {
      const ready = lines.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        waiters.push(resolve);
        exited.then(({ code, signal, stderr }) =>
          reject(new Error(`${runtime} ${path.basename(script)} exited (${code ?? signal}) before printing:\n${stderr}`))
        );
      });
    },
    send(text: string) {
      child.stdin!.write(text + "\n");
    },
    kill() {
      child.kill("SIGKILL");
    },
    pid: child.pid ?? 0,
    exited,
  };
}

/** Runs the garbage collector for real, on every runtime. */
/** Runs `script` with `args` on `runtime` to its end: its stdout lines, stderr and exit code. */
export async function runToEnd(runtime: Runtime, script: string, args: string[] = []): Promise<{ lines: string[]; stderr: string; code: number | null }> {
  const child = start(runtime, script, args);
  const lines: string[] = [];
  const reading = (async () => {
    try {
      while (true) lines.push(await child.line());
    } catch { /* exited */ }
  })();
  const { code, stderr } = await child.exited;
  await reading;
  return { lines, stderr, code };
}

export async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    if (g.Bun) g.Bun.gc(true);
    else if (typeof g.gc === "function") g.gc();
    else throw new Error("run the tests with GC exposed (--expose-gc)");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Collects garbage until `check` holds or `timeoutMs` passes: Bun's collector is conservative,
 * so a stale stack slot can keep a view alive through one collection. */
export async function eventuallyCollected(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    await collectGarbage();
    if (check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

/** A store name no other test uses. */
export function uniqueStoreName(what: string): string {
  return `test-${what}-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
}

/** The test Redis (scripts/redis_server.sh, started by scripts/test.sh), for the cluster tests. */
export function redisUrl(): string {
  const url = process.env.OBJSTORE_TEST_REDIS;
  if (!url) throw new Error("no Redis: run `eval \"$(bash scripts/redis_server.sh start)\"` first (scripts/test.sh does)");
  return url;
}
