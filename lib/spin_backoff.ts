/**
 * When to stop spinning: a spin that ends without what it waited for wasted its CPU (on a
 * loaded machine, CPU another process needed). After a miss the next spins are skipped, twice
 * as many after each further miss in a row; one hit starts over.
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
    this.#toSkip = 2 ** this.#missesInRow;
  }
}

/** At most 2^10 waits skipped after a run of misses. */
const MISSES_COUNTED_MAX = 10;
