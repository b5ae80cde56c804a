/**
 * `ferry user add|remove|list|passwd NAME --data DIR [--admin] [--perms list,download,...]`: offline
 * account administration on `<data>/users.json`, or with `--db URL` (or FERRY_DB) on the accounts several servers
 * share in PostgreSQL. A running server sees the changes on its next log-in.
 *
 * The password comes from FERRY_PASSWORD when set, else from a hidden prompt (asked twice) when stdin
 * is a terminal; otherwise the command fails.
 */
import { mkdir } from 'node:fs/promises';
import { consola } from 'consola';
import { FerryError } from '../core/errors.ts';
import { Prompt } from './prompt.ts';
import {
  normalizePermissions,
  PERMISSIONS,
  UserStore,
  userFileIn,
  type UserDirectory,
  validatePassword,
  validateUsername,
  type UserRecord,
} from '../auth/mod.ts';

export interface UserCommandOptions {
  /** The server's data directory. */
  data: string;
  /** The servers' shared database (postgres://...), instead of the data directory; FERRY_DB when absent. */
  db?: string;
  /** `add`: make the user an admin. */
  admin?: boolean;
  /** `add`: comma-separated permissions (default: all). */
  perms?: string;
}

const _ACTIONS = ['add', 'remove', 'list', 'passwd'] as const;
type _Action = (typeof _ACTIONS)[number];

/**
 * Runs one `ferry user` action. Throws an Error with a one-sentence message on bad input; the CLI
 * prints it and exits 1.
 *
 * @example
 * process.env.FERRY_PASSWORD = 'correct horse';
 * await runUserCommand('add', 'alice', { data: './data', perms: 'list,download' });
 */
export async function runUserCommand(action: string, name: string | undefined, options: UserCommandOptions): Promise<void> {
  if (!(_ACTIONS as readonly string[]).includes(action)) {
    throw new Error(`Unknown user action '${action}': use ${_ACTIONS.join(', ')}`);
  }
  if (typeof options.data !== 'string' || options.data === '') throw new Error('Missing --data DIR: the server data directory');
  const url = options.db ?? (process.env['FERRY_DB'] || undefined);
  if (action !== 'list' && (name === undefined || name === '')) throw new Error(`Missing user name: ferry user ${action} NAME ${url ? '--db URL' : '--data DIR'}`);
  if (url === undefined) return _run(action as _Action, name ?? '', new UserStore(userFileIn(options.data)), options);
  const { DbUserStore, openDatabase } = await import('../db/mod.ts');
  const db = await openDatabase(String(url));
  try {
    await _run(action as _Action, name ?? '', new DbUserStore(db), options);
  } finally {
    await db.close();
  }
}

async function _run(action: _Action, name: string, store: UserDirectory, options: UserCommandOptions): Promise<void> {
  switch (action) {
    case 'list':
      return _list(store);
    case 'add':
      return _add(store, name, options);
    case 'remove':
      await store.remove(name);
      consola.success(`Removed user '${name}' from ${store.where}`);
      return;
    case 'passwd': {
      if (!(await store.get(name))) throw new FerryError('not_found', `No user named '${name}' in ${store.where}`);
      const user = await store.setPassword(name, await _readPassword(`New password for ${name}: `));
      consola.success(`Changed the password of '${user.name}'`);
      return;
    }
  }
}

async function _add(store: UserDirectory, name: string, options: UserCommandOptions): Promise<void> {
  validateUsername(name);
  const perms = options.perms === undefined ? [...PERMISSIONS] : _parsePerms(options.perms);
  const existing = await store.get(name);
  if (existing) throw new FerryError('user_exists', `User name '${name}' is taken (by '${existing.name}')`);
  const password = await _readPassword(`Password for ${name}: `);
  if (store instanceof UserStore) await mkdir(options.data, { recursive: true, mode: 0o700 });
  const user = await store.add(name, password, { role: options.admin === true ? 'admin' : 'user', perms });
  consola.success(`Added ${user.role} '${user.name}' with ${user.perms.join(', ')} to ${store.where}`);
}

async function _list(store: UserDirectory): Promise<void> {
  const users = await store.list();
  if (users.length === 0) {
    consola.info(`No users in ${store.where}: add one with ferry user add NAME ${store instanceof UserStore ? '--data DIR' : '--db URL'}`);
    return;
  }
  const width = Math.max(...users.map((user) => user.name.length));
  const line = (user: UserRecord) =>
    `${user.name.padEnd(width)}  ${user.role.padEnd(5)}  ${user.perms.join(',') || '-'}  ${user.created}\n`;
  process.stdout.write(users.map(line).join(''));
}

function _parsePerms(text: string): UserRecord['perms'] {
  const list = text
    .split(',')
    .map((perm) => perm.trim())
    .filter((perm) => perm !== '');
  if (list.length === 0) throw new Error(`--perms needs at least one of ${PERMISSIONS.join(', ')}`);
  return normalizePermissions(list);
}

/** FERRY_PASSWORD if set, else a hidden prompt asked twice on a terminal. */
async function _readPassword(question: string): Promise<string> {
  const fromEnv = process.env['FERRY_PASSWORD'];
  if (fromEnv !== undefined) {
    validatePassword(fromEnv);
    return fromEnv;
  }
  if (!process.stdin.isTTY) throw new Error('No password given: set FERRY_PASSWORD or run in a terminal');
  const prompt = new Prompt(process.stdin, process.stderr);
  try {
    const first = await prompt.askHidden(question);
    if (first === null) throw new Error('No password given: the input ended');
    validatePassword(first);
    const second = await prompt.askHidden('Repeat it: ');
    if (first !== second) throw new Error('The two passwords differ: nothing was changed');
    return first;
  } finally {
    prompt.close();
  }
}
