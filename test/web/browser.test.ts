// The page in a real browser: Debian's Chromium, headless, driven by playwright-core, against a real `ferry serve`
// (the CLI as a child process: from source, or dist/ferry, or on Deno — FERRY_BIN). Everything a user does with the
// page, checked on the server's disk: sign-up, uploads (files, a folder, a 64 MiB file cut by a page reload and
// resumed to the right hash), list and sort, download (bytes compared), rename, delete, new folder, RDLOG, a second
// user who sees nothing of the first, a file named like HTML, CLRLOG refused and done. With FERRY_SCREENSHOTS=DIR
// the main screens are saved there (docs/img/ in the README).
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BrowserContext, Page } from 'playwright-core';
import { childEnv, cleanup, inHome, readHome, runFerry, startServer, tempDir, type ServerHandle } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';
import { chromiumMissing, enter, launchChromium } from './chromium.ts';
import { Relay } from './relay.ts';

// What runs in the page (page.evaluate, waitForFunction) sees the DOM; this file is type-checked without its types.
// (Functions, not strings: the page's Content-Security-Policy refuses to evaluate strings.)
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare function getComputedStyle(element: unknown): { backgroundColor: string };

const t = suite('the page in a real browser (Chromium)');
const missing = chromiumMissing;
const SHOTS = process.env.FERRY_SCREENSHOTS ?? '';

let server: ServerHandle | null = null;
let relay: Relay | null = null;
let browser: BrowserContext | null = null;
let work = '';

const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

async function setUp(): Promise<{ server: ServerHandle; browser: BrowserContext; work: string }> {
  if (server && browser) return { server, browser, work };
  work = tempDir('ferry-web-');
  server = await startServer();
  // The server's certificate is self-signed: the browser trusts exactly its key (SPKI pin), as a user who compared
  // the fingerprint and accepted it would (every connection, downloads too).
  const cert = new X509Certificate(readFileSync(join(server.dataDir, 'identity', 'cert.pem')));
  assert.is(`SHA256:${createHash('sha256').update(cert.raw).digest('base64').replace(/=+$/, '')}`, server.fingerprint, 'the banner names this certificate');
  const hex = createHash('sha256').update(cert.raw).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
  assert.ok(server.output().includes(`as a browser shows it (SHA-256): ${hex}\n`), 'the banner gives the hex form a browser shows');
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  browser = await launchChromium(join(work, 'profile'), [spki], { acceptDownloads: true });
  return { server, browser, work };
}

t.after(async () => {
  await browser?.close().catch(() => {});
  await relay?.close();
  await server?.dispose();
  if (work) cleanup(work);
});

/** A new tab on the page, straight from the server or through `via` (a relay to it). */
async function open(b: BrowserContext, s: ServerHandle, via?: Relay): Promise<Page> {
  const page = await b.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`https://127.0.0.1:${via?.port ?? s.port}/`);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** A file of a user's home as the server keeps it (on disk, or in the object store with FERRY_TEST_STORAGE). */
const stored = async (s: ServerHandle, user: string, path: string): Promise<Buffer> => {
  const bytes = await readHome(s, user, path);
  if (bytes === null) throw new Error(`${user}/${path} is not on the server`);
  return bytes;
};

testWhen(t, missing, 'the page is served with a strict policy, and its certificate is the one the banner names', async () => {
  const { server: s, browser: b } = await setUp();
  const page = await b.newPage();
  const response = await page.goto(`https://127.0.0.1:${s.port}/`);
  const headers = response?.headers() ?? {};
  assert.match(headers['content-security-policy'] ?? '', /default-src 'none'; script-src 'self' 'wasm-unsafe-eval';.*frame-ancestors 'none'/);
  assert.is(headers['x-content-type-options'], 'nosniff');
  const cert = await response?.securityDetails();
  assert.is(cert?.protocol, 'TLS 1.3');
  // Every asset the page loads comes from the server itself.
  const hosts = new Set<string>();
  page.on('request', (r) => hosts.add(new URL(r.url()).host));
  await page.reload();
  await page.waitForSelector('#user');
  assert.equal([...hosts], [`127.0.0.1:${s.port}`]);
  await shot(page, 'login');
  await page.close();
});

testWhen(t, missing, 'sign up, upload files and a folder with progress, a 64 MiB file cut by a reload and resumed to the right hash', async () => {
  const { server: s, browser: b, work: w } = await setUp();
  const files = join(w, 'files');
  mkdirSync(join(files, 'album', 'inner'), { recursive: true });
  writeFileSync(join(files, 'notes.txt'), 'hello from the browser\n');
  writeFileSync(join(files, 'data.bin'), randomBytes(300_000));
  writeFileSync(join(files, '<img src=x onerror=alert(1)>.txt'), 'not html');
  writeFileSync(join(files, 'album', 'a.jpg'), randomBytes(5000));
  writeFileSync(join(files, 'album', 'inner', 'b.jpg'), randomBytes(7000));
  const big = randomBytes(64 * 1024 * 1024);
  writeFileSync(join(files, 'big.bin'), big);

  // Through a relay that slows the large upload, so that the reload comes in its middle however fast this machine is.
  relay = await Relay.start(s.port);
  const page = await open(b, s, relay);
  let alerted = false;
  page.on('dialog', async (d) => {
    if (d.type() === 'alert') alerted = true;
    await d.dismiss();
  });
  await enter(page, 'alice', 'password-alice', 'Sign up');
  assert.match(await page.textContent('.status') ?? '', /Signed up as alice/);

  await page.setInputFiles('#pick-files', [join(files, 'notes.txt'), join(files, 'data.bin'), join(files, '<img src=x onerror=alert(1)>.txt')]);
  await page.waitForSelector('text=3 of 3 files uploaded', { timeout: 30_000 });
  await page.setInputFiles('#pick-folder', join(files, 'album'));
  await page.waitForSelector('text=2 of 2 files uploaded', { timeout: 30_000 });
  for (const [path, local] of [['notes.txt', 'notes.txt'], ['data.bin', 'data.bin'], ['album/a.jpg', 'album/a.jpg'], ['album/inner/b.jpg', 'album/inner/b.jpg']] as const) {
    assert.is(sha(await stored(s, 'alice', path)), sha(readFileSync(join(files, local))), path);
  }
  assert.is(alerted, false, 'the HTML-like name ran nothing');
  const xss = page.locator('td.name', { hasText: '<img src=x onerror=alert(1)>.txt' });
  // The list is drawn again after the uploads' summary line: wait for it (a slow list once lost this race on Deno).
  await xss.first().waitFor({ timeout: 15_000 });
  assert.is(await xss.count(), 1, 'the HTML-like name is shown as text');
  assert.is(await page.locator('td.name img').count(), 0, 'and made no element');

  // The large file: progress moves, the page is reloaded mid-way, the same file chosen again resumes.
  relay.rate = 8 * 1024 * 1024; // 8 s for the whole file: the reload at 20% has seconds to spare
  await page.setInputFiles('#pick-files', join(files, 'big.bin'));
  await page.waitForFunction(() => {
    const bars = [...document.querySelectorAll('progress')] as Array<{ value: number; max: number }>;
    const p = bars[bars.length - 1];
    return p !== undefined && p.value > p.max * 0.2;
  }, null, { timeout: 60_000, polling: 20 });
  const seen = await page.locator('.job').last().textContent();
  assert.match(seen ?? '', /of 64\.0 MiB/, 'progress shows bytes of the total');
  await shot(page, 'uploading');
  await page.reload();
  relay.rate = Infinity;
  await enter(page, 'alice', 'password-alice', 'Log in');
  await page.setInputFiles('#pick-files', join(files, 'big.bin'));
  await page.waitForSelector('text=1 of 1 file uploaded', { timeout: 120_000 }).catch(async (err: Error) => {
    const shown = await page.locator('.status, .job').allTextContents().catch(() => []);
    throw new Error(`${err.message.split('\n')[0]}\n--- the page shows:\n${shown.join('\n')}\n--- the server said:\n${s.output().slice(-4000)}`);
  });
  const text = (await page.locator('.job').last().textContent()) ?? '';
  const resumedAt = Number(/resumed at (\d+) bytes/.exec(text)?.[1]);
  assert.ok(resumedAt > 0 && resumedAt < big.length, `resumed part-way: ${text}\n--- the server said:\n${s.output().slice(-4000)}`);
  assert.match(text, new RegExp(`sha256 verified ${sha(big).slice(0, 12)}`));
  assert.is(sha(await stored(s, 'alice', 'big.bin')), sha(big), 'the whole file, right, on the server');
  await s.waitFor(/UPLD big\.bin: received 67108864 B .*\(resumed at \d+\), sha256 verified/);
  await page.close();
});

testWhen(t, missing, 'list and sort, download (bytes compared, SHA-256 shown), rename, new folder, delete with confirmation', async () => {
  const { server: s, browser: b, work: w } = await setUp();
  const page = await open(b, s);
  await enter(page, 'alice', 'password-alice', 'Log in');
  const names = async () => (await page.locator('table.files tbody td.name').allTextContents()).map((n) => n.trim());
  assert.equal((await names()).slice(0, 1), ['album/'], 'folders first');
  assert.match((await page.textContent('.total')) ?? '', /Total directory size: \d+ bytes \(.*\) in 5 entries/);
  await page.getByRole('button', { name: /^Size/ }).click();
  const bySize = await names();
  await page.getByRole('button', { name: /^Size/ }).click();
  assert.equal((await names()).slice(1), bySize.slice(1).reverse(), 'size order flips');
  await shot(page, 'files');

  // Download: the browser fetches a one-time link itself.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download data.bin' }).click()]);
  const saved = join(w, 'downloaded.bin');
  await download.saveAs(saved);
  assert.is(sha(readFileSync(saved)), sha(await stored(s, 'alice', 'data.bin')));
  await page.waitForSelector(`text=SHA-256 (server): ${sha(readFileSync(saved))}`);
  // The link worked once: it is used up now (asked by the browser itself, as a page would).
  const again = await page.evaluate(async (u) => (await fetch(u)).status, download.url());
  assert.is(again, 404);

  page.once('dialog', (d) => void d.accept('drafts'));
  await page.getByRole('button', { name: 'New folder' }).click();
  await page.waitForSelector('text=Created folder drafts');
  assert.ok(await inHome(s, 'alice', 'drafts'));

  page.once('dialog', (d) => void d.accept('drafts/notes-renamed.txt'));
  await page.getByRole('button', { name: 'Rename notes.txt' }).click();
  await page.waitForSelector('text=Renamed notes.txt to drafts/notes-renamed.txt');
  assert.is((await stored(s, 'alice', 'drafts/notes-renamed.txt')).toString('utf8'), 'hello from the browser\n');

  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
    void d.dismiss();
  });
  await page.getByRole('button', { name: 'Delete data.bin' }).click();
  await page.waitForTimeout(300);
  assert.match(asked, /Delete the file data\.bin\?/);
  assert.ok(await inHome(s, 'alice', 'data.bin'), 'kept when the confirmation is declined');
  page.once('dialog', (d) => void d.accept());
  await page.getByRole('button', { name: 'Delete data.bin' }).click();
  await page.waitForSelector('text=Deleted data.bin');
  assert.not.ok(await inHome(s, 'alice', 'data.bin'));
  await page.close();
});

testWhen(t, missing, 'RDLOG with the original words; a second user sees nothing of the first; CLRLOG refused to a user, done by an admin', async () => {
  const { server: s, browser: b } = await setUp();
  const page = await open(b, s);
  await enter(page, 'alice', 'password-alice', 'Log in');
  await page.getByRole('button', { name: 'Log', exact: true }).click();
  await page.waitForSelector('table.log tbody tr');
  const log = (await page.textContent('table.log')) ?? '';
  assert.match(log, /Signed up user 'alice' from 127\.0\.0\.1:\d+/);
  assert.match(log, /Uploaded file 'big\.bin' by 'alice'/);
  assert.match(log, /Renamed 'notes\.txt' to 'drafts\/notes-renamed\.txt'|notes-renamed/);
  await shot(page, 'log');
  await page.getByRole('button', { name: 'Clear the log (CLRLOG)' }).click();
  await page.waitForSelector('text=permission_denied');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForSelector('#user');

  await enter(page, 'bob', 'password-bob', 'Sign up');
  assert.match((await page.textContent('.total')) ?? '', /in 0 entries/, 'a new user sees an empty home');
  assert.match((await page.textContent('table.files')) ?? '', /This folder is empty/);
  await page.close();

  const made = await runFerry(['user', 'add', 'root', '--admin', '--data', s.dataDir], { env: childEnv(s.home, { FERRY_PASSWORD: 'password-root' }) });
  assert.is(made.code, 0, made.stderr);
  const admin = await open(b, s);
  await enter(admin, 'root', 'password-root', 'Log in');
  await admin.getByRole('button', { name: 'Log', exact: true }).click();
  await admin.getByRole('button', { name: 'Everyone’s events' }).click();
  await admin.waitForSelector('text=Signed up user \'bob\'');
  admin.once('dialog', (d) => void d.accept());
  await admin.getByRole('button', { name: 'Clear the log (CLRLOG)' }).click();
  await admin.waitForSelector('text=Log cleared; archived as');
  await admin.waitForSelector('table.log tbody tr');
  assert.match((await admin.textContent('table.log')) ?? '', /Log cleared by 'root'|log_clear|cleared/i);
  await admin.close();
});

testWhen(t, missing, 'a phone-sized screen in the dark theme, and the keyboard alone', async () => {
  const { server: s, browser: b } = await setUp();
  const page = await b.newPage();
  await page.setViewportSize({ width: 360, height: 740 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`https://127.0.0.1:${s.port}/`);
  // Keyboard only: the user name field has focus; Tab to the password, Enter logs in.
  await page.waitForSelector('#user');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type('password-alice');
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Total directory size', { timeout: 15_000 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth as number);
  assert.ok(width <= 360, `no sideways scrolling on a 360 px screen (${width})`);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.is(bg, 'rgb(13, 17, 23)', 'the dark theme');
  await shot(page, 'phone-dark');
  await page.close();
});

t.run();
