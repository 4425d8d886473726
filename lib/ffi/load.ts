/**
 * Finds libobjstore, binds it through the runtime's shim and checks its ABI. The library is
 * looked up in `OBJSTORE_LIB`, then the repository's build output (`zig/zig-out/lib`).
 */
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ObjstoreError } from "../errors.ts";
import type { NativeSymbols, RuntimeShim } from "./symbols.ts";

/** The ABI this TypeScript code speaks; the library must report the same. */
export const ABI_VERSION = 4;

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
  const path = findLibrary();
  const shim = await runtimeShim();
  let symbols: NativeSymbols;
  try {
    symbols = shim.open(path);
  } catch (error) {
    throw new ObjstoreError(
      `cannot load ${path} on ${shim.runtime}: ${(error as Error).message}. ` +
        "Rebuild it with `bash scripts/setup.sh` (or `cd zig && zig build`).",
      { cause: error },
    );
  }
  const abi = symbols.objstore_abi_version();
  if (abi !== ABI_VERSION) {
    throw new ObjstoreError(
      `${path} implements ABI ${abi} but this @objstore/core speaks ABI ${ABI_VERSION}: ` +
        "rebuild the library from the same checkout (`bash scripts/setup.sh`).",
    );
  }
  return { symbols, shim, path };
}

function findLibrary(): string {
  const fromEnv = process.env.OBJSTORE_LIB;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new ObjstoreError(`OBJSTORE_LIB points to ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  const built = fileURLToPath(new URL("../../zig/zig-out/lib/libobjstore.so", import.meta.url));
  if (existsSync(built)) return built;
  throw new ObjstoreError(
    `libobjstore.so not found (looked at $OBJSTORE_LIB and ${built}). ` +
      "Build it with `bash scripts/setup.sh`, or set OBJSTORE_LIB to its path.",
  );
}

/** The only place in `lib/` that asks which runtime it is on. */
async function runtimeShim(): Promise<RuntimeShim> {
  if ("Deno" in globalThis) return (await import("./deno.ts")).shim;
  if ("Bun" in globalThis) return (await import("./bun.ts")).shim;
  return (await import("./node.ts")).shim;
}
