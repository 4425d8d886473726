/**
 * Micro-benchmark of the value format: encode (+ writeInto an arena-like buffer) and decode,
 * per value kind. Runs unchanged on Deno, Bun and Node:
 *   node bench/codec_bench.ts | deno run -A bench/codec_bench.ts | bun bench/codec_bench.ts
 * Prints one line per case: ns/op for encode+write, decode, and the round trip.
 */
import { decode, encode } from "../lib/codec/mod.ts";

/** Stands in for the store's ObjectRef. */
class BenchRef {
  readonly id: Uint8Array;
  constructor(id: Uint8Array) {
    this.id = id;
  }
}

const hooks = {
  refId: (value: unknown) => (value instanceof BenchRef ? value.id : undefined),
  makeRef: (id: Uint8Array) => new BenchRef(id),
};

const arena = new ArrayBuffer(64 << 20);

function region(size: number): Uint8Array {
  return new Uint8Array(arena, 64, size);
}

function refs(count: number): BenchRef[] {
  return Array.from({ length: count }, (_, i) => {
    const id = new Uint8Array(28);
    new DataView(id.buffer).setUint32(24, i, true);
    return new BenchRef(id);
  });
}

const cases: [string, unknown][] = [
  ["0", 0],
  ["1 KiB string", "x".repeat(1024)],
  ["1 KiB string, non-ASCII", "é".repeat(512)],
  ["small object", { id: 12345, name: "alice", tags: ["a", "b"], score: 0.75, ok: true }],
  ["10k-ref array", refs(10_000)],
  ["1 MiB Float64Array", new Float64Array(1 << 17)],
];

/** Median of five {@link measureOnce} runs: the machine is shared, single runs swing. */
function measure(fn: () => unknown): number {
  const runs = Array.from({ length: 5 }, () => measureOnce(fn));
  return runs.sort((a, b) => a - b)[2];
}

/** Runs `fn` for about `ms` milliseconds after a warm-up and returns ns per call. */
function measureOnce(fn: () => unknown, ms = 150): number {
  let sink: unknown;
  for (let i = 0; i < 50; i++) sink = fn();
  let iterations = 1;
  for (;;) {
    const started = performance.now();
    for (let i = 0; i < iterations; i++) sink = fn();
    const elapsed = performance.now() - started;
    if (elapsed > ms) {
      if (sink === Symbol.for("never")) console.log(sink);
      return (elapsed * 1e6) / iterations;
    }
    iterations *= elapsed < ms / 8 ? 8 : 2;
  }
}

function format(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";
console.log(`codec benchmark on ${runtime}`);
for (const [name, value] of cases) {
  const encoded = encode(value, hooks);
  const written = region(encoded.sizeBytes);
  encoded.writeInto(written);
  const encodeNs = measure(() => {
    const e = encode(value, hooks);
    e.writeInto(region(e.sizeBytes));
    return e;
  });
  const decodeNs = measure(() => decode(written, hooks));
  const roundTripNs = measure(() => {
    const e = encode(value, hooks);
    const target = region(e.sizeBytes);
    e.writeInto(target);
    return decode(target, hooks);
  });
  console.log(`${name.padEnd(26)} encode+write ${format(encodeNs).padStart(10)}  decode ${format(decodeNs).padStart(10)}  round trip ${format(roundTripNs).padStart(10)}  (${encoded.sizeBytes} bytes)`);
}
