// The session's request handler table and the operation sequence, driven without a socket (fake-transport.ts):
// what a front end other than the ferry CLI (a browser, a test) relies on.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLIENT_MESSAGES } from '../../src/protocol/messages.ts';
import { definePlugin, type Outcome, type PathOp } from '../../src/plugin/types.ts';
import { HANDLERS } from '../../src/server/session/handlers.ts';
import { OPERATIONS } from '../../src/server/session/operation.ts';
import { harness, type Harness } from './fake-transport.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const HELLO = { t: 'hello', v: 1, agent: 'test', features: ['resume', 'too_large', 'encoding:nope'] };

const t = suite('session: handler table and operation sequence (no socket)');
let h: Harness | null = null;
t.after.each(async () => {
  await h?.close();
  h = null;
});

/** A logged-in session of a fresh user. */
async function loggedIn(hh: Harness, user = 'ann', perms?: string[]) {
  if (perms) await hh.ctx.users.add(user, 'a-long-password', { perms: perms as never });
  const s = hh.session();
  s.send(0, HELLO);
  s.send(1, { t: perms ? 'login' : 'signup', user, password: 'a-long-password' });
  assert.is((await s.transport.final(1)).t, 'ok');
  return s;
}

t('every request of the protocol has a handler, and the continuations have none', () => {
  const continuations = ['hello', 'from', 'end', 'cancel', 'error'];
  const requests = Object.keys(CLIENT_MESSAGES).filter((t) => !continuations.includes(t)).sort();
  assert.equal(Object.keys(HANDLERS).sort(), requests);
});

t('the handshake comes first; it agrees on the features both sides have', async () => {
  h = harness();
  const early = h.session();
  early.send(1, { t: 'list', path: '' });
  await new Promise((r) => setTimeout(r, 20));
  assert.match(String(early.transport.failedWith), /Expected 'hello' first/);
  const s = h.session();
  s.send(0, HELLO);
  await new Promise((r) => setTimeout(r, 20));
  const welcome = s.transport.repliesTo(0)[0];
  assert.is(welcome?.t, 'welcome');
  assert.equal(welcome?.t === 'welcome' && welcome.features, ['resume', 'too_large']);
});

t('requests before log-in are refused with auth_required; ping works', async () => {
  h = harness();
  const s = h.session();
  s.send(0, HELLO);
  s.send(1, { t: 'list', path: '' });
  s.send(2, { t: 'ping' });
  const r = await s.transport.final(1);
  assert.is(r.t === 'error' && r.code, 'auth_required');
  assert.is((await s.transport.final(2)).t, 'ok');
});

t('sign-up, upload, list, stat and download answer with the typed results', async () => {
  h = harness();
  const s = await loggedIn(h);
  const body = Buffer.from('hello handlers');
  s.send(2, { t: 'put', path: 'a.txt', size: body.length, mtime: 1796228384741 });
  s.session.receiveData(2, [body]);
  s.send(2, { t: 'end', sha256: sha(body) });
  const put = await s.transport.final(2);
  assert.ok(put.t === 'ok');
  assert.equal(put.result, { size: body.length, sha256: sha(body), resumedFrom: 0, entry: { name: 'a.txt', type: 'file', size: body.length, mtime: 1796228384741 } });
  s.send(3, { t: 'list', path: '' });
  const list = await s.transport.final(3);
  assert.equal(list.t === 'ok' && list.result, { count: 1, bytes: body.length });
  assert.equal(s.transport.repliesTo(3)[0], { t: 'entries', entries: [{ name: 'a.txt', type: 'file', size: body.length, mtime: 1796228384741 }] });
  s.send(4, { t: 'stat', path: 'a.txt', sha256: true });
  const stat = await s.transport.final(4);
  assert.is(stat.t === 'ok' && (stat.result as { sha256: string }).sha256, sha(body));
  s.send(5, { t: 'get', path: 'a.txt' });
  const end = await s.transport.final(5);
  assert.equal(end, { t: 'end', sha256: sha(body) });
  assert.is(Buffer.concat(s.transport.data.get(5) ?? []).toString(), 'hello handlers');
  assert.match(h.lines.join('\n'), /UPLD a\.txt: received 14 B/);
});

t('the operation sequence: permission first, then the veto, storage, audit, and the after-hook exactly once', async () => {
  const calls: string[] = [];
  const watcher = definePlugin({
    name: 'watcher',
    hooks: {
      'delete:before': (op: PathOp) => {
        calls.push(`before ${op.path}`);
        return op.path === 'keep.txt' ? { deny: 'denied', message: 'kept by policy\nforged line' } : undefined;
      },
      'delete:after': (op: PathOp, outcome: Outcome) => void calls.push(`after ${op.path} ${outcome.ok ? 'ok' : outcome.code}`),
    },
  });
  h = harness([watcher]);
  const s = await loggedIn(h);
  for (const [id, path] of [[2, 'keep.txt'], [3, 'gone.txt']] as const) {
    s.send(id, { t: 'put', path, size: 1 });
    s.session.receiveData(id, [Buffer.from('x')]);
    s.send(id, { t: 'end', sha256: sha(Buffer.from('x')) });
    assert.is((await s.transport.final(id)).t, 'ok');
  }
  s.send(4, { t: 'delete', path: 'keep.txt' });
  const refused = await s.transport.final(4);
  assert.equal(refused.t === 'error' && [refused.code, refused.message], ['denied', 'kept by policy\\nforged line']);
  s.send(5, { t: 'delete', path: 'gone.txt' });
  assert.is((await s.transport.final(5)).t, 'ok');
  await new Promise((r) => setTimeout(r, 50));
  // The veto that refused is not followed by an after-hook; the one that passed is, once.
  assert.equal(calls, ['before keep.txt', 'before gone.txt', 'after gone.txt ok']);
  // A read-only account is refused by permission before any plugin hears of it.
  const reader = await loggedIn(h, 'reader', ['list', 'download']);
  reader.send(2, { t: 'delete', path: 'x' });
  const denied = await reader.transport.final(2);
  assert.is(denied.t === 'error' && denied.code, 'permission_denied');
  assert.equal(calls.length, 3);
  await h.ctx.audit.close();
  const events = readFileSync(join(h.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'delete');
  assert.equal(events.map((e) => [e.user, e.path, e.result, e.error]), [
    ['ann', 'keep.txt', 'error', 'denied'],
    ['ann', 'gone.txt', 'ok', undefined],
    ['reader', 'x', 'error', 'permission_denied'],
  ]);
});

t('every kind of operation has a permission and a veto hook; those that change the tree are audited and have an after-hook', () => {
  for (const [kind, steps] of Object.entries(OPERATIONS)) {
    assert.ok(steps.permission, kind);
    assert.ok(steps.before.endsWith(':before'), kind);
    const changes = !['list', 'stat'].includes(kind);
    assert.is(steps.audit !== null, changes, kind);
    assert.is(steps.after !== null, changes, kind);
  }
});

t('an upload over the transfer limit is busy; the slot comes back when it ends', async () => {
  h = harness([], { maxTransfersPerUser: 1 });
  const s = await loggedIn(h);
  s.send(2, { t: 'put', path: 'one.bin', size: 3 });
  s.send(3, { t: 'put', path: 'two.bin', size: 3 });
  const busy = await s.transport.final(3);
  assert.is(busy.t === 'error' && busy.code, 'busy');
  s.send(3, { t: 'cancel' });
  s.send(2, { t: 'cancel' });
  const cancelled = await s.transport.final(2);
  assert.is(cancelled.t === 'error' && cancelled.code, 'cancelled');
  s.send(4, { t: 'put', path: 'two.bin', size: 0 });
  s.send(4, { t: 'end', sha256: sha(Buffer.alloc(0)) });
  assert.is((await s.transport.final(4)).t, 'ok');
});

t.run();
