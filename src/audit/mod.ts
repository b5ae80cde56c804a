/**
 * The audit trail: the event type, the append-only JSON Lines log that stores it, and the one-line
 * rendering that RDLOG shows.
 *
 * @example
 * ```ts
 * import { AuditLog, renderEvent } from './audit/mod.ts';
 * const log = new AuditLog(dataDir);
 * await log.append({ event: 'login', user: 'ann', address: '10.0.0.1:5000', result: 'ok' });
 * for (const e of await log.read({ limit: 20 })) console.log(renderEvent(e));
 * ```
 */
export * from './event.ts';
export * from './log.ts';
export * from './render.ts';
