/**
 * Finds libobjstore, binds it through the runtime's shim and checks its ABI. The library is
 * looked up in the npm package for this platform (`@objstore/core-linux-x64-gnu` and its
 * siblings, installed with `@objstore/core`), then in `OBJSTORE_LIB`, then in a checkout's
 * build output (`zig/zig-out/lib`).
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ObjstoreError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { detectPlatform, type Platform, platformPackage, PLATFORMS } from "./platform.ts";
import type { NativeSymbols, RuntimeShim } from "./symbols.ts";

/** The ABI this TypeScript code speaks; the library must report the same. */
export const ABI_VERSION = 10;

export interface Library {
  readonly symbols: NativeSymbols;
  readonly shim: RuntimeShim;
  readonly path: string;
}

let loaded: Promise<Library> | undefined;

/** Loads the library once per process (later calls share the first load). */
export function loadLibrary(): Promise<Library> {
  loaded ??= load().catch((error) => {
    loaded = undefined;
    throw error;
  });
  return loaded;
}

async function load(): Promise<Library> {
  const path = await findLibrary();
  const shim = await runtimeShim();
  let symbols: NativeSymbols;
  try {
    symbols = shim.open(path);
  } catch (error) {
    throw new ObjstoreError(`cannot load ${path} on ${shim.runtime}: ${(error as Error).message}`, { cause: error });
  }
  const abi = symbols.objstore_abi_version();
  if (abi !== ABI_VERSION) {
    throw new ObjstoreError(
      `${path} implements ABI ${abi} but @objstore/core ${VERSION} speaks ABI ${ABI_VERSION}: ` +
        "install the platform package of the same version as @objstore/core (or rebuild the library from the same checkout)",
    );
  }
  return { symbols, shim, path };
}

async function findLibrary(): Promise<string> {
  const platform = detectPlatform();
  const packaged = platform.supported ? await libraryOfPackage(platformPackage(platform)) : undefined;
  if (packaged !== undefined) return packaged;
  const fromEnv = process.env.OBJSTORE_LIB;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new ObjstoreError(`OBJSTORE_LIB points to ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  const here = new URL(import.meta.url);
  if (here.protocol === "file:") {
    const built = fileURLToPath(new URL("../../zig/zig-out/lib/libobjstore.so", here));
    if (existsSync(built)) return built;
  }
  throw new ObjstoreError(notFoundMessage(platform));
}

/** The library inside the installed platform package `name`, if it is installed. */
async function libraryOfPackage(name: string): Promise<string | undefined> {
  const here = new URL(import.meta.url);
  if (here.protocol === "file:") {
    try {
      return createRequire(here).resolve(`${name}/libobjstore.so`);
    } catch {
      return undefined;
    }
  }
  // Loaded from JSR (Deno): the platform package comes from npm by its full specifier. A
  // literal would make every platform's package a dependency of every install.
  try {
    const specifier = `npm:${name}@${VERSION}`;
    const module = await import(specifier) as { libraryPath?: string };
    return module.libraryPath;
  } catch {
    return undefined;
  }
}

function notFoundMessage(platform: Platform): string {
  if (!platform.supported) {
    return `libobjstore.so: no prebuilt library for this platform (${platform.name}; there are ${PLATFORMS.join(", ")}). ` +
      "Build it from a checkout of @objstore/core (`bash scripts/setup.sh`) and set OBJSTORE_LIB to zig/zig-out/lib/libobjstore.so.";
  }
  const name = platformPackage(platform);
  return `libobjstore.so not found: this is ${platform.name}, whose library comes in the package ${name}, ` +
    `which is not installed (optional dependencies skipped?). Install it: \`npm install ${name}@${VERSION}\` ` +
    `(or \`bun add\` / \`deno add npm:${name}@${VERSION}\`), or set OBJSTORE_LIB to a libobjstore.so.`;
}

/** The only place in `lib/` that asks which runtime it is on. */
async function runtimeShim(): Promise<RuntimeShim> {
  if ("Deno" in globalThis) return (await import("./deno.ts")).shim;
  if ("Bun" in globalThis) return (await import("./bun.ts")).shim;
  return (await import("./node.ts")).shim;
}
