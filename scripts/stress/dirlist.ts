// A directory with 100,000 entries (FERRY_DIRLIST_ENTRIES) listed over the wire by a real `ferry serve`
// process: every entry arrives, in pages, and the server's RSS stays bounded (sampled every 20 ms).
// Usage: node --import tsx scripts/stress/dirlist.ts
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, startServer, tempDir } from '../../test/e2e/harness.ts';
import { RawClient, sleep } from '../../test/hardening/raw.ts';

const ENTRIES = Number(process.env.FERRY_DIRLIST_ENTRIES ?? 100_000);

const rssMiB = (pid: number) => +(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024).toFixed(1);

async function main(): Promise<number> {
  const root = tempDir('ferry-stress-dirlist-');
  const server = await startServer({ dataDir: join(root, 'data'), env: { FERRY_SCRYPT_N: '1024' } });
  const pid = server.process.pid as number;
  try {
    const c = new RawClient(server.port);
    if ((await c.logIn('lister', 'correct horse battery', true)).t !== 'ok') throw new Error('sign-up failed');
    const dir = join(root, 'data', 'homes', 'lister', 'big');
    mkdirSync(dir, { recursive: true });
    const made = Date.now();
    for (let i = 0; i < ENTRIES; i++) writeFileSync(join(dir, `file-${String(i).padStart(6, '0')}-${'x'.repeat(40)}.dat`), '');
    console.log(`dirlist: made ${ENTRIES} files in ${((Date.now() - made) / 1000).toFixed(1)} s`);
    await sleep(500);
    const before = rssMiB(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 20);
    const started = Date.now();
    const id = c.send({ t: 'list', path: 'big' });
    const done = await c.reply(id, 300_000, (m) => m.t === 'ok' || m.t === 'error');
    const seconds = (Date.now() - started) / 1000;
    clearInterval(sampler);
    const pages = c.replies.filter((r) => r.id === id && r.msg.t === 'entries');
    const count = pages.reduce((n, r) => n + ((r.msg as { entries: unknown[] }).entries.length ?? 0), 0);
    const result = (done as { result?: { count?: number } }).result;
    await sleep(2000);
    const after = rssMiB(pid);
    const summary = { entries: ENTRIES, received: count, reported: result?.count, messages: pages.length, seconds: +seconds.toFixed(1), rssMiB: { before, peak, after, growth: +(peak - before).toFixed(1) } };
    console.log(`dirlist: ${JSON.stringify(summary)}`);
    c.destroy();
    const ok = done.t === 'ok' && count === ENTRIES && result?.count === ENTRIES && peak - before < 100;
    console.log(ok ? 'dirlist: OK (all entries, RSS growth under 100 MiB)' : 'dirlist: FAILED');
    return ok ? 0 : 1;
  } finally {
    await server.stop();
    cleanup(root);
  }
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(`dirlist: the run failed: ${String((err as Error)?.stack ?? err)}`);
    process.exitCode = 1;
  },
);
