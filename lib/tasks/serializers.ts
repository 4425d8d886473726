/**
 * Custom serializers, public side: `registerSerializer` registers a class with the codec in this
 * process and ships it (by source) to every worker, those running and those started later;
 * `deregisterSerializer` takes it back in this process. The codec's registry is
 * lib/codec/registry.ts.
 */
import { deregisterSerializer as deregisterInCodec, registerSerializer as registerInCodec, type Serializer } from "../codec/mod.ts";
import { session } from "../session.ts";
import { sourceOf } from "./source.ts";
import type { SerializerRecord, Submitter } from "./submitter.ts";

/** Custom serializers registered in this process, in order; every worker gets them as it starts. */
const registered: SerializerRecord[] = [];

/** The serializers a new worker is sent (lib/tasks/scheduler.ts). */
export const shippedSerializers: readonly SerializerRecord[] = registered;

/**
 * Registers how to store instances of `cls`, in this process and in its workers (the class
 * and both functions are shipped by source, so they must be self-contained).
 */
// deno-lint-ignore no-explicit-any
export function registerSerializer<T>(cls: new (...args: any[]) => T, serializer: Serializer<T>, name?: string): void {
  registerInCodec(cls, serializer, name);
  const record: SerializerRecord = {
    name: name ?? cls.name,
    cls: Function.prototype.toString.call(cls),
    serialize: sourceOf(serializer.serialize),
    deserialize: sourceOf(serializer.deserialize),
  };
  registered.push(record);
  startedSubmitter()?.addSerializer(record);
}

/** The submitter of this process, if its tasks layer started (none before init). */
function startedSubmitter(): Submitter | undefined {
  try {
    // Only the tasks layer sets a session's tasks, and always to a Submitter.
    return session().tasks() as Submitter | undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the serializer of `cls` in this process: its instances can no longer be stored or
 * read here. Workers keep theirs (registration is per process, as in Ray).
 */
// deno-lint-ignore ban-types
export function deregisterSerializer(cls: Function): void {
  deregisterInCodec(cls);
}
