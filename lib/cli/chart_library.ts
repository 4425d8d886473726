/**
 * The dashboard's charting library, uPlot (a dependency of the package), served with the page
 * from the installed package so the page works offline: no CDN.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

/** The files of uPlot the page loads, by the path the dashboard serves them at. */
export interface ChartFiles {
  "/uplot.min.js": string;
  "/uplot.min.css": string;
}

let files: ChartFiles | undefined;

/** Reads uPlot's browser build from node_modules, resolved from this module (once). */
export function chartFiles(): ChartFiles {
  if (files !== undefined) return files;
  let directory: string;
  try {
    directory = path.join(path.dirname(createRequire(import.meta.url).resolve("uplot/package.json")), "dist");
  } catch (error) {
    throw new Error(`the dashboard needs the package uplot (a dependency of @objstore/core), which is not installed: ` +
      `install it next to @objstore/core (npm install uplot@1.6.32) (${(error as Error).message})`);
  }
  files = {
    "/uplot.min.js": readFileSync(path.join(directory, "uPlot.iife.min.js"), "utf8"),
    "/uplot.min.css": readFileSync(path.join(directory, "uPlot.min.css"), "utf8"),
  };
  return files;
}
