/**
 * The confinement rules of the local-disk driver, as pure decisions. The event loop (home.ts, asynchronous
 * calls) and the commit worker (worker.ts, synchronous calls) make the same file-system calls in the same order
 * and decide with these functions, so that what is refused is decided in one place.
 *
 * The rules: every path is resolved and must stay inside the real path of the home; a directory is opened
 * (`O_DIRECTORY`) and, where `/proc/self/fd` names opened directories (Linux), what was really opened is read
 * back from there and must be inside the home; names are then looked up through `/proc/self/fd/N/<name>`, in
 * that very directory, so a directory swapped for a symlink after the check cannot redirect anything; a name
 * is never followed (`O_NOFOLLOW`, lstat) unless it is a symlink that resolves inside the home.
 */
import { constants } from 'node:fs';
import { sep } from 'node:path';

// Flags missing on a platform (Windows has no O_NOFOLLOW) are 0, which leaves the realpath checks.
export const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
/** A FIFO planted in a home would block open() for reading forever; O_NONBLOCK makes it return at once. */
export const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
export const O_DIRECTORY = constants.O_DIRECTORY ?? 0;
/** How a directory is opened to look names up in it: never anything but a directory, never blocking. */
export const DIR_FLAGS = constants.O_RDONLY | O_DIRECTORY | O_NONBLOCK;
/** How a file is opened for reading: its last component never followed, never blocking (a FIFO). */
export const READ_FLAGS = constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
/** How a partial is created: never through a link, replacing an older partial of the same key. */
export const PARTIAL_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | O_NOFOLLOW;

/** Where the names of an opened directory are looked up: its descriptor's entry in /proc/self/fd. */
export function pinnedPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/** Whether `path` is `dir` or inside it (both real, absolute paths). */
export function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** What is refused: a path that leads out of the home, or an upload target that is a directory or exists. */
export type Refusal = 'leaves' | 'is_a_directory' | 'exists';

/**
 * A symlink met where a name is acted on: it counts (as what it points to) only if it resolves inside the
 * home; `real` is its resolved path, or null when it leads nowhere (dangling, a loop).
 */
export function linkRefusal(real: string | null, home: string): 'leaves' | null {
  return real === null || !inside(real, home) ? 'leaves' : null;
}

/**
 * What an upload may do with what stands at its target: nothing there (`present` false) or something it may
 * replace is fine; a directory (the name, or what a symlink inside the home points to) is refused; anything
 * else is refused unless it may overwrite.
 */
export function targetRefusal(present: boolean, directory: boolean, overwrite: boolean): Refusal | null {
  if (!present) return null;
  if (directory) return 'is_a_directory';
  return overwrite ? null : 'exists';
}

/** What a download may read: a regular file only. */
export function readRefusal(found: { isDirectory(): boolean; isFile(): boolean }): 'is_a_directory' | 'not_a_file' | null {
  if (found.isDirectory()) return 'is_a_directory';
  return found.isFile() ? null : 'not_a_file';
}
