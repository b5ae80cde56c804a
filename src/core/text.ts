/**
 * Text from outside (a client's user name, path or agent string, a peer's error message) made safe to show:
 * one function for console lines, audit renderings (RDLOG) and error messages alike.
 *
 * Escaped: C0 and C1 control characters and DEL (so no newline, carriage return or terminal escape passes),
 * lone surrogates, the line and paragraph separators U+2028/U+2029, bidirectional overrides and isolates
 * (U+202A–U+202E, U+2066–U+2069), and the backslash itself, so that an escape in the output always means one.
 * Newline, carriage return and tab as `\n`, `\r`, `\t`; the others as `\uXXXX`.
 */

// Lone surrogates match \p{Cs} only when unpaired, because of the `u` flag.
const UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/gu;
/** The same characters, any surrogate included, without the `u` flag: a quick test that most text passes. */
const MAYBE_UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/;
const SHORT: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with every unsafe character escaped (see above), cut to `max` characters (code points, before
 * escaping) with `…` after a cut.
 *
 * @example
 * ```ts
 * escapeText('a\nb\u001b[2J'); // 'a\\nb\\u001b[2J'
 * escapeText('x'.repeat(10), 4); // 'xxxx…'
 * ```
 */
export function escapeText(text: string, max = Number.POSITIVE_INFINITY): string {
  let shown = String(text);
  if (shown.length > max) {
    const chars = [...shown];
    if (chars.length > max) shown = `${chars.slice(0, max).join('')}…`;
  }
  if (!MAYBE_UNSAFE.test(shown)) return shown;
  return shown.replace(UNSAFE, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * `text` escaped as by `escapeText`, with `'` escaped too, in single quotes: `'name'`. Cut at `max`
 * characters (default 100) so that a long name cannot flood a line.
 *
 * @example
 * ```ts
 * quote("it's\n"); // "'it\\'s\\n'"
 * ```
 */
export function quote(text: string, max = 100): string {
  return `'${escapeText(text, max).replace(/'/g, "\\'")}'`;
}

/**
 * A user name (or another short word) as it is usually printed, bare, when it holds only letters, digits and
 * `_ . @ + -`; quoted (see `quote`) when it holds anything else, so that it cannot pass for more words.
 *
 * @example
 * ```ts
 * word('alice');          // 'alice'
 * word('x\nforged line'); // "'x\\nforged line'"
 * ```
 */
export function word(text: string, max = 64): string {
  return /^[\w.@+-]+$/.test(text) && text.length <= max ? text : quote(text, max);
}
