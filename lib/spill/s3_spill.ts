/**
 * Spilling to S3 (`spill: { type: "s3", … }`). The native core spills into local files as it
 * always does (the folder is a staging area); this module copies each finished file to the
 * bucket and then lets the core delete the local file, reads back one object's byte range when
 * a `get` needs it (the core checks it as it checks a file), and deletes a copy once all its
 * objects are gone. Which process does what is decided by claims in shared memory
 * (zig/src/RemoteFiles.zig): any number of processes share the work, and a dead one's claim is
 * undone by the janitor.
 *
 * Credentials come from the environment, as for every AWS SDK (`AWS_ACCESS_KEY_ID`, …).
 */
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import type { S3Client } from "@aws-sdk/client-s3";
import { ObjectLostError, ObjstoreError } from "../errors.ts";
import { FileState, type NativeStore, type SpillFileClaim } from "../store/native_store.ts";
import { Status } from "../store/status.ts";
import { Progress } from "./progress.ts";

export interface S3SpillConfig {
  type: "s3";
  bucket: string;
  prefix?: string;
  endpoint?: string;
  region?: string;
}

type S3Module = typeof import("@aws-sdk/client-s3");

/** Files larger than this go up in parts of this size (memory use is one part). */
const PART_SIZE_BYTES = 64 * 1024 * 1024;
/** Files copied (and copies deleted) per pass, so one pass stays short. */
const FILES_PER_PASS_MAX = 16;
/** After a failed copy, passes wait this long, doubling up to the maximum. */
const RETRY_DELAY_MIN_MS = 1000;
const RETRY_DELAY_MAX_MS = 30_000;
/** Attempts to fetch an object's range before `get` reports it lost. */
const FETCH_ATTEMPTS = 3;

export class S3Spill {
  readonly config: S3SpillConfig;
  readonly #store: NativeStore;
  readonly #localDirectory: string;
  readonly #keyPrefix: string;
  #sdk: Promise<{ s3: S3Module; client: S3Client }> | undefined;
  #pass: Promise<void> | undefined;
  #retryDelayMs = 0;
  #nextPassMs = 0;
  #lastWarning = "";
  /** Restores in progress in this process, by object: concurrent gets fetch once. */
  readonly #restores = new Map<string, Promise<number>>();

  constructor(store: NativeStore, config: S3SpillConfig, localDirectory: string) {
    this.config = config;
    this.#store = store;
    this.#localDirectory = localDirectory;
    const prefix = config.prefix ?? "";
    this.#keyPrefix = `${prefix === "" || prefix.endsWith("/") ? prefix : prefix + "/"}${store.name}/`;
  }

  /** Checks that the bucket answers with these credentials, so a bad setting fails `init`. */
  async check(): Promise<void> {
    const { s3, client } = await this.#client();
    try {
      await client.send(new s3.HeadBucketCommand({ Bucket: this.config.bucket }));
    } catch (error) {
      throw new ObjstoreError(
        `init: cannot use S3 bucket '${this.config.bucket}'${this.config.endpoint ? ` at ${this.config.endpoint}` : ""}: ` +
          `${describe(error)}. Check spill.bucket, spill.endpoint, spill.region and the AWS_* credentials in the environment`,
        { cause: error },
      );
    }
  }

  /** The key of spill file `serial`'s copy. */
  keyOf(serial: number): string {
    return `${this.#keyPrefix}${serial}.spill`;
  }

  /** Copies finished spill files out and deletes unused copies; one pass at a time. */
  pump(): Promise<void> {
    if (this.#pass !== undefined || Date.now() < this.#nextPassMs) return this.#pass ?? Promise.resolve();
    this.#pass = this.#runPass().finally(() => (this.#pass = undefined));
    return this.#pass;
  }

  /** Resolves when no pass is running. */
  async idle(): Promise<void> {
    await this.#pass;
  }

  async #runPass(): Promise<void> {
    for (let i = 0; i < FILES_PER_PASS_MAX; i++) {
      const claim = this.#store.claimUpload();
      if (claim === undefined) break;
      if (!await this.#upload(claim)) return;
    }
    for (let i = 0; i < FILES_PER_PASS_MAX; i++) {
      const claim = this.#store.claimRemoteDelete();
      if (claim === undefined) break;
      if (!await this.#deleteCopy(claim)) return;
    }
  }

  async #upload(claim: SpillFileClaim): Promise<boolean> {
    let copied = false;
    try {
      await this.#putFile(path.join(this.#localDirectory, `objstore-${this.#store.name}-${claim.serial}.spill`), this.keyOf(claim.serial), claim.sizeBytes);
      copied = true;
    } catch (error) {
      this.#failed(`could not copy a spill file to s3://${this.config.bucket}/${this.keyOf(claim.serial)}: ${describe(error)}; it stays on local disk and is tried again`);
    } finally {
      this.#store.finishUpload(claim, copied);
    }
    if (copied) this.#retryDelayMs = 0;
    return copied;
  }

  async #deleteCopy(claim: SpillFileClaim): Promise<boolean> {
    const { s3, client } = await this.#client();
    let deleted = false;
    try {
      await client.send(new s3.DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.keyOf(claim.serial) }));
      deleted = true;
    } catch (error) {
      this.#failed(`could not delete s3://${this.config.bucket}/${this.keyOf(claim.serial)}: ${describe(error)}; tried again later`);
    } finally {
      this.#store.finishRemoteDelete(claim, deleted);
    }
    return deleted;
  }

  #failed(message: string): void {
    this.#retryDelayMs = Math.min(Math.max(this.#retryDelayMs * 2, RETRY_DELAY_MIN_MS), RETRY_DELAY_MAX_MS);
    this.#nextPassMs = Date.now() + this.#retryDelayMs;
    if (message === this.#lastWarning) return;
    this.#lastWarning = message;
    process.emitWarning(`objstore: ${message}`);
  }

  async #putFile(file: string, key: string, sizeBytes: number): Promise<void> {
    const { s3, client } = await this.#client();
    const bucket = this.config.bucket;
    if (sizeBytes <= PART_SIZE_BYTES) {
      await client.send(new s3.PutObjectCommand({ Bucket: bucket, Key: key, Body: await readFile(file) }));
      return;
    }
    const progress = new Progress(`copying spill file to s3://${bucket}/${key}`, sizeBytes);
    const { UploadId } = await client.send(new s3.CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const handle = await open(file, "r");
    try {
      const parts: { ETag: string | undefined; PartNumber: number }[] = [];
      const part = new Uint8Array(PART_SIZE_BYTES);
      for (let offset = 0, number = 1; offset < sizeBytes; offset += PART_SIZE_BYTES, number++) {
        const length = Math.min(PART_SIZE_BYTES, sizeBytes - offset);
        const { bytesRead } = await handle.read(part, 0, length, offset);
        if (bytesRead !== length) throw new Error(`${file} is shorter than the ${sizeBytes} bytes it was written with`);
        const { ETag } = await client.send(new s3.UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: part.subarray(0, length) }));
        parts.push({ ETag, PartNumber: number });
        progress.update(offset + length);
      }
      await client.send(new s3.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
      progress.done();
    } catch (error) {
      await client.send(new s3.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => {});
      throw error;
    } finally {
      await handle.close();
    }
  }

  /**
   * Restores a spilled object whose file is in the bucket only: fetches its record's range and
   * hands it to the core. Returns the core's status.
   */
  restore(id: Uint8Array, what: string): Promise<number> {
    const key = what;
    let pending = this.#restores.get(key);
    if (pending === undefined) {
      pending = this.#restoreOnce(id, what).finally(() => this.#restores.delete(key));
      this.#restores.set(key, pending);
    }
    return pending;
  }

  async #restoreOnce(id: Uint8Array, what: string): Promise<number> {
    const where = this.#store.spillLocation(id);
    if (typeof where === "number") return where;
    // A local file is deleted only once its copy is complete: missing while local is lost.
    if (where.fileState !== FileState.remote) return Status.spillMissing;
    const { s3, client } = await this.#client();
    const key = this.keyOf(where.serial);
    let lastError: unknown;
    for (let attempt = 0; attempt < FETCH_ATTEMPTS; attempt++) {
      try {
        const range = `bytes=${where.offsetBytes}-${where.offsetBytes + where.regionSizeBytes - 1}`;
        const progress = new Progress(`fetching ${what} from s3://${this.config.bucket}/${key}`, where.regionSizeBytes);
        const response = await client.send(new s3.GetObjectCommand({ Bucket: this.config.bucket, Key: key, Range: range }));
        const region = new Uint8Array(where.regionSizeBytes);
        let received = 0;
        for await (const chunk of response.Body as unknown as AsyncIterable<Uint8Array>) {
          if (received + chunk.byteLength > region.byteLength) throw new Error(`${key} sent more than the ${range} asked for`);
          region.set(chunk, received);
          received += chunk.byteLength;
          progress.update(received);
        }
        progress.done();
        // A short read fails the record's size and checksum checks in the core.
        return this.#store.restoreRegion(id, region.subarray(0, received));
      } catch (error) {
        lastError = error;
        if ((error as { name?: string }).name === "NoSuchKey") break;
      }
    }
    throw new ObjectLostError(`get: ${what} was spilled to s3://${this.config.bucket}/${key}, which cannot be read: ${describe(lastError)}`, { cause: lastError });
  }

  /** Deletes every copy of this store's files (the last process is leaving the store). */
  async removeAll(): Promise<void> {
    const { s3, client } = await this.#client();
    const bucket = this.config.bucket;
    let token: string | undefined;
    do {
      const page = await client.send(new s3.ListObjectsV2Command({ Bucket: bucket, Prefix: this.#keyPrefix, ContinuationToken: token }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      // One request per key: DeleteObjects needs a Content-MD5 some S3-compatible servers reject.
      await Promise.all(keys.map((k) => client.send(new s3.DeleteObjectCommand({ Bucket: bucket, Key: k.Key }))));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** The SDK is imported on first use: it costs ~100 ms, which stores without S3 never pay. */
  #client(): Promise<{ s3: S3Module; client: S3Client }> {
    this.#sdk ??= importSdk().then((s3) => ({
      s3,
      client: new s3.S3Client({
        region: this.config.region ?? process.env.AWS_REGION ?? "us-east-1",
        endpoint: this.config.endpoint,
        forcePathStyle: this.config.endpoint !== undefined,
        // Records carry their own CRC32C, checked on restore; ranged reads are not covered
        // by whole-object checksums anyway.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      }),
    }));
    return this.#sdk;
  }

  close(): void {
    // A missing SDK was reported where it was first needed.
    this.#sdk?.then(({ client }) => client.destroy(), () => {});
  }
}

/**
 * The AWS SDK, an optional peer dependency: only stores that spill to S3 need it. Missing, it
 * is a clear error at `init` (which checks the bucket) rather than at the first spill.
 */
async function importSdk(): Promise<S3Module> {
  try {
    return await import("@aws-sdk/client-s3");
  } catch (error) {
    const code = (error as { code?: string }).code;
    const missing = code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND" ||
      /Cannot find (module|package)|not found|Could not resolve/i.test((error as Error).message ?? "");
    if (!missing) throw error;
    throw new ObjstoreError(
      "spill: { type: \"s3\" } needs the AWS SDK, an optional peer dependency of @objstore/core that is not installed: " +
        "add @aws-sdk/client-s3 to your project (`npm install @aws-sdk/client-s3`, `bun add @aws-sdk/client-s3` or " +
        "`deno add npm:@aws-sdk/client-s3`)",
      { cause: error },
    );
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
  return String(error);
}
