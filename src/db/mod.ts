/**
 * Several ferry servers as one: their shared state in PostgreSQL (`ferry serve --db postgres://...`) — accounts,
 * log-in throttles and sign-up limits, the audit trail, the TLS identity, the servers' presence and the per-user
 * transfer slots; plugins keep theirs there too (PluginContext.db). The embedded default (users.json, audit.log,
 * identity/ under the data directory) needs none of this.
 *
 * @example
 * ```ts
 * const db = await openDatabase('postgres://ferry@127.0.0.1:5433/ferry');
 * const users = new DbUserStore(db);
 * ```
 */
import { migrate } from './migrate.ts';
import { Database, type DatabaseOptions } from './pool.ts';
import { FERRY_MIGRATIONS } from './schema.ts';

export { DbAuditLog } from './audit.ts';
export { DbNameLeases } from './leases.ts';
export { loadOrCreateSharedIdentity, storeSharedIdentity } from './identity.ts';
export { migrate, type Migration } from './migrate.ts';
export { checkDatabaseUrl, Database, isDatabaseGone, redactUrl, type DatabaseOptions, type Querier } from './pool.ts';
export { FERRY_MIGRATIONS } from './schema.ts';
export { liveServer, ServerPresence, STALE_AFTER_S } from './servers.ts';
export { DbTransferSlots } from './slots.ts';
export { DbLoginGate, DbRateGate } from './throttle.ts';
export { DbUserStore } from './users.ts';

/**
 * Connects to the database and brings ferry's schema up to date (one server migrates while others starting at the
 * same moment wait). Throws an Error with one clear line when the database cannot be reached or migrated.
 */
export async function openDatabase(url: string, options: DatabaseOptions = {}): Promise<Database> {
  const db = await Database.connect(url, options);
  try {
    await migrate(db, 'ferry', FERRY_MIGRATIONS);
  } catch (err) {
    await db.close();
    throw new Error(`Cannot prepare the database at ${db.where}: ${(err as Error).message}`);
  }
  return db;
}
