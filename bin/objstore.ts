#!/usr/bin/env -S node
/**
 * The objstore command line; runs on Node 24 (`node bin/objstore.ts`), Deno
 * (`deno run -A bin/objstore.ts`) and Bun (`bun bin/objstore.ts`).
 */
import process from "node:process";
import { runCli } from "../lib/cli.ts";

try {
  process.exitCode = await runCli(process.argv.slice(2));
} catch (error) {
  console.error(`objstore: ${(error as Error).message}`);
  process.exitCode = 1;
}
