/**
 * Log-in throttling and sign-up limits shared by every server on one database: the same rules as auth/throttle.ts
 * (limits, lock-out times, decay, doubling delay), counted in the database with its clock, so a password guesser
 * cannot multiply its rate by the number of servers. Each check or failure is one statement.
 */
import { addressKey, failureDelay, THROTTLE_DEFAULTS, type LoginGate, type RateGate, type ThrottleOptions, type ThrottleVerdict } from '../auth/mod.ts';
import type { Database } from './pool.ts';
import { dbText } from './text.ts';

/** A throttle key as the database holds it: the same key as in memory (auth/throttle.ts), bounded. */
function _key(text: string): string {
  return dbText(text, 128);
}

const _FAIL = `
  INSERT INTO login_failures AS f (kind, key, failures, last_failure, locked_until)
  VALUES ($1, $2, 1, now(), CASE WHEN 1 >= $3 THEN now() + $4 * interval '1 millisecond' ELSE 'epoch'::timestamptz END)
  ON CONFLICT (kind, key) DO UPDATE SET
    failures = CASE WHEN f.locked_until <= now() AND now() - f.last_failure >= $5 * interval '1 millisecond' THEN 1 ELSE f.failures + 1 END,
    last_failure = now(),
    locked_until = CASE
      WHEN (CASE WHEN f.locked_until <= now() AND now() - f.last_failure >= $5 * interval '1 millisecond' THEN 1 ELSE f.failures + 1 END) >= $3
      THEN greatest(f.locked_until, now() + $4 * interval '1 millisecond')
      ELSE f.locked_until END
  RETURNING failures`;

/**
 * @example
 * ```ts
 * const gate = new DbLoginGate(db);
 * await gate.check('203.0.113.9', 'alice'); // { allowed: true }
 * ```
 */
export class DbLoginGate implements LoginGate {
  readonly options: Readonly<ThrottleOptions>;

  constructor(
    private readonly db: Database,
    options: Partial<ThrottleOptions> = {},
  ) {
    this.options = { ...THROTTLE_DEFAULTS, ...options };
  }

  async check(address: string, user: string): Promise<ThrottleVerdict> {
    const [row] = await this.db.query<{ wait: number | null }>(
      `SELECT ceil(extract(epoch FROM max(locked_until) - now()) * 1000)::float8 AS wait FROM login_failures
        WHERE ((kind = 'a' AND key = $1) OR (kind = 'u' AND key = $2)) AND locked_until > now()`,
      [_key(addressKey(address)), _key(String(user).toLowerCase())],
    );
    const wait = row?.wait ?? null;
    return wait !== null && wait > 0 ? { allowed: false, retryAfterMs: wait } : { allowed: true };
  }

  async fail(address: string, user: string): Promise<number> {
    const { addressLimit, addressLockMs, userLimit, userLockMs, decayMs } = this.options;
    const [a, u] = await Promise.all([
      this.db.query<{ failures: number }>(_FAIL, ['a', _key(addressKey(address)), addressLimit, addressLockMs, decayMs]),
      this.db.query<{ failures: number }>(_FAIL, ['u', _key(String(user).toLowerCase()), userLimit, userLockMs, decayMs]),
    ]);
    return failureDelay(Math.max(a[0]?.failures ?? 0, u[0]?.failures ?? 0), this.options);
  }

  async success(_address: string, user: string): Promise<void> {
    // The user's count only, as in memory: an address's failures decay with time.
    await this.db.query(`DELETE FROM login_failures WHERE kind = 'u' AND key = $1`, [_key(String(user).toLowerCase())]);
  }

  /** Forgets entries that have decayed (the server calls this now and then). */
  async prune(): Promise<void> {
    await this.db.query(`DELETE FROM login_failures WHERE locked_until <= now() AND last_failure < now() - $1 * interval '1 millisecond'`, [this.options.decayMs]);
  }
}

/**
 * At most `limit` events per key in a sliding window, across servers: a transaction per event, serialized per key
 * by an advisory lock, so two servers cannot both take the last one.
 */
export class DbRateGate implements RateGate {
  constructor(
    private readonly db: Database,
    private readonly kind: string,
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  take(key: string): Promise<boolean> {
    const k = _key(addressKey(key));
    return this.db.transaction(async (q) => {
      await q.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`rate:${this.kind}:${k}`]);
      const [row] = await q.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM rate_events WHERE kind = $1 AND key = $2 AND at > now() - $3 * interval '1 millisecond'`,
        [this.kind, k, this.windowMs],
      );
      if ((row?.n ?? 0) >= this.limit) return false;
      await q.query('INSERT INTO rate_events (kind, key) VALUES ($1, $2)', [this.kind, k]);
      return true;
    });
  }

  async prune(): Promise<void> {
    await this.db.query(`DELETE FROM rate_events WHERE kind = $1 AND at <= now() - $2 * interval '1 millisecond'`, [this.kind, this.windowMs]);
  }
}
