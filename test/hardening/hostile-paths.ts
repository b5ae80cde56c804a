/** Path pieces an attacker would combine, and path strings made of them: shared by the path property tests. */
import fc from 'fast-check';

export const PIECES = [
  '..', '.', '', 'a', 'b.txt', '...', '. .', ' ..', '.. ', '%2e%2e', '%2e%2e%2f', '%2F', '..%2f', '%252e%252e', '\\', '..\\..', 'C:', 'c:\\x',
  '\u0000', 'a\u0000b', '\u001f', '\u007f', '\u2024\u2024', '\uFF0E\uFF0E', '\uFF0F', '\uFF3C', '\u2025', '\uFE52\uFE52', '\u2215', '\u2044',
  'e\u0301', '\u00e9', 'A\u030A', '\u212B', '\uFB01', '\uD800', '\uDFFF', '\u202E', '\u200B', '~', '$HOME', '*', '?', 'a'.repeat(255),
  'a'.repeat(256), '\u00e9'.repeat(128), '/etc', '//', '/',
];

/** A path of up to `max` hostile pieces joined by a separator or a look-alike of one. */
export const hostilePath = (max = 8): fc.Arbitrary<string> =>
  fc
    .tuple(fc.array(fc.constantFrom(...PIECES), { minLength: 1, maxLength: max }), fc.constantFrom('/', '\\', '/./', '//'))
    .map(([parts, glue]) => parts.join(glue));
