import { FerryError } from '../core/errors.ts';
import type { Entry, Usage } from '../core/types.ts';
import type { ClientMessageType } from './messages.ts';

/** The account a log-in or sign-up opened. */
export interface AccountResult {
  user: string;
  role: 'admin' | 'user';
  perms: string[];
}

/**
 * What the `ok` reply to each request carries in `result` (`usage` in list and stat is read with `usageOf`), beside the request table (messages.ts): the server's
 * handlers return these types and the client reads them through `parseResult`, which checks them. `null`: a bare
 * `ok`. A request missing here is answered otherwise (`get`: meta, data, end) or not at all (`from`, `end`,
 * `cancel`, `hello`, `error`: they belong to another request or to the connection).
 */
export interface Results {
  signup: AccountResult;
  login: AccountResult;
  list: { count: number; bytes: number; usage?: Usage };
  stat: { entry: Entry; sha256?: string; usage?: Usage };
  /** The end of an upload: sent in reply to its `end`, under the `put`'s id. */
  put: { size: number; sha256: string; resumedFrom: number; entry: Entry };
  /** The end of a bundle (feature `bundle`), after its `end`: files stored, their bytes, records refused (each was answered `failed`). */
  putmany: { files: number; bytes: number; failed: number };
  /** The end of a download bundle, after its `end` and its last record: files sent, their bytes, names refused. */
  getmany: { files: number; bytes: number; failed: number };
  delete: null;
  mkdir: null;
  rename: null;
  log: { count: number; scope: 'all' | 'own' };
  clearlog: { archive: string };
  /** `url`: a path on the server's own origin (`/dl/<token>/<name>`), usable once, within `expiresMs`. */
  link: { url: string; size: number; mtime: number; expiresMs: number };
  ping: null;
  bye: null;
}

export type ResultType = keyof Results;
export type ResultOf<T extends ResultType> = Results[T];

// Every request with a result is a request of the table (a typo here does not compile).
type _Known = ResultType extends ClientMessageType ? true : never;
const _known: _Known = true;
void _known;

type Check<T> = (value: unknown) => value is T;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isHex64 = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
const isNull: Check<null> = (v): v is null => v === null || v === undefined;

const isEntry: Check<Entry> = (v): v is Entry =>
  isObject(v) && typeof v.name === 'string' && (v.type === 'file' || v.type === 'dir') && isCount(v.size) && isCount(v.mtime);

const isUsage: Check<Usage> = (v): v is Usage =>
  isObject(v) && isCount(v.bytes) && isCount(v.files) && (v.maxBytes === undefined || isCount(v.maxBytes)) && (v.maxFiles === undefined || isCount(v.maxFiles));

/**
 * The usage figures of a LIST or STAT result, if well-formed; a malformed one is left out rather than failing the
 * listing (a listing does not fail for want of usage figures).
 */
export function usageOf(result: { usage?: unknown }): Usage | undefined {
  const u = result.usage;
  if (!isUsage(u)) return undefined;
  const usage: Usage = { bytes: u.bytes, files: u.files };
  if (u.maxBytes !== undefined) usage.maxBytes = u.maxBytes;
  if (u.maxFiles !== undefined) usage.maxFiles = u.maxFiles;
  return usage;
}

const isAccount: Check<AccountResult> = (v): v is AccountResult =>
  isObject(v) && typeof v.user === 'string' && (v.role === 'admin' || v.role === 'user') && Array.isArray(v.perms) && v.perms.every((p) => typeof p === 'string');

const isBundleResult = (v: unknown): v is Results['putmany'] => isObject(v) && isCount(v.files) && isCount(v.bytes) && isCount(v.failed);

/** The check of each result, beside the type table. */
export const RESULT_CHECKS: { readonly [T in ResultType]: Check<Results[T]> } = {
  signup: isAccount,
  login: isAccount,
  list: (v): v is Results['list'] => isObject(v) && isCount(v.count) && isCount(v.bytes),
  stat: (v): v is Results['stat'] => isObject(v) && isEntry(v.entry) && (v.sha256 === undefined || isHex64(v.sha256)),
  putmany: (v): v is Results['putmany'] => isBundleResult(v),
  getmany: (v): v is Results['getmany'] => isBundleResult(v),
  put: (v): v is Results['put'] => isObject(v) && isCount(v.size) && isHex64(v.sha256) && isCount(v.resumedFrom) && isEntry(v.entry),
  delete: isNull,
  mkdir: isNull,
  rename: isNull,
  log: (v): v is Results['log'] => isObject(v) && isCount(v.count) && (v.scope === 'all' || v.scope === 'own'),
  clearlog: (v): v is Results['clearlog'] => isObject(v) && typeof v.archive === 'string',
  link: (v): v is Results['link'] => isObject(v) && typeof v.url === 'string' && isCount(v.size) && isCount(v.mtime) && isCount(v.expiresMs),
  ping: isNull,
  bye: isNull,
};

/**
 * The `result` of an `ok` reply to a request of type `type`, checked: a server that sends something else has
 * broken the protocol (`bad_message`).
 *
 * @example
 * ```ts
 * const { count, bytes } = parseResult('list', msg.result);
 * ```
 */
export function parseResult<T extends ResultType>(type: T, value: unknown): Results[T] {
  const check = RESULT_CHECKS[type] as Check<Results[T]>;
  if (!check(value)) throw new FerryError('bad_message', `The server's reply to '${type}' is not of the expected shape`);
  return (value ?? null) as Results[T];
}

/** Whether each entry of an `entries` page is a listing entry. */
export function parseEntries(value: unknown): Entry[] {
  if (!Array.isArray(value) || !value.every(isEntry)) throw new FerryError('bad_message', 'A listing page is not a list of entries');
  return value;
}
