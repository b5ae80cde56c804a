// The HTTPS side of `ferry serve` (the page) against hostile clients, over real TLS sockets that choose HTTP by ALPN:
// malformed requests, oversized and slow heads, a WebSocket upgrade from another origin or to another path, WebSocket
// frames that lie about their length or exceed the limit, requests on a WebSocket without a log-in, used or foreign
// links — each answered or closed, the server still serving everyone after. And a client that offers no ALPN still
// gets the protocol.
import net from 'node:net';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeMessage, PREAMBLE } from '../../src/protocol/frame.ts';
import { startServer, type ServerHandle } from '../e2e/harness.ts';

const t = suite('the page\'s HTTPS side under attack');
let server: ServerHandle;

t.before(async () => {
  server = await startServer();
});
t.after(async () => {
  await server.dispose();
});

/** A TLS connection choosing HTTP/1.1 by ALPN; resolves with everything the server sent until it closed (or `waitMs`). */
function exchange(send: (socket: tls.TLSSocket) => void, waitMs = 5000, alpn: string[] | null = ['http/1.1']): Promise<{ text: string; closed: boolean; alpn: string | false }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false, ...(alpn ? { ALPNProtocols: alpn } : {}) });
    const chunks: Buffer[] = [];
    let alpnSeen: string | false = false;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed, alpn: alpnSeen });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('secureConnect', () => {
      alpnSeen = socket.alpnProtocol ?? false;
      send(socket);
    });
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => done(true));
    socket.on('error', () => {});
  });
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

async function stillServing(): Promise<void> {
  const r = await exchange((s) => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  assert.is(status(r.text), 200, r.text.slice(0, 200));
  assert.match(r.text, /Content-Security-Policy: default-src 'none'/);
}

t('no ALPN, or ferry/1: the protocol, as before; http/1.1: the page', async () => {
  const none = await exchange(() => {}, 1000, null);
  assert.is(none.alpn, false);
  assert.ok(none.text.startsWith('\x89FRY'), 'the ferry preamble');
  const ferry = await exchange(() => {}, 1000, ['ferry/1']);
  assert.is(ferry.alpn, 'ferry/1');
  assert.ok(ferry.text.startsWith('\x89FRY'));
  const web = await exchange((s) => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 2000, ['h2', 'http/1.1']);
  assert.is(web.alpn, 'http/1.1');
  assert.is(status(web.text), 200);
});

t('malformed requests get 400 and the connection closed; methods other than GET/HEAD get 405', async () => {
  for (const junk of ['\x00\x01\x02\x03garbage\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'GET /\r\nHost x\r\n\r\n', 'G\u00e9T / HTTP/1.1\r\n\r\n']) {
    const r = await exchange((s) => s.write(junk, 'latin1'));
    assert.is(status(r.text), 400, JSON.stringify(junk) + ' → ' + r.text.slice(0, 100));
    assert.ok(r.closed);
  }
  const post = await exchange((s) => s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
  assert.is(status(post.text), 405);
  await stillServing();
});

t('an oversized request head gets 431; a head sent too slowly is cut off within the handshake time', async () => {
  const big = await exchange((s) => s.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`));
  assert.is(status(big.text), 431, big.text.slice(0, 100));
  assert.ok(big.closed);
  // A slowloris: a byte now and then, never finishing the head. The server's handshake time-out is 10 s.
  const started = Date.now();
  const slow = await exchange((s) => {
    s.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => s.writable && s.write('X-Slow: y\r\n'), 500);
    s.once('close', () => clearInterval(drip));
  }, 20_000);
  assert.ok(slow.closed, 'closed by the server');
  assert.ok(Date.now() - started < 16_000, `cut off after ${Date.now() - started} ms`);
  assert.ok(status(slow.text) === 408 || slow.text === '', slow.text.slice(0, 100));
  await stillServing();
});

t('many requests on one kept-alive connection: each answered, nothing piles up on the connection', async () => {
  const n = 30;
  let answered = 0;
  let connections = 0;
  // One request after another on a connection (HTTP/1.1 keep-alive), as a browser reuses one; the last asks to close.
  // Node keeps the connection for all of them. (On Deno, node:http closes a connection handed to it after one
  // response, though it says keep-alive: then each goes on a new connection, as a browser would do.)
  while (answered < n && connections < n) {
    connections++;
    const r = await exchange((s) => {
      let seen = '';
      let here = 0;
      const next = () => s.write(`GET /favicon.svg HTTP/1.1\r\nHost: x\r\n${answered === n - 1 ? 'Connection: close\r\n' : ''}\r\n`);
      s.on('data', (d: Buffer) => {
        // A response may come in pieces, a status line across two: what came is counted as a whole.
        seen += d.toString('latin1');
        const now = seen.split('HTTP/1.1 200 OK').length - 1;
        answered += now - here;
        const more = now > here;
        here = now;
        if (more && answered < n) next();
      });
      next();
    }, 20_000);
    assert.ok(r.closed, 'the server closed the connection (asked to, or after its response)');
  }
  assert.is(answered, n, `every request answered (on ${connections} connection(s))`);
  // Each response re-arms the connection's head deadline; a listener per request would trip Node's warning.
  assert.not.match(server.output(), /MaxListenersExceededWarning/);
});

t('a WebSocket upgrade from another origin, without one, or to another path is refused', async () => {
  const upgrade = (path: string, origin: string | null) =>
    exchange((s) =>
      s.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${origin ? `Origin: ${origin}\r\n` : ''}\r\n`,
      ),
    );
  assert.is(status((await upgrade('/ws', 'https://evil.example')).text), 403);
  assert.is(status((await upgrade('/ws', null)).text), 403);
  assert.is(status((await upgrade('/elsewhere', `https://127.0.0.1:${server.port}`)).text), 404);
  const plain = await exchange((s) => s.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  assert.is(status(plain.text), 404, 'a plain GET of /ws opens nothing');
  await server.waitFor(/WebSocket refused: origin https:\/\/evil\.example is not https:\/\/127\.0\.0\.1:\d+/);
  const ok = await upgrade('/ws', `https://127.0.0.1:${server.port}`);
  assert.is(status(ok.text), 101, 'the right origin is let in');
  await stillServing();
});

/** A masked client WebSocket frame with a header that may lie about the payload's length. */
function wsFrame(opcode: number, payload: Buffer, claimedLength = payload.length): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  let header: Buffer;
  if (claimedLength < 126) header = Buffer.from([0x80 | opcode, 0x80 | claimedLength]);
  else if (claimedLength < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(claimedLength, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(claimedLength), 2);
  }
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([header, mask, masked]);
}

/** A well-formed WebSocket upgrade to this server, from its own origin. */
const upgradeRequest = () => `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nOrigin: https://127.0.0.1:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

function openWs(then: (s: tls.TLSSocket) => void, waitMs = 5000) {
  return exchange((s) => {
    s.write(upgradeRequest());
    s.once('data', () => then(s));
  }, waitMs);
}

t('WebSocket frames that lie about their length or pass the limit close that socket only; junk inside ends the session', async () => {
  // Claims 2^40 bytes: over maxPayload (maxData + 64), refused from the header alone (1009), nothing allocated.
  const huge = await openWs((s) => s.write(wsFrame(2, Buffer.alloc(10), 2 ** 40)));
  assert.ok(huge.closed);
  assert.match(huge.text, /\x88/, 'a close frame');
  // Claims more than it sends, then silence: the socket waits for the rest and is closed by the idle rules, not
  // crashed; here the client gives up.
  const short = await openWs((s) => s.write(wsFrame(2, Buffer.alloc(10), 5000)), 1500);
  assert.not.ok(short.closed, 'still waiting for the rest (bounded by the idle time-out)');
  // Not the ferry preamble: the session ends with its own error, as over TLS.
  const junk = await openWs((s) => s.write(wsFrame(2, Buffer.from('GET / HTTP/1.1\r\n\r\n'))));
  assert.ok(junk.closed);
  // A text frame (the protocol is binary) is refused like any other bytes that are not the preamble.
  const text = await openWs((s) => s.write(wsFrame(1, Buffer.from('hello'))));
  assert.ok(text.closed);
  await stillServing();
  // The protocol over the WebSocket still works for a well-behaved client after all that: the preamble comes back.
  const good = await openWs((s) => s.write(wsFrame(2, Buffer.from([0x89, 0x46, 0x52, 0x59, 0x0d, 0x0a, 0x1a, 0x0a]))), 1500);
  assert.match(good.text, /\x89FRY/);
});

t('a WebSocket without a log-in: every request but LOGIN/SIGNUP refused (auth_required), no link minted', async () => {
  const msg = (id: number, body: object) => wsFrame(2, encodeMessage(id, body));
  const r = await openWs((s) => {
    s.write(wsFrame(2, Buffer.from(PREAMBLE)));
    s.write(msg(0, { t: 'hello', v: 1, agent: 'hardening', features: ['link', 'resume'] }));
    s.write(msg(1, { t: 'link', path: 'x' }));
    s.write(msg(2, { t: 'list', path: '' }));
    s.write(msg(3, { t: 'put', path: 'y', size: 10, link: true }));
    s.write(msg(4, { t: 'mkdir', path: 'z' }));
  }, 2000);
  assert.match(r.text, /"t":"welcome"/);
  assert.is(r.text.split('"code":"auth_required"').length - 1, 4, r.text.replace(/[^\x20-\x7e]/g, '.').slice(0, 800));
  assert.not.match(r.text, /\/(dl|ul)\//, 'no link address given out');
  await stillServing();
});

t('links: unknown, malformed, and wrong-method requests are refused without touching any file', async () => {
  for (const [req, want] of [
    [`GET /dl/${'A'.repeat(32)}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 404],
    ['GET /dl/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 404],
    [`PUT /dl/${'A'.repeat(32)}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 405],
    [`PUT /ul/${'A'.repeat(32)} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`, 404],
    [`GET /ul/${'A'.repeat(32)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 405],
  ] as const) {
    const r = await exchange((s) => s.write(req));
    assert.is(status(r.text), want, req.split('\r\n')[0] + ' → ' + r.text.slice(0, 120));
  }
  await stillServing();
});


t('a WebSocket whose connection is reset (RST, as a network that drops does) ends its session at once', async () => {
  // A raw TCP connection under the TLS, so that it can be reset (a TLS socket cannot).
  const raw = net.connect(server.port, '127.0.0.1');
  raw.on('error', () => {});
  const s = tls.connect({ socket: raw, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  s.on('error', () => {});
  let seen = '';
  s.on('data', (d: Buffer) => (seen += d.toString('latin1')));
  await new Promise<void>((resolve) => s.once('secureConnect', () => resolve()));
  s.write(upgradeRequest());
  s.write(wsFrame(2, Buffer.from(PREAMBLE)));
  s.write(wsFrame(2, encodeMessage(0, { t: 'hello', v: 1, agent: 'hardening', features: [] })));
  s.write(wsFrame(2, encodeMessage(1, { t: 'signup', user: 'reset', password: 'password-reset' })));
  await server.waitFor(/\[#\d+ 127\.0\.0\.1:\d+ reset\] Signed up user: reset/);
  assert.match(seen, /"t":"welcome"/);
  raw.resetAndDestroy();
  // Before: the session waited for a close that the WebSocket's stream never reported (ws's stream wrapper waits for
  // the socket to finish writing, which a reset socket never does), holding its uploads until the idle time-out.
  await server.waitFor(/\[#\d+ 127\.0\.0\.1:\d+ reset\] Disconnected/, 5000);
  await stillServing();
});

t.run();
