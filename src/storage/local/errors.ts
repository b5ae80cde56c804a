import { FerryError } from '../../core/errors.ts';
import { joinVirtual, quotePath } from '../../core/paths.ts';
import { errnoOf } from '../../fs/place.ts';

/** How a message names a path: the home as `your home`, anything else quoted (never a server path). */
export function show(segments: readonly string[]): string {
  return segments.length === 0 ? 'your home' : quotePath(joinVirtual(segments));
}

/** The refusal of a path that resolves (through a symlink) outside the home. */
export function leaves(shown: string): FerryError {
  return new FerryError('invalid_path', `Path ${shown} leaves your home`);
}

/** `not_found` for an upload whose first missing directory (of `parents`, `missing` of them absent) is named. */
export function missingDirectory(parents: readonly string[], missing: readonly string[], shown: string): FerryError {
  const absent = quotePath(joinVirtual(parents.slice(0, parents.length - missing.length + 1)));
  return new FerryError('not_found', `Cannot upload ${shown}: directory ${absent} does not exist`);
}

export { errnoOf as errno };

/**
 * Maps a file-system error to a FerryError whose message names the virtual path only (never a server path).
 * FerryErrors pass through.
 */
export function fail(err: unknown, verb: string, shown: string): FerryError {
  if (err instanceof FerryError) return err;
  const cannot = `Cannot ${verb} ${shown}`;
  const code = errnoOf(err);
  switch (code) {
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
      return leaves(shown);
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
    default:
      return new FerryError('internal', `${cannot}: ${code ? `unexpected error ${code}` : 'unexpected error'}`);
  }
}

/** A refusal found by a confinement check (here or in the commit worker), as the request's error. */
export function refusal(why: 'leaves' | 'is_a_directory' | 'exists' | 'not_a_file', verb: string, shown: string): FerryError {
  switch (why) {
    case 'leaves':
      return leaves(shown);
    case 'is_a_directory':
      return new FerryError('is_a_directory', `Cannot ${verb} ${shown}: it is a directory`);
    case 'exists':
      return new FerryError('exists', `Cannot ${verb} ${shown}: it exists`);
    case 'not_a_file':
      return new FerryError('not_found', `Cannot ${verb} ${shown}: not a regular file`);
  }
}
