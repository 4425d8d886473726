/**
 * A test harness small enough to run unchanged on Deno, Bun and Node: `test()` registers,
 * `runRegistered()` runs in order and prints one closing line `tests: N passed, N failed`.
 *
 * @example
 * ```ts
 * import { test } from "./harness.ts";
 * import assert from "node:assert/strict";
 * test("adds", () => assert.equal(1 + 1, 2));
 * ```
 */

export type TestFn = () => void | Promise<void>;

interface Registered {
  name: string;
  fn: TestFn;
  timeoutMs: number;
}

const registered: Registered[] = [];

/** Bun's own runner when the suite runs under `bun test` (see bunfig.toml), else undefined. */
const bunTest = await bunTestRunner();

/** Registers a test; `timeoutMs` bounds it (default 60 s) so one hang cannot stall the suite. */
export function test(name: string, fn: TestFn, options: { timeoutMs?: number } = {}): void {
  const timeoutMs = options.timeoutMs ?? 60_000;
  if (bunTest !== undefined) bunTest(name, fn, timeoutMs);
  else registered.push({ name, fn, timeoutMs });
}

type BunTest = (name: string, fn: TestFn, timeoutMs: number) => void;

async function bunTestRunner(): Promise<BunTest | undefined> {
  const underBunTest = "Bun" in globalThis && globalThis.process?.env.NODE_ENV === "test";
  if (!underBunTest) return undefined;
  const specifier = "bun:test"; // not a literal: Node and Deno never resolve it
  return ((await import(specifier)) as { test: BunTest }).test;
}

/** Runs every registered test whose name contains `filter`; returns the number that failed. */
export async function runRegistered(filter = ""): Promise<{ passed: number; failed: number }> {
  let passed = 0;
  let failed = 0;
  for (const t of registered) {
    if (!t.name.includes(filter)) continue;
    const started = performance.now();
    try {
      await withTimeout(t.fn(), t.timeoutMs, t.name);
      passed += 1;
      console.log(`ok   ${t.name} (${(performance.now() - started).toFixed(0)} ms)`);
    } catch (error) {
      failed += 1;
      console.log(`FAIL ${t.name}`);
      console.log(indent(error instanceof Error ? (error.stack ?? error.message) : String(error)));
    }
  }
  return { passed, failed };
}

async function withTimeout(work: void | Promise<void>, timeoutMs: number, name: string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`test "${name}" timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([Promise.resolve(work), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function indent(text: string): string {
  return text.split("\n").map((line) => "     " + line).join("\n");
}
