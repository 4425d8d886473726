/**
 * Transfers between two stores of this machine, as two nodes would make them: served by one
 * (lib/cluster/transfer.ts over zig/src/transfer/), pulled into the other, over loopback TCP.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { ClusterAuthError, ObjectLostError, ObjstoreError } from "../mod.ts";
import { loadLibrary } from "../lib/ffi/load.ts";
import { NativeStore } from "../lib/store/native_store.ts";
import { Presence, Status } from "../lib/store/status.ts";
import { ipv4Bytes, type TransferAddress, TransferEndpoint } from "../lib/cluster/transfer.ts";
import { test } from "./harness.ts";
import { currentRuntime, uniqueStoreName } from "./helpers.ts";

const token = `transfer-test-${randomBytes(8).toString("hex")}`;

interface Node {
  store: NativeStore;
  endpoint: TransferEndpoint;
}

async function twoNodes(capacityBytes: number): Promise<{ a: Node; b: Node; served: TransferAddress; close(): Promise<void> }> {
  const library = await loadLibrary();
  const open = (tag: string): Node => {
    const store = NativeStore.open(library, uniqueStoreName(`transfer-${tag}`), { create: true, exclusive: true, capacityBytes, prefault: false });
    return { store, endpoint: TransferEndpoint.open(library, store.name) };
  };
  const a = open("a");
  const b = open("b");
  const server = a.endpoint.serve({ host: "127.0.0.1", port: 0 }, token);
  return {
    a,
    b,
    served: server.address,
    async close() {
      await a.endpoint.close();
      await b.endpoint.close();
      a.store.close();
      b.store.close();
    },
  };
}

function idOf(n: number): Uint8Array {
  const id = new Uint8Array(28).fill(0x77);
  new DataView(id.buffer).setUint32(0, n);
  return id;
}

/** Puts `sizeBytes` random bytes as `id`; returns their SHA-256. */
function putRandom(store: NativeStore, id: Uint8Array, sizeBytes: number): string {
  const target = store.create(id, sizeBytes, undefined, 0);
  assert.ok(target instanceof Uint8Array, `create: status ${target}`);
  for (let at = 0; at < sizeBytes; at += 65536) target.set(randomBytes(Math.min(65536, sizeBytes - at)), at);
  store.seal(id);
  return createHash("sha256").update(target).digest("hex");
}

function digestOf(store: NativeStore, id: Uint8Array): string {
  const pinned = store.get(id);
  assert.ok(typeof pinned !== "number", store.lastError());
  try {
    return createHash("sha256").update(store.bytes(pinned.offsetBytes, pinned.sizeBytes)).digest("hex");
  } finally {
    store.release(id);
  }
}

test(`transfers: objects from 0 bytes to 24 MiB pulled from another store arrive byte-exact, and stay while referenced (${currentRuntime})`, async () => {
  const nodes = await twoNodes(96 * 1024 * 1024);
  try {
    const sizes = [0, 1, 4097, 4 * 1024 * 1024 + 3, 24 * 1024 * 1024];
    for (const [i, sizeBytes] of sizes.entries()) {
      const id = idOf(i + 1);
      const digest = putRandom(nodes.a.store, id, sizeBytes);
      assert.equal(await nodes.b.endpoint.pull(id, [nodes.served], token), sizeBytes);
      assert.equal(digestOf(nodes.b.store, id), digest, `${sizeBytes} bytes`);
      // The node's process takes its own reference; the endpoint's goes; the copy stays.
      assert.equal(nodes.b.store.addRef(id), Status.ok);
      nodes.b.endpoint.handOver(id);
      assert.equal(nodes.b.store.contains(id), Presence.sealed);
      nodes.b.store.dropRef(id);
      assert.equal(nodes.b.store.contains(id), Presence.absent);
    }
  } finally {
    await nodes.close();
  }
}, { timeoutMs: 60_000 });

test(`transfers: a second pull of an object being pulled waits for the first's seal; one source lacking it is passed over (${currentRuntime})`, async () => {
  const nodes = await twoNodes(64 * 1024 * 1024);
  const library = await loadLibrary();
  const empty = NativeStore.open(library, uniqueStoreName("transfer-empty"), { create: true, exclusive: true, capacityBytes: 1 << 20, prefault: false });
  const emptyEndpoint = TransferEndpoint.open(library, empty.name);
  try {
    const emptyServer = emptyEndpoint.serve({ host: "127.0.0.1", port: 0 }, token);
    const id = idOf(1);
    const digest = putRandom(nodes.a.store, id, 16 * 1024 * 1024);
    const [first, second] = await Promise.all([
      nodes.b.endpoint.pull(id, [emptyServer.address, nodes.served], token),
      nodes.b.endpoint.pull(id, [nodes.served], token),
    ]);
    assert.deepEqual([first, second].map(String).sort(), [String(16 * 1024 * 1024), "exists"].sort(), "one pull, one told it is under way");
    assert.equal(digestOf(nodes.b.store, id), digest);
  } finally {
    await emptyEndpoint.close();
    empty.close();
    await nodes.close();
  }
}, { timeoutMs: 60_000 });

test(`transfers: a wrong token is ClusterAuthError, an object no node has is ObjectLostError, a dead node too; nothing is left behind (${currentRuntime})`, async () => {
  const nodes = await twoNodes(8 * 1024 * 1024);
  try {
    const id = idOf(1);
    putRandom(nodes.a.store, id, 1000);
    await assert.rejects(nodes.b.endpoint.pull(id, [nodes.served], `${token}-wrong`), ClusterAuthError);
    await assert.rejects(nodes.b.endpoint.pull(idOf(2), [nodes.served], token), (error: Error) => error instanceof ObjectLostError && /no object/.test(error.message));
    // Nothing listens on the port a stopped server had.
    const stopped = nodes.b.endpoint.serve({ host: "127.0.0.1", port: 0 }, token);
    const deadAddress = stopped.address;
    stopped.stop();
    await assert.rejects(nodes.b.endpoint.pull(id, [deadAddress], token), (error: Error) => error instanceof ObjectLostError && /could send it/.test(error.message));
    assert.equal(nodes.b.store.contains(id), Presence.absent);
    assert.equal(nodes.b.store.contains(idOf(2)), Presence.absent);
  } finally {
    await nodes.close();
  }
}, { timeoutMs: 60_000 });

test(`transfers: bad addresses, ports and tokens are refused with errors that name them (${currentRuntime})`, async () => {
  const nodes = await twoNodes(1 << 20);
  try {
    assert.throws(() => ipv4Bytes("example.com"), /'example.com' is not an IPv4 address/);
    assert.throws(() => ipv4Bytes("1.2.3.256"), /not an IPv4 address/);
    assert.throws(() => nodes.a.endpoint.serve({ host: "127.0.0.1", port: 70000 }, token), /port must be an integer from 0 to 65535, got 70000/);
    assert.throws(() => nodes.a.endpoint.serve({ host: "127.0.0.1", port: 0 }, ""), /token must be 1 to 1024 bytes.*OBJSTORE_CLUSTER_TOKEN/);
    assert.throws(() => nodes.b.endpoint.pull(idOf(1), [], token), /needs 1 to 16 sources, got 0/);
    assert.throws(() => nodes.b.endpoint.pull(idOf(1), [nodes.served], token, { connections: 99 }), (error: Error) => error instanceof ObjstoreError && /1 to 16 connections, got 99/.test(error.message));
    assert.throws(() => nodes.a.endpoint.serve({ host: "198.18.255.254", port: 0 }, token), /cannot listen on 198.18.255.254/);
    // A pull asked for while the endpoint closes is refused, never run on a freed endpoint.
    const closing = nodes.b.endpoint.close();
    assert.throws(() => nodes.b.endpoint.pull(idOf(1), [{ host: "127.0.0.1", port: 1 }], token), /the endpoint is closed/);
    await closing;
  } finally {
    await nodes.close();
  }
});
