// The quota plugin on several servers sharing a real PostgreSQL (DATABASE_URL; a fresh database for this file). Each
// "server" is its own Database (own pool, own server id, joined to `servers`) and its own plugin instance, driven
// through the real plugin host; what one server does must hold, exactly, on the others.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createQuotaPlugin } from '../../plugins/quota/index.ts';
import type { Entry } from '../../src/core/types.ts';
import { pluginDatabase } from '../../src/cli/serve.ts';
import { openDatabase, ServerPresence, type Database } from '../../src/db/mod.ts';
import type { PluginHost } from '../../src/plugin/host.ts';
import { loadPlugins } from '../../src/plugin/load.ts';
import type { FerryPlugin, HomeFile, UploadOp } from '../../src/plugin/types.ts';
import { dbMissing, freshDatabase, type TestDatabase } from '../db/pg.ts';
import { startForwarder, type Forwarder } from '../s3/store.ts';
import { testWhen } from '../skip.ts';

const t = suite('quota across servers sharing PostgreSQL');
const when = (name: string, body: () => Promise<void>) => testWhen(t, dbMissing, name, body);

const OPTIONS = {
  defaults: { maxBytes: 1000, maxFiles: 5 },
  users: { root: { maxBytes: null, maxFiles: null }, shrink: { maxBytes: 500, maxFiles: 1 } },
};

let fresh: TestDatabase | null = null;
let data = '';
const dbs: Database[] = [];
const presences: ServerPresence[] = [];
const logged: string[] = [];

// The users' files as an object store would list them (PluginContext.homeFiles), and how often each home was listed.
const homes = new Map<string, HomeFile[]>();
const listed = new Map<string, number>();
let listDelayMs = 0;
async function* homeFiles(user: string): AsyncIterable<HomeFile[]> {
  listed.set(user, (listed.get(user) ?? 0) + 1);
  if (listDelayMs > 0) await new Promise((r) => setTimeout(r, listDelayMs));
  const files = homes.get(user) ?? [];
  for (let i = 0; i < files.length; i += 2) yield files.slice(i, i + 2); // pages of two
}

const forwarders: Forwarder[] = [];

interface Server {
  host: PluginHost;
  db: Database;
  presence: ServerPresence;
  /** Set `down` to cut this server off its database, and back. */
  fault: { set down(gone: boolean) };
}

/** One more server on the shared database: its own pool and id, present in `servers`, with its own quota plugin. */
async function server(options: { disk?: boolean } = {}): Promise<Server> {
  fresh ??= await freshDatabase();
  data ||= mkdtempSync(join(tmpdir(), 'ferry-quota-db-'));
  // Each server reaches the database through a TCP forwarder of its own: `fault.down = true` resets its connections
  // and refuses new ones (the database gone, as this server sees it: real sockets, the real database).
  const target = new URL(fresh.url);
  const forwarder = await startForwarder(`http://${target.hostname}:${target.port}`);
  forwarders.push(forwarder);
  const via = new URL(fresh.url);
  via.port = new URL(forwarder.endpoint).port;
  const db = await openDatabase(via.toString());
  dbs.push(db);
  const presence = await ServerPresence.join(db, (m) => logged.push(`presence: ${m}`));
  presences.push(presence);
  const fault = {
    set down(gone: boolean) {
      if (gone) forwarder.cut();
      else forwarder.restore();
    },
  };
  const host = await loadPlugins([{ name: 'quota', options: OPTIONS }], {
    bundled: { quota: async () => createQuotaPlugin() as FerryPlugin<unknown> },
    dataDir: data,
    baseDir: data,
    log: (name) => ({ info: (m) => logged.push(`${name} info: ${m}`), warn: (m) => logged.push(`${name} warn: ${m}`), error: (m) => logged.push(`${name} error: ${m}`) }),
    ...(options.disk ? {} : { homeFiles }),
    db: pluginDatabase(db),
  });
  return { host, db, presence, fault };
}

const op = (user: string, path: string, size: number, replaces: Entry | null = null): UploadOp => ({ user, role: 'user', address: '127.0.0.1:1', path, size, replaces });
const file = (size: number): Entry => ({ name: 'x', type: 'file', size, mtime: 0 });
const actor = (user: string) => ({ user, role: 'user' as const, address: '127.0.0.1:1' });
const usage = (s: Server, user: string) => s.host.first('usage:get', actor(user));
const ended = (s: Server, upload: UploadOp, ok: boolean) =>
  s.host.notifyAndWait('upload:after', upload, ok ? { ok: true } : { ok: false, code: 'size_mismatch', message: 'cut off' });

/** The stored totals agree with the files recorded for the user. */
async function consistent(db: Database, user: string): Promise<void> {
  const [row] = await db.query<{ bytes: number; files: number; sumBytes: number; sumFiles: number }>(
    `SELECT h.bytes::float8 AS bytes, h.files::float8 AS files,
       (SELECT coalesce(sum(size), 0)::float8 FROM quota_files WHERE username = $1) AS "sumBytes",
       (SELECT count(*)::float8 FROM quota_files WHERE username = $1) AS "sumFiles"
     FROM quota_homes h WHERE username = $1`,
    [user],
  );
  assert.ok(row, `a usage row for ${user}`);
  assert.equal([row?.bytes, row?.files], [row?.sumBytes, row?.sumFiles], `totals of ${user} match its files`);
}

t.after(async () => {
  for (const p of presences) await p.leave();
  for (const db of dbs) await db.close();
  for (const f of forwarders) await f.close();
  await fresh?.drop();
  if (data) rmSync(data, { recursive: true, force: true });
});

let a: Server;
let b: Server;

when('two servers racing reservations that together pass the limit: exactly one passes, every time', async () => {
  [a, b] = [await server(), await server()];
  homes.set('racer', [{ path: 'a.bin', size: 200 }]);
  for (let round = 0; round < 20; round++) {
    const one = op('racer', `x${round}.bin`, 500);
    const two = op('racer', `y${round}.bin`, 500);
    const verdicts = await Promise.all([a.host.veto('upload:before', one), b.host.veto('upload:before', two)]);
    assert.is(verdicts.filter((v) => v === null).length, 1, `round ${round}: ${JSON.stringify(verdicts)}`);
    const refused = verdicts.find((v) => v !== null);
    assert.is(refused?.deny, 'quota_exceeded');
    assert.match(String(refused?.message), /^quota exceeded: 700 B of 1000 B used \(500 B of it by uploads in progress\), upload needs 500 B$/);
    // The allowed one is cut off: its space comes back, on both servers.
    if (verdicts[0] === null) await ended(a, one, false);
    else await ended(b, two, false);
  }
  assert.is(listed.get('racer'), 1, 'the home was listed once for both servers');
  assert.equal(await usage(b, 'racer'), { bytes: 200, files: 1, maxBytes: 1000, maxFiles: 5 });
  // Files count the same way: 4 more fit (5 in all); ten at once on two servers, exactly four pass.
  const many = Array.from({ length: 10 }, (_, i) => op('racer', `f${i}`, 1));
  const verdicts = await Promise.all(many.map((u, i) => (i % 2 === 0 ? a : b).host.veto('upload:before', u)));
  assert.is(verdicts.filter((v) => v === null).length, 4, JSON.stringify(verdicts));
  await Promise.all(many.map((u, i) => (verdicts[i] === null ? ended(i % 2 === 0 ? a : b, u, false) : undefined)));
  assert.is((await a.db.query('SELECT 1 FROM quota_holds WHERE username = $1', ['racer'])).length, 0, 'no holds left');
});

when('a committed upload counts on every server; an overwrite frees the old size; replacing by a smaller file always passes', async () => {
  homes.set('carol', [{ path: 'docs/old.bin', size: 400 }, { path: 'top.bin', size: 100 }]);
  const put = op('carol', 'new.bin', 300);
  assert.is(await a.host.veto('upload:before', put), null);
  await ended(a, put, true);
  assert.equal(await usage(b, 'carol'), { bytes: 800, files: 3, maxBytes: 1000, maxFiles: 5 });
  const over = op('carol', 'docs//old.bin', 600, file(400));
  assert.is(await b.host.veto('upload:before', over), null, 'needs 200 more, 200 are left');
  await ended(b, over, true);
  assert.equal(await usage(a, 'carol'), { bytes: 1000, files: 3, maxBytes: 1000, maxFiles: 5 });
  assert.is((await a.host.veto('upload:before', op('carol', 'one-more.bin', 1)))?.deny, 'quota_exceeded');
  await consistent(a.db, 'carol');

  // shrink: 500 B and 1 file at most, but 900 B stored.
  homes.set('shrink', [{ path: 'big.bin', size: 900 }]);
  const smaller = op('shrink', 'big.bin', 100, file(900));
  assert.is(await a.host.veto('upload:before', smaller), null, 'needs nothing, so it passes over the limit');
  const again = await b.host.veto('upload:before', op('shrink', 'big.bin', 100, file(900)));
  assert.is(again?.deny, 'quota_exceeded', 'only one upload in progress may count the replaced file as freed');
  assert.match(String(again?.message), /900 B of 500 B used, upload needs 100 B; 1 of 1 files used, upload needs 1 more file/);
  await ended(a, smaller, true);
  assert.equal(await usage(b, 'shrink'), { bytes: 100, files: 1, maxBytes: 500, maxFiles: 1 });
  const third = op('shrink', 'big.bin', 400, file(100));
  assert.is(await b.host.veto('upload:before', third), null, 'the freed file is counted again once the first upload ended');
  await ended(b, third, false);
  assert.equal(await usage(a, 'shrink'), { bytes: 100, files: 1, maxBytes: 500, maxFiles: 1 }, 'a failed upload changes nothing');
});

when('deletes and renames of files and subtrees, on either server, keep the totals right', async () => {
  homes.set('tree', [
    { path: 'a', size: 100 },
    { path: 'b', size: 50 },
    { path: 'd/x', size: 10 },
    { path: 'd/e/y', size: 20 },
    { path: 'd-1', size: 5 },
    { path: 'd0', size: 7 },
  ]);
  const paths = async () =>
    (await a.db.query<{ path: string; size: string }>('SELECT path, size FROM quota_files WHERE username = $1 ORDER BY path', ['tree'])).map((r) => `${r.path}=${r.size}`);
  assert.equal(await usage(a, 'tree'), { bytes: 192, files: 6, maxBytes: 1000, maxFiles: 5 });
  const base = { ...actor('tree') };
  const ren = (from: string, to: string) => ({ ...base, from, to, entry: null, replaces: null });
  assert.is(await a.host.veto('rename:before', ren('a', 'b')), null);
  await a.host.notifyAndWait('rename:after', ren('a', 'b'), { ok: true }); // over a file: b's 50 B go
  assert.equal(await usage(b, 'tree'), { bytes: 142, files: 5, maxBytes: 1000, maxFiles: 5 });
  await b.host.notifyAndWait('rename:after', ren('d/', 'z/d2'), { ok: true }); // a directory with its contents
  assert.equal(await paths(), ['b=100', 'd-1=5', 'd0=7', 'z/d2/e/y=20', 'z/d2/x=10']);
  await b.host.notifyAndWait('rename:after', ren('nothing', 'b'), { ok: true });
  assert.equal((await usage(a, 'tree'))?.bytes, 142, 'a source nobody knows changes nothing');
  const del = (path: string) => ({ ...base, path, entry: null });
  assert.is(await b.host.veto('delete:before', del('z')), null);
  await a.host.notifyAndWait('delete:after', del('z'), { ok: false, code: 'not_found', message: 'gone' });
  assert.equal((await usage(a, 'tree'))?.bytes, 142, 'a failed delete changes nothing');
  await a.host.notifyAndWait('delete:after', del('z'), { ok: true });
  await b.host.notifyAndWait('delete:after', del('d'), { ok: true }); // gone already; d-1 and d0 are not below d
  assert.equal(await paths(), ['b=100', 'd-1=5', 'd0=7']);
  assert.equal(await usage(b, 'tree'), { bytes: 112, files: 3, maxBytes: 1000, maxFiles: 5 });
  // A file over a directory, and a file where a directory of the path was a file.
  const onDir = op('tree', 'd0/inner', 1);
  assert.is(await a.host.veto('upload:before', onDir), null);
  await ended(a, onDir, true);
  assert.equal(await paths(), ['b=100', 'd-1=5', 'd0/inner=1']);
  await b.host.notifyAndWait('rename:after', ren('b', 'd0'), { ok: true });
  assert.equal(await paths(), ['d-1=5', 'd0=100']);
  assert.equal(await usage(a, 'tree'), { bytes: 105, files: 2, maxBytes: 1000, maxFiles: 5 });
  await consistent(a.db, 'tree');
});

when('usage survives a restart of the servers without summing up the home again', async () => {
  const before = { carol: listed.get('carol'), tree: listed.get('tree') };
  assert.equal(before, { carol: 1, tree: 1 });
  for (const s of [a, b]) await s.host.notifyAndWait('server:stop');
  const c = await server();
  assert.equal(await usage(c, 'carol'), { bytes: 1000, files: 3, maxBytes: 1000, maxFiles: 5 });
  assert.equal(await usage(c, 'tree'), { bytes: 105, files: 2, maxBytes: 1000, maxFiles: 5 });
  assert.is((await c.host.veto('upload:before', op('carol', 'one-more.bin', 1)))?.deny, 'quota_exceeded');
  assert.equal({ carol: listed.get('carol'), tree: listed.get('tree') }, before, 'no listing of the homes after the restart');
  assert.is(await usage(c, 'root'), undefined, 'no limit, no figures');
  assert.is(await c.host.veto('upload:before', op('root', 'huge.bin', 10 ** 12)), null, 'a user without limits is not tracked');
  assert.is((await c.db.query("SELECT 1 FROM quota_homes WHERE username = 'root'")).length, 0);
});

when('holds of a server that is no longer seen stop counting; holds of a server gone for good are removed', async () => {
  const ghost = await server();
  homes.set('ghostly', []);
  const held = op('ghostly', 'big.bin', 600);
  assert.is(await ghost.host.veto('upload:before', held), null);
  assert.is((await a.host.veto('upload:before', op('ghostly', 'other.bin', 600)))?.deny, 'quota_exceeded', 'the hold counts while its server is seen');
  // The server stops being seen (its beat stops; its row stays, last seen an hour ago).
  await ghost.presence.leave();
  await a.db.query("INSERT INTO servers (id, name, seen_at) VALUES ($1, 'ghost', now() - interval '1 hour')", [ghost.db.serverId]);
  const after = op('ghostly', 'other.bin', 600);
  assert.is(await a.host.veto('upload:before', after), null, 'the hold of a server not seen for an hour does not count');
  await ended(a, after, false);
  assert.is((await a.db.query('SELECT 1 FROM quota_holds WHERE server_id = $1', [ghost.db.serverId])).length, 1, 'kept while the server is listed');
  await a.db.query('DELETE FROM servers WHERE id = $1', [ghost.db.serverId]);
  const last = op('ghostly', 'third.bin', 10);
  assert.is(await b.host.veto('upload:before', last), null);
  await ended(b, last, false);
  assert.is((await a.db.query('SELECT 1 FROM quota_holds WHERE server_id = $1', [ghost.db.serverId])).length, 0, 'removed once the server is gone');
});

when('two servers using a user for the first time at once: the home is summed up once', async () => {
  const [c, d] = [await server(), await server()];
  homes.set('twin', [{ path: 'one', size: 300 }, { path: 'two', size: 300 }, { path: 'sub/three', size: 100 }]);
  listDelayMs = 300;
  try {
    const one = op('twin', 'new-a', 200);
    const two = op('twin', 'new-b', 200);
    const [u1, v1, v2, u2] = await Promise.all([usage(c, 'twin'), c.host.veto('upload:before', one), d.host.veto('upload:before', two), usage(d, 'twin')]);
    assert.is(listed.get('twin'), 1, 'listed once for both servers');
    assert.equal(u1, { bytes: 700, files: 3, maxBytes: 1000, maxFiles: 5 });
    assert.equal(u2, { bytes: 700, files: 3, maxBytes: 1000, maxFiles: 5 });
    assert.equal([v1, v2].filter((v) => v === null).length, 1, 'and exactly one of two uploads that together pass the limit');
    await Promise.all([v1 === null ? ended(c, one, false) : undefined, v2 === null ? ended(d, two, false) : undefined]);
  } finally {
    listDelayMs = 0;
  }
});

when('a home on disk is summed up by walking it, once', async () => {
  mkdirSync(join(data, 'homes', 'dora', 'docs'), { recursive: true });
  writeFileSync(join(data, 'homes', 'dora', 'docs', 'old.bin'), Buffer.alloc(400));
  writeFileSync(join(data, 'homes', 'dora', 'top.bin'), Buffer.alloc(100));
  const [c, d] = [await server({ disk: true }), await server({ disk: true })];
  const [u1, u2] = await Promise.all([usage(c, 'dora'), usage(d, 'dora')]);
  assert.equal(u1, { bytes: 500, files: 2, maxBytes: 1000, maxFiles: 5 });
  assert.equal(u2, u1);
  assert.is(logged.filter((m) => m.includes("Usage of 'dora'")).length, 1, 'summed up by one server');
  assert.is(listed.get('dora'), undefined);
  await consistent(c.db, 'dora');
});

when('a database that cannot be reached refuses uploads (fail closed); what ended meanwhile is recorded once it is back', async () => {
  const s = await server();
  homes.set('flaky', [{ path: 'a', size: 100 }]);
  const first = op('flaky', 'b', 300);
  assert.is(await s.host.veto('upload:before', first), null);
  s.fault.down = true;
  const refused = await s.host.veto('upload:before', op('flaky', 'c', 1));
  assert.is(refused?.deny, 'unavailable', JSON.stringify(refused));
  await ended(s, first, true); // committed while the database was away: kept
  assert.ok(logged.some((m) => m.includes("Changes of the usage of 'flaky' kept for now")));
  s.fault.down = false;
  assert.equal(await usage(s, 'flaky'), { bytes: 400, files: 2, maxBytes: 1000, maxFiles: 5 }, 'recorded on the next use');
  assert.is((await s.db.query('SELECT 1 FROM quota_holds WHERE username = $1', ['flaky'])).length, 0, 'and its hold released');
  assert.equal(await usage(a, 'flaky'), { bytes: 400, files: 2, maxBytes: 1000, maxFiles: 5 });
  await consistent(s.db, 'flaky');
  assert.equal(
    logged.filter((m) => / error: /.test(m)),
    [],
    'nothing logged as an error',
  );
});

t.run();
