import type { Stats } from 'node:fs';
import { opendir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry } from '../../core/types.ts';
import type { FerryError } from '../../core/errors.ts';
import { parseVirtualPath } from '../../core/paths.ts';
import { linkRefusal } from './confine.ts';
import { errno, fail } from './errors.ts';
import { lstatOrNull, realpathOrNull, type Dir, type Home } from './home.ts';

/** Directory entries stat'ed at once while listing or summing usage. */
const STAT_BATCH = 64;

/** The listing entry of a file or directory; null for anything else (FIFOs, sockets, devices). */
export function entryOf(name: string, info: Stats): Entry | null {
  if (info.isDirectory()) return { name, type: 'dir', size: 0, mtime: Math.floor(info.mtimeMs) };
  if (info.isFile()) return { name, type: 'file', size: info.size, mtime: Math.floor(info.mtimeMs) };
  return null;
}

/**
 * Reads the directory `segments` with `opendir` a page at a time, so memory is bounded by `pageSize` whatever
 * the directory's size. Pages hold at most `pageSize` entries (fewer when entries are left out), sorted by name
 * within a page; an empty directory yields no page. Breaking out of the loop closes the directory.
 */
export async function* listPages(home: Home, segments: readonly string[], shown: string, pageSize: number): AsyncIterable<Entry[]> {
  const dir = await home.openPath(segments, 'list', shown);
  try {
    yield* pagesOf(home, dir, shown, pageSize);
  } finally {
    await dir.close();
  }
}

/** The entries of the opened directory `dir`, in pages (see listPages). */
async function* pagesOf(home: Home, dir: Dir, shown: string, pageSize: number): AsyncIterable<Entry[]> {
  let entries;
  try {
    entries = await opendir(dir.at, { bufferSize: 128 });
  } catch (err) {
    throw fail(err, 'list', shown);
  }
  let names: string[] = [];
  for await (const dirent of entries) {
    names.push(dirent.name);
    if (names.length < pageSize) continue;
    const page = await pageOf(home, dir, names);
    names = [];
    if (page.length > 0) yield page;
  }
  const page = await pageOf(home, dir, names);
  if (page.length > 0) yield page;
}

/**
 * Everything under the directory `segments`, in pages, each entry named by its path relative to it (`a/b.h`), a
 * folder before what it holds. Folders are walked depth first, one open at a time; a folder reached again (a
 * symlink to a folder already listed, a loop) is listed as an entry but not walked twice.
 */
export async function* listTreePages(home: Home, segments: readonly string[], shown: string, pageSize: number): AsyncIterable<Entry[]> {
  const seen = new Set<string>();
  const pending: Array<{ segments: readonly string[]; rel: string }> = [{ segments, rel: '' }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    let dir: Dir;
    try {
      dir = await home.openPath(next.segments, 'list', shown);
    } catch (err) {
      // The folder asked for must be there; one below it may have gone while we walked.
      if (next.rel === '') throw err;
      continue;
    }
    const below: Array<{ segments: readonly string[]; rel: string }> = [];
    try {
      if (seen.has(dir.real)) continue;
      seen.add(dir.real);
      for await (const page of pagesOf(home, dir, shown, pageSize)) {
        const out: Entry[] = [];
        for (const entry of page) {
          const rel = next.rel === '' ? entry.name : `${next.rel}/${entry.name}`;
          out.push({ ...entry, name: rel });
          if (entry.type === 'dir') below.push({ segments: [...next.segments, entry.name], rel });
        }
        yield out;
      }
    } finally {
      await dir.close();
    }
    // Depth first, in name order: the last pushed is walked first.
    for (let i = below.length - 1; i >= 0; i--) pending.push(below[i] as { segments: readonly string[]; rel: string });
  }
}

async function pageOf(home: Home, dir: Dir, names: readonly string[]): Promise<Entry[]> {
  const page: Entry[] = [];
  for (let i = 0; i < names.length; i += STAT_BATCH) {
    const entries = await Promise.all(names.slice(i, i + STAT_BATCH).map((name) => listEntry(home, dir, name)));
    for (const entry of entries) if (entry !== null) page.push(entry);
  }
  return page.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The listing entry for `name` in the opened directory `dir`, or null to leave it out: names a client could not
 * send, symlinks that lead out of the home or nowhere, and what is neither a file nor a directory.
 */
async function listEntry(home: Home, dir: Dir, name: string): Promise<Entry | null> {
  if (!addressable(name)) return null;
  const path = join(dir.at, name);
  let info = await lstatOrNull(path);
  if (info?.isSymbolicLink()) {
    const real = await realpathOrNull(path);
    if (real === null || linkRefusal(real, await home.real()) !== null) return null;
    info = await home.lstatReal(real, 'list', name).catch(() => null);
  }
  return info === null ? null : entryOf(name, info);
}

/** Whether a client could name this directory entry: it must parse back to itself as one segment. */
function addressable(name: string): boolean {
  try {
    const segments = parseVirtualPath(name);
    return segments.length === 1 && segments[0] === name;
  } catch {
    return false;
  }
}

/**
 * Bytes and files stored in the home. Walks it without following symlinks; iterative, so deep trees cannot
 * overflow the stack. Each directory is opened (and checked) before it is read, so a swapped symlink cannot
 * lead the walk outside.
 */
export async function usageOf(home: Home): Promise<{ bytes: number; files: number }> {
  const root = await home.real();
  let bytes = 0;
  let files = 0;
  const pending = [root];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    let dir: Dir;
    let entries;
    try {
      dir = await home.openDir(path, 'sum up', 'your home');
    } catch (err) {
      const code = (err as FerryError).code;
      if (code === 'not_found' || code === 'not_a_directory' || code === 'invalid_path') continue; // changed while we walked
      throw err;
    }
    try {
      try {
        entries = await opendir(dir.at, { bufferSize: 128 });
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') continue; // removed while we walked
        throw fail(err, 'sum up', 'your home');
      }
      let batch: string[] = [];
      const flush = async (): Promise<void> => {
        const infos = await Promise.all(batch.map((name) => lstatOrNull(join(dir.at, name))));
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
