/**
 * How long each function (or actor method) ran lately in a worker: decides which tasks are
 * quick, and so how many go to a worker at once and whether a `get` spins for their results.
 */
import { QUICK_TASK_MICROS } from "../spin_backoff.ts";

/** Weight of the latest run in a function's running mean. */
const RUN_TIME_WEIGHT = 0.25;

/** A running mean of run time per key (a function's, or an actor method's: `Task.runKey`). */
export class RunTimes {
  /** Running mean of each key's run time in a worker, in µs. */
  readonly #meanMicros = new Map<string, number>();

  /** True if recent runs under `key` were quick (under QUICK_TASK_MICROS); false if none ran yet. */
  isQuick(key: string): boolean {
    const micros = this.#meanMicros.get(key);
    return micros !== undefined && micros < QUICK_TASK_MICROS;
  }

  /** Counts one run of `micros` under `key`. */
  record(key: string, micros: number): void {
    const mean = this.#meanMicros.get(key);
    this.#meanMicros.set(key, mean === undefined ? micros : mean + RUN_TIME_WEIGHT * (micros - mean));
  }
}
