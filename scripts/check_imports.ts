/**
 * Fails on an import circle in lib/ (TypeScript, type-only imports included: a circle of types
 * is still two modules that cannot be read apart) or in zig/src/ (`@import`s of project files).
 * Prints each circle as a path of files. Run by scripts/test.sh with `--strict-zig`.
 *
 *   node scripts/check_imports.ts               fails on TypeScript circles; Zig's are reported only
 *   node scripts/check_imports.ts --strict-zig  fails on Zig circles too (what CI runs)
 *
 * zig/src/ has had no circle since the Zig split of issue 17 (Segment.zig under the modules that
 * act on shared state, Store.zig above them, Spiller.zig above the store).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";

const root = path.resolve(import.meta.dirname!, "..");

/** Every file under `dir` (relative to the root) whose name ends with `extension`. */
function filesUnder(dir: string, extension: string): string[] {
  return readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)));
}

/** The project files `file` imports, by their path relative to the root. */
function importsOf(file: string, pattern: RegExp): string[] {
  const text = readFileSync(path.join(root, file), "utf8");
  const found = new Set<string>();
  for (const match of text.matchAll(pattern)) {
    const target = path.join(path.dirname(file), match[1]);
    if (target !== file) found.add(target);
  }
  return [...found];
}

// `import … from "./x.ts"`, `export … from "./x.ts"`, `import("./x.ts")`, `import "./x.ts"`.
const tsImport = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+\.ts)["']/g;
// `@import("Store.zig")`; std and build options are not project files.
const zigImport = /@import\(\s*"([^"]+\.zig)"\s*\)/g;

/** The circles of a graph: its strongly connected components of more than one file (Tarjan). */
function circles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, counter);
    low.set(file, counter);
    counter += 1;
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1) found.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return found;
}

/** One path around a circle, for the message: a → b → … → a. */
function pathAround(component: string[], graph: Map<string, string[]>): string {
  const members = new Set(component);
  const start = component[0];
  const seen = new Map<string, string | undefined>([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.shift()!;
    for (const next of graph.get(file) ?? []) {
      if (next === start) {
        const route = [start];
        for (let at: string | undefined = file; at !== undefined && at !== start; at = seen.get(at)) route.splice(1, 0, at);
        return [...route, start].join(" → ");
      }
      if (members.has(next) && !seen.has(next)) {
        seen.set(next, file);
        queue.push(next);
      }
    }
  }
  return component.join(", ");
}

const flags = process.argv.slice(2);
for (const flag of flags) {
  if (flag !== "--strict-zig") {
    console.error(`check_imports: unknown argument ${flag}; the only option is --strict-zig (fail on Zig circles too)`);
    process.exit(2);
  }
}
const graphs = [
  { name: "TypeScript (lib/)", strict: true, graph: new Map(filesUnder("lib", ".ts").map((f) => [f, importsOf(f, tsImport)])) },
  {
    name: "Zig (zig/src/)",
    strict: flags.includes("--strict-zig"),
    graph: new Map(filesUnder("zig/src", ".zig").map((f) => [f, importsOf(f, zigImport)])),
  },
];
let failed = false;
for (const { name, strict, graph } of graphs) {
  const found = circles(graph);
  if (found.length === 0) {
    console.log(`check_imports: ${name}: ${graph.size} files, no import circle`);
    continue;
  }
  if (strict) failed = true;
  const verdict = strict ? "" : " (reported, not failing: see --strict-zig)";
  console.log(`check_imports: ${name}: ${found.length} import circle(s)${verdict}:`);
  for (const component of found) {
    console.log(`  ${pathAround(component, graph)}\n    (all ${component.length} files of the circle: ${component.join(", ")})`);
  }
}
process.exit(failed ? 1 : 0);
