import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir } from './harness.ts';

const plugins = suite('user plugins loaded by path');
let dir: string;

plugins.before(() => {
  dir = tempDir('ferry-plugins-');
  writeFileSync(
    join(dir, 'no-exe.mjs'),
    `export default {
  name: 'no-exe',
  setup(ctx) { ctx.log.info('ready with ' + JSON.stringify(ctx.options)); },
  hooks: {
    'upload:before': (op) => op.path.toLowerCase().endsWith('.exe') ? { deny: 'denied', message: 'Executables are not accepted here: ' + op.path } : undefined,
  },
};
`,
  );
  writeFileSync(join(dir, 'thrower.mjs'), `export default { name: 'thrower', hooks: { 'mkdir:before': () => { throw new Error('kaboom'); } } };\n`);
  writeFileSync(join(dir, 'app.exe'), 'MZ...');
  writeFileSync(join(dir, 'notes.txt'), 'fine');
  writeFileSync(join(dir, 'ferry.config.yaml'), `plugins:\n  - path: ./no-exe.mjs\n    options: { greeting: hi }\n  - ./thrower.mjs\n`);
});
plugins.after(() => cleanup(dir));

plugins('a user plugin from a config file vetoes uploads of *.exe; other uploads go through', async () => {
  const server = await startServer({ args: ['--config', join(dir, 'ferry.config.yaml')] });
  try {
    assert.match(server.output(), /plugins: no-exe, thrower/);
    assert.match(server.output(), /\[plugin no-exe\] ready with \{"greeting":"hi"\}/);
    const ok = await server.connect('pluggy', 'password1', ['UPLD notes.txt'], { signup: true, cwd: dir });
    assert.is(ok.code, 0, ok.stderr);
    const refused = await server.connect('pluggy', 'password1', ['UPLD app.exe'], { cwd: dir });
    assert.is(refused.code, 1);
    assert.match(refused.stderr, /Executables are not accepted here: app\.exe/);
    const list = await server.connect('pluggy', 'password1', ['LIST']);
    assert.not.match(list.stdout, /app\.exe/);
    const events = readFileSync(join(server.dataDir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const refusal = events.find((e) => e.event === 'upload' && e.path === 'app.exe');
    assert.ok(refusal, 'the refused upload is in the audit log');
    assert.is(refusal.result, 'error');
    assert.is(refusal.error, 'denied');
  } finally {
    await server.dispose();
  }
});

plugins('a plugin that throws is reported by name, refuses the operation, and the server keeps serving', async () => {
  const server = await startServer({ args: ['--plugin', join(dir, 'thrower.mjs')] });
  try {
    const r = await server.connect('pluggy', 'password1', ['MKDIR x'], { signup: true });
    assert.is(r.code, 1);
    assert.match(r.stderr, /Plugin 'thrower' failed in hook 'mkdir:before': kaboom/);
    assert.match(server.output(), /\[plugin plugins\] Plugin 'thrower' failed in hook 'mkdir:before': kaboom/);
    const after = await server.connect('pluggy', 'password1', ['LIST']);
    assert.is(after.code, 0, after.stderr);
  } finally {
    await server.dispose();
  }
});

plugins('bad plugin configuration stops the server at start with one clear error', async () => {
  const home = tempDir('ferry-home-');
  const data = join(dir, 'data-bad');
  try {
    const cases: Array<[string[], RegExp]> = [
      [['--plugin', 'nosuch'], /Unknown plugin 'nosuch'/],
      [['--plugin', join(dir, 'missing.mjs')], /Cannot load plugin '.*missing\.mjs': no such file/],
    ];
    writeFileSync(join(dir, 'bad.yaml'), `plugins:\n  - path: ./no-exe.mjs\n    optons: {}\nport: high\n`);
    cases.push([['--config', join(dir, 'bad.yaml')], /bad\.yaml:3: plugins\[0\]\.optons: unknown field[\s\S]*bad\.yaml:4: port: must be a whole number/]);
    for (const [args, pattern] of cases) {
      const r = await runFerry(['serve', '--port', '0', '--host', '127.0.0.1', '--data', data, ...args], { env: childEnv(home), timeoutMs: 15_000 });
      assert.is(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, pattern);
    }
  } finally {
    cleanup(home);
  }
});

plugins.run();
