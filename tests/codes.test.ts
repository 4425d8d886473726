/**
 * The codes shared by the native core, its C header and TypeScript are written in each (Zig
 * cannot import a header's enum, nor TypeScript a Zig file): this test is their one source of
 * truth. It reads the Zig sources and the header as text and the TypeScript constants as
 * values, and fails naming every code that differs:
 *
 * - status codes: `Status` (zig/src), `objstore_status` (zig/include/objstore.h), `Status`
 *   (lib/store/status.ts);
 * - spill-file states: `layout.FileState` (zig/src), `FileState` (lib/store/native_store.ts);
 * - `objstore_contains` results: `ObjectState` (zig/src), `Presence` (lib/store/status.ts);
 * - the ABI version and the id size: zig/src/layout.zig, the header, lib/ffi/load.ts, lib/ids.ts
 *   (and the codec's REF_ID_BYTES).
 *
 * Zig enums are found by name in whichever file of zig/src declares them, so moving one to
 * another file does not break the test.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "./harness.ts";
import { Presence, Status } from "../lib/store/status.ts";
import { FileState } from "../lib/store/native_store.ts";
import { ABI_VERSION } from "../lib/ffi/load.ts";
import { ID_BYTES } from "../lib/ids.ts";
import { REF_ID_BYTES } from "../lib/codec/format.ts";

const zigSourceDirectory = new URL("../zig/src/", import.meta.url);
const header = readFileSync(new URL("../zig/include/objstore.h", import.meta.url), "utf8");

/** name → value, names in snake_case (the form the three sources are compared in). */
type Codes = Map<string, number>;

/** Every .zig file under zig/src, with its text. */
function zigSources(): { file: string; text: string }[] {
  return readdirSync(zigSourceDirectory, { recursive: true })
    .map(String)
    .filter((file) => file.endsWith(".zig"))
    .map((file) => ({ file: `zig/src/${file}`, text: readFileSync(new URL(file, zigSourceDirectory), "utf8") }));
}

/** Text without `//` comments (Zig) or C comments, so a commented-out line is not a code. */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

/** The fields of `pub const <name> = enum(<int>) { … }`, declared in exactly one file of zig/src. */
function zigEnum(name: string): { file: string; codes: Codes } {
  const declaration = new RegExp(`pub const ${name} = enum\\(\\w+\\) \\{([^}]*)\\}`);
  const found = zigSources().flatMap(({ file, text }) => {
    const match = withoutComments(text).match(declaration);
    return match === null ? [] : [{ file, body: match[1] }];
  });
  assert.equal(found.length, 1, `expected one declaration of enum ${name} in zig/src, found it in ${found.length} files (${found.map((f) => f.file).join(", ")})`);
  const codes: Codes = new Map();
  for (const field of found[0].body.split(",")) {
    const trimmed = field.trim();
    if (trimmed === "") continue;
    const match = trimmed.match(/^@?"?(\w+)"?\s*=\s*(\d+)$/);
    assert.ok(match !== null, `${found[0].file}: enum ${name} has a field this test cannot read: '${trimmed}' (give every field an explicit value)`);
    codes.set(match[1], Number(match[2]));
  }
  return { file: found[0].file, codes };
}

/** The fields of `typedef enum objstore_status { … }` in the header, without its sizing sentinel. */
function headerStatuses(): Codes {
  const match = withoutComments(header).match(/typedef enum objstore_status \{([^}]*)\}/);
  assert.ok(match !== null, "zig/include/objstore.h: no 'typedef enum objstore_status { … }'");
  const codes: Codes = new Map();
  for (const field of match[1].split(",")) {
    const trimmed = field.trim();
    if (trimmed === "" || trimmed.startsWith("OBJSTORE_STATUS_MAX_VALUE")) continue;
    const parsed = trimmed.match(/^OBJSTORE_(\w+)\s*=\s*(\d+)$/);
    assert.ok(parsed !== null, `zig/include/objstore.h: objstore_status has a field this test cannot read: '${trimmed}'`);
    codes.set(parsed[1].toLowerCase(), Number(parsed[2]));
  }
  return codes;
}

/** A `#define OBJSTORE_<name> <number>` of the header. */
function headerDefine(name: string): number {
  const match = header.match(new RegExp(`#define OBJSTORE_${name}\\s+(\\d+)`));
  assert.ok(match !== null, `zig/include/objstore.h: no '#define OBJSTORE_${name} <number>'`);
  return Number(match[1]);
}

/** A TypeScript constant object ({ notSealed: 4 }) with its names in snake_case. */
function fromTypeScript(constants: Record<string, number>): Codes {
  return new Map(Object.entries(constants).map(([name, value]) => [name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]));
}

/**
 * Every difference between sources of the same codes, one line each: a name missing from a
 * source, or a name whose value differs. Empty when they all agree.
 */
function differences(what: string, sources: Record<string, Codes>): string[] {
  const names = new Set(Object.values(sources).flatMap((codes) => [...codes.keys()]));
  const found: string[] = [];
  for (const name of [...names].sort()) {
    const values = Object.entries(sources).map(([source, codes]) => `${source} ${codes.has(name) ? codes.get(name) : "(missing)"}`);
    const distinct = new Set(Object.values(sources).map((codes) => codes.get(name)));
    if (distinct.size > 1) found.push(`${what} '${name}': ${values.join(", ")}`);
  }
  return found;
}

function assertAgree(what: string, sources: Record<string, Codes>): void {
  const found = differences(what, sources);
  assert.deepEqual(found, [], `the ${what} codes differ between ${Object.keys(sources).join(", ")}; make them the same:\n  ${found.join("\n  ")}`);
}

test("codes: status codes agree between zig/src, objstore.h and lib/store/status.ts", () => {
  const zig = zigEnum("Status");
  assert.ok(zig.codes.size > 0, `${zig.file}: enum Status has no fields`);
  assertAgree("status", { [zig.file]: zig.codes, "zig/include/objstore.h": headerStatuses(), "lib/store/status.ts": fromTypeScript(Status) });
});

test("codes: spill-file states agree between layout.FileState and native_store.ts FileState", () => {
  const zig = zigEnum("FileState");
  assert.ok(zig.codes.size > 0, `${zig.file}: enum FileState has no fields`);
  assertAgree("spill-file state", { [zig.file]: zig.codes, "lib/store/native_store.ts": fromTypeScript(FileState) });
});

test("codes: objstore_contains results agree between ObjectState and Presence", () => {
  const zig = zigEnum("ObjectState");
  assertAgree("objstore_contains result", { [zig.file]: zig.codes, "lib/store/status.ts": fromTypeScript(Presence) });
});

test("codes: ABI version and id size agree between zig/src, objstore.h and TypeScript", () => {
  const layout = readFileSync(new URL("layout.zig", zigSourceDirectory), "utf8");
  const zigAbi = layout.match(/pub const abi_version: u32 = (\d+);/);
  assert.ok(zigAbi !== null, "zig/src/layout.zig: no 'pub const abi_version: u32 = <n>;'");
  assertAgree("ABI version", {
    "zig/src/layout.zig": new Map([["abi_version", Number(zigAbi[1])]]),
    "zig/include/objstore.h": new Map([["abi_version", headerDefine("ABI_VERSION")]]),
    "lib/ffi/load.ts": new Map([["abi_version", ABI_VERSION]]),
  });
  const zigIdSize = layout.match(/pub const id_size_bytes = (\d+);/);
  assert.ok(zigIdSize !== null, "zig/src/layout.zig: no 'pub const id_size_bytes = <n>;'");
  assertAgree("id size", {
    "zig/src/layout.zig": new Map([["id_size", Number(zigIdSize[1])]]),
    "zig/include/objstore.h": new Map([["id_size", headerDefine("ID_SIZE")]]),
    "lib/ids.ts": new Map([["id_size", ID_BYTES]]),
    "lib/codec/format.ts": new Map([["id_size", REF_ID_BYTES]]),
  });
});

test("codes: a code that differs is named, with each source's value", () => {
  const found = differences("status", {
    a: new Map([["ok", 0], ["busy", 17], ["gone", 3]]),
    b: new Map([["ok", 0], ["busy", 18]]),
  });
  assert.deepEqual(found, ["status 'busy': a 17, b 18", "status 'gone': a 3, b (missing)"]);
});
