import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, exited, ferryCommand, startServer, tempDir, waitUntil } from './harness.ts';

/** Runs ferry under a pseudo-terminal (util-linux `script`), answering prompts as they appear. */
function terminal(args: string[], env: NodeJS.ProcessEnv, cwd: string) {
  const [cmd, pre] = ferryCommand();
  const quoted = [cmd, ...pre, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qfec', quoted, '/dev/null'], { env: { ...env, TERM: 'dumb', COLUMNS: '120' }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  let consumed = 0;
  child.stdout.on('data', (d) => (screen += d));
  child.stderr.on('data', (d) => (screen += d));
  return {
    child,
    screen: () => screen,
    /** Waits for `text` to appear after what earlier answers consumed, then types `answer` + Enter. */
    async answer(text: string, answer: string) {
      await waitUntil(() => screen.indexOf(text, consumed) >= 0, 15_000, `prompt ${JSON.stringify(text)}; screen so far:\n${screen}`);
      consumed = screen.indexOf(text, consumed) + text.length;
      child.stdin.write(answer + '\r');
    },
    async expect(text: string) {
      await waitUntil(() => screen.indexOf(text, consumed) >= 0, 15_000, `${JSON.stringify(text)}; screen so far:\n${screen}`);
      consumed = screen.indexOf(text, consumed) + text.length;
    },
  };
}

const tty = suite('interactive session in a terminal');

tty('the original flow: trust the server, SIGNUP with a hidden password, commands, QUIT', async () => {
  const server = await startServer();
  const work = tempDir();
  writeFileSync(join(work, 'text.txt'), 'hisham here');
  try {
    const t = terminal(['connect', `127.0.0.1:${server.port}`], childEnv(server.home), work);
    await t.expect('Call one of the following functions:');
    await t.expect(server.fingerprint);
    await t.answer('Are you sure you want to continue connecting? (yes/no)', 'yes');
    await t.answer('LOGIN or SIGNUP: ', 'SIGNUP');
    await t.answer('Enter your username: ', 'Trex_007');
    await t.answer('Enter your password: ', 'admin123');
    await t.answer('Repeat your password: ', 'admin123');
    await t.expect('Authentication successful');
    await t.answer('Enter a command: ', 'upld text.txt');
    await t.expect('sha256 verified');
    await t.answer('Enter a command: ', 'LIST');
    await t.expect('Total directory size: 11 bytes');
    await t.answer('Enter a command: ', 'CLRLOG');
    await t.expect('Error: Only an admin may clear the log');
    await t.answer('Enter a command: ', 'QUIT');
    await exited(t.child);
    assert.is(t.child.exitCode, 0, t.screen());
    assert.not.ok(t.screen().includes('admin123'), 'the password is never echoed');
    assert.ok(readFileSync(join(server.home, 'known_hosts'), 'utf8').includes(server.fingerprint), 'the accepted fingerprint is remembered');
  } finally {
    await server.dispose();
    cleanup(work);
  }
});

tty('answering no to an unknown server sends nothing and exits non-zero', async () => {
  const server = await startServer();
  try {
    const t = terminal(['connect', `127.0.0.1:${server.port}`], childEnv(server.home), server.home);
    await t.answer('Are you sure you want to continue connecting? (yes/no)', 'no');
    await exited(t.child);
    assert.is(t.child.exitCode, 1);
    assert.match(t.screen(), /not trusted; nothing was sent/);
    assert.not.match(server.output(), /Handshake done/);
  } finally {
    await server.dispose();
  }
});

tty('a wrong password can be retried at the prompt; LOGIN then works', async () => {
  const server = await startServer();
  try {
    const made = await server.connect('alice', 'password1', ['LIST'], { signup: true });
    assert.is(made.code, 0, made.stderr);
    const t = terminal(['connect', `127.0.0.1:${server.port}`, '--fingerprint', server.fingerprint], childEnv(server.home), server.home);
    await t.answer('LOGIN or SIGNUP: ', 'hello');
    await t.expect('Please enter a valid action.');
    await t.answer('LOGIN or SIGNUP: ', 'login');
    await t.answer('Enter your username: ', 'alice');
    await t.answer('Enter your password: ', 'nope-nope');
    await t.expect('Authentication failed: Wrong user name or password');
    await t.answer('LOGIN or SIGNUP: ', 'LOGIN');
    await t.answer('Enter your username: ', 'alice');
    await t.answer('Enter your password: ', 'password1');
    await t.expect('Authentication successful');
    await t.answer('Enter a command: ', 'exit');
    await exited(t.child);
    assert.is(t.child.exitCode, 0, t.screen());
  } finally {
    await server.dispose();
  }
});

tty.run();
