/**
 * The portable value format of @objstore/core: structured-cloneable values, ObjectRefs, Arrow
 * tables and registered classes, with binary payloads out of band and read back zero-copy.
 * Layout: see format.ts.
 *
 * @module
 */
export { encode } from "./encode.ts";
export { decode } from "./decode.ts";
export { deregisterSerializer, registerSerializer } from "./registry.ts";
export type { Serializer } from "./registry.ts";
export type { DecodeHooks, EncodeHooks, Encoded, PagePlacement } from "./types.ts";
