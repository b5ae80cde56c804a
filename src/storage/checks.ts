import { FerryError } from '../core/errors.ts';
import { parseVirtualPath, quotePath } from '../core/paths.ts';

/**
 * Checks that a user name can name a home: a single path segment as a client could send it (so that a home's
 * directory or key prefix never reaches past `homes/`). Throws `invalid_username` otherwise. Every driver's
 * `forUser` starts here.
 */
export function checkHomeName(user: string): void {
  let segments: string[];
  try {
    segments = parseVirtualPath(user);
  } catch {
    segments = [];
  }
  if (segments.length !== 1 || segments[0] !== user) {
    throw new FerryError('invalid_username', `User name ${quotePath(String(user))} cannot name a home directory`);
  }
}

/** Checks a listing's page size (Storage.list, listTree): a positive whole number; a RangeError otherwise. */
export function checkPageSize(pageSize: number): void {
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new RangeError(`Page size ${pageSize} is not a positive integer`);
}

/** Checks an upload's declared size: a whole number of bytes; a RangeError otherwise. */
export function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`Declared size ${size} is not a whole number of bytes`);
}

/** Checks a modification time given with an upload (ms since epoch), when one is given; a RangeError otherwise. */
export function checkMtime(mtime: number | undefined): void {
  if (mtime !== undefined && !(Number.isFinite(mtime) && mtime >= 0)) throw new RangeError(`Modification time ${mtime} is not a time`);
}

/** Checks a read's position and length (ReadHandle.read, readInto); a RangeError otherwise. */
export function checkRead(position: number, length = 0): void {
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`Read position ${position} is not a byte offset`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`Read length ${length} is not a byte count`);
}
