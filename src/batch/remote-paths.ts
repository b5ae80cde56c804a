import picomatch from 'picomatch';
import { parseVirtualPath } from '../core/paths.ts';

/** True when a path or pattern has glob syntax (`*`, `?`, `[...]`, `{a,b}`, extglobs). */
export function isGlob(pattern: string): boolean {
  return picomatch.scan(pattern).isGlob;
}

/** Why a glob is not usable, or null. Unbalanced brackets, braces and parentheses are mistakes, not literals. */
export function globError(pattern: string): string | null {
  if (pattern === '') return 'is empty';
  try {
    picomatch.makeRe(pattern, { strictBrackets: true });
    return null;
  } catch (err) {
    return `is not a valid glob: ${(err as Error).message.replace(/ - use .*$/, '')}`;
  }
}

/**
 * A remote path as written in a manifest, normalised: a leading `/` means the home; `a//b/` is `a/b`.
 * Throws an Error saying why the server would refuse it.
 */
export function normaliseRemote(path: string): string {
  const stripped = path.replace(/^\/+/, '');
  try {
    return parseVirtualPath(stripped).join('/');
  } catch (err) {
    throw new Error((err as Error).message.replace(/^Path /, 'path '));
  }
}
