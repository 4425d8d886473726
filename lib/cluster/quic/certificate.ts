/**
 * The TLS certificate a node's QUIC endpoint presents: self-signed (ECDSA P-256), made when the
 * node starts and published with its record in the directory, where the other nodes' processes
 * read it and trust it for that node alone. The key never leaves the node's process.
 *
 * TLS here keeps the bytes private on the wire; who may pull is still decided by the cluster
 * token, proved inside each stream as over TCP (zig/src/transfer/auth.zig).
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";

/** The name every node's certificate is made for, and the name pullers ask for. */
export const CERTIFICATE_SERVER_NAME = "objstore-node";

/** A certificate and its private key, both PEM. */
export interface NodeCertificate {
  readonly certificatePem: string;
  readonly keyPem: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Valid from a day ago (clocks of nodes differ) for ten years: a node restarts with a new one. */
const VALIDITY_BEFORE_MS = DAY_MS;
const VALIDITY_AFTER_MS = 3650 * DAY_MS;

/**
 * Makes a self-signed certificate for `CERTIFICATE_SERVER_NAME`, not a CA (TLS libraries refuse
 * a CA's certificate as a server's own).
 *
 * @example
 * ```ts
 * import { X509Certificate } from "node:crypto";
 * const { certificatePem } = makeNodeCertificate();
 * console.log(new X509Certificate(certificatePem).subjectAltName); // DNS:objstore-node
 * ```
 */
export function makeNodeCertificate(nowMs = Date.now()): NodeCertificate {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const name = sequence(set(sequence(oid(OID_COMMON_NAME), utf8String(CERTIFICATE_SERVER_NAME))));
  const tbs = sequence(
    explicit(0, integer(Uint8Array.of(2))), // v3
    integer(positiveSerial()),
    sequence(oid(OID_ECDSA_WITH_SHA256)),
    name,
    sequence(time(nowMs - VALIDITY_BEFORE_MS), time(nowMs + VALIDITY_AFTER_MS)),
    name,
    new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    explicit(3, sequence(
      extension(OID_SUBJECT_ALT_NAME, false, sequence(tagged(0x82, ascii(CERTIFICATE_SERVER_NAME)))),
      extension(OID_BASIC_CONSTRAINTS, true, sequence()),
    )),
  );
  const signature = new Uint8Array(sign("sha256", tbs, privateKey));
  const certificate = sequence(tbs, sequence(oid(OID_ECDSA_WITH_SHA256)), bitString(signature));
  return { certificatePem: pem("CERTIFICATE", certificate), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
}

const OID_COMMON_NAME = [2, 5, 4, 3];
const OID_ECDSA_WITH_SHA256 = [1, 2, 840, 10045, 4, 3, 2];
const OID_SUBJECT_ALT_NAME = [2, 5, 29, 17];
const OID_BASIC_CONSTRAINTS = [2, 5, 29, 19];

function positiveSerial(): Uint8Array {
  const serial = new Uint8Array(randomBytes(16));
  serial[0] &= 0x7f; // DER integers are signed: a serial must be positive
  serial[0] |= 0x40; // and minimally encoded (no leading zero byte)
  return serial;
}

/** One DER element: tag, definite length, contents. */
function element(tag: number, contents: Uint8Array): Uint8Array {
  const length = contents.length;
  const lengthBytes = length < 0x80 ? [length] : length < 0x100 ? [0x81, length] : [0x82, length >> 8, length & 0xff];
  if (length >= 0x10000) throw new RangeError(`DER element of ${length} bytes: certificates here are far smaller`);
  const out = new Uint8Array(1 + lengthBytes.length + length);
  out[0] = tag;
  out.set(lengthBytes, 1);
  out.set(contents, 1 + lengthBytes.length);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const sequence = (...parts: Uint8Array[]) => element(0x30, concat(parts));
const set = (...parts: Uint8Array[]) => element(0x31, concat(parts));
const integer = (bytes: Uint8Array) => element(0x02, bytes);
const ascii = (text: string) => new TextEncoder().encode(text);
const utf8String = (text: string) => element(0x0c, ascii(text));
const tagged = (tag: number, contents: Uint8Array) => element(tag, contents);
const explicit = (n: number, inner: Uint8Array) => element(0xa0 | n, inner);
const bitString = (bytes: Uint8Array) => element(0x03, concat([Uint8Array.of(0), bytes]));
const octetString = (bytes: Uint8Array) => element(0x04, bytes);
const booleanTrue = () => element(0x01, Uint8Array.of(0xff));

function extension(id: number[], critical: boolean, value: Uint8Array): Uint8Array {
  return sequence(oid(id), ...(critical ? [booleanTrue()] : []), octetString(value));
}

function oid(arcs: number[]): Uint8Array {
  const bytes = [40 * arcs[0] + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const base128 = [arc & 0x7f];
    for (let rest = arc >>> 7; rest > 0; rest >>>= 7) base128.unshift(0x80 | (rest & 0x7f));
    bytes.push(...base128);
  }
  return element(0x06, Uint8Array.from(bytes));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5). */
function time(ms: number): Uint8Array {
  const iso = new Date(ms).toISOString(); // 2026-12-07T18:04:05.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z"; // 20261207180405Z
  return Number(digits.slice(0, 4)) < 2050 ? element(0x17, ascii(digits.slice(2))) : element(0x18, ascii(digits));
}

function pem(label: string, der: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...der));
  return `-----BEGIN ${label}-----\n${base64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}
