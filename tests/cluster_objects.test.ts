/**
 * Objects across the nodes of a cluster on this machine, as users reach them: three nodes
 * (`objstore start` on this runtime, against the test Redis), drivers attached to each with
 * init({ address, node }) (tests/fixtures/cluster_driver.ts). A value and the refs inside it
 * are read byte-exact on another node; a value holding refs to objects on two other nodes
 * resolves on a third; an object whose node is gone is ObjectLostError, never a hang.
 */
import assert from "node:assert/strict";
import { runCli } from "../lib/cli.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, uniqueStoreName } from "./helpers.ts";
import { cleanUp, putOn, runDriver, startNodes } from "./cluster_helpers.ts";
import { Presence } from "../lib/store/status.ts";

test(`cluster objects: values and the refs inside them are read byte-exact on other nodes, also refs to two other nodes at once; wait pulls; a gone node's object is lost (${currentRuntime})`, async () => {
  const names = ["a", "b", "c"].map((n) => uniqueStoreName(`objects-${n}`));
  const nodes: Child[] = [];
  const drivers: Child[] = [];
  try {
    await startNodes(nodes, names);
    const onA = await putOn(names[0], 3 * 1024 * 1024 + 5);
    const onB = await putOn(names[1], 20 * 1024 * 1024);
    drivers.push(onA.child, onB.child);
    // B reads A's value, and the 3 MiB object its ref names, from A.
    assert.equal(await runDriver(names[1], "get", onA.valueHex), `got from_${names[0]} ${onA.digest}`);
    // C puts a value holding refs to A's and B's values; A reads it back: C's value from C,
    // then A's own and B's objects through the refs inside.
    const onC = await putOn(names[2], 1000, [onA.valueHex, onB.valueHex]);
    drivers.push(onC.child);
    const got = (await runDriver(names[0], "get", onC.valueHex)).split(" ");
    assert.deepEqual(got.slice(1), [`from_${names[2]}`, onC.digest, onA.digest, onB.digest]);
    // wait() with fetchLocal: false counts A's bytes ready where they are, and pulls nothing.
    assert.equal(await runDriver(names[2], "peek", onA.bytesHex), "peeked 1 not-here");
    // wait() on C pulls A's bytes and counts them ready once here: a get with timeout 0 reads them.
    assert.equal(await runDriver(names[2], "wait", onA.bytesHex), `waited 1 here ${onA.digest}`);
    // A driver that ends without shutdown exits (the directory's connections do not hold it).
    assert.equal(await runDriver(names[1], "noshut", onA.bytesHex), `read ${onA.digest}`);
    // A second read on B finds A's objects in B's store already (pulled once).
    assert.equal(await runDriver(names[1], "get", onA.valueHex), `got from_${names[0]} ${onA.digest}`);

    // Node B stops: an object only B had is lost for C, with the node named, not a hang.
    onB.child.send("done");
    await onB.child.exited;
    assert.equal((await runCli(["stop", "--store", names[1]], () => {}, () => {})), 0);
    const lost = await runDriver(names[2], "lost", onB.bytesHex);
    assert.match(lost, /^lost ObjectLostError: [0-9a-f]{56}.*made on node \d+, not alive in the cluster/);
  } finally {
    await cleanUp([...drivers, ...nodes], names);
  }
}, { timeoutMs: 120_000 });

test(`cluster objects: copies pulled from other nodes are evicted before the node's own objects, writing nothing, and pulled again when read (${currentRuntime})`, async () => {
  const names = ["a", "b"].map((n) => uniqueStoreName(`evict-${n}`));
  const nodes: Child[] = [];
  const drivers: Child[] = [];
  try {
    await startNodes(nodes, names);
    // Three objects of A: B's 128 MiB holds two of them with one of its own (under its spill
    // threshold, 0.8), not three.
    const sizeBytes = 32 * 1024 * 1024;
    const puts = [];
    for (let i = 0; i < 3; i++) {
      const put = await putOn(names[0], sizeBytes);
      drivers.push(put.child);
      puts.push(put);
    }
    const line = await runDriver(names[1], "evict", String(sizeBytes), ...puts.map((p) => p.bytesHex));
    // The third pull found B full: the first copy was evicted, though B's own object is older,
    // and only it is out of memory. Read again, it was pulled back byte-exact.
    const spilled = Presence.spilled, sealed = Presence.sealed;
    // Nothing went to disk: an evicted copy is not counted as spilled.
    assert.deepEqual(line.split(" "), ["evicted", `own:${sealed}`, `copies:${spilled},${sealed},${sealed}`, "spilled:0", puts[0].digest]);
  } finally {
    await cleanUp([...drivers, ...nodes], names);
  }
}, { timeoutMs: 120_000 });
