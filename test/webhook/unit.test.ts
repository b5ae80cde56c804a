import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backoff, classify, FailureLog } from '../../plugins/webhook/courier.ts';
import { outboxFileName } from '../../plugins/webhook/index.ts';
import { validate } from '../../plugins/webhook/options.ts';
import { Outbox } from '../../plugins/webhook/outbox.ts';
import { sign, verify } from '../../plugins/webhook/sign.ts';
import type { PluginLogger } from '../../src/plugin/types.ts';
import { cleanup, tempDir } from '../e2e/harness.ts';

function recordingLog(): PluginLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
}

const record = (n: number) => JSON.stringify({ id: `id-${n}`, event: 'upload', n });

// ---- signature ----------------------------------------------------------------------------------------

const signature = suite('signature');

signature('is sha256= and the hex HMAC-SHA256 of the exact body (RFC 4231 test case 2)', () => {
  assert.is(sign('what do ya want for nothing?', 'Jefe'), 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
});

signature('changes with any byte of the body and with the secret; verify agrees', () => {
  const body = '{"events":[{"id":"a","event":"upload"}]}';
  const good = sign(body, 's3cret');
  assert.ok(verify(body, good, 's3cret'));
  assert.ok(verify(Buffer.from(body), good, 's3cret'));
  assert.not.ok(verify(body.replace('upload', 'uploae'), good, 's3cret'));
  assert.not.ok(verify(`${body} `, good, 's3cret'));
  assert.not.ok(verify(body, good, 's3cret!'));
  assert.not.ok(verify(body, undefined, 's3cret'));
  assert.not.ok(verify(body, good.toUpperCase(), 's3cret'));
});

signature.run();

// ---- options ------------------------------------------------------------------------------------------

const options = suite('option validation');

options('fills defaults, reads secretEnv, normalises the URL, keeps the event filter', () => {
  const o = validate(
    { endpoints: [{ url: 'https://hooks.example.org/ferry', secretEnv: 'HOOK_SECRET', events: ['upload', 'delete'] }, { url: 'http://127.0.0.1:9/x', secret: 'k', batchSize: 5, flushMs: 0 }] },
    { HOOK_SECRET: 'from-env' },
  );
  assert.is(o.maxRetryMs, 60_000);
  const [a, b] = o.endpoints;
  assert.is(a?.secret, 'from-env');
  assert.is(a?.batchSize, 50);
  assert.is(a?.flushMs, 1000);
  assert.equal([...(a?.events ?? [])], ['upload', 'delete']);
  assert.is(b?.events, null);
  assert.is(b?.batchSize, 5);
  assert.is(b?.flushMs, 0);
});

options('refuses bad options with a message that names the field', () => {
  const env = { SET: 'x' };
  const cases: Array<[unknown, RegExp]> = [
    [undefined, /options must be a mapping/],
    [{}, /endpoints: required/],
    [{ endpoints: [] }, /endpoints: required/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k' }], retries: 3 }, /unknown option 'retries'/],
    [{ endpoints: [{ url: 'not a url', secret: 'k' }] }, /endpoints\[0\]\.url: 'not a url' is not a URL/],
    [{ endpoints: [{ url: 'ftp://h/x', secret: 'k' }] }, /endpoints\[0\]\.url: .* must be an http: or https: URL/],
    [{ endpoints: [{ secret: 'k' }] }, /endpoints\[0\]\.url: required/],
    [{ endpoints: [{ url: 'https://h/x' }] }, /endpoints\[0\]: missing secret/],
    [{ endpoints: [{ url: 'https://h/x', secret: '' }] }, /endpoints\[0\]\.secret: must be a non-empty string/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', secretEnv: 'SET' }] }, /either secret or secretEnv, not both/],
    [{ endpoints: [{ url: 'https://h/x', secretEnv: 'UNSET_VAR' }] }, /endpoints\[0\]\.secretEnv: the environment variable UNSET_VAR is not set/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', events: ['upload', 'uplod'] }] }, /endpoints\[0\]\.events: unknown event type 'uplod' \(known: login, /],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', events: [] }] }, /endpoints\[0\]\.events: must be a non-empty list/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', batchSize: 0 }] }, /endpoints\[0\]\.batchSize: 0 must be a whole number from 1 to 1000/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', flushMs: 1.5 }] }, /flushMs: 1.5 must be a whole number/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k', sekret: 'k' }] }, /endpoints\[0\]: unknown option 'sekret'/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k' }, { url: 'https://h/x', secret: 'j' }] }, /endpoints\[1\]: same URL https:\/\/h\/x as endpoints\[0\]/],
    [{ endpoints: [{ url: 'https://h/x', secret: 'k' }], maxRetryMs: 5 }, /maxRetryMs: 5 must be a whole number from 100/],
  ];
  for (const [raw, pattern] of cases) {
    assert.throws(() => validate(raw, env), pattern, JSON.stringify(raw));
  }
});

options('never puts the secret in an error message', () => {
  try {
    validate({ endpoints: [{ url: 'https://user:pw@h/x?token=abc', secret: 'topsecret', batchSize: -1 }] });
    assert.unreachable();
  } catch (err) {
    assert.not.match((err as Error).message, /topsecret/);
  }
});

options('outbox files are named by endpoint name, else by a hash of the URL', () => {
  assert.is(outboxFileName({ name: 'ops', url: 'https://a/x' }), 'outbox-ops.jsonl');
  assert.match(outboxFileName({ name: null, url: 'https://a/x' }), /^outbox-url-[0-9a-f]{16}\.jsonl$/);
  assert.is.not(outboxFileName({ name: null, url: 'https://a/x' }), outboxFileName({ name: null, url: 'https://a/y' }));
});

options.run();

// ---- outbox -------------------------------------------------------------------------------------------

const outbox = suite('outbox');
let dir: string;
outbox.before.each(() => {
  dir = tempDir('ferry-outbox-');
});
outbox.after.each(() => cleanup(dir));

outbox('appended records become durable, are read in order, and are gone from the file after ack', async () => {
  const log = recordingLog();
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, log);
  let durable = 0;
  box.onDurable = () => durable++;
  for (let i = 0; i < 10; i++) box.append(record(i));
  assert.is(box.pending, 0, 'nothing counts before it is on disk');
  await box.flush();
  assert.is(box.pending, 10);
  assert.is(durable, 1, 'records of one tick go out in one write');
  assert.is(readFileSync(file, 'utf8').split('\n').length, 11);
  const first = await box.read(4, 1 << 20);
  assert.equal(first.ids, ['id-0', 'id-1', 'id-2', 'id-3']);
  assert.is(first.records[0], record(0));
  await box.ack(first);
  assert.is(box.pending, 6);
  const rest = await box.read(100, 1 << 20);
  assert.equal(rest.ids, ['id-4', 'id-5', 'id-6', 'id-7', 'id-8', 'id-9']);
  await box.ack(rest);
  assert.is(box.pending, 0);
  assert.is(statSync(file).size, 0, 'a fully delivered outbox is emptied');
  await box.close();
});

outbox('a batch stops at maxBytes, but always holds at least one record', async () => {
  const box = await Outbox.open(join(dir, 'o.jsonl'), recordingLog());
  for (let i = 0; i < 5; i++) box.append(record(i));
  await box.flush();
  const one = await box.read(10, 10);
  assert.is(one.records.length, 1);
  const two = await box.read(10, record(0).length * 2 + 2);
  assert.is(two.records.length, 2);
  await box.close();
});

outbox('reopening resumes after the last acknowledged record', async () => {
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, recordingLog());
  for (let i = 0; i < 6; i++) box.append(record(i));
  await box.flush();
  await box.ack(await box.read(2, 1 << 20));
  box.append(record(6));
  await box.close();
  const again = await Outbox.open(file, recordingLog());
  assert.is(again.pending, 5);
  assert.equal((await again.read(100, 1 << 20)).ids, ['id-2', 'id-3', 'id-4', 'id-5', 'id-6']);
  await again.close();
});

outbox('a cut-off last line is removed at open; the complete ones are kept', async () => {
  const file = join(dir, 'o.jsonl');
  writeFileSync(file, `${record(0)}\n${record(1)}\n${record(2).slice(0, 15)}`);
  const log = recordingLog();
  const box = await Outbox.open(file, log);
  assert.is(box.pending, 2);
  assert.match(log.lines.join('\n'), /removed a cut-off last line \(15 bytes\)/);
  assert.is(readFileSync(file, 'utf8'), `${record(0)}\n${record(1)}\n`);
  box.append(record(3));
  await box.flush();
  assert.equal((await box.read(100, 1 << 20)).ids, ['id-0', 'id-1', 'id-3']);
  await box.close();
});

outbox('a file that is only a cut-off line is emptied', async () => {
  const file = join(dir, 'o.jsonl');
  writeFileSync(file, '{"id":"x","ev');
  const box = await Outbox.open(file, recordingLog());
  assert.is(box.pending, 0);
  assert.is(statSync(file).size, 0);
  await box.close();
});

outbox('a damaged line in the middle is skipped with a warning, not delivered, not blocking', async () => {
  const file = join(dir, 'o.jsonl');
  writeFileSync(file, `${record(0)}\n{not json\n${record(2)}\n`);
  const log = recordingLog();
  const box = await Outbox.open(file, log);
  assert.is(box.pending, 3);
  const batch = await box.read(100, 1 << 20);
  assert.equal(batch.ids, ['id-0', 'id-2']);
  assert.is(batch.lines, 3);
  assert.match(log.lines.join('\n'), /skipped a damaged line at byte \d+: "\{not json"/);
  await box.ack(batch);
  assert.is(box.pending, 0);
  await box.close();
});

outbox('without its .ack file, or with a damaged one, delivery starts over (duplicates, never gaps)', async () => {
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, recordingLog());
  for (let i = 0; i < 4; i++) box.append(record(i));
  await box.flush();
  await box.ack(await box.read(2, 1 << 20));
  await box.close();
  writeFileSync(`${file}.ack`, '{"offset":');
  const damaged = await Outbox.open(file, recordingLog());
  assert.equal((await damaged.read(100, 1 << 20)).ids, ['id-0', 'id-1', 'id-2', 'id-3']);
  await damaged.close();
  unlinkSync(`${file}.ack`);
  const missing = await Outbox.open(file, recordingLog());
  assert.is(missing.pending, 4);
  await missing.close();
});

outbox('a large delivered head is compacted away; reopening after it resumes at the right record', async () => {
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, recordingLog());
  const pad = 'x'.repeat(1000);
  const big = (n: number) => JSON.stringify({ id: `big-${n}`, pad });
  for (let i = 0; i < 1500; i++) box.append(big(i));
  await box.flush();
  const before = statSync(file).size;
  assert.ok(before > 1_500_000);
  while (box.pending > 300) await box.ack(await box.read(200, 1 << 20));
  assert.ok(statSync(file).size < before / 2, `compacted: ${statSync(file).size} of ${before}`);
  assert.not.ok(existsSync(`${file}.tmp`));
  const left = box.pending;
  const next = (await box.read(1, 1 << 20)).ids[0];
  box.append(big(1500));
  await box.close();
  const again = await Outbox.open(file, recordingLog());
  assert.is(again.pending, left + 1);
  assert.is((await again.read(1, 1 << 20)).ids[0], next);
  await again.close();
});

outbox('appends after close are written synchronously and found at the next open', async () => {
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, recordingLog());
  box.append(record(0));
  await box.close();
  box.append(record(1));
  assert.is(readFileSync(file, 'utf8'), `${record(0)}\n${record(1)}\n`);
  const again = await Outbox.open(file, recordingLog());
  assert.is(again.pending, 2);
  await again.close();
});

outbox('appends made while closing are not lost', async () => {
  const file = join(dir, 'o.jsonl');
  const box = await Outbox.open(file, recordingLog());
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const id = randomUUID();
    ids.push(id);
    box.append(JSON.stringify({ id }));
  }
  const closing = box.close();
  for (let i = 0; i < 5; i++) {
    const id = randomUUID();
    ids.push(id);
    box.append(JSON.stringify({ id }));
  }
  await closing;
  const again = await Outbox.open(file, recordingLog());
  assert.equal((await again.read(100, 1 << 20)).ids.sort(), ids.sort());
  await again.close();
});

outbox.run();

// ---- retry policy and log throttling ------------------------------------------------------------------

const policy = suite('retry policy');

policy('backoff doubles from 500 ms with jitter between half and all, capped', () => {
  assert.is(backoff(1, 60_000, () => 0), 250);
  assert.is(backoff(1, 60_000, () => 1), 500);
  assert.is(backoff(3, 60_000, () => 1), 2000);
  assert.is(backoff(30, 60_000, () => 1), 60_000);
  assert.is(backoff(30, 60_000, () => 0), 30_000);
  assert.is(backoff(Infinity, 1000, () => 1), 1000);
});

policy('2xx delivers; network-ish statuses retry; 413 splits; other 4xx and 3xx are refusals kept for slow retry', () => {
  assert.is(classify(200, 5), 'delivered');
  assert.is(classify(204, 5), 'delivered');
  for (const s of [500, 502, 503, 429, 408]) assert.is(classify(s, 5), 'retry', String(s));
  assert.is(classify(413, 5), 'split');
  assert.is(classify(413, 1), 'rejected');
  for (const s of [301, 400, 401, 403, 404, 422]) assert.is(classify(s, 5), 'rejected', String(s));
});

policy('a run of failures is logged once at its start, then at most once per interval, and once when it ends', () => {
  const log = recordingLog();
  let now = 0;
  const failures = new FailureLog(log, 'http://h/x', 60_000, () => now);
  for (let i = 0; i < 100; i++) {
    failures.failed('ECONNREFUSED', 7, 1000, false);
    now += 1000;
  }
  assert.is(failures.attempts, 100);
  assert.is(log.lines.length, 2, log.lines.join('\n'));
  assert.match(log.lines[0] ?? '', /^warn Delivery to http:\/\/h\/x failed: ECONNREFUSED; 7 event\(s\) waiting/);
  assert.match(log.lines[1] ?? '', /still failing: 61 attempts in 60 s/);
  failures.succeeded();
  assert.match(log.lines[2] ?? '', /^info Delivery to http:\/\/h\/x works again after 100 failed attempt\(s\)/);
  failures.failed('HTTP 401', 1, 60_000, true);
  assert.match(log.lines[3] ?? '', /^error .*HTTP 401 \(the receiver refuses them/);
});

policy.run();
