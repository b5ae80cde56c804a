import { join, resolve } from 'node:path';
import { checkHomeName } from '../checks.ts';
import type { Storage, StorageDriver } from '../storage.ts';
import { sharedCommits, type SmallCommits } from './lanes.ts';
import { NameLocks, Partials, sweepPartials } from './partials.ts';
import { LocalStorage } from './storage.ts';

/**
 * Stores each user's files on the local disk, under one data directory:
 *
 * - `<data>/homes/<user>/`: the user's home (created on first use, mode 0700);
 * - `<data>/.partial/<user>/`: uploads in progress, outside every home (partials.ts). The sidecar that
 *   describes a partial is written as the upload starts when it is large or resumable, else when it stops and
 *   keeps its partial (a crash can leave a small partial without one).
 *
 * Both live under the data directory, so committing an upload is a same-filesystem rename (or link). A small
 * upload (upload.ts, SMALL_COMMIT_MAX, pinned mode) is held in memory instead and written as its partial only
 * at commit, by a worker thread that places it in the same hop (lanes.ts, worker.ts), or when it stops and
 * keeps it. Confinement: home.ts and confine.ts.
 *
 * One driver per data directory per process: the upload locks live in the driver.
 *
 * @example
 * ```ts
 * const driver = new LocalDiskDriver('/var/lib/ferry');
 * const storage = driver.forUser('alice');
 * const upload = await storage.createUpload('notes/a.txt', { size: 5, parents: true });
 * await upload.write([Buffer.from('hello')]);
 * await upload.commit('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
 * ```
 */
export class LocalDiskDriver implements StorageDriver {
  readonly dataDir: string;
  /** Real target paths of uploads in progress (one upload per target), and of renames without overwrite. */
  readonly #locks = new NameLocks();
  /** Partial files of uploads in progress; the sweeper leaves them alone. */
  readonly #active = new Set<string>();
  readonly #pin: boolean | undefined;
  /** Commits of small uploads in the process's worker threads (lanes.ts); null: every upload goes through the thread pool. */
  readonly #commits: SmallCommits | null;

  /**
   * `pinDirectories` (default: wherever `/proc/self/fd` works) turns the opened-directory checks on or off;
   * tests turn it off to exercise the fallback. `smallCommits` (default true) commits small uploads in worker
   * threads (pinned mode only); tests turn it off to exercise the thread-pool path for them too.
   */
  constructor(dataDir: string, options: { pinDirectories?: boolean; smallCommits?: boolean } = {}) {
    this.dataDir = resolve(dataDir);
    this.#pin = options.pinDirectories;
    this.#commits = options.smallCommits === false ? null : sharedCommits();
  }

  /** The storage of one user. Throws `invalid_username` for a name that is not a single path segment. */
  forUser(user: string): Storage {
    checkHomeName(user);
    const partials = new Partials(join(this.dataDir, '.partial', user), this.#locks, this.#active);
    return new LocalStorage(join(this.dataDir, 'homes', user), partials, this.#locks, this.#commits, this.#pin);
  }

  /** Deletes partial uploads (and their sidecars) not written for `maxAgeMs`; returns how many partials went. */
  sweepPartials(maxAgeMs: number): Promise<number> {
    return sweepPartials(join(this.dataDir, '.partial'), this.#active, maxAgeMs);
  }
}
