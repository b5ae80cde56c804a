// The page's pure parts: its generated module is what its sources make (so the executable serves the page that is in
// the tree), and its copy of the protocol's constants agrees with the protocol's own.
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HEADER_SIZE, PREAMBLE, PROTOCOL_VERSION } from '../../src/protocol/frame.ts';
import * as page from '../../src/web/page/constants.ts';
import { fitsWhole } from '../../src/web/page/budget.ts';
import { ASSETS } from '../../src/web/assets.ts';
import { DownloadLinks } from '../../src/web/links.ts';

const t = suite('the page');

t('src/web/page.gen.ts is what scripts/build-web.mjs makes of src/web/page/', () => {
  const r = spawnSync(process.execPath, ['scripts/build-web.mjs', '--check'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr + r.stdout);
});

t('the page speaks the protocol version, preamble and header size of src/protocol/frame.ts', () => {
  assert.is(page.PROTOCOL_VERSION, PROTOCOL_VERSION);
  assert.equal([...page.PREAMBLE], [...PREAMBLE]);
  assert.is(page.HEADER_SIZE, HEADER_SIZE);
});

t('a file is hashed whole when twice its size (with the others being hashed whole) is at most a quarter of the memory the browser says the device has', () => {
  const GiB = 1024 ** 3;
  assert.ok(fitsWhole(GiB, 8));
  assert.not.ok(fitsWhole(GiB + 1, 8));
  assert.ok(fitsWhole(GiB / 4, undefined), 'not told: 2 GiB assumed');
  assert.not.ok(fitsWhole(GiB / 4 + 1, undefined));
  assert.ok(fitsWhole(32 * 1024 ** 2, 0.25));
  assert.not.ok(fitsWhole(64 * 1024 ** 2, 0.25));
  assert.ok(fitsWhole(GiB / 2, 8, GiB / 2), 'files hashed whole at once share the budget');
  assert.not.ok(fitsWhole(GiB / 2, 8, GiB / 2 + 1));
});

t('assets: the page, its script and style by content-named paths, nothing from elsewhere', () => {
  const index = ASSETS['/index.html'];
  assert.ok(index);
  const html = index.body.toString('utf8');
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
  assert.ok(refs.length >= 3, html);
  for (const ref of refs) {
    assert.ok(ref.startsWith('/'), `${ref} is on the server itself`);
    assert.ok(ASSETS[ref], `${ref} is served`);
  }
  assert.not.match(html, /<script>[^<]/, 'no inline script');
  for (const [path, asset] of Object.entries(ASSETS)) assert.match(asset.etag, /^"[A-Za-z0-9_-]{22}"$/, path);
});

t('download links: one use, only from the address that asked, not after they expire', () => {
  let now = 1_000_000;
  const links = new DownloadLinks(30_000, () => now);
  const token = (url: string) => url.split('/')[2] as string;
  const a = links.mint({ user: 'ann', path: 'dir/a b.txt', host: '10.0.0.1' });
  assert.match(a.url, /^\/dl\/[A-Za-z0-9_-]{32}\/a%20b\.txt$/);
  assert.is(links.take(token(a.url), '10.0.0.2'), null, 'another address');
  assert.equal(links.take(token(a.url), '10.0.0.1'), { user: 'ann', path: 'dir/a b.txt', host: '10.0.0.1' });
  assert.is(links.take(token(a.url), '10.0.0.1'), null, 'used once');
  const b = links.mint({ user: 'ann', path: 'b', host: '10.0.0.1' });
  now += 30_001;
  assert.is(links.take(token(b.url), '10.0.0.1'), null, 'expired');
  assert.is(links.take('x'.repeat(32), '10.0.0.1'), null, 'unknown');
  links.mint({ user: 'ann', path: 'c', host: '10.0.0.1' });
  assert.is(links.size, 1, 'expired links are dropped as new ones are made');
});

t.run();
