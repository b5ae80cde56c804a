import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PluginHost } from '../../src/plugin/host.ts';
import { checkPlugin } from '../../src/plugin/load.ts';
import { definePlugin, type UploadOp } from '../../src/plugin/types.ts';

function logger() {
  const lines: string[] = [];
  return { lines, log: { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) } };
}

const op: UploadOp = { user: 'u', role: 'user', address: '1.2.3.4:5', path: 'a.exe', size: 1, replaces: null };

const host = suite('plugin host');

host('an empty host has no hooks, vetoes nothing and notifies no one', async () => {
  const h = PluginHost.empty(logger().log);
  assert.not.ok(h.has('upload:before'));
  assert.is(await h.veto('upload:before', op), null);
  assert.is(await h.first('usage:get', op), undefined);
  h.notify('audit', { time: 't', event: 'login', user: 'u', address: 'a', result: 'ok' });
});

host('the first refusal wins and later plugins are not asked', async () => {
  const asked: string[] = [];
  const h = new PluginHost(
    [
      definePlugin({ name: 'a', hooks: { 'upload:before': () => void asked.push('a') } }),
      definePlugin({ name: 'b', hooks: { 'upload:before': () => (asked.push('b'), { deny: 'quota_exceeded', message: 'full' }) } }),
      definePlugin({ name: 'c', hooks: { 'upload:before': () => void asked.push('c') } }),
    ],
    logger().log,
  );
  assert.equal(await h.veto('upload:before', op), { deny: 'quota_exceeded', message: 'full' });
  assert.equal(asked, ['a', 'b']);
});

host('a veto hook that throws refuses (fail closed) and is reported with plugin and hook names', async () => {
  const { lines, log } = logger();
  const h = new PluginHost([definePlugin({ name: 'broken', hooks: { 'upload:before': () => { throw new Error('boom'); } } })], log);
  const verdict = await h.veto('upload:before', op);
  assert.is(verdict?.deny, 'denied');
  assert.match(verdict?.message ?? '', /Plugin 'broken' failed in hook 'upload:before': boom/);
  assert.match(lines.join('\n'), /Plugin 'broken' failed in hook 'upload:before': boom/);
});

host('a hook that takes too long times out (and a veto then refuses)', async () => {
  const h = new PluginHost([definePlugin({ name: 'slow', timeoutMs: 50, hooks: { 'upload:before': () => new Promise(() => {}) } })], logger().log);
  const started = Date.now();
  const verdict = await h.veto('upload:before', op);
  assert.ok(Date.now() - started < 1000);
  assert.match(verdict?.message ?? '', /slow.*timed out after 50 ms/);
});

host('notifications never throw to the caller, and failures are logged by name', async () => {
  const { lines, log } = logger();
  const h = new PluginHost([definePlugin({ name: 'noisy', hooks: { audit: async () => { throw new Error('endpoint down'); } } })], log);
  h.notify('audit', { time: 't', event: 'login', user: 'u', address: 'a', result: 'ok' });
  await new Promise((r) => setTimeout(r, 20));
  assert.match(lines.join('\n'), /Plugin 'noisy' failed in hook 'audit': endpoint down/);
});

host('pre and post order run before and after the others', async () => {
  const order: string[] = [];
  const h = new PluginHost(
    [
      definePlugin({ name: 'late', hooks: { 'server:stop': { handler: () => void order.push('late'), order: 'post' } } }),
      definePlugin({ name: 'plain', hooks: { 'server:stop': () => void order.push('plain') } }),
      definePlugin({ name: 'early', hooks: { 'server:stop': { handler: () => void order.push('early'), order: 'pre' } } }),
    ],
    logger().log,
  );
  await h.notifyAndWait('server:stop');
  assert.equal(order, ['early', 'plain', 'late']);
});

host('first-result hooks return the first defined result; a throw fails the operation', async () => {
  const h = new PluginHost(
    [
      definePlugin({ name: 'pass', hooks: { 'usage:get': () => undefined } }),
      definePlugin({ name: 'knows', hooks: { 'usage:get': () => ({ bytes: 1, files: 1 }) } }),
    ],
    logger().log,
  );
  assert.equal(await h.first('usage:get', op), { bytes: 1, files: 1 });
  const bad = new PluginHost([definePlugin({ name: 'bad', hooks: { 'usage:get': () => { throw new Error('nope'); } } })], logger().log);
  try {
    await bad.first('usage:get', op);
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /Plugin 'bad' failed in hook 'usage:get': nope/);
  }
});

host('features from plugins are merged without duplicates', () => {
  const h = new PluginHost([definePlugin({ name: 'x', features: ['encoding:gzip'], hooks: {} }), definePlugin({ name: 'y', features: ['encoding:gzip', 'encoding:br'], hooks: {} })], logger().log);
  assert.equal(h.features, ['encoding:gzip', 'encoding:br']);
});

host.run();

const check = suite('plugin shape check');

check('a module without a plugin, a bad name, an unknown hook or a non-function hook is refused clearly', () => {
  assert.throws(() => checkPlugin(undefined, 'x.mjs'), /does not export a plugin/);
  assert.throws(() => checkPlugin({ name: 'bad name!', hooks: {} }, 'x.mjs'), /needs a 'name'/);
  assert.throws(() => checkPlugin({ name: 'p', hooks: { 'upload:bfore': () => {} } }, 'x.mjs'), /unknown hook 'upload:bfore'/);
  assert.throws(() => checkPlugin({ name: 'p', hooks: { audit: 42 } }, 'x.mjs'), /hook 'audit' is not a function/);
  assert.ok(checkPlugin({ name: 'ok', hooks: { audit: { handler: () => {}, order: 'post' } } }, 'x.mjs'));
});

check.run();
