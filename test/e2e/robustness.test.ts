import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameDecoder, FrameKind, PREAMBLE, encodeHeader, encodeMessage, parseServerMessage, type ServerMessage } from '../../src/protocol/mod.ts';
import { childEnv, cleanup, exited, sha256File, startFerry, startServer, tempDir, waitUntil, type ServerHandle } from './harness.ts';

/** Opens a raw TLS connection, sends `bytes`, and collects what the server says until it closes. */
function rawExchange(port: number, bytes: Buffer[], timeoutMs = 5000): Promise<{ messages: ServerMessage[]; closed: boolean }> {
  return new Promise((resolve) => {
    const messages: ServerMessage[] = [];
    const decoder = new FrameDecoder(
      { onMessage: (_id, body) => messages.push(parseServerMessage(body)), onData: () => {} },
      { maxMessage: 1 << 20, maxData: 1 << 24 },
      true,
    );
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      for (const b of bytes) socket.write(b);
    });
    socket.on('data', (d: Buffer) => decoder.push(d));
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ messages, closed: false });
    }, timeoutMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ messages, closed: true });
    });
  });
}

const hello = encodeMessage(0, { t: 'hello', v: 1, agent: 'raw-test', features: [] });
const pre = Buffer.from(PREAMBLE);

const hostile = suite('hostile bytes from a raw socket');
let server: ServerHandle;

hostile.before(async () => {
  server = await startServer();
});
hostile.after(async () => {
  await server.dispose();
});

const cases: Array<[string, Buffer[], string]> = [
  ['garbage before the handshake', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], 'bad_preamble'],
  ['a request before hello', [pre, encodeMessage(1, { t: 'list', path: '' })], 'unexpected_message'],
  ['an oversized message frame', [pre, encodeHeader(FrameKind.MSG, 0, 10 * 1024 * 1024)], 'frame_too_large'],
  ['an unknown frame kind', [pre, Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 1, 0])], 'bad_frame'],
  ['invalid JSON', [pre, Buffer.concat([encodeHeader(FrameKind.MSG, 0, 5), Buffer.from('{"t":')])], 'bad_message'],
  ['an unknown message type', [pre, hello, encodeMessage(1, { t: 'rm_rf' })], 'unknown_message'],
  ['a wrong protocol version', [pre, encodeMessage(0, { t: 'hello', v: 99, agent: 'x', features: [] })], 'version_mismatch'],
  ['data for a request that is not an upload', [pre, hello, encodeHeader(FrameKind.DATA, 5, 3), Buffer.from('abc')], 'unexpected_message'],
];

for (const [name, bytes, code] of cases) {
  hostile(`${name} ends that connection with ${code}`, async () => {
    const { messages, closed } = await rawExchange(server.port, bytes);
    assert.ok(closed, 'the server closed the connection');
    const last = messages.at(-1);
    assert.ok(last && last.t === 'error', JSON.stringify(messages));
    assert.is((last as { code: string }).code, code);
  });
}

hostile('a truncated frame followed by a disconnect is one log line, and the server keeps serving everyone', async () => {
  const before = server.output().length;
  // A client holding a session open across the abuse.
  const bystander = startFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'bystander', '--signup', '--fingerprint', server.fingerprint], {
    env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
    input: '',
  });
  await rawExchange(server.port, [pre, hello, encodeHeader(FrameKind.MSG, 1, 100), Buffer.from('{"t"')], 500);
  await exited(bystander);
  const r = await server.connect('bystander', 'password1', ['LIST']);
  assert.is(r.code, 0, r.stderr);
  const log = server.output().slice(before);
  assert.not.match(log, /at \w+ \(|Traceback|TypeError|uncaught/i, log);
  assert.match(log, /Disconnected \(connection_lost: Connection closed in the middle of a frame\)/);
  assert.is(server.process.exitCode, null, 'server still running');
});

hostile.run();

const killed = suite('killed processes never leave partial files');
const BIG = 96 * 1024 * 1024;
let work: string;
let bigFile: string;

killed.before(() => {
  work = tempDir();
  bigFile = join(work, 'big.bin');
  // Random (incompressible) content, written in pieces.
  const piece = randomBytes(4 * 1024 * 1024);
  const parts: Buffer[] = [];
  for (let i = 0; i < BIG / piece.length; i++) parts.push(piece.map((b) => b ^ i) as Buffer);
  writeFileSync(bigFile, Buffer.concat(parts));
});
killed.after(() => cleanup(work));

function partialBytes(dataDir: string): number {
  const dir = join(dataDir, '.partial');
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const user of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, user))) if (f.endsWith('.part')) total += statSync(join(dir, user, f)).size;
  }
  return total;
}

killed('a client killed mid-upload leaves no file; the next upload resumes and verifies', async () => {
  const server = await startServer();
  try {
    const signup = await server.connect('uploader', 'password1', ['LIST'], { signup: true });
    assert.is(signup.code, 0, signup.stderr);
    const client = startFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'uploader', '--fingerprint', server.fingerprint], {
      env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
      input: `UPLD ${bigFile} big.bin\n`,
    });
    await waitUntil(() => partialBytes(server.dataDir) > 8 * 1024 * 1024, 30_000, 'upload under way');
    client.kill('SIGKILL');
    await exited(client);
    await server.waitFor(/Disconnected.*interrupted, kept for resume/);
    const kept = partialBytes(server.dataDir);
    assert.ok(kept > 0 && kept < BIG, `partial kept: ${kept}`);
    assert.not.ok(existsSync(join(server.dataDir, 'homes', 'uploader', 'big.bin')), 'no visible file after the kill');

    const list = await server.connect('uploader', 'password1', ['LIST']);
    assert.match(list.stdout, /in 0 entries/);

    const resumed = await server.connect('uploader', 'password1', [`UPLD ${bigFile} big.bin --resume`], { timeoutMs: 60_000 });
    assert.is(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /\(resumed at [\d.]+ MiB\)/);
    assert.is(sha256File(join(server.dataDir, 'homes', 'uploader', 'big.bin')), sha256File(bigFile));
    assert.is(partialBytes(server.dataDir), 0, 'the partial became the file');
  } finally {
    await server.dispose();
  }
});

killed('a download killed midway resumes from its .ferry-part and verifies', async () => {
  const server = await startServer();
  const dest = join(work, 'down.bin');
  try {
    const up = await server.connect('downloader', 'password1', [`UPLD ${bigFile} big.bin`], { signup: true, timeoutMs: 60_000 });
    assert.is(up.code, 0, up.stderr);
    const client = startFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'downloader', '--fingerprint', server.fingerprint], {
      env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
      input: `DWLD big.bin ${dest}\n`,
    });
    await waitUntil(() => existsSync(dest + '.ferry-part') && statSync(dest + '.ferry-part').size > 8 * 1024 * 1024, 30_000, 'download under way');
    client.kill('SIGKILL');
    await exited(client);
    assert.not.ok(existsSync(dest), 'no file at the destination after the kill');
    const again = await server.connect('downloader', 'password1', [`DWLD big.bin ${dest}`], { timeoutMs: 60_000 });
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stdout, /resumed at/);
    assert.is(sha256File(dest), sha256File(bigFile));
    assert.not.ok(existsSync(dest + '.ferry-part'));
  } finally {
    await server.dispose();
  }
});

killed('a server killed mid-upload: after restart no partial file, users and log intact, resume completes', async () => {
  const first = await startServer();
  const dataDir = first.dataDir;
  const home = first.home;
  let second: ServerHandle | null = null;
  try {
    const signup = await first.connect('survivor', 'password1', ['LIST'], { signup: true });
    assert.is(signup.code, 0);
    const client = startFerry(['connect', `127.0.0.1:${first.port}`, '--user', 'survivor', '--fingerprint', first.fingerprint], {
      env: childEnv(home, { FERRY_PASSWORD: 'password1' }),
      input: `UPLD ${bigFile} big.bin\n`,
    });
    await waitUntil(() => partialBytes(dataDir) > 8 * 1024 * 1024, 30_000, 'upload under way');
    await first.kill();
    await exited(client);
    assert.is(client.exitCode, 1, 'the client reports the lost connection');
    assert.match(client.output(), /ferry: .*(connection|closed|lost)/i);

    second = await startServer({ dataDir, home });
    assert.is(second.fingerprint, first.fingerprint, 'same identity after restart');
    assert.not.ok(existsSync(join(dataDir, 'homes', 'survivor', 'big.bin')));
    const users = JSON.parse(readFileSync(join(dataDir, 'users.json'), 'utf8'));
    assert.equal(users.users.map((u: { name: string }) => u.name), ['survivor']);
    for (const line of readFileSync(join(dataDir, 'audit.log'), 'utf8').trim().split('\n')) JSON.parse(line);
    const resumed = await second.connect('survivor', 'password1', [`UPLD ${bigFile} big.bin`], { timeoutMs: 60_000 });
    assert.is(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed at/);
    assert.is(sha256File(join(dataDir, 'homes', 'survivor', 'big.bin')), sha256File(bigFile));
  } finally {
    await first.kill();
    if (second) await second.stop();
    await first.dispose();
  }
});

killed('SIGTERM during an upload stops the server cleanly: exit 0, no visible file, the partial kept', async () => {
  const server = await startServer();
  try {
    const signup = await server.connect('stopper', 'password1', ['LIST'], { signup: true });
    assert.is(signup.code, 0);
    const client = startFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'stopper', '--fingerprint', server.fingerprint], {
      env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
      input: `UPLD ${bigFile} big.bin\n`,
    });
    await waitUntil(() => partialBytes(server.dataDir) > 8 * 1024 * 1024, 30_000, 'upload under way');
    const started = Date.now();
    server.process.kill('SIGTERM');
    await exited(server.process);
    assert.ok(Date.now() - started < 5000, 'stops within seconds');
    assert.is(server.process.exitCode, 0, server.output());
    assert.match(server.output(), /SIGTERM: stopping/);
    await exited(client);
    assert.match(client.output(), /stopping/i, `the client is told why: exit ${client.exitCode} ${client.signalCode} ${client.output()}`);
    assert.not.ok(existsSync(join(server.dataDir, 'homes', 'stopper', 'big.bin')));
    assert.ok(partialBytes(server.dataDir) > 0, 'kept for resume');
  } finally {
    await server.dispose();
  }
});

killed.run();

const race = suite('concurrent sign-ups');

race('two parallel sign-ups of one name: exactly one wins', async () => {
  const server = await startServer();
  try {
    for (let round = 0; round < 3; round++) {
      const name = `twin${round}`;
      const [a, b] = await Promise.all([
        server.connect(name, 'password-a', ['LIST'], { signup: true }),
        server.connect(name, 'password-b', ['LIST'], { signup: true }),
      ]);
      const codes = [a.code, b.code].sort();
      assert.equal(codes, [0, 1], `round ${round}: ${a.stderr} | ${b.stderr}`);
      const loser = a.code === 1 ? a : b;
      assert.match(loser.stderr, /taken|exists/i);
    }
    const users = JSON.parse(readFileSync(join(server.dataDir, 'users.json'), 'utf8'));
    assert.is(users.users.length, 3);
  } finally {
    await server.dispose();
  }
});

race.run();
