import { Buffer } from 'node:buffer';
import { constants, type Stats } from 'node:fs';
import { link, lstat, mkdir, open, opendir, readlink, realpath, rename, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { FerryError } from '../core/errors.ts';
import type { Entry } from '../core/entry.ts';
import { joinVirtual, parseVirtualPath, quotePath } from '../core/paths.ts';
import type { ReadHandle, Storage, StorageDriver, Upload, UploadOptions } from './storage.ts';
import { syncDir } from '../fs/atomic.ts';
import { utimeSeconds } from '../fs/time.ts';
import { SmallCommits } from './commit-worker.ts';

// Flags missing on a platform (Windows has no O_NOFOLLOW) are 0, which leaves the realpath checks.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
// A FIFO planted in a home would block open() for reading forever; O_NONBLOCK makes it return at once.
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;
const EMPTY_SHA256 = createHash('sha256').digest('hex');
/** Directory entries stat'ed at once while listing or summing usage. */
const STAT_BATCH = 64;
const HASH_BUFFER = 1 << 20;
/**
 * Uploads of at least this size (and every resumable one) write their sidecar as they start; smaller ones
 * only when they stop and keep their partial, which saves four file-system calls per small file.
 */
const SIDECAR_MIN_SIZE = 1 << 20;
/**
 * Uploads up to this size (not resumable, into an existing directory, in pinned mode) are held in memory until
 * `commit`, which writes and places them in one hop to a worker thread (see commit-worker.ts).
 */
const SMALL_COMMIT_MAX = 64 * 1024;

/**
 * Stores each user's files on the local disk, under one data directory:
 *
 * - `<data>/homes/<user>/`: the user's home (created on first use, mode 0700);
 * - `<data>/.partial/<user>/`: uploads in progress, outside every home, as `<sha256(path)>-<size>.part`
 *   with a JSON sidecar `<sha256(path)>-<size>.json` holding `{ path, size, created }` for whoever looks at
 *   a partial left behind (written as the upload starts when it is large or resumable, else when it stops
 *   and keeps its partial; a crash can leave a small partial without one).
 *
 * Both live under the data directory, so committing an upload is a same-filesystem rename (or link).
 * A small upload (SMALL_COMMIT_MAX, pinned mode) is held in memory instead and written as its partial only at
 * commit, by a worker thread that places it in the same hop (commit-worker.ts), or when it stops and keeps it.
 *
 * Confinement. Every path is parsed by `parseVirtualPath`, then resolved with `realpath` and required to
 * stay inside `realpath(home)`. Then the directory that holds the name acted on is *opened* (`O_DIRECTORY`,
 * `O_NOFOLLOW`) and, on Linux, checked again after the open through `/proc/self/fd/N`, which names what
 * was really opened. Every create, open, rename, link and unlink then goes through `/proc/self/fd/N/<name>`:
 * the kernel looks `name` up in that very directory, so a directory swapped for a symlink after the check
 * (by a program on the server) cannot redirect the operation outside the home, and the final name is never
 * followed (`O_NOFOLLOW`, `lstat`, or calls that do not follow it). This emulates `openat`/`renameat`, which
 * Node lacks. Where `/proc/self/fd` does not name opened directories (not Linux, no procfs), the realpath
 * checks alone remain and the swap race stays open; `pinsDirectories` tells which mode a storage runs in.
 * Symlinks in a home (clients cannot make them; an administrator or another program can):
 * - a symlink whose target is inside the home is followed by `stat`, `list`, `openRead` and when used as
 *   a directory in a path, and listed as what it points to; `remove`, `rename` and an overwriting upload
 *   act on the link itself, as `rm` and `mv` do, never on its target;
 * - a symlink whose target is outside the home, or that leads nowhere, is left out of listings and refused
 *   with `invalid_path` ("Path 'x' leaves your home") by every operation that names it or passes through it.
 * `usage()` never follows symlinks. Entries that are neither regular files nor directories (FIFOs, sockets,
 * devices) and names a client could not send (not valid UTF-8 NFC path segments) are left out of listings,
 * and `stat` returns null for the former.
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
  /** Real target paths of uploads in progress (one upload per target). */
  readonly #locks = new Set<string>();
  /** Partial files of uploads in progress; the sweeper leaves them alone. */
  readonly #active = new Set<string>();
  readonly #pin: boolean | undefined;
  /** Commits of small uploads in worker threads; null: every upload goes through the thread pool. */
  readonly #commits: SmallCommits | null;

  /**
   * `pinDirectories` (default: wherever `/proc/self/fd` works) turns the opened-directory checks on or
   * off; tests turn it off to exercise the fallback. `smallCommits` (default true) commits small uploads in
   * worker threads (pinned mode only); tests turn it off to exercise the thread-pool path for them too.
   */
  constructor(dataDir: string, options: { pinDirectories?: boolean; smallCommits?: boolean } = {}) {
    this.dataDir = resolve(dataDir);
    this.#pin = options.pinDirectories;
    this.#commits = options.smallCommits === false ? null : new SmallCommits();
  }

  /** The storage of one user. Throws `invalid_username` for a name that is not a single path segment. */
  forUser(user: string): Storage {
    let segments: string[];
    try {
      segments = parseVirtualPath(user);
    } catch {
      segments = [];
    }
    if (segments.length !== 1 || segments[0] !== user) {
      throw new FerryError('invalid_username', `User name ${quotePath(String(user))} cannot name a home directory`);
    }
    return new LocalStorage(
      { lock: (key) => this.#lock(key), unlock: (key) => this.#locks.delete(key), active: this.#active, commits: this.#commits },
      join(this.dataDir, 'homes', user),
      join(this.dataDir, '.partial', user),
      this.#pin,
    );
  }

  /** Deletes partial uploads (and their sidecars) not written for `maxAgeMs`; returns how many partials went. */
  async sweepPartials(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    const root = join(this.dataDir, '.partial');
    let removed = 0;
    let users;
    try {
      users = await opendir(root);
    } catch (err) {
      if (_errno(err) === 'ENOENT') return 0;
      throw err;
    }
    for await (const user of users) {
      if (!user.isDirectory()) continue;
      const dir = join(root, user.name);
      let files;
      try {
        files = await opendir(dir);
      } catch (err) {
        if (_errno(err) === 'ENOENT') continue;
        throw err;
      }
      for await (const file of files) {
        const path = join(dir, file.name);
        const isPart = file.name.endsWith('.part');
        const isSidecar = file.name.endsWith('.json');
        if (!isPart && !isSidecar) continue;
        const partial = isPart ? path : `${path.slice(0, -'.json'.length)}.part`;
        if (this.#active.has(partial)) continue;
        const info = await _lstatOrNull(path);
        if (info === null || info.mtimeMs >= cutoff) continue;
        if (isPart) {
          await _unlinkQuietly(path);
          await _unlinkQuietly(`${path.slice(0, -'.part'.length)}.json`);
          removed++;
        } else if ((await _lstatOrNull(partial)) === null) {
          await _unlinkQuietly(path); // a sidecar whose partial is gone
        }
      }
    }
    return removed;
  }

  #lock(key: string): boolean {
    if (this.#locks.has(key)) return false;
    this.#locks.add(key);
    return true;
  }
}

interface Locks {
  lock(key: string): boolean;
  unlock(key: string): void;
  active: Set<string>;
  commits: SmallCommits | null;
}

class LocalStorage implements Storage {
  readonly #locks: Locks;
  readonly #homeDir: string;
  readonly #partialDir: string;
  /** Whether directories are opened and checked through /proc/self/fd; settled by #realHome. */
  #pin: boolean | undefined;
  #home: Promise<string> | undefined;
  #partials: Promise<void> | undefined;

  constructor(locks: Locks, homeDir: string, partialDir: string, pin: boolean | undefined) {
    this.#locks = locks;
    this.#homeDir = homeDir;
    this.#partialDir = partialDir;
    this.#pin = pin;
  }

  async stat(path: string): Promise<Entry | null> {
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const home = await this.#realHome();
    let real: string;
    try {
      real = await realpath(join(home, ...segments));
    } catch (err) {
      const code = _errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw _fail(err, 'stat', shown);
    }
    if (!_inside(real, home)) throw _leaves(shown);
    const info = await this.#lstatReal(real, home, 'stat', shown);
    return info === null ? null : _entry(segments.at(-1) ?? '', info);
  }

  /**
   * Reads the directory with `opendir` a page at a time, so memory is bounded by `pageSize` whatever the
   * directory's size. Pages hold at most `pageSize` entries (fewer when entries are left out); an empty
   * directory yields no page. Breaking out of the loop closes the directory.
   */
  async *list(path: string, pageSize = 1000): AsyncIterable<Entry[]> {
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new RangeError(`Page size ${pageSize} is not a positive integer`);
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const home = await this.#realHome();
    const dir = await this.#openPath(segments, home, 'list', shown);
    try {
      let entries;
      try {
        entries = await opendir(dir.at, { bufferSize: 128 });
      } catch (err) {
        throw _fail(err, 'list', shown);
      }
      let names: string[] = [];
      for await (const dirent of entries) {
        names.push(dirent.name);
        if (names.length < pageSize) continue;
        const page = await this.#page(dir, home, names);
        names = [];
        if (page.length > 0) yield page;
      }
      const page = await this.#page(dir, home, names);
      if (page.length > 0) yield page;
    } finally {
      await dir.close();
    }
  }

  async openRead(path: string): Promise<ReadHandle> {
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const verb = 'read';
    const home = await this.#realHome();
    if (this.#pin === true && this.#locks.commits !== null) {
      // Pinned: a small file is checked, opened and read whole in one hop to a worker (commit-worker.ts); a
      // larger one is then opened here as below, to be streamed.
      const r = await this.#locks.commits.read({ path: join(home, ...segments), home, max: SMALL_COMMIT_MAX }).catch(() => null);
      if (r !== null && !r.ok) throw _fail(Object.assign(new Error(r.message ?? ''), { code: r.code }), verb, shown);
      if (r?.refused === 'leaves') throw _leaves(shown);
      if (r?.refused === 'is_a_directory') throw new FerryError('is_a_directory', `Cannot read ${shown}: it is a directory`);
      if (r?.refused === 'not_a_file') throw new FerryError('not_found', `Cannot read ${shown}: not a regular file`);
      if (r?.ok && 'bytes' in r) return new HeldReadHandle(Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), r.mtimeMs, shown);
    }
    const real = await this.#real(segments, verb, shown);
    if (real === home) throw new FerryError('is_a_directory', `Cannot read ${shown}: it is a directory`);
    const handle = await this.#inDir(dirname(real), home, verb, shown, async (dir) => {
      try {
        return await open(join(dir.at, basename(real)), constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } catch (err) {
        throw _fail(err, verb, shown);
      }
    });
    try {
      const info = await handle.stat();
      if (info.isDirectory()) throw new FerryError('is_a_directory', `Cannot read ${shown}: it is a directory`);
      if (!info.isFile()) throw new FerryError('not_found', `Cannot read ${shown}: not a regular file`);
      return new LocalReadHandle(handle, info, shown);
    } catch (err) {
      await handle.close().catch(() => {});
      throw _fail(err, verb, shown);
    }
  }

  async createUpload(path: string, options: UploadOptions): Promise<Upload> {
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const { size } = options;
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`Declared size ${size} is not a whole number of bytes`);
    if (options.mtime !== undefined && !(Number.isFinite(options.mtime) && options.mtime >= 0)) {
      throw new RangeError(`Modification time ${options.mtime} is not a time`);
    }
    const name = segments.at(-1);
    if (name === undefined) throw new FerryError('is_a_directory', 'Cannot upload to your home: it is a directory');
    const home = await this.#realHome();
    if (options.deferChecks === true && this.#smallCommits(options)) return this.#deferredUpload(segments, shown, home, options);
    const parents = segments.slice(0, -1);
    const { dir, missing } = await this.#existingAncestor(parents, 'upload', shown);
    if (missing.length > 0 && options.parents !== true) throw _missingDirectory(parents, missing, shown);
    // Only a check, to refuse early: commit checks again, in the opened directory, at the moment of placing.
    const target = join(dir, ...missing, name);
    const existing = missing.length === 0 ? await this.#checkTarget(target, home, options.overwrite === true, 'upload', shown) : null;
    const replaces = existing === null ? null : _entry(name, existing);

    const { partial, sidecar, release, writeSidecar } = this.#reserve(target, segments, size, shown);
    // Small: nothing touches the disk until commit, which does it all in one hop (see SMALL_COMMIT_MAX).
    const small = this.#smallCommits(options) && missing.length === 0;
    let handle: FileHandle | undefined;
    try {
      await this.#ensurePartialDir();
      const hash = createHash('sha256');
      let offset = 0;
      if (options.resume === true) {
        handle = await _openIfPresent(partial, constants.O_RDWR | O_NOFOLLOW);
        if (handle !== undefined) {
          const info = await handle.stat();
          if (!info.isFile()) {
            await handle.close();
            handle = undefined;
          } else {
            if (info.size > size) await handle.truncate(size);
            offset = Math.min(info.size, size);
            await _hashPrefix(handle, offset, hash);
          }
        }
      }
      if (small) {
        offset = 0;
      } else if (handle === undefined) {
        offset = 0;
        handle = await open(partial, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | O_NOFOLLOW, 0o600);
      } else {
        const now = new Date();
        await handle.utimes(now, now); // a resumed partial starts a new life for the sweeper
      }
      let sidecarWritten = false;
      if (size >= SIDECAR_MIN_SIZE || options.resume === true) {
        if (offset === 0 || (await _lstatOrNull(sidecar)) === null) await writeSidecar();
        sidecarWritten = true;
      }
      const prefix = offset === 0 ? EMPTY_SHA256 : hash.copy().digest('hex');
      return new LocalUpload({
        segments,
        shown,
        size,
        options,
        partial,
        sidecar,
        sidecarWritten,
        writeSidecar,
        replaces,
        createsParents: missing.length > 0,
        handle,
        hash,
        offset,
        prefix,
        release,
        place: () => this.#place(segments, shown, partial, options),
        commitSmall: small ? (chunks) => this.#commitSmall(segments, shown, partial, options, home, chunks, false) : null,
      });
    } catch (err) {
      await handle?.close().catch(() => {});
      release();
      throw _fail(err, 'upload', shown);
    }
  }

  /**
   * Takes the upload lock on `target` (`busy` if another upload holds it) and names the partial and its sidecar
   * (keyed by path and size); the partial is marked active before the file is touched, so that a sweep cannot
   * race us. `release` undoes both.
   */
  #reserve(target: string, segments: readonly string[], size: number, shown: string) {
    if (!this.#locks.lock(target)) throw new FerryError('busy', `Cannot upload ${shown}: another upload of it is in progress`);
    const key = `${createHash('sha256').update(joinVirtual(segments)).digest('hex')}-${size}`;
    const partial = join(this.#partialDir, `${key}.part`);
    const sidecar = join(this.#partialDir, `${key}.json`);
    this.#locks.active.add(partial);
    return {
      partial,
      sidecar,
      release: (): void => {
        this.#locks.unlock(target);
        this.#locks.active.delete(partial);
      },
      writeSidecar: (): Promise<void> =>
        writeFile(sidecar, `${JSON.stringify({ path: joinVirtual(segments), size, created: Date.now() })}\n`, { mode: 0o600 }),
    };
  }

  /** Whether an upload is held in memory and committed in one hop to a worker (see SMALL_COMMIT_MAX). */
  #smallCommits(options: UploadOptions): boolean {
    return this.#pin === true && this.#locks.commits !== null && options.resume !== true && options.size <= SMALL_COMMIT_MAX;
  }

  /**
   * A small upload whose checks wait for its commit (`deferChecks`): no file-system call now. The worker checks
   * the target as it places the file (exists, directory, confinement); a missing directory sends the commit
   * the usual way, which says what is missing, or creates it. The lock is on the path as named (the usual
   * way locks the resolved path: the two differ only through a symlinked directory in the home).
   */
  async #deferredUpload(segments: readonly string[], shown: string, home: string, options: UploadOptions): Promise<Upload> {
    const { partial, sidecar, release, writeSidecar } = this.#reserve(join(home, ...segments), segments, options.size, shown);
    try {
      await this.#ensurePartialDir();
    } catch (err) {
      release();
      throw _fail(err, 'upload', shown);
    }
    return new LocalUpload({
      segments,
      shown,
      size: options.size,
      options,
      partial,
      sidecar,
      sidecarWritten: false,
      writeSidecar,
      replaces: null,
      createsParents: false,
      handle: undefined,
      hash: createHash('sha256'),
      offset: 0,
      prefix: EMPTY_SHA256,
      release,
      place: () => this.#place(segments, shown, partial, options),
      commitSmall: (chunks) => this.#commitSmall(segments, shown, partial, options, home, chunks, true),
    });
  }

  async remove(path: string): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const verb = 'remove';
    if (segments.length === 0) throw new FerryError('invalid_path', 'Cannot remove your home');
    const home = await this.#realHome();
    await this.#inParent(segments, home, verb, shown, async (dir, name) => {
      const target = join(dir.at, name);
      const info = await this.#lstatConfined(target, home, verb, shown);
      if (info === null) throw new FerryError('not_found', `Cannot remove ${shown}: no such file or directory`);
      try {
        if (info.isDirectory()) await rmdir(target);
        else await unlink(target);
      } catch (err) {
        throw _fail(err, verb, shown);
      }
    });
  }

  /** With `parents: true`, missing directories on the way are created and an existing directory is fine (mkdir -p). */
  async mkdir(path: string, options: { parents?: boolean } = {}): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = _show(segments);
    const verb = 'create directory';
    if (options.parents === true) {
      await (await this.#mkdirs(segments, verb, shown, true)).close();
      return;
    }
    if (segments.length === 0) throw new FerryError('exists', 'Cannot create your home: it exists');
    const home = await this.#realHome();
    await this.#inParent(segments, home, verb, shown, async (dir, name) => {
      try {
        await mkdir(join(dir.at, name));
      } catch (err) {
        throw _fail(err, verb, shown);
      }
    });
  }

  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const source = parseVirtualPath(from);
    const dest = parseVirtualPath(to);
    const shownFrom = _show(source);
    const shownTo = _show(dest);
    if (source.length === 0) throw new FerryError('invalid_path', 'Cannot rename your home');
    if (dest.length === 0) throw new FerryError('invalid_path', `Cannot rename ${shownFrom} to your home`);
    const verb = 'rename';
    const home = await this.#realHome();
    await this.#inParent(source, home, verb, shownFrom, async (srcDir, srcName) => {
      const src = join(srcDir.at, srcName);
      const srcInfo = await this.#lstatConfined(src, home, verb, shownFrom);
      if (srcInfo === null) throw new FerryError('not_found', `Cannot rename ${shownFrom}: no such file or directory`);
      await this.#inParent(dest, home, verb, shownTo, async (dstDir, dstName) => {
        const srcReal = join(srcDir.real, srcName);
        if (join(dstDir.real, dstName) === srcReal) return;
        if (srcInfo.isDirectory() && _inside(dstDir.real, srcReal)) {
          throw new FerryError('invalid_path', `Cannot move ${shownFrom} into itself`);
        }
        const dst = join(dstDir.at, dstName);
        const overwrite = options.overwrite === true;
        // Without overwrite, the target's name is locked (as an upload locks it) from the check to the rename,
        // so nothing of ferry's can create it in between, and a plain rename stays atomic across a crash
        // (a link + unlink would leave the file under both names if the server died between the two).
        const key = join(dstDir.real, dstName);
        if (!overwrite && !this.#locks.lock(key)) throw new FerryError('busy', `Cannot rename to ${shownTo}: an upload of it is in progress`);
        try {
          const dstInfo = await this.#lstatConfined(dst, home, verb, shownTo);
          if (dstInfo !== null && !overwrite) throw new FerryError('exists', `Cannot rename to ${shownTo}: it exists`);
          await rename(src, dst);
        } catch (err) {
          throw _fail(err, verb, shownTo);
        } finally {
          if (!overwrite) this.#locks.unlock(key);
        }
      });
    });
  }

  /**
   * Walks the home without following symlinks; iterative, so deep trees cannot overflow the stack. Each
   * directory is opened (and checked) before it is read, so a swapped symlink cannot lead the walk outside.
   */
  async usage(): Promise<{ bytes: number; files: number }> {
    const home = await this.#realHome();
    let bytes = 0;
    let files = 0;
    const pending = [home];
    for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
      let dir: Dir;
      let entries;
      try {
        dir = await this.#openDir(path, home, 'sum up', 'your home');
      } catch (err) {
        const code = (err as FerryError).code;
        if (code === 'not_found' || code === 'not_a_directory' || code === 'invalid_path') continue; // changed while we walked
        throw err;
      }
      try {
        try {
          entries = await opendir(dir.at, { bufferSize: 128 });
        } catch (err) {
          const code = _errno(err);
          if (code === 'ENOENT' || code === 'ENOTDIR') continue; // removed while we walked
          throw _fail(err, 'sum up', 'your home');
        }
        let batch: string[] = [];
        const flush = async (): Promise<void> => {
          const infos = await Promise.all(batch.map((name) => _lstatOrNull(join(dir.at, name))));
          infos.forEach((info, i) => {
            if (info?.isFile()) {
              bytes += info.size;
              files++;
            } else if (info?.isDirectory()) {
              pending.push(join(dir.real, batch[i] as string));
            }
          });
          batch = [];
        };
        for await (const dirent of entries) {
          if (dirent.isDirectory()) pending.push(join(dir.real, dirent.name));
          else if (dirent.isSymbolicLink() || dirent.isFIFO() || dirent.isSocket() || dirent.isBlockDevice() || dirent.isCharacterDevice()) continue;
          else batch.push(dirent.name); // a file, or a file system that does not report types
          if (batch.length >= STAT_BATCH) await flush();
        }
        await flush();
      } finally {
        await dir.close();
      }
    }
    return { bytes, files };
  }

  // ---- helpers ----

  #realHome(): Promise<string> {
    this.#home ??= (async () => {
      await mkdir(this.#homeDir, { recursive: true, mode: 0o700 });
      this.#pin ??= await canPinDirectories();
      return realpath(this.#homeDir);
    })();
    const home = this.#home;
    home.catch(() => {
      if (this.#home === home) this.#home = undefined; // try again next time
    });
    return home;
  }

  #ensurePartialDir(): Promise<void> {
    this.#partials ??= mkdir(this.#partialDir, { recursive: true, mode: 0o700 }).then(() => {});
    const made = this.#partials;
    made.catch(() => {
      if (this.#partials === made) this.#partials = undefined;
    });
    return made;
  }

  /**
   * Opens the directory at `path` (its last component is not followed) and checks that what was opened is
   * inside the home, so names joined to `at` are looked up in that directory whatever happens to the path
   * meanwhile. Without pinning, `at` is `path` itself (already resolved and checked by the caller).
   */
  async #openDir(path: string, home: string, verb: string, shown: string): Promise<Dir> {
    if (this.#pin !== true) return { at: path, real: path, sync: () => syncDir(path), close: async () => {} };
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      throw _fail(err, verb, shown);
    }
    return this.#checkOpened(handle, home, verb, shown);
  }

  /** The Dir for an opened directory, once `/proc/self/fd` shows it is inside the home; closes it otherwise. */
  async #checkOpened(handle: FileHandle, home: string, verb: string, shown: string): Promise<Dir> {
    try {
      const at = `/proc/self/fd/${handle.fd}`;
      const real = await readlink(at);
      if (!_inside(real, home)) throw _leaves(shown);
      return {
        at,
        real,
        sync: () => handle.sync().catch(() => {}),
        close: () => handle.close(),
      };
    } catch (err) {
      await handle.close().catch(() => {});
      throw _fail(err, verb, shown);
    }
  }

  /**
   * Opens the directory named by `segments` and checks it is inside the home. Pinned: one `open` that
   * follows links on the way (`O_DIRECTORY`: nothing but a directory is ever opened) and a check of what
   * was opened, which is what a `realpath` check would conclude, without the race. Otherwise: realpath, then
   * #openDir.
   */
  async #openPath(segments: readonly string[], home: string, verb: string, shown: string): Promise<Dir> {
    if (this.#pin !== true) return this.#openDir(await this.#real(segments, verb, shown), home, verb, shown);
    let handle: FileHandle;
    try {
      handle = await open(join(home, ...segments), constants.O_RDONLY | O_DIRECTORY | O_NONBLOCK);
    } catch (err) {
      throw _fail(err, verb, shown);
    }
    return this.#checkOpened(handle, home, verb, shown);
  }

  /** Runs `use` with the directory at `path` opened and checked (see #openDir), closing it afterwards. */
  async #inDir<T>(path: string, home: string, verb: string, shown: string, use: (dir: Dir) => Promise<T>): Promise<T> {
    const dir = await this.#openDir(path, home, verb, shown);
    try {
      return await use(dir);
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /** Runs `use` with the opened parent directory of the last segment, and that segment. */
  async #inParent<T>(segments: readonly string[], home: string, verb: string, shown: string, use: (dir: Dir, name: string) => Promise<T>): Promise<T> {
    const dir = await this.#openPath(segments.slice(0, -1), home, verb, shown);
    try {
      return await use(dir, segments.at(-1) ?? '');
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /** lstat of a resolved, confined path, through its opened parent; a symlink there now was swapped in. */
  async #lstatReal(real: string, home: string, verb: string, shown: string): Promise<Stats | null> {
    if (real === home) return _statOrNull(home);
    return this.#inDir(dirname(real), home, verb, shown, async (dir) => {
      const info = await _lstatOrNull(join(dir.at, basename(real)));
      if (info?.isSymbolicLink()) throw _leaves(shown);
      return info;
    });
  }

  /** realpath of an existing path, confined to the home. */
  async #real(segments: readonly string[], verb: string, shown: string): Promise<string> {
    const home = await this.#realHome();
    let real: string;
    try {
      real = await realpath(join(home, ...segments));
    } catch (err) {
      throw _fail(err, verb, shown);
    }
    if (!_inside(real, home)) throw _leaves(shown);
    return real;
  }

  /** The deepest existing directory of `segments` (real, confined) and the segments missing below it. */
  async #existingAncestor(segments: readonly string[], verb: string, shown: string): Promise<{ dir: string; missing: string[] }> {
    const home = await this.#realHome();
    for (let i = segments.length; i >= 0; i--) {
      let real: string;
      try {
        real = await realpath(join(home, ...segments.slice(0, i)));
      } catch (err) {
        if (_errno(err) === 'ENOENT' && i > 0) continue;
        throw _fail(err, verb, shown);
      }
      if (!_inside(real, home)) throw _leaves(shown);
      return { dir: real, missing: segments.slice(i) };
    }
    throw new FerryError('internal', `Cannot ${verb} ${shown}: your home is missing`);
  }

  /**
   * Creates each missing directory of `segments` in turn, each inside the opened one before it, checking
   * confinement at every step. Returns the last directory opened; the caller closes it.
   */
  async #mkdirs(segments: readonly string[], verb: string, shown: string, lastMayExist: boolean): Promise<Dir> {
    const home = await this.#realHome();
    // Usually every directory is there already (an upload into an existing folder): one open. Otherwise the
    // walk below creates what is missing, or says precisely which component is in the way.
    try {
      return await this.#openPath(segments, home, verb, shown);
    } catch (err) {
      if (!(err instanceof FerryError && (err.code === 'not_found' || err.code === 'not_a_directory'))) throw err;
    }
    let current = await this.#openDir(home, home, verb, shown);
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
          if (_errno(err) !== 'EEXIST') throw _fail(err, verb, shown);
          const info = await this.#lstatConfined(next, home, verb, shown);
          if (info === null) throw new FerryError('not_found', `Cannot ${verb} ${shown}: it vanished while being created`);
          // #lstatConfined refused symlinks leading out of the home; one leading inside counts as what it points to.
          if (info.isSymbolicLink()) next = (await _realpathOrNull(next)) ?? next;
          else if (!info.isDirectory()) throw notDirectory();
        }
        let child: Dir;
        try {
          child = await this.#openDir(next, home, verb, shown);
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
   * lstat of a path whose parent is already confined; null if nothing is there. A symlink is refused
   * unless its target resolves inside the home.
   */
  async #lstatConfined(path: string, home: string, verb: string, shown: string): Promise<Stats | null> {
    let info: Stats;
    try {
      info = await lstat(path);
    } catch (err) {
      if (_errno(err) === 'ENOENT') return null;
      throw _fail(err, verb, shown);
    }
    if (info.isSymbolicLink()) {
      let real: string | null;
      try {
        real = await realpath(path);
      } catch {
        real = null; // dangling or a loop: cannot show where it leads
      }
      if (real === null || !_inside(real, home)) throw _leaves(shown);
    }
    return info;
  }

  /**
   * Refuses an upload target that is a directory, or that exists when overwriting is not allowed; returns
   * what is there (a link inside the home: what it points to), or null.
   */
  async #checkTarget(target: string, home: string, overwrite: boolean, verb: string, shown: string): Promise<Stats | null> {
    const info = await this.#lstatConfined(target, home, verb, shown);
    if (info === null) return null;
    const kind = info.isSymbolicLink() ? await _statOrNull(target) : info;
    if (kind?.isDirectory()) throw new FerryError('is_a_directory', `Cannot ${verb} ${shown}: it is a directory`);
    if (!overwrite) throw new FerryError('exists', `Cannot ${verb} ${shown}: it exists`);
    return kind;
  }

  /** Moves a verified partial into place, inside the opened target directory; called by `LocalUpload.commit`. */
  async #place(segments: readonly string[], shown: string, partial: string, options: UploadOptions): Promise<void> {
    const verb = 'upload';
    const home = await this.#realHome();
    const parents = segments.slice(0, -1);
    const dir = options.parents === true ? await this.#mkdirs(parents, verb, shown, false) : await this.#openPath(parents, home, verb, shown);
    try {
      const target = join(dir.at, segments.at(-1) ?? '');
      const overwrite = options.overwrite === true;
      await this.#checkTarget(target, home, overwrite, verb, shown);
      try {
        if (overwrite) await rename(partial, target);
        else await _placeNoReplace(partial, target);
      } catch (err) {
        throw _fail(err, verb, shown);
      }
      await dir.sync();
    } finally {
      await dir.close().catch(() => {});
    }
  }

  /**
   * Writes and places a small upload in one hop to a worker (the same checks as #place, in pinned mode).
   * Resolves to the committed file's mtime, or to the error and whether the written partial was kept.
   */
  async #commitSmall(
    segments: readonly string[],
    shown: string,
    partial: string,
    options: UploadOptions,
    home: string,
    chunks: Buffer[],
    deferred: boolean,
  ): Promise<{ mtimeMs: number } | { error: FerryError; partialKept: boolean }> {
    const commits = this.#locks.commits as SmallCommits;
    let r;
    try {
      r = await commits.run({
        partial,
        chunks,
        mtime: options.mtime ?? null,
        dir: join(home, ...segments.slice(0, -1)),
        home,
        name: segments.at(-1) ?? '',
        overwrite: options.overwrite === true,
      });
    } catch (err) {
      return { error: new FerryError('internal', `Cannot upload ${shown}: ${(err as Error).message}`), partialKept: false };
    }
    if (r.ok) return { mtimeMs: r.mtimeMs };
    const kept = r.stage === 'place';
    if (deferred && kept && (r.code === 'ENOENT' || r.code === 'ENOTDIR') && r.mtimeMs !== undefined) {
      // The checks an upload makes as it starts, made now: which directory is missing, and may it be made?
      const parents = segments.slice(0, -1);
      try {
        const { missing } = await this.#existingAncestor(parents, 'upload', shown);
        if (missing.length > 0 && options.parents !== true) return { error: _missingDirectory(parents, missing, shown), partialKept: false };
        if (missing.length > 0 && options.mayCreateParents === false) {
          return { error: new FerryError('permission_denied', 'Your account may not mkdir'), partialKept: false };
        }
      } catch (err) {
        return { error: _fail(err, 'upload', shown), partialKept: false };
      }
      try {
        await this.#place(segments, shown, partial, options);
        return { mtimeMs: r.mtimeMs };
      } catch (err) {
        // What the start would have refused (a file in the way of a directory...): refused, nothing kept.
        return { error: _fail(err, 'upload', shown), partialKept: false };
      }
    }
    if (kept && options.parents === true && (r.code === 'ENOENT' || r.code === 'ENOTDIR') && r.mtimeMs !== undefined) {
      // Its directory went away since the upload started: the usual way creates the directories again.
      try {
        await this.#place(segments, shown, partial, options);
        return { mtimeMs: r.mtimeMs };
      } catch (err) {
        return { error: _fail(err, 'upload', shown), partialKept: true };
      }
    }
    const error =
      r.refused === 'leaves' ? _leaves(shown)
      : r.refused === 'is_a_directory' ? new FerryError('is_a_directory', `Cannot upload ${shown}: it is a directory`)
      : r.refused === 'exists' ? new FerryError('exists', `Cannot upload ${shown}: it exists`)
      : _fail(Object.assign(new Error(r.message ?? ''), { code: r.code }), 'upload', shown);
    // Deferred checks that refuse: the upload is refused as it would have been at its start, nothing is kept.
    return { error, partialKept: kept && !(deferred && r.refused !== undefined) };
  }

  async #page(dir: Dir, home: string, names: readonly string[]): Promise<Entry[]> {
    const page: Entry[] = [];
    for (let i = 0; i < names.length; i += STAT_BATCH) {
      const entries = await Promise.all(names.slice(i, i + STAT_BATCH).map((name) => this.#listEntry(dir, home, name)));
      for (const entry of entries) if (entry !== null) page.push(entry);
    }
    return page.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The listing entry for `name` in the opened directory `dir`, or null to leave it out. */
  async #listEntry(dir: Dir, home: string, name: string): Promise<Entry | null> {
    if (!_addressable(name)) return null;
    const path = join(dir.at, name);
    let info = await _lstatOrNull(path);
    if (info?.isSymbolicLink()) {
      const real = await _realpathOrNull(path);
      if (real === null || !_inside(real, home)) return null;
      info = await this.#lstatReal(real, home, 'list', name).catch(() => null);
    }
    return info === null ? null : _entry(name, info);
  }
}

/** A directory opened for the names in it (see LocalStorage.#openDir). */
interface Dir {
  /** Where to join names: `/proc/self/fd/N` when pinned, else the directory's real path. */
  readonly at: string;
  /** Its real path, as opened. */
  readonly real: string;
  sync(): Promise<void>;
  close(): Promise<void>;
}

interface UploadState {
  segments: readonly string[];
  shown: string;
  size: number;
  options: UploadOptions;
  partial: string;
  sidecar: string;
  sidecarWritten: boolean;
  writeSidecar: () => Promise<void>;
  replaces: Entry | null;
  createsParents: boolean;
  /** The open partial; undefined for a small upload held in memory until commit (`commitSmall`). */
  handle: FileHandle | undefined;
  hash: Hash;
  offset: number;
  prefix: string;
  release: () => void;
  place: () => Promise<void>;
  commitSmall: ((chunks: Buffer[]) => Promise<{ mtimeMs: number } | { error: FerryError; partialKept: boolean }>) | null;
}

/**
 * One upload in progress. Calls are serialised: a `write` issued before the previous one settled waits
 * for it. A `write` that would pass the declared size throws `size_mismatch` and writes nothing; the upload
 * stays open (the caller decides to abort). If `commit` fails after the bytes were verified (the target
 * appeared meanwhile, its directory went away, ...), the partial is kept so that a later upload with
 * `resume` can commit it without sending the bytes again; the sweeper removes it otherwise.
 */
class LocalUpload implements Upload {
  readonly #s: UploadState;
  #handle: FileHandle | undefined;
  #hash: Hash;
  #offset: number;
  #prefix: string;
  #received: number;
  #finished = false;
  #queue: Promise<unknown> = Promise.resolve();
  /** A small upload's bytes, held until commit (see UploadState.commitSmall); null when written as they come. */
  #held: Buffer[] | null;

  constructor(state: UploadState) {
    this.#s = state;
    this.#handle = state.handle;
    this.#held = state.commitSmall !== null ? [] : null;
    this.#hash = state.hash;
    this.#offset = state.offset;
    this.#prefix = state.prefix;
    this.#received = state.offset;
  }

  get offset(): number {
    return this.#offset;
  }
  get replaces(): Entry | null {
    return this.#s.replaces;
  }
  get createsParents(): boolean {
    return this.#s.createsParents;
  }
  get prefixSha256(): string {
    return this.#prefix;
  }
  get received(): number {
    return this.#received;
  }

  restart(): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#open('restart');
      try {
        if (handle === null) this.#held = [];
        else await handle.truncate(0);
      } catch (err) {
        throw _fail(err, 'upload', this.#s.shown);
      }
      this.#hash = createHash('sha256');
      this.#offset = 0;
      this.#prefix = EMPTY_SHA256;
      this.#received = 0;
    });
  }

  write(chunks: readonly Buffer[]): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#open('write');
      let total = 0;
      for (const chunk of chunks) total += chunk.length;
      if (total === 0) return;
      if (this.#received + total > this.#s.size) {
        throw new FerryError('size_mismatch', `Upload of ${this.#s.shown} passes its declared size of ${this.#s.size} bytes`);
      }
      if (handle === null) {
        // Held until commit: a copy, so that the caller may reuse its buffers.
        const copy = Buffer.concat(chunks as Buffer[], total);
        (this.#held as Buffer[]).push(copy);
        this.#hash.update(copy);
        this.#received += total;
        return;
      }
      const at = this.#received;
      const writing = (async () => {
        let done = (await handle.writev(chunks as Buffer[], at)).bytesWritten;
        while (done < total) {
          const written = (await handle.writev(_skip(chunks, done), at + done)).bytesWritten;
          if (written === 0) throw new FerryError('internal', `Cannot upload ${this.#s.shown}: the disk accepted no bytes`);
          done += written;
        }
      })();
      // Hashed here while a pool thread writes the same bytes (both only read them): the two overlap instead of
      // taking turns. If the write fails, the upload fails with it; a digest that saw bytes the file did not
      // could only make a later commit refuse (digest_mismatch), never accept.
      for (const chunk of chunks) this.#hash.update(chunk);
      try {
        await writing;
      } catch (err) {
        await handle.truncate(at).catch(() => {});
        throw _fail(err, 'upload', this.#s.shown);
      }
      this.#received += total;
    });
  }

  commit(sha256: string): Promise<Entry> {
    return this.#serial(async () => {
      const handle = this.#open('commit');
      const { shown, size } = this.#s;
      if (this.#received !== size) {
        await this.#finish(false);
        throw new FerryError('size_mismatch', `Upload of ${shown} received ${this.#received} bytes of ${size} declared`);
      }
      if (this.#hash.digest('hex') !== sha256.toLowerCase()) {
        await this.#finish(false);
        throw new FerryError('digest_mismatch', `Upload of ${shown} arrived damaged: its SHA-256 differs from the declared one`);
      }
      let mtime = this.#s.options.mtime;
      if (handle === null) {
        const done = await (this.#s.commitSmall as NonNullable<UploadState['commitSmall']>)(this.#held as Buffer[]);
        this.#held = null;
        if ('error' in done) {
          await this.#finish(done.partialKept);
          throw done.error;
        }
        mtime = done.mtimeMs;
        this.#s.sidecarWritten = true; // in place: nothing to describe
        await this.#finish(true);
        return { name: this.#s.segments.at(-1) ?? '', type: 'file', size, mtime: Math.floor(mtime) };
      }
      try {
        if (mtime !== undefined) await handle.utimes(new Date(), utimeSeconds(mtime));
        await handle.sync();
        mtime ??= (await handle.stat()).mtimeMs;
        await handle.close();
        this.#handle = undefined;
        await this.#s.place();
      } catch (err) {
        await this.#finish(true);
        throw _fail(err, 'upload', shown);
      }
      if (this.#s.sidecarWritten) await _unlinkQuietly(this.#s.sidecar);
      this.#s.sidecarWritten = true; // the partial is in place now: nothing to describe
      await this.#finish(true);
      return { name: this.#s.segments.at(-1) ?? '', type: 'file', size, mtime: Math.floor(mtime) };
    });
  }

  abort(keepPartial: boolean): Promise<void> {
    return this.#serial(async () => {
      await this.#finish(keepPartial);
    });
  }

  /** Closes the partial, deletes it unless `keep`, and releases the lock. Idempotent. */
  async #finish(keep: boolean): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    const handle = this.#handle;
    this.#handle = undefined;
    if (this.#held !== null) {
      // A small upload stopped before its commit: nothing of it is on the disk yet. Kept, it is written out as
      // a partial (with its sidecar), as a larger one would have been, so that an upload with `resume` goes on.
      const held = this.#held;
      this.#held = null;
      try {
        if (keep && this.#received > 0) await _writeHeld(this.#s.partial, held).then(() => this.#s.writeSidecar()).catch(() => {});
      } finally {
        this.#s.release();
      }
      return;
    }
    try {
      await handle?.close().catch(() => {});
      if (!keep) {
        await _unlinkQuietly(this.#s.partial);
        if (this.#s.sidecarWritten) await _unlinkQuietly(this.#s.sidecar);
      } else if (!this.#s.sidecarWritten) {
        await this.#s.writeSidecar().catch(() => {}); // a description only: the partial stands without it
      }
    } finally {
      this.#s.release();
    }
  }

  /** The open partial, or null for a small upload held in memory. */
  #open(what: string): FileHandle | null {
    if (this.#finished || (this.#handle === undefined && this.#held === null)) {
      throw new FerryError('internal', `Cannot ${what} the upload of ${this.#s.shown}: it is already finished`);
    }
    return this.#handle ?? null;
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }
}

class LocalReadHandle implements ReadHandle {
  readonly size: number;
  readonly mtime: number;
  #handle: FileHandle | undefined;
  readonly #shown: string;

  constructor(handle: FileHandle, info: Stats, shown: string) {
    this.#handle = handle;
    this.size = info.size;
    this.mtime = Math.floor(info.mtimeMs);
    this.#shown = shown;
  }

  /**
   * Reads up to `length` bytes at `position`. Never reads past the size the file had when opened, so the
   * bytes sent always match the size announced (a file cannot grow through ferry: uploads replace it).
   */
  async read(position: number, length: number): Promise<Buffer> {
    const handle = this.#handle;
    if (handle === undefined) throw new FerryError('internal', `Cannot read ${this.#shown}: it is closed`);
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`Read position ${position} is not a byte offset`);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`Read length ${length} is not a byte count`);
    const want = Math.min(length, Math.max(0, this.size - position));
    if (want === 0) return Buffer.alloc(0);
    const buffer = Buffer.allocUnsafeSlow(want);
    const got = await this.readInto(buffer, position);
    // A file that shrank behind our back: copy, so no uninitialised memory rides along.
    return got === want ? buffer : Buffer.from(buffer.subarray(0, got));
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    const handle = this.#handle;
    if (handle === undefined) throw new FerryError('internal', `Cannot read ${this.#shown}: it is closed`);
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`Read position ${position} is not a byte offset`);
    const want = Math.min(target.length, Math.max(0, this.size - position));
    let got = 0;
    try {
      while (got < want) {
        const { bytesRead } = await handle.read(target, got, want - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw _fail(err, 'read', this.#shown);
    }
    return got;
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

// ---- module helpers ----

/** `not_found` for an upload whose first missing directory (of `parents`, `missing` of them absent) is named. */
function _missingDirectory(parents: readonly string[], missing: readonly string[], shown: string): FerryError {
  const absent = quotePath(joinVirtual(parents.slice(0, parents.length - missing.length + 1)));
  return new FerryError('not_found', `Cannot upload ${shown}: directory ${absent} does not exist`);
}

let pinProbe: Promise<boolean> | undefined;

/** A small file read whole when it was opened (see openRead): reads copy from memory, closing frees it. */
class HeldReadHandle implements ReadHandle {
  readonly size: number;
  readonly mtime: number;
  #bytes: Buffer | undefined;
  readonly #shown: string;

  constructor(bytes: Buffer, mtimeMs: number, shown: string) {
    this.#bytes = bytes;
    this.size = bytes.length;
    this.mtime = Math.floor(mtimeMs);
    this.#shown = shown;
  }

  async read(position: number, length: number): Promise<Buffer> {
    const bytes = this.#held(position);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`Read length ${length} is not a byte count`);
    return Buffer.from(bytes.subarray(position, position + length));
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    return this.#held(position).copy(target, 0, Math.min(position, this.size), Math.min(this.size, position + target.length));
  }

  async close(): Promise<void> {
    this.#bytes = undefined;
  }

  #held(position: number): Buffer {
    if (this.#bytes === undefined) throw new FerryError('internal', `Cannot read ${this.#shown}: it is closed`);
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`Read position ${position} is not a byte offset`);
    return this.#bytes;
  }
}

/**
 * Whether `/proc/self/fd/N` names the directory this process opened as N (Linux with procfs, on Node and
 * on Deno), so that directories can be pinned: probed once, with two directories so that descriptor
 * numbers that are not the kernel's cannot pass by chance.
 */
export function canPinDirectories(): Promise<boolean> {
  pinProbe ??= (async () => {
    if (process.platform !== 'linux' || O_DIRECTORY === 0) return false;
    for (const dir of ['/', '/proc']) {
      let handle: FileHandle | undefined;
      try {
        handle = await open(dir, constants.O_RDONLY | O_DIRECTORY);
        if ((await readlink(`/proc/self/fd/${handle.fd}`)) !== dir) return false;
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

function _show(segments: readonly string[]): string {
  return segments.length === 0 ? 'your home' : quotePath(joinVirtual(segments));
}

function _inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function _leaves(shown: string): FerryError {
  return new FerryError('invalid_path', `Path ${shown} leaves your home`);
}

function _entry(name: string, info: Stats): Entry | null {
  if (info.isDirectory()) return { name, type: 'dir', size: 0, mtime: Math.floor(info.mtimeMs) };
  if (info.isFile()) return { name, type: 'file', size: info.size, mtime: Math.floor(info.mtimeMs) };
  return null;
}

function _errno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps a file-system error to a FerryError whose message names the virtual path only (never a server path).
 * FerryErrors pass through.
 */
function _fail(err: unknown, verb: string, shown: string): FerryError {
  if (err instanceof FerryError) return err;
  const cannot = `Cannot ${verb} ${shown}`;
  switch (_errno(err)) {
    case 'ENOENT':
      return new FerryError('not_found', `${cannot}: no such file or directory`);
    case 'EEXIST':
      return new FerryError('exists', `${cannot}: it exists`);
    case 'ENOTDIR':
      return new FerryError('not_a_directory', `${cannot}: a path component is not a directory`);
    case 'EISDIR':
      return new FerryError('is_a_directory', `${cannot}: it is a directory`);
    case 'ENOTEMPTY':
      return new FerryError('not_empty', `${cannot}: the directory is not empty`);
    case 'ENOSPC':
    case 'EDQUOT':
      return new FerryError('no_space', `${cannot}: the server is out of disk space`);
    case 'ELOOP':
      return _leaves(shown);
    case 'ENAMETOOLONG':
      return new FerryError('invalid_path', `${cannot}: the path is too long for the server`);
    case 'EINVAL':
      return new FerryError('invalid_path', `${cannot}: the operation is not possible on that path`);
    case 'EMFILE':
    case 'ENFILE':
    case 'EBUSY':
      return new FerryError('busy', `${cannot}: the server is busy`);
    case 'EACCES':
    case 'EPERM':
      return new FerryError('internal', `${cannot}: the server lacks permission on its own storage`);
    case 'EROFS':
      return new FerryError('internal', `${cannot}: the server's storage is read-only`);
    case 'EXDEV':
      return new FerryError('internal', `${cannot}: the server's storage spans file systems`);
    default: {
      const code = _errno(err);
      return new FerryError('internal', `${cannot}: ${code ? `unexpected error ${code}` : 'unexpected error'}`);
    }
  }
}

/** Whether a client could name this directory entry: it must parse back to itself as one segment. */
function _addressable(name: string): boolean {
  try {
    const segments = parseVirtualPath(name);
    return segments.length === 1 && segments[0] === name;
  } catch {
    return false;
  }
}

async function _lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}

async function _realpathOrNull(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}

async function _statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch {
    return null;
  }
}

async function _unlinkQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (_errno(err) !== 'ENOENT') throw err;
  }
}

async function _openIfPresent(path: string, flags: number): Promise<FileHandle | undefined> {
  try {
    return await open(path, flags);
  } catch (err) {
    if (_errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Feeds the first `length` bytes of the file into `hash`. */
async function _hashPrefix(handle: FileHandle, length: number, hash: Hash): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(HASH_BUFFER, Math.max(length, 1)));
  let position = 0;
  while (position < length) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
    if (bytesRead === 0) throw new FerryError('internal', 'A partial upload shrank while it was read');
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}

/** `chunks` without their first `n` bytes. */
function _skip(chunks: readonly Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const chunk of chunks) {
    if (n >= chunk.length) {
      n -= chunk.length;
      continue;
    }
    rest.push(n > 0 ? chunk.subarray(n) : chunk);
    n = 0;
  }
  return rest;
}

/**
 * Puts the file `from` at `to` unless something is already there, atomically: a hard link fails with
 * EEXIST if `to` exists, then `from` is unlinked. Where hard links are not supported it falls back to
 * check-then-rename.
 */
/** Writes a small upload's held bytes as its partial file. */
async function _writeHeld(partial: string, chunks: Buffer[]): Promise<void> {
  const handle = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | O_NOFOLLOW, 0o600);
  try {
    await handle.writev(chunks, 0);
  } finally {
    await handle.close();
  }
}

async function _placeNoReplace(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    const code = _errno(err);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EMLINK') throw err;
    if ((await _lstatOrNull(to)) !== null) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    await rename(from, to);
    return;
  }
  await unlink(from);
}

