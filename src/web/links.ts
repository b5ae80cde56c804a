/**
 * Download links for the page: a browser downloads a file natively (streamed to disk, never held in the page) from a
 * short-lived, single-use HTTPS address that a logged-in session asked for (request `link`). A link is bound to the
 * user and to the client address that asked, and expires in seconds.
 */
import { randomBytes } from 'node:crypto';

export interface LinkTarget {
  user: string;
  path: string;
  /** The client address that asked: only it may use the link. */
  host: string;
}

/** How long a link may wait to be used. */
export const LINK_TTL_MS = 30_000;
const MAX_LINKS = 10_000;

/**
 * @example
 * ```ts
 * const links = new DownloadLinks();
 * const { url } = links.mint({ user: 'ann', path: 'a/b.txt', host: '10.0.0.1' }); // '/dl/<token>/b.txt'
 * links.take(tokenOf(url), '10.0.0.1'); // the target, once
 * ```
 */
export class DownloadLinks {
  readonly #links = new Map<string, LinkTarget & { expires: number }>();

  constructor(
    readonly ttlMs = LINK_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  mint(target: LinkTarget): { url: string; expiresMs: number } {
    const now = this.now();
    for (const [token, link] of this.#links) {
      if (link.expires > now && this.#links.size < MAX_LINKS) break; // the map is in minting order
      this.#links.delete(token);
    }
    const token = randomBytes(24).toString('base64url');
    this.#links.set(token, { ...target, expires: now + this.ttlMs });
    const name = target.path.split('/').filter(Boolean).pop() ?? 'download';
    return { url: `/dl/${token}/${encodeURIComponent(name)}`, expiresMs: this.ttlMs };
  }

  /** The link's target, once, if it has not expired and `host` asked for it; null otherwise. */
  take(token: string, host: string): LinkTarget | null {
    const link = this.#links.get(token);
    if (!link) return null;
    if (link.host !== host) return null; // not consumed: it stays for its owner
    this.#links.delete(token);
    if (link.expires <= this.now()) return null;
    return { user: link.user, path: link.path, host: link.host };
  }

  get size(): number {
    return this.#links.size;
  }
}
