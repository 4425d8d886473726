/**
 * The 16-byte header at the start of every data region (see format.ts), written and read byte by
 * byte so the tiny-value fast paths need no DataView.
 *
 * @module
 */
import { HEADER_BYTES, MAGIC, VERSION } from "./format.ts";
import { corrupt } from "./reader.ts";

const TWO_32 = 2 ** 32;

/** What the header says about the rest of the region. */
export interface Header {
  readonly bodyLength: number;
  readonly bufferCount: number;
}

/** Writes magic, version, body length and buffer count. */
export function writeHeader(target: Uint8Array, bodyLength: number, bufferCount: number): void {
  target[0] = MAGIC[0];
  target[1] = MAGIC[1];
  target[2] = MAGIC[2];
  target[3] = VERSION;
  writeU32(target, 4, bodyLength % TWO_32);
  writeU32(target, 8, Math.floor(bodyLength / TWO_32));
  writeU32(target, 12, bufferCount);
}

/** Checks magic and version and that the body fits; returns the lengths. */
export function readHeader(data: Uint8Array, regionBytes = data.length): Header {
  if (data.length < HEADER_BYTES) corrupt(`${data.length} bytes is shorter than the header`);
  if (data[0] !== MAGIC[0] || data[1] !== MAGIC[1] || data[2] !== MAGIC[2]) corrupt("not an objstore value (bad magic)");
  if (data[3] !== VERSION) corrupt(`format version ${data[3]} is not supported (this reader knows ${VERSION})`);
  const hi = readU32(data, 8);
  const bodyLength = hi * TWO_32 + readU32(data, 4);
  if (bodyLength > regionBytes - HEADER_BYTES) corrupt(`body of ${bodyLength} bytes exceeds the ${regionBytes}-byte region`);
  return { bodyLength, bufferCount: readU32(data, 12) };
}

function writeU32(target: Uint8Array, at: number, value: number): void {
  target[at] = value & 0xff;
  target[at + 1] = (value >>> 8) & 0xff;
  target[at + 2] = (value >>> 16) & 0xff;
  target[at + 3] = value >>> 24;
}

function readU32(data: Uint8Array, at: number): number {
  return (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
}
