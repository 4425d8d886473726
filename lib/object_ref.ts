/**
 * `ObjectRef`: a handle to an object in the store. Each live `ObjectRef` holds one reference
 * in the store (counted per process by libobjstore); disposing it, `free`, or garbage
 * collection drops that reference (lib/dropped_refs.ts), and the object is deleted once nothing
 * holds it.
 */
import { NotInitializedError, ObjectLostError } from "./errors.ts";
import { fromHex, ID_BYTES, toHex } from "./ids.ts";
import { type Holding, type HoldingOwner, hold, release } from "./dropped_refs.ts";

/**
 * @internal The producer of these refs finished: the ones still alive take their references
 * (the object is sealed now). A lost object is reported by its `get`.
 */
export function acquireFinished(refs: readonly WeakRef<ObjectRef>[]): void {
  for (const weak of refs) {
    const ref = weak.deref();
    if (ref === undefined) continue;
    ref.producer = undefined;
    try {
      ref.acquire();
    } catch { /* lost meanwhile */ }
  }
}

/** What a ref needs from the session that made it. */
export interface RefOwner extends HoldingOwner {
  /** Takes one reference on `id`: "held", or why not. */
  addRef(id: Uint8Array): "held" | "unsealed" | "absent";
  /** True once the session ended. */
  readonly closed: boolean;
}

/** The task that will produce an object, while it has not finished. */
export interface Producer {
  readonly settled: boolean;
  readonly done: Promise<void>;
  /** Above 0 while a `get` may spin for the result (µs) instead of awaiting `done`. */
  readonly spinMicros?: number;
  /** Spins up to `spinMicros` for the producer to settle; true if it did. */
  spinUntilSettled?(): boolean;
}

let currentOwner: RefOwner | undefined;

/** Binds new refs (from `fromHex` and decoding) to the session of `init()`. */
export function setRefOwner(owner: RefOwner | undefined): void {
  currentOwner = owner;
}

/**
 * A reference to an object in the store. Not thenable: pass it to `get`.
 *
 * @example
 * ```ts
 * import * as os from "@objstore/core";
 * await os.init({ objectStoreMemory: 64 * 1024 * 1024 });
 * using ref = os.put({ hello: "world" });
 * console.log(ref.toString()); // ObjectRef(…56 hex digits…)
 * console.log(await os.get(ref)); // { hello: "world" }
 * await os.shutdown();
 * ```
 */
export class ObjectRef<T = unknown> {
  /** @internal The 28-byte id. */
  readonly bytes: Uint8Array;
  /** The session this ref belongs to; undefined once released. */
  #owner: RefOwner | undefined;
  /** Whether this ref holds its reference in the store yet (a borrowed ref to an object still
   * being written takes it once the object is sealed). */
  #held: boolean;
  #holding: Holding | undefined;
  #hex: string | undefined;
  /** @internal The task producing this object, until it finishes. */
  producer: Producer | undefined;
  /** Only for the type checker: the type of the value this ref names. Never set. */
  declare readonly __type?: T;

  /** @internal Use `put`, a task, or `ObjectRef.fromHex`. */
  constructor(bytes: Uint8Array, owner: RefOwner | undefined, held = true) {
    this.bytes = bytes;
    this.#owner = owner;
    this.#held = held && owner !== undefined;
    if (this.#held) this.#track(owner!);
  }

  /**
   * A borrowed ref to an object in a store this process is attached to (how a ref is handed
   * to another process, of any runtime). `get` on it throws `ObjectLostError` if the object
   * is gone, and waits if it is still being written.
   *
   * @example
   * ```ts
   * import * as os from "@objstore/core";
   * await os.init({ storeName: "shared", objectStoreMemory: 64 * 1024 * 1024 });
   * const ref = os.put([1, 2, 3]);
   * // … in another process attached to the store "shared":
   * const same = os.ObjectRef.fromHex(ref.hex());
   * console.log(await os.get(same)); // [1, 2, 3]
   * await os.shutdown();
   * ```
   */
  static fromHex<T = unknown>(hex: string): ObjectRef<T> {
    const owner = currentOwner;
    if (owner === undefined) throw new NotInitializedError();
    const bytes = typeof hex === "string" ? fromHex(hex, ID_BYTES) : undefined;
    if (bytes === undefined) {
      throw new TypeError(`ObjectRef.fromHex expects ${ID_BYTES * 2} hex digits, got ${JSON.stringify(hex)}`);
    }
    const outcome = owner.addRef(bytes);
    if (outcome === "absent") return new ObjectRef<T>(bytes, undefined);
    return new ObjectRef<T>(bytes, owner, outcome === "held");
  }

  /** @internal Takes the store reference of a borrowed ref once its object is sealed;
   * returns false while it is still being written. Throws if the object is gone. */
  acquire(): boolean {
    if (this.#held) return true;
    const owner = this.#owner;
    // Released (disposed, freed, or found gone) while it waited for its object to be sealed.
    if (owner === undefined) throw new ObjectLostError(`${this} was released, or its object is gone`);
    const outcome = owner.addRef(this.bytes);
    if (outcome === "unsealed") return false;
    if (outcome === "absent") {
      this.#owner = undefined;
      throw new ObjectLostError(`${this}: the object is not in the store`);
    }
    this.#held = true;
    this.#track(owner);
    return true;
  }

  /** @internal Takes over the reference this process already holds (it created the object). */
  adopt(): void {
    if (this.#held || this.#owner === undefined) return;
    this.#held = true;
    this.#track(this.#owner);
  }

  /** The reference held goes when this ref is disposed, or found dropped (lib/dropped_refs.ts). */
  #track(owner: RefOwner): void {
    this.#holding = hold(this, this.bytes, owner);
  }

  /** The id as 56 lowercase hex digits. */
  get id(): string {
    this.#hex ??= toHex(this.bytes);
    return this.#hex;
  }

  /** Same as `id`. */
  hex(): string {
    return this.id;
  }

  /** `ObjectRef(<hex id>)`. */
  toString(): string {
    return `ObjectRef(${this.id})`;
  }

  /** @internal Throws unless this ref can still be used. */
  checkUsable(): void {
    if (currentOwner === undefined) throw new NotInitializedError();
    if (this.#owner === undefined || this.#owner.closed) {
      throw new ObjectLostError(
        `${this} was released (freed, disposed, or made before the last shutdown), or its object is gone`,
      );
    }
  }

  /** Releases this ref now; the object is deleted once no other reference holds it. */
  [Symbol.dispose](): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    if (!this.#held) return;
    release(this.#holding!);
  }
}
