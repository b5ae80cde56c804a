#!/usr/bin/env node
// Several ferry servers as one, measured: `ferry serve --db postgres://... --storage s3://... --proxy-protocol
// 127.0.0.1/32` behind HAProxy (send-proxy-v2), against one server; and the state store alone (the embedded one in
// the data directory against PostgreSQL) under sign-ups and log-ins. Loopback only; every process it starts is
// stopped by its PID (also on failure and SIGINT), every temporary directory, database and bucket removed.
//
//   npm run bench:scaleout                       3 runs per configuration, 100 users; prints the tables (~4 min)
//   npm run bench:scaleout -- --write            ... and rewrites docs/benchmarks.md between the bench-scaleout markers
//   npm run bench:scaleout -- --quick            1 run each, 20 users (< 2 min)
//   options: --runs N  --users N  --concurrency N (sign-up clients at once, 4)  --clients N (uploaders, 20)
//            --size MiB (20)  --only uploads|accounts  --cli dist|source (default: dist/ferry when it exists)
//            --json FILE (also save the raw figures)  --render FILE (print, or --write, the tables of a saved run; no run)
//
// 1. Uploads: N clients (`ferry connect`, one process each, one user) upload one file each at the same moment
//    through HAProxy (balance leastconn), to 1 server and to 2 servers on the same database, bucket and prefix; the
//    configurations alternate (1, 2, 1, 2, ...). Both servers run throughout (the 1-server balancer names only the
//    first). Verified: every client's "sha256 verified: <digest>" line against the local file's SHA-256, and every
//    object read back from the store (GetObject) and hashed, outside the clock; then removed with DELF.
// 2. Accounts: per user, one connection signs up (which logs the session in) and quits, a second logs in, uploads
//    4 KiB and quits — through the client library (src/client, loaded with tsx) in this process, C users at once,
//    each user from its own loopback address 127.10.x.y (the server allows 20 sign-ups per address per hour, as a
//    defence; real users come from many addresses). A fresh server with fresh state per run: (a) the embedded default
//    (users.json in its data directory), (b) --db on a fresh PostgreSQL database; files on the local file system
//    (/dev/shm) in both. Real scrypt cost (FERRY_SCRYPT_N unset). Verified: each upload's SHA-256 as the server
//    confirmed it, and each file read back from the server's data directory. A few `ferry connect` processes doing
//    the same log-in + PUT one at a time show what the CLI's own process costs.
//
// Services: PostgreSQL from DATABASE_URL and the object store from S3_ENDPOINT + AWS_ACCESS_KEY_ID +
// AWS_SECRET_ACCESS_KEY (AWS_REGION) when set, else started here with scripts/services/postgres.sh and swift.sh (and
// stopped with them). A fresh database and bucket are made on them and removed at the end. HAProxy:
// scripts/services/haproxy.sh.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import net from 'node:net';
import tls from 'node:tls';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
function option(name, fallback) {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return fallback;
  const v = args[i].includes('=') ? args[i].slice(args[i].indexOf('=') + 1) : args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
function count(name, fallback) {
  const v = option(name, undefined);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a whole number of 1 or more, not '${v}'`);
  return n;
}
const known = new Set(['--quick', '--write', '--runs', '--users', '--concurrency', '--clients', '--size', '--only', '--cli', '--json', '--render']);
for (const a of args) if (a.startsWith('--') && !known.has(a.split('=')[0])) throw new Error(`unknown option ${a} (see the header of ${fileURLToPath(import.meta.url)})`);

const QUICK = flag('--quick');
const WRITE = flag('--write');
const RUNS = count('--runs', QUICK ? 1 : 3);
const USERS = count('--users', QUICK ? 20 : 100);
const CONCURRENCY = count('--concurrency', 4);
const CLIENTS = count('--clients', 20);
const MiB = 1024 * 1024;
const SIZE = count('--size', 20) * MiB;
const ONLY = option('--only', null);
if (ONLY && !['uploads', 'accounts'].includes(ONLY)) throw new Error(`--only uploads or --only accounts, not '${ONLY}'`);
if (USERS > 60000) throw new Error('--users: at most 60000 (one loopback address each)');
const FERRY_BIN = join(ROOT, 'dist/ferry');
const CLI = option('--cli', existsSync(FERRY_BIN) ? 'dist' : 'source');
if (!['dist', 'source'].includes(CLI)) throw new Error(`--cli dist or --cli source, not '${CLI}'`);
if (CLI === 'dist' && !existsSync(FERRY_BIN)) throw new Error('dist/ferry is missing: npm run build, or --cli source');

const SHM = existsSync('/dev/shm') ? '/dev/shm' : '/tmp';
const T = join(SHM, `ferry-scaleout-${process.pid}`);
const PASSWORD = 'scaleout-' + randomBytes(8).toString('hex');
const HAPROXY_SH = join(ROOT, 'scripts/services/haproxy.sh');
const HIGH_LOAD = 1.5;
const log = (...a) => console.error('[scaleout]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------ cleanup
/** Every child process we started (stopped by PID), and undo steps run last-in first-out. */
const children = new Set();
const undo = [];
let cleaning = null;
/** Set once cleanup has begun: nothing new is started after that (what main() is still doing fails). */
let stopping = false;
async function cleanup() {
  if (cleaning) return cleaning;
  stopping = true;
  cleaning = (async () => {
    await Promise.all([...children].map(stopChild));
    while (undo.length) {
      const step = undo.pop();
      try { await withTimeout(Promise.resolve().then(step.fn), 60_000, step.what); } catch (err) { log(`cleanup: ${step.what}: ${String(err?.message ?? err).slice(0, 300)}`); }
    }
    await Promise.all([...children].map(stopChild));
    rmSync(T, { recursive: true, force: true });
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping what was started`);
    const hard = setTimeout(() => process.exit(130), 90_000);
    cleanup().finally(() => { clearTimeout(hard); process.exit(130); });
  });
}
function withTimeout(promise, ms, what, onTimeout) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => { onTimeout?.(); reject(new Error(`${what}: timed out after ${ms / 1000} s`)); }, ms); }),
  ]);
}
/** SIGTERM, then SIGKILL after 10 s; resolves once the process has exited. */
async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) { children.delete(child); return; }
  const gone = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
  await Promise.race([gone, sleep(15_000)]);
  clearTimeout(t);
  children.delete(child);
}

// ------------------------------------------------------------------------------------------ processes
/** dist/ferry copied at the start, so that a rebuild during the run (others work here too) changes nothing. */
let ferryBin = FERRY_BIN;
let ferryBuilt = null;
function snapshotBinary() {
  if (CLI !== 'dist') return;
  ferryBuilt = statSync(FERRY_BIN).mtime;
  ferryBin = join(T, 'ferry');
  copyFileSync(FERRY_BIN, ferryBin);
  chmodSync(ferryBin, 0o755);
}
function ferryCommand(argv) {
  return CLI === 'dist' ? [ferryBin, argv] : [process.execPath, ['--import', 'tsx', join(ROOT, 'src/main.ts'), ...argv]];
}
/** A long-running child whose output is kept (the last 256 KiB). */
function background(cmd, argv, env) {
  if (stopping) throw new Error('stopping: not starting ' + cmd);
  const child = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.output = '';
  const keep = (d) => { child.output += d; if (child.output.length > 512 * 1024) child.output = child.output.slice(-256 * 1024); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('exit', () => children.delete(child));
  return child;
}
/** Runs a command to its end (killed after timeoutMs); resolves with exit code, output and wall seconds. */
function run(cmd, argv, { env, input = '', timeoutMs = 120_000 } = {}) {
  if (stopping) return Promise.resolve({ code: -1, out: 'stopping: not started', wall: 0, end: process.hrtime.bigint() });
  return new Promise((res) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    const timer = setTimeout(() => { out += `\n[killed after ${timeoutMs / 1000} s]`; try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    child.on('error', (err) => { out += String(err); });
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      res({ code, out, wall: Number(process.hrtime.bigint() - t0) / 1e9, end: process.hrtime.bigint() });
    });
  });
}
const ferry = (argv, opts) => { const [c, a] = ferryCommand(argv); return run(c, a, opts); };

async function startServer(name, dataDir, extra, env) {
  mkdirSync(dataDir, { recursive: true });
  const [c, a] = ferryCommand(['serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, ...extra]);
  const proc = background(c, a, env);
  await waitFor(() => /To get started/.test(proc.output) || proc.exitCode !== null, 60_000, `${name}: the ferry serve banner`);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(proc.output)?.[1]);
  const fingerprint = /fingerprint (SHA256:\S+)/.exec(proc.output)?.[1];
  if (proc.exitCode !== null || !port || !fingerprint) throw new Error(`${name}: ferry serve did not start: ${proc.output.slice(-1500)}`);
  log(`${name}: ferry serve pid ${proc.pid} on 127.0.0.1:${port}`);
  return { name, proc, pid: proc.pid, port, fingerprint, dataDir, stop: () => stopChild(proc) };
}
async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await pred()) return; await sleep(50); }
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
}

// ------------------------------------------------------------------------------------------ measuring
const TICK = 100; // USER_HZ
function procCpu(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch { return 0; }
}
/** CPU seconds of this process's children that have exited and been reaped (the clients). */
function reapedCpu() {
  const s = readFileSync('/proc/self/stat', 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / TICK;
}
/** The whole machine's CPU time, busy and total (from /proc/stat), to tell how saturated it was. */
function machineCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}
/**
 * What the rest of the machine is doing: its CPU busy share over 2 s while nothing of this benchmark works (taken
 * just before each run). The 1-minute load average read next to it still carries the benchmark's previous run.
 */
async function othersBusy() {
  const a = machineCpu();
  await sleep(2000);
  return busyPct(a, machineCpu());
}
const busyPct = (a, b) => (b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : NaN);
const median = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '—');
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

/** A file of random bytes; returns its SHA-256. */
function makeFile(path, size) {
  mkdirSync(dirname(path), { recursive: true });
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  for (let at = 0; at < size; at += 4 * MiB) { const b = randomBytes(Math.min(4 * MiB, size - at)); h.update(b); writeSync(fd, b); }
  closeSync(fd);
  return h.digest('hex');
}

// ------------------------------------------------------------------------------------------ services
async function services({ store }) {
  const env = {};
  if (process.env.DATABASE_URL) {
    env.DATABASE_URL = process.env.DATABASE_URL;
    log('PostgreSQL: DATABASE_URL from the environment');
  } else {
    // Not under /dev/shm/ferry-scaleout-*: postgres.sh runs the server as the postgres user, which must reach DIR.
    const dir = `/tmp/ferry-scaleout-pg-${process.pid}`;
    const sh = join(ROOT, 'scripts/services/postgres.sh');
    undo.push({ what: 'stop PostgreSQL', fn: () => { spawnSync('bash', [sh, 'stop', dir], { stdio: 'ignore', timeout: 60_000 }); rmSync(dir, { recursive: true, force: true }); } });
    log('starting PostgreSQL with scripts/services/postgres.sh in', dir);
    const out = execFileSync('bash', [sh, 'start', dir], { encoding: 'utf8', timeout: 120_000 });
    env.DATABASE_URL = /DATABASE_URL=(\S+)/.exec(out)?.[1];
    if (!env.DATABASE_URL) throw new Error(`postgres.sh printed no DATABASE_URL: ${out}`);
  }
  if (!store) return env;
  if (process.env.S3_ENDPOINT && process.env.AWS_ACCESS_KEY_ID && process.env.AWS_SECRET_ACCESS_KEY) {
    for (const k of ['S3_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) env[k] = process.env[k];
    env.AWS_REGION = process.env.AWS_REGION ?? 'us-east-1';
    env.storeNote = `the store at ${env.S3_ENDPOINT} (from S3_ENDPOINT)`;
    log('object store: S3_ENDPOINT from the environment');
  } else {
    const dir = join('/var/tmp', `ferry-scaleout-swift-${process.pid}`);
    const sh = join(ROOT, 'scripts/services/swift.sh');
    if (!existsSync('/usr/bin/swift-proxy-server')) execFileSync('bash', [sh, 'install'], { stdio: 'inherit', timeout: 300_000 });
    undo.push({ what: 'stop Swift', fn: () => { spawnSync('bash', [sh, 'stop', dir], { stdio: 'ignore', timeout: 60_000 }); rmSync(dir, { recursive: true, force: true }); } });
    log('starting Swift with scripts/services/swift.sh in', dir);
    const out = execFileSync('bash', [sh, 'start', dir], { encoding: 'utf8', timeout: 180_000 });
    for (const line of out.split('\n')) { const m = /^(\w+)=(.*)$/.exec(line.trim()); if (m) env[m[1]] = m[2]; }
    env.storeNote = 'OpenStack Swift (s3api), started by scripts/services/swift.sh';
  }
  return env;
}

let pgModule = null;
/** A new database on the PostgreSQL server; dropped by the returned function (and at cleanup). */
async function freshDatabase(adminUrl, tag) {
  if (stopping) throw new Error('stopping: no new database');
  pgModule ??= (await import('pg')).default;
  const name = `ferry_scaleout_${tag}_${randomBytes(4).toString('hex')}`;
  const q = async (sql) => { const c = new pgModule.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000, query_timeout: 60_000 }); await c.connect(); try { await c.query(sql); } finally { await c.end(); } };
  let dropped = false;
  const drop = async () => { if (!dropped) { dropped = true; await q(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } };
  undo.push({ what: `drop database ${name}`, fn: drop }); // before it exists: a stop during CREATE still drops it
  await q(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop };
}

/** A new bucket in the store; emptied and removed at cleanup. */
async function freshBucket(env) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const s3 = await import('@aws-sdk/client-s3');
  const client = new s3.S3Client({ endpoint: env.S3_ENDPOINT, forcePathStyle: true, region: env.AWS_REGION, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } });
  const bucket = `ferry-scaleout-${randomBytes(4).toString('hex')}`;
  undo.push({
    what: `remove bucket ${bucket}`,
    fn: async () => {
      try {
        const ups = await client.send(new s3.ListMultipartUploadsCommand({ Bucket: bucket }));
        for (const u of ups.Uploads ?? []) await client.send(new s3.AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {});
        let token;
        do {
          const out = await client.send(new s3.ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
          for (const o of out.Contents ?? []) await client.send(new s3.DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
          token = out.IsTruncated ? out.NextContinuationToken : undefined;
        } while (token);
        await client.send(new s3.DeleteBucketCommand({ Bucket: bucket }));
      } finally { client.destroy(); }
    },
  });
  await withTimeout(client.send(new s3.CreateBucketCommand({ Bucket: bucket })), 30_000, 'create bucket');
  /** SHA-256 (hex) and size of an object, read back in full. */
  const readBack = async (key) => {
    const out = await client.send(new s3.GetObjectCommand({ Bucket: bucket, Key: key }));
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of out.Body) { h.update(chunk); size += chunk.length; }
    return { sha256: h.digest('hex'), size };
  };
  return { bucket, readBack };
}

// ------------------------------------------------------------------------------------------ HAProxy
async function startBalancer(dir, ports) {
  if (stopping) throw new Error('stopping: not starting HAProxy');
  undo.push({ what: `stop HAProxy in ${dir}`, fn: () => { spawnSync('bash', [HAPROXY_SH, 'stop', dir], { stdio: 'ignore', timeout: 30_000 }); } });
  const out = execFileSync('bash', [HAPROXY_SH, 'start', dir, ...ports.map(String)], { encoding: 'utf8', timeout: 30_000 });
  const port = Number(/HAPROXY_PORT=(\d+)/.exec(out)?.[1]);
  if (!port) throw new Error(`haproxy.sh printed no port: ${out}`);
  const pid = Number(readFileSync(join(dir, 'haproxy.pid'), 'utf8'));
  // Every backend UP by HAProxy's own health checks (its admin socket, `show stat`).
  await waitFor(async () => {
    const csv = await adminCommand(join(dir, 'admin.sock'), 'show stat').catch(() => '');
    const rows = csv.split('\n').filter((l) => l.startsWith('ferry_servers,s'));
    return rows.length === ports.length && rows.every((l) => l.split(',')[17] === 'UP');
  }, 15_000, `HAProxy (${dir}) to see ${ports.length} server(s) UP`);
  log(`HAProxy pid ${pid} on 127.0.0.1:${port} in front of ${ports.join(', ')}`);
  return { dir, port, pid, logFile: join(dir, 'haproxy.log') };
}
function adminCommand(sock, command) {
  return new Promise((res, rej) => {
    const s = net.connect(sock);
    let out = '';
    s.setTimeout(3000, () => { s.destroy(); rej(new Error('admin socket timeout')); });
    s.on('connect', () => s.write(command + '\n'));
    s.on('data', (d) => { out += d; });
    s.on('end', () => res(out));
    s.on('error', rej);
  });
}
const logSize = (f) => { try { return statSync(f).size; } catch { return 0; } };
/** Connections per backend server that HAProxy logged since `offset` (its tcplog line names backend/server). */
function split(file, offset) {
  const text = readFileSync(file).subarray(offset).toString();
  const per = {};
  for (const m of text.matchAll(/ferry_in ferry_servers\/(s\d+)/g)) per[m[1]] = (per[m[1]] ?? 0) + 1;
  return Object.keys(per).sort().map((k) => per[k]).join('/');
}

// ------------------------------------------------------------------------------------------ 1. uploads
async function uploads(svc) {
  const db = await freshDatabase(svc.DATABASE_URL, 'up');
  const store = await freshBucket(svc);
  const prefix = 'bench';
  const home = join(T, 'up-home');
  mkdirSync(home, { recursive: true });
  const env = { ...process.env, NO_COLOR: '1', FERRY_HOME: home, AWS_ACCESS_KEY_ID: svc.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: svc.AWS_SECRET_ACCESS_KEY, AWS_REGION: svc.AWS_REGION };
  delete env.FERRY_SCRYPT_N; // the real password cost
  delete env.FERRY_DB;
  const serverArgs = ['--db', db.url, '--storage', `s3://${store.bucket}/${prefix}`, '--s3-endpoint', svc.S3_ENDPOINT, '--proxy-protocol', '127.0.0.1/32'];
  const a = await startServer('server A', join(T, 'up-a'), serverArgs, env);
  const b = await startServer('server B', join(T, 'up-b'), serverArgs, env);
  if (a.fingerprint !== b.fingerprint) throw new Error(`the two servers present different identities: ${a.fingerprint} ${b.fingerprint}`);
  const added = await ferry(['user', 'add', 'bench', '--db', db.url], { env: { ...env, FERRY_PASSWORD: PASSWORD }, timeoutMs: 60_000 });
  if (added.code !== 0) throw new Error(`ferry user add: ${added.out.slice(-1000)}`);
  const ha = { 1: await startBalancer(join(T, 'ha1'), [a.port]), 2: await startBalancer(join(T, 'ha2'), [a.port, b.port]) };
  const cenv = { ...env, FERRY_PASSWORD: PASSWORD };
  const connect = (port, lines, timeoutMs = 600_000) =>
    ferry(['connect', `127.0.0.1:${port}`, '--user', 'bench', '--fingerprint', a.fingerprint], { env: cenv, input: lines.join('\n') + '\n', timeoutMs });

  log(`making ${CLIENTS} files of ${SIZE / MiB} MiB`);
  const files = Array.from({ length: CLIENTS }, (_, i) => { const path = join(T, 'up-src', `c${i}.bin`); return { path, sha256: makeFile(path, SIZE) }; });

  /** N clients at once through balancer `n`, each uploading its file as `${tag}-c<i>.bin`; verified; removed. */
  async function round(n, tag, clients = CLIENTS) {
    if (stopping) throw new Error('stopping');
    const names = files.slice(0, clients).map((_, i) => `${tag}-c${i}.bin`);
    const off = logSize(ha[n].logFile);
    const idle = await othersBusy();
    const load = loadavg()[0];
    const m0 = machineCpu(), c0 = reapedCpu(), s0 = procCpu(a.pid) + procCpu(b.pid), h0 = procCpu(ha[1].pid) + procCpu(ha[2].pid);
    const t0 = process.hrtime.bigint();
    const results = await Promise.all(names.map((name, i) => connect(ha[n].port, [`PUT ${files[i].path} ${name}`, 'QUIT'])));
    const wall = Number(results.reduce((m, r) => (r.end > m ? r.end : m), t0) - t0) / 1e9;
    const m1 = machineCpu(), c1 = reapedCpu(), s1 = procCpu(a.pid) + procCpu(b.pid), h1 = procCpu(ha[1].pid) + procCpu(ha[2].pid);
    const after = await othersBusy(); // also gives HAProxy time to write its lines (one when a connection closes)
    const spread = split(ha[n].logFile, off);
    // Verified: the digest the client printed (the server's, after it checked the bytes), then the object read back.
    const errors = [];
    let verified = 0;
    for (let i = 0; i < names.length; i++) {
      const r = results[i];
      const said = /sha256 verified: ([0-9a-f]{64})/.exec(r.out)?.[1];
      if (r.code !== 0 || said !== files[i].sha256) { errors.push(`client ${i}: exit ${r.code}: ${r.out.replace(/\s+/g, ' ').slice(-300)}`); continue; }
      const back = await withTimeout(store.readBack(`${prefix}/homes/bench/${names[i]}`), 120_000, `read back ${names[i]}`).catch((err) => ({ sha256: String(err?.message ?? err) }));
      if (back.sha256 !== files[i].sha256 || back.size !== SIZE) { errors.push(`${names[i]}: read back ${back.sha256} (${back.size} B), want ${files[i].sha256}`); continue; }
      verified++;
    }
    const del = await connect(ha[n].port, [...names.map((x, i) => (results[i].code === 0 ? `DELF ${x}` : null)).filter(Boolean), 'QUIT'], 120_000);
    if (del.code !== 0) log(`removing ${tag}: ${del.out.slice(-300)}`);
    return { servers: n, load, idle, after, wall, clients: names.length, verified, errors, spread, busy: busyPct(m0, m1), clientCpu: c1 - c0, serverCpu: s1 - s0, haproxyCpu: h1 - h0, perClient: median(results.map((r) => r.wall)) };
  }

  // Warm-up, not counted: one client per server (through the 2-server balancer, leastconn: one each).
  const warm = await round(2, 'warm', 2);
  log(`warm-up: ${f2(warm.wall)} s, ${warm.verified}/2 verified, split ${warm.spread}`);
  if (warm.verified !== 2) throw new Error(`warm-up failed: ${warm.errors.join('; ')}`);
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    for (const n of [1, 2]) {
      const x = await round(n, `r${r}-s${n}`);
      runs.push(x);
      log(`uploads, ${n} server(s), run ${r + 1}/${RUNS}: ${f2(x.wall)} s, ${x.verified}/${x.clients} verified, split ${x.spread}, load ${f2(x.load)}, machine CPU ${f0(x.busy)}%${x.errors.length ? `, errors: ${x.errors.slice(0, 2).join(' | ')}` : ''}`);
    }
  }
  for (const h of Object.values(ha)) spawnSync('bash', [HAPROXY_SH, 'stop', h.dir], { stdio: 'ignore', timeout: 30_000 });
  await a.stop();
  await b.stop();
  return { runs, bucketNote: svc.storeNote };
}

// ------------------------------------------------------------------------------------------ 2. accounts
async function accounts(svc) {
  if (stopping) throw new Error('stopping');
  const { tsImport } = await import('tsx/esm/api');
  const here = pathToFileURL(fileURLToPath(import.meta.url)).href;
  const { FerryClient } = await tsImport('../../src/client/mod.ts', here);
  const { fingerprintFromHex } = await tsImport('../../src/tls/fingerprint.ts', here);

  /** One connection from `localAddress`, the server's identity checked against the pin, handshake done. */
  async function open(port, pin, localAddress) {
    const socket = tls.connect({ host: '127.0.0.1', port, localAddress, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    try {
      await withTimeout(new Promise((res, rej) => { socket.once('secureConnect', res); socket.once('error', rej); }), 15_000, 'TLS connect');
      const fp = fingerprintFromHex(socket.getPeerCertificate().fingerprint256);
      if (fp !== pin) throw new Error(`fingerprint ${fp}, not the pinned ${pin}`);
      const client = new FerryClient(socket, '127.0.0.1', port, fp, null);
      await withTimeout(client.ready, 15_000, 'handshake');
      return client;
    } catch (err) { socket.destroy(); throw err; }
  }
  const addressOf = (i) => `127.10.${Math.floor(i / 250)}.${1 + (i % 250)}`;

  log(`making ${USERS} files of 4 KiB`);
  const files = Array.from({ length: USERS }, (_, i) => { const path = join(T, 'acc-src', `u${i}.bin`); return { path, sha256: makeFile(path, 4096) }; });

  async function round(kind, r) {
    if (stopping) throw new Error('stopping');
    const dataDir = join(T, `acc-${kind}-${r}`);
    const env = { ...process.env, NO_COLOR: '1', FERRY_HOME: join(T, 'acc-home') };
    delete env.FERRY_SCRYPT_N;
    delete env.FERRY_DB;
    const db = kind === 'postgres' ? await freshDatabase(svc.DATABASE_URL, `acc${r}`) : null;
    const server = await startServer(`${kind} server`, dataDir, db ? ['--db', db.url] : [], env);
    const errors = [];
    const signupMs = [], loginPutMs = [];
    let done = 0;
    const idle = await othersBusy();
    const load = loadavg()[0];
    const m0 = machineCpu(), s0 = procCpu(server.pid), c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let next = 0;
    const user = async (i) => {
      const name = `r${r}u${i}`;
      const from = addressOf(i);
      const u0 = performance.now();
      const c1 = await open(server.port, server.fingerprint, from);
      try { await c1.signup(name, PASSWORD); } finally { await c1.quit(); }
      const u1 = performance.now();
      const c2 = await open(server.port, server.fingerprint, from);
      try {
        await c2.login(name, PASSWORD);
        const res = await c2.upload(files[i].path, 'f.bin');
        if (res.sha256 !== files[i].sha256 || res.size !== 4096) throw new Error(`upload confirmed ${res.sha256} (${res.size} B), want ${files[i].sha256}`);
      } finally { await c2.quit(); }
      signupMs.push(u1 - u0);
      loginPutMs.push(performance.now() - u1);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < USERS) {
        const i = next++;
        try { await withTimeout(user(i), 60_000, `user ${i}`); done++; } catch (err) { errors.push(`user ${i}: ${String(err?.message ?? err).slice(0, 200)}`); }
      }
    }));
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const m1 = machineCpu(), s1 = procCpu(server.pid), cu = process.cpuUsage(c0);
    const after = await othersBusy();
    // Verified: each file read back from the server's data directory.
    let verified = 0;
    for (let i = 0; i < USERS; i++) {
      try { if (sha256(readFileSync(join(dataDir, 'homes', `r${r}u${i}`, 'f.bin'))) === files[i].sha256) verified++; else errors.push(`user ${i}: stored file differs`); } catch { /* counted below */ }
    }
    let cli = null;
    if (r === RUNS - 1) cli = await cliProbe(server, r, env);
    await server.stop();
    if (db) await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
    return { kind, load, idle, after, wall, users: USERS, done, verified, errors, signupMs: median(signupMs), loginPutMs: median(loginPutMs), serverCpu: s1 - s0, clientCpu: (cu.user + cu.system) / 1e6, busy: busyPct(m0, m1), cli };
  }

  /** One at a time, for a few users of the run: log-in + PUT through the library, then the same with `ferry connect`. */
  async function cliProbe(server, r, env) {
    const n = Math.min(5, USERS);
    const lib = [], cliWall = [], cliCpu = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await withTimeout((async () => {
        const c = await open(server.port, server.fingerprint, addressOf(i));
        try { await c.login(`r${r}u${i}`, PASSWORD); const res = await c.upload(files[i].path, 'lib.bin'); if (res.sha256 !== files[i].sha256) throw new Error('library probe: digest differs'); } finally { await c.quit(); }
      })(), 60_000, 'library probe');
      lib.push((performance.now() - t) / 1000);
    }
    for (let i = 0; i < n; i++) {
      const c0 = reapedCpu();
      const res = await ferry(['connect', `127.0.0.1:${server.port}`, '--user', `r${r}u${i}`, '--fingerprint', server.fingerprint], { env: { ...env, FERRY_PASSWORD: PASSWORD }, input: `PUT ${files[i].path} cli.bin\nQUIT\n`, timeoutMs: 60_000 });
      const said = /sha256 verified: ([0-9a-f]{64})/.exec(res.out)?.[1];
      if (res.code !== 0 || said !== files[i].sha256) throw new Error(`ferry connect probe: ${res.out.slice(-500)}`);
      cliWall.push(res.wall);
      cliCpu.push(reapedCpu() - c0);
    }
    const start = [];
    for (let i = 0; i < n; i++) { const c0 = reapedCpu(); const res = await ferry(['--version'], { env, timeoutMs: 30_000 }); if (res.code === 0) start.push({ wall: res.wall, cpu: reapedCpu() - c0 }); }
    return { n, lib: median(lib), cliWall: median(cliWall), cliCpu: median(cliCpu), startWall: median(start.map((s) => s.wall)), startCpu: median(start.map((s) => s.cpu)) };
  }

  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    for (const kind of ['embedded', 'postgres']) {
      const x = await round(kind, r);
      runs.push(x);
      log(`accounts, ${kind}, run ${r + 1}/${RUNS}: ${USERS} users in ${f2(x.wall)} s = ${f1(x.users / x.wall)} users/s, ${x.verified}/${x.users} verified, load ${f2(x.load)}, machine CPU ${f0(x.busy)}%${x.errors.length ? `, errors: ${x.errors.slice(0, 2).join(' | ')}` : ''}`);
    }
  }
  return { runs };
}

// ------------------------------------------------------------------------------------------ report
/** Others used more than this share of the CPU just before or after a run: it was disturbed (marked †). */
const DISTURBED = 25;
const disturbed = (x) => !(x.idle <= DISTURBED && x.after <= DISTURBED);
function loadsOf(rs) { return rs.map((x) => `${f2(x.load)}${x.load > HIGH_LOAD ? '*' : ''} (${f0(x.idle)}% / ${f0(x.after)}%)${disturbed(x) ? ' †' : ''}`).join(', '); }
/** A line on the disturbed runs (†), with the medians of the others, or nothing when there were none. */
function disturbedNote(groups) {
  const parts = groups.filter((g) => g.runs.some(disturbed)).map((g) => {
    const quiet = g.runs.filter((x) => !disturbed(x));
    return `${g.label}: ${g.runs.filter(disturbed).length} of ${g.runs.length}${quiet.length ? `, median of the other ${quiet.length}: ${g.value(quiet)}` : ''}`;
  });
  return parts.length ? `\n† Other work used more than ${DISTURBED}% of the CPU just before or after the run (it started or ended during it): not a figure to quote. ${parts.join('; ')}.` : '';
}
function report(meta, up, acc) {
  const out = [];
  out.push(`Run: \`npm run bench:scaleout${meta.argv ? ` -- ${meta.argv}` : ''}\`, ${meta.started}, ${f1(meta.minutes)} min; commit ${meta.commit}; ferry \`${meta.version}\` (${meta.cli === 'dist' ? `dist/ferry, the single executable, built ${meta.built?.replace(/\.\d+Z$/, 'Z')}, copied at the start` : 'from the source, node --import tsx'}; the client library from the source).`);
  out.push(`Machine: ${meta.cpus} vCPU (${meta.cpuModel}), shared with other work; load average ${f2(meta.load0)} when the benchmark started. Everything on one machine over loopback: clients, HAProxy, the ferry servers, PostgreSQL and the object store share the same ${meta.cpus} cores. The tables give, for each run, the 1-minute load average at its start (marked \\* above ${HIGH_LOAD}) and, in brackets, the share of the machine's CPU that others used in the 2 s before it and in the 2 s after it, while nothing of the benchmark worked. The load average counts runnable processes and decays over about a minute: a run has many (${meta.clients} clients, the servers, the store's), so after the first run it carries mostly the benchmark's own previous run; the bracketed shares tell other work apart. **Figures taken at a load above ${HIGH_LOAD} are not headline figures** — unless that load is the benchmark's own: a load of at most ${HIGH_LOAD} before the first run and others' share near 0% around every run.`);
  out.push('');
  if (up) {
    const total = meta.clients * meta.size;
    out.push(`### ${meta.clients} clients uploading ${meta.size / MiB} MiB each at once through HAProxy, 1 server and 2 servers`);
    out.push('');
    out.push(`\`ferry serve --db postgres://... --storage s3://BUCKET/bench --s3-endpoint ... --proxy-protocol 127.0.0.1/32\` (both servers: one database, one bucket and prefix, ${up.bucketNote}) behind HAProxy 2.6 (\`balance leastconn\`, \`send-proxy-v2\`, scripts/services/haproxy.sh). ${meta.clients} \`ferry connect\` processes (one user, \`PUT\`), started together; wall = first start to last exit. Configurations alternated (1, 2, 1, 2, ...), after one uncounted warm-up upload per server. Verified: each client's \`sha256 verified\` digest against the local file, and every object read back from the store and hashed.`);
    out.push('');
    out.push('| servers | runs | verified | median wall s | min–max s | aggregate MiB/s (median) | per-client wall s (median) | ferry servers CPU s | clients CPU s | HAProxy CPU s | machine CPU busy | connections per server | load avg at start of each run (others\' CPU before / after) |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const n of [1, 2]) {
      const rs = up.runs.filter((x) => x.servers === n);
      const ok = rs.filter((x) => x.verified === x.clients);
      const w = ok.map((x) => x.wall);
      out.push(`| ${n} | ${ok.length}${rs.length > ok.length ? ` (+${rs.length - ok.length} failed)` : ''} | ${rs.reduce((s, x) => s + x.verified, 0)}/${rs.reduce((s, x) => s + x.clients, 0)} | ${f2(median(w))} | ${f2(Math.min(...w))}–${f2(Math.max(...w))} | ${f0(total / MiB / median(w))} | ${f2(median(ok.map((x) => x.perClient)))} | ${f1(median(ok.map((x) => x.serverCpu)))} | ${f1(median(ok.map((x) => x.clientCpu)))} | ${f1(median(ok.map((x) => x.haproxyCpu)))} | ${f0(median(ok.map((x) => x.busy)))}% | ${rs.map((x) => x.spread || '—').join(', ')} | ${loadsOf(rs)} |`);
    }
    const m1 = median(up.runs.filter((x) => x.servers === 1 && x.verified === x.clients).map((x) => x.wall));
    const m2 = median(up.runs.filter((x) => x.servers === 2 && x.verified === x.clients).map((x) => x.wall));
    out.push('');
    out.push(`2 servers ÷ 1 server, median wall: ${f2(m2 / m1)} (${m2 < m1 ? `2 servers ${f2(m1 / m2)}x faster` : `2 servers ${f2(m2 / m1)}x slower`}). "ferry servers CPU" is both servers' together (the second one idles in the 1-server runs); "machine CPU busy" is the whole machine's (/proc/stat) during the run, the object store's and PostgreSQL's work included.`);
    const busy = up.runs.filter((x) => x.verified === x.clients).map((x) => x.busy);
    if (busy.length && Math.min(...busy) >= 95) {
      out.push('');
      out.push(`The machine's CPU was saturated (at least ${f0(Math.min(...busy))}% busy) in every run, with one server as with two: the uploads are CPU-bound here (the clients' TLS and SHA-256, the servers' TLS, SHA-256 and store requests, the object store's own servers), so a second ferry server finds no idle core to use. What the table can show on this machine is that the balancer spreads the clients over both servers and that every upload lands verified in the one store; a speed-up needs servers on cores (or machines) of their own.`);
    }
    const upNote = disturbedNote([1, 2].map((n) => ({ label: `${n} server${n > 1 ? 's' : ''}`, runs: up.runs.filter((x) => x.servers === n && x.verified === x.clients), value: (rs) => `${f2(median(rs.map((x) => x.wall)))} s` })));
    if (upNote) out.push(upNote);
    for (const x of up.runs) for (const e of x.errors.slice(0, 2)) out.push(`\n> ${x.servers} server(s): ${e.replaceAll('\n', ' ')}`);
    out.push('');
  }
  if (acc) {
    out.push(`### Sign-up + log-in + one 4 KiB upload per user, ${meta.users} users, ${meta.concurrency} at once: embedded state against PostgreSQL`);
    out.push('');
    out.push(`Per user: a connection that signs up (which logs it in) and quits, then one that logs in, uploads 4 KiB and quits — TLS 1.3 each, real scrypt (N=2^15) on the server for the sign-up and the log-in. Driven by the client library (src/client) from one Node process, not by \`ferry connect\` processes (what those cost is in the last table), each user from its own loopback address (127.10.x.y; the server allows 20 sign-ups per address per hour). A fresh \`ferry serve\` with fresh state per run — embedded: users.json, audit log and throttles in its data directory; PostgreSQL: \`--db\` on a fresh database (scripts/services/postgres.sh's settings: fsync off). Files on the local file system (/dev/shm) in both, so only the state store differs. Configurations alternated. Verified: each upload's SHA-256 as the server confirmed it, and each file read back from the data directory.`);
    out.push('');
    out.push('| state store | runs | verified users | median users/s | min–max users/s | median s per run | sign-up (connect + sign-up + quit) ms, median | log-in + PUT 4 KiB ms, median | server CPU ms per user | client CPU ms per user | machine CPU busy | load avg at start of each run (others\' CPU before / after) |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const kind of ['embedded', 'postgres']) {
      const rs = acc.runs.filter((x) => x.kind === kind);
      const ok = rs.filter((x) => x.verified === x.users && x.done === x.users);
      const rate = ok.map((x) => x.users / x.wall);
      out.push(`| ${kind === 'embedded' ? 'embedded (data directory, the default)' : 'PostgreSQL (`--db`)'} | ${ok.length}${rs.length > ok.length ? ` (+${rs.length - ok.length} failed)` : ''} | ${rs.reduce((s, x) => s + x.verified, 0)}/${rs.reduce((s, x) => s + x.users, 0)} | ${f1(median(rate))} | ${f1(Math.min(...rate))}–${f1(Math.max(...rate))} | ${f2(median(ok.map((x) => x.wall)))} | ${f0(median(ok.map((x) => x.signupMs)))} | ${f0(median(ok.map((x) => x.loginPutMs)))} | ${f0(median(ok.map((x) => (1000 * x.serverCpu) / x.users)))} | ${f0(median(ok.map((x) => (1000 * x.clientCpu) / x.users)))} | ${f0(median(ok.map((x) => x.busy)))}% | ${loadsOf(rs)} |`);
    }
    const e = median(acc.runs.filter((x) => x.kind === 'embedded').map((x) => x.users / x.wall));
    const p = median(acc.runs.filter((x) => x.kind === 'postgres').map((x) => x.users / x.wall));
    out.push('');
    out.push(`PostgreSQL ÷ embedded, users/s: ${f2(p / e)}. Server CPU is ferry serve's alone; PostgreSQL's own CPU is not in it (it is in "machine CPU busy"). Most of the server's CPU per user is the two scrypt checks (N=2^15, ~0.1 s of CPU each here), the same in both.`);
    const accNote = disturbedNote(['embedded', 'postgres'].map((kind) => ({ label: kind === 'embedded' ? 'embedded' : 'PostgreSQL', runs: acc.runs.filter((x) => x.kind === kind && x.verified === x.users && x.done === x.users), value: (rs) => `${f1(median(rs.map((x) => x.users / x.wall)))} users/s` })));
    if (accNote) out.push(accNote);
    for (const x of acc.runs) for (const err of x.errors.slice(0, 2)) out.push(`\n> ${x.kind}: ${err.replaceAll('\n', ' ')}`);
    const probes = acc.runs.filter((x) => x.cli);
    if (probes.length) {
      out.push('');
      out.push(`What the CLI's own process costs (the last run of each, ${probes[0].cli.n} existing users one at a time, medians): log-in + PUT 4 KiB + quit`);
      out.push('');
      out.push('| state store | through the library, wall ms | `ferry connect` process, wall ms | its client CPU ms | `ferry --version` alone, wall ms | its CPU ms |');
      out.push('|---|---|---|---|---|---|');
      for (const x of probes) out.push(`| ${x.kind} | ${f0(1000 * x.cli.lib)} | ${f0(1000 * x.cli.cliWall)} | ${f0(1000 * x.cli.cliCpu)} | ${f0(1000 * x.cli.startWall)} | ${f0(1000 * x.cli.startCpu)} |`);
      const cliCpu = median(probes.map((x) => x.cli.cliCpu));
      const serverPerUser = median(acc.runs.map((x) => x.serverCpu / x.users));
      out.push('');
      out.push(`Driven by \`ferry connect\` (one process to sign up, one to log in and PUT), each user would cost the client side ~${f0(2000 * cliCpu)} ms of CPU in two processes — ${2 * cliCpu > 1.1 * serverPerUser ? 'more than' : 2 * cliCpu > 0.9 * serverPerUser ? 'about as much as' : 'besides'} the server's ~${f0(1000 * serverPerUser)} ms — on the same cores as the server, so that a CLI-driven figure would measure the CLI's start-up ${2 * cliCpu > 0.9 * serverPerUser ? 'as much as' : 'beside'} the server. Through the library the client side costs ${f0(median(acc.runs.map((x) => (1000 * x.clientCpu) / x.users)))} ms per user.`);
    }
    out.push('');
  }
  return out.join('\n');
}

const BEGIN = '<!-- bench-scaleout:begin (written by npm run bench:scaleout -- --write; edit outside these markers) -->';
const BEGIN_MARK = '<!-- bench-scaleout:begin';
const END = '<!-- bench-scaleout:end -->';
const HEADING = `## Several servers behind a balancer

\`npm run bench:scaleout\` (scripts/bench/scaleout.mjs; about 4 minutes, \`--quick\` about 1) measures ferry serve
scaled out — \`--db\` (PostgreSQL), \`--storage s3://\` and \`--proxy-protocol\` behind HAProxy — against one server,
and the state store alone (the data directory against PostgreSQL) under sign-ups and log-ins. It uses PostgreSQL and
the object store named by DATABASE_URL and S3_ENDPOINT, or starts its own (scripts/services/). This machine has two
cores: a second server cannot add CPU here, so what the first table can show is that two servers work as one and do
not slow uploads down, not that they speed them up. **Figures from runs started at a load average above 1.5 are not
headline figures** (this machine is shared): the tables give the load at the start of every run and the share of the
CPU other work used just before and after it, which tells other work from the benchmark's own previous run.
`;
/** Replaces what docs/benchmarks.md holds between the scale-out markers (the section is added at the end when missing). */
function writeSection(text) {
  const doc = join(ROOT, 'docs/benchmarks.md');
  let cur = readFileSync(doc, 'utf8');
  if (!cur.includes(BEGIN_MARK)) cur = cur.replace(/\n*$/, '\n\n') + `${HEADING}\n${BEGIN}\n${END}\n`;
  const b = cur.indexOf(BEGIN_MARK), bEnd = cur.indexOf('\n', b), e = cur.indexOf(END);
  if (e < bEnd) throw new Error('docs/benchmarks.md: the bench-scaleout markers are out of order');
  writeFileSync(doc, cur.slice(0, bEnd + 1) + text.trimEnd() + '\n' + cur.slice(e));
  log('wrote', doc);
}

// ------------------------------------------------------------------------------------------ main
async function main() {
  const saved = option('--render', null);
  if (saved) {
    const { meta, up, acc } = JSON.parse(readFileSync(saved, 'utf8'));
    const text = report(meta, up, acc);
    process.stdout.write(text + '\n');
    if (WRITE) writeSection(text);
    return;
  }
  const started = new Date();
  const load0 = loadavg()[0];
  if (!existsSync('/usr/sbin/haproxy') && spawnSync('sh', ['-c', 'command -v haproxy'], { stdio: 'ignore' }).status !== 0) {
    if (process.getuid?.() === 0) execFileSync('bash', [HAPROXY_SH, 'install'], { stdio: 'inherit', timeout: 300_000 });
    else throw new Error('haproxy is not installed: scripts/services/haproxy.sh install (as root)');
  }
  rmSync(T, { recursive: true, force: true });
  mkdirSync(T, { recursive: true });
  snapshotBinary();
  const version = (await ferry(['--version'], { env: process.env, timeoutMs: 60_000 })).out.trim().split('\n').pop();
  const git = (a) => { try { return execFileSync('git', a, { cwd: ROOT, encoding: 'utf8' }).trim(); } catch { return ''; } };
  const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', 'src', 'plugins']) ? ' (with uncommitted changes in src/ or plugins/)' : '';
  const commit = (git(['rev-parse', '--short', 'HEAD']) || '?') + dirty;
  log(`ferry: ${version} (${CLI}); ${RUNS} run(s) per configuration; ${CLIENTS} x ${SIZE / MiB} MiB; ${USERS} users, ${CONCURRENCY} at once; load ${f2(loadavg()[0])}`);
  const svc = await services({ store: ONLY !== 'accounts' });
  const up = ONLY === 'accounts' ? null : await uploads(svc);
  const acc = ONLY === 'uploads' ? null : await accounts(svc);
  const minutes = (Date.now() - started.getTime()) / 60_000;
  const meta = { load0, started: started.toISOString().replace(/\.\d+Z$/, 'Z'), minutes, commit, version, built: ferryBuilt?.toISOString() ?? null, cli: CLI, clients: CLIENTS, size: SIZE, users: USERS, concurrency: CONCURRENCY, cpus: cpus().length, cpuModel: cpus()[0]?.model?.trim() ?? '?', argv: args.filter((a, i) => a !== '--write' && !a.startsWith('--json') && args[i - 1] !== '--json').join(' ') };
  const json = option('--json', null);
  if (json) writeFileSync(json, JSON.stringify({ meta, up, acc }, null, 1));
  const text = report(meta, up, acc);
  process.stdout.write(text + '\n');
  if (WRITE) writeSection(text);
}

main().then(
  async () => { await cleanup(); },
  async (err) => {
    if (stopping) return; // a signal: its handler cleans up and exits
    console.error('[scaleout] failed:', err?.stack ?? err);
    await cleanup();
    process.exit(1);
  },
);
