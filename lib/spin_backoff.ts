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
 * loaded machine, CPU another process needed). After a miss the next spin is skipped, one more
 * after each further miss in a row (up to MISSES_COUNTED_MAX); one hit starts over. Linear,
 * not exponential: the driver's and the worker's spins pay off only together, and doubling
 * backoffs on both sides locked them into sleeping after a few misses.
 */
export class SpinBackoff {
  #missesInRow = 0;
  #toSkip = 0;

  /** True if this wait should not spin. */
  skip(): boolean {
    if (this.#toSkip === 0) return false;
    this.#toSkip -= 1;
    return true;
  }

  record(hit: boolean): void {
    if (hit) {
      this.#missesInRow = 0;
      return;
    }
    this.#missesInRow = Math.min(this.#missesInRow + 1, MISSES_COUNTED_MAX);
    this.#toSkip = this.#missesInRow;
  }
}

/** At most this many waits skipped after a run of misses: a miss costs a spin, so a machine
 * where spins never pay off loses at most 1/(this+1) of a spin per wait. */
const MISSES_COUNTED_MAX = 16;
