// Installed without its platform package: init must name the package and the platform.
import * as os from "@objstore/core";
import assert from "node:assert/strict";
import process from "node:process";

const platform = `linux-${process.arch}-gnu`; // the machines that run this test use glibc
await assert.rejects(os.init({ objectStoreMemory: 32 * 1024 * 1024 }), (error) => {
  assert.ok(error instanceof os.ObjstoreError, String(error));
  assert.ok(error.message.includes(`@objstore/core-${platform}`), error.message);
  assert.ok(error.message.includes(`this is ${platform}`), error.message);
  return true;
});
console.log(`ok: without its platform package, init names @objstore/core-${platform}`);
