/**
 * Bad arguments to `init` and to the `objstore` command: each is a clear error naming the
 * option and what it accepts, the command exits 2, and a refused call creates nothing in
 * /dev/shm or on disk. The native library's own checks, for callers that pass it raw bytes, are
 * exercised from a child process (a crash there must fail a test, not end the suite).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import * as objstore from "../mod.ts";
import { runCli } from "../lib/cli.ts";
import { test } from "./harness.ts";
import { currentRuntime, root, start, uniqueStoreName } from "./helpers.ts";

const MiB = 1024 * 1024;

/** Files a refused init for store `name` (or with spill folder `directory`) must not have left. */
function leftovers(name: string | undefined, directory?: string): string[] {
  const paths: string[] = [];
  if (name !== undefined) {
    const fileName = name.split("\0")[0];
    if (fileName !== "" && !fileName.includes("/")) {
      paths.push(`/dev/shm/objstore-${fileName}`, path.join(os.tmpdir(), `objstore-spill-${fileName}`));
      for (const f of readdirSync("/dev/shm")) if (f.startsWith(`objstore-ch-${fileName}-`)) paths.push(`/dev/shm/${f}`);
    }
  }
  if (directory !== undefined) paths.push(directory.split("\0")[0]);
  return paths.filter((p) => existsSync(p));
}

type Case = [what: string, options: unknown, message: RegExp];

/** Every option with values of the wrong type, out of range, absurd or dangerous. */
function badOptions(name: string): Case[] {
  const memory = (value: unknown): Case => [`objectStoreMemory ${String(value)}`, { storeName: name, objectStoreMemory: value }, /init: objectStoreMemory must be a whole number of bytes from 4096 to \d+ \(what \/dev\/shm has free\), got /];
  const workers = (value: unknown): Case => [`numWorkers ${String(value)}`, { storeName: name, numWorkers: value }, /init: numWorkers must be a whole number from 0 to 63 \(a store holds 64 processes\), got /];
  const threshold = (value: unknown): Case => [`spillThreshold ${String(value)}`, { storeName: name, spillThreshold: value }, /init: spillThreshold must be a fraction in \(0, 1\], got /];
  const storeName = (value: unknown): Case => [`storeName ${JSON.stringify(value)?.slice(0, 40)}`, { storeName: value, objectStoreMemory: MiB }, /init: storeName must be 1–200 letters, digits, '-', '_' or '.' \(not first\), not starting with "ch-", got /];
  const spill = (value: unknown, message: RegExp): Case => [`spill ${JSON.stringify(value)?.slice(0, 60)}`, { storeName: name, objectStoreMemory: MiB, spill: value }, message];
  const spillShape = /init: spill must be false, \{ type: "filesystem", directory\? \} or \{ type: "s3", bucket, prefix\?, endpoint\?, region\? \}, got /;
  return [
    ["options 5", 5, /init: options must be an object, got 5/],
    ["options string", "big", /init: options must be an object, got "big"/],
    ["options array", [MiB], /init: options must be an object, got an array/],
    ["options Map", new Map([["objectStoreMemory", MiB]]), /init: options must be an object, got an object/],
    ["a misspelt option", { storeName: name, objectStoreMemmory: MiB }, /init: unknown option "objectStoreMemmory"; the known ones are objectStoreMemory, numWorkers, spill, /],
    ["a null option", { storeName: name, numWorkers: null }, /init: numWorkers is null; leave it out for its default/],
    ...[-1, 0, 4095, 1.5, NaN, Infinity, -Infinity, 2 ** 53, "1048576", 1048576n, true, {}, [MiB], Symbol("m")].map(memory),
    ["objectStoreMemory beyond /dev/shm", { storeName: name, objectStoreMemory: 2 ** 52 }, /init: objectStoreMemory of 4503599627370496 bytes is more than \/dev\/shm can give \(\d+ bytes free\)/],
    ...[-1, 1.5, NaN, Infinity, 64, 1e9, "4", 4n, false].map(workers),
    ...[0, -0.1, 1.01, NaN, Infinity, "0.5", true].map(threshold),
    ...["", ".", "..", ".hidden", "a/b", "../../etc/passwd", "a\0b", "x".repeat(201), "x".repeat(300), "é", "😀", "a b", "tab\t", "ch-x-0123456789abcdef", 5, ["a"], {}].map(storeName),
    ["address 5", { storeName: name, address: 5 }, /init: address must be "redis:\/\/host:port", got 5/],
    ["address http", { storeName: name, address: "http://x" }, /init: address must be "redis:\/\/host:port", got "http:\/\/x"/],
    ["prefault string", { storeName: name, prefault: "yes" }, /init: prefault must be true or false, got "yes"/],
    ["prefault 1", { storeName: name, prefault: 1 }, /init: prefault must be true or false, got 1/],
    spill(true, spillShape),
    spill("filesystem", spillShape),
    spill([], spillShape),
    spill(0, spillShape),
    spill({}, /init: spill.type must be "filesystem" or "s3", got undefined/),
    spill({ type: "nfs" }, /init: spill.type must be "filesystem" or "s3", got "nfs"/),
    spill({ type: "filesystem", dir: "/tmp/x" }, /init: unknown spill option "dir"; the known ones are type, directory/),
    spill({ type: "filesystem", directory: "" }, /init: spill.directory must be a path \(a non-empty string without NUL\), got ""/),
    spill({ type: "filesystem", directory: 5 }, /init: spill.directory must be a path .*, got 5/),
    spill({ type: "filesystem", directory: `/tmp/objstore-nul-${name}\0/etc` }, /init: spill.directory must be a path \(a non-empty string without NUL\), got /),
    spill({ type: "filesystem", directory: `/tmp/${"d".repeat(2000)}` }, /init: spill.directory must be at most 959 bytes once absolute, got 2005: "\/tmp\/ddd/),
    spill({ type: "s3" }, /init: spill.bucket must name an S3 bucket, got undefined/),
    spill({ type: "s3", bucket: "" }, /init: spill.bucket must name an S3 bucket, got ""/),
    spill({ type: "s3", bucket: "a/b" }, /init: spill.bucket must name an S3 bucket, got "a\/b"/),
    spill({ type: "s3", bucket: "b", prefix: 5 }, /init: spill.prefix must be a string without NUL, got 5/),
    spill({ type: "s3", bucket: "b", region: {} }, /init: spill.region must be a string without NUL, got an object/),
    spill({ type: "s3", bucket: "b", endpoint: "ftp://x" }, /init: spill.endpoint must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/),
    spill({ type: "s3", bucket: "b", endpoint: "not a url" }, /init: spill.endpoint must be an http:\/\/ or https:\/\/ URL/),
    spill({ type: "s3", bucket: "b", secretKey: "x" }, /init: unknown spill option "secretKey"; the known ones are type, bucket, prefix, endpoint, region/),
  ];
}

test("init refuses every bad option with a message naming it, what it accepts and what it got; nothing is created", async () => {
  const name = uniqueStoreName("bad-options");
  for (const [what, options, message] of badOptions(name)) {
    let caught: unknown;
    try {
      await objstore.init(options as objstore.InitOptions);
    } catch (error) {
      caught = error;
    } finally {
      if (objstore.isInitialized()) await objstore.shutdown();
    }
    assert.ok(caught instanceof Error, `${what}: init did not refuse`);
    assert.ok(caught instanceof TypeError || caught instanceof objstore.ObjstoreError, `${what}: ${caught}`);
    assert.match(caught.message, message, what);
    assert.ok(caught.message.length < 400, `${what}: a ${caught.message.length}-character message`);
    const options_ = options as { storeName?: unknown; spill?: { directory?: unknown } };
    const storeName = typeof options_.storeName === "string" ? options_.storeName : undefined;
    const directory = typeof options_.spill?.directory === "string" ? options_.spill.directory : undefined;
    assert.deepStrictEqual(leftovers(storeName, directory), [], `${what} left files behind`);
  }
});

test("an init refused after its checks (bad spill folder, unreachable S3) leaves no segment and no folder", async () => {
  const scratch = path.join(os.tmpdir(), `objstore-args-${process.pid}`);
  mkdirSync(scratch, { recursive: true });
  writeFileSync(path.join(scratch, "a-file"), "");
  try {
    const cases: [string, objstore.InitOptions, RegExp][] = [
      ["a folder whose parent is missing", { spill: { type: "filesystem", directory: path.join(scratch, "missing", "spill") } }, /spill directory .* cannot be created: its parent does not exist/],
      ["a folder under a file", { spill: { type: "filesystem", directory: path.join(scratch, "a-file", "spill") } }, /spill directory .*a-file\/spill/],
      ["an S3 endpoint nobody answers", { spill: { type: "s3", bucket: "b", endpoint: "http://127.0.0.1:9" } }, /init: cannot use S3 bucket 'b' at http:\/\/127\.0\.0\.1:9/],
    ];
    for (const [what, options, message] of cases) {
      const storeName = uniqueStoreName("refused");
      await assert.rejects(objstore.init({ storeName, objectStoreMemory: MiB, prefault: false, numWorkers: 0, ...options }), message, what);
      assert.equal(objstore.isInitialized(), false);
      const directory = options.spill !== false && options.spill?.type === "filesystem" ? options.spill.directory : undefined;
      assert.deepStrictEqual(leftovers(storeName, directory), [], `${what} left files behind`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}, { timeoutMs: 120_000 });

/** Runs the command in this process: exit code, what it printed and what it complained. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, (line) => out.push(line), (line) => err.push(line));
  return { code, out: out.join("\n"), err: err.join("\n") };
}

test("objstore: a wrong command line exits 2 naming the problem, and touches nothing", async () => {
  // A file a path-traversing store name would reach; `destroy` must leave it alone.
  const victim = path.join(os.tmpdir(), `objstore-victim-${process.pid}`);
  writeFileSync(victim, "keep me");
  const traversal = `../..${victim}`;
  const name = "a store name must be 1–200 letters, digits, '-', '_' or '.' \\(not first\\), not starting with \"ch-\", got";
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["memory", "--store"], /--store needs a store name/],
    [["memory", "--store", "--json"], /--store needs a store name/],
    [["memory", "--stor", "x"], /memory does not take the option "--stor"/],
    [["memory", "--store", "a", "--store", "b"], /--store is given twice/],
    [["memory", "extra"], /memory does not take the argument "extra"/],
    [["status", "x"], /status does not take the argument "x"/],
    [["status", "--store", "x"], /status does not take the option "--store"/],
    [["destroy"], /destroy needs a store name/],
    [["destroy", "a", "b"], /destroy does not take the argument "b"/],
    ...["", ".", "..", "a/b", traversal, "a\0b", "x".repeat(201), "x".repeat(300), "é", "ch-x-0123456789abcdef"].flatMap((bad): [string[], RegExp][] => [
      [["destroy", bad], new RegExp(name)],
      [["memory", "--store", bad], new RegExp(name)],
    ]),
  ];
  try {
    for (const [args, message] of cases) {
      const { code, out, err } = await cli(args);
      const shownArgs = JSON.stringify(args).slice(0, 80);
      assert.equal(code, 2, `${shownArgs}: exit ${code}\n${out}${err}`);
      assert.match(err, message, shownArgs);
      assert.match(err, /usage: objstore <command>/, shownArgs);
      assert.equal(out, "", `${shownArgs} printed to stdout`);
    }
    assert.equal((await cli([])).code, 2);
    for (const help of [["help"], ["--help"], ["memory", "--help"]]) assert.equal((await cli(help)).code, 0);
    assert.equal((await import("node:fs")).readFileSync(victim, "utf8"), "keep me");
  } finally {
    rmSync(victim, { force: true });
  }
});

test(`objstore on ${currentRuntime}: exit 2 for a wrong command line, 1 for a missing store`, async () => {
  const run = async (args: string[]) => {
    const child = start(currentRuntime, path.join(root, "bin", "objstore.ts"), args);
    return await child.exited;
  };
  const wrong = await run(["destroy", "../x"]);
  assert.equal(wrong.code, 2, wrong.stderr);
  assert.match(wrong.stderr, /objstore: a store name must be/);
  const missing = await run(["memory", "--store", uniqueStoreName("absent")]);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /no store named/);
});

test(`the native library refuses raw bad arguments with a status, on ${currentRuntime}`, async () => {
  const child = start(currentRuntime, path.join(root, "tests", "fixtures", "raw_arguments.ts"), [uniqueStoreName("raw")]);
  const lines: string[] = [];
  const reading = (async () => {
    try {
      while (true) lines.push(await child.line());
    } catch { /* exited */ }
  })();
  const { code, signal, stderr } = await child.exited;
  await reading;
  assert.equal(signal, null, `killed by ${signal}:\n${lines.join("\n")}\n${stderr}`);
  assert.equal(code, 0, `${lines.join("\n")}\n${stderr}`);
  assert.ok(lines.includes("done"), lines.join("\n"));
});
