import { join } from 'node:path';
import { definePlugin, type FerryPlugin, type HomeFile, type PluginLogger, type Usage } from '../../src/plugin/mod.ts';
import { Ledger } from './ledger.ts';
import { limitsAnyone, limitsFor, validate, type Limits, type QuotaOptions } from './options.ts';
import { scanHome, treeOf } from './scan.ts';
import { DbQuotas } from './shared.ts';
import { formatSize } from '../../src/plugin/mod.ts';

export type { QuotaOptions } from './options.ts';

/** Each hook's time limit; the first use of a large home waits for the walk of it. */
const HOOK_TIMEOUT_MS = 30_000;
/** How long a hook waits for a home to be summed up before answering `busy` (well inside the time limit). */
const LOAD_WAIT_MS = 20_000;
const LATE = Symbol('late');

function waitAtMost<T>(value: T | Promise<T>, ms: number): Promise<T | typeof LATE> {
  if (!(value instanceof Promise)) return Promise.resolve(value);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof LATE>((resolve) => {
    timer = setTimeout(() => resolve(LATE), ms);
  });
  return Promise.race([value, late]).finally(() => clearTimeout(timer));
}

const STILL_COUNTING = { deny: 'busy', message: 'quota: still summing up your stored files; try again in a moment' } as const;

/**
 * The usage of every limited user, each kept in a Ledger. A user's ledger is made the first time it is
 * needed by walking their home on disk, then kept up to date by the after-hooks; reservations live only in
 * memory. Every hook that is about to change a home waits for that walk first, so nothing changes a home
 * while it is being summed up.
 */
class Quotas {
  readonly #ledgers = new Map<string, Ledger>();
  readonly #loading = new Map<string, Promise<Ledger>>();

  constructor(
    readonly options: QuotaOptions,
    private readonly homes: string,
    private readonly log: PluginLogger,
    /** The users' files from the server's storage, where they are not under `homes` (an object store). */
    private readonly homeFiles?: (user: string) => AsyncIterable<HomeFile[]>,
  ) {}

  limits(user: string): Limits {
    return limitsFor(this.options, user);
  }

  limited(user: string): boolean {
    const limits = this.limits(user);
    return limits.maxBytes !== undefined || limits.maxFiles !== undefined;
  }

  /** The user's ledger: at once when known, else after their home has been walked (once, shared). */
  ledger(user: string): Ledger | Promise<Ledger> {
    const known = this.#ledgers.get(user);
    if (known) return known;
    let loading = this.#loading.get(user);
    if (!loading) {
      loading = this.#load(user);
      this.#loading.set(user, loading);
      loading.then(
        () => this.#loading.delete(user),
        (err: unknown) => {
          this.#loading.delete(user); // the next use tries again
          this.log.error(`Cannot sum up the usage of '${user}': ${(err as Error).message}`);
        },
      );
    }
    return loading;
  }

  /** Applies a change to the user's ledger: now, after a walk in progress, or not at all when none is kept. */
  apply(user: string, change: (ledger: Ledger) => void): void {
    const known = this.#ledgers.get(user);
    if (known) return change(known);
    // A walk in progress may or may not have seen the change; the changes are written so that either is fine.
    this.#loading.get(user)?.then(change, () => {});
  }

  async #load(user: string): Promise<Ledger> {
    // User names are single path segments (the server refuses others); never let one leave homes/.
    if (user === '' || user === '.' || user === '..' || /[/\\\0]/.test(user)) throw new Error(`User name '${user}' cannot name a home`);
    const started = Date.now();
    const ledger = new Ledger(this.homeFiles ? await treeOf(this.homeFiles(user)) : await scanHome(join(this.homes, user)));
    this.#ledgers.set(user, ledger);
    const { bytes, files } = ledger.usage();
    this.log.info(`Usage of '${user}': ${formatSize(bytes)} in ${files} file${files === 1 ? '' : 's'} (summed up in ${Date.now() - started} ms)`);
    return ledger;
  }
}

/**
 * Makes a quota plugin with its own state. The default export is one; a process that runs several servers
 * needs one per server.
 */
export function createQuotaPlugin(): FerryPlugin<QuotaOptions> {
  let quotas: Quotas | null = null;
  /** Instead of `quotas` when the server has a shared database (PluginContext.db): see shared.ts. */
  let shared: DbQuotas | null = null;
  /** Null when the user has no limit: then the plugin does nothing for them. */
  const forUser = (user: string): Quotas | null => (quotas?.limited(user) ? quotas : null);
  const sharedFor = (user: string): DbQuotas | null => (shared?.limited(user) ? shared : null);

  /** Waits until the user's home is summed up; false when that takes too long (the caller answers busy). */
  const ready = async (q: Quotas, user: string): Promise<boolean> => (await waitAtMost(q.ledger(user), LOAD_WAIT_MS)) !== LATE;
  /**
   * Delete and rename wait until the user's usage is summed up (refusing with `busy` if that takes too
   * long), so that their after-hooks change a known ledger. A walk that failed (logged) lets the operation
   * go ahead: the next walk sees the home as it is after it.
   */
  const afterCounting = async (user: string) => {
    const q = forUser(user);
    if (!q) return undefined;
    try {
      if (!(await ready(q, user))) return STILL_COUNTING;
    } catch {
      // Not summed up (logged).
    }
    return undefined;
  };

  return definePlugin<QuotaOptions>({
    name: 'quota',
    timeoutMs: HOOK_TIMEOUT_MS,
    validate,
    async setup(ctx) {
      if (ctx.db) {
        // Several servers on one database: usage and reservations live there, exact across them (shared.ts).
        shared = new DbQuotas(ctx.options, ctx.db, join(ctx.serverDataDir, 'homes'), ctx.log, ctx.homeFiles);
        await shared.setup();
      } else {
        quotas = new Quotas(ctx.options, join(ctx.serverDataDir, 'homes'), ctx.log, ctx.homeFiles);
      }
      if (!limitsAnyone(ctx.options)) ctx.log.warn('No limits configured (defaults or users with maxBytes / maxFiles): nobody is limited');
    },
    hooks: {
      // With the database: this server's holds are given back (its uploads have ended).
      'server:stop': () => shared?.stop(),
      // Last among the upload vetoes: space is held only once no other plugin can refuse the upload
      // (a refusal after this one would mean no upload:after, and the space would stay held).
      'upload:before': {
        order: 'post',
        handler: async (op) => {
          // With the database, fails closed: `unavailable` when it cannot be reached (see DbQuotas.beforeUpload).
          if (shared) return sharedFor(op.user)?.beforeUpload(op);
          const q = forUser(op.user);
          if (!q) return undefined;
          const pending = q.ledger(op.user);
          const ledger = pending instanceof Ledger ? pending : await waitAtMost(pending, LOAD_WAIT_MS);
          if (ledger === LATE) return STILL_COUNTING;
          // Check and hold in one synchronous step: no other upload can slip in between.
          const result = ledger.reserve(op, op, q.limits(op.user));
          return result.ok ? undefined : { deny: 'quota_exceeded', message: result.message };
        },
      },
      'upload:after': (op, outcome) => {
        if (shared) return sharedFor(op.user)?.afterUpload(op, outcome);
        forUser(op.user)?.apply(op.user, (ledger) => ledger.finish(op, op, outcome.ok));
      },
      'delete:before': (op) => (shared ? sharedFor(op.user)?.beforeChange(op.user) : afterCounting(op.user)),
      'delete:after': (op, outcome) => {
        if (shared) return sharedFor(op.user)?.afterDelete(op, outcome);
        if (outcome.ok) forUser(op.user)?.apply(op.user, (ledger) => ledger.remove(op.path));
      },
      'rename:before': (op) => (shared ? sharedFor(op.user)?.beforeChange(op.user) : afterCounting(op.user)),
      'rename:after': (op, outcome) => {
        if (shared) return sharedFor(op.user)?.afterRename(op, outcome);
        if (outcome.ok) forUser(op.user)?.apply(op.user, (ledger) => ledger.rename(op.from, op.to));
      },
      'usage:get': async (actor) => {
        if (shared) return sharedFor(actor.user)?.usage(actor);
        const q = forUser(actor.user);
        if (!q) return undefined;
        let ledger: Ledger | typeof LATE;
        try {
          ledger = await waitAtMost(q.ledger(actor.user), LOAD_WAIT_MS);
        } catch {
          return undefined; // logged; a listing does not fail for want of usage figures
        }
        if (ledger === LATE) return undefined;
        const { bytes, files } = ledger.usage();
        const limits = q.limits(actor.user);
        const usage: Usage = { bytes, files };
        if (limits.maxBytes !== undefined) usage.maxBytes = limits.maxBytes;
        if (limits.maxFiles !== undefined) usage.maxFiles = limits.maxFiles;
        return usage;
      },
    },
  });
}

/**
 * Per-user limits on stored bytes and file count, strict under concurrency: an upload holds its declared
 * size (less the file it replaces) from the moment it is accepted, so parallel uploads cannot together pass
 * a limit. Usage is summed up from disk on first use and then kept in memory; LIST and STAT show it. With a
 * shared database (`ferry serve --db`), usage and reservations are kept there instead, exact across every server
 * on it and surviving restarts (shared.ts).
 *
 * @example
 * ```yaml
 * plugins:
 *   - name: quota
 *     options:
 *       defaults: { maxBytes: 10 GiB, maxFiles: 100000 }
 *       users: { alice: { maxBytes: 50 GiB }, admin: { maxBytes: null } }
 * ```
 */
export default createQuotaPlugin();
