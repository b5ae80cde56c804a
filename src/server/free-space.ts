import { statfs } from 'node:fs/promises';

/**
 * Free disk space under the data directory, for the check each upload makes as it starts. An upload of
 * `exactBelow` bytes or more measures afresh (`statfs`), as every upload once did. Smaller ones reuse a
 * measurement younger than `maxAgeMs`, minus the bytes claimed since, so thousands of small files do not
 * each pay a file-system call, and a burst of them cannot pass on one stale figure.
 */
export class FreeSpace {
  readonly #dir: string;
  readonly #maxAgeMs: number;
  readonly #exactBelow: number;
  #measured: Promise<number | null> | null = null;
  #at = 0;
  #claimed = 0;
  readonly #unchecked: boolean;

  /** `unchecked`: no file system to measure (files in an object store): `claim` always answers null. */
  constructor(dir: string, options: { maxAgeMs?: number; exactBelow?: number; unchecked?: boolean } = {}) {
    this.#unchecked = options.unchecked === true;
    this.#dir = dir;
    this.#maxAgeMs = options.maxAgeMs ?? 250;
    this.#exactBelow = options.exactBelow ?? 64 * 1024;
  }

  /**
   * Counts `bytes` as about to be written and returns the free bytes there were before them, or null where
   * statfs is not available (no check then).
   */
  async claim(bytes: number): Promise<number | null> {
    if (this.#unchecked) return null;
    const now = Date.now();
    if (this.#measured === null || bytes >= this.#exactBelow || now - this.#at >= this.#maxAgeMs) {
      this.#at = now;
      this.#claimed = 0;
      this.#measured = freeBytes(this.#dir);
    }
    const measured = this.#measured;
    const claimedBefore = this.#claimed;
    this.#claimed += bytes;
    const free = await measured;
    return free === null ? null : free - claimedBefore;
  }
}

/** Free bytes for an unprivileged writer on the file system of `dir`, or null where statfs is unavailable. */
async function freeBytes(dir: string): Promise<number | null> {
  try {
    const s = await statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}
