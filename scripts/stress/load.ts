// Load: one real `ferry serve` process on loopback with 200 idle logged-in connections, 50 concurrent
// verified transfer loops (upload, download, compare SHA-256), repeated correct log-ins, and a log-in flood
// with wrong passwords from other loopback addresses (127.0.0.2, 127.0.0.3), for FERRY_LOAD_SECONDS (default
// 120). Reports the server's open fds and RSS before, at the peak and after, and the throttling in its log.
// Usage: node --import tsx scripts/stress/load.ts
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type FerryClient } from '../../src/client/client.ts';
import { cleanup, startServer, tempDir } from '../../test/e2e/harness.ts';
import { RawClient, sleep } from '../../test/hardening/raw.ts';

const SECONDS = Number(process.env.FERRY_LOAD_SECONDS ?? 120);
const IDLE = Number(process.env.FERRY_LOAD_IDLE ?? 200);
const TRANSFERS = Number(process.env.FERRY_LOAD_TRANSFERS ?? 50);
const USERS = 10;
const PASSWORD = 'correct horse battery';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function measure(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMiB: +(kb('VmRSS') / 1024).toFixed(1), peakRssMiB: +(kb('VmHWM') / 1024).toFixed(1) };
}

async function main(): Promise<number> {
  const root = tempDir('ferry-stress-load-');
  const local = join(root, 'local');
  mkdirSync(local);
  // Real password hashing (scrypt N=2^15) on the server unless FERRY_SCRYPT_N is set.
  const server = await startServer({
    dataDir: join(root, 'data'),
    args: ['--max-connections', '1024', '--max-connections-per-address', String(IDLE + TRANSFERS + 50)],
    env: process.env.FERRY_SCRYPT_N ? { FERRY_SCRYPT_N: process.env.FERRY_SCRYPT_N } : {},
  });
  const pid = server.process.pid as number;
  const open = (): Promise<FerryClient> => connect({ host: '127.0.0.1', port: server.port, fingerprint: server.fingerprint, knownHosts: null, timeoutMs: 30_000 });
  const result: Record<string, unknown> = { seconds: SECONDS, idle: IDLE, transfers: TRANSFERS };
  const clients: FerryClient[] = [];
  const raws: RawClient[] = [];
  try {
    for (let u = 0; u < USERS; u++) {
      const c = await open();
      await c.signup(`load${u}`, PASSWORD);
      await c.quit();
    }
    // Warm up (one transfer) so that "before" is a server that has already done a transfer.
    const warm = await open();
    await warm.login('load0', PASSWORD);
    writeFileSync(join(local, 'warm'), randomBytes(1024 * 1024));
    await warm.upload(join(local, 'warm'), 'warm');
    await warm.download('warm', join(local, 'warm.back'));
    await warm.quit();
    await sleep(1000);
    const before = measure(pid);
    result.before = before;
    console.log(`load: before ${JSON.stringify(before)}`);

    // 200 idle, logged-in connections.
    const startedIdle = Date.now();
    for (let i = 0; i < IDLE; i += 20) {
      const batch = Array.from({ length: Math.min(20, IDLE - i) }, (_, k) => {
        const r = new RawClient(server.port);
        raws.push(r);
        return r.logIn(`load${(i + k) % USERS}`, PASSWORD);
      });
      const replies = await Promise.all(batch);
      const bad = replies.filter((m) => m.t !== 'ok');
      if (bad.length) throw new Error(`idle log-ins failed: ${JSON.stringify(bad[0])}`);
    }
    result.idleLoginSeconds = +((Date.now() - startedIdle) / 1000).toFixed(1);
    const deadline = Date.now() + SECONDS * 1000;
    const counts = { transfersOk: 0, transfersFailed: 0, bytes: 0, loginsOk: 0, loginsFailed: 0, floodAttempts: 0, floodLockedOut: 0, floodAuthFailed: 0 };
    const failures: string[] = [];

    // 50 transfer loops: each uploads a fresh file, downloads it, compares.
    const workers = Array.from({ length: TRANSFERS }, async (_, w) => {
      const c = await open();
      clients.push(c);
      await c.login(`load${w % USERS}`, PASSWORD);
      for (let n = 0; Date.now() < deadline; n++) {
        const body = randomBytes(64 * 1024 + Math.floor(Math.random() * 2 * 1024 * 1024));
        const file = join(local, `w${w}`);
        writeFileSync(file, body);
        try {
          const up = await c.upload(file, `w${w}/f${n % 3}`, { overwrite: true, parents: true });
          const down = await c.download(`w${w}/f${n % 3}`, `${file}.back`, { overwrite: true });
          const back = readFileSync(`${file}.back`);
          if (up.sha256 !== sha(body) || down.sha256 !== sha(body) || !back.equals(body)) throw new Error('bytes differ');
          counts.transfersOk += 2;
          counts.bytes += 2 * body.length;
        } catch (err) {
          counts.transfersFailed++;
          if (failures.length < 10) failures.push(`worker ${w}: ${String((err as Error)?.message ?? err)}`);
        }
      }
    });
    // Repeated correct log-ins from 127.0.0.1.
    const logins = (async () => {
      while (Date.now() < deadline) {
        try {
          const c = await open();
          await c.login(`load${counts.loginsOk % USERS}`, PASSWORD);
          await c.quit();
          counts.loginsOk++;
        } catch (err) {
          counts.loginsFailed++;
          if (failures.length < 10) failures.push(`login: ${String((err as Error)?.message ?? err)}`);
        }
      }
    })();
    // A flood of wrong passwords from two other loopback addresses, 16 connections at a time.
    const flood = Array.from({ length: 16 }, async (_, k) => {
      while (Date.now() < deadline) {
        const r = new RawClient(server.port, { localAddress: k % 2 ? '127.0.0.2' : '127.0.0.3' });
        try {
          const m = await r.logIn(k % 4 === 0 ? 'load1' : `nobody${k}`, 'wrong password!');
          counts.floodAttempts++;
          if (m.t === 'error' && m.code === 'locked_out') counts.floodLockedOut++;
          if (m.t === 'error' && m.code === 'auth_failed') counts.floodAuthFailed++;
        } catch {
          counts.floodAttempts++;
        } finally {
          r.destroy();
        }
      }
    });
    let peak = measure(pid);
    const sampler = setInterval(() => {
      const m = measure(pid);
      if (m.rssMiB > peak.rssMiB) peak = { ...m };
      if (m.fds > peak.fds) peak.fds = m.fds;
    }, 1000);
    await Promise.all([...workers, logins, ...flood]);
    clearInterval(sampler);
    result.during = peak;
    result.counts = counts;
    result.idleStillOpen = raws.filter((r) => !r.isClosed).length;
    result.failures = failures;
    console.log(`load: during (max) ${JSON.stringify(peak)}`);

    for (const c of clients) await c.quit();
    for (const r of raws) r.destroy();
    await sleep(5000);
    const after = measure(pid);
    result.after = after;
    await sleep(15_000);
    result.after20s = measure(pid);
    const log = server.output();
    result.log = {
      lockedOutLines: (log.match(/locked out for \d+ s/g) ?? []).length,
      authFailedLines: (log.match(/Authentication failed for user/g) ?? []).length,
      sample: /.*locked out for \d+ s.*/.exec(log)?.[0] ?? null,
      internalErrors: (log.match(/internal error/g) ?? []).length,
    };
    console.log(`load: after 5 s ${JSON.stringify(after)}, after 20 s ${JSON.stringify(result.after20s)}`);
    console.log(`load: ${JSON.stringify(result, null, 2)}`);
    const ok =
      counts.transfersFailed === 0 &&
      counts.loginsFailed === 0 &&
      (result.log as { lockedOutLines: number }).lockedOutLines > 0 &&
      result.idleStillOpen === IDLE &&
      after.fds <= before.fds + 5 &&
      (result.log as { internalErrors: number }).internalErrors === 0;
    console.log(ok ? 'load: OK' : 'load: FAILED');
    return ok ? 0 : 1;
  } finally {
    for (const r of raws) r.destroy();
    for (const c of clients) c.destroy();
    await server.stop();
    cleanup(root);
  }
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(`load: the run failed: ${String((err as Error)?.stack ?? err)}`);
    process.exitCode = 1;
  },
);
