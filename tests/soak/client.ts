/**
 * One soak client: a process (Node, Deno or Bun) attached to the soak's store that puts,
 * gets, borrows, runs tasks and calls its actor until it is told to end or killed. The
 * orchestrator (soak.ts) starts it as `client.ts <client id> <store name> <config JSON>` and
 * talks to it in JSON lines (protocol.ts).
 *
 * Every value it reads is checked against the checksum it was put with; every failure to read
 * a ref it holds is reported. What it holds:
 * - `owned`: refs it put (payloads, containers holding refs to other owned objects) and task
 *   results it kept. About half are offered to the orchestrator, which hands them to others.
 * - `borrowed`: refs other clients offered, taken with `ObjectRef.fromHex` and held for a few
 *   seconds — across the death of the client that put them.
 * Refs it lets go of are freed, or (a configurable fraction) dropped for the garbage collector.
 */
import { writeSync } from "node:fs";
import process from "node:process";
import * as os from "../../mod.ts";
import { chain, checksumOf, describeSpec, makePayload, type PayloadSpec, Random, randomSpec } from "./payloads.ts";
import { Keeper, type TaskReport } from "./tasks.ts";
import { type ClientConfig, type Counters, type EndMode, type FromClient, type ToClient, type ViolationKind, zeroCounters } from "./protocol.ts";

const [idArg, storeName, configArg] = process.argv.slice(2);
const clientId = Number(idArg);
const config = JSON.parse(configArg) as ClientConfig;
const random = new Random(config.seed);
const counters: Counters = zeroCounters();
/** Gets that wait longer than this are reported as a hang. */
const GET_TIMEOUT_SECONDS = 60;
/** Ids are a random per-process prefix and a counter (lib/session.ts): 20 bytes, then 8. */
const ID_PREFIX_HEX = 40;

// ---------------------------------------------------------------------------------------------
// Talking to the orchestrator. Writes are synchronous, so a message sent before a SIGKILL is
// not lost in a stream buffer. Our own diagnostics go to stderr.

const encoder = new TextEncoder();
function send(message: FromClient): void {
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  let written = 0;
  while (written < bytes.length) {
    try {
      written += writeSync(1, bytes, written);
    } catch (error) {
      if ((error as { code?: string }).code !== "EAGAIN") throw error;
    }
  }
}

function violation(kind: ViolationKind, detail: string, object?: { id?: string; expected?: string; actual?: string }): void {
  send({ t: "violation", kind, detail, ...object });
}

// ---------------------------------------------------------------------------------------------
// What this client holds.

interface Held {
  ref: os.ObjectRef;
  hex: string;
  sum: string;
  binaryBytes: number;
  what: string;
  /** The client that put it (this one for owned refs). */
  from: number;
  /** True once the orchestrator said `from` died or ended. */
  ownerGone: boolean;
  /** Gets in progress: a ref is not released under a get that uses it. */
  users: number;
  /** Let go of: released as soon as `users` is 0. */
  retired: boolean;
  /** Borrowed refs are let go of at this time (ms since the epoch). */
  until: number;
}

const owned: Held[] = [];
const borrowed: Held[] = [];
let ownedBytes = 0;

let prefixSent = false;

function hold(list: Held[], ref: os.ObjectRef, sum: string, binaryBytes: number, what: string, from: number, until = Infinity): Held {
  if (!prefixSent && from === clientId) {
    prefixSent = true;
    send({ t: "ids", prefix: ref.hex().slice(0, ID_PREFIX_HEX) });
  }
  const held: Held = { ref, hex: ref.hex(), sum, binaryBytes, what, from, ownerGone: false, users: 0, retired: false, until };
  list.push(held);
  if (list === owned) ownedBytes += binaryBytes;
  return held;
}

/** Lets go of a ref: frees it, or drops it for the collector (`dropFraction` of the time). */
function letGo(list: Held[], held: Held): void {
  if (held.retired) return;
  held.retired = true;
  list.splice(list.indexOf(held), 1);
  if (list === owned) ownedBytes -= held.binaryBytes;
  if (held.users === 0) release(held);
}

function release(held: Held): void {
  if (random.chance(config.dropFraction)) {
    counters.dropped += 1; // the last reference to `held.ref` goes with `held`
  } else {
    os.free(held.ref);
    counters.freed += 1;
  }
}

function trim(): void {
  while (owned.length > 0 && (ownedBytes > config.ownedBytes || owned.length > config.ownedCount)) letGo(owned, owned[0]);
  const now = Date.now();
  for (const held of borrowed.filter((b) => b.until <= now)) letGo(borrowed, held);
}

function pickLive(list: Held[]): Held | undefined {
  return list.length === 0 ? undefined : list[random.int(0, list.length - 1)];
}

// ---------------------------------------------------------------------------------------------
// Reading and checking.

/** Sorts an error into a violation, or counts it as a refusal of a full store (not a violation). */
function report(error: unknown, where: string, held?: Held): void {
  const text = describeError(error);
  const object = held === undefined ? {} : { id: held.hex, expected: held.sum };
  const about = held === undefined ? "" : ` (object ${held.hex}, ${held.what}, put by client ${held.from}${held.ownerGone ? ", since gone" : ""})`;
  if (error instanceof os.ObjectStoreFullError || /ObjectStoreFullError/.test(text)) {
    counters.storeFull += 1;
    if (counters.storeFull <= 3) console.error(`client ${clientId}: store full in ${where}: ${text}`);
    return;
  }
  if (/SoakCorruption/.test(text)) return violation("corrupt", `${where}${about}: ${text}`, object);
  if (error instanceof os.ObjectLostError || /ObjectLostError|SoakLost/.test(text)) return violation("lost", `${where}${about}: ${text}`, object);
  violation("error", `${where}${about}: ${text}`, object);
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  let text = `${error.name}: ${error.message}`;
  if (error instanceof os.TaskError) text += ` [remote ${error.remoteName}]`;
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) text += ` (cause: ${cause.name}: ${cause.message})`;
  return text;
}

/** Gets `held` and checks its checksum; a container's children are got and checked too. */
async function verify(held: Held, where: string): Promise<void> {
  held.users += 1;
  try {
    const value = await os.get(held.ref, { timeout: GET_TIMEOUT_SECONDS });
    counters.gets += 1;
    if (held.from !== clientId) counters.borrowedGets += 1;
    injectFault(held, value);
    const got = checksumOf(value);
    if (got.sum !== held.sum) {
      return violation("corrupt", `${where}: object ${held.hex} (${held.what}, put by client ${held.from}) read with checksum ${got.sum}, expected ${held.sum}`, { id: held.hex, expected: held.sum, actual: got.sum });
    }
    counters.verifiedObjects += 1;
    counters.verifiedBytes += got.binaryBytes;
    if (held.ownerGone) counters.getsAfterOwnerDied += 1;
    if (isContainer(value)) await verifyChildren(value, held);
  } catch (error) {
    report(error, where, held);
  } finally {
    held.users -= 1;
    if (held.retired && held.users === 0) release(held);
  }
}

let injected = false;

/** SOAK_INJECT: corrupts the shared bytes of a value it just read, or frees a ref it keeps. */
function injectFault(held: Held, value: unknown): void {
  if (injected || config.inject === "") return;
  if (config.inject === "corrupt" && ArrayBuffer.isView(value) && value.byteLength >= 64) {
    injected = true;
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    bytes[bytes.length >> 1] ^= 0x40; // views are read-only by contract only: this writes the store
    console.error(`client ${clientId}: SOAK_INJECT: flipped a bit of object ${held.hex} in shared memory`);
  } else if (config.inject === "lose" && held.from === clientId) {
    injected = true;
    os.free(held.ref); // …and keep it in `owned`: its next get fails
    console.error(`client ${clientId}: SOAK_INJECT: freed ${held.hex} and kept using it`);
  }
}

/** A value holding refs to other objects, with their checksums. */
interface Container {
  container: number;
  children: { ref: os.ObjectRef; sum: string; what: string }[];
}

function isContainer(value: unknown): value is Container {
  return typeof value === "object" && value !== null && "children" in value && "container" in value;
}

/**
 * The refs inside a container were decoded as refs of this process: read each, then free them.
 * A ref that appears twice in a value decodes to one ObjectRef, read and freed once.
 */
async function verifyChildren(value: Container, parent: Held): Promise<void> {
  const seen = new Set<os.ObjectRef>();
  for (const child of value.children) {
    if (seen.has(child.ref)) continue;
    seen.add(child.ref);
    try {
      const got = checksumOf(await os.get(child.ref, { timeout: GET_TIMEOUT_SECONDS }));
      if (got.sum !== child.sum) {
        violation("corrupt", `nested ref: object ${child.ref.hex()} (${child.what}) inside ${parent.hex} read with checksum ${got.sum}, expected ${child.sum}`, { id: child.ref.hex(), expected: child.sum, actual: got.sum });
        continue;
      }
      counters.nestedVerified += 1;
      counters.verifiedBytes += got.binaryBytes;
    } catch (error) {
      report(error, `nested ref ${child.ref.hex()} (${child.what}) inside ${parent.hex}`);
    }
  }
  os.free([...seen]);
}

// ---------------------------------------------------------------------------------------------
// Operations: each lane runs them in a random mix until the client is told to end.

function putPayload(): void {
  const spec = randomSpec(random, config.maxBytes);
  const value = makePayload(spec);
  const { sum, binaryBytes } = checksumOf(value);
  let ref: os.ObjectRef;
  try {
    ref = os.put(value);
  } catch (error) {
    return report(error, `put of ${describeSpec(spec)}`);
  }
  counters.puts += 1;
  counters.putBytes += binaryBytes;
  const held = hold(owned, ref, sum, binaryBytes, describeSpec(spec), clientId);
  if (random.chance(0.5)) offer(held);
}

/** Puts a value holding refs to 1–4 owned objects; the container keeps them alive once freed here. */
function putContainer(): void {
  if (owned.length === 0) return putPayload();
  const children = Array.from({ length: random.int(1, 4) }, () => pickLive(owned)!);
  const value: Container = { container: random.u32(), children: children.map((c) => ({ ref: c.ref, sum: c.sum, what: c.what })) };
  const { sum } = checksumOf(value);
  let ref: os.ObjectRef;
  try {
    ref = os.put(value);
  } catch (error) {
    return report(error, "put of a container");
  }
  counters.puts += 1;
  counters.containers += 1;
  const held = hold(owned, ref, sum, 0, `container of ${children.length} refs`, clientId);
  if (random.chance(0.5)) offer(held);
}

function offer(held: Held): void {
  counters.offered += 1;
  send({ t: "offer", hex: held.hex, sum: held.sum, binaryBytes: held.binaryBytes, what: held.what });
}

async function getOne(list: Held[], where: string): Promise<void> {
  const held = pickLive(list);
  if (held !== undefined) await verify(held, where);
}

const checkValue = os.remote({ module: new URL("./tasks.ts", import.meta.url), name: "checkValue" });
const checkNested = os.remote({ module: new URL("./tasks.ts", import.meta.url), name: "checkNested" });

/** What a task should return: its payload and what it checked. Its checksum is known here. */
function expectedReport(resultSpec: PayloadSpec, verifiedBytes: number, verifiedObjects: number): { sum: string; binaryBytes: number } {
  const report: TaskReport = { payload: makePayload(resultSpec), verifiedBytes, verifiedObjects };
  return checksumOf(report);
}

/**
 * 1–4 tasks in flight at once: a ref passed at the top level (arrives as its value), refs
 * nested in an argument (arrive as refs; the worker gets them), or a task's result passed
 * straight into another task. Each checks its arguments and returns a payload whose checksum
 * is known here.
 */
async function runTasks(): Promise<void> {
  const inputs = [...owned, ...borrowed];
  if (inputs.length === 0) return putPayload();
  const calls: { ref: os.ObjectRef; expected: { sum: string; binaryBytes: number }; what: string }[] = [];
  for (let n = random.int(1, 4); n > 0; n--) {
    const resultSpec = randomSpec(random, config.maxTaskBytes);
    const roll = random.next();
    if (roll < 0.5) {
      const input = pickLive(inputs)!;
      calls.push({
        ref: checkValue.remote(input.ref, input.sum, input.hex, resultSpec),
        expected: expectedReport(resultSpec, input.binaryBytes, 1),
        what: `checkValue(${input.hex} ${input.what})`,
      });
    } else if (roll < 0.8) {
      const items = Array.from({ length: random.int(1, 3) }, () => pickLive(inputs)!);
      calls.push({
        ref: checkNested.remote(items.map((i) => ({ ref: i.ref, sum: i.sum })), resultSpec),
        expected: expectedReport(resultSpec, items.reduce((total, i) => total + i.binaryBytes, 0), items.length),
        what: `checkNested(${items.map((i) => i.hex).join(", ")})`,
      });
    } else {
      // Task to task: the first result goes into the second without passing through here.
      const input = pickLive(inputs)!;
      const firstSpec = randomSpec(random, config.maxTaskBytes);
      const first = checkValue.remote(input.ref, input.sum, input.hex, firstSpec);
      const firstExpected = expectedReport(firstSpec, input.binaryBytes, 1);
      calls.push({
        ref: checkValue.remote(first, firstExpected.sum, first.hex(), resultSpec),
        expected: expectedReport(resultSpec, firstExpected.binaryBytes, 1),
        what: `checkValue(result of checkValue(${input.hex} ${input.what}))`,
      });
      os.free(first); // the second task's record holds it
    }
  }
  counters.tasks += calls.length;
  if (random.chance(0.3)) await os.wait(calls.map((c) => c.ref), { numReturns: calls.length, timeout: GET_TIMEOUT_SECONDS });
  await Promise.all(calls.map(async (call) => {
    try {
      const report = (await os.get(call.ref, { timeout: GET_TIMEOUT_SECONDS })) as TaskReport;
      const got = checksumOf(report);
      if (got.sum !== call.expected.sum) {
        violation("corrupt", `task result ${call.ref.hex()} of ${call.what} read with checksum ${got.sum}, expected ${call.expected.sum}`, { id: call.ref.hex(), expected: call.expected.sum, actual: got.sum });
        os.free(call.ref);
        return;
      }
      counters.verifiedObjects += 1;
      counters.verifiedBytes += got.binaryBytes;
      counters.verifiedInWorkers += report.verifiedObjects;
      // Keep some results: refs made by a worker, read and passed on like any other.
      if (random.chance(0.5)) {
        const held = hold(owned, call.ref, call.expected.sum, call.expected.binaryBytes, `result of ${call.what}`, clientId);
        if (random.chance(0.5)) offer(held);
      } else {
        os.free(call.ref);
      }
    } catch (error) {
      report(error, `task ${call.what}, result ${call.ref.hex()}`);
      os.free(call.ref);
    }
  }));
}

/** The actor, started on first use, and the state this client expects it to have. */
let actor: os.ActorHandle<Keeper> | undefined;
const mirror = { count: 0, state: "start" };
let actorBroken = false;

async function callActor(): Promise<void> {
  if (actorBroken) return;
  actor ??= os.remote(Keeper).remote(new URL("./payloads.ts", import.meta.url).href, new URL("../../mod.ts", import.meta.url).href);
  const inputs = [...owned, ...borrowed];
  const roll = random.next();
  counters.actorCalls += 1;
  try {
    if (roll < 0.6 && inputs.length > 0) {
      // State: the actor chains the checksums it is given; so does this client, in call order.
      const input = pickLive(inputs)!;
      mirror.count += 1;
      mirror.state = chain(mirror.state, input.sum);
      const expected = { ...mirror, verifiedBytes: input.binaryBytes };
      const got = await os.get(actor.add.remote(input.ref, input.sum, input.hex), { timeout: GET_TIMEOUT_SECONDS });
      if (got.count !== expected.count || got.state !== expected.state || got.verifiedBytes !== expected.verifiedBytes) {
        violation("actor-state", `actor add(${input.hex}): got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
      }
      counters.verifiedInWorkers += 1;
    } else if (roll < 0.8 && inputs.length > 0) {
      // Refs the actor keeps alive in its own process, read back by check().
      const items = Array.from({ length: random.int(1, 2) }, () => pickLive(inputs)!);
      await os.get(actor.hold.remote(items.map((i) => ({ ref: i.ref, sum: i.sum }))), { timeout: GET_TIMEOUT_SECONDS });
    } else {
      const expected = { ...mirror };
      const got = await os.get(actor.check.remote(), { timeout: GET_TIMEOUT_SECONDS });
      for (const problem of got.problems) {
        violation(/SoakCorruption/.test(problem) ? "corrupt" : "lost", `actor check: ${problem}`, { id: /object ([0-9a-f]{56})/.exec(problem)?.[1] });
      }
      if (got.count !== expected.count || got.state !== expected.state) {
        violation("actor-state", `actor check: count ${got.count} state ${got.state}, expected count ${expected.count} state ${expected.state}`);
      }
      counters.verifiedInWorkers += got.checked - got.problems.length;
    }
  } catch (error) {
    report(error, "actor call");
    // A failed call leaves the mirror ahead of the actor: compare no more.
    actorBroken = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Borrowing refs other clients offered.

function take(message: Extract<ToClient, { t: "take" }>): void {
  const ref = os.ObjectRef.fromHex(message.hex);
  try {
    // @internal, but exactly the question: did fromHex take a reference, or was the object
    // already gone (its owner freed it or died before we asked)? Only a taken ref must live.
    ref.checkUsable();
  } catch {
    void confirmGone(message);
    return;
  }
  counters.taken += 1;
  const held = hold(borrowed, ref, message.sum, message.binaryBytes, message.what, message.from, Date.now() + random.int(1000, 8000));
  void verify(held, "borrowed ref, just taken");
}

/**
 * An object is never deleted while a process references it, and an id is never used twice: if
 * it can be taken a moment after `fromHex` found nothing, `fromHex` refused a live object.
 */
async function confirmGone(message: Extract<ToClient, { t: "take" }>): Promise<void> {
  const firstMs = Date.now();
  for (let attempt = 1; attempt <= 3; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    if (stopping) return;
    const again = os.ObjectRef.fromHex(message.hex);
    try {
      again.checkUsable();
    } catch {
      continue;
    }
    os.free(again);
    violation("lost", `ObjectRef.fromHex(${message.hex}) (${message.what}, put by client ${message.from}) found no object, ` +
      `yet ${Date.now() - firstMs} ms later it took a reference to it: a live object was refused`, { id: message.hex, expected: message.sum });
    return;
  }
  counters.missed += 1;
}

function ownerGone(client: number): void {
  for (const held of borrowed) if (held.from === client) held.ownerGone = true;
}

// ---------------------------------------------------------------------------------------------
// The client's life.

let stopping = false;

async function lane(): Promise<void> {
  while (!stopping) {
    const roll = random.next();
    try {
      if (roll < 0.22) putPayload();
      else if (roll < 0.3) putContainer();
      else if (roll < 0.45) await getOne(owned, "get of an owned ref");
      else if (roll < 0.6) await getOne(borrowed, "get of a borrowed ref");
      else if (roll < 0.85) await runTasks();
      else await callActor();
    } catch (error) {
      violation("error", `client ${clientId}: unexpected: ${(error as Error).stack ?? error}`);
    }
    trim();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

async function end(how: EndMode, lanes: Promise<void>[]): Promise<void> {
  stopping = true;
  await Promise.race([Promise.all(lanes), new Promise((resolve) => setTimeout(resolve, 20_000))]);
  clearInterval(countersTimer);
  send({ t: "ending", how, counters });
  switch (how) {
    case "shutdown":
      await os.shutdown();
      process.exit(0);
      break;
    case "exit":
      process.exit(0);
      break;
    case "return":
      // Nothing left to do: the event loop runs dry with every ref and the actor still held.
      // (Deno keeps running on a paused stdin, Bun on a destroyed one: both, for all three.)
      process.stdin.removeAllListeners();
      process.stdin.pause();
      (process.stdin as unknown as { unref?(): void }).unref?.();
      process.stdin.destroy();
      break;
    case "throw":
      setTimeout(() => {
        throw new Error(`soak client ${clientId}: an uncaught exception, as told (exit code 1 expected)`);
      }, 0);
      break;
    case "sigterm":
      break; // the orchestrator sends the signal itself
  }
}

let countersTimer: ReturnType<typeof setInterval>;

async function main(): Promise<void> {
  const early: ToClient[] = [];
  let onMessage = (message: ToClient) => void early.push(message);
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffered += chunk;
    let at;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      if (line !== "") onMessage(JSON.parse(line) as ToClient);
    }
  });
  // The orchestrator is gone (killed, say): so is every reason to run.
  process.stdin.on("end", () => process.exit(3));

  await os.init({ storeName, objectStoreMemory: config.storeBytes, numWorkers: 1, prefault: false });
  send({ t: "ready", pid: process.pid });
  countersTimer = setInterval(() => send({ t: "counters", counters }), 250);
  const lanes = Array.from({ length: config.lanes }, () => lane());
  onMessage = (message) => {
    if (message.t === "take") {
      if (!stopping) take(message);
    } else if (message.t === "died") {
      ownerGone(message.client);
    } else if (message.t === "end") {
      void end(message.how, lanes);
    }
  };
  for (const message of early.splice(0)) onMessage(message);
}

await main();
