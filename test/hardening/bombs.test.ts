// Decompression bombs and garbage against the compress plugin, for every codec the runtime has: a tiny
// stream that expands to 1 GiB is cut off at the declared size, nothing is stored, memory stays bounded
// (RSS of this process, which runs the server, measured), and the connection goes on.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BUNDLED_PLUGINS } from '../../src/cli/bundled-plugins.ts';
import { loadPlugins } from '../../src/plugin/load.ts';
import { silentLog } from '../../src/server/console.ts';
import { FerryServer } from '../../src/server/server.ts';
import { RawClient } from './raw.ts';
import { PREAMBLE, encodeMessage } from '../../src/protocol/mod.ts';

process.env.FERRY_SCRYPT_N = '1024';

const GiB = 1024 ** 3;
const zeros = (n: number) => Buffer.alloc(n);
/** Bombs: gzip as 64 concatenated members of 16 MiB of zeros (1 GiB expanded), brotli and zstd of 64 MiB. */
function bombs(): Record<string, { bytes: Buffer; expands: number }> {
  const out: Record<string, { bytes: Buffer; expands: number }> = {};
  const block = zeros(16 * 1024 * 1024);
  const gz = gzipSync(block, { level: 9 });
  out.gzip = { bytes: Buffer.concat(Array.from({ length: 64 }, () => gz)), expands: GiB };
  out.br = { bytes: brotliCompressSync(zeros(64 * 1024 * 1024), { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } }), expands: 64 * 1024 * 1024 };
  const z = (zlib as unknown as { zstdCompressSync?: (b: Buffer) => Buffer }).zstdCompressSync;
  if (z) out.zstd = { bytes: z(zeros(64 * 1024 * 1024)), expands: 64 * 1024 * 1024 };
  return out;
}

const rssMiB = () => process.memoryUsage().rss / 1024 / 1024;

const b = suite('hardening: decompression bombs');
let dir: string;
let server: FerryServer;
let port: number;

b.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-hardening-bombs-'));
  const dataDir = join(dir, 'data');
  const plugins = await loadPlugins([{ name: 'compress' }], {
    bundled: BUNDLED_PLUGINS, dataDir, baseDir: dir, log: () => ({ info() {}, warn() {}, error() {} }),
  });
  server = new FerryServer({ host: '127.0.0.1', port: 0, dataDir }, silentLog, plugins);
  port = (await server.start()).port;
});
b.after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

b('a bomb in each codec is cut off at the declared size; nothing stored; RSS bounded; garbage is bad_encoding', async () => {
  const all = bombs();
  const c = new RawClient(port);
  c.write(Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello', v: 1, agent: 'bomber', features: Object.keys(all).map((k) => `encoding:${k}`) })]));
  const welcome = await c.reply(0);
  assert.is(welcome.t, 'welcome');
  const offered = (welcome as { features: string[] }).features;
  const login = c.send({ t: 'signup', user: 'bomber', password: 'correct horse battery' });
  assert.is((await c.reply(login)).t, 'ok');
  const before = rssMiB();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB())), 10);
  const seen: string[] = [];
  for (const [codec, { bytes: bomb, expands }] of Object.entries(all)) {
    if (!offered.includes(`encoding:${codec}`)) continue;
    seen.push(`${codec} ${(bomb.length / 1024).toFixed(1)} KiB -> ${expands / 1024 / 1024} MiB`);
    const id = c.send({ t: 'put', path: `${codec}.bin`, size: 1000, encoding: codec });
    for (let at = 0; at < bomb.length; at += 256 * 1024) c.sendData(id, bomb.subarray(at, at + 256 * 1024));
    c.send({ t: 'end', sha256: createHash('sha256').update(zeros(1000)).digest('hex') }, id);
    const m = await c.reply(id, 60_000);
    assert.is(m.t, 'error', `${codec}: ${JSON.stringify(m)}`);
    assert.ok(['size_mismatch', 'bad_encoding'].includes((m as { code: string }).code), `${codec}: ${JSON.stringify(m)}`);
    // Garbage declared as this codec.
    const g = c.send({ t: 'put', path: `${codec}-garbage.bin`, size: 100, encoding: codec });
    c.sendData(g, Buffer.from('this is not compressed at all, not even a little bit'.repeat(4)));
    c.send({ t: 'end', sha256: 'a'.repeat(64) }, g);
    const gm = await c.reply(g, 20_000);
    assert.is(gm.t, 'error', `${codec} garbage: ${JSON.stringify(gm)}`);
  }
  clearInterval(sampler);
  console.log(`    bombs: ${seen.join(', ')}; RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB`);
  assert.ok(seen.length >= 2, `codecs tried: ${seen}`);
  assert.ok(peak - before < 300, `RSS grew by ${(peak - before).toFixed(0)} MiB`);
  assert.equal(readdirSync(join(dir, 'data', 'homes', 'bomber')), [], 'nothing stored');
  // The connection goes on.
  const l = c.send({ t: 'list', path: '' });
  assert.is((await c.reply(l, 5000, (r) => r.t === 'ok' || r.t === 'error')).t, 'ok');
  c.destroy();
});

b.run();
