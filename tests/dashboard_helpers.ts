/** `objstore dashboard` started for the tests, on this runtime and a free port. */
import assert from "node:assert/strict";
import path from "node:path";
import { type Child, currentRuntime, root, start } from "./helpers.ts";

/** The command line, for tests that run it otherwise. */
export const cli = path.join(root, "bin", "objstore.ts");

/** Starts `objstore dashboard` with `args` on this runtime; resolves with it and its URL. */
export async function startDashboard(args: string[]): Promise<{ child: Child; url: string }> {
  const child = start(currentRuntime, cli, ["dashboard", "--port", "0", ...args]);
  const line = await child.line();
  const match = /on (http:\/\/\S+)$/.exec(line);
  assert.ok(match, `the dashboard printed ${JSON.stringify(line)}`);
  return { child, url: match[1] };
}
