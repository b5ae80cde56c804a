import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KnownHosts, ferryHome, hostKey } from '../../src/client/known-hosts.ts';

const isPosix = process.platform !== 'win32';
const A = 'SHA256:' + 'A'.repeat(43);
const B = 'SHA256:' + 'b+/9'.repeat(10) + 'xyz';
const C = 'SHA256:' + 'C'.repeat(43);

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-known-'));
}

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(saved);
  }
}

// ---------------------------------------------------------------------------------------------------------
const home = suite('ferryHome');

home('FERRY_HOME wins, then an absolute XDG_CONFIG_HOME, then ~/.config/ferry', () => {
  assert.is(withEnv({ FERRY_HOME: '/opt/ferry-home', XDG_CONFIG_HOME: '/xdg' }, ferryHome), '/opt/ferry-home');
  assert.is(withEnv({ FERRY_HOME: undefined, XDG_CONFIG_HOME: '/xdg' }, ferryHome), join('/xdg', 'ferry'));
  if (isPosix) {
    assert.is(withEnv({ FERRY_HOME: undefined, XDG_CONFIG_HOME: undefined }, ferryHome), join(homedir(), '.config', 'ferry'));
    assert.is(withEnv({ FERRY_HOME: '', XDG_CONFIG_HOME: 'relative' }, ferryHome), join(homedir(), '.config', 'ferry'));
  }
});

home('the default known_hosts file follows FERRY_HOME', async () => {
  const dir = await tempDir();
  try {
    const known = withEnv({ FERRY_HOME: join(dir, 'fh') }, () => new KnownHosts());
    assert.is(known.file, join(dir, 'fh', 'known_hosts'));
    await known.remember('example.org', 2121, A);
    assert.is(await readFile(join(dir, 'fh', 'known_hosts'), 'utf8'), `example.org:2121 ${A}\n`);
    if (isPosix) {
      assert.is((await stat(join(dir, 'fh'))).mode & 0o777, 0o700);
      assert.is((await stat(join(dir, 'fh', 'known_hosts'))).mode & 0o777, 0o600);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

home.run();

// ---------------------------------------------------------------------------------------------------------
const known = suite('KnownHosts');

known('remember then lookup; unknown hosts and missing files give null', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'cfg', 'known_hosts');
    const hosts = new KnownHosts(file);
    assert.is(await hosts.lookup('example.org', 2121), null);
    await hosts.remember('example.org', 2121, A);
    await hosts.remember('other.example', 22, B);
    assert.equal(await hosts.lookup('example.org', 2121), { fingerprint: A, ca: false });
    assert.equal(await hosts.lookup('EXAMPLE.org', 2121), { fingerprint: A, ca: false }, 'host names are case-insensitive');
    assert.equal(await hosts.lookup('other.example', 22), { fingerprint: B, ca: false });
    assert.is(await hosts.lookup('example.org', 2122), null, 'the port is part of the key');
    assert.equal(await new KnownHosts(file).lookup('other.example', 22), { fingerprint: B, ca: false }, 'a fresh reader sees it');
    assert.equal(await readdir(join(dir, 'cfg')), ['known_hosts'], 'no temporary files left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('remember replaces the line for the same host:port in place', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'known_hosts');
    const hosts = new KnownHosts(file);
    await hosts.remember('a.example', 1, A);
    await hosts.remember('b.example', 2, B);
    await hosts.remember('a.example', 1, C);
    assert.equal(await hosts.lookup('a.example', 1), { fingerprint: C, ca: false });
    assert.is(await readFile(file, 'utf8'), `a.example:1 ${C}\nb.example:2 ${B}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('IPv6 addresses are stored bracketed and in canonical form', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'known_hosts');
    const hosts = new KnownHosts(file);
    await hosts.remember('::1', 2121, A);
    await hosts.remember('[2001:DB8:0:0:0:0:0:1]', 2121, B);
    assert.is(await readFile(file, 'utf8'), `[::1]:2121 ${A}\n[2001:db8::1]:2121 ${B}\n`);
    assert.equal(await hosts.lookup('[::1]', 2121), { fingerprint: A, ca: false });
    assert.equal(await hosts.lookup('0:0:0:0:0:0:0:1', 2121), { fingerprint: A, ca: false });
    assert.equal(await hosts.lookup('2001:db8::1', 2121), { fingerprint: B, ca: false });
    assert.is(hostKey('127.0.0.1', 80), '127.0.0.1:80');
    assert.throws(() => hostKey('a b', 1), /Invalid host/);
    assert.throws(() => hostKey('host:22', 1), /Invalid host/);
    assert.throws(() => hostKey('x', 0), /Invalid port/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('forget removes the host and says whether it was there', async () => {
  const dir = await tempDir();
  try {
    const hosts = new KnownHosts(join(dir, 'known_hosts'));
    await hosts.remember('a.example', 1, A);
    await hosts.remember('b.example', 2, B);
    assert.is(await hosts.forget('a.example', 1), true);
    assert.is(await hosts.forget('a.example', 1), false);
    assert.is(await hosts.lookup('a.example', 1), null);
    assert.equal(await hosts.lookup('b.example', 2), { fingerprint: B, ca: false });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('comments, blank lines and malformed lines are tolerated and kept', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'known_hosts');
    await writeFile(
      file,
      [
        '# servers I trust',
        '',
        'garbage without a fingerprint',
        `a.example:1 ${A}`,
        `bad.example:notaport ${A}`,
        `c.example:3 SHA256:tooshort`,
        '   # indented comment',
        `b.example:2 ${B}   `,
      ].join('\r\n') + '\r\n',
    );
    const hosts = new KnownHosts(file);
    assert.equal(await hosts.lookup('a.example', 1), { fingerprint: A, ca: false });
    assert.equal(await hosts.lookup('b.example', 2), { fingerprint: B, ca: false });
    assert.is(await hosts.lookup('c.example', 3), null);
    await hosts.remember('a.example', 1, C);
    await hosts.remember('d.example', 4, A);
    const text = await readFile(file, 'utf8');
    assert.is(
      text,
      [
        '# servers I trust',
        '',
        'garbage without a fingerprint',
        `a.example:1 ${C}`,
        `bad.example:notaport ${A}`,
        `c.example:3 SHA256:tooshort`,
        '   # indented comment',
        `b.example:2 ${B}   `,
        `d.example:4 ${A}`,
      ].join('\n') + '\n',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('the ca marker: written as a third field, read back, dropped and added again; two-field lines read as before', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'known_hosts');
    // Lines as an older version wrote them, a marked one, and third fields that are not the marker (unreadable, kept).
    await writeFile(file, [`old.example:1 ${A}`, `new.example:2 ${B} ca`, `odd.example:3 ${C} CA`, `more.example:4 ${C} ca extra`].join('\n') + '\n');
    const hosts = new KnownHosts(file);
    assert.equal(await hosts.lookup('old.example', 1), { fingerprint: A, ca: false });
    assert.equal(await hosts.lookup('new.example', 2), { fingerprint: B, ca: true });
    assert.is(await hosts.lookup('odd.example', 3), null, 'only the lower-case word ca is the marker');
    assert.is(await hosts.lookup('more.example', 4), null, 'nothing may follow the marker');
    await hosts.remember('old.example', 1, A, { ca: true });
    await hosts.remember('new.example', 2, C);
    await hosts.remember('added.example', 5, B, { ca: true });
    assert.equal(await hosts.lookup('old.example', 1), { fingerprint: A, ca: true });
    assert.equal(await hosts.lookup('new.example', 2), { fingerprint: C, ca: false });
    assert.is(
      await readFile(file, 'utf8'),
      [`old.example:1 ${A} ca`, `new.example:2 ${C}`, `odd.example:3 ${C} CA`, `more.example:4 ${C} ca extra`, `added.example:5 ${B} ca`].join('\n') + '\n',
    );
    if (isPosix) assert.is((await stat(file)).mode & 0o777, 0o600, 'the rewrite keeps the mode');
    assert.equal(await readdir(dir), ['known_hosts'], 'no temporary files left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known('concurrent remembers from one object are all kept; bad input is refused', async () => {
  const dir = await tempDir();
  try {
    await mkdir(join(dir, 'x'));
    const hosts = new KnownHosts(join(dir, 'x', 'known_hosts'));
    await Promise.all(Array.from({ length: 20 }, (_, i) => hosts.remember(`h${i}.example`, 2121, i % 2 ? A : B)));
    for (let i = 0; i < 20; i++) assert.equal(await hosts.lookup(`h${i}.example`, 2121), { fingerprint: i % 2 ? A : B, ca: false });
    await hosts.remember('h0.example', 2121, C).then(() => {});
    try {
      await hosts.remember('h1.example', 2121, 'SHA256:nope');
      assert.unreachable('accepted a bad fingerprint');
    } catch (err) {
      assert.match((err as Error).message, /Invalid fingerprint/);
    }
    try {
      await hosts.remember('bad host', 2121, A);
      assert.unreachable('accepted a bad host');
    } catch (err) {
      assert.match((err as Error).message, /Invalid host/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

known.run();
