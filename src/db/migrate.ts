/**
 * Versioned schema migrations, safe when several servers start at once: each component (`ferry`, or a plugin's
 * name) has numbered steps; the server that gets the advisory lock applies the missing ones, each in its own
 * transaction, while the others wait on the lock and then find nothing left to do.
 */
import type { Database, Querier } from './pool.ts';

export interface Migration {
  /** 1, 2, 3...: applied in order, each once. */
  version: number;
  /** A few words, kept in the table for people. */
  name: string;
  sql: string;
}

/** One key for every migration of every component: they are rare and quick, so one at a time is fine. */
const _LOCK_KEY = 0x6665_7279; // 'fery'

const _TABLE = `CREATE TABLE IF NOT EXISTS ferry_migrations (
  component text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`;

/**
 * Brings `component`'s schema up to the last of `migrations`; returns the versions it applied (none when another
 * server had done it). Throws when the database already has a later version than this ferry knows (a newer ferry
 * migrated it): running old code on a newer schema could corrupt it.
 *
 * @example
 * ```ts
 * await migrate(db, 'ferry', FERRY_MIGRATIONS); // [1, 2] on a new database, [] afterwards
 * ```
 */
export async function migrate(db: Database, component: string, migrations: readonly Migration[]): Promise<number[]> {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  sorted.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`Migrations of '${component}' must be numbered 1, 2, 3...: found ${m.version} at position ${i + 1}`);
  });
  return db.withConnection(async (q) => {
    await q.query('SELECT pg_advisory_lock($1)', [_LOCK_KEY]);
    try {
      await q.query(_TABLE);
      const done = new Set((await q.query<{ version: number }>('SELECT version FROM ferry_migrations WHERE component = $1', [component])).map((r) => r.version));
      const newest = Math.max(0, ...done);
      if (newest > sorted.length) {
        throw new Error(
          `The database's '${component}' schema is at version ${newest}, newer than this ferry knows (${sorted.length}): upgrade ferry on this server`,
        );
      }
      const applied: number[] = [];
      for (const m of sorted) {
        if (done.has(m.version)) continue;
        await _apply(q, component, m);
        applied.push(m.version);
      }
      return applied;
    } finally {
      await q.query('SELECT pg_advisory_unlock($1)', [_LOCK_KEY]).catch(() => {});
    }
  });
}

async function _apply(q: Querier, component: string, m: Migration): Promise<void> {
  await q.query('BEGIN');
  try {
    await q.query(m.sql);
    await q.query('INSERT INTO ferry_migrations (component, version, name) VALUES ($1, $2, $3)', [component, m.version, m.name]);
    await q.query('COMMIT');
  } catch (err) {
    await q.query('ROLLBACK').catch(() => {});
    throw new Error(`Migration ${m.version} (${m.name}) of '${component}' failed: ${(err as Error).message}`);
  }
}
