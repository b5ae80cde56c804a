/** Shared set-up for the batch end-to-end tests: a real server, accounts, manifests, file trees. */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { childEnv, exited, runFerry, startFerry, type RunResult, type ServerHandle } from '../e2e/harness.ts';

export async function addUser(server: ServerHandle, name: string, password: string, perms?: string): Promise<void> {
  const args = ['user', 'add', name, '--data', server.dataDir, ...(perms ? ['--perms', perms] : [])];
  const r = await runFerry(args, { env: childEnv(server.home, { FERRY_PASSWORD: password }) });
  if (r.code !== 0) throw new Error(`user add ${name} failed: ${r.stderr}`);
}

export function homeOf(server: ServerHandle, user: string): string {
  return join(server.dataDir, 'homes', user);
}

/** A manifest for this server; `ops` is the YAML of the ops list, indented by two. */
export function manifest(server: ServerHandle, user: string, ops: string, extra = ''): string {
  return `server: 127.0.0.1:${server.port}\nfingerprint: ${server.fingerprint}\nuser: ${user}\npassword: \${FERRY_PASSWORD}\n${extra}ops:\n${ops}`;
}

export function batch(server: ServerHandle, args: string[], opts: { cwd: string; password: string; input?: string; timeoutMs?: number }): Promise<RunResult> {
  return runFerry(['batch', ...args], {
    env: childEnv(server.home, { FERRY_PASSWORD: opts.password }),
    cwd: opts.cwd,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    timeoutMs: opts.timeoutMs ?? 40_000,
  });
}

export function startBatch(server: ServerHandle, args: string[], opts: { cwd: string; password: string }) {
  return startFerry(['batch', ...args], { env: childEnv(server.home, { FERRY_PASSWORD: opts.password }), cwd: opts.cwd });
}

/** `count` files of random content and sizes (0 to `maxSize` bytes) spread over a few sub-folders. */
export function makeTree(dir: string, count: number, maxSize = 8192): void {
  for (let i = 0; i < count; i++) {
    const sub = i % 5 === 0 ? '' : `d${i % 4}/${i % 3 === 0 ? 'deep/' : ''}`;
    mkdirSync(join(dir, sub), { recursive: true });
    const size = i === 0 ? 0 : Math.floor(Math.random() * maxSize);
    writeFileSync(join(dir, sub, `file-${String(i).padStart(4, '0')}.bin`), randomBytes(size));
  }
}

/** Relative path → SHA-256 of every file under `dir`. */
export function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

export function lines(path: string): number {
  if (!existsSync(path)) return 0;
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').length;
}

/** Lines of the server's console that match. */
export function serverLines(server: ServerHandle, pattern: RegExp): string[] {
  return server.output().split('\n').filter((l) => pattern.test(l));
}

/** Waits for a child to exit; kills it and throws if it takes longer than `ms`. */
export async function exitedWithin(child: ChildProcess, ms: number, what: string): Promise<void> {
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    child.kill('SIGKILL');
  }, ms);
  await exited(child);
  clearTimeout(timer);
  if (late) throw new Error(`${what} did not finish within ${ms} ms`);
}
