/**
 * The quota plugin's state in the servers' shared database (PluginContext.db, `ferry serve --db`): exact across
 * every server on the database, and surviving their restarts.
 *
 * Tables (the plugin's own migrations, component `plugin:quota`):
 * - quota_homes: one row per limited user (`loaded` once their home was summed up), with the running totals. Every change of a
 *   user's usage (a reservation, a commit, a delete, a rename, the sum-up itself) runs in one transaction that first
 *   locks this row (`SELECT ... FOR UPDATE`), so the changes of one user are serialised across all servers.
 * - quota_files: the user's files, each at its canonical path (`pathSegments`) with its size: every after-the-fact
 *   change is applied to what is known at a path, as the in-memory Ledger does, so racing operations cannot make the
 *   totals drift. `path` is in the "C" collation, so a subtree `p/...` is the index range [`p/`, `p0`).
 * - quota_holds: space held by uploads in progress, each with the id of the server that holds it; only holds of a
 *   live server count (a server that died stops holding within 30 s), and holds of servers that are gone from
 *   `servers` altogether are removed.
 *
 * A user's home is summed up (the storage's listing or the disk) at most once for all servers: under the row lock, in
 * the transaction that marks it loaded. To have a home summed up again (files changed behind ferry's back):
 * `DELETE FROM quota_homes WHERE username = '...'` (its files and holds go with it).
 *
 * A database that cannot be reached fails closed: an upload is refused with `unavailable` (retryable), never let
 * past a limit it could not be checked against. Deletes and renames still go ahead (they only lower usage); their
 * after-the-fact changes, and the end of an upload, are kept in memory and applied in order once the database is
 * back (on the user's next operation on this server, or within seconds by a retry timer).
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  formatSize, type Actor, type Deny, type HomeFile, type Outcome, type PathOp, type PluginDatabase, type PluginLogger, type PluginQuerier,
  type RenameOp, type UploadOp, type Usage, type Verdict,
} from '../../src/plugin/mod.ts';
import { Dir, pathSegments } from './ledger.ts';
import { limitsFor, type Limits, type QuotaOptions } from './options.ts';
import { scanHome } from './scan.ts';

export const QUOTA_MIGRATIONS = [
  {
    version: 1,
    name: 'homes, files and holds',
    sql: `
      CREATE TABLE quota_homes (
        username text PRIMARY KEY,
        loaded boolean NOT NULL DEFAULT false,
        bytes bigint NOT NULL DEFAULT 0,
        files bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE quota_files (
        username text NOT NULL REFERENCES quota_homes (username) ON DELETE CASCADE,
        path text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        PRIMARY KEY (username, path)
      );
      CREATE TABLE quota_holds (
        id uuid PRIMARY KEY,
        username text NOT NULL REFERENCES quota_homes (username) ON DELETE CASCADE,
        path text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        bytes bigint NOT NULL,
        files integer NOT NULL,
        credited boolean NOT NULL,
        server_id uuid NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX quota_holds_user_path ON quota_holds (username, path);
      CREATE INDEX quota_holds_server ON quota_holds (server_id);
    `,
  },
] as const;

/** How long a hook waits for a home to be summed up before answering `busy` (well inside the hook's time limit). */
const LOAD_WAIT_MS = 20_000;
/**
 * A reservation that took longer than this is given back and the upload answered `busy`: the host may have timed the
 * hook out already (30 s), and then no upload:after would ever release the hold.
 */
const RESERVE_DEADLINE_MS = 20_000;
/** How long a reservation waits for another transaction on the same user's row before answering `busy`. */
const LOCK_TIMEOUT = '10s';
/** Files inserted per statement while summing up a home. */
const INSERT_BATCH = 2000;
/** Retry of changes kept while the database was unavailable. */
const RETRY_MS = 5000;

const LATE = Symbol('late');

function waitAtMost<T>(value: Promise<T>, ms: number): Promise<T | typeof LATE> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof LATE>((resolve) => {
    timer = setTimeout(() => resolve(LATE), Math.max(0, ms));
  });
  return Promise.race([value, late]).finally(() => clearTimeout(timer));
}

const STILL_COUNTING = { deny: 'busy', message: 'quota: still summing up your stored files; try again in a moment' } as const;
const CONTENDED = { deny: 'busy', message: 'quota: your usage is being updated by another upload; try again in a moment' } as const;
const UNAVAILABLE = { deny: 'unavailable', message: 'quota: cannot check your storage quota now (database unavailable); try again in a moment' } as const;

/** The error's code: a FerryError's (`unavailable`) or a PostgreSQL SQLSTATE. */
function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The canonical form of a virtual path, as stored: `a//b/./c/` is `a/b/c`; the home itself is ''. */
function canonical(path: string): string {
  return pathSegments(path).join('/');
}

/** SQL: `column` is the path `$n` or below it (the column is in the "C" collation: the range is exact). */
function atOrBelow(param: string, column = 'path'): string {
  return `(${column} = ${param} OR (${column} >= ${param} || '/' AND ${column} < ${param} || '0'))`;
}

/** `a/b/c` → `['a', 'a/b']`. */
function ancestors(path: string): string[] {
  const segments = path.split('/');
  return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

/** A change of one user's usage, run inside the transaction that locked their row; `loaded`: summed up already. */
type Change = (q: PluginQuerier, loaded: boolean) => Promise<void>;

type Reserved = { ok: true; id: string } | { ok: false; deny: Deny };

/**
 * Every limited user's usage and reservations in the shared database. Hooks identify an upload by its `op` object
 * (the host passes the same one to upload:before and upload:after): this server maps it to its hold's id.
 */
export class DbQuotas {
  /** Holds of this server's uploads in progress, by the op that identifies the upload. */
  readonly #holds = new Map<object, string>();
  /** Users this server knows to be summed up (the row says so; checked again under the lock). */
  readonly #loaded = new Set<string>();
  readonly #loading = new Map<string, Promise<void>>();
  /** Per user: the last of this server's changes, so that they reach the database in the order they happened. */
  readonly #queues = new Map<string, Promise<void>>();
  /** Per user: changes not yet applied because the database was unavailable (in order). */
  readonly #deferred = new Map<string, Change[]>();
  #retry: NodeJS.Timeout | undefined;

  constructor(
    readonly options: QuotaOptions,
    private readonly db: PluginDatabase,
    private readonly homes: string,
    private readonly log: PluginLogger,
    /** The users' files from the server's storage, where they are not under `homes` (an object store). */
    private readonly homeFiles?: (user: string) => AsyncIterable<HomeFile[]>,
  ) {}

  /**
   * Brings the tables up to date, and forgets users this server's options do not limit: what happens to a user's
   * files while nobody limits them is not recorded, so if they are limited again their home is summed up anew.
   */
  async setup(): Promise<void> {
    await this.db.migrate('quota', QUOTA_MIGRATIONS);
    const known = await this.db.query<{ username: string }>('SELECT username FROM quota_homes');
    const unlimited = known.map((r) => r.username).filter((u) => !this.limited(u));
    if (unlimited.length > 0) await this.db.query('DELETE FROM quota_homes WHERE username = ANY($1::text[])', [unlimited]);
  }

  limits(user: string): Limits {
    return limitsFor(this.options, user);
  }

  limited(user: string): boolean {
    const limits = this.limits(user);
    return limits.maxBytes !== undefined || limits.maxFiles !== undefined;
  }

  // ---- hooks ----------------------------------------------------------------------------------------

  /**
   * upload:before. Checks the upload against the user's limits and holds its space, in one transaction under the
   * user's row lock (exact across servers). Fails closed: a database that cannot be reached refuses the upload with
   * `unavailable`; any other error is thrown, and the host refuses the upload with `denied`.
   */
  async beforeUpload(op: UploadOp): Promise<Verdict> {
    const started = Date.now();
    const left = () => LOAD_WAIT_MS - (Date.now() - started);
    try {
      if ((await waitAtMost(this.loaded(op.user), left())) === LATE) return STILL_COUNTING;
      // This server's own earlier changes first (a finished upload's space is free again).
      if ((await waitAtMost(this.#enqueue(op.user, null), left())) === LATE) return CONTENDED;
      const result = await this.db.transaction((q) => this.#reserve(q, op));
      if (!result.ok) return result.deny;
      if (Date.now() - started > RESERVE_DEADLINE_MS) {
        void this.#enqueue(op.user, (q) => this.#release(q, result.id));
        return CONTENDED;
      }
      this.#holds.set(op, result.id);
      return undefined;
    } catch (err) {
      const code = codeOf(err);
      if (code === 'unavailable') return UNAVAILABLE;
      if (code === '55P03') return CONTENDED; // lock_timeout
      throw err;
    }
  }

  /** upload:after: releases the upload's hold and, when it was committed, records the file at its path. */
  afterUpload(op: UploadOp, outcome: Outcome): Promise<void> {
    const id = this.#holds.get(op);
    this.#holds.delete(op);
    const path = canonical(op.path);
    const { size } = op;
    return this.#enqueue(op.user, async (q, loaded) => {
      if (id !== undefined) await this.#release(q, id);
      else {
        // A host that passed a copy of the op: the oldest hold of this server for the same path and size that no
        // upload in progress here claims.
        await q.query(
          `DELETE FROM quota_holds WHERE id = (
             SELECT id FROM quota_holds
             WHERE username = $1 AND path = $2 AND size = $3 AND server_id = $4 AND NOT (id = ANY($5::uuid[]))
             ORDER BY created_at LIMIT 1)`,
          [op.user, path, size, this.db.serverId, [...this.#holds.values()]],
        );
      }
      if (outcome.ok && loaded) await this.#setFile(q, op.user, path, size);
    });
  }

  /**
   * delete:before and rename:before: wait until the user's usage is summed up (`busy` if that takes too long), so
   * that their after-hooks change known figures. A sum-up that failed (logged) lets the operation go ahead.
   */
  async beforeChange(user: string): Promise<Verdict> {
    try {
      if ((await waitAtMost(this.loaded(user), LOAD_WAIT_MS)) === LATE) return STILL_COUNTING;
    } catch {
      // Not summed up (logged); the next sum-up sees the home as it is after this operation.
    }
    return undefined;
  }

  /** delete:after: forgets a deleted file or directory (and everything known below it). */
  afterDelete(op: PathOp, outcome: Outcome): Promise<void> {
    if (!outcome.ok) return Promise.resolve();
    const path = canonical(op.path);
    if (path === '') return Promise.resolve();
    return this.#enqueue(op.user, async (q, loaded) => {
      if (loaded) await this.#remove(q, op.user, path);
    });
  }

  /** rename:after: moves a file or a directory's files; whatever was at the target is replaced. */
  afterRename(op: RenameOp, outcome: Outcome): Promise<void> {
    if (!outcome.ok) return Promise.resolve();
    const from = canonical(op.from);
    const to = canonical(op.to);
    if (from === to || from === '' || to === '') return Promise.resolve();
    return this.#enqueue(op.user, async (q, loaded) => {
      if (loaded) await this.#rename(q, op.user, from, to);
    });
  }

  /** usage:get: the user's stored bytes and files and their limits; undefined when not known (yet). */
  async usage(actor: Actor): Promise<Usage | undefined> {
    const started = Date.now();
    try {
      if ((await waitAtMost(this.loaded(actor.user), LOAD_WAIT_MS)) === LATE) return undefined;
      if ((await waitAtMost(this.#enqueue(actor.user, null), LOAD_WAIT_MS - (Date.now() - started))) === LATE) return undefined;
      const [row] = await this.db.query<{ bytes: number; files: number }>(
        'SELECT bytes::float8 AS bytes, files::float8 AS files FROM quota_homes WHERE username = $1 AND loaded',
        [actor.user],
      );
      if (!row) return undefined;
      const limits = this.limits(actor.user);
      const usage: Usage = { bytes: row.bytes, files: row.files };
      if (limits.maxBytes !== undefined) usage.maxBytes = limits.maxBytes;
      if (limits.maxFiles !== undefined) usage.maxFiles = limits.maxFiles;
      return usage;
    } catch {
      return undefined; // a listing does not fail for want of usage figures
    }
  }

  /**
   * server:stop (its sessions have ended): this server's changes in progress are awaited, what is still kept in
   * memory is tried once more, then this server's holds go.
   */
  async stop(): Promise<void> {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const users = new Set([...this.#queues.keys(), ...this.#deferred.keys()]);
    await Promise.all([...users].map((user) => this.#enqueue(user, null)));
    const lost = [...this.#deferred.keys()];
    if (lost.length > 0) this.log.error(`Changes of the usage of ${lost.map((u) => `'${u}'`).join(', ')} not recorded (database unavailable): delete their quota_homes rows to have them summed up anew`);
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.db.query('DELETE FROM quota_holds WHERE server_id = $1', [this.db.serverId]).catch(() => {});
    this.#holds.clear();
  }

  // ---- summing up a home ----------------------------------------------------------------------------

  /** Resolves once the user's usage is in the database (summed up by this server or another one). */
  loaded(user: string): Promise<void> {
    if (this.#loaded.has(user)) return Promise.resolve();
    let loading = this.#loading.get(user);
    if (!loading) {
      loading = this.#load(user);
      this.#loading.set(user, loading);
      loading.then(
        () => {
          this.#loading.delete(user);
          this.#loaded.add(user);
        },
        (err: unknown) => {
          this.#loading.delete(user); // the next use tries again
          this.log.error(`Cannot sum up the usage of '${user}': ${(err as Error).message}`);
        },
      );
    }
    return loading;
  }

  async #load(user: string): Promise<void> {
    const [known] = await this.db.query<{ loaded: boolean }>('SELECT loaded FROM quota_homes WHERE username = $1', [user]);
    if (known?.loaded) return;
    // User names are single path segments (the server refuses others); never let one leave homes/.
    if (user === '' || user === '.' || user === '..' || /[/\\\0]/.test(user)) throw new Error(`User name '${user}' cannot name a home`);
    await this.db.transaction(async (q) => {
      // Under the row lock: a server starting on the same user at the same moment waits here, then finds it loaded.
      if (await this.#lock(q, user)) return;
      const started = Date.now();
      await q.query('DELETE FROM quota_files WHERE username = $1', [user]);
      let batch = new Map<string, number>();
      const flush = async (): Promise<void> => {
        if (batch.size === 0) return;
        const paths = [...batch.keys()];
        const sizes = [...batch.values()];
        batch = new Map();
        await q.query(
          `INSERT INTO quota_files (username, path, size) SELECT $1, p, s FROM unnest($2::text[], $3::bigint[]) AS f(p, s)
           ON CONFLICT (username, path) DO UPDATE SET size = EXCLUDED.size`,
          [user, paths, sizes],
        );
      };
      const add = async (path: string, size: number): Promise<void> => {
        const p = canonical(path);
        if (p === '') return;
        batch.set(p, size);
        if (batch.size >= INSERT_BATCH) await flush();
      };
      if (this.homeFiles) {
        for await (const page of this.homeFiles(user)) for (const file of page) await add(file.path, file.size);
      } else {
        const pending: Array<[string, Dir]> = [['', await scanHome(join(this.homes, user))]];
        for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
          const [prefix, dir] = next;
          for (const [name, child] of dir.children) {
            const path = prefix === '' ? name : `${prefix}/${name}`;
            if (typeof child === 'number') await add(path, child);
            else pending.push([path, child]);
          }
        }
      }
      await flush();
      const [sum] = await q.query<{ bytes: number; files: number }>(
        `UPDATE quota_homes h SET loaded = true, bytes = s.bytes, files = s.files
         FROM (SELECT coalesce(sum(size), 0) AS bytes, count(*) AS files FROM quota_files WHERE username = $1) s
         WHERE h.username = $1 RETURNING h.bytes::float8 AS bytes, h.files::float8 AS files`,
        [user],
      );
      const { bytes, files } = sum ?? { bytes: 0, files: 0 };
      this.log.info(`Usage of '${user}': ${formatSize(bytes)} in ${files} file${files === 1 ? '' : 's'} (summed up in ${Date.now() - started} ms)`);
    });
  }

  /** Locks the user's row (made when absent) until the transaction ends; whether their home is summed up. */
  async #lock(q: PluginQuerier, user: string): Promise<boolean> {
    // Waits for a sum-up in progress on another server that has just made the row.
    await q.query('INSERT INTO quota_homes (username) VALUES ($1) ON CONFLICT (username) DO NOTHING', [user]);
    const [row] = await q.query<{ loaded: boolean }>('SELECT loaded FROM quota_homes WHERE username = $1 FOR UPDATE', [user]);
    return row?.loaded === true;
  }

  // ---- reservations ---------------------------------------------------------------------------------

  /**
   * The Ledger's `reserve`, in SQL: needs the declared size minus the size of the file it replaces (never less than
   * 0), and one file unless it replaces one; only one upload in progress per path counts the replaced file as freed
   * (`credited`). An upload that needs nothing more always passes.
   */
  async #reserve(q: PluginQuerier, op: UploadOp): Promise<Reserved> {
    const user = op.user;
    await q.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    if (!(await this.#lock(q, user))) {
      // Forgotten meanwhile (a server whose options do not limit this user started): summed up anew first.
      this.#loaded.delete(user);
      return { ok: false, deny: STILL_COUNTING };
    }
    const live = this.db.liveServer('server_id');
    // Holds of servers that are gone for good (no longer in `servers`); those merely not seen lately just do not count.
    await q.query('DELETE FROM quota_holds WHERE username = $1 AND server_id NOT IN (SELECT id FROM servers)', [user]);
    const path = canonical(op.path);
    const [state] = await q.query<{ bytes: number; files: number; current: number | null; taken: boolean; heldBytes: number; heldFiles: number }>(
      `SELECT h.bytes::float8 AS bytes, h.files::float8 AS files,
         (SELECT size::float8 FROM quota_files WHERE username = $1 AND path = $2) AS current,
         EXISTS (SELECT 1 FROM quota_holds WHERE username = $1 AND path = $2 AND credited AND ${live}) AS taken,
         (SELECT coalesce(sum(bytes), 0)::float8 FROM quota_holds WHERE username = $1 AND ${live}) AS "heldBytes",
         (SELECT coalesce(sum(files), 0)::float8 FROM quota_holds WHERE username = $1 AND ${live}) AS "heldFiles"
       FROM quota_homes h WHERE h.username = $1`,
      [user, path],
    );
    if (!state) throw new Error(`quota: the usage row of '${user}' vanished under its lock`);
    const limits = this.limits(user);
    const credited = op.replaces?.type === 'file' && state.current !== null && !state.taken;
    const freed = credited ? Math.min(state.current as number, op.replaces?.size ?? 0) : 0;
    const bytes = Math.max(0, op.size - freed);
    const files = credited ? 0 : 1;
    const problems: string[] = [];
    if (bytes > 0 && limits.maxBytes !== undefined && state.bytes + state.heldBytes + bytes > limits.maxBytes) {
      const used = state.bytes + state.heldBytes;
      const pending = state.heldBytes > 0 ? ` (${formatSize(state.heldBytes)} of it by uploads in progress)` : '';
      problems.push(`${formatSize(used)} of ${formatSize(limits.maxBytes)} used${pending}, upload needs ${formatSize(bytes)}`);
    }
    if (files > 0 && limits.maxFiles !== undefined && state.files + state.heldFiles + files > limits.maxFiles) {
      const used = state.files + state.heldFiles;
      const pending = state.heldFiles > 0 ? ` (${state.heldFiles} of them by uploads in progress)` : '';
      problems.push(`${used} of ${limits.maxFiles} files used${pending}, upload needs 1 more file`);
    }
    if (problems.length > 0) return { ok: false, deny: { deny: 'quota_exceeded', message: `quota exceeded: ${problems.join('; ')}` } };
    const id = randomUUID();
    await q.query(
      `INSERT INTO quota_holds (id, username, path, size, bytes, files, credited, server_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, user, path, op.size, bytes, files, credited, this.db.serverId],
    );
    return { ok: true, id };
  }

  async #release(q: PluginQuerier, id: string): Promise<void> {
    await q.query('DELETE FROM quota_holds WHERE id = $1', [id]);
  }

  // ---- the files (the Ledger's tree, as rows) -------------------------------------------------------

  /** Records a file at `path`, replacing what was there (a file, or a directory's files) and any file in the way. */
  async #setFile(q: PluginQuerier, user: string, path: string, size: number): Promise<void> {
    if (path === '') return;
    await q.query(
      `WITH gone AS (DELETE FROM quota_files WHERE username = $1 AND (${atOrBelow('$2')} OR path = ANY($3::text[])) RETURNING size)
       UPDATE quota_homes SET bytes = bytes - (SELECT coalesce(sum(size), 0) FROM gone) + $4::bigint,
                              files = files - (SELECT count(*) FROM gone) + 1
       WHERE username = $1`,
      [user, path, ancestors(path), size],
    );
    await q.query('INSERT INTO quota_files (username, path, size) VALUES ($1, $2, $3)', [user, path, size]);
  }

  /** Forgets the file or directory at `path` and everything below it. */
  async #remove(q: PluginQuerier, user: string, path: string): Promise<void> {
    await q.query(
      `WITH gone AS (DELETE FROM quota_files WHERE username = $1 AND ${atOrBelow('$2')} RETURNING size)
       UPDATE quota_homes SET bytes = bytes - (SELECT coalesce(sum(size), 0) FROM gone), files = files - (SELECT count(*) FROM gone)
       WHERE username = $1`,
      [user, path],
    );
  }

  /**
   * Moves the file or directory at `from` to `to`, replacing what was there (and any file in the way). A source with
   * no known files changes nothing: a sum-up of the home already saw the result of this rename.
   */
  async #rename(q: PluginQuerier, user: string, from: string, to: string): Promise<void> {
    const [source] = await q.query<{ found: boolean }>(`SELECT EXISTS (SELECT 1 FROM quota_files WHERE username = $1 AND ${atOrBelow('$2')}) AS found`, [
      user,
      from,
    ]);
    if (!source?.found) return;
    await q.query(
      `WITH gone AS (
         DELETE FROM quota_files WHERE username = $1 AND (${atOrBelow('$2')} OR path = ANY($3::text[])) AND NOT ${atOrBelow('$4')}
         RETURNING size)
       UPDATE quota_homes SET bytes = bytes - (SELECT coalesce(sum(size), 0) FROM gone), files = files - (SELECT count(*) FROM gone)
       WHERE username = $1`,
      [user, to, ancestors(to), from],
    );
    // Moving within the home changes no totals.
    await q.query(
      `WITH moved AS (DELETE FROM quota_files WHERE username = $1 AND ${atOrBelow('$2')} RETURNING path, size)
       INSERT INTO quota_files (username, path, size) SELECT $1, $3 || substr(moved.path, length($2) + 1), moved.size FROM moved`,
      [user, from, to],
    );
  }

  // ---- this server's changes, in order --------------------------------------------------------------

  /**
   * Runs `change` (null: only what was kept back) for `user` after this server's earlier changes for them, each in
   * its own transaction under the user's row lock. Never rejects: a change the database was unavailable for is kept
   * (with every later one, in order) and tried again; any other failure is logged and the change dropped.
   */
  #enqueue(user: string, change: Change | null): Promise<void> {
    const tail = (this.#queues.get(user) ?? Promise.resolve()).then(() => this.#run(user, change));
    this.#queues.set(user, tail);
    void tail.then(() => {
      if (this.#queues.get(user) === tail) this.#queues.delete(user);
    });
    return tail;
  }

  async #run(user: string, change: Change | null): Promise<void> {
    const kept = this.#deferred.get(user) ?? [];
    const todo = [...kept, ...(change ? [change] : [])];
    this.#deferred.delete(user);
    for (let i = 0; i < todo.length; i++) {
      const work = todo[i] as Change;
      try {
        await this.db.transaction(async (q) => work(q, await this.#lock(q, user)));
      } catch (err) {
        if (codeOf(err) === 'unavailable') {
          this.#deferred.set(user, todo.slice(i));
          if (kept.length === 0) this.log.warn(`Changes of the usage of '${user}' kept for now (database unavailable); trying again`);
          this.#retryLater();
          return;
        }
        this.log.error(`Cannot record a change of the usage of '${user}': ${(err as Error).message}`);
      }
    }
    if (kept.length > 0) this.log.info(`Changes of the usage of '${user}' recorded now`);
  }

  /** Tries again, in a while, what was kept back for every user. */
  #retryLater(): void {
    if (this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      for (const user of [...this.#deferred.keys()]) void this.#enqueue(user, null);
    }, RETRY_MS);
    this.#retry.unref();
  }
}
