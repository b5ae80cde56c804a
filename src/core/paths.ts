import { Buffer } from 'node:buffer';
import { FerryError } from './errors.ts';
import { quote } from './text.ts';

/** Longest accepted virtual path, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest accepted path segment, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;

// C0 controls and DEL. Checked on the raw input: NFC never introduces them.
const CONTROL = /[\u0000-\u001f\u007f]/;
// A lone surrogate cannot be written as UTF-8; it would silently become U+FFFD on disk.
const LONE_SURROGATE = /\p{Cs}/u;
const DRIVE = /^[A-Za-z]:/;
const ONLY_DOTS_OR_SPACES = /^[. ]+$/;

/**
 * Validates a client-supplied virtual path and returns its segments, `[]` meaning the home itself.
 *
 * Refused with `FerryError('invalid_path', reason)`: a non-string; control characters (U+0000–U+001F,
 * U+007F) and lone surrogates; backslashes; absolute paths (`/x`) and drive forms (`C:`); any `..`
 * segment (refused, never resolved); a segment longer than 255 UTF-8 bytes or a path longer than 4096;
 * a segment made only of dots and spaces; a segment that NFKC folds into something containing `/`,
 * `\` or `..`, or into only dots and spaces (look-alikes such as U+FF0F FULLWIDTH SOLIDUS or
 * U+2024 ONE DOT LEADER). Empty and `.` segments are dropped (`a//b/./c/` is `a/b/c`). Segments are
 * returned in Unicode NFC, so the NFD and NFC spellings of a name address the same file.
 * Pure: no I/O.
 *
 * @example
 * ```ts
 * parseVirtualPath('a//b/./c/'); // ['a', 'b', 'c']
 * parseVirtualPath('');          // []
 * parseVirtualPath('../etc');    // throws FerryError('invalid_path', ...)
 * ```
 */
export function parseVirtualPath(input: unknown): string[] {
  if (typeof input !== 'string') throw new FerryError('invalid_path', 'Path is not a string');
  const refuse = (why: string): never => {
    throw new FerryError('invalid_path', `Path ${quotePath(input)} ${why}`);
  };
  // Bound the work before normalising (NFC can grow a string only by a small factor).
  if (Buffer.byteLength(input, 'utf8') > MAX_PATH_BYTES) refuse(`is longer than ${MAX_PATH_BYTES} bytes`);
  if (CONTROL.test(input)) refuse('contains a control character');
  if (LONE_SURROGATE.test(input)) refuse('contains an unpaired surrogate');
  if (input.includes('\\')) refuse('contains a backslash');
  if (input.startsWith('/')) refuse('is absolute; paths are relative to your home');
  if (DRIVE.test(input)) refuse('names a drive; paths are relative to your home');

  const normal = input.normalize('NFC');
  if (Buffer.byteLength(normal, 'utf8') > MAX_PATH_BYTES) refuse(`is longer than ${MAX_PATH_BYTES} bytes`);

  const segments: string[] = [];
  for (const segment of normal.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') refuse("contains '..'");
    // The drive form is refused however the path begins (`./C:` as well as `C:`), so that every accepted
    // path joins back to one that parses the same.
    if (segments.length === 0 && DRIVE.test(segment)) refuse('names a drive; paths are relative to your home');
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) refuse(`has a name longer than ${MAX_SEGMENT_BYTES} bytes`);
    if (ONLY_DOTS_OR_SPACES.test(segment)) refuse('has a name made only of dots or spaces');
    const folded = segment.normalize('NFKC');
    if (folded !== segment) {
      if (folded.includes('/') || folded.includes('\\') || folded.includes('..') || ONLY_DOTS_OR_SPACES.test(folded)) {
        refuse("has a name that looks like '/', '\\' or '..'");
      }
    }
    segments.push(segment);
  }
  return segments;
}

/**
 * Display form of parsed segments: `a/b/c`; the home is `''`. `parseVirtualPath(joinVirtual(s))`
 * gives `s` back for any `s` that `parseVirtualPath` returned.
 *
 * @example
 * ```ts
 * joinVirtual(['a', 'b', 'c']); // 'a/b/c'
 * ```
 */
export function joinVirtual(segments: readonly string[]): string {
  return segments.join('/');
}

/**
 * Quotes a path for a message: `quote` (core/text.ts) with its cap of 100 characters, so that a hostile path
 * can neither forge log lines nor flood them.
 *
 * @example
 * ```ts
 * quotePath('a\u0000b'); // "'a\\u0000b'"
 * ```
 */
export function quotePath(path: string): string {
  return quote(path, 100);
}
