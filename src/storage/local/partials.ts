import { createHash } from 'node:crypto';
import { mkdir, opendir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { joinVirtual } from '../../core/paths.ts';
import { errno } from './errors.ts';
import { lstatOrNull } from './home.ts';

/**
 * A hold on a name (NameLocks): called, it lets go (once: later calls do nothing); `ending` says it will soon (see
 * NameLocks.takeWhenFree), and does nothing once it has let go.
 */
export type NameHold = (() => void) & { ending(): void };

/** How long a new upload waits for an earlier upload of the same name that is ending (see NameLocks.takeWhenFree). */
export const ENDING_WAIT_MS = 15_000;

type Holder = { ending: boolean; waiters: Array<() => void> };

/**
 * The names ferry is writing in this process: the target of each upload in progress (one upload per target)
 * and of a rename without overwrite while it runs. One set per data directory (the driver's).
 */
export class NameLocks {
  readonly #held = new Map<string, Holder>();

  /** Takes `key`: null when it is taken. `onRelease` runs once, when the hold lets go. */
  take(key: string, onRelease?: () => void): NameHold | null {
    if (this.#held.has(key)) return null;
    const holder: Holder = { ending: false, waiters: [] };
    this.#held.set(key, holder);
    const release = () => {
      if (this.#held.get(key) !== holder) return; // let go already: the name may be someone else's now
      this.#held.delete(key);
      onRelease?.();
      for (const wake of holder.waiters) wake();
    };
    return Object.assign(release, {
      ending: () => {
        holder.ending = true; // once let go, the holder is nobody's: marking it changes nothing
      },
    });
  }

  /**
   * Takes `key`, waiting up to `waitMs` while its holder is an upload that is ending (its connection dropped, or it
   * was cancelled, and what it received is being kept or dropped): a client that comes straight back to resume is not
   * told `busy` about an upload that is already over. Null when the name stays taken.
   */
  async takeWhenFree(key: string, onRelease?: () => void, waitMs = ENDING_WAIT_MS): Promise<NameHold | null> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const hold = this.take(key, onRelease);
      if (hold !== null) return hold;
      const holder = this.#held.get(key);
      const left = deadline - Date.now();
      if (holder === undefined || !holder.ending || left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        holder.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/** An upload's claim on its target and its partial file (see `Partials.reserve`). */
export interface Reservation {
  partial: string;
  sidecar: string;
  /** Gives the target and the partial back (once: later calls do nothing). */
  release(): void;
  /** The upload is ending (stopped, not committed): a new upload of the target may wait for `release`. */
  ending(): void;
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
   * Takes the upload lock on `target` (`busy` if another upload holds it, after waiting a while for one that is
   * ending) and names the partial and its sidecar (keyed by path and size); the partial is marked active before the
   * file is touched, so that a sweep cannot race us. `release` undoes both.
   */
  async reserve(target: string, segments: readonly string[], size: number, shown: string): Promise<Reservation> {
    const key = `${createHash('sha256').update(joinVirtual(segments)).digest('hex')}-${size}`;
    const partial = join(this.dir, `${key}.part`);
    const sidecar = join(this.dir, `${key}.json`);
    const hold = await this.#locks.takeWhenFree(target, () => this.#active.delete(partial));
    if (hold === null) throw new FerryError('busy', `Cannot upload ${shown}: another upload of it is in progress`);
    this.#active.add(partial);
    return {
      partial,
      sidecar,
      release: hold,
      ending: hold.ending,
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
