// One rule for sizes everywhere (command line, config file, plugins): K/M/G/T/P and KiB/MiB/... are powers of
// 1024, KB/MB/GB/... powers of 1000. `ferry serve --max-upload-size 1GB` and the quota's `maxBytes: 1 GB` are
// the same 10^9 bytes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { validate as quotaOptions } from '../../plugins/quota/options.ts';
import { cleanup, startServer, tempDir } from '../e2e/harness.ts';
import { RawClient } from '../hardening/raw.ts';

const t = suite('sizes: one parser, one rule');

t('the quota plugin reads 1 GB as 10^9 bytes and 1 GiB / 1G as 2^30', () => {
  assert.is(quotaOptions({ defaults: { maxBytes: '1 GB' } }).defaults.maxBytes, 1e9);
  assert.is(quotaOptions({ defaults: { maxBytes: '1GiB' } }).defaults.maxBytes, 2 ** 30);
  assert.is(quotaOptions({ defaults: { maxBytes: '1G' } }).defaults.maxBytes, 2 ** 30);
});

/** What a server started with `args` answers to a put of `size` bytes: the error code, or 'accepted'. */
async function putOf(args: string[], size: number, config?: string, features = ['resume', 'too_large']): Promise<string> {
  const dir = tempDir();
  const extra = [...args];
  if (config !== undefined) {
    writeFileSync(join(dir, 'ferry.config.yaml'), config);
    extra.push('--config', join(dir, 'ferry.config.yaml'));
  }
  const server = await startServer({ args: extra });
  const c = new RawClient(server.port);
  try {
    assert.is((await c.logIn('sizer', 'a-long-password', true, features)).t, 'ok');
    const id = c.send({ t: 'put', path: 'big.bin', size });
    c.send({ t: 'cancel' }, id); // an accepted upload answers 'cancelled'; a refused one its refusal
    const reply = await c.reply(id);
    if (reply.t !== 'error') return reply.t;
    return reply.code === 'cancelled' ? 'accepted' : reply.code;
  } finally {
    c.destroy();
    await server.dispose();
    cleanup(dir);
  }
}

t('ferry serve --max-upload-size 1GB means 10^9 bytes: one byte more is refused as too_large', async () => {
  assert.is(await putOf(['--max-upload-size', '1GB'], 1e9), 'accepted');
  assert.is(await putOf(['--max-upload-size', '1GB'], 1e9 + 1), 'too_large');
});

t('a client that does not offer too_large in its hello gets the refusal as quota_exceeded, which it knows', async () => {
  assert.is(await putOf(['--max-upload-size', '1GB'], 1e9 + 1, undefined, ['resume']), 'quota_exceeded');
});

t('the config file takes the same sizes as the command line', async () => {
  assert.is(await putOf([], 1e9 + 1, 'maxUploadSize: 1 GB\n'), 'too_large');
  assert.is(await putOf([], 2 ** 30, 'maxUploadSize: 1 GiB\n'), 'accepted');
});

t.run();
