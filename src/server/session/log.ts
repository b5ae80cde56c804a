import { FerryError } from '../../core/errors.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { Results } from '../../protocol/results.ts';
import { sendPaged } from './files.ts';
import type { LoggedIn, SessionScope } from './scope.ts';

/** Most events one RDLOG returns. */
const MAX_LOG_EVENTS = 10_000;

/** RDLOG: the user's own events; an admin's are everyone's (unless `all: false`). */
export async function readLog(s: SessionScope, id: number, msg: ClientMessageOf<'log'>, user: LoggedIn): Promise<Results['log']> {
  const { account } = user;
  const all = account.role === 'admin' && msg.all !== false;
  const limit = Math.min(msg.limit ?? 1000, MAX_LOG_EVENTS);
  const events = await s.ctx.audit.read(all ? { limit } : { user: account.name, limit });
  await sendPaged(s, id, 'events', events);
  s.audit({ event: 'log_read', result: 'ok', detail: all ? 'all users' : 'own events' });
  s.info(`RDLOG: ${events.length} events${all ? ' (all users)' : ''}`);
  return { count: events.length, scope: all ? 'all' : 'own' };
}

/** CLRLOG (admins only): the log is archived and a new one starts with who cleared it. */
export async function clearLog(s: SessionScope, _id: number, _msg: ClientMessageOf<'clearlog'>, user: LoggedIn): Promise<Results['clearlog']> {
  const { account } = user;
  if (account.role !== 'admin') {
    s.audit({ event: 'log_clear', result: 'error', error: 'permission_denied' });
    throw new FerryError('permission_denied', 'Only an admin may clear the log');
  }
  const archive = await s.ctx.audit.clear(account.name, s.address);
  s.info(`CLRLOG: archived as ${archive}`);
  return { archive };
}
