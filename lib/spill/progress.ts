/**
 * Progress of long spill work (copies to and from S3) on stderr: nothing for work that ends
 * within PROGRESS_AFTER_MS, then a line at most every PROGRESS_EVERY_MS, and one at the end.
 * `OBJSTORE_QUIET=1` silences it.
 */
import process from "node:process";

const PROGRESS_AFTER_MS = 2000;
const PROGRESS_EVERY_MS = 1000;

export class Progress {
  readonly #label: string;
  readonly #totalBytes: number;
  readonly #startMs = Date.now();
  #lastReportMs = 0;
  #reported = false;

  constructor(label: string, totalBytes: number) {
    this.#label = label;
    this.#totalBytes = totalBytes;
  }

  update(doneBytes: number): void {
    const now = Date.now();
    if (now - this.#startMs < PROGRESS_AFTER_MS || now - this.#lastReportMs < PROGRESS_EVERY_MS) return;
    this.#lastReportMs = now;
    this.#report(doneBytes, now);
  }

  done(): void {
    if (this.#reported) this.#report(this.#totalBytes, Date.now());
  }

  #report(doneBytes: number, now: number): void {
    if (process.env.OBJSTORE_QUIET === "1") return;
    this.#reported = true;
    const seconds = Math.max((now - this.#startMs) / 1000, 0.001);
    const percent = this.#totalBytes === 0 ? 100 : Math.floor((doneBytes / this.#totalBytes) * 100);
    process.stderr.write(`objstore: ${this.#label}: ${percent}% (${mb(doneBytes)} of ${mb(this.#totalBytes)} MB, ${mb(doneBytes / seconds)} MB/s)\n`);
  }
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0);
}
