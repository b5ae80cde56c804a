import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** What came back from one POST. */
export interface PostResult {
  status: number;
  /** `retry-after` in ms, when the receiver sent one in seconds or as a date. */
  retryAfterMs: number | null;
  /** The start of the response body (for log lines). */
  snippet: string;
}

const SNIPPET_BYTES = 200;

function retryAfter(res: IncomingMessage): number | null {
  const value = res.headers['retry-after'];
  if (typeof value !== 'string') return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/**
 * POSTs bodies to one URL, one connection per request (node:http / node:https, which Node and Deno both
 * have). Redirects are not followed. `close()` aborts what is in flight.
 */
export class Poster {
  readonly #url: URL;
  readonly #agent: HttpAgent;
  readonly #timeoutMs: number;
  readonly #inflight = new Set<() => void>();
  #closed = false;

  constructor(url: string, timeoutMs: number) {
    this.#url = new URL(url);
    this.#timeoutMs = timeoutMs;
    // A connection per request: a batch goes out at most every flushMs, and a kept-alive connection that the
    // receiver closes while idle would turn into a spurious failure (and a warning) on the next batch.
    this.#agent = this.#url.protocol === 'https:' ? new HttpsAgent({ keepAlive: false, maxSockets: 1 }) : new HttpAgent({ keepAlive: false, maxSockets: 1 });
  }

  /** Resolves with the response status; rejects on network errors and time-outs (the message says which). */
  post(body: string, headers: Record<string, string>): Promise<PostResult> {
    // A post that starts after close() would have nothing to abort it: refuse it at once.
    if (this.#closed) return Promise.reject(new Error('aborted: the server is stopping'));
    const bytes = Buffer.from(body, 'utf8');
    const request = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<PostResult>((resolve, reject) => {
      let settled = false;
      const done = (err: Error | null, result?: PostResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inflight.delete(abort);
        if (err) reject(err);
        else resolve(result as PostResult);
      };
      const req = request(this.#url, {
        method: 'POST',
        agent: this.#agent,
        headers: { ...headers, 'content-length': String(bytes.length) },
      });
      const abort = () => {
        req.destroy();
        done(new Error('aborted: the server is stopping'));
      };
      this.#inflight.add(abort);
      const timer = setTimeout(() => {
        req.destroy();
        done(new Error(`no response within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => done(new Error(err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on('data', (chunk: Buffer) => {
          if (kept < SNIPPET_BYTES) {
            chunks.push(chunk);
            kept += chunk.length;
          }
        });
        res.on('error', (err) => done(err));
        res.on('end', () => {
          const snippet = Buffer.concat(chunks).toString('utf8').slice(0, SNIPPET_BYTES).replace(/\s+/g, ' ').trim();
          done(null, { status: res.statusCode ?? 0, retryAfterMs: retryAfter(res), snippet });
        });
      });
      req.end(bytes);
    });
  }

  /** Aborts requests in flight and closes every connection. */
  close(): void {
    this.#closed = true;
    for (const abort of [...this.#inflight]) abort();
    this.#agent.destroy();
  }
}
