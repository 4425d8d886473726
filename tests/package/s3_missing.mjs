// S3 spilling without the AWS SDK installed: init must say which package to add.
import * as os from "@objstore/core";
import assert from "node:assert/strict";

await assert.rejects(
  os.init({ objectStoreMemory: 32 * 1024 * 1024, spill: { type: "s3", bucket: "b", endpoint: "http://127.0.0.1:9" } }),
  (error) => error instanceof os.ObjstoreError && /@aws-sdk\/client-s3/.test(error.message),
);
assert.equal(os.isInitialized(), false);
console.log("ok: S3 spilling without the SDK names @aws-sdk/client-s3");
