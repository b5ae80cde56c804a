// Why the page's port offers http/1.1 and not h2: Chromium (headless, playwright-core) PUTs a file by
// XMLHttpRequest, as the page sends an upload link's body, and fetches one, as a download link is read, to a bare
// sink in this process over each protocol, alternated: Node's `https` (ALPN http/1.1) and Node's `http2` (ALPN h2,
// windows of 32 MiB so that flow control does not pace it). Nothing is hashed or stored: this is the browser's and
// Node's cost of each protocol alone. Prints the wall time and the CPU seconds of Chromium (all its processes) and
// of this process (the sink), per run, and the medians.
//   node --import tsx scripts/bench/web-h2.ts [--size 1024] [--runs 3]   (MiB; needs /usr/bin/chromium)
import { createHash, X509Certificate } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { generateIdentity } from '../../src/tls/identity.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => (args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : fallback);
const SIZE = opt('size', 1024) * 1024 * 1024;
const RUNS = opt('runs', 3);
const WORK = join(existsSync('/dev/shm') ? '/dev/shm' : '/tmp', `ferry-bench-h2-${process.pid}`);
const WINDOW = 32 * 1024 * 1024;
const PAGE = '<!doctype html><meta charset="utf-8"><input type="file" id="f">';

/** CPU seconds of every process whose command line names `needle` (Chromium's, by its profile directory). */
function chromiumCpu(needle: string): number {
  let total = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) continue;
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // Gone meanwhile.
    }
  }
  return total;
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/**
 * What the page runs (a string: this file is type-checked without the DOM's types): the PUT of the chosen File by
 * XMLHttpRequest, or a fetch of /file whose body is read and counted; the protocol the browser says it used.
 */
const inPage = (what: string) => `(async () => {
  const t = performance.now();
  const seen = (path) => performance.getEntriesByType('resource').filter((e) => e.name.endsWith(path)).at(-1)?.nextHopProtocol ?? '?';
  if (${JSON.stringify(what)} === 'GET') {
    const res = await fetch('/file', { cache: 'no-store' });
    const reader = res.body.getReader();
    let n = 0;
    for (let c = await reader.read(); !c.done; c = await reader.read()) n += c.value.length;
    const ms = performance.now() - t;
    await new Promise((r) => setTimeout(r, 50));
    return { ok: res.ok, n, ms, seen: seen('/file') };
  }
  const x = new XMLHttpRequest();
  await new Promise((done) => {
    x.onloadend = () => done();
    x.open('PUT', '/sink');
    x.send(document.getElementById('f').files[0]);
  });
  const ms = performance.now() - t;
  await new Promise((r) => setTimeout(r, 50));
  return { ok: x.status === 204, n: -1, ms, seen: seen('/sink') };
})()`;

type Req = { method?: string | undefined; url?: string | undefined; on(e: 'data', f: (d: Buffer) => void): unknown; on(e: 'end', f: () => void): unknown };
type Res = { writeHead(status: number, headers?: Record<string, string | number>): Res; end(body?: string): unknown };
/** GET / the page, PUT /sink counts the body, GET /file streams the file. */
function handler(file: string) {
  return (req: Req, res: Res & NodeJS.WritableStream) => {
    if (req.method === 'PUT') {
      let n = 0;
      req.on('data', (d) => (n += d.length));
      req.on('end', () => res.writeHead(n === SIZE ? 204 : 400).end());
      return;
    }
    if (req.url === '/file') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': SIZE, 'Cache-Control': 'no-store' });
      createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(res);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
  };
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  let browser: BrowserContext | null = null;
  const servers: Array<{ close(): unknown }> = [];
  try {
    const file = join(WORK, 'file.bin');
    const fd = openSync(file, 'w');
    const block = Buffer.alloc(8 * 1024 * 1024);
    for (let at = 0; at < block.length; at += 65536) crypto.getRandomValues(block.subarray(at, at + 65536));
    for (let at = 0; at < SIZE; at += block.length) writeSync(fd, block, 0, Math.min(block.length, SIZE - at));
    closeSync(fd);
    if (statSync(file).size !== SIZE) throw new Error('the file was not made');
    const id = await generateIdentity();
    const tls = { key: id.key, cert: id.cert };
    const h1 = https.createServer({ ...tls, ALPNProtocols: ['http/1.1'] }, handler(file) as never);
    const h2 = http2.createSecureServer({ ...tls, allowHTTP1: false, settings: { initialWindowSize: WINDOW } }, handler(file) as never);
    h2.on('session', (s) => s.setLocalWindowSize(WINDOW));
    for (const s of [h1, h2]) {
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
    }
    const spki = createHash('sha256').update(new X509Certificate(id.cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const profile = join(WORK, 'profile');
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
    });
    const pages = { 'http/1.1': await browser.newPage(), h2: await browser.newPage() };
    const ports = { 'http/1.1': (h1.address() as AddressInfo).port, h2: (h2.address() as AddressInfo).port };
    for (const [proto, page] of Object.entries(pages)) {
      await page.goto(`https://127.0.0.1:${ports[proto as keyof typeof ports]}/`);
      await page.setInputFiles('#f', file);
    }
    const rows: Array<{ proto: string; what: string; ms: number; chromium: number; sink: number; seen: string }> = [];
    console.error(`[bench:h2] ${SIZE / 2 ** 20} MiB, ${RUNS} alternated runs, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    for (let run = 0; run < RUNS; run++) {
      for (const what of ['PUT', 'GET']) {
        for (const proto of ['http/1.1', 'h2'] as const) {
          const page = pages[proto];
          const c0 = chromiumCpu(profile);
          const s0 = selfCpu();
          const r = (await page.evaluate(inPage(what))) as { ok: boolean; n: number; ms: number; seen: string };
          if (!r.ok || (what === 'GET' && r.n !== SIZE)) throw new Error(`${what} over ${proto} failed: ${JSON.stringify(r)}`);
          const row = { proto, what, ms: r.ms, chromium: chromiumCpu(profile) - c0, sink: selfCpu() - s0, seen: r.seen };
          rows.push(row);
          console.error(`[bench:h2] ${what} ${proto} run ${run + 1}: ${(r.ms / 1000).toFixed(2)} s, CPU s Chromium ${row.chromium.toFixed(2)}, sink ${row.sink.toFixed(2)}, the browser says ${r.seen}, load ${loadavg()[0]?.toFixed(2)}`);
          await page.evaluate(() => performance.clearResourceTimings());
        }
      }
    }
    console.log(`| ${SIZE / 2 ** 20} MiB, medians of ${RUNS} (min–max) | wall s | Chromium CPU s | sink CPU s |`);
    console.log('|---|---|---|---|');
    for (const what of ['PUT', 'GET']) {
      for (const proto of ['http/1.1', 'h2']) {
        const of = rows.filter((r) => r.what === what && r.proto === proto);
        const cell = (k: 'ms' | 'chromium' | 'sink', scale = 1) => {
          const xs = of.map((r) => r[k] / scale);
          return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
        };
        console.log(`| ${what === 'PUT' ? 'XHR PUT of the File' : 'fetch, body read'} over ${proto} | ${cell('ms', 1000)} | ${cell('chromium')} | ${cell('sink')} |`);
      }
    }
  } finally {
    await browser?.close().catch(() => {});
    for (const s of servers) s.close();
    rmSync(WORK, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:h2: ${String((err as Error)?.message ?? err)}`);
    process.exit(1);
  },
);
