/**
 * Writes the npm tarballs of the release into OUT_DIR: `@objstore/core` itself (compiled by
 * `tsc` into dist/ beforehand) and one `@objstore/core-<platform>` per prebuilt library in
 * zig/zig-out/npm/<platform>/ (`zig build packages`). Run by scripts/pack.sh, which builds both.
 * Each package is staged in .scratch/pack/<package>/ and packed from there.
 *
 *   node scripts/pack.ts OUT_DIR
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { PLATFORMS, type PlatformName } from "../lib/ffi/platform.ts";
import { VERSION } from "../lib/version.ts";

const root = path.resolve(import.meta.dirname!, "..");
const outDir = path.resolve(process.argv[2] ?? "dist");
const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const denoManifest = JSON.parse(readFileSync(path.join(root, "deno.json"), "utf8"));

checkVersions();
mkdirSync(outDir, { recursive: true });
const tarballs = [packMain(), ...PLATFORMS.map(packPlatform)];
for (const file of tarballs) {
  console.log(`${(statSync(file).size / 1024).toFixed(1).padStart(8)} KiB  ${path.relative(process.cwd(), file)}`);
}

/** One version everywhere: package.json, deno.json, lib/version.ts and the platform packages. */
function checkVersions(): void {
  const problems: string[] = [];
  if (manifest.version !== VERSION) problems.push(`package.json version ${manifest.version}`);
  if (denoManifest.version !== VERSION) problems.push(`deno.json version ${denoManifest.version}`);
  if (problems.length > 0) {
    throw new Error(`pack: lib/version.ts says ${VERSION}, but ${problems.join("; ")}: make them agree`);
  }
}

/**
 * The package users install: the compiled library (dist/), its types and CLI, under a manifest
 * made from the checkout's. The checkout's own manifest points at the TypeScript sources (a
 * task that imports `@objstore/core` in a checkout gets the same modules as its worker) and
 * names no platform package (a checkout tests the library it built).
 */
function packMain(): string {
  const stage = path.join(root, ".scratch", "pack", "core");
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  cpSync(path.join(root, "dist"), path.join(stage, "dist"), {
    recursive: true,
    filter: (from) => statSync(from).isDirectory() || /\.(js|d\.ts)$/.test(from),
  });
  copyFileSync(path.join(root, "LICENSE"), path.join(stage, "LICENSE"));
  copyFileSync(path.join(root, "README.md"), path.join(stage, "README.md"));
  const { scripts: _, devDependencies: __, exports: ___, bin: ____, ...kept } = manifest;
  writeFileSync(path.join(stage, "package.json"), JSON.stringify({
    ...kept,
    exports: {
      ".": { types: "./dist/mod.d.ts", import: "./dist/mod.js", default: "./dist/mod.js" },
      "./package.json": "./package.json",
    },
    types: "./dist/mod.d.ts",
    bin: { objstore: "./dist/bin/objstore.js" },
    files: ["dist/", "LICENSE", "README.md"],
    // npm, Bun and Deno install the one whose os, cpu and libc match, and skip the others.
    optionalDependencies: Object.fromEntries(PLATFORMS.map((p) => [`@objstore/core-${p}`, VERSION])),
  }, null, 2) + "\n");
  return npmPack(stage);
}

/** A package holding only the library for `platform`, and a module that says where it is. */
function packPlatform(platform: PlatformName): string {
  const [os, cpu, libc] = platform.split("-");
  const name = `@objstore/core-${platform}`;
  const library = path.join(root, "zig", "zig-out", "npm", platform, "libobjstore.so");
  const stage = path.join(root, ".scratch", "pack", platform);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  copyFileSync(library, path.join(stage, "libobjstore.so"));
  copyFileSync(path.join(root, "LICENSE"), path.join(stage, "LICENSE"));
  writeFileSync(path.join(stage, "package.json"), JSON.stringify({
    name,
    version: VERSION,
    description: `libobjstore.so for @objstore/core on ${os} ${cpu} with ${libc === "gnu" ? "glibc" : "musl"}`,
    license: manifest.license,
    type: "module",
    os: [os],
    cpu: [cpu],
    libc: [libc === "gnu" ? "glibc" : "musl"],
    exports: {
      ".": { types: "./index.d.ts", default: "./index.js" },
      "./libobjstore.so": "./libobjstore.so",
      "./package.json": "./package.json",
    },
    files: ["index.js", "index.d.ts", "libobjstore.so", "LICENSE", "README.md"],
  }, null, 2) + "\n");
  writeFileSync(path.join(stage, "index.js"), [
    "// The path of the library this package carries (loaded by @objstore/core through FFI).",
    'import { fileURLToPath } from "node:url";',
    'export const libraryPath = fileURLToPath(new URL("./libobjstore.so", import.meta.url));',
    "",
  ].join("\n"));
  writeFileSync(path.join(stage, "index.d.ts"), "/** The path of libobjstore.so in this package. */\nexport declare const libraryPath: string;\n");
  writeFileSync(path.join(stage, "README.md"), [
    `# ${name}`,
    "",
    `The native core of [@objstore/core](https://www.npmjs.com/package/@objstore/core) (\`libobjstore.so\`, built with Zig,`,
    `ReleaseFast, stripped) for ${os} ${cpu} with ${libc === "gnu" ? "glibc ≥ 2.28" : "musl"}. Install \`@objstore/core\`,`,
    "not this package: it comes with it as an optional dependency for the platform it runs on.",
    "",
  ].join("\n"));
  return npmPack(stage);
}

/** `npm pack` of the package in `dir` into OUT_DIR; returns the tarball's path. */
function npmPack(dir: string): string {
  const output = execFileSync("npm", ["pack", "--json", "--pack-destination", outDir], {
    cwd: dir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [{ filename }] = JSON.parse(output) as { filename: string }[];
  return path.join(outDir, filename);
}
