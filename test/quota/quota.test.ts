import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createQuotaPlugin } from '../../plugins/quota/index.ts';
import { Ledger } from '../../plugins/quota/ledger.ts';
import { limitsFor, validate } from '../../plugins/quota/options.ts';
import { formatSize, parseSize } from '../../src/core/size.ts';
import type { PluginHost } from '../../src/plugin/host.ts';
import { loadPlugins } from '../../src/plugin/load.ts';
import type { Entry } from '../../src/core/types.ts';
import type { FerryPlugin, UploadOp } from '../../src/plugin/types.ts';
import { cleanup, tempDir } from '../e2e/harness.ts';

const MiB = 1024 * 1024;

// ---- sizes ----------------------------------------------------------------------------------------

const sizes = suite('sizes');

sizes('numbers of bytes and strings with binary or decimal units are sizes', () => {
  assert.is(parseSize(0), 0);
  assert.is(parseSize(1048576), MiB);
  assert.is(parseSize('512'), 512);
  assert.is(parseSize('512 B'), 512);
  assert.is(parseSize('10 MiB'), 10 * MiB);
  assert.is(parseSize('10mib'), 10 * MiB);
  assert.is(parseSize('1.5GB'), 1_500_000_000);
  assert.is(parseSize('1.5 GiB'), 1.5 * 1024 * MiB);
  assert.is(parseSize('2 kB'), 2000);
  assert.is(parseSize('1k'), 1024, 'a bare letter is binary, as in rsync');
  assert.is(parseSize('.5 KiB'), 512);
  assert.is(parseSize(' 3 TiB '), 3 * 1024 ** 4);
  assert.is(parseSize('1.1 KiB'), 1126, 'fractions of a byte are dropped');
});

sizes('anything else is not a size', () => {
  for (const bad of ['10 MB?', '-1', '-1 MiB', 'ten', '', ' ', '10 XB', '1e3', '1,5 GB', 'MiB', '10 MiB 2', '9999999 PiB']) {
    assert.is(parseSize(bad), null, JSON.stringify(bad));
  }
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, 1e300, true, null, undefined, {}, []]) {
    assert.is(parseSize(bad), null, String(bad));
  }
});

sizes('sizes are shown in binary units without trailing zeros', () => {
  assert.is(formatSize(0), '0 B');
  assert.is(formatSize(512), '512 B');
  assert.is(formatSize(1536), '1.5 KiB');
  assert.is(formatSize(10 * MiB), '10 MiB');
  assert.is(formatSize(Math.round(9.1 * MiB)), '9.1 MiB');
  assert.is(formatSize(2 * MiB), '2 MiB');
  assert.is(formatSize(1024 ** 3 * 1.25), '1.25 GiB');
});

sizes.run();

// ---- options --------------------------------------------------------------------------------------

const options = suite('options');

options('defaults and per-user limits are read and normalised to numbers', () => {
  const o = validate({
    defaults: { maxBytes: '10 MiB', maxFiles: 100 },
    users: { alice: { maxBytes: '1.5GB' }, bob: { maxFiles: '7' }, root: { maxBytes: null, maxFiles: 'unlimited' } },
  });
  assert.equal(o.defaults, { maxBytes: 10 * MiB, maxFiles: 100 });
  assert.equal(limitsFor(o, 'alice'), { maxBytes: 1_500_000_000, maxFiles: 100 });
  assert.equal(limitsFor(o, 'bob'), { maxBytes: 10 * MiB, maxFiles: 7 });
  assert.equal(limitsFor(o, 'root'), {}, 'null lifts a default for one user');
  assert.equal(limitsFor(o, 'carol'), { maxBytes: 10 * MiB, maxFiles: 100 });
  assert.equal(limitsFor(o, 'constructor'), { maxBytes: 10 * MiB, maxFiles: 100 }, 'no inherited properties');
  assert.equal(validate(undefined), { defaults: {}, users: {} });
  assert.equal(limitsFor(validate({}), 'alice'), {});
});

options('bad options are refused with a message naming the field', () => {
  const cases: Array<[unknown, string]> = [
    [{ users: { alice: { maxBytes: '10 MB?' } } }, "quota: users.alice.maxBytes: '10 MB?' is not a size"],
    [{ defaults: { maxBytes: -5 } }, 'quota: defaults.maxBytes: -5 is not a size'],
    [{ defaults: { maxFiles: 1.5 } }, 'quota: defaults.maxFiles: 1.5 is not a whole number of files'],
    [{ users: { bob: { maxFiles: 'many' } } }, "quota: users.bob.maxFiles: 'many' is not a whole number of files"],
    [{ users: { bob: { maxbytes: 1 } } }, "quota: users.bob: unknown option 'maxbytes' (known: maxBytes, maxFiles)"],
    [{ default: {} }, "quota: unknown option 'default' (known: defaults, users)"],
    [{ defaults: { maxBytes: null } }, 'quota: defaults.maxBytes: leave it out for no limit'],
    [{ users: ['alice'] }, 'quota: users: must be a mapping'],
    [{ users: { alice: 5 } }, 'quota: users.alice: must be a mapping'],
    ['10 MiB', 'quota: options must be a mapping'],
  ];
  for (const [raw, message] of cases) {
    try {
      validate(raw);
      assert.unreachable(`accepted ${JSON.stringify(raw)}`);
    } catch (err) {
      assert.ok((err as Error).message.startsWith(message), `${JSON.stringify(raw)}: ${(err as Error).message}`);
    }
  }
});

options.run();

// ---- ledger arithmetic ----------------------------------------------------------------------------

const ledger = suite('ledger');

const file = (size: number): Entry => ({ name: 'x', type: 'file', size, mtime: 0 });
const claim = (path: string, size: number, replaces: Entry | null = null) => ({ path, size, replaces });

ledger('a new file reserves its size and one file; a commit turns the reservation into usage', () => {
  const l = new Ledger();
  const key = {};
  const r = l.reserve(key, claim('a.bin', 100), { maxBytes: 1000, maxFiles: 10 });
  assert.ok(r.ok);
  assert.equal(l.usage(), { bytes: 0, files: 0, reservedBytes: 100, reservedFiles: 1 });
  l.finish(key, claim('a.bin', 100), true);
  assert.equal(l.usage(), { bytes: 100, files: 1, reservedBytes: 0, reservedFiles: 0 });
});

ledger('a refused, cut off or cancelled upload releases its reservation and changes nothing', () => {
  const l = new Ledger();
  l.setFile('keep.bin', 10);
  const key = {};
  assert.ok(l.reserve(key, claim('a.bin', 500), { maxBytes: 1000 }).ok);
  l.finish(key, claim('a.bin', 500), false);
  assert.equal(l.usage(), { bytes: 10, files: 1, reservedBytes: 0, reservedFiles: 0 });
  assert.is(l.sizeOf('a.bin'), null);
});

ledger('an overwrite reserves only what it adds, and no file; the old size is freed at commit', () => {
  const l = new Ledger();
  l.setFile('dir/a.bin', 600);
  const key = {};
  const r = l.reserve(key, claim('dir//a.bin', 800, file(600)), { maxBytes: 1000, maxFiles: 1 });
  assert.ok(r.ok, 'needs 200 of the 400 left, and no new file');
  if (r.ok) assert.equal([r.reservation.bytes, r.reservation.files], [200, 0]);
  l.finish(key, claim('dir/a.bin', 800), true);
  assert.equal(l.usage(), { bytes: 800, files: 1, reservedBytes: 0, reservedFiles: 0 });
});

ledger('replacing a file by a smaller one needs nothing, so it is allowed even over the limit', () => {
  const l = new Ledger();
  l.setFile('big.bin', 900);
  const key = {};
  assert.ok(l.reserve(key, claim('big.bin', 100, file(900)), { maxBytes: 500, maxFiles: 1 }).ok);
  assert.equal(l.usage().reservedBytes, 0);
  l.finish(key, claim('big.bin', 100), true);
  assert.equal(l.usage(), { bytes: 100, files: 1, reservedBytes: 0, reservedFiles: 0 });
});

ledger('the refusal says what is used, of what, and what the upload needs', () => {
  const l = new Ledger();
  l.setFile('a', Math.round(9.1 * MiB));
  const r = l.reserve({}, claim('b', 2 * MiB), { maxBytes: 10 * MiB });
  assert.equal(r, { ok: false, message: 'quota exceeded: 9.1 MiB of 10 MiB used, upload needs 2 MiB' });
  const held = new Ledger();
  assert.ok(held.reserve({}, claim('x', 6 * MiB), { maxBytes: 10 * MiB }).ok);
  const second = held.reserve({}, claim('y', 6 * MiB), { maxBytes: 10 * MiB });
  assert.equal(second, { ok: false, message: 'quota exceeded: 6 MiB of 10 MiB used (6 MiB of it by uploads in progress), upload needs 6 MiB' });
  const files = new Ledger();
  files.setFile('one', 1);
  assert.equal(files.reserve({}, claim('two', 1), { maxFiles: 1 }), { ok: false, message: 'quota exceeded: 1 of 1 files used, upload needs 1 more file' });
});

ledger('two reservations that together pass the limit: exactly one is allowed, until the other ends', () => {
  const l = new Ledger();
  const limits = { maxBytes: 1000 };
  const a = {};
  const b = {};
  const first = l.reserve(a, claim('a', 600), limits);
  const second = l.reserve(b, claim('b', 600), limits);
  assert.equal([first.ok, second.ok], [true, false]);
  l.finish(a, claim('a', 600), false);
  assert.ok(l.reserve(b, claim('b', 600), limits).ok, 'space released by the failed upload is free again');
  // Files count the same way.
  const f = new Ledger();
  assert.equal([f.reserve({}, claim('a', 1), { maxFiles: 1 }).ok, f.reserve({}, claim('b', 1), { maxFiles: 1 }).ok], [true, false]);
});

ledger('two uploads replacing the same file: only one of them counts the old file as freed', () => {
  const l = new Ledger();
  l.setFile('a', 500);
  const limits = { maxBytes: 1000, maxFiles: 1 };
  const one = l.reserve({}, claim('a', 500, file(500)), limits);
  assert.ok(one.ok);
  const two = l.reserve({}, claim('a', 500, file(500)), limits);
  assert.not.ok(two.ok, 'the second would need 500 bytes and a file');
});

ledger('deletes, renames over files and directory moves keep the totals right', () => {
  const l = new Ledger();
  l.setFile('a', 100);
  l.setFile('b', 50);
  l.setFile('d/x', 10);
  l.setFile('d/e/y', 20);
  assert.equal(l.usage(), { bytes: 180, files: 4, reservedBytes: 0, reservedFiles: 0 });
  l.rename('a', 'b'); // over an existing file: b's 50 bytes go
  assert.equal([l.usage().bytes, l.usage().files, l.sizeOf('b'), l.sizeOf('a')], [130, 3, 100, null]);
  l.rename('d', 'z/d2'); // a directory with its contents
  assert.equal([l.usage().bytes, l.sizeOf('z/d2/e/y'), l.sizeOf('d/x')], [130, 20, null]);
  l.rename('nothing', 'b'); // a source the ledger does not know changes nothing
  assert.equal(l.usage().bytes, 130);
  l.remove('b');
  l.remove('z/d2/x');
  l.remove('z/d2/e/y');
  l.remove('z/d2/e'); // an empty directory
  l.remove('missing');
  assert.equal(l.usage(), { bytes: 0, files: 0, reservedBytes: 0, reservedFiles: 0 });
  l.setFile('b', 5);
  l.setFile('b', 7); // an overwrite
  assert.equal([l.usage().bytes, l.usage().files], [7, 1]);
});

ledger.run();

// ---- the plugin through the real plugin host ------------------------------------------------------

const hooks = suite('quota hooks through the plugin host');
let data: string;
let host: PluginHost;

const op = (user: string, path: string, size: number, replaces: Entry | null = null): UploadOp => ({ user, role: 'user', address: '127.0.0.1:1', path, size, replaces });
const tick = () => new Promise((r) => setTimeout(r, 10));

hooks.before(async () => {
  data = tempDir('ferry-quota-');
  mkdirSync(join(data, 'homes', 'alice', 'docs'), { recursive: true });
  writeFileSync(join(data, 'homes', 'alice', 'docs', 'old.bin'), Buffer.alloc(400));
  writeFileSync(join(data, 'homes', 'alice', 'top.bin'), Buffer.alloc(100));
  host = await loadPlugins([{ name: 'quota', options: { defaults: { maxBytes: 1000, maxFiles: 4 }, users: { root: { maxBytes: null, maxFiles: null } } } }], {
    bundled: { quota: async () => createQuotaPlugin() as FerryPlugin<unknown> },
    dataDir: data,
    baseDir: data,
    log: () => ({ info: () => {}, warn: () => {}, error: () => {} }),
  });
});
hooks.after(() => cleanup(data));

hooks('usage is summed up from the home on disk at first use', async () => {
  assert.equal(await host.first('usage:get', { user: 'alice', role: 'user', address: '' }), { bytes: 500, files: 2, maxBytes: 1000, maxFiles: 4 });
  assert.is(await host.first('usage:get', { user: 'root', role: 'admin', address: '' }), undefined, 'no limit, no figures');
});

hooks('two parallel uploads that together pass the limit, at first use of a home: exactly one is allowed', async () => {
  mkdirSync(join(data, 'homes', 'bob'), { recursive: true });
  writeFileSync(join(data, 'homes', 'bob', 'a.bin'), Buffer.alloc(200));
  const one = op('bob', 'x.bin', 500);
  const two = op('bob', 'y.bin', 500);
  const verdicts = await Promise.all([host.veto('upload:before', one), host.veto('upload:before', two)]);
  assert.equal(verdicts.filter((v) => v === null).length, 1, JSON.stringify(verdicts));
  const refused = verdicts.find((v) => v !== null);
  assert.is(refused?.deny, 'quota_exceeded');
  assert.match(String(refused?.message), /^quota exceeded: 700 B of 1000 B used \(500 B of it by uploads in progress\), upload needs 500 B$/);
  // The allowed one is cut off (size_mismatch): its space comes back.
  const allowed = verdicts[0] === null ? one : two;
  host.notify('upload:after', allowed, { ok: false, code: 'size_mismatch', message: 'too many bytes' });
  await tick();
  assert.is(await host.veto('upload:before', op('bob', 'z.bin', 800)), null);
});

hooks('a committed upload counts, an overwrite frees the old size, a delete and a rename over a file free theirs', async () => {
  const usage = async () => host.first('usage:get', { user: 'alice', role: 'user', address: '' });
  const put = op('alice', 'new.bin', 300);
  assert.is(await host.veto('upload:before', put), null);
  host.notify('upload:after', put, { ok: true });
  await tick();
  assert.equal(await usage(), { bytes: 800, files: 3, maxBytes: 1000, maxFiles: 4 });
  const over = op('alice', 'docs/old.bin', 600, { name: 'old.bin', type: 'file', size: 400, mtime: 0 });
  assert.is(await host.veto('upload:before', over), null, 'needs 200 more, 200 are left');
  host.notify('upload:after', over, { ok: true });
  await tick();
  assert.equal(await usage(), { bytes: 1000, files: 3, maxBytes: 1000, maxFiles: 4 });
  const full = await host.veto('upload:before', op('alice', 'one-more.bin', 1));
  assert.is(full?.deny, 'quota_exceeded');
  const actor = { user: 'alice', role: 'user' as const, address: '' };
  const del = { ...actor, path: 'top.bin', entry: { name: 'top.bin', type: 'file' as const, size: 100, mtime: 0 } };
  assert.is(await host.veto('delete:before', del), null);
  host.notify('delete:after', { ...del, path: 'docs/old.bin' }, { ok: false, code: 'not_found', message: 'gone' });
  host.notify('delete:after', del, { ok: true });
  await tick();
  assert.equal(await usage(), { bytes: 900, files: 2, maxBytes: 1000, maxFiles: 4 }, 'a failed delete changes nothing');
  const ren = { ...actor, from: 'new.bin', to: 'docs/old.bin', entry: null, replaces: null };
  assert.is(await host.veto('rename:before', ren), null);
  host.notify('rename:after', ren, { ok: true });
  await tick();
  assert.equal(await usage(), { bytes: 300, files: 1, maxBytes: 1000, maxFiles: 4 });
});

hooks('a user without limits is not tracked at all', async () => {
  assert.is(await host.veto('upload:before', op('root', 'huge.bin', 10 ** 12)), null);
});

hooks.run();
