import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameDecoder, PREAMBLE, encodeData, encodeMessage, parseServerMessage, type ServerMessage } from '../../src/protocol/mod.ts';
import { childEnv, cleanup, listHome, partialsOf, runFerry, startServer, tempDir, type ServerHandle } from '../e2e/harness.ts';

const MiB = 1024 * 1024;
const PASSWORD = 'password1';

/** The quota config used by every test here: 10 MiB and 100 files each; `counter` may keep 2 files of any size. */
const CONFIG = `plugins:
  - name: quota
    options:
      defaults: { maxBytes: 10 MiB, maxFiles: 100 }
      users:
        counter: { maxBytes: null, maxFiles: 2 }
`;

let work: string;
let config: string;
let server: ServerHandle;

/** What a user's home holds, and their uploads kept in progress (on disk, or in the object store: harness.ts). */
const home = (user: string) => listHome(server, user);
const partials = (user: string) => partialsOf(server, user);

function local(name: string, bytes: number): string {
  const path = join(work, name);
  writeFileSync(path, randomBytes(bytes));
  return path;
}

/** The `Quota:` line of a LIST or STAT: bytes used, byte limit, files used, file limit. */
function quotaLine(stdout: string): [number, number, number, number] | null {
  const m = /^Quota: .* used \((\d+) of (\d+) bytes\), (\d+) of (\d+) files$/m.exec(stdout);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])] : null;
}

async function ok(user: string, commands: string[], signup = false): Promise<string> {
  const r = await server.connect(user, PASSWORD, commands, { signup, cwd: work });
  assert.is(r.code, 0, `${commands.join('; ')}: ${r.stderr}`);
  return r.stdout;
}

async function refused(user: string, commands: string[]): Promise<string> {
  const r = await server.connect(user, PASSWORD, commands, { cwd: work });
  assert.is(r.code, 1, `${commands.join('; ')} should fail: ${r.stdout}`);
  return r.stderr;
}

/** A connection speaking the protocol directly, logged in as `user`: for steps the real client will not take. */
class Raw {
  readonly #got = new Map<number, ServerMessage[]>();
  readonly #waiters: Array<() => void> = [];
  #socket!: tls.TLSSocket;

  static async open(port: number, user: string): Promise<Raw> {
    const raw = new Raw();
    const decoder = new FrameDecoder(
      {
        onMessage: (id, body) => {
          raw.#got.set(id, [...(raw.#got.get(id) ?? []), parseServerMessage(body)]);
          for (const wake of raw.#waiters.splice(0)) wake();
        },
        onData: () => {},
      },
      { maxMessage: 1 << 20, maxData: 1 << 24 },
      true,
    );
    await new Promise<void>((resolve, reject) => {
      raw.#socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve());
      raw.#socket.once('error', reject);
    });
    raw.#socket.on('data', (d: Buffer) => decoder.push(d));
    raw.#socket.on('error', () => {});
    raw.#socket.write(Buffer.from(PREAMBLE));
    raw.send(0, { t: 'hello', v: 1, agent: 'quota-test', features: ['resume'] });
    raw.send(1, { t: 'login', user, password: PASSWORD });
    const login = await raw.next(1);
    assert.is(login.t, 'ok', JSON.stringify(login));
    return raw;
  }

  send(id: number, message: object): void {
    this.#socket.write(encodeMessage(id, message));
  }

  data(id: number, bytes: Buffer): void {
    for (let at = 0; at < bytes.length; at += 256 * 1024) for (const part of encodeData(id, bytes.subarray(at, at + 256 * 1024))) this.#socket.write(part);
  }

  /** The next message for request `id` (waits up to 10 s). */
  async next(id: number): Promise<ServerMessage> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const queue = this.#got.get(id);
      if (queue && queue.length > 0) return queue.shift() as ServerMessage;
      if (Date.now() > deadline) throw new Error(`No reply for request ${id}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const e2e = suite('quota plugin end to end');

e2e.before(async () => {
  work = tempDir('ferry-quota-');
  config = join(work, 'ferry.config.yaml');
  writeFileSync(config, CONFIG);
  server = await startServer({ args: ['--config', config] });
  assert.match(server.output(), /plugins: quota/);
});
e2e.after(async () => {
  await server.dispose();
  cleanup(work);
});

e2e('two parallel uploads that together pass the quota: exactly one succeeds, nothing partial remains', async () => {
  await ok('para', ['LIST'], true);
  local('p1.bin', 6 * MiB);
  local('p2.bin', 6 * MiB);
  const [a, b] = await Promise.all([
    server.connect('para', PASSWORD, ['UPLD p1.bin'], { cwd: work }),
    server.connect('para', PASSWORD, ['UPLD p2.bin'], { cwd: work }),
  ]);
  assert.equal([a.code, b.code].sort(), [0, 1], `${a.stderr} / ${b.stderr}`);
  const loser = a.code === 1 ? a : b;
  assert.match(loser.stderr, /quota exceeded: 6 MiB of 10 MiB used( \(6 MiB of it by uploads in progress\))?, upload needs 6 MiB/);
  assert.equal(await home('para'), [a.code === 0 ? 'p1.bin' : 'p2.bin']);
  assert.equal(await partials('para'), []);
});

e2e('space is held from the moment an upload starts: a second upload is refused while the first is still open', async () => {
  await ok('held', ['LIST'], true);
  const first = await Raw.open(server.port, 'held');
  const second = await Raw.open(server.port, 'held');
  try {
    const bytes = randomBytes(6 * MiB);
    first.send(2, { t: 'put', path: 'first.bin', size: bytes.length, resume: true });
    assert.is((await first.next(2)).t, 'resume', 'the first upload was accepted and is open');
    second.send(2, { t: 'put', path: 'second.bin', size: 6 * MiB });
    const refusal = await second.next(2);
    assert.equal(refusal, { t: 'error', code: 'quota_exceeded', message: 'quota exceeded: 6 MiB of 10 MiB used (6 MiB of it by uploads in progress), upload needs 6 MiB' });
    first.send(2, { t: 'from', offset: 0 });
    first.data(2, bytes);
    first.send(2, { t: 'end', sha256: sha256(bytes) });
    assert.is((await first.next(2)).t, 'ok');
    second.send(3, { t: 'put', path: 'second.bin', size: 6 * MiB });
    assert.is(((await second.next(3)) as { code?: string }).code, 'quota_exceeded', 'now refused by what is stored');
    // A cancelled upload gives its space back.
    second.send(4, { t: 'put', path: 'small.bin', size: 3 * MiB, resume: true });
    assert.is((await second.next(4)).t, 'resume');
    first.send(3, { t: 'put', path: 'other.bin', size: 2 * MiB });
    assert.is(((await first.next(3)) as { code?: string }).code, 'quota_exceeded', '6 + 3 held + 2 > 10');
    second.send(4, { t: 'cancel' });
    assert.is(((await second.next(4)) as { code?: string }).code, 'cancelled');
    const other = randomBytes(2 * MiB);
    first.send(4, { t: 'put', path: 'other.bin', size: other.length });
    first.data(4, other);
    first.send(4, { t: 'end', sha256: sha256(other) });
    assert.is((await first.next(4)).t, 'ok', 'the cancelled upload released its 3 MiB');
  } finally {
    first.close();
    second.close();
  }
  assert.equal(await home('held'), ['first.bin', 'other.bin']);
});

e2e('an upload that sends more than it declared is cut off, leaves nothing, and gives its space back', async () => {
  await ok('liar', ['LIST'], true);
  const raw = await Raw.open(server.port, 'liar');
  try {
    raw.send(2, { t: 'put', path: 'liar.bin', size: 1000 });
    raw.data(2, randomBytes(5000));
    raw.send(2, { t: 'end', sha256: '0'.repeat(64) });
    const cut = (await raw.next(2)) as { t: string; code?: string };
    assert.equal([cut.t, cut.code], ['error', 'size_mismatch']);
    const whole = randomBytes(10 * MiB);
    raw.send(3, { t: 'put', path: 'whole.bin', size: whole.length });
    raw.data(3, whole);
    raw.send(3, { t: 'end', sha256: sha256(whole) });
    assert.is((await raw.next(3)).t, 'ok', 'the whole quota is free again');
  } finally {
    raw.close();
  }
  assert.equal(await home('liar'), ['whole.bin']);
  assert.equal(await partials('liar'), []);
});

e2e('LIST and STAT show usage against the quota', async () => {
  local('four.bin', 4 * MiB);
  const out = await ok('lister', ['UPLD four.bin', 'MKDIR sub', 'UPLD four.bin sub/again.bin', 'LIST', 'STAT four.bin'], true);
  const lines = out.split('\n').filter((l) => l.startsWith('Quota: '));
  assert.equal(lines, [
    'Quota: 8.00 MiB of 10.0 MiB used (8388608 of 10485760 bytes), 2 of 100 files',
    'Quota: 8.00 MiB of 10.0 MiB used (8388608 of 10485760 bytes), 2 of 100 files',
  ]);
});

e2e('after a delete the usage goes down and a previously refused upload fits', async () => {
  local('seven.bin', 7 * MiB);
  local('five.bin', 5 * MiB);
  await ok('deleter', ['UPLD seven.bin'], true);
  assert.match(await refused('deleter', ['UPLD five.bin']), /quota exceeded: 7 MiB of 10 MiB used, upload needs 5 MiB/);
  assert.equal(await partials('deleter'), []);
  const out = await ok('deleter', ['DELF seven.bin', 'LIST', 'UPLD five.bin', 'LIST']);
  const quotas = out.split('\n').filter((l) => l.startsWith('Quota: ')).map((l) => quotaLine(l));
  assert.equal(quotas, [
    [0, 10 * MiB, 0, 100],
    [5 * MiB, 10 * MiB, 1, 100],
  ]);
  assert.equal(await home('deleter'), ['five.bin']);
});

e2e('overwrites count only the difference; a rename over a file frees it', async () => {
  local('six.bin', 6 * MiB);
  local('eight.bin', 8 * MiB);
  local('three.bin', 3 * MiB);
  local('one.bin', 1 * MiB);
  await ok('writer', ['UPLD six.bin data.bin'], true);
  // 8 MiB over the 6 MiB file needs 2 MiB of the 4 MiB left.
  assert.equal(quotaLine(await ok('writer', ['UPLD eight.bin data.bin', 'LIST'])), [8 * MiB, 10 * MiB, 1, 100]);
  assert.match(await refused('writer', ['UPLD three.bin other.bin']), /quota exceeded: 8 MiB of 10 MiB used, upload needs 3 MiB/);
  // Back to 3 MiB by overwriting with a smaller file, then a rename over it frees its 3 MiB.
  const out = await ok('writer', ['UPLD three.bin data.bin', 'LIST', 'UPLD one.bin small.bin', 'RENAME small.bin data.bin -f', 'LIST']);
  const quotas = out.split('\n').filter((l) => l.startsWith('Quota: ')).map((l) => quotaLine(l));
  assert.equal(quotas, [
    [3 * MiB, 10 * MiB, 1, 100],
    [1 * MiB, 10 * MiB, 1, 100],
  ]);
  assert.equal(await home('writer'), ['data.bin']);
});

e2e('the file-count limit: a third file is refused, an overwrite is not, and a delete makes room', async () => {
  local('f1.txt', 10);
  local('f2.txt', 20);
  local('f3.txt', 30);
  await ok('counter', ['UPLD f1.txt', 'UPLD f2.txt'], true);
  assert.match(await refused('counter', ['UPLD f3.txt']), /quota exceeded: 2 of 2 files used, upload needs 1 more file/);
  const out = await ok('counter', ['UPLD f3.txt f1.txt', 'LIST']);
  assert.match(out, /^Quota: 50 B used \(50 bytes\), 2 of 2 files$/m, 'no byte limit for this user');
  await ok('counter', ['DELF f2.txt', 'UPLD f3.txt']);
  assert.equal(await home('counter'), ['f1.txt', 'f3.txt']);
});

e2e('a batch in bundles: the plugin is asked about each file, and the files past the limit are refused one by one', async () => {
  await ok('bundler', ['LIST'], true);
  const dir = join(work, 'many');
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < 150; i++) writeFileSync(join(dir, `f${String(i).padStart(3, '0')}.txt`), `file ${i}`);
  writeFileSync(
    join(work, 'many.yaml'),
    `server: 127.0.0.1:${server.port}\nfingerprint: ${server.fingerprint}\nuser: bundler\npassword: \${FERRY_PASSWORD}\nops:\n  - put: ./many\n    to: up/\n`,
  );
  const r = await runFerry(['batch', 'many.yaml', '--json'], { cwd: work, env: childEnv(server.home, { FERRY_PASSWORD: PASSWORD }) });
  assert.is(r.code, 1, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; code?: string });
  assert.is(events.filter((e) => e.event === 'done').length, 100, 'the 100 files the quota allows');
  assert.equal([...new Set(events.filter((e) => e.event === 'error').map((e) => e.code))], ['quota_exceeded']);
  assert.is(events.filter((e) => e.event === 'error').length, 50);
  assert.is((await listHome(server, 'bundler', 'up/many')).length, 100);
  assert.match(server.output(), /bundler\] UPLD 100 file\(s\) as one bundle/);
  assert.equal(await partials('bundler'), []);
});

e2e.run();

const restart = suite('quota usage across a server restart');

restart('usage is summed up again from disk after a restart (same data directory)', async () => {
  const root = tempDir('ferry-quota-restart-');
  const dir = join(root, 'data');
  const homeDir = tempDir('ferry-home-');
  try {
    writeFileSync(join(root, 'q.yaml'), CONFIG);
    writeFileSync(join(root, 'a.bin'), randomBytes(3 * MiB));
    writeFileSync(join(root, 'b.bin'), randomBytes(2 * MiB));
    writeFileSync(join(root, 'c.bin'), randomBytes(6 * MiB));
    const args = ['--config', join(root, 'q.yaml')];
    let s = await startServer({ dataDir: dir, home: homeDir, args });
    try {
      const r = await s.connect('keeper', PASSWORD, ['UPLD a.bin', 'MKDIR d', 'UPLD b.bin d/b.bin', 'UPLD a.bin d/gone.bin', 'DELF d/gone.bin', 'LIST'], { signup: true, cwd: root });
      assert.is(r.code, 0, r.stderr);
      assert.equal(quotaLine(r.stdout), [5 * MiB, 10 * MiB, 2, 100]);
    } finally {
      await s.stop();
    }
    s = await startServer({ dataDir: dir, home: homeDir, args });
    try {
      const r = await s.connect('keeper', PASSWORD, ['LIST d'], { cwd: root });
      assert.is(r.code, 0, r.stderr);
      assert.equal(quotaLine(r.stdout), [5 * MiB, 10 * MiB, 2, 100], 'the same usage as before the restart');
      const over = await s.connect('keeper', PASSWORD, ['UPLD c.bin'], { cwd: root });
      assert.is(over.code, 1);
      assert.match(over.stderr, /quota exceeded: 5 MiB of 10 MiB used, upload needs 6 MiB/);
      assert.match(s.output(), /\[plugin quota\] Usage of 'keeper': 5 MiB in 2 files/);
    } finally {
      await s.stop();
    }
  } finally {
    cleanup(root, homeDir);
  }
});

restart('a bad size in the config stops the server at start with a clear message', async () => {
  const root = tempDir('ferry-quota-bad-');
  const homeDir = tempDir('ferry-home-');
  try {
    writeFileSync(join(root, 'bad.yaml'), `plugins:\n  - name: quota\n    options:\n      users:\n        alice: { maxBytes: "10 MB?" }\n`);
    const r = await runFerry(['serve', '--host', '127.0.0.1', '--port', '0', '--data', join(root, 'data'), '--config', join(root, 'bad.yaml')], { env: childEnv(homeDir), timeoutMs: 20_000 });
    assert.is(r.code, 1, r.stdout);
    assert.match(r.stderr, /Plugin 'quota': invalid options: quota: users\.alice\.maxBytes: '10 MB\?' is not a size/);
  } finally {
    cleanup(root, homeDir);
  }
});

restart.run();
