// Helpers shared by the smoke scripts (scripts/smoke-bin.mjs, scripts/smoke-deno.mjs). Plain JavaScript on
// node: built-ins only, so the scripts run under Node and Deno alike. A "ferry" here is an argv prefix:
// [binary] for dist/ferry, [deno, 'run', '-A', src/main.ts] for Deno, [node, --import, tsx, src/main.ts].
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const SEA_WARNING = /single executable applications? is an experimental feature|ExperimentalWarning/i;

/** Ferry from the source on Deno 2 (the npm package's binary unless DENO names another). */
export function denoFerry() {
  const deno = process.env.DENO ?? (globalThis.Deno ? globalThis.Deno.execPath() : join(ROOT, 'node_modules', '.bin', 'deno'));
  return { name: 'deno', argv: [deno, 'run', '-A', join(ROOT, 'src', 'main.ts')] };
}

/** Ferry on Node: FERRY_BIN, else dist/ferry when built, else the source through tsx on the node on PATH. */
export function nodeFerry() {
  const bin = process.env.FERRY_BIN ?? (existsSync(join(ROOT, 'dist', 'ferry')) ? join(ROOT, 'dist', 'ferry') : undefined);
  if (bin) return { name: 'node (dist/ferry)', argv: [bin] };
  const node = globalThis.Deno ? 'node' : process.execPath;
  return { name: 'node (source)', argv: [node, '--import', join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'), join(ROOT, 'src', 'main.ts')] };
}

/** This PATH without the directories that hold `node` or `deno`. */
export function pathWithoutRuntimes() {
  return (process.env.PATH ?? '').split(':').filter((d) => d && !existsSync(join(d, 'node')) && !existsSync(join(d, 'deno'))).join(':');
}

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Writes `bytes` random bytes to `file` (random, so that compression cannot hide a broken transfer). */
export function randomFile(file, bytes) {
  writeFileSync(file, randomBytes(bytes));
  return file;
}

/** A child environment: a private FERRY_HOME, no colours, the given extras; FERRY_PASSWORD only when given. */
export function env(home, extra = {}) {
  const e = { ...process.env, FERRY_HOME: home, NO_COLOR: '1', ...extra };
  if (!('FERRY_PASSWORD' in extra)) delete e.FERRY_PASSWORD;
  return e;
}

/** Runs ferry to completion with `input` on stdin; never throws. */
export function run(ferry, args, { env: childEnv, cwd, input = '', timeoutMs = 60_000 } = {}) {
  return new Promise((resolve) => {
    const [cmd, ...pre] = ferry.argv;
    const child = spawn(cmd, [...pre, ...args], { env: childEnv ?? process.env, cwd: cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => (stderr += `spawn failed: ${err.message}`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** Starts `ferry serve` on 127.0.0.1, any free port; resolves with port and fingerprint once it is listening. */
export async function serve(ferry, { dataDir, home, args = [], cwd, timeoutMs = 60_000 }) {
  const [cmd, ...pre] = ferry.argv;
  const child = spawn(cmd, [...pre, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, ...args], {
    env: env(home),
    cwd: cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + timeoutMs;
  while (!(/listening on .*:(\d+)/.test(out) && /fingerprint SHA256:\S+/.test(out))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${ferry.name} serve did not start: ${out.trim() || '(no output)'}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port: Number(/listening on .*:(\d+)/.exec(out)[1]),
    fingerprint: /fingerprint (SHA256:\S+)/.exec(out)[1],
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await closed;
        clearTimeout(t);
      }
      // Deno's node:child_process reports the signal it sent, not the exit status: also read the console.
      const { code, signal } = await closed;
      return { code, signal, clean: /SIGTERM: stopping[\s\S]*stopped\s*$/.test(out) };
    },
  };
}

/** `ferry connect` to a server started by serve(), commands on stdin, pinned fingerprint, password from env. */
export function connect(ferry, server, { user, password, commands, home, cwd, signup = false }) {
  const args = ['connect', `127.0.0.1:${server.port}`, '--user', user, '--fingerprint', server.fingerprint, ...(signup ? ['--signup'] : [])];
  return run(ferry, args, { env: env(home, { FERRY_PASSWORD: password }), cwd, input: commands.join('\n') + '\n' });
}

/** True when a run's stderr shows Node's SEA or experimental warning. */
export function warned(result) {
  return SEA_WARNING.test(result.stderr);
}

/** Named checks with one line each, and the totals as the last line: `N passed, N failed`. */
export function checks(title) {
  let passed = 0;
  let failed = 0;
  process.stdout.write(`${title}\n`);
  return {
    async check(name, fn) {
      const started = Date.now();
      try {
        await fn();
        passed++;
        process.stdout.write(`  ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
      } catch (err) {
        failed++;
        process.stdout.write(`  FAIL ${name}\n${String(err?.message ?? err).replace(/^/gm, '       ')}\n`);
      }
    },
    done() {
      process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
      process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
    },
  };
}

/** Throws `message` (with the run's output) unless `ok`. */
export function expect(ok, message, result) {
  if (ok) return;
  const detail = result ? `\nexit ${result.code}${result.signal ? ` (${result.signal})` : ''}\nstdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}` : '';
  throw new Error(message + detail);
}

export function cleanup(...dirs) {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
