/**
 * The real PostgreSQL the database tests run against: DATABASE_URL names a server and a database on it, as
 * `scripts/services/postgres.sh start DIR` prints it. Each test file makes a database of its own (so files running
 * side by side never see each other's rows) and drops it at the end.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Why there is no database (for skip), or null when there is one. */
export function dbMissing(): string | null {
  if (!process.env.DATABASE_URL) return 'no PostgreSQL: run `scripts/services/postgres.sh start DIR` and export the line it prints (DATABASE_URL=...)';
  return null;
}

export interface TestDatabase {
  /** postgres://... of the new database. */
  url: string;
  /** Drops the database (after every connection to it has closed). */
  drop(): Promise<void>;
}

/** A new, empty database on the DATABASE_URL server. */
export async function freshDatabase(): Promise<TestDatabase> {
  const admin = new URL(process.env.DATABASE_URL as string);
  const name = `ferry_test_${randomBytes(5).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin.toString());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: admin.toString() });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
