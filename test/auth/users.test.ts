import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FerryError } from '../../src/core/errors.ts';
import { verifyPassword } from '../../src/auth/password.ts';
import { PERMISSIONS } from '../../src/auth/types.ts';
import { UserStore, validateUsername } from '../../src/auth/users.ts';
import { skip } from '../skip.ts';

process.env['FERRY_SCRYPT_N'] = '1024';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STORE_MODULE = pathToFileURL(join(ROOT, 'src/auth/users.ts')).href;

interface Context {
  dir: string;
  file: string;
}

function tempContext(context: Context): void {
  context.dir = mkdtempSync(join(tmpdir(), 'ferry-users-'));
  context.file = join(context.dir, 'users.json');
}

function cleanup(context: Context): void {
  rmSync(context.dir, { recursive: true, force: true });
}

async function rejects(promise: Promise<unknown>, code: string): Promise<FerryError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, FerryError, `expected FerryError ${code}, got ${String(error)}`);
    assert.is((error as FerryError).code, code);
    return error as FerryError;
  }
  assert.unreachable(`expected a ${code} rejection`);
  throw new Error('unreachable');
}

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', '']);
    child.on('error', reject);
    child.on('exit', () => resolve(child.pid!));
  });
}

// --- basic operations ----------------------------------------------------------------------------

const basics = suite<Context>('user store', { dir: '', file: '' });
basics.before.each(tempContext);
basics.after.each(cleanup);

basics('a missing file means no users', async ({ file }) => {
  const store = new UserStore(file);
  assert.is(await store.get('alice'), null);
  assert.equal(await store.list(), []);
});

basics('an added user can be read back and its password verifies', async ({ file }) => {
  const store = new UserStore(file);
  const added = await store.add('alice', 'correct horse');
  assert.is(added.name, 'alice');
  const alice = await store.get('alice');
  assert.ok(alice);
  assert.is(alice.name, 'alice');
  assert.ok(!Number.isNaN(Date.parse(alice.created)));
  assert.is(await verifyPassword('correct horse', alice.hash), true);
  assert.not.ok(readFileSync(file, 'utf8').includes('correct horse'), 'clear password on disk');
});

basics('a new user is a regular user with every permission unless told otherwise', async ({ file }) => {
  const store = new UserStore(file);
  const first = await store.add('first', 'correct horse');
  assert.is(first.role, 'user', 'the first user must not become admin');
  assert.equal(first.perms, [...PERMISSIONS]);
  const reader = await store.add('reader', 'correct horse', { perms: ['download', 'list', 'list'] });
  assert.equal(reader.perms, ['list', 'download']);
  const boss = await store.add('boss', 'correct horse', { role: 'admin' });
  assert.is(boss.role, 'admin');
  assert.equal((await store.list()).map((u) => [u.name, u.role]), [['first', 'user'], ['reader', 'user'], ['boss', 'admin']]);
});

basics('an unknown permission is refused', async ({ file }) => {
  const store = new UserStore(file);
  try {
    await store.add('alice', 'correct horse', { perms: ['list', 'fly' as never] });
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /Unknown permission 'fly'/);
  }
  assert.is(await store.get('alice'), null);
});

basics('names are unique ignoring case, and found ignoring case', async ({ file }) => {
  const store = new UserStore(file);
  await store.add('Alice', 'correct horse');
  await rejects(store.add('alice', 'other password'), 'user_exists');
  await rejects(store.add('ALICE', 'other password'), 'user_exists');
  assert.is((await store.get('aLiCe'))?.name, 'Alice');
  assert.is((await store.list()).length, 1);
});

basics('remove deletes the user; removing an unknown user is not_found', async ({ file }) => {
  const store = new UserStore(file);
  await store.add('alice', 'correct horse');
  await store.add('bob', 'correct horse');
  await store.remove('ALICE');
  assert.is(await store.get('alice'), null);
  assert.equal((await store.list()).map((u) => u.name), ['bob']);
  await rejects(store.remove('alice'), 'not_found');
});

basics('setPassword replaces the hash: the old password stops working', async ({ file }) => {
  const store = new UserStore(file);
  const before = await store.add('alice', 'old password');
  const after = await store.setPassword('alice', 'new password');
  assert.is.not(after.hash, before.hash);
  const stored = await store.get('alice');
  assert.is(await verifyPassword('new password', stored!.hash), true);
  assert.is(await verifyPassword('old password', stored!.hash), false);
  await rejects(store.setPassword('alice', 'short'), 'weak_password');
  await rejects(store.setPassword('nobody', 'new password'), 'not_found');
});

basics('setPerms and setRole change only what they say', async ({ file }) => {
  const store = new UserStore(file);
  const before = await store.add('alice', 'correct horse');
  await store.setPerms('alice', ['upload']);
  await store.setRole('alice', 'admin');
  const after = await store.get('alice');
  assert.equal(after, { ...before, perms: ['upload'], role: 'admin' });
  await rejects(store.setPerms('nobody', ['list']), 'not_found');
  await rejects(store.setRole('nobody', 'user'), 'not_found');
});

basics('a weak password is refused and nothing is written', async ({ file }) => {
  const store = new UserStore(file);
  await rejects(store.add('alice', 'short'), 'weak_password');
  assert.equal(readdirSync(join(file, '..')), []);
});

basics('the users file is written with mode 0600 and no temp or lock file is left', async ({ dir, file }) => {
  if (process.platform === 'win32') return skip('POSIX file modes (not on Windows)');
  const store = new UserStore(file);
  await store.add('alice', 'correct horse');
  assert.is(statSync(file).mode & 0o777, 0o600);
  await store.setRole('alice', 'admin');
  assert.is(statSync(file).mode & 0o777, 0o600);
  assert.equal(readdirSync(dir), ['users.json']);
  const content = JSON.parse(readFileSync(file, 'utf8'));
  assert.is(content.version, 1);
  assert.is(content.users.length, 1);
});

basics('a change made through another store (as by `ferry user`) is seen by a running one', async ({ file }) => {
  const server = new UserStore(file);
  const offline = new UserStore(file);
  await server.add('alice', 'correct horse');
  assert.is(await server.get('bob'), null);
  await offline.add('bob', 'correct horse');
  assert.ok(await server.get('bob'));
  await offline.setPerms('bob', ['list']);
  assert.equal((await server.get('bob'))?.perms, ['list']);
  await offline.remove('alice');
  assert.is(await server.get('alice'), null);
});

basics('a record handed out cannot change the store behind its back', async ({ file }) => {
  const store = new UserStore(file);
  await store.add('alice', 'correct horse', { perms: ['list'] });
  const copy = await store.get('alice');
  copy!.perms.push('delete');
  copy!.role = 'admin';
  const again = await store.get('alice');
  assert.equal(again?.perms, ['list']);
  assert.is(again?.role, 'user');
});

basics.run();

// --- names ---------------------------------------------------------------------------------------

const names = suite<Context>('user names', { dir: '', file: '' });
names.before.each(tempContext);
names.after.each(cleanup);

const BAD_NAMES = ['', 'a'.repeat(33), '../x', 'a/b', 'a b', 'a\0b', '.', '..', '.hidden', '-rf', 'a\\b', 'é', 'a\nb', 'ａdmin'];

names('invalid names are refused by validateUsername with invalid_username', () => {
  for (const name of BAD_NAMES) {
    assert.throws(
      () => validateUsername(name),
      (e: unknown) => e instanceof FerryError && e.code === 'invalid_username' && /1-32 letters/.test(e.message),
      JSON.stringify(name),
    );
  }
});

names('invalid names are refused by add and nothing is written', async ({ file }) => {
  const store = new UserStore(file);
  for (const name of BAD_NAMES) await rejects(store.add(name, 'correct horse'), 'invalid_username');
  assert.equal(await store.list(), []);
});

names('valid names of 1 to 32 characters are accepted', async ({ file }) => {
  const store = new UserStore(file);
  for (const name of ['a', '_', '0', 'a'.repeat(32), 'alice.b-c_d', 'A9']) await store.add(name, 'correct horse');
  assert.is((await store.list()).length, 6);
});

names.run();

// --- files and locks -----------------------------------------------------------------------------

const files = suite<Context>('user file safety', { dir: '', file: '' });
files.before.each(tempContext);
files.after.each(cleanup);

files('a corrupt file raises an error naming the file, and is left untouched', async ({ file }) => {
  const corrupt = '{"version":1,"users":[{"name":"alice"';
  writeFileSync(file, corrupt, { mode: 0o600 });
  const store = new UserStore(file);
  for (const attempt of [() => store.get('alice'), () => store.list(), () => store.add('bob', 'correct horse')]) {
    try {
      await attempt();
      assert.unreachable('a corrupt file was accepted');
    } catch (error) {
      assert.not.instance(error, assert.Assertion);
      assert.ok((error as Error).message.includes(file), (error as Error).message);
      assert.match((error as Error).message, /not valid JSON/);
    }
  }
  assert.is(readFileSync(file, 'utf8'), corrupt);
});

files('a file of the wrong shape is refused too', async ({ file }) => {
  const store = new UserStore(file);
  const shapes = [
    '[]',
    '{"version":2,"users":[]}',
    '{"version":1}',
    '{"version":1,"users":[{"name":"a","role":"root","perms":[],"hash":"x","created":"t"}]}',
    '{"version":1,"users":[{"name":"a","role":"user","perms":["fly"],"hash":"x","created":"t"}]}',
    '{"version":1,"users":[{"name":"a","role":"user","perms":[],"hash":"x","created":"t"},{"name":"A","role":"user","perms":[],"hash":"x","created":"t"}]}',
  ];
  for (const text of shapes) {
    writeFileSync(file, text);
    try {
      await store.list();
      assert.unreachable(text);
    } catch (error) {
      assert.not.instance(error, assert.Assertion, text);
      assert.ok((error as Error).message.includes(file));
    }
    assert.is(readFileSync(file, 'utf8'), text);
  }
});

files('20 concurrent adds of the same name in one process: exactly one wins', async ({ file }) => {
  const store = new UserStore(file);
  const other = new UserStore(file);
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).add(i % 3 ? 'carol' : 'CAROL', `password ${i}`)),
  );
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.is(won.length, 1);
  assert.is(lost.length, 19);
  for (const r of lost) assert.is((r.reason as FerryError).code, 'user_exists');
  assert.is((await store.list()).length, 1);
});

files('concurrent adds of different names in one process all land', async ({ file }) => {
  const stores = [new UserStore(file), new UserStore(file)];
  await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % 2]!.add(`user${i}`, 'correct horse')));
  assert.is((await new UserStore(file).list()).length, 12);
});

files('two processes adding the same name at once: exactly one wins', async ({ dir, file }) => {
  const script = join(dir, 'add.mts');
  writeFileSync(
    script,
    `import { UserStore } from ${JSON.stringify(STORE_MODULE)};
const store = new UserStore(process.argv[2]!);
process.stdout.write('ready\\n');
process.stdin.once('data', async () => {
  try {
    await store.add('dave', process.argv[3]!);
    process.stdout.write('result ok\\n');
  } catch (error) {
    process.stdout.write('result ' + ((error as { code?: string }).code ?? String(error)) + '\\n');
  }
  process.exit(0);
});
`,
  );
  const children = [1, 2].map((n) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, file, `password number ${n}`], {
      cwd: ROOT,
      env: { ...process.env, FERRY_SCRYPT_N: '1024' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('ready')) resolve();
      });
      child.on('exit', () => reject(new Error('child exited before ready')));
    });
    const done = new Promise<string>((resolve) => child.on('exit', () => resolve(/result (\S+)/.exec(out)?.[1] ?? out)));
    return { child, ready, done };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  const results = (await Promise.all(children.map((c) => c.done))).sort();
  assert.equal(results, ['ok', 'user_exists']);
  assert.equal((await new UserStore(file).list()).map((u) => u.name), ['dave']);
});

files('a stale lock left by a dead process is taken over', async ({ file }) => {
  const lock = `${file}.lock`;
  writeFileSync(lock, JSON.stringify({ pid: await deadPid(), time: Date.now(), nonce: 'dead' }));
  const store = new UserStore(file, { lockTimeoutMs: 2_000 });
  await store.add('erin', 'correct horse');
  assert.ok(await store.get('erin'));
  assert.throws(() => statSync(lock), /ENOENT/);
});

files('a lock older than 30 s is taken over even if its process seems alive', async ({ file }) => {
  const lock = `${file}.lock`;
  writeFileSync(lock, JSON.stringify({ pid: process.pid, time: Date.now() - 60_000, nonce: 'old' }));
  const store = new UserStore(file, { lockTimeoutMs: 2_000 });
  await store.add('erin', 'correct horse');
  assert.ok(await store.get('erin'));
});

files('a fresh lock held by a live process makes a change wait, then fail with busy', async ({ file }) => {
  const lock = `${file}.lock`;
  const held = JSON.stringify({ pid: process.pid, time: Date.now(), nonce: 'live' });
  writeFileSync(lock, held);
  const store = new UserStore(file, { lockTimeoutMs: 300 });
  const started = Date.now();
  await rejects(store.add('erin', 'correct horse'), 'busy');
  assert.ok(Date.now() - started >= 300);
  assert.is(readFileSync(lock, 'utf8'), held, 'the live lock must not be removed');
  assert.is(await store.get('erin'), null);
});

files('a change goes ahead once a live lock is released', async ({ file }) => {
  const lock = `${file}.lock`;
  writeFileSync(lock, JSON.stringify({ pid: process.pid, time: Date.now(), nonce: 'live' }));
  setTimeout(() => rmSync(lock), 200);
  await new UserStore(file, { lockTimeoutMs: 5_000 }).add('erin', 'correct horse');
  assert.ok(await new UserStore(file).get('erin'));
});

files.run();
