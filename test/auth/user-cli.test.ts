import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { verifyPassword } from '../../src/auth/password.ts';
import { UserStore } from '../../src/auth/users.ts';

// `ferry user` as the CLI wrapper runs it: a separate process, stdin not a terminal, the error printed
// as one line with exit code 1.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMMAND_MODULE = pathToFileURL(join(ROOT, 'src/cli/user.ts')).href;

interface Context {
  dir: string;
  data: string;
  script: string;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(context: Context, args: string[], password?: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_SCRYPT_N: '1024', NO_COLOR: '1' };
  delete env['FERRY_PASSWORD'];
  if (password !== undefined) env['FERRY_PASSWORD'] = password;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', context.script, ...args], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `add NAME --admin --perms x` → runUserCommand('add', 'NAME', { data, admin, perms }). */
const WRAPPER = `import { runUserCommand } from ${JSON.stringify(COMMAND_MODULE)};
const [data, action, ...rest] = process.argv.slice(2);
const options: { data: string; admin?: boolean; perms?: string } = { data: data! };
let name: string | undefined;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--admin') options.admin = true;
  else if (rest[i] === '--perms') options.perms = rest[++i]!;
  else name = rest[i];
}
runUserCommand(action!, name, options).catch((error: Error) => {
  process.stderr.write('error: ' + error.message + '\\n');
  process.exitCode = 1;
});
`;

const cli = suite<Context>('ferry user', { dir: '', data: '', script: '' });

cli.before.each((context) => {
  context.dir = mkdtempSync(join(tmpdir(), 'ferry-user-cli-'));
  context.data = join(context.dir, 'data');
  context.script = join(context.dir, 'user.mts');
  writeFileSync(context.script, WRAPPER);
});
cli.after.each((context) => rmSync(context.dir, { recursive: true, force: true }));

cli('add creates a private data dir and a regular user; list shows name, role, perms, created', async (context) => {
  const added = await run(context, [context.data, 'add', 'alice'], 'correct horse');
  assert.is(added.code, 0, added.stderr);
  if (process.platform !== 'win32') assert.is(statSync(context.data).mode & 0o777, 0o700);
  const listed = await run(context, [context.data, 'list']);
  assert.is(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n');
  assert.is(lines.length, 1);
  assert.match(lines[0]!, /^alice\s+user\s+list,download,upload,overwrite,delete,rename,mkdir\s+\d{4}-\d\d-\d\dT/);
  const alice = await new UserStore(join(context.data, 'users.json')).get('alice');
  assert.is(await verifyPassword('correct horse', alice!.hash), true);
  assert.not.ok(listed.stdout.includes('scrypt'), 'list must not print hashes');
});

cli('add --admin makes an admin; --perms limits the permissions', async (context) => {
  assert.is((await run(context, [context.data, 'add', 'root', '--admin'], 'correct horse')).code, 0);
  assert.is((await run(context, [context.data, 'add', 'guest', '--perms', 'download,list'], 'correct horse')).code, 0);
  const listed = await run(context, [context.data, 'list']);
  const lines = listed.stdout.trim().split('\n');
  assert.match(lines[0]!, /^root\s+admin\s/);
  assert.match(lines[1]!, /^guest\s+user\s+list,download\s/);
});

cli('add of a taken name (in any case) fails and leaves the first user alone', async (context) => {
  await run(context, [context.data, 'add', 'alice'], 'correct horse');
  const again = await run(context, [context.data, 'add', 'ALICE'], 'other password');
  assert.is(again.code, 1);
  assert.match(again.stderr, /error: User name 'ALICE' is taken/);
  const alice = await new UserStore(join(context.data, 'users.json')).get('alice');
  assert.is(await verifyPassword('correct horse', alice!.hash), true);
});

cli('passwd changes the hash so only the new password works', async (context) => {
  await run(context, [context.data, 'add', 'alice'], 'correct horse');
  const store = new UserStore(join(context.data, 'users.json'));
  const before = (await store.get('alice'))!.hash;
  const changed = await run(context, [context.data, 'passwd', 'alice'], 'battery staple');
  assert.is(changed.code, 0, changed.stderr);
  const after = (await store.get('alice'))!.hash;
  assert.is.not(after, before);
  assert.is(await verifyPassword('battery staple', after), true);
  assert.is(await verifyPassword('correct horse', after), false);
});

cli('remove deletes the user; removing again fails clearly', async (context) => {
  await run(context, [context.data, 'add', 'alice'], 'correct horse');
  await run(context, [context.data, 'add', 'bob'], 'correct horse');
  assert.is((await run(context, [context.data, 'remove', 'alice'])).code, 0);
  const listed = await run(context, [context.data, 'list']);
  assert.equal(listed.stdout.trim().split('\n').map((line) => line.split(/\s+/)[0]), ['bob']);
  const again = await run(context, [context.data, 'remove', 'alice']);
  assert.is(again.code, 1);
  assert.match(again.stderr, /error: No user named 'alice'/);
});

cli('without FERRY_PASSWORD and without a terminal, add and passwd fail with a clear error', async (context) => {
  const added = await run(context, [context.data, 'add', 'alice']);
  assert.is(added.code, 1);
  assert.match(added.stderr, /error: .*Set FERRY_PASSWORD or run in a terminal/i);
  assert.not.ok(existsSync(join(context.data, 'users.json')));
  await run(context, [context.data, 'add', 'alice'], 'correct horse');
  const changed = await run(context, [context.data, 'passwd', 'alice']);
  assert.is(changed.code, 1);
  assert.match(changed.stderr, /Set FERRY_PASSWORD or run in a terminal/i);
});

cli('a weak password, a bad name, an unknown permission, a missing name or action each fail in one line', async (context) => {
  const cases: [string[], string | undefined, RegExp][] = [
    [['add', 'alice'], 'short', /Password must be 8 to 1024 characters/],
    [['add', '../x'], 'correct horse', /User name must be 1-32 letters/],
    [['add', 'alice', '--perms', 'list,fly'], 'correct horse', /Unknown permission 'fly'/],
    [['add'], 'correct horse', /Missing user name/],
    [['frobnicate', 'alice'], 'correct horse', /Unknown user action 'frobnicate': use add, remove, list, passwd/],
  ];
  for (const [args, password, message] of cases) {
    const result = await run(context, [context.data, ...args], password);
    assert.is(result.code, 1, args.join(' '));
    assert.match(result.stderr, message);
    assert.is(result.stderr.trim().split('\n').length, 1, result.stderr);
  }
  assert.not.ok(existsSync(join(context.data, 'users.json')));
});

cli('list of an empty data dir says there are no users', async (context) => {
  const listed = await run(context, [context.data, 'list']);
  assert.is(listed.code, 0);
  assert.is(listed.stdout.includes('alice'), false);
  assert.match(listed.stdout + listed.stderr, /No users/);
});

cli.run();
