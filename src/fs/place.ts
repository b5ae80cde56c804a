import { constants, copyFileSync, linkSync, lstatSync, renameSync, unlinkSync } from 'node:fs';

/** Errors of `link` that mean "no hard links here" (file system, platform, a cross-device pair), not "refused". */
const NO_HARD_LINKS: ReadonlySet<string> = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK', 'EXDEV']);

/**
 * Puts the file `from` at `to` unless something is already there, and throws an error with code `EEXIST` if
 * something is. The one implementation of "place without replacing" (uploads, the TLS identity, the audit
 * archive, the commit worker):
 *
 * - a hard link, which the kernel refuses atomically when `to` exists, then `from` is unlinked;
 * - `keepSource`: `from` stays where it is (a second name for it, or an exclusive copy);
 * - where hard links are not supported (see NO_HARD_LINKS): an exclusive copy with `keepSource`, else a check
 *   then a rename — not atomic, so a name created between the two by someone else is replaced.
 *
 * Synchronous: a link and an unlink are metadata calls of microseconds, cheaper than two round trips to the
 * thread pool, and the commit worker (which runs only synchronous calls) uses the same code.
 *
 * @example
 * ```ts
 * placeNoReplaceSync('/data/.partial/alice/x.part', '/proc/self/fd/21/report.pdf');
 * placeNoReplaceSync('/data/audit.log', '/data/audit-archive/audit-1.log', { keepSource: true });
 * ```
 */
export function placeNoReplaceSync(from: string, to: string, options: { keepSource?: boolean } = {}): void {
  const keepSource = options.keepSource === true;
  try {
    linkSync(from, to);
  } catch (err) {
    if (!NO_HARD_LINKS.has(errnoOf(err) ?? '')) throw err;
    if (keepSource) {
      copyFileSync(from, to, constants.COPYFILE_EXCL);
      return;
    }
    if (lstatOrNull(to) !== null) throw Object.assign(new Error(`EEXIST: file already exists, '${to}'`), { code: 'EEXIST' });
    renameSync(from, to);
    return;
  }
  if (!keepSource) unlinkSync(from);
}

/** The `code` of a system error (`ENOENT`...), or undefined. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function lstatOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw err;
  }
}
