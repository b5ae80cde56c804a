import { escapeText, quote, word } from '../core/text.ts';
import type { AuditEvent, AuditEventType } from './event.ts';

/** How `renderEvent` formats. */
export interface RenderOptions {
  /** Show the time in UTC instead of the local time zone (default false). */
  utc?: boolean;
}

/** The label each event type gets in a rendered line, in the words of the original RDLOG. */
export const AUDIT_LABELS: Readonly<Record<AuditEventType, string>> = {
  login: 'LOGIN',
  login_failed: 'LOGIN',
  signup: 'SIGNUP',
  upload: 'UPLOAD',
  download: 'DOWNLOAD',
  delete: 'DELETE',
  rename: 'RENAME',
  mkdir: 'MKDIR',
  log_read: 'RDLOG',
  log_clear: 'CLRLOG',
};

/**
 * One audit event as one line of text for RDLOG, in the original's style: time with microseconds (local
 * time unless `utc`), the label, then a sentence that always names the user. Text that came from a client
 * (names, paths) is escaped so that it can neither break the line nor smuggle terminal control codes.
 *
 * @example
 * ```ts
 * renderEvent({ time: '2024-04-18T12:31:03.694276Z', event: 'upload', user: 'new_user',
 *   address: '10.0.0.1:5000', result: 'ok', path: 'text.txt' }, { utc: true });
 * // "2024-04-18 12:31:03.694276 - UPLOAD: Uploaded file 'text.txt' by 'new_user'"
 * ```
 */
export function renderEvent(e: AuditEvent, options: RenderOptions = {}): string {
  const label = (AUDIT_LABELS as Record<string, string | undefined>)[e.event] ?? _clean(String(e.event)).toUpperCase();
  return `${_time(e.time, options.utc === true)} - ${label}: ${_sentence(e)}`;
}

function _sentence(e: AuditEvent): string {
  const failed = e.result === 'error';
  const by = `by ${_user(e.user)}`;
  const from = `from ${_clean(e.address)}`;
  const path = _quote(e.path ?? '');
  const extras: string[] = [];
  let text: string;
  switch (e.event) {
    case 'login':
      text = failed ? `Log-in of ${_user(e.user)} ${from} failed` : `User ${_user(e.user)} logged in ${from}`;
      break;
    case 'login_failed':
      text = `Authentication failed for user: ${_bareUser(e.user)} ${from}`;
      break;
    case 'signup':
      text = failed ? `Sign-up of ${_user(e.user)} ${from} failed` : `Signed up user ${_user(e.user)} ${from}`;
      break;
    case 'upload':
      text = failed ? `Upload of ${path} ${by} failed` : `Uploaded file ${path} ${by}`;
      if (!failed) extras.push(..._transfer(e));
      break;
    case 'download':
      text = failed ? `Download of ${path} ${by} failed` : `Downloaded file ${path} ${by}`;
      if (!failed) extras.push(..._transfer(e));
      break;
    case 'delete':
      text = failed ? `Deletion of ${path} ${by} failed` : `File ${path} was deleted ${by}`;
      break;
    case 'rename': {
      const to = _quote(e.to ?? '');
      text = failed ? `Rename of ${path} to ${to} ${by} failed` : `Renamed ${path} to ${to} ${by}`;
      break;
    }
    case 'mkdir':
      text = failed ? `Creating directory ${path} ${by} failed` : `Created directory ${path} ${by}`;
      break;
    case 'log_read':
      text = failed ? `Log read ${by} failed` : `Log read ${by}`;
      break;
    case 'log_clear':
      text = failed ? `Log clear ${by} failed` : `Log cleared ${by}`;
      if (!failed && e.detail !== undefined) return `${text} (archived as ${_clean(e.detail)})`;
      break;
    default:
      text = `${_clean(String((e as { event: unknown }).event))} ${by} ${from}${failed ? ' failed' : ''}`;
  }
  // login_failed says it failed in its own words; its code (auth_failed, locked_out) is optional.
  if (e.event === 'login_failed') {
    if (e.error !== undefined) extras.unshift(_clean(e.error));
  } else if (failed) {
    extras.unshift(e.error !== undefined ? _clean(e.error) : 'unknown error');
  }
  if (e.detail !== undefined) extras.push(_clean(e.detail));
  return extras.length > 0 ? `${text} (${extras.join(', ')})` : text;
}

/** Size, duration and digest of a transfer, as far as the event has them. */
function _transfer(e: AuditEvent): string[] {
  const parts: string[] = [];
  if (e.bytes !== undefined) {
    parts.push(e.durationMs !== undefined ? `${_bytes(e.bytes)} in ${_duration(e.durationMs)}` : _bytes(e.bytes));
  } else if (e.durationMs !== undefined) {
    parts.push(`in ${_duration(e.durationMs)}`);
  }
  if (e.sha256 !== undefined) parts.push(`sha256 ${_clean(e.sha256.slice(0, 12))}${e.sha256.length > 12 ? '…' : ''}`);
  return parts;
}

const _UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

function _bytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${n} B`;
  let value = n;
  let unit: string = 'B';
  for (const next of _UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

function _duration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** `yyyy-mm-dd hh:mm:ss.uuuuuu` from the stored ISO time; the stored text itself if it does not parse. */
function _time(iso: string, utc: boolean): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(iso);
  const date = m ? new Date(`${m[1]}Z`) : null;
  if (!m || !date || Number.isNaN(date.getTime())) return _clean(iso);
  const micros = (m[2] ?? '').padEnd(6, '0').slice(0, 6);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const [y, mo, d, h, mi, s] = utc
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
  return `${p(y, 4)}-${p(mo)}-${p(d)} ${p(h)}:${p(mi)}:${p(s)}.${micros}`;
}

/** The user, quoted; never an empty `''`. */
function _user(user: string): string {
  return user === '' ? '(unknown user)' : _quote(user);
}

/** The user as the original printed it (bare) when that is unambiguous, else quoted. */
function _bareUser(user: string): string {
  return user === '' ? _user(user) : word(user, Number.POSITIVE_INFINITY);
}

/** Text from a client, quoted and escaped (events are bounded when recorded, so no cut here). */
function _quote(text: string): string {
  return quote(text, Number.POSITIVE_INFINITY);
}

/** Text from outside made safe for one terminal line. */
function _clean(text: string): string {
  return escapeText(text);
}
