import { randomUUID } from 'node:crypto';
import { backoff as retryDelay, type PluginLogger } from '../../src/plugin/mod.ts';
import { redactUrl, type EndpointOptions } from './options.ts';
import type { Outbox, OutboxBatch } from './outbox.ts';
import { Poster, type PostResult } from './post.ts';
import { DELIVERY_HEADER, SIGNATURE_HEADER, sign } from './sign.ts';

/** Largest POST body, about (a batch stops before it; a single bigger record still goes alone). */
export const MAX_BODY_BYTES = 1024 * 1024;
/** First retry delay; doubles per failure up to `maxRetryMs`. */
export const FIRST_RETRY_MS = 500;
const REQUEST_TIMEOUT_MS = 10_000;
/** While failures go on, at most one log line per this many ms (the first failure is logged at once). */
const LOG_EVERY_MS = 60_000;

/**
 * Delay before retry number `failures` (1 for the first): exponential from FIRST_RETRY_MS, capped at `capMs`,
 * with "equal jitter" (between half and all of it) so that many servers do not retry in step.
 *
 * @example
 * ```ts
 * backoff(1, 60_000); // 250..500
 * backoff(20, 60_000); // 30_000..60_000
 * ```
 */
export function backoff(failures: number, capMs: number, random: () => number = Math.random): number {
  return retryDelay(failures, { firstMs: FIRST_RETRY_MS, capMs, random });
}

/** How a response or error is handled. */
export type Verdict = 'delivered' | 'retry' | 'split' | 'rejected';

/**
 * - 2xx: delivered. - Network errors, time-outs, 5xx, 408 and 429: retried with back-off.
 * - 413 with more than one event: the batch is halved and sent again. - Any other status (3xx, 4xx): the
 *   receiver refuses; the events stay queued and are retried at the slowest pace, until the configuration
 *   or the receiver is fixed — never dropped.
 */
export function classify(status: number, batchLines: number): Verdict {
  if (status >= 200 && status < 300) return 'delivered';
  if (status >= 500 || status === 429 || status === 408) return 'retry';
  if (status === 413 && batchLines > 1) return 'split';
  return 'rejected';
}

/** Logs a run of failures once at its start, then at most every `everyMs`, and once when it ends. */
export class FailureLog {
  #since: number | null = null;
  #attempts = 0;
  #lastLogged = 0;

  constructor(
    private readonly log: PluginLogger,
    private readonly where: string,
    private readonly everyMs: number = LOG_EVERY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Number of failed attempts in the current run. */
  get attempts(): number {
    return this.#attempts;
  }

  failed(reason: string, waiting: number, retryInMs: number, rejected: boolean): void {
    const now = this.now();
    this.#attempts++;
    const write = rejected ? this.log.error : this.log.warn;
    const next = `${waiting} event(s) waiting, next try in ${_seconds(retryInMs)}`;
    const hint = rejected ? ' (the receiver refuses them: check the URL and secret; they stay queued and are retried slowly)' : '';
    if (this.#since === null) {
      this.#since = now;
      this.#lastLogged = now;
      write.call(this.log, `Delivery to ${this.where} failed: ${reason}${hint}; ${next}; while it keeps failing, one line every ${_seconds(this.everyMs)}`);
    } else if (now - this.#lastLogged >= this.everyMs) {
      this.#lastLogged = now;
      write.call(this.log, `Delivery to ${this.where} still failing: ${this.#attempts} attempts in ${_seconds(now - this.#since)}, last: ${reason}${hint}; ${next}`);
    }
  }

  succeeded(): void {
    if (this.#since === null) return;
    this.log.info(`Delivery to ${this.where} works again after ${this.#attempts} failed attempt(s) in ${_seconds(this.now() - this.#since)}`);
    this.#since = null;
    this.#attempts = 0;
  }
}

function _seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** A batch being sent: the same body and delivery id on every retry. */
interface Pending {
  batch: OutboxBatch;
  delivery: string;
  body: string;
}

export interface CourierOptions {
  endpoint: EndpointOptions;
  outbox: Outbox;
  log: PluginLogger;
  maxRetryMs: number;
  requestTimeoutMs?: number;
  logEveryMs?: number;
}

/**
 * Delivers one endpoint's outbox, in order, one batch at a time: waits up to `flushMs` for a batch to fill,
 * POSTs it signed, and acknowledges it in the outbox only after a 2xx. Failures are retried (see `classify`)
 * with `backoff`; the same batch keeps its delivery id across its retries.
 */
export class Courier {
  readonly #endpoint: EndpointOptions;
  readonly #outbox: Outbox;
  readonly #log: PluginLogger;
  readonly #maxRetryMs: number;
  readonly #poster: Poster;
  readonly #failures: FailureLog;
  readonly #where: string;
  #maxLines: number;
  #stopped = false;
  #loop: Promise<void> | null = null;
  /** What may end the current sleep early besides stop: new data, or enough of it for a full batch. */
  #wakeOn: 'data' | 'full' | null = null;
  #wake: (() => void) | null = null;

  constructor(options: CourierOptions) {
    this.#endpoint = options.endpoint;
    this.#outbox = options.outbox;
    this.#log = options.log;
    this.#maxRetryMs = options.maxRetryMs;
    this.#where = redactUrl(options.endpoint.url);
    this.#poster = new Poster(options.endpoint.url, options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
    this.#failures = new FailureLog(options.log, this.#where, options.logEveryMs ?? LOG_EVERY_MS);
    this.#maxLines = options.endpoint.batchSize;
  }

  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#outbox.onDurable = () => {
      if (this.#wakeOn === 'data' || (this.#wakeOn === 'full' && this.#outbox.pending >= this.#maxLines)) this.#wake?.();
    };
    this.#loop = this.#run().catch((err: unknown) => {
      if (!this.#stopped) this.#log.error(`Delivery to ${this.#where} stopped: ${(err as Error).message}; events stay queued until the next start`);
    });
  }

  /** Stops at once: timers cleared, the request in flight aborted (its batch is sent again after the next start). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#outbox.onDurable = null;
    this.#poster.close();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let batch: Pending | null = null;
    let trouble = 0;
    while (!this.#stopped) {
      try {
        batch = await this.#step(batch);
        trouble = 0;
      } catch (err) {
        // The outbox could not be read or updated (disk trouble): the events stay in it; try again later.
        if (this.#stopped) break;
        batch = null;
        const delay = backoff(++trouble, this.#maxRetryMs);
        this.#log.error(`Delivery to ${this.#where}: outbox trouble: ${(err as Error).message}; trying again in ${_seconds(delay)}`);
        await this.#sleep(delay, null);
      }
    }
  }

  /** One round: wait for events, or send a batch once. Returns the batch still to be sent, if any. */
  async #step(current: Pending | null): Promise<Pending | null> {
    if (current === null) {
      const pending = this.#outbox.pending;
      if (pending === 0) {
        await this.#sleep(null, 'data');
        return null;
      }
      if (pending < this.#maxLines) {
        const wait = (this.#outbox.oldestAt ?? 0) + this.#endpoint.flushMs - Date.now();
        if (wait > 0) {
          await this.#sleep(wait, 'full');
          return null;
        }
      }
      const batch = await this.#outbox.read(this.#maxLines, MAX_BODY_BYTES);
      if (batch.records.length === 0) {
        // Only damaged lines (already reported): step over them.
        await this.#outbox.ack(batch);
        return null;
      }
      current = { batch, delivery: randomUUID(), body: `{"events":[${batch.records.join(',')}]}` };
    }
    const { batch, delivery, body } = current;
    let result: PostResult | null = null;
    let reason: string;
    try {
      result = await this.#poster.post(body, {
        'content-type': 'application/json',
        'user-agent': 'ferry-webhook',
        [SIGNATURE_HEADER]: sign(body, this.#endpoint.secret),
        [DELIVERY_HEADER]: delivery,
      });
      reason = `HTTP ${result.status}${result.snippet ? ` ${JSON.stringify(result.snippet)}` : ''}`;
    } catch (err) {
      reason = (err as Error).message;
    }
    const verdict = result ? classify(result.status, batch.lines) : 'retry';
    if (verdict === 'delivered') {
      await this.#outbox.ack(batch);
      this.#failures.succeeded();
      return null;
    }
    if (this.#stopped) return current;
    if (verdict === 'split') {
      this.#maxLines = Math.max(1, Math.floor(batch.lines / 2));
      this.#log.warn(`Delivery to ${this.#where}: ${reason}: the batch was too large; sending at most ${this.#maxLines} event(s) per request from now on`);
      return null;
    }
    let delay = verdict === 'rejected' ? backoff(Infinity, this.#maxRetryMs) : backoff(this.#failures.attempts + 1, this.#maxRetryMs);
    if (result?.retryAfterMs != null) delay = Math.max(delay, Math.min(result.retryAfterMs, this.#maxRetryMs));
    this.#failures.failed(reason, this.#outbox.pending + this.#outbox.unwritten, delay, verdict === 'rejected');
    await this.#sleep(delay, null);
    return current;
  }

  #sleep(ms: number | null, wakeOn: 'data' | 'full' | null): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = ms === null ? undefined : setTimeout(() => this.#wake?.(), ms);
      this.#wakeOn = wakeOn;
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        this.#wakeOn = null;
        resolve();
      };
    });
  }
}
