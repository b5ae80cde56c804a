/**
 * The bundle step of `npm run build` (scripts/build.mjs --bundle-only), checked in every `npm test` without
 * making the 120 MiB executable: esbuild bundles, nothing outside Node's built-ins is left to load, and the
 * CommonJS file runs the CLI the same as the source, including the lazily loaded command modules.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, cleanup, tempDir } from '../e2e/harness.ts';

const bundle = suite('esbuild bundle (the executable\'s main script)');
let dir = '';
let file = '';
let built: ReturnType<typeof spawnSync> | undefined;

const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
const env = { ...process.env, NO_COLOR: '1', FERRY_HOME: '' };

function runBundle(args: string[], cwd = dir) {
  return spawnSync(process.execPath, [file, ...args], { cwd, encoding: 'utf8', env: { ...env, FERRY_HOME: dir }, timeout: 30_000 });
}

bundle.before(() => {
  dir = tempDir('ferry-bundle-');
  file = join(dir, 'ferry.cjs');
  built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), '--bundle-only', '--out', file], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
});
bundle.after(() => cleanup(dir));

bundle('esbuild bundles src/main.ts into one CommonJS file that requires only node: built-ins', () => {
  assert.is(built?.status, 0, `${built?.stdout}${built?.stderr}`);
  const text = readFileSync(file, 'utf8');
  // (Not a `[require("...")]` written inside a message: the AWS SDK's error text for an optional package names one so.)
  const required = new Set([...text.matchAll(/(?<!\[)\brequire\("([^"]+)"\)/g)].map((m) => m[1] as string));
  assert.ok(required.size > 5, 'the bundle requires built-ins by name');
  for (const id of required) assert.ok(isBuiltin(id), `the bundle requires '${id}', which a single executable cannot load`);
});

bundle('the bundle prints the same --version and --help as the source', () => {
  const source = (args: string[]) => spawnSync(process.execPath, ['--import', TSX, join(ROOT, 'src', 'main.ts'), ...args], { cwd: ROOT, encoding: 'utf8', env });
  for (const args of [['--version'], ['--help'], ['user', '--help']]) {
    const b = runBundle(args);
    const s = source(args);
    assert.is(b.status, 0, b.stderr);
    assert.is(b.stdout, s.stdout, `ferry ${args.join(' ')}`);
    assert.is(b.stderr, '');
  }
});

bundle('the lazily imported command modules are inside the bundle (user list runs with no node_modules)', () => {
  const r = runBundle(['user', 'list', '--data', join(dir, 'data')]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /No users/);
});

bundle('no import.meta.url is left empty (fdir, under tinyglobby, calls createRequire with it when it loads)', () => {
  const text = readFileSync(file, 'utf8');
  assert.not.match(text, /\bimport_meta\d*\.url\b/, 'an import.meta.url left empty');
  assert.ok(text.startsWith('"use strict";\n'), 'the banner keeps the bundle in strict mode');
});

bundle('the executable and every way of running the source use the same V8 flags', async () => {
  const { V8_FLAGS, seaConfig } = (await import(join(ROOT, 'scripts', 'build.mjs'))) as {
    V8_FLAGS: string[];
    seaConfig: (o: { main: string; workDir: string }) => { sea: { execArgv?: string[] } };
  };
  assert.ok(V8_FLAGS.length > 0);
  assert.equal(seaConfig({ main: file, workDir: dir }).sea.execArgv, V8_FLAGS, 'sea-config.json');
  const flags = V8_FLAGS.join(' ');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const script of ['serve', 'ferry']) assert.ok(pkg.scripts[script]?.includes(`node ${flags} `), `npm run ${script}: ${pkg.scripts[script]}`);
  assert.ok(readFileSync(join(ROOT, 'bin', 'ferry.mjs'), 'utf8').startsWith(`#!/usr/bin/env -S node ${flags}\n`), 'bin/ferry.mjs');
  const deno = JSON.parse(readFileSync(join(ROOT, 'deno.json'), 'utf8')) as { tasks: Record<string, string> };
  for (const task of ['ferry', 'serve']) assert.ok(deno.tasks[task]?.includes(`--v8-flags=${V8_FLAGS.join(',')}`), `deno task ${task}`);
  assert.ok(readFileSync(join(ROOT, 'scripts', 'ferry-deno.sh'), 'utf8').includes(`--v8-flags=${V8_FLAGS.join(',')}`), 'scripts/ferry-deno.sh');
});

bundle.run();
