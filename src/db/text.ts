/**
 * Text as PostgreSQL's `text` can hold it: a NUL (which it refuses) becomes U+FFFD; `max` bounds keys a client
 * chose. What a client sent is otherwise kept as it came (JSON holds the exact text where it matters: audit lines).
 */
export function dbText(text: string, max = Infinity): string {
  const clean = String(text).replace(/\0/g, '\uFFFD');
  return clean.length > max ? clean.slice(0, max) : clean;
}
