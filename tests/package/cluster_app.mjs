// A driver of a cluster, as a user of the installed package writes one (node, deno, bun):
//   cluster_app.mjs URL NODE put      puts 3 MiB of a pattern, prints `ready <hex>`, holds it
//                                     until stdin closes
//   cluster_app.mjs URL NODE get HEX  reads that object from the other node, checks every
//                                     byte, and has a worker of this node check it too
import * as os from "@objstore/core";
import process from "node:process";

const [address, node, mode, hex] = process.argv.slice(2);
await os.init({ address, node, numWorkers: mode === "get" ? 1 : 0 });
const SIZE = 3 * 1024 * 1024 + 7;
const byteAt = (i) => (i * 31 + 7) & 0xff;

if (mode === "put") {
  const bytes = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) bytes[i] = byteAt(i);
  const ref = os.put(bytes);
  console.log(`ready ${ref.hex()}`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  os.free(ref);
} else {
  const ref = os.ObjectRef.fromHex(hex);
  const bytes = await os.get(ref);
  if (bytes.length !== SIZE) throw new Error(`got ${bytes.length} bytes, expected ${SIZE}`);
  for (let i = 0; i < SIZE; i++) if (bytes[i] !== byteAt(i)) throw new Error(`byte ${i} is ${bytes[i]}`);
  const length = os.remote((b) => b.length);
  const onWorker = await os.get(length.remote(ref));
  if (onWorker !== SIZE) throw new Error(`the worker read ${onWorker} bytes`);
  console.log(`ok: ${SIZE} bytes read on ${node}, here and on its worker`);
}
await os.shutdown();
