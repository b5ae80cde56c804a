import type { Stats } from 'node:fs';
import { lstat, mkdir, open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { joinVirtual, quotePath } from '../../core/paths.ts';
import { syncDir } from '../../fs/atomic.ts';
import { DIR_FLAGS, inside, linkRefusal, O_DIRECTORY, O_NOFOLLOW, pinnedPath, targetRefusal } from './confine.ts';
import { errno, fail, leaves, refusal } from './errors.ts';

/** A directory opened for the names in it (see `Home.openDir`). */
export interface Dir {
  /** Where to join names: `/proc/self/fd/N` when pinned, else the directory's real path. */
  readonly at: string;
  /** Its real path, as opened. */
  readonly real: string;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * One user's home on the local disk and every confinement check made on the event loop (the rules are in
 * confine.ts; the commit worker makes the same checks with synchronous calls).
 *
 * Every path is resolved with `realpath` and required to stay inside `realpath(home)`. Then the directory that
 * holds the name acted on is *opened* and, when pinned (Linux), checked again after the open through
 * `/proc/self/fd/N`, which names what was really opened; every create, open, rename, link and unlink then goes
 * through `/proc/self/fd/N/<name>`, so a directory swapped for a symlink after the check (by a program on the
 * server) cannot redirect the operation outside the home, and the final name is never followed. This emulates
 * `openat`/`renameat`, which Node lacks. Where `/proc/self/fd` does not name opened directories, the realpath
 * checks alone remain and the swap race stays open; `pinned` tells which mode a home runs in.
 */
export class Home {
  readonly dir: string;
  #pin: boolean | undefined;
  #real: Promise<string> | undefined;

  /** `pin`: whether directories are opened and checked through /proc/self/fd (default: wherever that works). */
  constructor(dir: string, pin: boolean | undefined) {
    this.dir = dir;
    this.#pin = pin;
  }

  /** Whether directories are pinned; settled by the first `real()`. */
  get pinned(): boolean {
    return this.#pin === true;
  }

  /** The real path of the home, which is made (mode 0700) on first use. A failure is tried again next time. */
  real(): Promise<string> {
    this.#real ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.#pin ??= await canPinDirectories();
      return realpath(this.dir);
    })();
    const home = this.#real;
    home.catch(() => {
      if (this.#real === home) this.#real = undefined;
    });
    return home;
  }

  /**
   * Opens the directory at `path` (its last component is not followed) and checks that what was opened is
   * inside the home, so names joined to `at` are looked up in that directory whatever happens to the path
   * meanwhile. Without pinning, `at` is `path` itself (already resolved and checked by the caller).
   */
  async openDir(path: string, verb: string, shown: string): Promise<Dir> {
    const home = await this.real();
    if (!this.pinned) return { at: path, real: path, sync: () => syncDir(path), close: async () => {} };
    let handle: FileHandle;
    try {
      handle = await open(path, DIR_FLAGS | O_NOFOLLOW);
    } catch (err) {
      throw fail(err, verb, shown);
    }
    return this.#checkOpened(handle, home, verb, shown);
  }

  /**
   * Opens the directory named by `segments` and checks it is inside the home. Pinned: one `open` that follows
   * links on the way (`O_DIRECTORY`: nothing but a directory is ever opened) and a check of what was opened,
   * which is what a `realpath` check would conclude, without the race. Otherwise: realpath, then `openDir`.
   */
  async openPath(segments: readonly string[], verb: string, shown: string): Promise<Dir> {
    const home = await this.real();
    if (!this.pinned) return this.openDir(await this.resolve(segments, verb, shown), verb, shown);
    let handle: FileHandle;
    try {
      handle = await open(join(home, ...segments), DIR_FLAGS);
    } catch (err) {
      throw fail(err, verb, shown);
    }
    return this.#checkOpened(handle, home, verb, shown);
  }

  /** The Dir for an opened directory, once `/proc/self/fd` shows it is inside the home; closes it otherwise. */
  async #checkOpened(handle: FileHandle, home: string, verb: string, shown: string): Promise<Dir> {
    try {
      const at = pinnedPath(handle.fd);
      const real = await readlink(at);
      if (!inside(real, home)) throw leaves(shown);
      return { at, real, sync: () => handle.sync().catch(() => {}), close: () => handle.close() };
    } catch (err) {
      await handle.close().catch(() => {});
      throw fail(err, verb, shown);
    }
  }

  /** Runs `use` with the directory at `path` opened and checked (see `openDir`), closing it afterwards. */
  async inDir<T>(path: string, verb: string, shown: string, use: (dir: Dir) => Promise<T>): Promise<T> {
    const dir = await this.openDir(path, verb, shown);
    try {
      return await use(dir);
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /** Runs `use` with the opened parent directory of the last segment, and that segment. */
  async inParent<T>(segments: readonly string[], verb: string, shown: string, use: (dir: Dir, name: string) => Promise<T>): Promise<T> {
    const dir = await this.openPath(segments.slice(0, -1), verb, shown);
    try {
      return await use(dir, segments.at(-1) ?? '');
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /** realpath of an existing path, confined to the home. */
  async resolve(segments: readonly string[], verb: string, shown: string): Promise<string> {
    const home = await this.real();
    let real: string;
    try {
      real = await realpath(join(home, ...segments));
    } catch (err) {
      throw fail(err, verb, shown);
    }
    if (!inside(real, home)) throw leaves(shown);
    return real;
  }

  /** lstat of a resolved, confined path, through its opened parent; a symlink there now was swapped in. */
  async lstatReal(real: string, verb: string, shown: string): Promise<Stats | null> {
    if (real === (await this.real())) return statOrNull(real);
    return this.inDir(dirname(real), verb, shown, async (dir) => {
      const info = await lstatOrNull(join(dir.at, basename(real)));
      if (info?.isSymbolicLink()) throw leaves(shown);
      return info;
    });
  }

  /** The deepest existing directory of `segments` (real, confined) and the segments missing below it. */
  async existingAncestor(segments: readonly string[], verb: string, shown: string): Promise<{ dir: string; missing: string[] }> {
    const home = await this.real();
    for (let i = segments.length; i >= 0; i--) {
      let real: string;
      try {
        real = await realpath(join(home, ...segments.slice(0, i)));
      } catch (err) {
        if (errno(err) === 'ENOENT' && i > 0) continue;
        throw fail(err, verb, shown);
      }
      if (!inside(real, home)) throw leaves(shown);
      return { dir: real, missing: segments.slice(i) };
    }
    throw new FerryError('internal', `Cannot ${verb} ${shown}: your home is missing`);
  }

  /**
   * Creates each missing directory of `segments` in turn, each inside the opened one before it, checking
   * confinement at every step. Returns the last directory opened; the caller closes it.
   */
  async mkdirs(segments: readonly string[], verb: string, shown: string, lastMayExist: boolean): Promise<Dir> {
    const home = await this.real();
    // Usually every directory is there already (an upload into an existing folder): one open. Otherwise the
    // walk below creates what is missing, or says precisely which component is in the way.
    try {
      return await this.openPath(segments, verb, shown);
    } catch (err) {
      if (!(err instanceof FerryError && (err.code === 'not_found' || err.code === 'not_a_directory'))) throw err;
    }
    let current = await this.openDir(home, verb, shown);
    try {
      for (const [i, segment] of segments.entries()) {
        const here = quotePath(joinVirtual(segments.slice(0, i + 1)));
        const notDirectory = (): FerryError =>
          i === segments.length - 1 && lastMayExist
            ? new FerryError('exists', `Cannot ${verb} ${shown}: a file is in the way`)
            : new FerryError('not_a_directory', `Cannot ${verb} ${shown}: ${here} is not a directory`);
        let next = join(current.at, segment);
        try {
          await mkdir(next);
        } catch (err) {
          if (errno(err) !== 'EEXIST') throw fail(err, verb, shown);
          const info = await this.lstatConfined(next, verb, shown);
          if (info === null) throw new FerryError('not_found', `Cannot ${verb} ${shown}: it vanished while being created`);
          // lstatConfined refused symlinks leading out of the home; one leading inside counts as what it points to.
          if (info.isSymbolicLink()) next = (await realpathOrNull(next)) ?? next;
          else if (!info.isDirectory()) throw notDirectory();
        }
        let child: Dir;
        try {
          child = await this.openDir(next, verb, shown);
        } catch (err) {
          throw err instanceof FerryError && err.code === 'not_a_directory' ? notDirectory() : err;
        }
        await current.close().catch(() => {});
        current = child;
      }
      return current;
    } catch (err) {
      await current.close().catch(() => {});
      throw err;
    }
  }

  /**
   * lstat of a path whose parent is already confined; null if nothing is there. A symlink is refused unless its
   * target resolves inside the home.
   */
  async lstatConfined(path: string, verb: string, shown: string): Promise<Stats | null> {
    let info: Stats;
    try {
      info = await lstat(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') return null;
      throw fail(err, verb, shown);
    }
    if (info.isSymbolicLink() && linkRefusal(await realpathOrNull(path), await this.real()) !== null) throw leaves(shown);
    return info;
  }

  /**
   * Refuses an upload target that is a directory, or that exists when overwriting is not allowed; returns what
   * is there (a link inside the home: what it points to), or null.
   */
  async checkTarget(target: string, overwrite: boolean, verb: string, shown: string): Promise<Stats | null> {
    const info = await this.lstatConfined(target, verb, shown);
    if (info === null) return null;
    const kind = info.isSymbolicLink() ? await statOrNull(target) : info;
    const refused = targetRefusal(true, kind?.isDirectory() === true, overwrite);
    if (refused !== null) throw refusal(refused, verb, shown);
    return kind;
  }
}

let pinProbe: Promise<boolean> | undefined;

/**
 * Whether `/proc/self/fd/N` names the directory this process opened as N (Linux with procfs, on Node and on
 * Deno), so that directories can be pinned: probed once, with two directories so that descriptor numbers that
 * are not the kernel's cannot pass by chance.
 */
export function canPinDirectories(): Promise<boolean> {
  pinProbe ??= (async () => {
    if (process.platform !== 'linux' || O_DIRECTORY === 0) return false;
    for (const dir of ['/', '/proc']) {
      let handle: FileHandle | undefined;
      try {
        handle = await open(dir, DIR_FLAGS);
        if ((await readlink(pinnedPath(handle.fd))) !== dir) return false;
      } catch {
        return false;
      } finally {
        await handle?.close().catch(() => {});
      }
    }
    return true;
  })();
  return pinProbe;
}

export async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}

export async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch {
    return null;
  }
}

export async function realpathOrNull(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}
