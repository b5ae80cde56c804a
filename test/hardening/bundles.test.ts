// Bundles on the wire (docs/protocol.md 6.4), driven by a raw TLS client against a real in-process server:
// refusals of the whole request, refusals of one record, the acknowledgements' order, every malformed stream
// fatal for its connection and for nothing else, and hostile streams that never take the server down.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeRecordHeader, RecordDecoder, type PutHeader } from '../../src/protocol/bundle.ts';
import { UserStore } from '../../src/auth/users.ts';
import { silentLog } from '../../src/server/console.ts';
import { FerryServer } from '../../src/server/server.ts';
import { RawClient, codes } from './raw.ts';

process.env.FERRY_SCRYPT_N = '1024';

const RUNS = Number(process.env.FERRY_FC_RUNS ?? 40);
const FEATURES = ['resume', 'too_large', 'bundle'];
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest();

function record(header: Omit<PutHeader, 'size'>, body: Buffer | string, digestOf?: string): Buffer {
  const bytes = Buffer.from(body);
  return Buffer.concat([encodeRecordHeader('put', { ...header, size: bytes.length }), bytes, sha(digestOf ?? bytes)]);
}

let dir: string;
let server: FerryServer;
let port: number;
let dataDir: string;
let users = 0;

/** A logged-in raw client of a fresh account (its home is homes/<name>). */
async function client(features = FEATURES): Promise<{ c: RawClient; home: string }> {
  const c = new RawClient(port);
  const name = `u${++users}`;
  const r = await c.logIn(name, 'a long enough password', true, features);
  assert.is(r.t, 'ok', JSON.stringify(r));
  return { c, home: join(dataDir, 'homes', name) };
}

/** Waits for the connection to end; returns the code of the server's final error (id 0). */
async function fatal(c: RawClient, what = ''): Promise<string | undefined> {
  await Promise.race([c.closed, new Promise((r) => setTimeout(r, 10_000))]);
  assert.ok(c.isClosed, `the connection was closed ${what}`);
  const last = c.replies.filter((r) => r.id === 0 && r.msg.t === 'error').at(-1)?.msg;
  return last?.t === 'error' ? last.code : undefined;
}

const t = suite('hardening: bundles on the wire');

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-hardening-bundles-'));
  dataDir = join(dir, 'data');
  // Every case signs up an account of its own: more than the default 20 sign-ups an hour from one address.
  server = new FerryServer({ host: '127.0.0.1', port: 0, dataDir, maxUploadBytes: 1000, signupsPerAddressPerHour: 10_000 }, silentLog);
  port = (await server.start()).port;
});

t.after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

t('records are stored or refused one by one; `failed` comes before the `stored` that covers it, then `ok`', async () => {
  const { c, home } = await client();
  const id = c.send({ t: 'putmany' });
  c.sendData(id, Buffer.concat([
    record({ path: 'a.txt', mtime: 1_400_000_000_000 }, 'alpha'),
    record({ path: 'b.txt' }, 'bravo', 'something else'),
    record({ path: 'big.txt' }, 'x'.repeat(1001)),
    record({ path: 'deep/c.txt', parents: true }, 'charlie'),
  ]));
  c.send({ t: 'end' }, id);
  const ok = await c.reply(id, 10_000, (m) => m.t === 'ok');
  assert.equal(ok, { t: 'ok', result: { files: 2, bytes: 12, failed: 2 } });
  const mine = c.replies.filter((r) => r.id === id).map((r) => r.msg);
  const failed = mine.flatMap((m) => (m.t === 'failed' ? [[m.index, m.code]] : []));
  assert.equal([...failed].sort(), [[1, 'digest_mismatch'], [2, 'too_large']]);
  const stored = mine.flatMap((m, at) => (m.t === 'stored' ? [[at, m.count]] : []));
  for (const [at, count] of stored) {
    for (const [index] of failed) if ((index as number) < (count as number)) assert.ok(mine.findIndex((m) => m.t === 'failed' && m.index === index) < (at as number), 'failed before stored');
  }
  assert.is(readFileSync(join(home, 'a.txt'), 'utf8'), 'alpha');
  assert.is(readFileSync(join(home, 'deep', 'c.txt'), 'utf8'), 'charlie');
  assert.not.ok(existsSync(join(home, 'b.txt')));
  // A request after the bundle sees what it stored.
  const list = c.send({ t: 'list', path: '', recursive: true });
  await c.reply(list, 5000, (m) => m.t === 'ok');
  const names = c.replies.filter((r) => r.id === list && r.msg.t === 'entries').flatMap((r) => (r.msg as { entries: Array<{ name: string }> }).entries.map((e) => e.name));
  assert.equal(names.sort(), ['a.txt', 'deep', 'deep/c.txt']);
  c.destroy();
});

t('without the feature a bundle is fatal (bad_message, 2.5); without the permission it is refused and the connection goes on', async () => {
  for (const request of [{ t: 'putmany' }, { t: 'getmany' }, { t: 'list', path: '', recursive: true }]) {
    const { c } = await client(['resume']);
    c.send(request);
    assert.is(await fatal(c), 'bad_message', JSON.stringify(request));
  }
  // An account that may download but not upload (added to the server's users file as `ferry user add` does).
  await new UserStore(join(dataDir, 'users.json')).add('viewer', 'a long enough password', { perms: ['list', 'download'] });
  const c = new RawClient(port);
  assert.is((await c.logIn('viewer', 'a long enough password', false, FEATURES)).t, 'ok');
  const id = c.send({ t: 'putmany' });
  assert.equal(await c.reply(id), { t: 'error', code: 'permission_denied', message: 'Your account may not upload' });
  c.sendData(id, record({ path: 'x' }, 'dropped: the id is refused until its end or cancel'));
  c.send({ t: 'end' }, id);
  assert.is((await c.reply(c.send({ t: 'ping' }))).t, 'ok');
  assert.not.ok(c.isClosed);
  c.destroy();
});

t('cancel: the bundle ends with `cancelled`; a getmany answers what it can and refuses the rest', async () => {
  const { c, home } = await client();
  const put = c.send({ t: 'putmany' });
  c.sendData(put, Buffer.concat([record({ path: 'kept.txt' }, 'kept'), record({ path: 'half.txt' }, 'half a record').subarray(0, 30)]));
  c.send({ t: 'cancel' }, put);
  assert.equal(await c.reply(put, 5000, (m) => m.t === 'error'), { t: 'error', code: 'cancelled', message: 'Bundle cancelled' });
  assert.is(readFileSync(join(home, 'kept.txt'), 'utf8'), 'kept');
  assert.not.ok(existsSync(join(home, 'half.txt')));

  mkdirSync(join(home, 'dir'));
  writeFileSync(join(home, 'large.bin'), randomBytes(1024 * 1024 + 1));
  c.keepData = true;
  const get = c.send({ t: 'getmany' });
  c.sendData(get, Buffer.concat(['kept.txt', 'nothing', 'dir', 'large.bin', '../up'].map((path) => encodeRecordHeader('want', { path }))));
  c.send({ t: 'end' }, get);
  assert.equal(await c.reply(get, 5000, (m) => m.t === 'ok'), { t: 'ok', result: { files: 1, bytes: 4, failed: 4 } });
  const refused = c.replies.filter((r) => r.id === get && r.msg.t === 'failed').map((r) => r.msg as { index: number; code: string });
  assert.equal(refused.map((f) => [f.index, f.code]).sort(), [[1, 'not_found'], [2, 'is_a_directory'], [3, 'too_large'], [4, 'invalid_path']]);
  const files: Array<{ index: number; body: string }> = [];
  const decoder = new RecordDecoder('file', { maxHeader: 65536, maxBody: 1 << 20 }, (r) => {
    assert.ok((r.digest as Buffer).equals(sha(r.body as Buffer)));
    files.push({ index: r.header.index, body: (r.body as Buffer).toString() });
  });
  for (const chunk of c.received.get(get) ?? []) decoder.push(chunk);
  assert.equal(files, [{ index: 0, body: 'kept' }]);
  c.destroy();
});

t('malformed bundles end their connection with bad_message, and only theirs', async () => {
  const cases: Array<[string, (c: RawClient, id: number) => void]> = [
    ['a header of length 0', (c, id) => c.sendData(id, Buffer.alloc(4))],
    ['a header that is not JSON', (c, id) => c.sendData(id, Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{{{')]))],
    ['a body over maxData', (c, id) => c.sendData(id, encodeRecordHeader('put', { path: 'x', size: 2 * 1024 * 1024 }))],
    ['an end inside a record', (c, id) => {
      c.sendData(id, record({ path: 'x' }, 'abc').subarray(0, 10));
      c.send({ t: 'end' }, id);
    }],
    ['an end with a digest', (c, id) => c.send({ t: 'end', sha256: 'a'.repeat(64) }, id)],
  ];
  for (const [what, send] of cases) {
    const { c } = await client();
    const id = c.send({ t: 'putmany' });
    send(c, id);
    assert.is(await fatal(c, what), 'bad_message', what);
  }
  const { c } = await client();
  const ping = c.send({ t: 'ping' });
  assert.is((await c.reply(ping)).t, 'ok', 'the server goes on');
  c.destroy();
});

t('hostile streams: random bytes and damaged records never store a damaged file, nor stop the server', async () => {
  const bodies = Array.from({ length: 8 }, (_, i) => randomBytes(1 + i * 50));
  const good = Buffer.concat(bodies.map((b, i) => record({ path: `f${i}.bin`, parents: true }, b)));
  const known = new Set(bodies.map((b) => sha(b).toString('hex')));
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), fc.boolean(), async (noise, flips, damage) => {
      const { c, home } = await client();
      const id = c.send({ t: 'putmany' });
      let bytes = Buffer.from(noise);
      if (damage) {
        bytes = Buffer.from(good);
        for (const f of flips) bytes[f % bytes.length] = (bytes[f % bytes.length] as number) ^ 0x5a;
      }
      c.sendData(id, bytes);
      c.send({ t: 'end' }, id);
      await Promise.race([c.reply(id, 5000, (m) => m.t === 'ok' || m.t === 'error').catch(() => null), c.closed]);
      c.destroy();
      // A record is stored only under its own digest: whatever landed is one of the bodies sent, intact.
      const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
      if (existsSync(home)) for (const file of walk(home)) assert.ok(known.has(sha(readFileSync(file)).toString('hex')), `${file} is one of the bodies sent`);
    }),
    { numRuns: RUNS },
  );
  const { c } = await client();
  assert.is((await c.reply(c.send({ t: 'ping' }))).t, 'ok', 'the server goes on');
  assert.not.ok(codes(c).includes('internal'));
  c.destroy();
});

t.run();
