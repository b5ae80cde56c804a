// Load: one real `ferry serve` process on loopback with 200 idle logged-in connections, 50 concurrent
// verified transfer loops (upload, download, compare SHA-256), repeated correct log-ins, and a log-in flood
// with wrong passwords from other loopback addresses (127.0.0.2, 127.0.0.3), for FERRY_LOAD_SECONDS (default
// 120). Reports the server's open fds and RSS before, at the peak and after, and the throttling in its log.
// Usage: node --import tsx scripts/stress/load.ts
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { connect, type FerryClient } from '../../src/client/mod.ts';
import { cleanup, startServer, tempDir } from '../../test/e2e/harness.ts';
import { RawClient, sleep } from '../../test/hardening/raw.ts';

const SECONDS = Number(process.env.FERRY_LOAD_SECONDS ?? 120);
/** The load runs in rounds (SECONDS split between them): memory after round 2 vs round 1 tells growth from a leak. */
const ROUNDS = Number(process.env.FERRY_LOAD_ROUNDS ?? 2);
const IDLE = Number(process.env.FERRY_LOAD_IDLE ?? 200);
const TRANSFERS = Number(process.env.FERRY_LOAD_TRANSFERS ?? 50);
const USERS = 10;
const PASSWORD = 'correct horse battery';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function measure(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const fds = readdirSync(`/proc/${pid}/fd`);
  return { fds: fds.length, held: held(pid, fds), rssMiB: +(kb('VmRSS') / 1024).toFixed(1), peakRssMiB: +(kb('VmHWM') / 1024).toFixed(1) };
}

/**
 * What the server's JavaScript holds once collected: through its inspector (started on a port from the OS by
 * NODE_OPTIONS=--inspect), a full collection, then process.memoryUsage() — heap in use, and memory outside the heap
 * (Buffers). Unlike RSS this does not count the pages the allocator keeps after a busy moment, so it tells a leak
 * from a round that simply needed more. Null where there is no inspector (a built executable ignores NODE_OPTIONS).
 */
async function heapAfterGc(output: string): Promise<{ heapMiB: number; externalMiB: number } | null> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1];
  if (!url) return null;
  const ws = new WebSocket(url);
  const timer = setTimeout(() => ws.terminate(), 30_000);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('close', () => reject(new Error('the inspector closed')));
    });
    let id = 0;
    const call = (method: string, params: Record<string, unknown> = {}) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const mine = ++id;
        const onMessage = (data: WebSocket.RawData) => {
          const m = JSON.parse(String(data)) as { id?: number; result?: Record<string, unknown>; error?: unknown };
          if (m.id !== mine) return;
          ws.off('message', onMessage);
          if (m.error) reject(new Error(JSON.stringify(m.error)));
          else resolve(m.result ?? {});
        };
        ws.on('message', onMessage);
        ws.send(JSON.stringify({ id: mine, method, params }));
      });
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const usage = JSON.parse((r.result as { value: string }).value) as NodeJS.MemoryUsage;
    return { heapMiB: +(usage.heapUsed / 2 ** 20).toFixed(1), externalMiB: +(usage.external / 2 ** 20).toFixed(1) };
  } finally {
    clearTimeout(timer);
    ws.terminate();
  }
}

/**
 * The descriptors a leak would keep: sockets and files (not /dev/null). The rest — pipes, eventfds and epolls —
 * belong to threads: a commit worker started under load (up to four, storage/local/lanes.ts) stays, with ~5 of them.
 */
function held(pid: number, fds: string[]): number {
  let n = 0;
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:') || (target.startsWith('/') && target !== '/dev/null')) n++;
    } catch {
      // Closed meanwhile.
    }
  }
  return n;
}

async function main(): Promise<number> {
  const root = tempDir('ferry-stress-load-');
  const local = join(root, 'local');
  mkdirSync(local);
  // Real password hashing (scrypt N=2^15) on the server unless FERRY_SCRYPT_N is set.
  const server = await startServer({
    dataDir: join(root, 'data'),
    args: ['--max-connections', '1024', '--max-connections-per-address', String(IDLE + TRANSFERS + 50)],
    env: {
      ...(process.env.FERRY_SCRYPT_N ? { FERRY_SCRYPT_N: process.env.FERRY_SCRYPT_N } : {}),
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim(),
    },
  });
  const pid = server.process.pid as number;
  const open = (): Promise<FerryClient> => connect({ host: '127.0.0.1', port: server.port, fingerprint: server.fingerprint, knownHosts: null, timeoutMs: 30_000 });
  const summary: Record<string, unknown> = { seconds: SECONDS, rounds: ROUNDS, idle: IDLE, transfers: TRANSFERS };
  const clients: FerryClient[] = [];
  const raws: RawClient[] = [];
  try {
    for (let u = 0; u < USERS; u++) {
      const c = await open();
      await c.signup(`load${u}`, PASSWORD);
      await c.quit();
    }
    // The flood's named target: a real account that nothing else uses.
    const v = await open();
    await v.signup('victim', PASSWORD);
    await v.quit();
    // Warm up (one transfer) so that "before" is a server that has already done a transfer.
    const warm = await open();
    await warm.login('load0', PASSWORD);
    writeFileSync(join(local, 'warm'), randomBytes(1024 * 1024));
    await warm.upload(join(local, 'warm'), 'warm');
    await warm.download('warm', join(local, 'warm.back'));
    await warm.quit();
    await sleep(1000);
    const before = measure(pid);
    summary.before = before;
    summary.collectedBefore = await heapAfterGc(server.output());
    console.log(`load: before ${JSON.stringify(before)}`);

    const rounds: Record<string, unknown>[] = [];
    const totals = { transfersOk: 0, transfersFailed: 0, loginsFailed: 0, lockedOut: 0, idleLost: 0 };
    for (let round = 1; round <= ROUNDS; round++) {
      clients.length = 0;
      raws.length = 0;
      const result: Record<string, unknown> = { round };
      rounds.push(result);
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
      const deadline = Date.now() + (SECONDS / ROUNDS) * 1000;
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
          let c: FerryClient | null = null;
          try {
            c = await open();
            await c.login(`load${(counts.loginsOk + counts.loginsFailed) % USERS}`, PASSWORD);
            await c.quit();
            counts.loginsOk++;
          } catch (err) {
            c?.destroy();
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
            const m = await r.logIn(k % 4 === 0 ? 'victim' : `nobody${k}`, 'wrong password!');
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
      // The by-name lock-out is for everyone: the victim's right password from a clean address, mid-flood.
      const victim = (async () => {
        await sleep(Math.min(10_000, (SECONDS / ROUNDS) * 500));
        const r = new RawClient(server.port);
        try {
          const m = await r.logIn('victim', PASSWORD);
          result.victimLoginDuringFlood = m.t === 'error' ? m.code : m.t;
        } catch (err) {
          result.victimLoginDuringFlood = String(err);
        } finally {
          r.destroy();
        }
      })();
      let peak = measure(pid);
      const sampler = setInterval(() => {
        const m = measure(pid);
        if (m.rssMiB > peak.rssMiB) peak = { ...m };
        if (m.fds > peak.fds) peak.fds = m.fds;
      }, 1000);
      await Promise.all([...workers, logins, ...flood, victim]);
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
      result.collected = await heapAfterGc(server.output());
      totals.transfersOk += counts.transfersOk;
      totals.transfersFailed += counts.transfersFailed;
      totals.loginsFailed += counts.loginsFailed;
      totals.lockedOut += counts.floodLockedOut;
      totals.idleLost += IDLE - (result.idleStillOpen as number);
      console.log(`load: round ${round}: ${JSON.stringify(result)}`);
    }
    summary.rounds = rounds;
    summary.totals = totals;
    const log = server.output();
    const logSummary = {
      lockedOutLines: (log.match(/locked out for \d+ s/g) ?? []).length,
      authFailedLines: (log.match(/Authentication failed for user/g) ?? []).length,
      sample: /.*locked out for \d+ s.*/.exec(log)?.[0] ?? null,
      internalErrors: (log.match(/internal error/g) ?? []).length,
    };
    summary.log = logSummary;
    console.log(`load: ${JSON.stringify(summary, null, 2)}`);
    type Collected = { heapMiB: number; externalMiB: number } | null;
    type Round = { after: { fds: number; held: number; rssMiB: number; peakRssMiB: number }; collected: Collected };
    const last = rounds.at(-1) as Round;
    const first = rounds[0] as Round;
    // Memory. RSS after a round is not a leak signal: glibc keeps freed heap pages, so what stays resident follows
    // the round's own peak (CI on 12-07: round 2's flood was three times round 1's, its peak 24 MiB higher, and 272
    // MiB stayed resident against round 1's peak of 252). Two signals instead:
    // - the high-water mark (VmHWM) after the last round may exceed the one after round 1 by at most 10% + 10 MiB;
    // - what the JavaScript holds after a full collection (heap in use plus Buffers outside it), read through the
    //   inspector, may exceed round 1's by at most 3% + 0.5 MiB (~25 MiB here, grown by 0.2-0.5 MiB in a round of
    //   2,000-4,000 transfers). A leak of 1 KiB per connection (tried, in Session's constructor) failed it.
    const total = (c: Collected) => (c ? c.heapMiB + c.externalMiB : null);
    const heapFirst = total(first.collected);
    const heapLast = total(last.collected);
    const memory = {
      peakAfterFirstRound: first.after.peakRssMiB,
      peakAfterLastRound: last.after.peakRssMiB,
      rssAfterLastRound: last.after.rssMiB,
      peakGrowthOk: last.after.peakRssMiB <= first.after.peakRssMiB * 1.1 + 10,
      collectedAfterFirstRound: heapFirst,
      collectedAfterLastRound: heapLast,
      collectedGrowthOk: heapFirst === null || heapLast === null ? null : heapLast <= heapFirst * 1.03 + 0.5,
    };
    if (memory.collectedGrowthOk === null) console.log('load: the heap after a collection was not measured (no inspector: a built executable?); judged by VmHWM alone');
    console.log(`load: memory ${JSON.stringify(memory)}`);
    const ok =
      totals.transfersFailed === 0 &&
      totals.loginsFailed === 0 &&
      totals.idleLost === 0 &&
      logSummary.lockedOutLines > 0 &&
      logSummary.internalErrors === 0 &&
      last.after.held <= before.held + 5 &&
      memory.peakGrowthOk &&
      memory.collectedGrowthOk !== false;
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
