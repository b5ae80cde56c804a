// The page through the balancer: two `ferry serve` processes sharing one PostgreSQL database and one object store,
// behind a real HAProxy (scripts/services/haproxy.sh) with send-proxy-v2, and a real Chromium (headless,
// playwright-core) that knows only the balancer. The page's upload and download links are connections of their own,
// served by the server whose session minted them (an upload's bytes go into that session): the balancer must send a
// client's connections to one server, and does (it sticks by the client's address). Then that server is killed: the
// page says so, logs in again on the survivor, and goes on there.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import type { BrowserContext, Page } from 'playwright-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { waitUntil, type ServerHandle } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';
import { chromiumMissing, enter, launchChromium } from '../web/chromium.ts';
import { clusterMissing, startCluster, stopCluster, type Cluster } from './cluster.ts';

const t = suite('the page through HAProxy, two servers, one database, one object store');
const missing = () => clusterMissing() ?? chromiumMissing();

let cluster: Cluster | null = null;
let browser: BrowserContext | null = null;

/** The SPKI pin of what a TLS server at `port` presents. */
async function spkiAt(port: number): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  try {
    await new Promise<void>((resolve, reject) => (socket.once('secureConnect', () => resolve()), socket.once('error', reject)));
    const cert = socket.getPeerX509Certificate();
    if (!cert) throw new Error('no certificate');
    return createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  } finally {
    socket.destroy();
  }
}

/** The cluster, started once for the file, and a Chromium that knows only the balancer (and pins its certificate). */
async function up(): Promise<{ c: Cluster; browser: BrowserContext }> {
  // Each kept as soon as it is up, for t.after to stop, whatever fails after.
  cluster ??= await startCluster({ prefix: 'scaleout-page' });
  browser ??= await launchChromium(join(cluster.dir, 'profile'), [await spkiAt(cluster.haPort)], { acceptDownloads: true });
  return { c: cluster, browser };
}

t.after(async () => {
  await browser?.close().catch(() => {});
  if (cluster) await stopCluster(cluster);
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Uploads `files` by the page's file button; resolves when the page says all arrived. */
async function upload(page: Page, files: string[]): Promise<void> {
  await page.setInputFiles('#pick-files', files);
  const n = files.length;
  await page.waitForSelector(`text=${n} of ${n} file${n === 1 ? '' : 's'} uploaded`, { timeout: 60_000 }).catch(async (err: Error) => {
    throw new Error(`${err.message.split('\n')[0]}\n--- the page shows:\n${(await page.locator('.status, .job').allTextContents()).join('\n')}`);
  });
}

/** Downloads `name` by its button in the list; the bytes the browser saved. */
async function download(page: Page, name: string, dir: string): Promise<Buffer> {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: `Download ${name}` }).click()]);
  const saved = join(dir, `saved-${name}`);
  await d.saveAs(saved);
  const failure = await d.failure();
  if (failure) throw new Error(`the download of ${name} failed: ${failure}`);
  return readFileSync(saved);
}

/** The server that logged `user` in last (its log says so), and the other one. */
function whoServes(c: Cluster, user: string): [ServerHandle, ServerHandle] {
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  const last = (s: ServerHandle) => s.output().lastIndexOf(`${user}] `);
  return last(a) > last(b) ? [a, b] : [b, a];
}

testWhen(t, missing, 'through the balancer: uploads and downloads by link, all verified, every connection of the page on one server', async () => {
  const { c, browser: b } = await up();
  const page = await b.newPage();
  await page.goto(`https://127.0.0.1:${c.haPort}/`);
  await enter(page, 'wanda', 'password-wanda', 'Sign up');
  const files = [1, 2, 3].map((i) => {
    const path = join(c.dir, `f${i}.bin`);
    writeFileSync(path, randomBytes(i * 1024 * 1024));
    return path;
  });
  // Several rounds: each upload and download is a new connection through the balancer.
  for (let round = 0; round < 2; round++) {
    await upload(page, files);
    for (const f of files) {
      const name = f.split('/').pop() as string;
      const want = sha(readFileSync(f));
      assert.is(sha(await download(page, name, c.dir)), want, `${name} downloaded`);
    }
  }
  const [serving, other] = whoServes(c, 'wanda');
  assert.not.match(other.output(), /wanda\]/, `the other server saw none of it:\n${other.output().slice(-1500)}`);
  assert.is((serving.output().match(/wanda\] UPLD f3\.bin: received 3145728 B .*sha256 verified/g) ?? []).length, 2, serving.output().slice(-2000));
  await page.close();
});

// Last: it kills a server.
testWhen(t, missing, 'the server of the page’s session killed: the page says so, logs in again on the other one, and goes on there', async () => {
  const { c, browser: b } = await up();
  const page = await b.newPage();
  await page.goto(`https://127.0.0.1:${c.haPort}/`);
  await enter(page, 'xena', 'password-xena', 'Sign up');
  const [serving, survivor] = whoServes(c, 'xena');
  await serving.kill();
  await page.waitForSelector('#user', { timeout: 15_000 });
  assert.match((await page.textContent('.status')) ?? '', /Disconnected/);
  // HAProxy's health checks take the dead server out (two failed checks at 500 ms).
  const log = join(c.ha, 'haproxy.log');
  await waitUntil(() => /ferry_servers\/s\d is DOWN/.test(readFileSync(log, 'utf8')), 10_000, 'HAProxy to see the server down');
  await enter(page, 'xena', 'password-xena', 'Log in');
  const file = join(c.dir, 'after.bin');
  writeFileSync(file, randomBytes(2 * 1024 * 1024 + 17));
  await upload(page, [file]);
  assert.is(sha(await download(page, 'after.bin', c.dir)), sha(readFileSync(file)));
  assert.match(survivor.output(), /xena\] UPLD after\.bin: received 2097169 B .*sha256 verified/);
  await page.close();
});

t.run();
