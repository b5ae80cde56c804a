// Resource limits of a real in-process server with small limits, driven by raw TLS clients: trickling
// handshakes, the connection caps, transfers per user, the declared upload size and free disk space.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PREAMBLE, encodeMessage } from '../../src/protocol/mod.ts';
import { silentLog } from '../../src/server/console.ts';
import type { ServerOptions } from '../../src/server/options.ts';
import { FerryServer } from '../../src/server/server.ts';
import { RawClient, codes, sleep } from './raw.ts';

process.env.FERRY_SCRYPT_N = '1024';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
const servers: FerryServer[] = [];

async function serve(options: Partial<ServerOptions>): Promise<{ server: FerryServer; port: number; dataDir: string }> {
  const dataDir = join(dir, `data-${servers.length}`);
  const server = new FerryServer({ host: '127.0.0.1', port: 0, dataDir, ...options }, silentLog);
  servers.push(server);
  return { server, port: (await server.start()).port, dataDir };
}

const limits = suite('hardening: resource limits');

limits.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-hardening-limits-'));
});
limits.after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

limits('a handshake trickled one byte at a time is closed at the handshake time: the bytes do not reset it', async () => {
  const { port } = await serve({ handshakeTimeoutMs: 600, authTimeoutMs: 5000 });
  const c = new RawClient(port);
  await c.connected;
  const started = Date.now();
  const bytes = Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello', v: 1, agent: 'x'.repeat(60), features: [] })]);
  let sent = 0;
  const trickle = setInterval(() => {
    if (sent < bytes.length && !c.isClosed) c.write(bytes.subarray(sent, ++sent));
  }, 40);
  const closedAt = await c.closed;
  clearInterval(trickle);
  const took = closedAt - started;
  assert.ok(sent < bytes.length, 'the hello never completed');
  assert.ok(took >= 550 && took < 1500, `closed after ${took} ms (handshake timeout 600 ms)`);
  assert.equal(codes(c), ['timeout']);
});

limits('a log-in trickled one byte at a time after hello is closed at the log-in time', async () => {
  const { port } = await serve({ handshakeTimeoutMs: 400, authTimeoutMs: 1000 });
  const c = new RawClient(port);
  await c.connected;
  const started = Date.now();
  c.hello();
  const login = encodeMessage(1, { t: 'login', user: 'nobody', password: 'p'.repeat(200) });
  let sent = 0;
  const trickle = setInterval(() => {
    if (sent < login.length && !c.isClosed) c.write(login.subarray(sent, ++sent));
  }, 30);
  const closedAt = await c.closed;
  clearInterval(trickle);
  const took = closedAt - started;
  assert.ok(took >= 950 && took < 2000, `closed after ${took} ms (log-in timeout 1000 ms)`);
  assert.equal(codes(c), ['welcome', 'timeout']);
});

limits('the total connection cap refuses the extra connections with too_many_connections and recovers', async () => {
  const { server, port } = await serve({ maxConnections: 4, maxConnectionsPerAddress: 100, handshakeTimeoutMs: 5000 });
  const held = Array.from({ length: 4 }, () => new RawClient(port));
  for (const c of held) c.hello();
  await Promise.all(held.map((c) => c.reply(0)));
  const extra = Array.from({ length: 5 }, () => new RawClient(port));
  for (const c of extra) c.hello();
  await Promise.all(extra.map((c) => c.closed));
  assert.ok(extra.every((c) => codes(c).join() === 'too_many_connections'), JSON.stringify(extra.map(codes)));
  assert.is(server.connectionCount, 4);
  for (const c of held) c.destroy();
  await Promise.all(held.map((c) => c.closed));
  await sleep(100);
  assert.is(server.connectionCount, 0, 'every slot is given back');
  const after = new RawClient(port);
  after.hello();
  assert.is((await after.reply(0)).t, 'welcome');
  after.destroy();
});

limits('a burst of 60 connections from one address against a per-address cap of 10: exactly 10 served', async () => {
  const { server, port } = await serve({ maxConnectionsPerAddress: 10, handshakeTimeoutMs: 5000 });
  const all = Array.from({ length: 60 }, () => new RawClient(port));
  for (const c of all) c.hello();
  await sleep(1500);
  const served = all.filter((c) => codes(c)[0] === 'welcome');
  const refused = all.filter((c) => codes(c).join() === 'too_many_connections');
  assert.is(served.length, 10);
  assert.is(refused.length, 50);
  assert.is(server.connectionCount, 10);
  for (const c of all) c.destroy();
});

limits('transfers per user are capped across connections (busy), and a slot comes back when one ends', async () => {
  const { port } = await serve({ maxTransfersPerUser: 3 });
  const a = new RawClient(port);
  assert.is((await a.logIn('tina', 'correct horse battery', true)).t, 'ok');
  const b = new RawClient(port);
  assert.is((await b.logIn('tina', 'correct horse battery')).t, 'ok');
  // Three uploads held open (declared, no bytes yet): two on a, one on b.
  const ids = [a.send({ t: 'put', path: 'u1', size: 5 }), a.send({ t: 'put', path: 'u2', size: 5 }), b.send({ t: 'put', path: 'u3', size: 5 })];
  await sleep(300);
  const fourth = a.send({ t: 'put', path: 'u4', size: 5 });
  const m = await a.reply(fourth);
  assert.is(m.t === 'error' && m.code, 'busy', JSON.stringify(m));
  assert.match((m as { message: string }).message, /3 transfers in progress/);
  const get = b.send({ t: 'get', path: 'u1' });
  const g = await b.reply(get);
  assert.is(g.t === 'error' && g.code, 'busy', 'a download counts too, on another connection');
  // Another user is not affected.
  const other = new RawClient(port);
  assert.is((await other.logIn('otto', 'correct horse battery', true)).t, 'ok');
  const ou = other.send({ t: 'put', path: 'o', size: 1 });
  other.sendData(ou, Buffer.from('o'));
  other.send({ t: 'end', sha256: sha(Buffer.from('o')) }, ou);
  assert.is((await other.reply(ou)).t, 'ok');
  // Finish one of a's uploads: a slot comes back.
  a.sendData(ids[0] as number, Buffer.from('hello'));
  a.send({ t: 'end', sha256: sha(Buffer.from('hello')) }, ids[0]);
  assert.is((await a.reply(ids[0] as number)).t, 'ok');
  const fifth = a.send({ t: 'put', path: 'u5', size: 0 });
  a.send({ t: 'end', sha256: sha(Buffer.alloc(0)) }, fifth);
  assert.is((await a.reply(fifth)).t, 'ok', 'a slot was free again');
  // Closing b gives its slot back too.
  b.destroy();
  await b.closed;
  await sleep(100);
  const sixth = a.send({ t: 'put', path: 'u6', size: 0 });
  a.send({ t: 'end', sha256: sha(Buffer.alloc(0)) }, sixth);
  assert.is((await a.reply(sixth)).t, 'ok');
  a.destroy();
  other.destroy();
});

limits('a declared upload size over the limit is refused before anything is stored; at the limit it is accepted', async () => {
  const { port, dataDir } = await serve({ maxUploadBytes: 1000 });
  const c = new RawClient(port);
  assert.is((await c.logIn('sam', 'correct horse battery', true)).t, 'ok');
  const big = c.send({ t: 'put', path: 'big', size: 1001 });
  const m = await c.reply(big);
  assert.is(m.t === 'error' && m.code, 'quota_exceeded');
  assert.match((m as { message: string }).message, /at most 1000 bytes/);
  const huge = c.send({ t: 'put', path: 'huge', size: Number.MAX_SAFE_INTEGER });
  assert.is((await c.reply(huge)).t, 'error');
  const ok = c.send({ t: 'put', path: 'fits', size: 1000 });
  const bytes = Buffer.alloc(1000, 7);
  c.sendData(ok, bytes);
  c.send({ t: 'end', sha256: sha(bytes) }, ok);
  assert.is((await c.reply(ok)).t, 'ok');
  assert.equal(readdirSync(join(dataDir, 'homes', 'sam')), ['fits']);
  c.destroy();
});

limits('an upload that would not fit on the disk is refused with no_space before it starts; nothing is left; the server goes on', async () => {
  // Free space is what statfs reports; a reserve larger than any disk makes every non-empty upload too big.
  const { port, dataDir } = await serve({ minFreeBytes: 2 ** 60 });
  const c = new RawClient(port);
  assert.is((await c.logIn('dana', 'correct horse battery', true)).t, 'ok');
  const id = c.send({ t: 'put', path: 'x.bin', size: 4096 });
  const m = await c.reply(id);
  assert.is(m.t === 'error' && m.code, 'no_space', JSON.stringify(m));
  assert.match((m as { message: string }).message, /needs 4096 more bytes/);
  assert.equal(readdirSync(join(dataDir, 'homes', 'dana')), []);
  assert.equal(readdirSync(join(dataDir, '.partial', 'dana')), [], 'no partial left');
  // An empty file needs no space; the connection and the server go on.
  const e = c.send({ t: 'put', path: 'empty', size: 0 });
  c.send({ t: 'end', sha256: sha(Buffer.alloc(0)) }, e);
  assert.is((await c.reply(e)).t, 'ok');
  const l = c.send({ t: 'list', path: '' });
  assert.is((await c.reply(l, 5000, (r) => r.t === 'ok')).t, 'ok');
  c.destroy();
});

limits.run();
