/**
 * Download links for the page: a browser downloads a file natively (streamed to disk, never held in the page) from a
 * short-lived, single-use HTTPS address that a logged-in session asked for (request `link`). A link is bound to the
 * user and to the client address that asked, and expires in seconds.
 */
import type { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';

/**
 * An upload in progress that takes its bytes from an HTTPS request body (`put` with `link`): the session's side.
 * `data` hands pieces to the session, in order, as if DATA frames had brought them (false: the upload is gone); `onFlow` tells
 * when the session wants no more for now (true) and when it does again (false); it returns its unsubscribe. `lost`:
 * the request's connection closed before its whole body came (the upload ends as if the session's own connection had
 * dropped: what arrived is kept for a resume).
 */
export interface UploadFeed {
  data(chunks: readonly Buffer[]): boolean;
  onFlow(listener: (paused: boolean) => void): () => void;
  lost(): void;
}

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
  readonly #uploads = new Map<string, { host: string; feed: UploadFeed; expires: number }>();

  constructor(
    readonly ttlMs = LINK_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  mint(target: LinkTarget): { url: string; expiresMs: number } {
    const now = this.now();
    _sweep(this.#links, now);
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

  /** An address for an upload's bytes (`put` with `link`), for `host` alone, once, to be used within the time limit. */
  mintUpload(host: string, feed: UploadFeed): string {
    const now = this.now();
    _sweep(this.#uploads, now);
    const token = randomBytes(24).toString('base64url');
    this.#uploads.set(token, { host, feed, expires: now + this.ttlMs });
    return `/ul/${token}`;
  }

  /** The upload behind an address, once, if it has not expired and `host` asked for it; null otherwise. */
  takeUpload(token: string, host: string): UploadFeed | null {
    const link = this.#uploads.get(token);
    if (!link || link.host !== host) return null;
    this.#uploads.delete(token);
    return link.expires > this.now() ? link.feed : null;
  }
}

/** Drops expired links, and the oldest beyond MAX_LINKS, from the front of a map kept in minting order. */
function _sweep(links: Map<string, { expires: number }>, now: number): void {
  for (const [token, link] of links) {
    if (link.expires > now && links.size < MAX_LINKS) break;
    links.delete(token);
  }
}
