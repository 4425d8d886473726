/**
 * libobjstore's status codes (`zig/include/objstore.h`, `Status` in zig/src/status.zig) and the
 * errors they become. tests/codes.test.ts fails when the three disagree.
 */
import { ClusterAuthError, ObjectLostError, ObjectStoreFullError, ObjstoreError } from "../errors.ts";

export const Status = {
  ok: 0,
  invalidArgument: 1,
  exists: 2,
  absent: 3,
  notSealed: 4,
  spilled: 5,
  storeFull: 6,
  indexFull: 7,
  timeout: 8,
  clientsFull: 9,
  storeNotFound: 10,
  storeExists: 11,
  badStore: 12,
  abiMismatch: 13,
  system: 14,
  corrupt: 15,
  spillDisabled: 16,
  busy: 17,
  permissionDenied: 18,
  noSpace: 19,
  spillMissing: 20,
  clusterAuth: 21,
  unavailable: 22,
} as const;

/** `objstore_contains` results (`ObjectState` in zig/src; tests/codes.test.ts checks them). */
export const Presence = { absent: 0, writing: 1, sealed: 2, spilled: 3 } as const;

/** The error a failed call becomes; `message` is the library's own, with its detail. */
export function errorFor(status: number, message: string, context: string): ObjstoreError {
  const text = `${context}: ${message}`;
  switch (status) {
    case Status.storeFull:
    case Status.indexFull:
      return new ObjectStoreFullError(text);
    case Status.absent:
    case Status.corrupt:
    case Status.spillMissing:
    case Status.unavailable:
      return new ObjectLostError(text);
    case Status.clusterAuth:
      return new ClusterAuthError(text);
    default:
      return new ObjstoreError(text);
  }
}
