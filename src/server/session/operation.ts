import type { AuditEvent } from '../../audit/event.ts';
import type { Account, Permission } from '../../auth/types.ts';
import { FerryError, isErrorCode, type ErrorCode } from '../../core/errors.ts';
import { escapeText } from '../../core/text.ts';
import type { PluginHost } from '../../plugin/host.ts';
import type { Actor, Deny, Hooks, NotifyHook, Outcome, VetoHook } from '../../plugin/types.ts';

/**
 * The file operations a client asks for, and for each the steps it takes, always in this order:
 *
 *   1. permission  the account's permission (`permit`);
 *   2. veto        the plugins' `*:before` hook may refuse (`vet`);
 *   3. storage     the work itself (the caller's, or `run`'s);
 *   4. audit       the result, ok or the error's code, in the audit log (`succeeded` / `failed`);
 *   5. notify      the plugins' `*:after` hook hears how it ended — exactly once, and only if step 2 passed.
 *
 * Every front end (the ferry protocol, a browser) and every storage driver goes through this one sequence.
 * Reading operations (list, stat) are not audited and have no after-hook. Transfers (upload, download) run the
 * same steps spread over time: the veto as they start, the audit and the notification as they end.
 */
export const OPERATIONS = {
  list: { permission: 'list', before: 'list:before', after: null, audit: null },
  stat: { permission: 'list', before: 'list:before', after: null, audit: null },
  delete: { permission: 'delete', before: 'delete:before', after: 'delete:after', audit: 'delete' },
  mkdir: { permission: 'mkdir', before: 'mkdir:before', after: 'mkdir:after', audit: 'mkdir' },
  rename: { permission: 'rename', before: 'rename:before', after: 'rename:after', audit: 'rename' },
  upload: { permission: 'upload', before: 'upload:before', after: 'upload:after', audit: 'upload' },
  download: { permission: 'download', before: 'download:before', after: 'download:after', audit: 'download' },
} as const satisfies Record<string, { permission: Permission; before: VetoHook; after: NotifyHook | null; audit: AuditEvent['event'] | null }>;

export type OperationKind = keyof typeof OPERATIONS;
/** What the plugins are told about an operation of this kind (the argument of its hooks). */
export type PluginOpOf<K extends OperationKind> = Parameters<Hooks[(typeof OPERATIONS)[K]['before']]>[0];

/** What an operation needs of the session it runs in. */
export interface OperationScope {
  readonly plugins: PluginHost;
  /** The logged-in account. */
  readonly account: Account;
  readonly address: string;
  /** Records an audit event (time, user and address are filled in). */
  audit(event: Omit<AuditEvent, 'time' | 'user' | 'address'>): void;
}

/** Who acts, as the plugins see it. */
export function actorOf(scope: Pick<OperationScope, 'account' | 'address'>): Actor {
  return { user: scope.account.name, role: scope.account.role, address: scope.address };
}

/** Throws `permission_denied` unless the account has `perm`. */
export function need(account: Account, perm: Permission): void {
  if (!account.perms.has(perm)) throw new FerryError('permission_denied', `Your account may not ${perm === 'list' ? 'list or stat' : perm}`);
}

/** A plugin's refusal as the request's error: its code if it is one of ours, its message escaped (plugins may echo anything). */
export function refusalOf(deny: Deny, fallback: ErrorCode = 'denied'): FerryError {
  return new FerryError(isErrorCode(deny.deny) ? deny.deny : fallback, escapeText(String(deny.message), 500));
}

/** How an error ended an operation, for the `*:after` hooks. */
export function outcomeOf(err: unknown): Outcome {
  if (err instanceof FerryError) return { ok: false, code: err.code, message: err.message };
  return { ok: false, code: 'internal', message: err instanceof Error ? err.message : String(err) };
}

/** One file operation going through the steps above (see OPERATIONS). */
export class Operation<K extends OperationKind> {
  readonly kind: K;
  readonly #scope: OperationScope;
  readonly #record: { path: string; to?: string };
  /** What the plugins were told as it passed their veto: set, the after-hook must still hear how it ended. */
  #vetted: PluginOpOf<K> | null = null;
  #ended = false;

  /** `record`: what the audit log says it was about (rename: `path` is the source, `to` the target). */
  constructor(scope: OperationScope, kind: K, record: { path: string; to?: string }) {
    this.#scope = scope;
    this.kind = kind;
    this.#record = record;
  }

  /** The path the operation is about (a rename's source). */
  get path(): string {
    return this.#record.path;
  }

  /** Whether any plugin listens to this kind of operation (its `op` is worth building). */
  get hooked(): boolean {
    const { before, after } = OPERATIONS[this.kind];
    return this.#scope.plugins.has(before) || (after !== null && this.#scope.plugins.has(after));
  }

  /** Step 1: the permission of the kind, or another one it also needs (an upload that replaces: overwrite). */
  permit(perm: Permission = OPERATIONS[this.kind].permission): void {
    need(this.#scope.account, perm);
  }

  /**
   * Step 2: the plugins' veto. `describe` builds what they are told, and is called only when a plugin listens
   * (it may cost a stat). Throws the refusal; once passed, the after-hook hears how the operation ended.
   */
  async vet(describe: () => PluginOpOf<K> | Promise<PluginOpOf<K>>): Promise<void> {
    if (!this.hooked) return;
    const op = await describe();
    const { before } = OPERATIONS[this.kind];
    const plugins = this.#scope.plugins;
    if (plugins.has(before)) {
      const deny = await (plugins.veto as (hook: VetoHook, op: unknown) => Promise<Deny | null>)(before, op);
      if (deny) throw refusalOf(deny);
    }
    this.#vetted = op;
  }

  /** Steps 4 and 5 for an operation that worked; `details` go into the audit event. */
  succeeded(details: Pick<AuditEvent, 'bytes' | 'durationMs' | 'sha256'> = {}): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#audit({ ...details, result: 'ok' });
    this.#notify({ ok: true });
  }

  /**
   * Steps 4 and 5 for an operation that failed. A protocol violation (a fatal error, which ends the connection)
   * is not a result of the operation: the plugins hear of it, the audit log does not.
   */
  failed(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!(err instanceof FerryError && err.fatal)) this.#audit({ result: 'error', error: err instanceof FerryError ? err.code : 'internal' });
    this.#notify(outcomeOf(err));
  }

  /** The connection went before the operation could end: the plugins are told, nothing is audited. */
  lost(message: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#notify({ ok: false, code: 'connection_lost', message });
  }

  /**
   * All five steps, for an operation done in one call: the permission, then `check` (further checks, such as a
   * second permission), the veto (`describe` as for `vet`), `work`, the audit and the after-hook. Any refusal on
   * the way is audited as the operation's result.
   */
  async run<T>(steps: { check?: () => void | Promise<void>; describe: () => PluginOpOf<K> | Promise<PluginOpOf<K>>; work: () => Promise<T> }): Promise<T> {
    try {
      this.permit();
      await steps.check?.();
      await this.vet(steps.describe);
      const value = await steps.work();
      this.succeeded();
      return value;
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  #audit(fields: Pick<AuditEvent, 'result' | 'error' | 'bytes' | 'durationMs' | 'sha256'>): void {
    const event = OPERATIONS[this.kind].audit;
    if (event === null) return;
    const { path, to } = this.#record;
    this.#scope.audit({ event, path, ...(to !== undefined ? { to } : {}), ...fields });
  }

  #notify(outcome: Outcome): void {
    const op = this.#vetted;
    const { after } = OPERATIONS[this.kind];
    this.#vetted = null;
    if (op === null || after === null) return;
    (this.#scope.plugins.notify as (hook: NotifyHook, op: unknown, outcome: Outcome) => void)(after, op, outcome);
  }
}
