/**
 * Custom serializers for classes the format does not know. A class is stored under a name, not
 * a reference, so any process (of any runtime) that registered the same name can read it back;
 * registration is per process, as in Ray.
 *
 * @module
 */
import { SerializationError } from "../errors.ts";

/** Turns instances of one class into storable data and back. */
export interface Serializer<T> {
  /** Returns any storable value (it may itself hold refs, typed arrays, other registered classes). */
  serialize(value: T): unknown;
  /** Rebuilds an instance from what `serialize` returned. */
  // deno-lint-ignore no-explicit-any
  deserialize(data: any): T;
}

/** A registration as the codec sees it. */
export interface Registration {
  readonly name: string;
  readonly serializer: Serializer<unknown>;
}

const byPrototype = new Map<object, Registration>();
const byName = new Map<string, Registration>();

/**
 * Registers `cls` so its instances (and its subclasses', which come back as `cls`) can be stored.
 * `name` (default `cls.name`) must be unique per process; registering the same class again
 * replaces its serializer.
 */
export function registerSerializer<T>(
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => T,
  serializer: Serializer<T>,
  name: string = cls.name,
): void {
  if (typeof cls !== "function" || typeof cls.prototype !== "object" || cls.prototype === null) {
    throw new SerializationError("registerSerializer expects a class");
  }
  if (!name) throw new SerializationError("registerSerializer needs a name for an anonymous class");
  const taken = byName.get(name);
  if (taken !== undefined && taken !== byPrototype.get(cls.prototype)) {
    throw new SerializationError(`a serializer named "${name}" is already registered for another class`);
  }
  deregisterSerializer(cls);
  const registration: Registration = { name, serializer: serializer as Serializer<unknown> };
  byPrototype.set(cls.prototype, registration);
  byName.set(name, registration);
}

/** Removes the serializer of `cls`; its instances can no longer be stored or read here. */
// deno-lint-ignore ban-types
export function deregisterSerializer(cls: Function): void {
  const registration = byPrototype.get(cls.prototype);
  if (registration === undefined) return;
  byPrototype.delete(cls.prototype);
  byName.delete(registration.name);
}

/** The registration that applies to an object with prototype `proto`, walking up its chain. */
export function registrationFor(proto: object | null): Registration | undefined {
  if (byPrototype.size === 0) return undefined;
  for (let p = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const found = byPrototype.get(p);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The registration stored under `name`, if this process has one. */
export function registrationNamed(name: string): Registration | undefined {
  return byName.get(name);
}
