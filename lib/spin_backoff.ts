import process from "node:process";

/**
 * How long a wait for a quick task spins before it sleeps, in µs, on both sides (a `get` of its
 * result in the driver, a worker's read of its next task): a process that sleeps costs the one
 * waking it ~15 µs per write on a VM, more than the task itself. `OBJSTORE_SPIN_US=0` turns it off.
 */
export const SPIN_MICROS = Number(process.env.OBJSTORE_SPIN_US ?? 50);

/** A task whose function ran under this lately is quick: it is pipelined and waited for by spinning. */
export const QUICK_TASK_MICROS = 200;

/**
 * When to stop spinning: a spin that ends without what it waited for wasted its CPU (on a
 * loaded machine, CPU another process needed). Spins stop when fewer than HIT_RATE_MIN of the
 * recent ones paid off (a running mean, so one miss — a garbage collection on the other side —
 * changes nothing); then one wait in PROBE_EVERY still spins, to notice when they pay again.
 * Backing off after each single miss did worse: the driver's and the worker's spins pay off
 * only together, so one side's miss made the other miss, and both fell into sleeping.
 */
export class SpinBackoff {
  #hitRate = 1;
  #waitsSinceProbe = 0;

  /** True if this wait should not spin. */
  skip(): boolean {
    if (this.#hitRate >= HIT_RATE_MIN) return false;
    this.#waitsSinceProbe += 1;
    if (this.#waitsSinceProbe < PROBE_EVERY) return true;
    this.#waitsSinceProbe = 0;
    return false;
  }

  record(hit: boolean): void {
    this.#hitRate += HIT_WEIGHT * ((hit ? 1 : 0) - this.#hitRate);
  }
}

/** Weight of the latest spin in the running hit rate (about the last 16 count). */
const HIT_WEIGHT = 1 / 16;
const HIT_RATE_MIN = 0.5;
/** While spins do not pay, a machine loses at most one spin per this many waits. */
const PROBE_EVERY = 8;
