/**
 * Paths to the part of a value that could not be stored (`value.a[3].b`). The encoder keeps no
 * path while it walks: a failure unwinds through the containers, and each adds its own step on
 * the way out, so the happy path pays nothing.
 *
 * @module
 */
import { SerializationError } from "../errors.ts";

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** Paths longer than this many steps (a deep recursion) keep their two ends only. */
const MAX_STEPS = 40;

/** A failure on its way out of the value tree, collecting path steps innermost first. */
export class Unstorable {
  readonly reason: string;
  readonly cause: unknown;
  readonly steps: string[] = [];

  constructor(reason: string, cause?: unknown) {
    this.reason = reason;
    this.cause = cause;
  }
}

/** Adds `step` to an escaping failure, first turning a foreign error (a throwing getter or serializer) into one. */
export function withStep(error: unknown, step: string): Unstorable {
  const failure = error instanceof Unstorable ? error : fromForeign(error);
  failure.steps.push(step);
  return failure;
}

function fromForeign(error: unknown): Unstorable {
  if (isStackOverflow(error)) return new Unstorable("the value is nested too deeply", error);
  const message = error instanceof Error ? error.message : String(error);
  return new Unstorable(`reading it threw: ${message}`, error);
}

/**
 * True for the engine's stack-overflow errors: a RangeError ("Maximum call stack size exceeded"),
 * or, when the overflow hits inside a regular expression, V8's SyntaxError ("…: Stack overflow").
 */
export function isStackOverflow(error: unknown): boolean {
  return error instanceof Error && /call stack|stack overflow/i.test(error.message);
}

/** The SerializationError a failure becomes once it reaches the root. */
export function toSerializationError(error: unknown): SerializationError {
  if (error instanceof SerializationError) return error;
  const failure = error instanceof Unstorable ? error : fromForeign(error);
  const path = "value" + shorten(failure.steps.reverse()).join("");
  const options = failure.cause === undefined ? undefined : { cause: failure.cause };
  return new SerializationError(`cannot store ${path}: ${failure.reason}`, options);
}

function shorten(steps: string[]): string[] {
  if (steps.length <= MAX_STEPS) return steps;
  const end = MAX_STEPS / 2;
  return [...steps.slice(0, end), `…(${steps.length - MAX_STEPS} more)…`, ...steps.slice(-end)];
}

/** Step for a property key: `.name` when it is an identifier, `["other key"]` otherwise. */
export function keyStep(key: string): string {
  return IDENTIFIER.test(key) ? "." + key : `[${JSON.stringify(key)}]`;
}

/** Step for an array index. */
export function indexStep(index: number): string {
  return `[${index}]`;
}

/** Step for a Map value: `.get(key)` when the key prints as a literal, else its position. */
export function mapValueStep(key: unknown, position: number): string {
  if (typeof key === "string") return `.get(${JSON.stringify(key)})`;
  if (typeof key === "number" || typeof key === "boolean") return `.get(${key})`;
  return `<map value #${position}>`;
}

/** Step for a Map key, by position. */
export function mapKeyStep(position: number): string {
  return `<map key #${position}>`;
}

/** Step for a Set member, by position. */
export function setStep(position: number): string {
  return `<set item #${position}>`;
}
