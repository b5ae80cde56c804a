#!/usr/bin/env node
// ferry side by side with scp, sftp, FTP (vsftpd with curl and lftp) and raw TCP (socat) on loopback.
// Every peer runs from a throwaway directory with its own config, keys and port; no system service is
// touched. Every run is verified (size + SHA-256 of every file) or it does not count.
//
//   npm run bench                 full run, writes docs/benchmarks.md (between the bench markers)
//   npm run bench -- --quick      short run (< 2 min: 256 MiB, one run each, no 100 MiB or disk run, 10 clients),
//                                 prints the tables; add --write to update the doc
//   options: --only up1g,treeup,...  run only some workloads (names in WORKLOADS below); --keep keeps the temp dir
//   npm run bench -- --only s3    ferry on an object store (Swift, started by scripts/services/swift.sh unless
//                                 S3_ENDPOINT and AWS_* are set) against the AWS SDK moving the same files
//                                 directly (scripts/bench/s3-sdk.mjs); writes its own section of the doc
//
// Needs root for apt-get when a tool is missing (otherwise the peer is skipped with a note), Linux /proc.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync, copyFileSync } from 'node:fs';
import { cpus, loadavg, userInfo } from 'node:os';
import { join, resolve, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
/** `ferry batch` runs with its default concurrency (read from the source, so that the note in the tables stays true). */
const DEFAULT_CONCURRENCY = Number(/DEFAULT_CONCURRENCY = (\d+)/.exec(readFileSync(new URL('../../src/batch/manifest.ts', import.meta.url), 'utf8'))?.[1]);
const WRITE = !QUICK || args.includes('--write');
const KEEP = args.includes('--keep');
const onlyArg = args.find((a) => a.startsWith('--only'));
const ONLY = onlyArg ? (onlyArg.includes('=') ? onlyArg.split('=')[1] : args[args.indexOf(onlyArg) + 1]).split(',') : null;

const MiB = 1024 * 1024;
const CFG = QUICK
  ? { big: 256 * MiB, bigRuns: 1, midRuns: 2, dirRuns: 1, warm: false, files: 2000, conc: 10, concSize: 20 * MiB, rssSizes: [256 * MiB, 1024 * MiB], connRuns: 3 }
  : { big: 1024 * MiB, bigRuns: 3, midRuns: 3, dirRuns: 3, warm: false, files: 2000, conc: 50, concSize: 20 * MiB, rssSizes: [1024 * MiB, 4096 * MiB], connRuns: 7 };

const FERRY = join(ROOT, 'dist/ferry');
const PASSWORD = 'bench-' + randomBytes(6).toString('hex');
const USER = userInfo().username;
const SHM = existsSync('/dev/shm') ? '/dev/shm' : '/tmp';
const T = join(SHM, `ferry-bench-${process.pid}`);
const DISK = join('/var/tmp', `ferry-bench-${process.pid}`);
const TICK = 100; // USER_HZ
const log = (...a) => console.error('[bench]', ...a);
const children = new Set();
const notes = [];

// ---------------------------------------------------------------------------------------------- tools
function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0 || existsSync(cmd);
}
function ensureTools() {
  const want = { '/usr/sbin/sshd': 'openssh-server', ssh: 'openssh-client', scp: 'openssh-client', sftp: 'openssh-client', rsync: 'rsync', '/usr/sbin/vsftpd': 'vsftpd', lftp: 'lftp', socat: 'socat', curl: 'curl', '/usr/bin/time': 'time' };
  const missing = [...new Set(Object.entries(want).filter(([c]) => !have(c)).map(([, p]) => p))];
  if (missing.length && process.getuid?.() === 0 && have('apt-get')) {
    log('installing', missing.join(' '));
    spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing.join(' ')}`], { stdio: 'inherit' });
  }
  const avail = {
    ssh: have('/usr/sbin/sshd') && have('scp') && have('sftp') && have('ssh-keygen'),
    rsync: have('rsync') && have('/usr/sbin/sshd'),
    ftp: have('/usr/sbin/vsftpd') && have('curl'),
    lftp: have('/usr/sbin/vsftpd') && have('lftp'),
    socat: have('socat'),
  };
  for (const [k, v] of Object.entries(avail)) if (!v) notes.push(`${k} peer skipped: tool missing and could not be installed`);
  if (!have('/usr/bin/time')) throw new Error('/usr/bin/time (GNU time) is needed');
  return avail;
}

// ------------------------------------------------------------------------------------------- helpers
async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function procStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return { self: (Number(f[11]) + Number(f[12])) / TICK, kids: (Number(f[13]) + Number(f[14])) / TICK };
  } catch { return { self: 0, kids: 0 }; }
}
function status(pid, key) {
  try { const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8')); return m ? Number(m[1]) * 1024 : 0; } catch { return 0; }
}
function childrenOf(pid) {
  const out = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (c) for (const p of c.split(/\s+/)) { out.push(Number(p)); out.push(...childrenOf(Number(p))); }
    }
  } catch { /* gone */ }
  return out;
}
function resetPeak(pid) { try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); } catch { /* not allowed */ } }

/** Samples the RSS of a process tree every 25 ms; peak() is the largest sum seen (and VmHWM of the root). */
function rssSampler(pid) {
  let peak = 0;
  const tick = () => {
    let sum = status(pid, 'VmRSS');
    for (const c of childrenOf(pid)) sum += status(c, 'VmRSS');
    peak = Math.max(peak, sum);
  };
  tick();
  const timer = setInterval(tick, 25);
  return { stop() { clearInterval(timer); tick(); return Math.max(peak, childrenOf(pid).length ? 0 : status(pid, 'VmHWM')); } };
}

/** Runs a command under GNU time; resolves with wall seconds, client CPU seconds and peak RSS. */
function timed(cmd, argv, { input, env, cwd } = {}) {
  const tf = join(T, `time-${Math.random().toString(36).slice(2)}`);
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', tf, cmd, ...argv], { env: { ...process.env, ...env }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
    child.on('error', rej);
    child.on('close', (code) => {
      children.delete(child);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      let cpu = 0, rss = 0;
      try { const [, u, s, m] = readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number); cpu = u + s; rss = m * 1024; rmSync(tf); } catch { /* no time output */ }
      if (code !== 0) return rej(new Error(`${cmd} ${argv.join(' ')} exited ${code}: ${out.slice(-2000)}`));
      res({ wall, cpu, rss, out });
    });
  });
}
function bg(cmd, argv, opts = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(child);
  child.output = '';
  child.stdout.on('data', (d) => { child.output += d; });
  child.stderr.on('data', (d) => { child.output += d; });
  child.on('exit', () => children.delete(child));
  return child;
}
async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await pred()) return; await sleep(20); }
  throw new Error(`timed out waiting for ${what}`);
}
async function waitNoChildren(pid, ms = 3000) {
  const end = Date.now() + ms;
  while (Date.now() < end && childrenOf(pid).length) await sleep(10);
}

// -------------------------------------------------------------------------------------- data + verify
function makeFile(path, size) {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'w');
  const block = randomBytes(4 * MiB);
  for (let at = 0; at < size; at += block.length) { randomBytes(64).copy(block, 0); writeSync(fd, block, 0, Math.min(block.length, size - at)); }
  closeSync(fd);
}
function sha256File(path) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 * MiB }).on('data', (d) => h.update(d)).on('end', () => res(h.digest('hex'))).on('error', rej);
  });
}
async function fingerprintOf(path) {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return null;
  if (st.isFile()) return `${st.size}:${await sha256File(path)}`;
  const h = createHash('sha256');
  const walk = (d) => readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1)).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  const files = walk(path);
  for (const f of files) h.update(`${relative(path, f)}\0${readFileSync(f).length}\0${createHash('sha256').update(readFileSync(f)).digest('hex')}\n`);
  return `${files.length} files:${h.digest('hex')}`;
}

/**
 * A real tree for the tree workloads: the regular files and folders of /usr/include (the C headers of the
 * installed -dev packages: thousands of files of mixed sizes in hundreds of folders), or of /usr/share/doc where
 * /usr/include is nearly empty (both exist on every Debian machine), copied to `dest` (symlinks left out, so every
 * tool moves the same files).
 */
function realTree(dest) {
  const count = (d) => { try { return readdirSync(d, { recursive: true }).length; } catch { return 0; } };
  const from = count('/usr/include') >= 2000 ? '/usr/include' : '/usr/share/doc';
  let files = 0, dirs = 0, bytes = 0;
  const copy = (src, dst) => {
    mkdirSync(dst, { recursive: true });
    dirs++;
    for (const e of readdirSync(src, { withFileTypes: true })) {
      if (e.isDirectory()) copy(join(src, e.name), join(dst, e.name));
      else if (e.isFile()) { copyFileSync(join(src, e.name), join(dst, e.name)); files++; bytes += statSync(join(dst, e.name)).size; }
    }
  };
  copy(from, dest);
  return { from, files, dirs, bytes };
}

// --------------------------------------------------------------------------------------------- peers
async function startFerry(dataDir, extraArgs = []) {
  const home = join(T, 'ferry-home');
  mkdirSync(home, { recursive: true });
  const env = { ...process.env, FERRY_HOME: home, NO_COLOR: '1' };
  delete env.FERRY_SCRYPT_N; // real password cost
  execFileSync(FERRY, ['user', 'add', 'bench', '--data', dataDir], { env: { ...env, FERRY_PASSWORD: PASSWORD }, stdio: 'ignore' });
  const port = await freePort();
  const proc = bg(FERRY, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, ...extraArgs], { env });
  await waitFor(() => /fingerprint (SHA256:\S+)/.test(proc.output), 30000, 'ferry serve banner');
  const fingerprint = /fingerprint (SHA256:\S+)/.exec(proc.output)[1];
  const cenv = { FERRY_HOME: home, NO_COLOR: '1', FERRY_PASSWORD: PASSWORD };
  const homeDir = join(dataDir, 'homes', 'bench');
  const connect = (commands) => timed(FERRY, ['connect', `127.0.0.1:${port}`, '--user', 'bench', '--fingerprint', fingerprint], { input: commands.join('\n') + '\n', env: cenv });
  const batch = (manifest) => timed(FERRY, ['batch', '-'], { input: JSON.stringify(manifest), env: cenv });
  const manifest = (ops) => ({ server: `127.0.0.1:${port}`, fingerprint, user: 'bench', password: '${FERRY_PASSWORD}', retries: 0, ops }); // the default concurrency
  return { proc, pid: proc.pid, port, homeDir, connect, batch, manifest, stop: () => proc.kill('SIGTERM') };
}

async function startSshd() {
  const d = join(T, 'ssh');
  mkdirSync(d, { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'client_key')]);
  copyFileSync(join(d, 'client_key.pub'), join(d, 'authorized_keys'));
  const port = await freePort();
  writeFileSync(join(d, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(d, 'host_key')}`, `PidFile ${join(d, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(d, 'authorized_keys')}`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'UsePAM no', 'StrictModes no', 'PermitRootLogin yes', 'Subsystem sftp /usr/lib/openssh/sftp-server', 'LogLevel ERROR',
    'MaxStartups 200', 'MaxSessions 200', 'UseDNS no', '',
  ].join('\n'));
  mkdirSync('/run/sshd', { recursive: true }); // privilege-separation directory sshd insists on
  const proc = bg('/usr/sbin/sshd', ['-D', '-e', '-f', join(d, 'sshd_config')]);
  const common = ['-F', '/dev/null', '-i', join(d, 'client_key'), '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=/dev/null`, '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
  await waitFor(() => new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); }), 10000, 'sshd');
  return {
    pid: proc.pid, port,
    scp: (cipher, from, to, recursive) => timed('scp', [...common, '-q', '-P', String(port), ...(cipher ? ['-c', cipher] : []), ...(recursive ? ['-r'] : []), from, to]),
    sftp: (cipher, commands) => timed('sftp', [...common, '-q', '-P', String(port), ...(cipher ? ['-c', cipher] : []), '-b', '-', `${USER}@127.0.0.1`], { input: commands.join('\n') + '\n' }),
    /** rsync -a over this sshd (the ssh command line as `-e`). */
    rsync: (from, to) => timed('rsync', ['-a', '-e', ['ssh', ...common, '-p', String(port)].join(' '), from, to]),
    /** A shell pipeline on the client with `SSH` standing for the ssh command to this server. */
    shell: (pipeline) => timed('bash', ['-c', pipeline.replaceAll('SSH', ['ssh', ...common, '-p', String(port), `${USER}@127.0.0.1`].join(' '))]),
    remote: (p) => `${USER}@127.0.0.1:${p}`,
    stop: () => proc.kill('SIGTERM'),
  };
}

async function startVsftpd(root) {
  const d = join(T, 'ftp');
  mkdirSync(join(d, 'empty'), { recursive: true });
  mkdirSync(root, { recursive: true });
  const port = await freePort();
  const pasv = 40000 + Math.floor(Math.random() * 20000);
  writeFileSync(join(d, 'vsftpd.conf'), [
    'listen=YES', 'listen_ipv6=NO', 'listen_address=127.0.0.1', `listen_port=${port}`, 'background=NO', 'run_as_launching_user=YES',
    'anonymous_enable=YES', 'local_enable=NO', `anon_root=${root}`, 'no_anon_password=YES', 'write_enable=YES', 'anon_upload_enable=YES',
    'anon_mkdir_write_enable=YES', 'anon_other_write_enable=YES', 'anon_world_readable_only=NO', 'seccomp_sandbox=NO',
    'pasv_enable=YES', `pasv_min_port=${pasv}`, `pasv_max_port=${pasv + 200}`, `secure_chroot_dir=${join(d, 'empty')}`,
    'xferlog_enable=NO', 'dirmessage_enable=NO', 'connect_from_port_20=NO', 'max_clients=0', 'max_per_ip=0', 'anon_umask=022', '',
  ].join('\n'));
  const proc = bg('/usr/sbin/vsftpd', [join(d, 'vsftpd.conf')]);
  await waitFor(() => new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); }), 10000, 'vsftpd');
  const url = (p) => `ftp://anonymous:x@127.0.0.1:${port}/${p}`;
  return {
    pid: proc.pid, port, root,
    curlUp: (from, to) => timed('curl', ['-sS', '--ftp-pasv', '-T', from, url(to)]),
    curlDown: (from, to) => timed('curl', ['-sS', '--ftp-pasv', '-o', to, url(from)]),
    curlQuit: () => timed('curl', ['-sS', '--ftp-pasv', '-o', '/dev/null', url('')]),
    lftp: (script) => timed('lftp', ['-u', 'anonymous,x', '-p', String(port), '-e', `set ftp:passive-mode on; set net:max-retries 1; set cmd:fail-exit yes; ${script}; bye`, '127.0.0.1']),
    stop: () => proc.kill('SIGTERM'),
  };
}

/** socat raw TCP copy: a listener and a connector (with retry), both timed; the sender is the "client". */
async function socatCopy(senderCmd, receiverCmd) {
  const port = await freePort();
  const t0 = process.hrtime.bigint();
  const recv = timed('bash', ['-c', receiverCmd.replaceAll('PORT', String(port))]);
  const send = timed('bash', ['-c', senderCmd.replaceAll('PORT', String(port))]);
  const [s, r] = await Promise.all([send, recv]);
  return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: s.cpu, rss: s.rss, serverCpu: r.cpu, serverRss: r.rss };
}

// ------------------------------------------------------------------------------------------- measure
/**
 * One measured run: prepare() outside the clock, run() timed, the server's CPU (own + reaped children)
 * and RSS (tree sampled; VmHWM for ferry) measured around it, then verify() or the run does not count.
 */
async function measure(peer, server, prepare, run, dest, expected, verify) {
  await prepare?.();
  let cpu0 = 0, sampler = null;
  if (server) { await waitNoChildren(server.pid); resetPeak(server.pid); const s = procStat(server.pid); cpu0 = s.self + s.kids; sampler = rssSampler(server.pid); }
  const r = await run();
  let serverCpu = r.serverCpu ?? null, serverRss = r.serverRss ?? null;
  if (server) {
    await waitNoChildren(server.pid);
    serverRss = sampler.stop();
    const s = procStat(server.pid); serverCpu = s.self + s.kids - cpu0;
  }
  const got = verify ? await verify() : await fingerprintOf(dest);
  if (got !== expected) throw new Error(`${peer}: verification failed for ${dest}: got ${got}, want ${expected}`);
  return { wall: r.wall, cpu: r.cpu, rss: r.rss, serverCpu, serverRss };
}

const results = []; // { workload, peer, runs: [...], failed }
function record(workload, peer, bytes, note) {
  let e = results.find((x) => x.workload === workload && x.peer === peer);
  if (!e) { e = { workload, peer, bytes, note, runs: [], errors: [] }; results.push(e); }
  return e;
}

async function rounds(workload, bytes, peers, runs, warm) {
  // Round-robin over the peers so that drift on a shared machine hits all of them alike.
  for (let i = warm ? -1 : 0; i < runs; i++) {
    for (const p of peers) {
      const e = record(workload, p.name, bytes, p.note);
      try {
        const r = await measure(p.name, p.server, p.prepare, p.run, p.dest, p.expected, p.verify);
        if (i >= 0) e.runs.push(r);
        log(`${workload} ${p.name}${i < 0 ? ' (warm-up)' : ''}: ${r.wall.toFixed(3)} s`);
      } catch (err) {
        e.errors.push(String(err.message).slice(0, 300));
        log(`${workload} ${p.name}: FAILED ${String(err.message).slice(0, 300)}`);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------- report
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
const fmtS = (s) => (s == null || Number.isNaN(s) ? '—' : s < 1 ? s.toFixed(3) : s.toFixed(2));
const fmtMB = (b) => (b == null || !b ? '—' : (b / 1e6).toFixed(0));
function table(workload) {
  const rows = results.filter((r) => r.workload === workload);
  if (!rows.length) return '';
  const ferry = rows.find((r) => r.peer.startsWith('ferry'));
  const fm = ferry && ferry.runs.length ? median(ferry.runs.map((r) => r.wall)) : NaN;
  const lines = ['| Tool | runs | median s | min s | max s | MB/s | client CPU s | server CPU s | client peak RSS MB | server peak RSS MB | ferry time ÷ this |', '|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const w = r.runs.map((x) => x.wall);
    const m = median(w);
    const mbps = r.bytes && r.runs.length ? (r.bytes / m / 1e6).toFixed(0) : '—';
    const ratio = r === ferry || !r.runs.length || Number.isNaN(fm) ? '' : `${(fm / m).toFixed(2)} (ferry ${m > fm ? `${(m / fm).toFixed(2)}x faster` : `${(fm / m).toFixed(2)}x slower`})`;
    lines.push(`| ${r.peer}${r.note ? ` (${r.note})` : ''} | ${r.runs.length}${r.errors.length ? ` (+${r.errors.length} failed)` : ''} | ${fmtS(m)} | ${fmtS(Math.min(...w))} | ${fmtS(Math.max(...w))} | ${mbps} | ${fmtS(median(r.runs.map((x) => x.cpu)))} | ${fmtS(median(r.runs.map((x) => x.serverCpu ?? NaN)))} | ${fmtMB(median(r.runs.map((x) => x.rss)))} | ${fmtMB(median(r.runs.map((x) => x.serverRss ?? NaN)))} | ${ratio} |`);
  }
  for (const r of rows) for (const e of r.errors.slice(0, 2)) lines.push(`\n> ${r.peer} failure: ${e.replaceAll('\n', ' ')}`);
  return lines.join('\n');
}

// ------------------------------------------------------------------------------------------- main
const WORKLOADS = ['up1g', 'down1g', 'up100m', 'down100m', 'dirup', 'dirdown', 'treeup', 'treedown', 'connect', 'disk1g', 'concurrent', 'rss', 's3'];
// --quick skips the 100 MiB and disk workloads (the 256 MiB file stands in for both) to stay under 2 minutes.
const QUICK_SKIP = ['up100m', 'down100m', 'disk1g'];
const want = (w) => (ONLY ? ONLY.includes(w) : w !== 's3' && !(QUICK && QUICK_SKIP.includes(w)));
/** The object-store workloads' tables are named so (their own section of the doc). */
const S3_TAG = 'object store: ';

async function main() {
  const started = new Date();
  const avail = ensureTools();
  if (!existsSync(FERRY)) { log('building dist/ferry'); execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' }); }
  const ferryVersion = execFileSync(FERRY, ['--version']).toString().trim();
  rmSync(T, { recursive: true, force: true });
  mkdirSync(T, { recursive: true });
  const loads = [];
  const loadTimer = setInterval(() => loads.push(loadavg()[0]), 5000);

  const onlyS3 = ONLY !== null && ONLY.every((w) => w === 's3');
  const ferry = await startFerry(join(T, 'ferry-data'));
  const ssh = avail.ssh && !onlyS3 ? await startSshd() : null;
  const ftpRoot = join(T, 'ftp-root');
  const ftp = (avail.ftp || avail.lftp) && !onlyS3 ? await startVsftpd(ftpRoot) : null;
  const sshDir = join(T, 'ssh-dest');
  mkdirSync(sshDir, { recursive: true });
  const local = join(T, 'local');
  mkdirSync(local, { recursive: true });
  log(`ferry ${ferry.port}, sshd ${ssh?.port}, vsftpd ${ftp?.port}; data in ${T}`);

  // ---- single files, up and down
  async function fileWorkloads(tag, size, runs, warm, base = T, fserver = ferry) {
    const src = join(base, `src-${tag}.bin`);
    makeFile(src, size);
    const expected = await fingerprintOf(src);
    const name = `f-${tag}.bin`;
    const fdest = join(fserver.homeDir, name), sdest = join(base === T ? sshDir : base, name), qdest = join(ftpRoot, name);
    const rmf = (p) => () => rmSync(p, { force: true });
    const up = [
      { name: 'ferry', server: fserver, prepare: rmf(fdest), run: () => fserver.connect([`UPLD ${src} ${name}`, 'QUIT']), dest: fdest },
    ];
    if (ssh) up.push(
      { name: 'scp', server: ssh, prepare: rmf(sdest), run: () => ssh.scp(null, src, ssh.remote(sdest)), dest: sdest },
      { name: 'scp aes128-gcm', server: ssh, prepare: rmf(sdest), run: () => ssh.scp('aes128-gcm@openssh.com', src, ssh.remote(sdest)), dest: sdest },
      { name: 'sftp', server: ssh, prepare: rmf(sdest), run: () => ssh.sftp(null, [`put ${src} ${sdest}`]), dest: sdest },
      { name: 'sftp aes128-gcm', server: ssh, prepare: rmf(sdest), run: () => ssh.sftp('aes128-gcm@openssh.com', [`put ${src} ${sdest}`]), dest: sdest },
    );
    if (ftp && avail.ftp && base === T) up.push({ name: 'FTP curl', note: 'unencrypted', server: ftp, prepare: rmf(qdest), run: () => ftp.curlUp(src, name), dest: qdest });
    if (avail.socat) up.push({ name: 'socat raw TCP', note: 'unencrypted, yardstick', prepare: rmf(sdest), run: () => socatCopy(`socat -u -b 1048576 OPEN:${src},rdonly TCP:127.0.0.1:PORT,retry=200,interval=0.01`, `socat -u -b 1048576 TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr OPEN:${sdest},creat,trunc,wronly`), dest: sdest });
    for (const p of up) p.expected = expected;
    const upName = `${base === T ? '' : 'disk '}upload ${size >= 1024 * MiB ? size / (1024 * MiB) + ' GiB' : size / MiB + ' MiB'}`;
    if (tag !== 'disk' ? want(size === CFG.big ? 'up1g' : 'up100m') : want('disk1g')) await rounds(upName, size, up, runs, warm);
    if (tag === 'disk') return rmSync(src, { force: true });
    // down: the server side holds the file
    for (const p of [fdest, sdest, qdest]) if (ftp || p !== qdest) copyFileSync(src, p);
    const ldest = join(local, name);
    const down = [{ name: 'ferry', server: fserver, prepare: rmf(ldest), run: () => fserver.connect([`DWLD ${name} ${ldest}`, 'QUIT']), dest: ldest }];
    if (ssh) down.push(
      { name: 'scp', server: ssh, prepare: rmf(ldest), run: () => ssh.scp(null, ssh.remote(sdest), ldest), dest: ldest },
      { name: 'scp aes128-gcm', server: ssh, prepare: rmf(ldest), run: () => ssh.scp('aes128-gcm@openssh.com', ssh.remote(sdest), ldest), dest: ldest },
      { name: 'sftp', server: ssh, prepare: rmf(ldest), run: () => ssh.sftp(null, [`get ${sdest} ${ldest}`]), dest: ldest },
      { name: 'sftp aes128-gcm', server: ssh, prepare: rmf(ldest), run: () => ssh.sftp('aes128-gcm@openssh.com', [`get ${sdest} ${ldest}`]), dest: ldest },
    );
    if (ftp && avail.ftp) down.push({ name: 'FTP curl', note: 'unencrypted', server: ftp, prepare: rmf(ldest), run: () => ftp.curlDown(name, ldest), dest: ldest });
    if (avail.socat) down.push({ name: 'socat raw TCP', note: 'unencrypted, yardstick', prepare: rmf(ldest), run: () => socatCopy(`socat -u -b 1048576 OPEN:${sdest},rdonly TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr`, `socat -u -b 1048576 TCP:127.0.0.1:PORT,retry=200,interval=0.01 OPEN:${ldest},creat,trunc,wronly`), dest: ldest });
    for (const p of down) p.expected = expected;
    if (want(size === CFG.big ? 'down1g' : 'down100m')) await rounds(upName.replace('upload', 'download'), size, down, runs, warm);
    for (const p of [src, fdest, sdest, qdest, ldest]) rmSync(p, { force: true });
  }
  if (want('up1g') || want('down1g')) await fileWorkloads('big', CFG.big, CFG.bigRuns, CFG.warm);
  if (want('up100m') || want('down100m')) await fileWorkloads('mid', 100 * MiB, CFG.midRuns, true);

  // ---- 2,000 files of 4 KiB
  if (want('dirup') || want('dirdown')) {
    const srcDir = join(T, 'tree');
    for (let i = 0; i < CFG.files; i++) { const sub = join(srcDir, `d${i % 20}`); mkdirSync(sub, { recursive: true }); writeFileSync(join(sub, `f${i}.dat`), randomBytes(4096)); }
    const expected = await fingerprintOf(srcDir);
    const bytes = CFG.files * 4096;
    const fdest = join(ferry.homeDir, 'tree'), sdest = join(sshDir, 'tree'), qdest = join(ftpRoot, 'tree'), ldest = join(local, 'tree');
    const rmd = (p) => () => rmSync(p, { recursive: true, force: true });
    const up = [{ name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: ferry, prepare: rmd(fdest), run: () => ferry.batch(ferry.manifest([{ put: srcDir, to: '/' }])), dest: fdest }];
    if (ssh) up.push(
      { name: 'sftp -b put -r', server: ssh, prepare: rmd(sdest), run: () => ssh.sftp(null, [`put -r ${srcDir} ${sdest}`]), dest: sdest },
      { name: 'scp -r', server: ssh, prepare: rmd(sdest), run: () => ssh.scp(null, srcDir, ssh.remote(sshDir + '/'), true), dest: sdest },
    );
    if (ftp && avail.lftp) up.push({ name: 'lftp mirror -R --parallel=8', note: 'FTP, unencrypted', server: ftp, prepare: rmd(qdest), run: () => ftp.lftp(`mirror -R --parallel=8 ${srcDir} tree`), dest: qdest });
    if (avail.socat) up.push({ name: 'tar | socat', note: 'unencrypted, yardstick', prepare: () => { rmd(sdest)(); mkdirSync(sdest); }, run: () => socatCopy(`tar -C ${srcDir} -cf - . | socat -u -b 1048576 STDIN TCP:127.0.0.1:PORT,retry=200,interval=0.01`, `socat -u -b 1048576 TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr STDOUT | tar -C ${sdest} -xf -`), dest: sdest });
    for (const p of up) p.expected = expected;
    if (want('dirup')) await rounds(`upload ${CFG.files} files of 4 KiB`, bytes, up, CFG.dirRuns, !QUICK);
    // down: every server holds the tree
    for (const p of [fdest, sdest, qdest]) { rmSync(p, { recursive: true, force: true }); execFileSync('cp', ['-r', srcDir, p]); }
    const down = [{ name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: ferry, prepare: rmd(ldest), run: () => ferry.batch(ferry.manifest([{ get: 'tree', to: local + '/' }])), dest: ldest }];
    if (ssh) down.push(
      { name: 'sftp -b get -r', server: ssh, prepare: rmd(ldest), run: () => ssh.sftp(null, [`get -r ${sdest} ${ldest}`]), dest: ldest },
      { name: 'scp -r', server: ssh, prepare: rmd(ldest), run: () => ssh.scp(null, ssh.remote(sdest), local + '/', true), dest: ldest },
    );
    if (ftp && avail.lftp) down.push({ name: 'lftp mirror --parallel=8', note: 'FTP, unencrypted', server: ftp, prepare: rmd(ldest), run: () => ftp.lftp(`mirror --parallel=8 tree ${ldest}`), dest: ldest });
    if (avail.socat) down.push({ name: 'tar | socat', note: 'unencrypted, yardstick', prepare: () => { rmd(ldest)(); mkdirSync(ldest); }, run: () => socatCopy(`tar -C ${sdest} -cf - . | socat -u -b 1048576 STDIN TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr`, `socat -u -b 1048576 TCP:127.0.0.1:PORT,retry=200,interval=0.01 STDOUT | tar -C ${ldest} -xf -`), dest: ldest });
    for (const p of down) p.expected = expected;
    if (want('dirdown')) await rounds(`download ${CFG.files} files of 4 KiB`, bytes, down, CFG.dirRuns, !QUICK);
    for (const p of [srcDir, fdest, sdest, qdest, ldest]) rmSync(p, { recursive: true, force: true });
  }

  // ---- a real tree: thousands of files of mixed sizes in hundreds of folders (see realTree)
  if (want('treeup') || want('treedown')) {
    const srcDir = join(T, 'realtree');
    const tree = realTree(srcDir);
    const expected = await fingerprintOf(srcDir);
    const what = `a real tree (${tree.files.toLocaleString('en')} files, ${tree.dirs} folders, ${(tree.bytes / 1e6).toFixed(0)} MB, from ${tree.from})`;
    const fdest = join(ferry.homeDir, 'realtree'), sdest = join(sshDir, 'realtree'), ldest = join(local, 'realtree');
    const rmd = (p) => () => rmSync(p, { recursive: true, force: true });
    const up = [{ name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: ferry, prepare: rmd(fdest), run: () => ferry.batch(ferry.manifest([{ put: srcDir, to: '/' }])), dest: fdest }];
    if (ssh) up.push({ name: 'sftp -b put -r', server: ssh, prepare: rmd(sdest), run: () => ssh.sftp(null, [`put -r ${srcDir} ${sdest}`]), dest: sdest });
    if (ssh && avail.rsync) up.push({ name: 'rsync -a -e ssh', server: ssh, prepare: rmd(sdest), run: () => ssh.rsync(srcDir, ssh.remote(sshDir + '/')), dest: sdest });
    if (ssh) up.push({ name: 'tar | ssh tar', note: 'one stream', server: ssh, prepare: () => { rmd(sdest)(); mkdirSync(sdest); }, run: () => ssh.shell(`tar -C ${srcDir} -cf - . | SSH tar -C ${sdest} -xf -`), dest: sdest });
    for (const p of up) p.expected = expected;
    if (want('treeup')) await rounds(`upload ${what}`, tree.bytes, up, CFG.dirRuns, !QUICK);
    for (const p of [fdest, sdest]) { rmSync(p, { recursive: true, force: true }); execFileSync('cp', ['-r', srcDir, p]); }
    const down = [{ name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: ferry, prepare: rmd(ldest), run: () => ferry.batch(ferry.manifest([{ get: 'realtree', to: local + '/' }])), dest: ldest }];
    if (ssh) down.push({ name: 'sftp -b get -r', server: ssh, prepare: rmd(ldest), run: () => ssh.sftp(null, [`get -r ${sdest} ${ldest}`]), dest: ldest });
    if (ssh && avail.rsync) down.push({ name: 'rsync -a -e ssh', server: ssh, prepare: rmd(ldest), run: () => ssh.rsync(ssh.remote(sdest), local + '/'), dest: ldest });
    if (ssh) down.push({ name: 'ssh tar | tar', note: 'one stream', server: ssh, prepare: () => { rmd(ldest)(); mkdirSync(ldest); }, run: () => ssh.shell(`SSH tar -C ${sdest} -cf - . | tar -C ${ldest} -xf -`), dest: ldest });
    for (const p of down) p.expected = expected;
    if (want('treedown')) await rounds(`download ${what}`, tree.bytes, down, CFG.dirRuns, !QUICK);
    for (const p of [srcDir, fdest, sdest, ldest]) rmSync(p, { recursive: true, force: true });
  }

  // ---- connect + authenticate + quit (verified: the command succeeded)
  if (want('connect')) {
    const marker = join(T, 'connect-ok');
    writeFileSync(marker, 'ok');
    const exp = await fingerprintOf(marker);
    const peers = [{ name: 'ferry', note: 'TLS 1.3 + scrypt N=2^15 log-in', server: ferry, run: () => ferry.connect(['QUIT']), dest: marker, expected: exp }];
    if (ssh) peers.push({ name: 'sftp', note: 'ed25519 key', server: ssh, run: () => ssh.sftp(null, ['quit']), dest: marker, expected: exp });
    if (ftp && avail.ftp) peers.push({ name: 'FTP curl', note: 'anonymous, unencrypted', server: ftp, run: () => ftp.curlQuit(), dest: marker, expected: exp });
    await rounds('connect + authenticate + quit', 0, peers, CFG.connRuns, true);
  }

  // ---- disk: the 1 GiB file from disk to disk
  if (want('disk1g') && ssh) {
    mkdirSync(DISK, { recursive: true });
    const dserver = await startFerry(join(DISK, 'ferry-data'));
    try { await fileWorkloads('disk', CFG.big, 1, false, DISK, dserver); } finally { dserver.stop(); }
  }

  // ---- 50 clients at once
  let concurrent = null;
  if (want('concurrent')) {
    const src = join(T, 'src-conc.bin');
    makeFile(src, CFG.concSize);
    const expected = await fingerprintOf(src);
    // All clients are one user from one address: raise the per-address and per-user caps (defaults 32 and 16),
    // which exist against abuse; this measures capacity.
    const ferry = await startFerry(join(T, 'ferry-conc'), ['--max-connections-per-address', String(CFG.conc + 10), '--max-transfers-per-user', String(CFG.conc + 10)]);
    await waitNoChildren(ferry.pid); resetPeak(ferry.pid);
    const s0 = procStat(ferry.pid);
    const sampler = rssSampler(ferry.pid);
    const t0 = process.hrtime.bigint();
    const outcomes = await Promise.allSettled(Array.from({ length: CFG.conc }, (_, i) => ferry.connect([`UPLD ${src} conc-${i}.bin`, 'QUIT'])));
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const peak = sampler.stop();
    const s1 = procStat(ferry.pid);
    let verified = 0;
    for (let i = 0; i < CFG.conc; i++) if ((await fingerprintOf(join(ferry.homeDir, `conc-${i}.bin`))) === expected) verified++;
    const failed = outcomes.filter((o) => o.status === 'rejected').map((o) => String(o.reason.message).slice(-200));
    concurrent = { clients: CFG.conc, size: CFG.concSize, wall, verified, serverCpu: s1.self - s0.self, peak, failed, args: '--max-connections-per-address ' + (CFG.conc + 10) + ' --max-transfers-per-user ' + (CFG.conc + 10) };
    log('concurrent', JSON.stringify(concurrent));
    ferry.stop();
    rmSync(join(T, 'ferry-conc'), { recursive: true, force: true });
    rmSync(src, { force: true });
  }

  const s3 = want('s3') ? await objectStore() : null;

  // ---- server RSS vs file size: each size received by a fresh server (what one transfer costs, not what a server
  // that served every workload above kept from them)
  const rss = [];
  if (want('rss')) {
    for (const size of CFG.rssSizes) {
      const src = join(T, `src-rss.bin`);
      makeFile(src, size);
      const expected = await fingerprintOf(src);
      const fresh = await startFerry(join(T, 'ferry-rss'));
      try {
        const dest = join(fresh.homeDir, 'rss.bin');
        const before = status(fresh.pid, 'VmRSS');
        const samples = [];
        const timer = setInterval(() => samples.push(status(fresh.pid, 'VmRSS')), 100);
        const r = await fresh.connect([`UPLD ${src} rss.bin`, 'QUIT']);
        clearInterval(timer);
        const ok = (await fingerprintOf(dest)) === expected;
        rss.push({ size, wall: r.wall, before, hwm: status(fresh.pid, 'VmHWM'), medianRss: median(samples), maxSampled: Math.max(...samples), ok });
        log('rss', JSON.stringify(rss.at(-1)));
      } finally {
        fresh.stop();
        await sleep(300);
        rmSync(join(T, 'ferry-rss'), { recursive: true, force: true });
        rmSync(src, { force: true });
      }
    }
  }

  clearInterval(loadTimer);
  ferry.stop(); ssh?.stop(); ftp?.stop();
  await sleep(300);

  // ---- write up
  const cpuModel = (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? 'unknown';
  const sshV = ssh ? spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim() : '—';
  const tools = [`ferry: \`${ferryVersion}\` (dist/ferry, the single executable with its embedded Node)`, `OpenSSH: ${sshV}`,
    ftp ? `vsftpd ${spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'vsftpd'], { encoding: 'utf8' }).stdout.trim()}, ${spawnSync('curl', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].split(' ').slice(0, 2).join(' ')}, lftp ${(/Version (\S+)/.exec(spawnSync('lftp', ['--version'], { encoding: 'utf8' }).stdout) ?? [])[1]}` : 'FTP: skipped',
    avail.socat ? spawnSync('socat', ['-V'], { encoding: 'utf8' }).stdout.split('\n').find((l) => /socat version/.test(l))?.trim() : 'socat: skipped'];
  const wl = [...new Set(results.map((r) => r.workload))].filter((w) => !w.startsWith(S3_TAG));
  const out = [];
  out.push(`Run: \`npm run bench${QUICK ? ' -- --quick' : ''}\`, ${started.toISOString().replace(/\.\d+Z/, 'Z')}, ${((Date.now() - started) / 60000).toFixed(1)} min.`);
  out.push(`Machine: ${cpus().length} vCPU (\`nproc\`), ${cpuModel}, ${(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))[1]) / 1048576).toFixed(0)} GiB RAM; load average during the run: median ${median(loads).toFixed(2)}, max ${Math.max(...loads, 0).toFixed(2)} (shared machine: ratios hold better than absolutes).`);
  out.push(`Data in ${SHM} (tmpfs) unless marked disk (${'/var/tmp'}); loopback 127.0.0.1. Each row: ${CFG.warm ? 'one warm-up run then ' : ''}the runs counted, peers interleaved round-robin; wall time includes process start, connection set-up and log-in; every run verified by size and SHA-256 of every file. MB = 10^6 bytes.`);
  out.push(`Server CPU = the daemon's own CPU plus the CPU of the per-connection children it reaped (sshd, sftp-server, vsftpd); server RSS = sampled sum over the daemon's process tree every 25 ms (ferry: one process, VmHWM reset before each run). For socat the "server" is the receiving (upload) / sending (download) socat.`);
  out.push('');
  out.push('Tools: ' + tools.join('; ') + '.');
  out.push('');
  for (const w of wl) { out.push(`### ${w}\n`); out.push(table(w)); out.push(''); }
  if (concurrent) {
    out.push(`### ${concurrent.clients} clients uploading ${concurrent.size / MiB} MiB each at once to one server\n\nOne user from one address, so the server runs with \`${concurrent.args}\` (the defaults, 32 and 32, are abuse limits).\n`);
    out.push(`| clients | verified | failed | total wall s | aggregate MB/s | server CPU s | server peak RSS MB |\n|---|---|---|---|---|---|---|`);
    out.push(`| ${concurrent.clients} | ${concurrent.verified} | ${concurrent.failed.length} | ${fmtS(concurrent.wall)} | ${(concurrent.clients * concurrent.size / concurrent.wall / 1e6).toFixed(0)} | ${fmtS(concurrent.serverCpu)} | ${fmtMB(concurrent.peak)} |`);
    for (const f of concurrent.failed.slice(0, 3)) out.push(`\n> failure: ${f.replaceAll('\n', ' ')}`);
    out.push('');
  }
  if (rss.length) {
    out.push(`### ferry server memory while receiving one file\n`);
    out.push('A fresh `ferry serve` for each file, which receives it through `ferry connect` (UPLD) and nothing else.\n');
    out.push('| file | verified | wall s | server VmRSS before MB | server VmHWM MB | server VmRSS median MB | server VmRSS max sampled MB |\n|---|---|---|---|---|---|---|');
    for (const r of rss) out.push(`| ${r.size / (1024 * MiB) >= 1 ? r.size / (1024 * MiB) + ' GiB' : r.size / MiB + ' MiB'} | ${r.ok ? 'yes' : 'NO'} | ${fmtS(r.wall)} | ${fmtMB(r.before)} | ${fmtMB(r.hwm)} | ${fmtMB(r.medianRss)} | ${fmtMB(r.maxSampled)} |`);
    out.push('');
  }
  if (notes.length) out.push('Notes: ' + notes.join('; ') + '\n');
  const text = out.join('\n');
  console.log(text);
  const s3Text = s3 ? objectStoreReport(s3, started, loads, ferryVersion) : '';
  if (s3Text) console.log(s3Text);
  if (WRITE) {
    if (!onlyS3) {
      writeFileSync(join(ROOT, 'scripts/bench/last-run.json'), JSON.stringify({ quick: QUICK, started, results: results.filter((r) => !r.workload.startsWith(S3_TAG)), concurrent, rss, loads }, null, 1));
      writeSection('<!-- bench:begin (written by npm run bench; edit outside these markers) -->', '<!-- bench:end -->', text);
    }
    if (s3) {
      writeFileSync(join(ROOT, 'scripts/bench/last-run-s3.json'), JSON.stringify({ quick: QUICK, started, results: results.filter((r) => r.workload.startsWith(S3_TAG)), rss: s3.rss, loads }, null, 1));
      writeSection('<!-- bench-s3:begin (written by npm run bench -- --only s3; edit outside these markers) -->', '<!-- bench-s3:end -->', s3Text);
    }
  }
}

/** Replaces what docs/benchmarks.md holds between two markers (added at the end when missing). */
function writeSection(begin, end, text) {
  const doc = join(ROOT, 'docs/benchmarks.md');
  let cur = existsSync(doc) ? readFileSync(doc, 'utf8') : '# Benchmarks\n';
  if (!cur.includes(begin)) cur += `\n${begin}\n${end}\n`;
  cur = cur.slice(0, cur.indexOf(begin) + begin.length) + '\n' + text + '\n' + cur.slice(cur.indexOf(end));
  writeFileSync(doc, cur);
  log('wrote', doc);
}

// ------------------------------------------------------------------------------------------- object store
/**
 * ferry serve --storage s3 against the AWS SDK (scripts/bench/s3-sdk.mjs) on the same store, round-robin: 1 GiB up
 * (SDK: lib-storage, 8 MiB parts, 4 at once, as ferry's driver) and down, 2,000 x 4 KiB up and down (SDK: one
 * PutObject / GetObject per file, as many at once as ferry batch's default concurrency), and the memory of a fresh
 * server receiving files of two sizes. Every run is verified: what was uploaded is read back from the store and
 * hashed, what was downloaded is hashed.
 */
async function objectStore() {
  const SDK = join(ROOT, 'scripts/bench/s3-sdk.mjs');
  let env = {};
  let swiftDir = null;
  if (process.env.S3_ENDPOINT && process.env.AWS_ACCESS_KEY_ID) {
    for (const k of ['S3_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) if (process.env[k]) env[k] = process.env[k];
  } else {
    const swift = join(ROOT, 'scripts/services/swift.sh');
    execFileSync('bash', [swift, 'install'], { stdio: 'inherit' });
    swiftDir = join('/var/tmp', `ferry-bench-swift-${process.pid}`);
    const lines = execFileSync('bash', [swift, 'start', swiftDir]).toString();
    for (const line of lines.split('\n')) { const m = /^(\w+)=(.*)$/.exec(line.trim()); if (m) env[m[1]] = m[2]; }
    log('swift started in', swiftDir);
  }
  const bucket = 'ferry-bench';
  execFileSync('node', [join(ROOT, 'scripts/services/s3-bucket.mjs'), bucket], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const sdk = (argv, extra = {}) => timed('node', [SDK, ...argv], { env: { ...env, ...extra } });
  const hashOf = async (key) => (await sdk(['hash', `s3://${bucket}/${key}`])).out.trim().split('\n').pop();
  const storeArgs = (prefix) => ['--storage', `s3://${bucket}/${prefix}`, '--s3-endpoint', env.S3_ENDPOINT];
  Object.assign(process.env, env); // ferry serve reads the credentials from its environment
  const fs3 = await startFerry(join(T, 'ferry-s3'), storeArgs('ferry'));
  const runs = QUICK ? 1 : 3;
  const out = { rss: [], storeNote: swiftDir ? 'OpenStack Swift with s3api, started by scripts/services/swift.sh' : `the store at ${env.S3_ENDPOINT}` };
  try {
    // ---- one large file
    const size = CFG.big;
    const src = join(T, 'src-s3.bin');
    makeFile(src, size);
    const expected = await fingerprintOf(src);
    const label = size >= 1024 * MiB ? `${size / (1024 * MiB)} GiB` : `${size / MiB} MiB`;
    const up = [
      { name: 'ferry', note: 'UPLD through ferry serve', server: fs3, run: () => fs3.connect([`UPLD ${src} big.bin`, 'QUIT']), verify: () => hashOf('ferry/homes/bench/big.bin') },
      { name: 'AWS SDK lib-storage', note: 'directly, 8 MiB parts, 4 at once', run: () => sdk(['up', src, `s3://${bucket}/sdk/big.bin`]), verify: () => hashOf('sdk/big.bin') },
    ];
    for (const p of up) p.expected = expected;
    await rounds(`${S3_TAG}upload ${label}`, size, up, runs, false);
    const ldest = join(T, 'down-s3.bin');
    const rmf = () => rmSync(ldest, { force: true });
    const down = [
      { name: 'ferry', note: 'DWLD through ferry serve', server: fs3, prepare: rmf, run: () => fs3.connect([`DWLD big.bin ${ldest}`, 'QUIT']), dest: ldest },
      { name: 'AWS SDK GetObject', note: 'directly, one stream', prepare: rmf, run: () => sdk(['down', `s3://${bucket}/sdk/big.bin`, ldest]), dest: ldest },
    ];
    for (const p of down) p.expected = expected;
    await rounds(`${S3_TAG}download ${label}`, size, down, runs, false);
    rmSync(src, { force: true });
    rmf();

    // ---- many small files
    const many = join(T, 'many');
    mkdirSync(many, { recursive: true });
    for (let i = 0; i < CFG.files; i++) writeFileSync(join(many, `f${i}.dat`), randomBytes(4096));
    const expectedMany = await fingerprintOf(many);
    const check = join(T, 'many-check');
    const treeOf = async (prefix) => { rmSync(check, { recursive: true, force: true }); await sdk(['getmany', `s3://${bucket}/${prefix}`, check], { CONC: '32' }); return fingerprintOf(check); };
    let n = 0;
    const upMany = [
      { name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: fs3, run: () => fs3.batch(fs3.manifest([{ put: many, to: `/many-${++n}` }])), verify: () => treeOf(`ferry/homes/bench/many-${n}`) },
      { name: 'AWS SDK PutObject', note: `directly, ${DEFAULT_CONCURRENCY} at once`, run: () => sdk(['putmany', many, `s3://${bucket}/sdk/many-${n}`], { CONC: String(DEFAULT_CONCURRENCY) }), verify: () => treeOf(`sdk/many-${n}`) },
    ];
    for (const p of upMany) p.expected = expectedMany;
    await rounds(`${S3_TAG}upload ${CFG.files} files of 4 KiB`, CFG.files * 4096, upMany, runs, false);
    const ldir = join(T, 'many-down');
    const rmd = () => rmSync(ldir, { recursive: true, force: true });
    const downMany = [
      { name: 'ferry batch', note: `concurrency ${DEFAULT_CONCURRENCY}, the default`, server: fs3, prepare: () => { rmd(); mkdirSync(ldir); }, run: () => fs3.batch(fs3.manifest([{ get: `many-${n}`, to: ldir + '/' }])), verify: () => fingerprintOf(join(ldir, `many-${n}`)) },
      { name: 'AWS SDK GetObject', note: `directly, ${DEFAULT_CONCURRENCY} at once, after one listing`, prepare: rmd, run: () => sdk(['getmany', `s3://${bucket}/sdk/many-${n}`, ldir], { CONC: String(DEFAULT_CONCURRENCY) }), dest: ldir },
    ];
    for (const p of downMany) p.expected = expectedMany;
    await rounds(`${S3_TAG}download ${CFG.files} files of 4 KiB`, CFG.files * 4096, downMany, runs, false);
    for (const p of [many, check, ldir]) rmSync(p, { recursive: true, force: true });
  } finally {
    fs3.stop();
    await sleep(300);
  }

  // ---- server memory vs file size, into the store
  for (const size of QUICK ? [128 * MiB, 512 * MiB] : [256 * MiB, 2048 * MiB]) {
    const src = join(T, 'src-s3-rss.bin');
    makeFile(src, size);
    const expected = await fingerprintOf(src);
    const fresh = await startFerry(join(T, 'ferry-s3-rss'), storeArgs('rss'));
    try {
      const before = status(fresh.pid, 'VmRSS');
      const samples = [];
      const timer = setInterval(() => samples.push(status(fresh.pid, 'VmRSS')), 100);
      const r = await fresh.connect([`UPLD ${src} rss.bin`, 'QUIT']);
      clearInterval(timer);
      const ok = (await hashOf('rss/homes/bench/rss.bin')) === expected;
      out.rss.push({ size, wall: r.wall, before, hwm: status(fresh.pid, 'VmHWM'), medianRss: median(samples), maxSampled: Math.max(...samples), ok });
      log('s3 rss', JSON.stringify(out.rss.at(-1)));
    } finally {
      fresh.stop();
      await sleep(300);
      rmSync(join(T, 'ferry-s3-rss'), { recursive: true, force: true });
      rmSync(src, { force: true });
    }
  }
  if (swiftDir) {
    execFileSync('bash', [join(ROOT, 'scripts/services/swift.sh'), 'stop', swiftDir], { stdio: 'ignore' });
    rmSync(swiftDir, { recursive: true, force: true });
  }
  return out;
}

function objectStoreReport(s3, started, loads, ferryVersion) {
  const out = [];
  out.push(`Run: \`npm run bench -- --only s3${QUICK ? ' --quick' : ''}\`, ${started.toISOString().replace(/\.\d+Z/, 'Z')}; ferry \`${ferryVersion}\`; store: ${s3.storeNote}, on the same machine (${cpus().length} vCPU); load average during the run: median ${median(loads).toFixed(2)}, max ${Math.max(...loads, 0).toFixed(2)}.`);
  out.push(`ferry rows: \`ferry connect\` / \`ferry batch\` → TLS → \`ferry serve --storage s3://...\` → the store; SDK rows: one Node process → the store (no TLS, no server in between). "client CPU" is the ferry client's or the SDK process's; "server CPU" is ferry serve's. The store's own CPU is in neither. Every run verified by SHA-256 (uploads read back from the store).`);
  out.push('');
  for (const w of [...new Set(results.map((r) => r.workload))].filter((x) => x.startsWith(S3_TAG))) { out.push(`### ${w.slice(S3_TAG.length)}\n`); out.push(table(w)); out.push(''); }
  if (s3.rss.length) {
    out.push('### ferry server memory while receiving one file into the store\n');
    out.push('| file | verified | wall s | server VmRSS before MB | server VmHWM MB | server VmRSS median MB | server VmRSS max sampled MB |\n|---|---|---|---|---|---|---|');
    for (const r of s3.rss) out.push(`| ${r.size >= 1024 * MiB ? r.size / (1024 * MiB) + ' GiB' : r.size / MiB + ' MiB'} | ${r.ok ? 'yes' : 'NO'} | ${fmtS(r.wall)} | ${fmtMB(r.before)} | ${fmtMB(r.hwm)} | ${fmtMB(r.medianRss)} | ${fmtMB(r.maxSampled)} |`);
    out.push('');
  }
  return out.join('\n');
}

function cleanup() {
  for (const c of children) try { c.kill('SIGTERM'); } catch { /* gone */ }
  if (!KEEP) { rmSync(T, { recursive: true, force: true }); rmSync(DISK, { recursive: true, force: true }); }
}
process.on('SIGINT', () => { cleanup(); process.exit(130); });
main().then(() => { cleanup(); }, (err) => { console.error(err); cleanup(); process.exit(1); });
