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
