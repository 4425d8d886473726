/**
 * Runs test files on whichever runtime started it:
 * `node tests/run.ts [--filter text] tests/a.test.ts …` (same for `deno run -A`, `bun`).
 * Prints `<runtime>: N passed, N failed` last and exits non-zero on any failure.
 */
import { runRegistered } from "./harness.ts";
import process from "node:process";
import { pathToFileURL } from "node:url";
import path from "node:path";

const args = process.argv.slice(2);
let filter = "";
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--filter") filter = args[++i] ?? "";
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error("usage: run.ts [--filter text] <test files…>");
  process.exit(2);
}
for (const file of files) await import(pathToFileURL(path.resolve(file)).href);

const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
const { passed, failed } = await runRegistered(filter);
console.log(`${runtime}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
