import { FerryError } from '../core/errors.ts';
import { escapeText } from '../core/text.ts';
import {
  HOOK_KINDS, type Deny, type FerryPlugin, type FirstHook, type HookEntry, type HookName, type Hooks, type NotifyHook, type PluginLogger, type VetoHook,
} from './types.ts';

export const DEFAULT_HOOK_TIMEOUT_MS = 5000;

interface Bound {
  plugin: string;
  fn: (...args: unknown[]) => unknown;
  timeoutMs: number;
}

/** A plugin's failure, tagged with where it happened. */
export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly hook: HookName | 'setup' | 'load',
    cause: unknown,
  ) {
    super(`Plugin '${plugin}' failed in ${hook === 'setup' || hook === 'load' ? hook : `hook '${hook}'`}: ${escapeText(cause instanceof Error ? cause.message : String(cause), 500)}`);
    this.name = 'PluginError';
  }
}

function isDeny(value: unknown): value is Deny {
  return typeof value === 'object' && value !== null && typeof (value as Deny).deny === 'string';
}

function entryHandler<H extends HookName>(entry: HookEntry<H>): { fn: Hooks[H]; order: 'pre' | 'normal' | 'post' } {
  if (typeof entry === 'function') return { fn: entry, order: 'normal' };
  return { fn: entry.handler, order: entry.order ?? 'normal' };
}

/**
 * Calls plugin hooks the way each hook's kind prescribes. The per-hook handler lists are built once, so
 * `has()` is a property check and a server without plugins does no work on its hot paths.
 */
export class PluginHost {
  private readonly table = new Map<HookName, Bound[]>();
  readonly features: readonly string[];
  readonly names: readonly string[];

  constructor(
    plugins: readonly FerryPlugin<unknown>[],
    private readonly log: PluginLogger,
  ) {
    this.names = plugins.map((p) => p.name);
    this.features = [...new Set(plugins.flatMap((p) => (Array.isArray(p.features) ? p.features : [])))];
    const orderRank = { pre: 0, normal: 1, post: 2 } as const;
    for (const hook of Object.keys(HOOK_KINDS) as HookName[]) {
      const bound: Array<Bound & { rank: number }> = [];
      for (const plugin of plugins) {
        const entry = plugin.hooks[hook] as HookEntry<typeof hook> | undefined;
        if (!entry) continue;
        const { fn, order } = entryHandler(entry);
        bound.push({ plugin: plugin.name, fn: fn as Bound['fn'], timeoutMs: plugin.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS, rank: orderRank[order] });
      }
      // Stable sort: plugin order within the same rank.
      bound.sort((a, b) => a.rank - b.rank);
      if (bound.length > 0) this.table.set(hook, bound);
    }
  }

  static empty(log: PluginLogger): PluginHost {
    return new PluginHost([], log);
  }

  has(hook: HookName): boolean {
    return this.table.has(hook);
  }

  private async call(b: Bound, hook: HookName, args: unknown[]): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        Promise.resolve().then(() => b.fn(...args)),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${b.timeoutMs} ms`)), b.timeoutMs);
        }),
      ]);
    } catch (err) {
      throw new PluginError(b.plugin, hook, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Veto hooks: the first refusal wins. A hook that throws or times out refuses (fail closed). */
  async veto<H extends VetoHook>(hook: H, ...args: Parameters<Hooks[H]>): Promise<Deny | null> {
    const list = this.table.get(hook);
    if (!list) return null;
    for (const b of list) {
      try {
        const verdict = await this.call(b, hook, args);
        if (isDeny(verdict)) return verdict;
      } catch (err) {
        this.log.error((err as Error).message);
        return { deny: 'denied', message: `${(err as Error).message} (refused to be safe)` };
      }
    }
    return null;
  }

  /** First-result hooks: the first defined result wins. A throw or time-out fails the operation. */
  async first<H extends FirstHook>(hook: H, ...args: Parameters<Hooks[H]>): Promise<Awaited<ReturnType<Hooks[H]>> | undefined> {
    const list = this.table.get(hook);
    if (!list) return undefined;
    for (const b of list) {
      let result: unknown;
      try {
        result = await this.call(b, hook, args);
      } catch (err) {
        this.log.error((err as Error).message);
        throw new FerryError('internal', (err as Error).message);
      }
      if (result !== undefined) return result as Awaited<ReturnType<Hooks[H]>>;
    }
    return undefined;
  }

  /** Notifications: started in order, never awaited by the caller, failures only logged. */
  notify<H extends NotifyHook>(hook: H, ...args: Parameters<Hooks[H]>): void {
    const list = this.table.get(hook);
    if (!list) return;
    for (const b of list) {
      this.call(b, hook, args).catch((err: unknown) => this.log.error((err as Error).message));
    }
  }

  /** Like notify, but waits for every handler (bounded by its timeout): for server:start and server:stop. */
  async notifyAndWait<H extends NotifyHook>(hook: H, ...args: Parameters<Hooks[H]>): Promise<void> {
    const list = this.table.get(hook);
    if (!list) return;
    await Promise.all(list.map((b) => this.call(b, hook, args).catch((err: unknown) => this.log.error((err as Error).message))));
  }
}
