/**
 * Transfers over QUIC (`objstore start --transport quic`), where the runtime has it: Deno run
 * with --unstable-net (the tests' Deno children are). Nodes serving QUIC pull from each other
 * over it, byte-exact, through their gateways (the count of streams a node served says QUIC was
 * used); a TCP node still pulls from a QUIC node; a wrong token is refused over QUIC as over
 * TCP; a QUIC node that is gone is ObjectLostError, not a hang. On every runtime: asking for
 * QUIC where there is none fails at once, saying where it is. On Node and Bun: a driver attached
 * to a Deno node serving QUIC pulls over TCP, and says so.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Directory } from "../lib/cluster/directory.ts";
import { runCli } from "../lib/cli.ts";
import { CERTIFICATE_SERVER_NAME, makeNodeCertificate } from "../lib/cluster/quic/certificate.ts";
import { dropReporter } from "../lib/cluster/quic/gateway.ts";
import { test } from "./harness.ts";
import { type Child, currentRuntime, redisUrl, root, uniqueStoreName } from "./helpers.ts";
import { cleanUp, clusterToken, putOn, runDriver, startDriver, startNode } from "./cluster_helpers.ts";

const cli = path.join(root, "bin", "objstore.ts");

/** Runs `objstore start` with `args` on this runtime, QUIC left out (Deno without --unstable-net). */
function startWithoutQuic(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const bin = (name: string) => path.join(root, "node_modules", ".bin", name);
  const [command, base] = currentRuntime === "deno"
    ? [bin("deno"), ["run", "-A", cli]]
    : currentRuntime === "bun" ? [bin("bun"), [cli]] : [bin("node"), [cli]];
  const child = spawn(command, [...base, ...args], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stderr })));
}

test(`cluster QUIC: a node's certificate is a valid self-signed X.509 for the name pullers ask for, not a CA, matching its key (${currentRuntime})`, () => {
  const nowMs = Date.parse("2049-12-31T23:00:00Z"); // its end is past 2050: GeneralizedTime
  const { certificatePem, keyPem } = makeNodeCertificate(nowMs);
  const certificate = new X509Certificate(certificatePem);
  assert.equal(certificate.subjectAltName, `DNS:${CERTIFICATE_SERVER_NAME}`);
  assert.equal(certificate.ca, false);
  assert.ok(certificate.verify(certificate.publicKey), "not signed by its own key");
  assert.ok(certificate.checkPrivateKey(createPrivateKey(keyPem)), "the key is not the certificate's");
  assert.ok(Date.parse(certificate.validFrom) < nowMs && Date.parse(certificate.validTo) > nowMs + 3000 * 86_400_000);
  // Each node has its own key.
  assert.notEqual(makeNodeCertificate().certificatePem, makeNodeCertificate().certificatePem);
});

test(`cluster QUIC: dropped peers (a scanner of the UDP port) are reported at most once per interval, with a count of the rest (${currentRuntime})`, () => {
  const lines: string[] = [];
  let nowMs = 1_000;
  const report = dropReporter((line) => lines.push(line), 10_000, () => nowMs);
  report(new Error("bad certificate"));
  for (let i = 0; i < 500; i++, nowMs += 10) report(new Error("handshake timed out"));
  assert.deepEqual(lines, ["objstore: a QUIC peer was dropped: bad certificate"]);
  nowMs = 11_000;
  report("garbage");
  assert.deepEqual(lines.slice(1), ["objstore: a QUIC peer was dropped: garbage (and 500 more since the last such line)"]);
  nowMs = 30_000;
  report(new Error("again"));
  assert.equal(lines[2], "objstore: a QUIC peer was dropped: again");
});

test(`cluster QUIC: --transport quic where the runtime has no QUIC fails at once, naming where QUIC is; a wrong --transport is a usage error (${currentRuntime})`, async () => {
  const storeName = uniqueStoreName("quic-none");
  const common = ["start", "--address", redisUrl(), "--store", storeName, "--token", clusterToken];
  const none = await startWithoutQuic([...common, "--transport", "quic"]);
  assert.equal(none.code, 1, none.stderr);
  assert.match(none.stderr, /--transport quic: QUIC is available on Deno run with --unstable-net only/);
  const wrong = await startWithoutQuic([...common, "--transport", "udp"]);
  assert.equal(wrong.code, 2, wrong.stderr);
  assert.match(wrong.stderr, /--transport must be tcp or quic, got "udp"/);
});

/** The streams node `storeName`'s QUIC gateway has served, as its heartbeat last said. */
async function quicStreamsOf(storeName: string): Promise<number> {
  const directory = await Directory.connect(redisUrl());
  try {
    const node = (await directory.nodes()).find((n) => n.storeName === storeName);
    assert.ok(node?.quic !== undefined, `node ${storeName} does not list a QUIC address`);
    return node.load?.quicStreams ?? 0;
  } finally {
    await directory.close();
  }
}

/** Waits for a heartbeat (every 500 ms) that reports `storeName`'s streams as more than `than`. */
async function quicStreamsAbove(storeName: string, than: number): Promise<number> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const streams = await quicStreamsOf(storeName);
    if (streams > than || Date.now() > deadline) return streams;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** `storeName`'s stream count once three heartbeats in a row (500 ms apart) report the same. */
async function settledQuicStreams(storeName: string): Promise<number> {
  let last = -1;
  let same = 0;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    const streams = await quicStreamsOf(storeName);
    same = streams === last ? same + 1 : 0;
    if (same === 2) return streams;
    last = streams;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`the QUIC stream count of ${storeName} did not settle in 10 s (last ${last})`);
}

if (currentRuntime === "deno") {
  test(`cluster QUIC: nodes serving QUIC pull from each other over it byte-exact; TCP nodes still pull from them; a wrong token is refused; a gone node's object is lost (${currentRuntime})`, async () => {
    const names = ["a", "b", "tcp", "other"].map((n) => uniqueStoreName(`quic-${n}`));
    const [a, b, tcp, other] = names;
    const nodes: Child[] = [];
    const drivers: Child[] = [];
    try {
      nodes.push(await startNode(a, 0, clusterToken, ["--transport", "quic"]));
      nodes.push(await startNode(b, 0, clusterToken, ["--transport", "quic"]));
      nodes.push(await startNode(tcp));
      // A value of 40 MiB + 3 (several chunks, several connections), and one of 1 byte.
      const large = await putOn(a, 40 * 1024 * 1024 + 3);
      const small = await putOn(a, 1);
      const onlyOnA = await putOn(a, 1000);
      drivers.push(large.child, small.child, onlyOnA.child);
      assert.equal(await quicStreamsOf(a), 0);
      const status: string[] = [];
      assert.equal(await runCli(["status", "--address", redisUrl()], (line) => status.push(line)), 0);
      assert.match(status.find((line) => line.includes(a)) ?? "", /alive, QUIC on udp \d+$/);
      assert.match(status.find((line) => line.includes(tcp)) ?? "", /alive$/);

      assert.equal(await runDriver(b, "get", large.valueHex), `got from_${a} ${large.digest}`);
      assert.equal(await runDriver(b, "get", small.valueHex), `got from_${a} ${small.digest}`);
      // A program that pulled over QUIC and ends without shutdown exits (its relay and QUIC
      // connection do not hold it).
      const third = await putOn(a, 3 * 1024 * 1024);
      drivers.push(third.child);
      assert.equal(await runDriver(b, "noshut", third.bytesHex), `read ${third.digest}`);
      assert.ok(await quicStreamsAbove(a, 0) > 0, "A's gateway served no stream for B's pulls");
      const overQuic = await settledQuicStreams(a);

      // A TCP node pulls from a QUIC node over TCP, which every node serves.
      assert.equal(await runDriver(tcp, "get", large.valueHex), `got from_${a} ${large.digest}`);
      assert.equal(await settledQuicStreams(a), overQuic, "the TCP node's pull went through A's QUIC gateway");

      // A node of another token reaches A over QUIC, and is refused inside the stream.
      const stranger = await startNode(other, 0, `${clusterToken}-wrong`, ["--transport", "quic"]);
      nodes.push(stranger);
      const refused = await runDriver(other, "lost", large.bytesHex);
      assert.match(refused, /^lost ClusterAuthError: .*cluster token/);

      // A is killed: what only A had is lost for B, with its node named, not a hang.
      nodes[0].kill();
      await nodes[0].exited;
      const lost = await runDriver(b, "lost", onlyOnA.bytesHex);
      assert.match(lost, /^lost ObjectLostError: [0-9a-f]{56}/);
    } finally {
      await cleanUp([...drivers, ...nodes], names);
    }
  }, { timeoutMs: 120_000 });
} else {
  test(`cluster QUIC: a ${currentRuntime} driver attached to a Deno node serving QUIC pulls from another over TCP, saying once that it has no QUIC (${currentRuntime})`, async () => {
    const names = ["a", "b"].map((n) => uniqueStoreName(`quic-${n}`));
    const nodes: Child[] = [];
    const drivers: Child[] = [];
    try {
      for (const name of names) nodes.push(await startNode(name, 0, clusterToken, ["--transport", "quic"], "deno"));
      const onA = await putOn(names[0], 5 * 1024 * 1024 + 1);
      drivers.push(onA.child);
      const getter = startDriver(names[1], "get", onA.valueHex);
      drivers.push(getter);
      assert.equal(await getter.line(), `got from_${names[0]} ${onA.digest}`);
      const { code, stderr } = await getter.exited;
      assert.equal(code, 0, stderr);
      const warnings = stderr.split("\n").filter((line) => line.includes("pulls over TCP"));
      assert.equal(warnings.length, 1, stderr);
      assert.match(warnings[0], /node .* uses QUIC, but this process pulls over TCP: QUIC is available on Deno run with --unstable-net only/);
    } finally {
      await cleanUp([...drivers, ...nodes], names);
    }
  }, { timeoutMs: 90_000 });
}
