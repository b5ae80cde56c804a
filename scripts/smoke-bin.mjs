#!/usr/bin/env node
// Smoke test of the single executable: copies it (argument, FERRY_BIN, or dist/ferry) alone into an empty
// directory and runs it there with no node or deno on PATH: --version, --help (the same as the source's),
// every command's help, NODE_OPTIONS ignored, `user`, `serve` with the bundled plugin and user plugin files
// (ESM, CommonJS, and one with its own node_modules), `connect` with verified transfers, no SEA warning.
// Usage: node scripts/smoke-bin.mjs [path/to/ferry]     (npm run smoke:bin). Last line: `N passed, N failed`.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync, readSync, readdirSync, closeSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checks, cleanup, connect, env, expect, pathWithoutRuntimes, PKG, randomFile, ROOT, run, serve, sha256, tempDir, warned } from './smoke-lib.mjs';

const source = resolve(process.argv[2] ?? process.env.FERRY_BIN ?? join(ROOT, 'dist', 'ferry'));
const bare = tempDir('ferry-smoke-bin-');
const work = tempDir('ferry-smoke-work-');
const home = join(work, 'home');
const exe = join(bare, 'ferry');
const ferry = { name: 'dist/ferry', argv: [exe] };
const PATH = pathWithoutRuntimes();
const results = [];
const { check, done } = checks(`smoke: the single executable (${source}), copied alone to ${bare}, PATH without node or deno`);

/** Runs the copied executable from an empty working directory with the stripped PATH. */
async function bin(args, options = {}) {
  const r = await run(ferry, args, { cwd: options.cwd ?? work, input: options.input ?? '', env: { ...env(home, options.extra ?? {}), PATH, ...(options.env ?? {}) } });
  results.push({ args, ...r });
  return r;
}

try {
  await check('an x86-64 ELF executable, alone in an empty directory', async () => {
    copyFileSync(source, exe);
    const fd = openSync(exe, 'r');
    const head = Buffer.alloc(20);
    readSync(fd, head, 0, 20, 0);
    closeSync(fd);
    expect(head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])) && head.readUInt16LE(18) === 0x3e, 'not an x86-64 ELF file');
    expect(readdirSync(bare).join() === 'ferry', `the directory holds ${readdirSync(bare).join(', ')}`);
    const which = spawnSync('/bin/sh', ['-c', 'command -v node || command -v deno'], { env: { PATH }, encoding: 'utf8' });
    expect(which.status !== 0 && which.stdout.trim() === '', `node or deno is still on PATH (${PATH}): ${which.stdout}${which.stderr}`);
  });

  await check(`--version: ferry/${PKG.version} on the embedded Node 24, even with an empty PATH`, async () => {
    const r = await bin(['--version']);
    expect(r.code === 0 && new RegExp(`^ferry/${PKG.version.replace(/\./g, '\\.')} linux-x64 node-v24\\.`).test(r.stdout) && r.stderr === '', 'unexpected --version', r);
    const empty = await run(ferry, ['--version'], { cwd: work, env: { PATH: '' } });
    expect(empty.code === 0 && empty.stdout === r.stdout, 'does not run with an empty PATH and environment', empty);
  });

  let commands = [];
  await check('--help is the same as the source\'s and lists serve, connect, user', async () => {
    const r = await bin(['--help']);
    const tsx = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
    const src = spawnSync(process.execPath, ['--import', tsx, join(ROOT, 'src', 'main.ts'), '--help'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(r.code === 0, '--help failed', r);
    expect(src.status === 0 && r.stdout === src.stdout, `--help differs from the source's:\n--- source\n${src.stdout}\n--- executable\n${r.stdout}`);
    commands = [...r.stdout.matchAll(/^ {2}([a-z][\w-]*)\b.*$/gm)].map((m) => m[1]).filter((c) => c !== 'ferry');
    for (const c of ['serve', 'connect', 'user']) expect(commands.includes(c), `--help does not list ${c}`, r);
  });

  await check('every command\'s --help (the lazily loaded modules are in the bundle)', async () => {
    for (const c of commands) {
      const r = await bin([c, '--help']);
      expect(r.code === 0 && r.stdout.includes(`$ ferry ${c}`), `ferry ${c} --help failed`, r);
    }
  });

  await check('NODE_OPTIONS is ignored (execArgvExtension: none)', async () => {
    const r = await bin(['--version'], { env: { NODE_OPTIONS: '--no-such-flag --require /nonexistent.js' } });
    expect(r.code === 0 && r.stdout.startsWith('ferry/'), 'NODE_OPTIONS changed how ferry runs', r);
  });

  await check('an unknown command: exit 2 (usage), one line on stderr', async () => {
    const r = await bin(['frobnicate']);
    expect(r.code === 2 && r.stderr.trim().split('\n').length === 1 && /Unknown command 'frobnicate'/.test(r.stderr), 'unexpected', r);
  });

  const data = join(work, 'data');
  await check('user add, list, remove (real scrypt cost)', async () => {
    const add = await bin(['user', 'add', 'ada', '--data', data, '--admin'], { extra: { FERRY_PASSWORD: 'ada-password-1' } });
    expect(add.code === 0, 'user add failed', add);
    const add2 = await bin(['user', 'add', 'tmp', '--data', data], { extra: { FERRY_PASSWORD: 'tmp-password-1' } });
    expect(add2.code === 0, 'user add failed', add2);
    const rm = await bin(['user', 'remove', 'tmp', '--data', data]);
    expect(rm.code === 0, 'user remove failed', rm);
    const list = await bin(['user', 'list', '--data', data]);
    expect(list.code === 0 && /ada/.test(list.stdout) && !/\btmp\b/.test(list.stdout), 'user list is wrong', list);
  });

  let bundled = [];
  await check('an unknown plugin name: the same error as the source\'s, which names the bundled plugins', async () => {
    const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--data', join(work, 'no-data'), '--plugin', 'no-such-plugin'];
    const r = await bin(args);
    const src = spawnSync(process.execPath, ['--import', join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'), join(ROOT, 'src', 'main.ts'), ...args], { cwd: work, encoding: 'utf8', env: { ...env(home), NO_COLOR: '1' } });
    expect(r.code !== 0 && r.stderr === src.stderr, `differs from the source's: ${src.stderr.trim()}`, r);
    bundled = (/bundled plugins are ([^;]*);/.exec(r.stderr)?.[1] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  });

  await check('serve with every bundled plugin and user plugin files (ESM with top-level await, CommonJS, own node_modules)', async () => {
    const plugins = join(work, 'plugins');
    mkdirSync(join(plugins, 'withdep', 'node_modules', 'tiny-dep'), { recursive: true });
    writeFileSync(
      join(plugins, 'esm.mjs'),
      "import { createHash } from 'node:crypto';\nconst tag = await Promise.resolve(createHash('sha256').update('x').digest('hex').slice(0, 6));\n" +
        "export default { name: 'esm-probe', setup(ctx) { ctx.log.info('esm loaded ' + tag); }, hooks: {} };\n",
    );
    writeFileSync(join(plugins, 'cjs.cjs'), "const os = require('node:os');\nmodule.exports = { name: 'cjs-probe', setup(ctx) { ctx.log.info('cjs loaded on ' + os.platform()); }, hooks: {} };\n");
    writeFileSync(join(plugins, 'withdep', 'node_modules', 'tiny-dep', 'package.json'), JSON.stringify({ name: 'tiny-dep', version: '1.0.0', type: 'module', exports: './index.js' }));
    writeFileSync(join(plugins, 'withdep', 'node_modules', 'tiny-dep', 'index.js'), "export const answer = 42;\n");
    writeFileSync(join(plugins, 'withdep', 'index.mjs'), "import { answer } from 'tiny-dep';\nexport default { name: 'dep-probe', setup(ctx) { ctx.log.info('dep says ' + answer); }, hooks: {} };\n");
    // Bundled plugins with the options each needs (webhook requires an endpoint; nothing listens there,
    // which it must tolerate without slowing anything).
    const options = {
      quota: { defaults: { maxBytes: '1 GiB' } },
      webhook: { endpoints: [{ url: 'http://127.0.0.1:9/hook', secret: 'smoke-secret' }] },
    };
    writeFileSync(join(plugins, 'ferry.config.json'), JSON.stringify({ plugins: bundled.map((name) => ({ name, ...(options[name] ? { options: options[name] } : {}) })) }));
    const server = await serve({ ...ferry, argv: [exe] }, {
      dataDir: data,
      home,
      cwd: work,
      args: ['--signup', 'closed', '--config', join(plugins, 'ferry.config.json'), '--plugin', join(plugins, 'esm.mjs'), '--plugin', join(plugins, 'cjs.cjs'), '--plugin', join(plugins, 'withdep', 'index.mjs')],
    });
    try {
      const out = server.output();
      expect(out.includes(`plugins: ${[...bundled, 'esm-probe', 'cjs-probe', 'dep-probe'].join(', ')}\n`), `the banner does not list the plugins:\n${out}`);
      expect(/esm loaded 2d7116/.test(out) && /cjs loaded on linux/.test(out) && /dep says 42/.test(out), `a plugin did not set up:\n${out}`);
      const dir = tempDir('ferry-smoke-files-');
      try {
        const file = randomFile(join(dir, 'blob.bin'), 2 * 1024 * 1024 + 3);
        writeFileSync(join(dir, 'text.txt'), 'ferry '.repeat(100_000));
        const r = await connect(ferry, server, {
          user: 'ada',
          password: 'ada-password-1',
          home,
          cwd: dir,
          commands: ['UPLD blob.bin', 'UPLD text.txt', 'LIST', 'DWLD blob.bin blob.back', 'DWLD text.txt text.back'],
        });
        expect(r.code === 0, 'connect failed', r);
        expect(sha256(join(dir, 'blob.back')) === sha256(file) && sha256(join(data, 'homes', 'ada', 'blob.bin')) === sha256(file), 'blob.bin changed on the way', r);
        expect(sha256(join(dir, 'text.back')) === sha256(join(dir, 'text.txt')), 'text.txt changed on the way', r);
      } finally {
        cleanup(dir);
      }
    } finally {
      const stopped = await server.stop();
      expect(stopped.clean && stopped.code === 0, `the server did not stop cleanly on SIGTERM:\n${server.output()}`);
    }
  });

  await check('no run printed the experimental SEA warning', async () => {
    const noisy = results.filter(warned);
    expect(noisy.length === 0, `warned: ${noisy.map((r) => `ferry ${r.args.join(' ')}: ${r.stderr.trim()}`).join('\n')}`);
    expect(results.length >= 8, `only ${results.length} runs were checked`);
  });
} finally {
  cleanup(bare, work);
  done();
}
