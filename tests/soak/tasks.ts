/**
 * The soak's remote functions (run in the clients' workers, named by module and export) and
 * its actor class (shipped by its source, so it imports the checksums from a URL it is given).
 *
 * Every function checks the checksums of what it received before it does anything else and
 * throws a `SoakCorruption:` error naming the object, the expected and the actual checksum if
 * one does not match: the client turns that into a "corrupt read" violation.
 */
import * as os from "../../mod.ts";
import { checksumOf, makePayload, type PayloadSpec } from "./payloads.ts";

/** A ref and the checksum of its value, nested in an argument so it arrives as a ref. */
export interface Checked {
  ref: os.ObjectRef;
  sum: string;
}

/** What a task returns besides its payload: what it verified. */
export interface TaskReport {
  /** The payload made from the spec the caller sent: the caller knows its checksum. */
  payload: unknown;
  verifiedBytes: number;
  verifiedObjects: number;
}

function corruption(where: string, id: string, expected: string, actual: string): Error {
  return new Error(`SoakCorruption: ${where}: object ${id} read with checksum ${actual}, expected ${expected} (worker pid ${globalThis.process?.pid})`);
}

/**
 * A top-level ref argument arrives as its value: checks it against `sum`, then returns the
 * payload `resultSpec` makes.
 */
export function checkValue(value: unknown, sum: string, id: string, resultSpec: PayloadSpec): TaskReport {
  const got = checksumOf(value);
  if (got.sum !== sum) throw corruption("task argument", id, sum, got.sum);
  return { payload: makePayload(resultSpec), verifiedBytes: got.binaryBytes, verifiedObjects: 1 };
}

/**
 * Refs nested in an argument arrive as refs: gets each (the worker reads the store itself) and
 * checks it, then returns the payload `resultSpec` makes.
 */
export async function checkNested(items: Checked[], resultSpec: PayloadSpec): Promise<TaskReport> {
  const values = await os.get(items.map((item) => item.ref), { timeout: 60 });
  let verifiedBytes = 0;
  for (let i = 0; i < items.length; i++) {
    const got = checksumOf(values[i]);
    if (got.sum !== items[i].sum) throw corruption("nested task argument", items[i].ref.hex(), items[i].sum, got.sum);
    verifiedBytes += got.binaryBytes;
  }
  return { payload: makePayload(resultSpec), verifiedBytes, verifiedObjects: items.length };
}

/**
 * An actor with state: the chain of the checksums it was given (its caller keeps the same
 * chain and compares), and refs it holds for a while and reads back on `check()`. Shipped by
 * its source: it imports payloads.ts from the URL its constructor gets.
 */
export class Keeper {
  count = 0;
  state = "start";
  held: { ref: os.ObjectRef; sum: string }[] = [];
  lib: Promise<typeof import("./payloads.ts")>;
  objstore: Promise<typeof import("../../mod.ts")>;

  constructor(payloadsUrl: string, modUrl: string) {
    this.lib = import(payloadsUrl);
    this.objstore = import(modUrl);
  }

  /** Checks a value (a top-level ref, so it arrives resolved) and chains its checksum. */
  async add(value: unknown, sum: string, id: string) {
    const { checksumOf, chain } = await this.lib;
    const got = checksumOf(value);
    if (got.sum !== sum) {
      throw new Error(`SoakCorruption: actor argument: object ${id} read with checksum ${got.sum}, expected ${sum} (actor pid ${globalThis.process?.pid})`);
    }
    this.count += 1;
    this.state = chain(this.state, sum);
    return { count: this.count, state: this.state, verifiedBytes: got.binaryBytes };
  }

  /** Keeps refs (nested, so they arrive as refs) alive in this process; frees the oldest past 8. */
  async hold(items: { ref: os.ObjectRef; sum: string }[]) {
    const objstore = await this.objstore;
    this.held.push(...items);
    while (this.held.length > 8) objstore.free(this.held.shift()!.ref);
    return this.held.length;
  }

  /** Reads back every ref held here; returns what did not check out instead of throwing. */
  async check() {
    const { checksumOf } = await this.lib;
    const objstore = await this.objstore;
    const problems: string[] = [];
    let verifiedBytes = 0;
    for (const { ref, sum } of this.held) {
      try {
        const got = checksumOf(await objstore.get(ref, { timeout: 60 }));
        verifiedBytes += got.binaryBytes;
        if (got.sum !== sum) problems.push(`SoakCorruption: actor-held object ${ref.hex()} read with checksum ${got.sum}, expected ${sum}`);
      } catch (error) {
        problems.push(`SoakLost: actor-held object ${ref.hex()} (sum ${sum}): ${(error as Error).name}: ${(error as Error).message}`);
      }
    }
    return { checked: this.held.length, verifiedBytes, problems, count: this.count, state: this.state };
  }
}
