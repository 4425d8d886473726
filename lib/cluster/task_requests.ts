/**
 * A task one node asks another to run, as it travels through the directory: JSON signed with
 * the cluster's token (HMAC-SHA256), so a node evaluates no function whose request did not
 * prove it holds the token. Redis's own password is not enough: anyone who can write to the
 * directory could otherwise run code on every node.
 */
import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * What a node needs to run a task for a driver elsewhere: a task (no `kind`), an actor to
 * start (`actor`: `fn` is its class, `args` its constructor's), a call of one of the actors it
 * started (`call`: `method`), or an actor to kill (`kill`). An actor is named by its owner
 * (the driver that started it: `owner`, or else `holder`), its number `actor`, and its
 * incarnation (`incarnation`, or else `attempt`: a restart is another).
 *
 * A process holding a handle to an actor it does not own sends its `call`s and `kill`s to the
 * owner's reply list instead (the owner knows where the actor runs now): `holder` is the
 * caller, who gets the reply, and `owner` the actor's owner.
 */
export interface TaskRequest {
  kind?: "actor" | "call" | "kill";
  /** The driver's task number, echoed in the reply (0 for `actor` and `kill`: no reply). */
  task: number;
  actor?: number;
  method?: string;
  /** For `actor`: how many of its calls may run at once. */
  maxConcurrency?: number;
  /** Which try this is (a retry after a node died is another). */
  attempt: number;
  /** The process asking (its borrower name), whose reply list gets the outcome. */
  holder: string;
  /** For an actor's call or kill: its owner, when that is not `holder`. */
  owner?: string;
  /** For an actor's call: its incarnation, when `attempt` is the caller's own count. */
  incarnation?: number;
  /** The function (or class) as the driver numbers it, its name, and how workers load it. */
  fn?: { id: number; name: string; spec: unknown };
  /** The arguments as a worker takes them: inline values, or the hex of an arguments object. */
  args: unknown;
  /** The hex ids to store the results under. */
  returns: string[];
}

/** The request as its list carries it: `t <hmac hex> <json>`. */
export function signRequest(token: string, request: TaskRequest): string {
  const json = JSON.stringify(request);
  return `t ${mac(token, json)} ${json}`;
}

/** Why a request is refused, and who to tell (read from it unverified: a reply says no more). */
export class RefusedRequest extends Error {
  readonly replyTo: { holder: string; task: number; attempt: number } | undefined;
  constructor(message: string, replyTo?: { holder: string; task: number; attempt: number }) {
    super(message);
    this.replyTo = replyTo;
  }
}

/** The request in `text` (from `signRequest`), or why it is refused. */
export function openRequest(token: string, text: string): TaskRequest | RefusedRequest {
  const match = /^t ([0-9a-f]{64}) (.*)$/s.exec(text);
  if (match === null) return new RefusedRequest("not a task request");
  const [, given, json] = match;
  const expected = Buffer.from(mac(token, json), "hex");
  if (!timingSafeEqual(Buffer.from(given, "hex"), expected)) {
    let replyTo: RefusedRequest["replyTo"];
    try {
      const { holder, task, attempt } = JSON.parse(json);
      if (typeof holder === "string" && Number.isSafeInteger(task) && Number.isSafeInteger(attempt)) replyTo = { holder, task, attempt };
    } catch { /* nobody to tell */ }
    return new RefusedRequest("the task request is not signed with this cluster's token (the nodes were started with different tokens)", replyTo);
  }
  try {
    const request = JSON.parse(json) as TaskRequest;
    if (!Number.isSafeInteger(request.task) || typeof request.holder !== "string" || !Array.isArray(request.returns)) {
      return new RefusedRequest("the task request is malformed");
    }
    return request;
  } catch {
    return new RefusedRequest("the task request is not JSON");
  }
}

function mac(token: string, json: string): string {
  return createHmac("sha256", token).update(json).digest("hex");
}
