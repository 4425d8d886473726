/**
 * Which prebuilt libobjstore this machine needs: the npm package `@objstore/core-<platform>`
 * built for its CPU and C library (scripts/pack.sh makes one per platform).
 */
import { existsSync } from "node:fs";
import process from "node:process";

/** The platforms a prebuilt library exists for (zig/build.zig `platforms`). */
export const PLATFORMS = ["linux-x64-gnu", "linux-arm64-gnu", "linux-x64-musl", "linux-arm64-musl"] as const;
export type PlatformName = (typeof PLATFORMS)[number];

/** This machine as the packages name it, e.g. `linux-x64-gnu`, and whether a package exists for it. */
export interface Platform {
  readonly name: string;
  readonly supported: boolean;
}

/** The platform of this process: its OS, CPU and C library. */
export function detectPlatform(): Platform {
  const name = `${process.platform}-${process.arch}-${process.platform === "linux" ? cLibrary() : "none"}`;
  return { name, supported: (PLATFORMS as readonly string[]).includes(name) };
}

/** The npm package that carries the library for `platform`. */
export function platformPackage(platform: Platform): string {
  return `@objstore/core-${platform.name}`;
}

/**
 * `gnu` or `musl`. A glibc runtime reports its version; musl's does not. Reading the report
 * costs milliseconds, so it is asked only when a musl loader is present (Alpine, or a glibc
 * system that also has musl installed).
 */
function cLibrary(): "gnu" | "musl" {
  const muslArch = process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;
  if (!existsSync(`/lib/ld-musl-${muslArch}.so.1`)) return "gnu";
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return header?.glibcVersionRuntime ? "gnu" : "musl";
  } catch {
    return "musl";
  }
}
