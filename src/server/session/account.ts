import { burnPasswordCheck, validatePassword, verifyPassword } from '../../auth/password.ts';
import { PERMISSIONS, type Account } from '../../auth/types.ts';
import { validateUsername } from '../../auth/users.ts';
import { FerryError } from '../../core/errors.ts';
import { escapeText, word } from '../../core/text.ts';
import { PROTOCOL_VERSION } from '../../protocol/frame.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { AccountResult } from '../../protocol/results.ts';
import { refusalOf } from './operation.ts';
import type { SessionScope } from './scope.ts';

/** The handshake: the version must match; the features both sides offer are agreed. */
export function hello(s: SessionScope, msg: ClientMessageOf<'hello'>): void {
  if (msg.v !== PROTOCOL_VERSION) {
    throw new FerryError('version_mismatch', `This server speaks protocol version ${PROTOCOL_VERSION}, the client ${msg.v}`);
  }
  const features = s.ctx.features.filter((f) => msg.features.includes(f));
  s.transport.send(0, {
    t: 'welcome',
    v: PROTOCOL_VERSION,
    agent: s.ctx.agent,
    features,
    maxData: s.ctx.options.limits.maxData,
    maxMessage: s.ctx.options.limits.maxMessage,
    signup: s.ctx.options.signup,
  });
  s.welcomed(features);
  s.info(`Handshake done (client ${escapeText(msg.agent, 64)})`);
}

function resultOf(a: Account): AccountResult {
  return { user: a.name, role: a.role, perms: [...a.perms] };
}

/** SIGNUP: a new account (never an admin), if sign-up is open and this address has not made too many. */
export async function signup(s: SessionScope, msg: ClientMessageOf<'signup'>): Promise<AccountResult> {
  if (s.stage === 'ready') throw new FerryError('already_authenticated', 'Already logged in');
  if (s.ctx.options.signup !== 'open') throw new FerryError('signup_closed', 'Sign-up is closed on this server; ask an admin for an account');
  validateUsername(msg.user);
  validatePassword(msg.password);
  if (!(await s.ctx.signups.take(s.host))) {
    s.info(`Sign-up refused for user: ${word(msg.user)} (too many sign-ups from this address)`);
    throw new FerryError('locked_out', 'Too many sign-ups from your address; try again in an hour');
  }
  try {
    const record = await s.ctx.users.add(msg.user, msg.password);
    const account: Account = { name: record.name, role: record.role, perms: new Set(record.perms) };
    s.becomeUser(account);
    s.audit({ event: 'signup', result: 'ok' });
    s.info(`Signed up user: ${record.name}`);
    return resultOf(account);
  } catch (err) {
    s.audit({ event: 'signup', user: msg.user, result: 'error', error: err instanceof FerryError ? err.code : 'internal' });
    throw err;
  }
}

/**
 * LOGIN: throttled per address and per user (a lock-out answers at once), a plugin may vouch for or refuse the
 * user first, then the password is checked against the users file (a slow hash, even for an unknown name).
 */
export async function login(s: SessionScope, msg: ClientMessageOf<'login'>): Promise<AccountResult> {
  if (s.stage === 'ready') throw new FerryError('already_authenticated', 'Already logged in');
  const { throttle, users, plugins } = s.ctx;
  const host = s.host;
  const name = msg.user.slice(0, 64);
  const gate = await throttle.check(host, name);
  if (!gate.allowed) {
    const seconds = Math.ceil(gate.retryAfterMs / 1000);
    s.audit({ event: 'login_failed', user: name, result: 'error', error: 'locked_out' });
    s.info(`Authentication failed for user: ${word(name)} (locked out for ${seconds} s)`);
    throw new FerryError('locked_out', `Too many failed log-ins; try again in ${seconds} s`);
  }
  if (plugins.has('auth:login')) {
    const result = await plugins.first('auth:login', { user: name, password: msg.password, address: s.address });
    if (result && 'user' in result) {
      await throttle.success(host, name);
      const account: Account = { name: result.user.name, role: result.user.role ?? 'user', perms: new Set(result.user.perms ?? [...PERMISSIONS]) };
      s.becomeUser(account);
      s.audit({ event: 'login', result: 'ok', detail: 'authenticated by a plugin' });
      s.info(`Authentication successful for user: ${word(account.name)} (by a plugin)`);
      return resultOf(account);
    }
    if (result && 'deny' in result) {
      await throttle.fail(host, name);
      s.audit({ event: 'login_failed', user: name, result: 'error', error: 'auth_failed', detail: 'refused by a plugin' });
      s.info(`Authentication failed for user: ${word(name)} (refused by a plugin)`);
      throw refusalOf(result, 'auth_failed');
    }
  }
  // A store that cannot be read (users.json damaged, the database gone) fails the log-in as such, never as a wrong
  // password: `unavailable` is retryable, and nothing is counted against the user.
  const record = await users.get(name).catch((err: unknown) => {
    if (err instanceof FerryError) throw err;
    s.ctx.log.warn(`cannot read the users: ${escapeText(String(err), 300)}`);
    throw new FerryError('unavailable', 'The server cannot read its accounts; try again in a moment');
  });
  const ok = record ? await verifyPassword(msg.password, record.hash) : (await burnPasswordCheck(msg.password), false);
  if (!ok || !record) {
    const delay = await throttle.fail(host, name);
    s.audit({ event: 'login_failed', user: name, result: 'error', error: 'auth_failed' });
    s.info(`Authentication failed for user: ${word(name)}`);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    throw new FerryError('auth_failed', 'Wrong user name or password');
  }
  await throttle.success(host, name);
  const account: Account = { name: record.name, role: record.role, perms: new Set(record.perms) };
  s.becomeUser(account);
  s.audit({ event: 'login', result: 'ok' });
  s.info(`Authentication successful for user: ${record.name}`);
  return resultOf(account);
}
