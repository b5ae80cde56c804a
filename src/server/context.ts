import type { AuditStore } from '../audit/log.ts';
import type { AuditEvent } from '../audit/mod.ts';
import type { LoginGate, RateGate } from '../auth/throttle.ts';
import type { UserDirectory } from '../auth/types.ts';
import type { PluginHost } from '../plugin/host.ts';
import type { StorageDriver } from '../storage/storage.ts';
import type { ServerLog } from './console.ts';
import type { FreeSpace } from './free-space.ts';
import type { ServerOptions } from './options.ts';
import type { TransferSlots } from './session/transfers.ts';
import type { DownloadLinks } from '../web/links.ts';

/** What every session of one server shares. */
export interface ServerContext {
  readonly options: ServerOptions;
  readonly users: UserDirectory;
  readonly throttle: LoginGate;
  /** The per-user transfer limit, across the user's connections. */
  readonly transfers: TransferSlots;
  /** Sign-ups per address. */
  readonly signups: RateGate;
  readonly audit: AuditStore;
  readonly storage: StorageDriver;
  /** Free space under the data directory, checked as uploads start. */
  readonly freeSpace: FreeSpace;
  readonly log: ServerLog;
  /** Plugin hooks (an empty host when no plugin is configured). */
  readonly plugins: PluginHost;
  /** Download links for the page (request `link`), or null where the server does not answer browsers. */
  readonly links: DownloadLinks | null;
  readonly agent: string;
  /** Features this server offers in the handshake. */
  readonly features: readonly string[];
}

/** Appends `event` to the audit log, then tells the plugins (once it is written); a failed write is a warning. */
export function recordAudit(ctx: Pick<ServerContext, 'audit' | 'plugins' | 'log'>, event: AuditEvent): void {
  ctx.audit
    .append(event)
    .then(() => ctx.plugins.notify('audit', event))
    .catch((err: unknown) => ctx.log.warn(`audit log append failed: ${String(err)}`));
}
