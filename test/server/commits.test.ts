// Uploads commit in the background while the session goes on with the next frames (src/server/session/ingress.ts,
// waitForCommits). Pipelined requests must still mean what they say: a rename, stat, list or get sent right
// after an `end` sees the committed file; a second put of the same path is not refused as busy; a cancel
// that arrives during the commit gets no second answer. Driven by a raw TLS client against a real server.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeMessage } from '../../src/protocol/mod.ts';
import { silentLog } from '../../src/server/console.ts';
import { FerryServer } from '../../src/server/server.ts';
import { RawClient, sleep } from '../hardening/raw.ts';

process.env.FERRY_SCRYPT_N = '1024';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const commits = suite('server: uploads committing in the background');
let dir: string;
let server: FerryServer;
let port: number;

commits.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-commits-'));
  server = new FerryServer({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'data') }, silentLog);
  port = (await server.start()).port;
  const c = new RawClient(port);
  assert.is((await c.logIn('pipe', 'correct horse battery', true)).t, 'ok');
  c.destroy();
});
commits.after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function session(): Promise<RawClient> {
  const c = new RawClient(port);
  assert.is((await c.logIn('pipe', 'correct horse battery')).t, 'ok');
  return c;
}

/** Sends put + data + end for `path` without waiting; returns the request id. */
function upload(c: RawClient, path: string, body: Buffer, extra: object = {}): number {
  const id = c.send({ t: 'put', path, size: body.length, ...extra });
  if (body.length > 0) c.sendData(id, body);
  c.send({ t: 'end', sha256: sha(body) }, id);
  return id;
}

commits('requests pipelined after many uploads see every file committed, in the order sent', async () => {
  const c = await session();
  const bodies = Array.from({ length: 30 }, () => randomBytes(3000));
  const ids = bodies.map((b, i) => upload(c, `f${i}.bin`, b));
  // Sent before any answer came back: each must see the files above in place.
  const renamed = c.send({ t: 'rename', from: 'f29.bin', to: 'renamed.bin' });
  const stat = c.send({ t: 'stat', path: 'f28.bin', sha256: true });
  const list = c.send({ t: 'list', path: '' });
  const get = c.send({ t: 'get', path: 'f27.bin' });
  for (const id of ids) assert.is((await c.reply(id)).t, 'ok');
  assert.is((await c.reply(renamed)).t, 'ok');
  const st = await c.reply(stat);
  assert.is(st.t, 'ok');
  assert.is((st as { result: { sha256: string } }).result.sha256, sha(bodies[28]!));
  const ls = await c.reply(list, 10_000, (m) => m.t === 'ok' || m.t === 'error');
  assert.is(ls.t, 'ok');
  const listed = c.replies.filter((r) => r.id === list && r.msg.t === 'entries').flatMap((r) => (r.msg as { entries: { name: string }[] }).entries.map((e) => e.name));
  assert.is(listed.filter((n) => /^f\d+\.bin$/.test(n)).length, 29);
  assert.ok(listed.includes('renamed.bin'));
  assert.not.ok(listed.includes('f29.bin'));
  const meta = await c.reply(get, 10_000, (m) => m.t === 'meta' || m.t === 'error');
  assert.equal([meta.t, (meta as { size?: number }).size], ['meta', 3000]);
  const home = join(dir, 'data', 'homes', 'pipe');
  assert.ok(readFileSync(join(home, 'renamed.bin')).equals(bodies[29]!));
  assert.ok(readFileSync(join(home, 'f28.bin')).equals(bodies[28]!));
  c.destroy();
});

commits('a second put of a path still committing waits for it instead of failing as busy', async () => {
  const c = await session();
  const first = randomBytes(5000);
  const second = randomBytes(7000);
  const a = upload(c, 'same.bin', first);
  const b = upload(c, './same.bin', second, { overwrite: true });
  assert.is((await c.reply(a)).t, 'ok');
  const rb = await c.reply(b);
  assert.is(rb.t, 'ok', JSON.stringify(rb));
  assert.ok(readFileSync(join(dir, 'data', 'homes', 'pipe', 'same.bin')).equals(second));
  c.destroy();
});

commits('a cancel that arrives while its upload commits gets no second answer; a bad digest fails alone', async () => {
  const c = await session();
  const body = randomBytes(4000);
  const id = upload(c, 'cancelled-late.bin', body);
  c.send({ t: 'cancel' }, id);
  const bad = c.send({ t: 'put', path: 'bad.bin', size: 3 });
  c.sendData(bad, Buffer.from('abc'));
  c.send({ t: 'end', sha256: sha(Buffer.from('xyz')) }, bad);
  const good = upload(c, 'good.bin', Buffer.from('fine'));
  const first = await c.reply(id);
  assert.is((await c.reply(bad)).t, 'error');
  assert.is((await c.reply(good)).t, 'ok');
  await sleep(200);
  const answers = c.replies.filter((r) => r.id === id);
  assert.is(answers.length, 1, `one answer for the cancelled-late upload: ${JSON.stringify(answers)}`);
  // Either the cancel came in time (error cancelled) or the commit won (ok): never both.
  assert.ok(first.t === 'ok' || (first.t === 'error' && first.code === 'cancelled'), JSON.stringify(first));
  assert.not.ok(c.isClosed, 'the session goes on');
  c.destroy();
});

commits('pipelined gets are opened together; a delete or rename sent after them waits until they are open', async () => {
  const c = await session();
  const bodies = Array.from({ length: 20 }, () => randomBytes(2000));
  const ups = bodies.map((b, i) => upload(c, `g${i}.bin`, b));
  for (const id of ups) assert.is((await c.reply(id)).t, 'ok');
  const gets = bodies.map((_, i) => c.send({ t: 'get', path: `g${i}.bin` }));
  // Sent right after the gets: they must not take the files away from gets already asked for.
  const deleted = c.send({ t: 'delete', path: 'g19.bin' });
  const renamed = c.send({ t: 'rename', from: 'g18.bin', to: 'moved.bin' });
  const missing = c.send({ t: 'get', path: 'g19.bin' });
  for (const [i, id] of gets.entries()) {
    const end = await c.reply(id, 10_000, (m) => m.t === 'end' || m.t === 'error');
    assert.equal([end.t, (end as { sha256?: string }).sha256], ['end', sha(bodies[i]!)], `get ${i}`);
    assert.is(c.data.get(id), 2000, `the bytes of g${i}.bin`);
  }
  assert.is((await c.reply(deleted)).t, 'ok');
  assert.is((await c.reply(renamed)).t, 'ok');
  const gone = await c.reply(missing, 10_000, (m) => m.t === 'meta' || m.t === 'error');
  assert.equal([gone.t, (gone as { code?: string }).code], ['error', 'not_found'], 'a get sent after the delete sees it');
  c.destroy();
});

commits('two gets on one id in flight at once end the connection with duplicate_id', async () => {
  const c = await session();
  upload(c, 'dup.bin', randomBytes(100));
  await sleep(100);
  // Both in one write, so that they arrive together: the first is still being opened when the second comes.
  const get = encodeMessage(99, { t: 'get', path: 'dup.bin' });
  c.write(Buffer.concat([get, get]));
  const fatal = await c.reply(0, 10_000, (m) => m.t === 'error');
  assert.is((fatal as { code?: string }).code, 'duplicate_id');
  c.destroy();
});

commits.run();
