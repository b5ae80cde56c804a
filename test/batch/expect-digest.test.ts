import { createHash } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, UnexpectedDigestError, type FerryClient } from '../../src/client/mod.ts';
import { cleanup, startServer, tempDir, type ServerHandle } from '../e2e/harness.ts';
import { addUser, batch, homeOf, manifest } from './e2e-helpers.ts';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const t = suite('expected digests (client expectSha256, manifest sha256)');
let server: ServerHandle;
let work: string;
let client: FerryClient;

t.before(async () => {
  server = await startServer();
  work = tempDir('ferry-digest-');
  await addUser(server, 'dee', 'dee-password');
  client = await connect({ host: '127.0.0.1', port: server.port, fingerprint: server.fingerprint, knownHosts: null });
  await client.login('dee', 'dee-password');
  writeFileSync(join(work, 'a.txt'), 'the real content');
});

t.after(async () => {
  await client.quit();
  await server.dispose();
  cleanup(work);
});

t('an upload whose bytes differ from expectSha256 is cancelled and leaves nothing on the server', async () => {
  const err = await client.upload(join(work, 'a.txt'), 'a.txt', { expectSha256: sha('something else') }).catch((e: unknown) => e);
  assert.instance(err, UnexpectedDigestError);
  assert.is((err as UnexpectedDigestError).code, 'digest_mismatch');
  assert.is((err as UnexpectedDigestError).retryable, false);
  assert.is(await client.exists('a.txt'), null);
  // The connection is still good, and the right digest goes through (upper case accepted).
  const ok = await client.upload(join(work, 'a.txt'), 'a.txt', { expectSha256: sha('the real content').toUpperCase() });
  assert.is(ok.sha256, sha('the real content'));
});

t('a download whose bytes differ from expectSha256 is not put in place and leaves no partial', async () => {
  const local = join(work, 'down.txt');
  const err = await client.download('a.txt', local, { expectSha256: sha('nope') }).catch((e: unknown) => e);
  assert.instance(err, UnexpectedDigestError);
  assert.not.ok(existsSync(local));
  assert.not.ok(readdirSync(work).some((n) => n.endsWith('.ferry-part')));
  const ok = await client.download('a.txt', local, { expectSha256: sha('the real content') });
  assert.is(ok.size, 16);
});

t('a manifest sha256 that does not match fails that op (not retried); a matching one transfers', async () => {
  writeFileSync(join(work, 'b.txt'), 'bee');
  writeFileSync(
    join(work, 'd.yaml'),
    manifest(server, 'dee', `  - put: ./b.txt\n    to: bad/\n    sha256: ${sha('not bee')}\n  - put: ./b.txt\n    to: good/\n    sha256: ${sha('bee')}\n  - get: a.txt\n    to: ./got.txt\n    sha256: ${sha('wrong')}\n`),
  );
  const r = await batch(server, ['d.yaml', '--json'], { cwd: work, password: 'dee-password' });
  assert.is(r.code, 1, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(events.filter((e) => e.event === 'error').map((e) => [e.op, e.code, e.retried]), [[0, 'digest_mismatch', false], [2, 'digest_mismatch', false]]);
  assert.ok(existsSync(join(homeOf(server, 'dee'), 'good', 'b.txt')));
  assert.not.ok(existsSync(join(homeOf(server, 'dee'), 'bad')));
  assert.not.ok(existsSync(join(work, 'got.txt')));
});

t.run();
