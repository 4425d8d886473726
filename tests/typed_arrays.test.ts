/**
 * SPEC "Values": binary payloads through the store, byte for byte. Every typed-array kind,
 * ArrayBuffer and DataView, small and large (large payloads are placed at their source's offset
 * within a page, lib/codec/payloads.ts), whole and as subarrays with odd offsets and lengths.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as os from "../mod.ts";
import { test } from "./harness.ts";
import { eventuallyCollected } from "./helpers.ts";

const MiB = 1024 * 1024;

type View = ArrayBufferView & { readonly length?: number };
type ViewClass = new (buffer: ArrayBufferLike, byteOffset?: number, length?: number) => View;

const g = globalThis as unknown as Record<string, ViewClass | undefined>;
const KINDS: [string, ViewClass][] = [
  "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
  "Float16Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "DataView",
].flatMap((name) => (g[name] === undefined ? [] : [[name, g[name]!] as [string, ViewClass]]));

/** A buffer of pseudo-random bytes (xorshift32, seeded): a payload out of place cannot match. */
function randomBuffer(sizeBytes: number, seed: number): ArrayBuffer {
  const buffer = new ArrayBuffer(sizeBytes);
  const words = new Uint32Array(buffer, 0, sizeBytes >>> 2);
  let x = seed | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  const tail = new Uint8Array(buffer, words.length * 4);
  for (let i = 0; i < tail.length; i++) tail[i] = (x >>> (8 * i)) & 0xff;
  return buffer;
}

function bytesOf(view: ArrayBufferView | ArrayBuffer): Buffer {
  return view instanceof ArrayBuffer ? Buffer.from(view) : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function assertSameBytes(got: unknown, expected: ArrayBufferView | ArrayBuffer, what: string): void {
  const ctor = (expected as object).constructor;
  assert.ok(got instanceof (ctor as ViewClass), `${what}: came back as ${(got as object)?.constructor?.name}`);
  assert.equal((got as ArrayBufferView).byteLength, expected.byteLength, `${what}: byte length`);
  if ("length" in expected) assert.equal((got as Uint8Array).length, (expected as Uint8Array).length, `${what}: length`);
  assert.ok(bytesOf(got as ArrayBufferView).equals(bytesOf(expected)), `${what}: bytes differ`);
}

async function withStore(work: () => Promise<void>): Promise<void> {
  await os.init({ objectStoreMemory: 256 * MiB, prefault: false, numWorkers: 0 });
  try {
    await work();
  } finally {
    await os.shutdown();
  }
}

async function roundTrip(value: ArrayBufferView | ArrayBuffer, what: string): Promise<void> {
  const ref = os.put(value);
  assertSameBytes(await os.get(ref), value, what);
  os.free(ref);
}

/** Waits until the views handed out so far are collected and their objects gone. */
function viewsCollected(): Promise<void> {
  return eventuallyCollected(() => os.memoryStats().objectCount === 0, 10_000, "views collected");
}

test("every typed-array kind and DataView round-trips byte-exact, small and past 1 MiB", () =>
  withStore(async () => {
    for (const [name, Kind] of KINDS) {
      for (const sizeBytes of [8, 24, 4096, 64 * 1024, MiB + 16]) {
        const buffer = randomBuffer(sizeBytes, sizeBytes ^ name.length);
        await roundTrip(new Kind(buffer), `${name} of ${sizeBytes} bytes`);
      }
    }
  }));

test("subarrays with odd offsets and lengths round-trip byte-exact, alone and sharing a buffer", () =>
  withStore(async () => {
    for (const [name, Kind] of KINDS) {
      const element = name === "DataView" ? 1 : (Kind as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
      const buffer = randomBuffer(300_000 * element + 40, 7 * element);
      for (const [first, count] of [[1, 1], [3, 17], [13, 9_999], [4097, 270_001]]) {
        const view = new Kind(buffer, first * element, count);
        await roundTrip(view, `${name} at element ${first}, ${count} long`);
      }
      // Two views of one buffer share one payload; each keeps its own bytes.
      const a = new Kind(buffer, 5 * element, 200_001);
      const b = new Kind(buffer, 9_991 * element, 3);
      const ref = os.put({ a, b });
      const got = (await os.get(ref)) as { a: View; b: View };
      assertSameBytes(got.a, a, `${name} a`);
      assertSameBytes(got.b, b, `${name} b`);
      os.free(ref);
    }
  }));

test("ArrayBuffers round-trip byte-exact (as copies), whole and beside views of themselves", () =>
  withStore(async () => {
    for (const sizeBytes of [1, 63, 65, 64 * 1024 + 1, 1 * MiB + 3]) {
      const buffer = randomBuffer(sizeBytes, sizeBytes);
      await roundTrip(buffer, `ArrayBuffer of ${sizeBytes} bytes`);
      const ref = os.put([buffer, new Uint8Array(buffer, sizeBytes >> 1)]);
      const [gotBuffer, gotView] = (await os.get(ref)) as [ArrayBuffer, Uint8Array];
      assertSameBytes(gotBuffer, buffer, `ArrayBuffer of ${sizeBytes} bytes in a list`);
      assertSameBytes(gotView, new Uint8Array(buffer, sizeBytes >> 1), `its view`);
      os.free(ref);
    }
  }));

test("large typed arrays, subarrays and DataViews round-trip byte-exact", () =>
  withStore(async () => {
    const buffer = randomBuffer(48 * MiB + 24, 48);
    const values: [ArrayBufferView | ArrayBuffer, string][] = [
      [new BigInt64Array(buffer, 0, 6 * MiB), "BigInt64Array of 48 MiB"],
      [new Float64Array(buffer, 8 * 1001, 5 * MiB + 3), "Float64Array of 40 MiB at element 1001"],
      [new Uint8Array(buffer, 4093, 40 * MiB + 7), "Uint8Array of 40 MiB at byte 4093"],
      [new Int16Array(buffer, 2 * 2047, 20 * MiB + 1), "Int16Array of 40 MiB at element 2047"],
      [new DataView(buffer, 1, 48 * MiB + 3), "DataView of 48 MiB at byte 1"],
      [buffer, "ArrayBuffer of 48 MiB"],
    ];
    for (const [value, what] of values) {
      await roundTrip(value, what);
      await viewsCollected();
    }
  }));
