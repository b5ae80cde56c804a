// An upload link's body keeps coming while its upload ends on the session (the browser's PUT and the page's WebSocket
// are two connections): a `cancel` sent on the WebSocket while the PUT still pours bytes in. The bytes queued behind
// the cancel must be dropped, not taken for a protocol violation that ends the session; the PUT is refused, the
// session goes on (a `list` answers), and nothing of the upload is left. The real CLI server as a child process; the
// page's side played with the `ws` client and node:https, over real TLS.
import https from 'node:https';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { encodeMessage, PREAMBLE } from '../../src/protocol/frame.ts';
import { listHome, partialsOf, startServer, type ServerHandle } from '../e2e/harness.ts';

const t = suite('upload links racing a cancel');
let server: ServerHandle;
t.before(async () => {
  server = await startServer();
});
t.after(async () => {
  await server.dispose();
});

const MiB = 1024 * 1024;

/** The protocol over one WebSocket: requests by id, replies and intermediate messages collected by id. */
async function session(): Promise<{ ws: WebSocket; send(id: number, body: object): void; next(id: number, t?: string): Promise<Record<string, unknown>>; closed: () => boolean }> {
  const origin = `https://127.0.0.1:${server.port}`;
  const ws = new WebSocket(`wss://127.0.0.1:${server.port}/ws`, { origin, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] } as WebSocket.ClientOptions);
  const inbox: Array<{ id: number; msg: Record<string, unknown> }> = [];
  const waiters = new Set<() => void>();
  let closed = false;
  ws.on('message', (data: Buffer) => {
    if (data.length === 8 && data.equals(Buffer.from(PREAMBLE))) return;
    for (let at = 0; at + 9 <= data.length; ) {
      const id = data.readUInt32BE(at + 1);
      const length = data.readUInt32BE(at + 5);
      if (data[at] === 1) inbox.push({ id, msg: JSON.parse(data.subarray(at + 9, at + 9 + length).toString('utf8')) as Record<string, unknown> });
      at += 9 + length;
    }
    waiters.forEach((w) => w());
  });
  ws.on('close', () => {
    closed = true;
    waiters.forEach((w) => w());
  });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
  const send = (id: number, body: object) => ws.send(encodeMessage(id, body));
  const next = async (id: number, type?: string) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const i = inbox.findIndex((m) => m.id === id && (type === undefined || m.msg['t'] === type));
      if (i >= 0) return (inbox.splice(i, 1)[0] as { msg: Record<string, unknown> }).msg;
      if (closed) throw new Error(`the session closed while waiting for ${type ?? 'a reply'} to ${id}: ${JSON.stringify(inbox)}\n${server.output().slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`no ${type ?? 'reply'} to ${id}: ${JSON.stringify(inbox)}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 200);
        waiters.add(() => (clearTimeout(timer), r()));
      });
    }
  };
  ws.send(PREAMBLE);
  send(0, { t: 'hello', v: 1, agent: 'link-race', features: ['link', 'resume'] });
  await next(0, 'welcome');
  return { ws, send, next, closed: () => closed };
}

t('a cancel while the link still pours bytes in: those bytes are dropped, the session goes on, nothing is left', async () => {
  const s = await session();
  s.send(1, { t: 'signup', user: 'racer', password: 'password-racer' });
  assert.is((await s.next(1)).t, 'ok');
  let id = 2;
  for (let round = 0; round < 6; round++) {
    const put = id++;
    s.send(put, { t: 'put', path: `race-${round}.bin`, size: 256 * MiB, link: true, resume: true });
    const offer = await s.next(put, 'resume');
    assert.is(offer['offset'], 0);
    s.send(put, { t: 'from', offset: 0 });
    const url = new URL(String((await s.next(put, 'link'))['url']), `https://127.0.0.1:${server.port}`);
    // The body pours in as fast as the server takes it; the cancel goes when a few MiB are in, the body goes on.
    const status = new Promise<number>((resolve) => {
      const options = { host: '127.0.0.1', port: server.port, path: url.pathname, method: 'PUT', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], headers: { 'Content-Length': String(256 * MiB) } };
      const req = https.request(options as https.RequestOptions, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1));
      const chunk = Buffer.alloc(MiB, round);
      let sent = 0;
      const pour = () => {
        while (sent < 256 * MiB && !req.destroyed) {
          sent += MiB;
          if (sent === (4 + round) * MiB) s.send(put, { t: 'cancel' });
          if (!req.write(chunk)) return void req.once('drain', pour);
        }
        req.end();
      };
      pour();
    });
    const reply = await s.next(put);
    assert.equal([reply.t, reply['code']], ['error', 'cancelled'], JSON.stringify(reply));
    const code = await status;
    assert.ok(code === 409 || code === -1, `the PUT refused (409) or cut: ${code}`);
    // The session is still there and answers.
    const list = id++;
    s.send(list, { t: 'list', path: '' });
    const listed = await s.next(list, 'ok');
    assert.is(listed.t, 'ok');
    assert.not.ok(s.closed());
  }
  assert.not.match(server.output(), /unexpected_message|Data for request/);
  assert.equal(await listHome(server, 'racer'), []);
  assert.equal(await partialsOf(server, 'racer'), [], 'a cancelled upload leaves nothing');
  s.ws.close();
});

t.run();
