/**
 * Diagnostic, not part of run_all.sh: issue 15's put loop in the default store.
 *   node --expose-gc bench/profile_put_loop.ts | deno run -A bench/profile_put_loop.ts | bun bench/profile_put_loop.ts
 * Prints one JSON line: memcpy and each put in GB/s, the first get of 800 MiB in ms.
 */
// Put + free an 800 MiB BigInt64Array 12 times; memcpy of the same bytes (TypedArray.set, a
// written source) measured in the same process; then the first get of an 800 MiB object.
import * as os from "../mod.ts";
const MiB = 1024 * 1024;
await os.init({});
try {
  const big = new BigInt64Array(100 * MiB);
  for (let i = 0; i < big.length; i += 512) big[i] = BigInt(i);
  const dst = new BigInt64Array(100 * MiB);
  dst.set(big);
  const copies: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    dst.set(big);
    copies.push(big.byteLength / (performance.now() - t) / 1e6);
  }
  const puts: number[] = [];
  for (let i = 0; i < 12; i++) {
    const t = performance.now();
    const ref = os.put(big);
    puts.push(big.byteLength / (performance.now() - t) / 1e6);
    os.free(ref);
  }
  const ref = os.put(big);
  const t = performance.now();
  const view = (await os.get(ref)) as BigInt64Array;
  const getMs = performance.now() - t;
  console.log(JSON.stringify({
    store_gib: +(os.memoryStats().capacityBytes / 2 ** 30).toFixed(2),
    memcpy_gb_per_s: copies.map((x) => +x.toFixed(2)),
    puts_gb_per_s: puts.map((x) => +x.toFixed(2)),
    first_get_ms: +getMs.toFixed(3),
    ok: view[512] === 512n,
  }));
} finally {
  await os.shutdown();
}
