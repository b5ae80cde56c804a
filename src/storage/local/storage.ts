import { mkdir, realpath, rename, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry } from '../../core/types.ts';
import { FerryError } from '../../core/errors.ts';
import { parseVirtualPath } from '../../core/paths.ts';
import type { BundleOptions, BundleReadOptions, BundleSink, ReadHandle, Storage, Upload, UploadOptions, WholeOptions } from '../storage.ts';
import { checkPageSize } from '../checks.ts';
import { localBundle, localBundleRead } from './bundle.ts';
import { inside } from './confine.ts';
import { errno, fail, leaves, show } from './errors.ts';
import { Home } from './home.ts';
import type { SmallCommits } from './lanes.ts';
import { entryOf, listPages, listTreePages, usageOf } from './listing.ts';
import type { NameLocks, Partials } from './partials.ts';
import { openRead } from './read.ts';
import { createUpload, putWhole } from './upload.ts';

/**
 * One user's storage on the local disk: every path is a virtual path, parsed by `parseVirtualPath` and confined
 * to the home (home.ts); uploads go through partials outside the home (partials.ts, upload.ts).
 *
 * Symlinks in a home (clients cannot make them; an administrator or another program can):
 * - a symlink whose target is inside the home is followed by `stat`, `list`, `openRead` and when used as a
 *   directory in a path, and listed as what it points to; `remove`, `rename` and an overwriting upload act on
 *   the link itself, as `rm` and `mv` do, never on its target;
 * - a symlink whose target is outside the home, or that leads nowhere, is left out of listings and refused with
 *   `invalid_path` ("Path 'x' leaves your home") by every operation that names it or passes through it.
 * `usage()` never follows symlinks. Entries that are neither regular files nor directories (FIFOs, sockets,
 * devices) and names a client could not send (not valid UTF-8 NFC path segments) are left out of listings, and
 * `stat` returns null for the former.
 */
export class LocalStorage implements Storage {
  readonly #home: Home;
  readonly #partials: Partials;
  readonly #locks: NameLocks;
  readonly #commits: SmallCommits | null;

  constructor(homeDir: string, partials: Partials, locks: NameLocks, commits: SmallCommits | null, pin: boolean | undefined) {
    this.#home = new Home(homeDir, pin);
    this.#partials = partials;
    this.#locks = locks;
    this.#commits = commits;
  }

  async stat(path: string): Promise<Entry | null> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const home = await this.#home.real();
    let real: string;
    try {
      real = await realpath(join(home, ...segments));
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw fail(err, 'stat', shown);
    }
    if (!inside(real, home)) throw leaves(shown);
    const info = await this.#home.lstatReal(real, 'stat', shown);
    return info === null ? null : entryOf(segments.at(-1) ?? '', info);
  }

  async *list(path: string, pageSize = 1000): AsyncIterable<Entry[]> {
    checkPageSize(pageSize);
    const segments = parseVirtualPath(path);
    yield* listPages(this.#home, segments, show(segments), pageSize);
  }

  async *listTree(path: string, pageSize = 1000): AsyncIterable<Entry[]> {
    checkPageSize(pageSize);
    const segments = parseVirtualPath(path);
    yield* listTreePages(this.#home, segments, show(segments), pageSize);
  }

  async openRead(path: string): Promise<ReadHandle> {
    const segments = parseVirtualPath(path);
    return openRead(this.#home, this.#commits, segments, show(segments));
  }

  async createUpload(path: string, options: UploadOptions): Promise<Upload> {
    const segments = parseVirtualPath(path);
    return createUpload({ home: this.#home, partials: this.#partials, commits: this.#commits }, segments, show(segments), options);
  }

  async putWhole(path: string, bytes: Buffer, options: WholeOptions): Promise<Entry> {
    const segments = parseVirtualPath(path);
    return putWhole({ home: this.#home, partials: this.#partials, commits: this.#commits }, segments, show(segments), bytes, options);
  }

  async openBundle(options: BundleOptions): Promise<BundleSink | null> {
    await this.#home.real(); // settles whether directories are pinned
    if (!this.#home.pinned || this.#commits === null) return null;
    return localBundle(this.#home, this.#partials, this.#commits, options);
  }

  async openBundleRead(options: BundleReadOptions): Promise<BundleSink | null> {
    await this.#home.real(); // settles whether directories are pinned
    if (!this.#home.pinned || this.#commits === null) return null;
    return localBundleRead(this.#home, this.#commits, options);
  }

  async remove(path: string): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const verb = 'remove';
    if (segments.length === 0) throw new FerryError('invalid_path', 'Cannot remove your home');
    await this.#home.inParent(segments, verb, shown, async (dir, name) => {
      const target = join(dir.at, name);
      const info = await this.#home.lstatConfined(target, verb, shown);
      if (info === null) throw new FerryError('not_found', `Cannot remove ${shown}: no such file or directory`);
      try {
        if (info.isDirectory()) await rmdir(target);
        else await unlink(target);
      } catch (err) {
        throw fail(err, verb, shown);
      }
    });
  }

  /** With `parents: true`, missing directories on the way are created and an existing directory is fine (mkdir -p). */
  async mkdir(path: string, options: { parents?: boolean } = {}): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const verb = 'create directory';
    if (options.parents === true) {
      await (await this.#home.mkdirs(segments, verb, shown, true)).close();
      return;
    }
    if (segments.length === 0) throw new FerryError('exists', 'Cannot create your home: it exists');
    await this.#home.inParent(segments, verb, shown, async (dir, name) => {
      try {
        await mkdir(join(dir.at, name));
      } catch (err) {
        throw fail(err, verb, shown);
      }
    });
  }

  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const source = parseVirtualPath(from);
    const dest = parseVirtualPath(to);
    const shownFrom = show(source);
    const shownTo = show(dest);
    if (source.length === 0) throw new FerryError('invalid_path', 'Cannot rename your home');
    if (dest.length === 0) throw new FerryError('invalid_path', `Cannot rename ${shownFrom} to your home`);
    const verb = 'rename';
    await this.#home.inParent(source, verb, shownFrom, async (srcDir, srcName) => {
      const src = join(srcDir.at, srcName);
      const srcInfo = await this.#home.lstatConfined(src, verb, shownFrom);
      if (srcInfo === null) throw new FerryError('not_found', `Cannot rename ${shownFrom}: no such file or directory`);
      await this.#home.inParent(dest, verb, shownTo, async (dstDir, dstName) => {
        const srcReal = join(srcDir.real, srcName);
        if (join(dstDir.real, dstName) === srcReal) return;
        if (srcInfo.isDirectory() && inside(dstDir.real, srcReal)) {
          throw new FerryError('invalid_path', `Cannot move ${shownFrom} into itself`);
        }
        const dst = join(dstDir.at, dstName);
        const overwrite = options.overwrite === true;
        // Without overwrite, the target's name is locked (as an upload locks it) from the check to the rename,
        // so nothing of ferry's can create it in between, and a plain rename stays atomic across a crash
        // (a link + unlink would leave the file under both names if the server died between the two).
        const key = join(dstDir.real, dstName);
        const hold = overwrite ? null : this.#locks.take(key);
        if (!overwrite && hold === null) throw new FerryError('busy', `Cannot rename to ${shownTo}: an upload of it is in progress`);
        try {
          const dstInfo = await this.#home.lstatConfined(dst, verb, shownTo);
          if (dstInfo !== null && !overwrite) throw new FerryError('exists', `Cannot rename to ${shownTo}: it exists`);
          await rename(src, dst);
        } catch (err) {
          throw fail(err, verb, shownTo);
        } finally {
          hold?.();
        }
      });
    });
  }

  async usage(): Promise<{ bytes: number; files: number }> {
    return usageOf(this.#home);
  }
}
