// What a client sends never reaches the server's console raw: user names, paths, the agent string and the
// client's own error text are escaped (control characters, newlines, terminal escapes) and capped, so that a
// client cannot forge a console line or drive the operator's terminal.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startServer, type ServerHandle } from '../e2e/harness.ts';
import { RawClient } from '../hardening/raw.ts';

const FORGED = '\n2026-01-01 00:00:00 [#1 1.2.3.4:5] Authentication successful for user: admin';
const CLEAR = '\x1b[2J';
const EVIL = `x${FORGED}${CLEAR}`;

const t = suite('console injection');
let server: ServerHandle;

t.before(async () => {
  server = await startServer();
});

t.after(async () => {
  await server.dispose();
});

/** The console lines that carry the forged text: each must be one whole line, with the text escaped. */
function forgedLines(output: string): string[] {
  return output.split('\n').filter((line) => line.includes('2026-01-01 00:00:00 [#1 1.2.3.4:5]'));
}

/** `escapes`: the lines must show the terminal escape escaped (user names are cut at 64 characters before it). */
function assertClean(output: string, expected: number, escapes = true): void {
  assert.not.ok(output.includes('\x1b'), 'a terminal escape reached the console');
  for (const line of output.split('\n')) {
    assert.not.ok(line.startsWith('2026-01-01 00:00:00 [#1 1.2.3.4:5]'), `a forged line: ${JSON.stringify(line)}`);
  }
  const lines = forgedLines(output);
  assert.is(lines.length, expected, JSON.stringify(lines));
  for (const line of lines) {
    assert.match(line, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[#\d+ /, line);
    assert.ok(line.includes('\\n2026-01-01 00:00:00'), `not escaped: ${JSON.stringify(line)}`);
    if (escapes) assert.ok(line.includes('\\u001b[2J'), `escape not shown escaped: ${JSON.stringify(line)}`);
  }
}

t('a user name with a newline and a terminal escape is printed as one escaped line (log-in and sign-up)', async () => {
  const before = server.output().length;
  const login = new RawClient(server.port);
  try {
    const r = await login.logIn(EVIL, 'whatever-password');
    assert.is(r.t === 'error' && r.code, 'auth_failed');
  } finally {
    login.destroy();
  }
  const signup = new RawClient(server.port);
  try {
    const r = await signup.logIn(EVIL, 'whatever-password', true);
    assert.is(r.t === 'error' && r.code, 'invalid_username');
  } finally {
    signup.destroy();
  }
  await server.waitFor(/Disconnected[^\n]*\n[^]*Disconnected/);
  await new Promise((r) => setTimeout(r, 200));
  // log-in: 'Authentication failed for user: ...' and the refused LOGIN; sign-up: the refused SIGNUP.
  assertClean(server.output().slice(before), 3, false);
});

t('a path, an agent string and a client error with a newline and a terminal escape are printed escaped', async () => {
  const before = server.output().length;
  const c = new RawClient(server.port);
  try {
    c.write(Buffer.from([])); // connected
    c.hello();
    await c.reply(0, 10_000, (m) => m.t === 'welcome');
    const signup = c.send({ t: 'signup', user: 'console_user', password: 'a-long-password' });
    assert.is((await c.reply(signup)).t, 'ok');
    for (const message of [
      { t: 'list', path: EVIL },
      { t: 'stat', path: EVIL },
      { t: 'delete', path: EVIL },
      { t: 'mkdir', path: EVIL },
      { t: 'rename', from: EVIL, to: 'b' },
      { t: 'get', path: EVIL },
      { t: 'put', path: EVIL, size: 1 },
    ]) {
      const id = c.send(message);
      const reply = await c.reply(id);
      assert.is(reply.t === 'error' && reply.code, 'invalid_path', JSON.stringify(reply));
      if (reply.t === 'error') assert.not.ok(/[\x00-\x1f]/.test(reply.message), `raw control character in ${JSON.stringify(reply.message)}`);
      if (message.t === 'put') c.send({ t: 'cancel' }, id);
    }
    c.send({ t: 'error', code: 'bad_frame', message: EVIL }, 0);
    await c.closed;
  } finally {
    c.destroy();
  }
  await server.waitFor(/The client gave up on the connection/);
  await new Promise((r) => setTimeout(r, 200));
  // list, stat, delete, mkdir, rename, get, put and the client's own error.
  assertClean(server.output().slice(before), 8);
});

t('the agent string of the handshake is printed escaped', async () => {
  const c = new RawClient(server.port);
  try {
    const { encodeMessage, PREAMBLE } = await import('../../src/protocol/mod.ts');
    c.write(Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello', v: 1, agent: `agent${CLEAR}\nforged line`, features: [] })]));
    await c.reply(0, 10_000, (m) => m.t === 'welcome');
  } finally {
    c.destroy();
  }
  await server.waitFor(/Handshake done \(client agent/);
  const line = server.output().split('\n').find((l) => l.includes('Handshake done (client agent')) ?? '';
  assert.ok(line.includes('agent\\u001b[2J\\nforged line'), JSON.stringify(line));
  assert.not.ok(server.output().includes('\x1b'));
  assert.not.ok(server.output().split('\n').some((l) => l.startsWith('forged line')));
});

t.run();
