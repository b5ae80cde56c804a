/**
 * The shared database of several ferry servers (`ferry serve --db postgres://...`): a node-postgres pool, the one
 * place that knows how a failure of PostgreSQL looks. Every query goes through `query` or `transaction`, which turn
 * "the database cannot be reached" into `FerryError('unavailable')` (retryable, one line) and leave other errors
 * (a bug, a constraint) as they are.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { FerryError } from '../core/errors.ts';

/** What a query runs on: the pool, or one client inside a transaction. */
export interface Querier {
  query<R extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface DatabaseOptions {
  /** Most connections this process opens (default 10). */
  max?: number;
  /** How long to wait for a connection before `unavailable` (default 5 s). */
  connectTimeoutMs?: number;
  /** The longest a statement may run before the database cancels it (default 30 s). */
  statementTimeoutMs?: number;
  /** Told once per outage, and when it ends (the server's console). */
  warn?: (message: string) => void;
}

/**
 * `postgres://user:password@host:port/db?...` without its password, for messages and logs.
 *
 * @example
 * redactUrl('postgres://ferry:s3cret@db:5432/ferry'); // 'postgres://ferry@db:5432/ferry'
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    for (const key of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(key)) u.searchParams.set(key, '...');
    return u.toString().replace(/^(postgres(?:ql)?:\/\/[^@/]*):@/, '$1@');
  } catch {
    return '(an unreadable database URL)';
  }
}

/** Throws an Error with one clear line unless `url` is a postgres:// or postgresql:// URL with a host. */
export function checkDatabaseUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`Invalid --db '${url.replace(/:[^:@/]*@/, ':...@').slice(0, 120)}': use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`);
  }
  if ((u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') || u.hostname === '') {
    throw new Error(`Invalid --db '${redactUrl(url)}': use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`);
  }
}

/** SQLSTATE classes and Node error codes that mean "the database is not there now", not "the request is wrong". */
const _GONE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/** Whether `err` says the database could not be reached or went away (as opposed to a query it refused). */
export function isDatabaseGone(err: unknown): boolean {
  if (err instanceof FerryError) return err.code === 'unavailable';
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (_GONE_CODES.has(code)) return true;
  // 08xxx connection exceptions, 57P01-03 shut down / cannot connect now, 53300 too many connections.
  if (/^08|^57P0[1-3]$|^53300$/.test(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i.test(message);
}

/**
 * A pool of connections to one PostgreSQL database.
 *
 * @example
 * ```ts
 * const db = await Database.connect('postgres://ferry@127.0.0.1:5433/ferry');
 * const [row] = await db.query<{ n: number }>('SELECT 1 AS n');
 * await db.transaction(async (q) => q.query('UPDATE ...'));
 * await db.close();
 * ```
 */
export class Database implements Querier {
  readonly url: string;
  /** The URL without its password. */
  readonly where: string;
  /**
   * The id of the server using this pool, among the servers on the database (ServerPresence): rows a server owns
   * (transfer slots, a plugin's holds) carry it. One Database per server.
   */
  readonly serverId: string = randomUUID();
  readonly #pool: pg.Pool;
  readonly #warn: (message: string) => void;
  #down = false;
  #closed = false;

  private constructor(url: string, options: DatabaseOptions) {
    this.url = url;
    this.where = redactUrl(url);
    this.#warn = options.warn ?? (() => {});
    this.#pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      application_name: 'ferry',
      // Detects a database that vanished without closing the connection (a host gone, a cable cut).
      keepAlive: true,
    });
    // An idle connection that the database closes (a restart, an administrator) must not crash the process.
    this.#pool.on('error', (err) => this.#wentDown(err));
  }

  /**
   * Connects and checks that the database answers; throws an Error with one line naming the database (without its
   * password) and the reason otherwise.
   */
  static async connect(url: string, options: DatabaseOptions = {}): Promise<Database> {
    checkDatabaseUrl(url);
    const db = new Database(url, options);
    try {
      await db.#pool.query('SELECT 1');
    } catch (err) {
      await db.close();
      throw new Error(`Cannot reach the database at ${db.where}: ${_reason(err)}`);
    }
    return db;
  }

  async query<R extends object = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      const result = await this.#pool.query<R>(sql, params as unknown[]);
      this.#cameBack();
      return result.rows;
    } catch (err) {
      throw this.#mapped(err);
    }
  }

  /**
   * Runs `work` in one transaction on one connection: committed when it resolves, rolled back when it throws.
   * A serialization failure or deadlock (40001, 40P01) is retried a few times.
   */
  async transaction<T>(work: (q: Querier) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.#checkout();
      const q = _querier(client);
      let broken: unknown = undefined;
      try {
        await client.query('BEGIN');
        const result = await work(q);
        await client.query('COMMIT');
        this.#cameBack();
        return result;
      } catch (err) {
        broken = isDatabaseGone(err) ? err : undefined;
        await client.query('ROLLBACK').catch(() => {});
        const code = (err as { code?: string }).code;
        if ((code === '40001' || code === '40P01') && attempt < 5) continue;
        throw this.#mapped(err);
      } finally {
        // A connection that failed mid-transaction is not given back to the pool for reuse.
        this.#release(client, broken instanceof Error ? broken : broken === undefined ? undefined : true);
      }
    }
  }

  /**
   * Runs `work` on one connection held for it alone (a session-level advisory lock lives as long as its
   * connection: migrations use this).
   */
  async withConnection<T>(work: (q: Querier) => Promise<T>): Promise<T> {
    const client = await this.#checkout();
    let broken = false;
    try {
      return await work(_querier(client));
    } catch (err) {
      broken = isDatabaseGone(err);
      throw this.#mapped(err);
    } finally {
      this.#release(client, broken);
    }
  }

  /**
   * A client of our own for a while. A checked-out client whose connection breaks emits 'error' (the pool listens
   * only to idle ones): without a listener that would end the process.
   */
  async #checkout(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw this.#mapped(err);
    }
    client.on('error', this.#onClientError);
    return client;
  }

  #release(client: pg.PoolClient, broken: boolean | Error | undefined): void {
    client.off('error', this.#onClientError);
    client.release(broken);
  }

  readonly #onClientError = (err: Error): void => this.#wentDown(err);

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end().catch(() => {});
  }

  #mapped(err: unknown): unknown {
    if (!isDatabaseGone(err)) return err;
    this.#wentDown(err);
    return err instanceof FerryError ? err : new FerryError('unavailable', 'The server cannot reach its database; try again in a moment');
  }

  #wentDown(err: unknown): void {
    if (this.#closed || this.#down) return;
    this.#down = true;
    this.#warn(`database ${this.where} unavailable: ${_reason(err)}`);
  }

  #cameBack(): void {
    if (!this.#down) return;
    this.#down = false;
    this.#warn(`database ${this.where} reachable again`);
  }
}

/** One client as a Querier (inside a transaction, or a connection held for a while). */
function _querier(client: pg.PoolClient): Querier {
  return { query: async (sql, params = []) => (await client.query(sql, params as unknown[])).rows };
}

function _reason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' && e.message !== '' ? e.message : String(err);
  const code = typeof e?.code === 'string' && !message.includes(e.code) ? ` (${e.code})` : '';
  return `${message.split('\n')[0]}${code}`.slice(0, 300);
}
