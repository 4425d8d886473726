/**
 * The dashboard's charting library, uPlot (a dependency of the package), served with the page
 * from the installed package so the page works offline: no CDN.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

/** The files of uPlot the page loads, by the path the dashboard serves them at. */
export interface ChartFiles {
  "/uplot.min.js": string;
  "/uplot.min.css": string;
}

let files: ChartFiles | undefined;

/**
 * uPlot's package.json: beside this module (npm, Bun, a clone), else in the working folder's
 * node_modules (Deno running the package from JSR, whose modules are not files).
 */
function resolveUplot(): string {
  const from = [import.meta.url, path.join(process.cwd(), "package.json")];
  const problems: string[] = [];
  for (const base of from) {
    try {
      return createRequire(base).resolve("uplot/package.json");
    } catch (error) {
      problems.push((error as Error).message.split("\n")[0]);
    }
  }
  throw new Error("the dashboard needs the package uplot (a dependency of @objstore/core), which is not installed here: " +
    `install it next to @objstore/core or in this folder (npm install uplot@1.6.32) (${problems.join("; ")})`);
}

/** Reads uPlot's browser build from node_modules, resolved from this module (once). */
export function chartFiles(): ChartFiles {
  if (files !== undefined) return files;
  const directory = path.join(path.dirname(resolveUplot()), "dist");
  files = {
    "/uplot.min.js": readFileSync(path.join(directory, "uPlot.iife.min.js"), "utf8"),
    "/uplot.min.css": readFileSync(path.join(directory, "uPlot.min.css"), "utf8"),
  };
  return files;
}
