/**
 * End-to-end harness: runs the real `ferry` CLI as child processes (through tsx from the source, or the
 * built executable when FERRY_BIN is set), with a private FERRY_HOME and data directory per test.
 * With FERRY_BIN set, children get a PATH with no `node` or `deno` on it (see binPath), so the executable
 * proves it needs no runtime.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Storage } from '../../src/storage/storage.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');

/** The command that runs ferry: FERRY_BIN (e.g. dist/ferry) or the source through tsx. */
export function ferryCommand(): [string, string[]] {
  const bin = process.env.FERRY_BIN;
  if (bin) return [bin, []];
  return [process.execPath, ['--import', TSX, join(ROOT, 'src', 'main.ts')]];
}

export function tempDir(prefix = 'ferry-e2e-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Tools the tests start by name (through the children's PATH), linked into binPath's private directory. */
const PATH_TOOLS = ['script'];
let _binPath: string | undefined;

/**
 * The children's PATH when FERRY_BIN is set: the directories of this PATH that hold no `node` or `deno`,
 * then a private directory with links to PATH_TOOLS (on merged-/usr systems `script` and `node` share
 * /usr/bin). Made once per test process and removed at exit.
 */
export function binPath(): string {
  if (_binPath !== undefined) return _binPath;
  const dirs = (process.env.PATH ?? '').split(':').filter((d) => d !== '');
  const tools = mkdtempSync(join(tmpdir(), 'ferry-path-'));
  process.once('exit', () => rmSync(tools, { recursive: true, force: true }));
  for (const tool of PATH_TOOLS) {
    const found = dirs.map((d) => join(d, tool)).find((p) => existsSync(p));
    if (found) symlinkSync(found, join(tools, tool));
  }
  _binPath = [...dirs.filter((d) => !existsSync(join(d, 'node')) && !existsSync(join(d, 'deno'))), tools].join(':');
  return _binPath;
}

/** Environment for a child: a private FERRY_HOME, cheap scrypt for speed, no colours; no node on PATH with FERRY_BIN. */
export function childEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_HOME: home, FERRY_SCRYPT_N: '1024', NO_COLOR: '1', ...extra };
  if (process.env.FERRY_BIN) env.PATH = binPath();
  delete env.FERRY_PASSWORD;
  return { ...env, ...extra };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ferry ...args` to completion with `input` on stdin (not a terminal). Bounded in time. */
export function runFerry(args: string[], options: { input?: string; env: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string }): Promise<RunResult> {
  const [cmd, pre] = ferryCommand();
  return new Promise((resolve) => {
    const child = spawn(cmd, [...pre, ...args], { env: options.env, cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Starts `ferry ...args` and returns the process (for tests that kill it midway). */
export function startFerry(args: string[], options: { input?: string; env: NodeJS.ProcessEnv; cwd?: string }): ChildProcess & { output: () => string } {
  const [cmd, pre] = ferryCommand();
  const child = spawn(cmd, [...pre, ...args], { env: options.env, cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  child.stdin?.on('error', () => {});
  child.stdin?.end(options.input ?? '');
  return Object.assign(child, { output: () => out });
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface ServerHandle {
  /** Temp directory holding the data dir when the harness made it (removed by dispose). */
  root: string | null;
  port: number;
  fingerprint: string;
  dataDir: string;
  home: string;
  process: ChildProcess;
  output(): string;
  /** Waits until the server's console shows a line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  /** Stops the server and removes the directories the harness made for it. */
  dispose(): Promise<void>;
  /** `ferry connect` against this server: the commands go to stdin, one per line. */
  connect(user: string, password: string, commands: string[], opts?: { signup?: boolean; extraArgs?: string[]; cwd?: string; timeoutMs?: number }): Promise<RunResult>;
}

export async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** ferry serve's banner line (not, say, Node's "Debugger listening on ws://…" when the inspector is on). */
const BANNER = /^listening on \S+:(\d+) \(/m;

/**
 * Starts `ferry serve` on 127.0.0.1 (or `host`; null: ferry's default) with an OS-chosen port; resolves once it
 * prints its banner.
 */
export async function startServer(options: { dataDir?: string; home?: string; args?: string[]; env?: Record<string, string>; host?: string | null; port?: number } = {}): Promise<ServerHandle> {
  const root = options.dataDir ? null : tempDir();
  const dataDir = options.dataDir ?? join(root as string, 'data');
  const ownHome = !options.home;
  const home = options.home ?? tempDir('ferry-home-');
  const env = childEnv(home, options.env);
  const host = options.host === undefined ? ['--host', '127.0.0.1'] : options.host === null ? [] : ['--host', options.host];
  const args = options.args ?? [];
  const store = args.includes('--storage') ? [] : objectStoreArgs(dataDir);
  const child = startFerry(['serve', ...host, '--port', String(options.port ?? 0), '--data', dataDir, ...store, ...args], { env });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitUntil(() => BANNER.test(child.output()) && (/fingerprint SHA256:\S+/.test(child.output()) || /PLAIN TCP/.test(child.output())), 20_000, `server banner; got: ${child.output()}`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const port = Number(BANNER.exec(child.output())?.[1]);
  const fingerprint = /fingerprint (SHA256:\S+)/.exec(child.output())?.[1] ?? '';
  const handle: ServerHandle = {
    root,
    port,
    fingerprint,
    dataDir,
    home,
    process: child,
    output: () => child.output(),
    // A time-out says what the server did say (its last lines), which is what one needs to see why.
    waitFor: (pattern, timeoutMs = 10_000) =>
      waitUntil(() => pattern.test(child.output()), timeoutMs, `server output ${pattern}`).catch((err: Error) => {
        throw new Error(`${err.message}; the server's last lines:\n${child.output().split('\n').slice(-25).join('\n')}`);
      }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    async dispose() {
      await handle.stop();
      if (root) cleanup(root);
      if (ownHome) cleanup(home);
    },
    connect(user, password, commands, opts = {}) {
      const args = ['connect', `127.0.0.1:${port}`, '--user', user, ...(fingerprint ? ['--fingerprint', fingerprint] : ['--insecure'])];
      if (opts.signup) args.push('--signup');
      args.push(...(opts.extraArgs ?? []));
      return runFerry(args, {
        input: commands.join('\n') + '\n',
        env: childEnv(home, { FERRY_PASSWORD: password }),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      });
    },
  };
  return handle;
}

export function cleanup(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/**
 * With FERRY_TEST_STORAGE set to `s3://BUCKET` (and the store's S3_ENDPOINT and AWS_* credentials in the
 * environment, as scripts/services/swift.sh prints them), every server the harness starts keeps its files in that
 * object store, under a prefix of its data directory's own (a restart on the same data directory finds its files):
 * the end-to-end use cases run once against an object store (.ci/run). The bucket must exist.
 */
export function objectStoreArgs(dataDir: string): string[] {
  const url = process.env.FERRY_TEST_STORAGE;
  if (!url) return [];
  const endpoint = process.env.S3_ENDPOINT;
  const prefix = createHash('sha256').update(dataDir).digest('hex').slice(0, 20);
  return ['--storage', `${url.replace(/\/+$/, '')}/${prefix}`, ...(endpoint ? ['--s3-endpoint', endpoint] : [])];
}

/** Puts a file straight into a user's home, as an administrator would on the server (on disk, or in the object store). */
export async function seedFile(server: ServerHandle, user: string, path: string, content: string): Promise<void> {
  const storage = storageOf(server);
  if (storage === null) {
    const file = join(server.dataDir, 'homes', user, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
    return;
  }
  const bytes = Buffer.from(content);
  await withHome(storage, user, (home) => home.putWhole(path, bytes, { sha256: createHash('sha256').update(bytes).digest('hex'), parents: true, overwrite: true }));
}

/** A file of a user's home as the server keeps it (on disk, or in the object store); null when there is none. */
export async function readHome(server: ServerHandle, user: string, path: string): Promise<Buffer | null> {
  const storage = storageOf(server);
  if (storage === null) {
    const file = join(server.dataDir, 'homes', user, path);
    return existsSync(file) && statSync(file).isFile() ? readFileSync(file) : null;
  }
  return withHome(storage, user, async (home) => {
    const entry = await home.stat(path);
    if (entry === null || entry.type !== 'file') return null;
    const handle = await home.openRead(path);
    try {
      return await handle.read(0, entry.size);
    } finally {
      await handle.close();
    }
  });
}

/** Whether a user's home has `path`, a file or a folder (on disk, or in the object store). */
export async function inHome(server: ServerHandle, user: string, path: string): Promise<boolean> {
  const storage = storageOf(server);
  if (storage === null) return existsSync(join(server.dataDir, 'homes', user, path));
  return withHome(storage, user, async (home) => (await home.stat(path)) !== null);
}

/** Runs `use` on a user's home in the object store (a driver of its own, closed after). */
async function withHome<T>(storage: { url: string; endpoint?: string }, user: string, use: (home: Storage) => Promise<T>): Promise<T> {
  const { S3Driver, parseS3Url } = await import('../../src/storage/s3/mod.ts');
  const driver = new S3Driver(parseS3Url(storage.url), storage.endpoint ? { endpoint: storage.endpoint } : {});
  try {
    return await use(driver.forUser(user));
  } finally {
    driver.close();
  }
}

/** The object store a server was started with (from its command line), or null for the data directory. */
function storageOf(server: ServerHandle): { url: string; endpoint?: string } | null {
  const args = (server.process.spawnargs ?? []) as string[];
  const at = args.indexOf('--storage');
  if (at < 0) return null;
  const e = args.indexOf('--s3-endpoint');
  return { url: args[at + 1] as string, ...(e >= 0 ? { endpoint: args[e + 1] as string } : {}) };
}

/** The names in a folder of a user's home, sorted (on disk, or in the object store); [] when it does not exist. */
export async function listHome(server: ServerHandle, user: string, folder = ''): Promise<string[]> {
  const storage = storageOf(server);
  if (storage === null) {
    const dir = join(server.dataDir, 'homes', user, folder);
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }
  const names: string[] = [];
  await withHome(storage, user, async (home) => {
    for await (const page of home.list(folder)) names.push(...page.map((e) => e.name));
  }).catch((err: unknown) => {
    if ((err as { code?: string }).code !== 'not_found') throw err;
  });
  return names.sort();
}

/**
 * The bytes a user's uploads in progress have kept so far, what a resume could start from: the partial files' sizes
 * on disk, the parts the object store holds of its multipart uploads.
 */
export async function keptBytesOf(server: ServerHandle, user: string): Promise<number> {
  const storage = storageOf(server);
  if (storage === null) {
    const dir = join(server.dataDir, '.partial', user);
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.part')).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0) : 0;
  }
  const { ListPartsCommand } = await import('@aws-sdk/client-s3');
  return withUploadsOf(storage, user, async (client, bucket, uploads) => {
    let sum = 0;
    for (const u of uploads) {
      const parts = await client.send(new ListPartsCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
      for (const part of parts.Parts ?? []) sum += part.Size ?? 0;
    }
    return sum;
  });
}

/** The multipart uploads under a user's home in the object store, with a client to ask more (closed after `fn`). */
async function withUploadsOf<T>(
  storage: { url: string; endpoint?: string },
  user: string,
  fn: (client: import('@aws-sdk/client-s3').S3Client, bucket: string, uploads: import('@aws-sdk/client-s3').MultipartUpload[]) => Promise<T>,
): Promise<T> {
  const { ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
  const { makeS3Client } = await import('../../src/storage/s3/client.ts');
  const { parseS3Url } = await import('../../src/storage/s3/mod.ts');
  const { bucket, prefix } = parseS3Url(storage.url);
  const client = makeS3Client(storage.endpoint ? { endpoint: storage.endpoint } : {});
  try {
    const out = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${prefix ? `${prefix}/` : ''}homes/${user}/` }));
    return await fn(client, bucket, out.Uploads ?? []);
  } finally {
    client.destroy();
  }
}

/** Uploads of a user kept in progress: partial files on disk, multipart uploads in the object store. */
export async function partialsOf(server: ServerHandle, user: string): Promise<string[]> {
  const storage = storageOf(server);
  if (storage === null) {
    const dir = join(server.dataDir, '.partial', user);
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.part')).sort() : [];
  }
  return withUploadsOf(storage, user, async (_client, _bucket, uploads) => uploads.map((u) => u.Key ?? '').sort());
}
