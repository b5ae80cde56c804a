import { createHash } from 'node:crypto';
import { mkdir, opendir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { joinVirtual } from '../../core/paths.ts';
import { errno } from './errors.ts';
import { lstatOrNull } from './home.ts';

/**
 * The names ferry is writing in this process: the target of each upload in progress (one upload per target)
 * and of a rename without overwrite while it runs. One set per data directory (the driver's).
 */
export class NameLocks {
  readonly #held = new Set<string>();

  /** Takes `key`; false when it is taken. */
  lock(key: string): boolean {
    if (this.#held.has(key)) return false;
    this.#held.add(key);
    return true;
  }

  unlock(key: string): void {
    this.#held.delete(key);
  }
}

/** An upload's claim on its target and its partial file (see `Partials.reserve`). */
export interface Reservation {
  partial: string;
  sidecar: string;
  /** Gives the target and the partial back. */
  release(): void;
  /** Writes the sidecar that describes the partial to whoever finds it left behind. */
  writeSidecar(): Promise<void>;
}

/**
 * One user's uploads in progress: `<data>/.partial/<user>/`, outside every home, each upload as
 * `<sha256(path)>-<size>.part` with a JSON sidecar `<sha256(path)>-<size>.json` holding `{ path, size, created }`
 * for whoever looks at a partial left behind.
 */
export class Partials {
  readonly dir: string;
  readonly #locks: NameLocks;
  /** Partial files of uploads in progress (the driver's, for every user): the sweeper leaves them alone. */
  readonly #active: Set<string>;
  #made: Promise<void> | undefined;

  constructor(dir: string, locks: NameLocks, active: Set<string>) {
    this.dir = dir;
    this.#locks = locks;
    this.#active = active;
  }

  /** Makes the folder (mode 0700) on first use; a failure is tried again next time. */
  ensure(): Promise<void> {
    this.#made ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {});
    const made = this.#made;
    made.catch(() => {
      if (this.#made === made) this.#made = undefined;
    });
    return made;
  }

  /**
   * Takes the upload lock on `target` (`busy` if another upload holds it) and names the partial and its
   * sidecar (keyed by path and size); the partial is marked active before the file is touched, so that a sweep
   * cannot race us. `release` undoes both.
   */
  reserve(target: string, segments: readonly string[], size: number, shown: string): Reservation {
    if (!this.#locks.lock(target)) throw new FerryError('busy', `Cannot upload ${shown}: another upload of it is in progress`);
    const key = `${createHash('sha256').update(joinVirtual(segments)).digest('hex')}-${size}`;
    const partial = join(this.dir, `${key}.part`);
    const sidecar = join(this.dir, `${key}.json`);
    this.#active.add(partial);
    return {
      partial,
      sidecar,
      release: () => {
        this.#locks.unlock(target);
        this.#active.delete(partial);
      },
      writeSidecar: () => writeFile(sidecar, `${JSON.stringify({ path: joinVirtual(segments), size, created: Date.now() })}\n`, { mode: 0o600 }),
    };
  }
}

/**
 * Deletes partial uploads (and their sidecars) under `root` (`<data>/.partial`) not written for `maxAgeMs`,
 * leaving alone those in `active`; returns how many partials went.
 */
export async function sweepPartials(root: string, active: ReadonlySet<string>, maxAgeMs: number): Promise<number> {
  const cutoff = Date.now() - maxAgeMs;
  let removed = 0;
  let users;
  try {
    users = await opendir(root);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 0;
    throw err;
  }
  for await (const user of users) {
    if (!user.isDirectory()) continue;
    const dir = join(root, user.name);
    let files;
    try {
      files = await opendir(dir);
    } catch (err) {
      if (errno(err) === 'ENOENT') continue;
      throw err;
    }
    for await (const file of files) {
      const path = join(dir, file.name);
      const isPart = file.name.endsWith('.part');
      const isSidecar = file.name.endsWith('.json');
      if (!isPart && !isSidecar) continue;
      const partial = isPart ? path : `${path.slice(0, -'.json'.length)}.part`;
      if (active.has(partial)) continue;
      const info = await lstatOrNull(path);
      if (info === null || info.mtimeMs >= cutoff) continue;
      if (isPart) {
        await unlinkQuietly(path);
        await unlinkQuietly(`${path.slice(0, -'.part'.length)}.json`);
        removed++;
      } else if ((await lstatOrNull(partial)) === null) {
        await unlinkQuietly(path); // a sidecar whose partial is gone
      }
    }
  }
  return removed;
}

export async function unlinkQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err;
  }
}
