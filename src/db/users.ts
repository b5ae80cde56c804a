/**
 * Accounts in the shared database: the same rules as the users.json store (auth/users.ts), made exact across
 * servers by the database — a name is unique ignoring case by the table's primary key, so of two sign-ups of one
 * name at the same moment on two servers exactly one is inserted.
 */
import { FerryError } from '../core/errors.ts';
import { hashPassword, normalizePermissions, PERMISSIONS, validatePassword, validateUsername, type AddUserOptions } from '../auth/mod.ts';
import type { Permission, Role, UserDirectory, UserRecord } from '../auth/mod.ts';
import type { Database } from './pool.ts';

interface _Row {
  name: string;
  role: string;
  perms: string[];
  hash: string;
  created: string;
}

const _COLUMNS = 'name, role, perms, hash, created';

/**
 * @example
 * ```ts
 * const users = new DbUserStore(db);
 * await users.add('alice', 'correct horse');
 * await users.get('ALICE'); // { name: 'alice', role: 'user', ... }
 * ```
 */
export class DbUserStore implements UserDirectory {
  constructor(private readonly db: Database) {}

  get where(): string {
    return this.db.where;
  }

  async get(name: string): Promise<UserRecord | null> {
    // A name no account can have (a NUL, which the database cannot even hold) is simply not found.
    if (typeof name !== 'string' || name.includes('\0') || name.length > 64) return null;
    const [row] = await this.db.query<_Row>(`SELECT ${_COLUMNS} FROM users WHERE name_key = $1`, [_key(name)]);
    return row ? _record(row) : null;
  }

  async list(): Promise<UserRecord[]> {
    return (await this.db.query<_Row>(`SELECT ${_COLUMNS} FROM users ORDER BY added`)).map(_record);
  }

  async add(name: string, password: string, options: AddUserOptions = {}): Promise<UserRecord> {
    validateUsername(name);
    validatePassword(password);
    const role = _checkRole(options.role ?? 'user');
    const perms = options.perms === undefined ? [...PERMISSIONS] : normalizePermissions(options.perms);
    // Fail fast before the slow hash; the check that counts is the insert's.
    if (await this.get(name)) throw _exists(name);
    const hash = await hashPassword(password);
    const created = new Date().toISOString();
    const rows = await this.db.query<_Row>(
      `INSERT INTO users (name_key, name, role, perms, hash, created) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (name_key) DO NOTHING RETURNING ${_COLUMNS}`,
      [_key(name), name, role, perms, hash, created],
    );
    const row = rows[0];
    if (!row) throw _exists(name);
    return _record(row);
  }

  async remove(name: string): Promise<void> {
    const rows = await this.db.query('DELETE FROM users WHERE name_key = $1 RETURNING name', [_key(name)]);
    if (rows.length === 0) throw _notFound(name);
  }

  async setPassword(name: string, password: string): Promise<UserRecord> {
    validatePassword(password);
    if (!(await this.get(name))) throw _notFound(name);
    return this.#update(name, 'hash', await hashPassword(password));
  }

  async setPerms(name: string, perms: readonly Permission[]): Promise<UserRecord> {
    return this.#update(name, 'perms', normalizePermissions(perms));
  }

  async setRole(name: string, role: Role): Promise<UserRecord> {
    return this.#update(name, 'role', _checkRole(role));
  }

  async #update(name: string, column: 'hash' | 'perms' | 'role', value: unknown): Promise<UserRecord> {
    const [row] = await this.db.query<_Row>(`UPDATE users SET ${column} = $2 WHERE name_key = $1 RETURNING ${_COLUMNS}`, [_key(name), value]);
    if (!row) throw _notFound(name);
    return _record(row);
  }
}

function _key(name: string): string {
  return String(name).toLowerCase();
}

function _record(row: _Row): UserRecord {
  return { name: row.name, role: row.role as Role, perms: normalizePermissions(row.perms), hash: row.hash, created: row.created };
}

function _checkRole(role: Role): Role {
  if (role !== 'admin' && role !== 'user') throw new Error(`Unknown role '${String(role)}': use admin or user`);
  return role;
}

function _exists(name: string): FerryError {
  return new FerryError('user_exists', `User name '${name}' is taken`);
}

function _notFound(name: string): FerryError {
  return new FerryError('not_found', `No user named '${name}'`);
}
