/**
 * Log-in throttling, per client address and per user name, all in memory.
 *
 * How the server uses it for one LOGIN:
 *
 *   const gate = throttle.check(address, user);
 *   if (!gate.allowed) -> refuse with locked_out (retry after gate.retryAfterMs)
 *   verify the password
 *   ok    -> throttle.success(address, user)
 *   wrong -> throttle.failure(address, user); wait throttle.delayFor(address, user); refuse with auth_failed
 *
 * Counters survive a lock-out: once it ends, the next failure locks again, until the key has been quiet
 * for `decayMs`. User names are compared ignoring case, like the user store.
 */

export interface ThrottleOptions {
  /** Failures for one user name (from any address) that lock the name. */
  userLimit: number;
  userLockMs: number;
  /** Failures from one address (for any names) that lock the address. */
  addressLimit: number;
  addressLockMs: number;
  /** A key with no failure for this long starts again from zero. */
  decayMs: number;
  /** Delay after the second failure; it doubles with each further failure, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Most keys kept per map (addresses, names); the least recently failed is dropped first. */
  maxEntries: number;
  /** The clock, in ms (tests inject a fake one). */
  now: () => number;
}

export const THROTTLE_DEFAULTS: Readonly<ThrottleOptions> = {
  userLimit: 5,
  userLockMs: 60_000,
  addressLimit: 20,
  addressLockMs: 5 * 60_000,
  decayMs: 15 * 60_000,
  baseDelayMs: 250,
  maxDelayMs: 4_000,
  maxEntries: 10_000,
  now: () => Date.now(),
};

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterMs: number };

/**
 * Log-in throttling as a server uses it: in this process's memory (LoginThrottle, the default) or shared by
 * several servers in a database, so that failures on one count on all.
 */
export interface LoginGate {
  /** Whether a log-in attempt may go ahead; if not, how long until the lock-out ends. */
  check(address: string, user: string): ThrottleVerdict | Promise<ThrottleVerdict>;
  /** Records a failed attempt; returns how long to wait before answering it (ms). */
  fail(address: string, user: string): number | Promise<number>;
  /** Records a successful log-in (forgets the name's failures). */
  success(address: string, user: string): void | Promise<void>;
}

/** At most so many events per key in a window (sign-ups per address): in memory (RateLimit) or shared. */
export interface RateGate {
  /** Records an event for `key` if under the limit: true when allowed, false when over it. */
  take(key: string): boolean | Promise<boolean>;
}

/** The delay after `failures` failed attempts: 0 for the first, then baseDelayMs doubling, capped at maxDelayMs. */
export function failureDelay(failures: number, options: Pick<ThrottleOptions, 'baseDelayMs' | 'maxDelayMs'>): number {
  if (failures <= 1) return 0;
  return Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(failures - 2, 30));
}

interface _Entry {
  failures: number;
  lastFailure: number;
  lockedUntil: number;
}

/**
 * @example
 * const throttle = new LoginThrottle({ userLimit: 3 });
 * throttle.failure('203.0.113.9', 'alice');
 * throttle.check('203.0.113.9', 'alice'); // { allowed: true }
 */
export class LoginThrottle implements LoginGate {
  readonly options: Readonly<ThrottleOptions>;
  readonly #addresses = new Map<string, _Entry>();
  readonly #users = new Map<string, _Entry>();

  constructor(options: Partial<ThrottleOptions> = {}) {
    this.options = { ...THROTTLE_DEFAULTS, ...options };
  }

  /** Whether a log-in attempt may go ahead; if not, how long until the lock-out ends. */
  check(address: string, user: string): ThrottleVerdict {
    const now = this.options.now();
    const until = Math.max(
      this.#live(this.#addresses, addressKey(address), now)?.lockedUntil ?? 0,
      this.#live(this.#users, _userKey(user), now)?.lockedUntil ?? 0,
    );
    return until > now ? { allowed: false, retryAfterMs: until - now } : { allowed: true };
  }

  /**
   * How long to wait before answering a failed attempt, from the failures recorded so far (call it after
   * `failure`): 0 for the first, then baseDelayMs doubling, capped at maxDelayMs.
   */
  delayFor(address: string, user: string): number {
    const now = this.options.now();
    const failures = Math.max(
      this.#live(this.#addresses, addressKey(address), now)?.failures ?? 0,
      this.#live(this.#users, _userKey(user), now)?.failures ?? 0,
    );
    return failureDelay(failures, this.options);
  }

  /** `failure`, then `delayFor`. */
  fail(address: string, user: string): number {
    this.failure(address, user);
    return this.delayFor(address, user);
  }

  /** Records a failed attempt; locks the name or the address when it reaches its limit. */
  failure(address: string, user: string): void {
    const now = this.options.now();
    const { addressLimit, addressLockMs, userLimit, userLockMs } = this.options;
    this.#record(this.#addresses, addressKey(address), now, addressLimit, addressLockMs);
    this.#record(this.#users, _userKey(user), now, userLimit, userLockMs);
  }

  /**
   * Records a successful log-in. Clears the user's counter only: an address's failures decay with time, so that someone holding one
   * valid account cannot log in between guesses at other accounts to reset their address's count.
   */
  success(_address: string, user: string): void {
    this.#users.delete(_userKey(user));
  }

  /** Keys currently tracked (for tests and diagnostics). */
  get size(): { addresses: number; users: number } {
    return { addresses: this.#addresses.size, users: this.#users.size };
  }

  /** The entry for a key, or undefined if there is none or it has decayed (then it is dropped). */
  #live(map: Map<string, _Entry>, key: string, now: number): _Entry | undefined {
    const entry = map.get(key);
    if (entry && entry.lockedUntil <= now && now - entry.lastFailure >= this.options.decayMs) {
      map.delete(key);
      return undefined;
    }
    return entry;
  }

  #record(map: Map<string, _Entry>, key: string, now: number, limit: number, lockMs: number): void {
    const entry = this.#live(map, key, now) ?? { failures: 0, lastFailure: now, lockedUntil: 0 };
    entry.failures += 1;
    entry.lastFailure = now;
    if (entry.failures >= limit) entry.lockedUntil = Math.max(entry.lockedUntil, now + lockMs);
    // Re-insert so the map's order is least recently failed first, then drop from the front.
    map.delete(key);
    map.set(key, entry);
    while (map.size > this.options.maxEntries) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }
}

function _userKey(user: string): string {
  return String(user).toLowerCase();
}

/** The key a client address is counted under: `::ffff:192.0.2.1` and `192.0.2.1` are the same client. */
export function addressKey(address: string): string {
  const text = String(address);
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(text) ? text.slice(7) : text;
}

/**
 * At most `limit` events per key in a sliding `windowMs` (e.g. sign-ups per address), with a bounded
 * number of keys (the oldest is forgotten first).
 */
export class RateLimit implements RateGate {
  readonly #events = new Map<string, number[]>();
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;

  constructor(options: { limit: number; windowMs: number; maxKeys?: number; now?: () => number }) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Records an event for `key` if under the limit: true when allowed, false when over it. */
  take(key: string): boolean {
    const now = this.#now();
    const recent = (this.#events.get(key) ?? []).filter((t) => now - t < this.#windowMs);
    if (recent.length >= this.#limit) {
      this.#events.set(key, recent);
      return false;
    }
    recent.push(now);
    this.#events.delete(key);
    this.#events.set(key, recent);
    if (this.#events.size > this.#maxKeys) {
      const oldest = this.#events.keys().next().value;
      if (oldest !== undefined) this.#events.delete(oldest);
    }
    return true;
  }
}
