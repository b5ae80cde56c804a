import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameDecoder, PREAMBLE, encodeMessage, parseServerMessage, type ServerMessage } from '../../src/protocol/mod.ts';
import { silentLog } from '../../src/server/console.ts';
import { FerryServer } from '../../src/server/server.ts';

process.env.FERRY_SCRYPT_N = '1024';

/** A raw TLS connection that records the server's messages and when it closed. */
function raw(port: number, send: Buffer[] = []) {
  const messages: ServerMessage[] = [];
  const decoder = new FrameDecoder({ onMessage: (_id, body) => messages.push(parseServerMessage(body)), onData: () => {} }, { maxMessage: 1 << 20, maxData: 1 << 24 }, true);
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
    for (const b of send) socket.write(b);
  });
  socket.on('data', (d: Buffer) => decoder.push(d));
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
  return { socket, messages, closed };
}

const hello = Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello', v: 1, agent: 'test', features: [] })]);

const limits = suite('server limits');
let dir: string;
let server: FerryServer;
let port: number;

limits.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-limits-'));
  server = new FerryServer(
    { host: '127.0.0.1', port: 0, dataDir: join(dir, 'data'), handshakeTimeoutMs: 300, authTimeoutMs: 700, maxConnectionsPerAddress: 3 },
    silentLog,
  );
  port = (await server.start()).port;
});

limits.after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

limits('a connection that sends nothing is closed with timeout after the handshake time', async () => {
  const started = Date.now();
  const c = raw(port);
  const closedAt = await c.closed;
  assert.ok(closedAt - started >= 250 && closedAt - started < 3000, `closed after ${closedAt - started} ms`);
  assert.equal(c.messages.map((m) => (m.t === 'error' ? m.code : m.t)), ['timeout']);
});

limits('a connection that says hello but never logs in is closed after the log-in time', async () => {
  const started = Date.now();
  const c = raw(port, [hello]);
  const closedAt = await c.closed;
  assert.ok(closedAt - started >= 600 && closedAt - started < 3000, `closed after ${closedAt - started} ms`);
  assert.equal(c.messages.map((m) => (m.t === 'error' ? m.code : m.t)), ['welcome', 'timeout']);
});

limits('connections past the per-address cap are refused with too_many_connections; the others stay', async () => {
  const held = [raw(port, [hello]), raw(port, [hello]), raw(port, [hello])];
  await new Promise((r) => setTimeout(r, 150));
  const extra = raw(port, [hello]);
  await extra.closed;
  assert.equal(extra.messages.map((m) => (m.t === 'error' ? m.code : m.t)), ['too_many_connections']);
  assert.ok(held.every((c) => c.messages[0]?.t === 'welcome'), 'the first three were served');
  for (const c of held) c.socket.destroy();
  await Promise.all(held.map((c) => c.closed));
  await new Promise((r) => setTimeout(r, 100));
  const after = raw(port, [hello]);
  await new Promise((r) => setTimeout(r, 200));
  assert.is(after.messages[0]?.t, 'welcome', 'slots are given back when connections close');
  after.socket.destroy();
});

limits.run();
