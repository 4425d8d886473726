// Holds a store with one object until its stdin closes, for the CLI checks of test_package.sh.
import * as os from "@objstore/core";
import process from "node:process";

await os.init({ storeName: process.argv[2], objectStoreMemory: 32 * 1024 * 1024, numWorkers: 1 });
const held = os.put(new Uint8Array(123_456));
console.log(`ready ${held.hex()}`);
process.stdin.resume();
process.stdin.on("end", async () => {
  os.free(held);
  await os.shutdown();
});
