import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Courier } from '../../plugins/webhook/courier.ts';
import { validate } from '../../plugins/webhook/options.ts';
import { Outbox } from '../../plugins/webhook/outbox.ts';
import type { PluginLogger } from '../../src/plugin/types.ts';
import { cleanup, tempDir, waitUntil } from '../e2e/harness.ts';
import { Receiver } from './receiver.ts';

function recordingLog(): PluginLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
}

const SECRET = 'courier-secret';

async function setup(receiver: Receiver, endpoint: Record<string, unknown>, maxRetryMs = 200) {
  const port = await receiver.up();
  const options = validate({ endpoints: [{ url: `http://127.0.0.1:${port}/hook`, secret: SECRET, ...endpoint }], maxRetryMs });
  const log = recordingLog();
  const outbox = await Outbox.open(join(dir, 'o.jsonl'), log);
  const courier = new Courier({ endpoint: options.endpoints[0]!, outbox, log, maxRetryMs: options.maxRetryMs, requestTimeoutMs: 2000 });
  courier.start();
  const add = (n: number) => {
    for (let i = 0; i < n; i++) outbox.append(JSON.stringify({ id: `e${seq}`, event: 'upload', n: seq++ }));
  };
  return { outbox, courier, log, add };
}

let dir: string;
let seq = 0;
const courier = suite('courier');
courier.before.each(() => {
  dir = tempDir('ferry-courier-');
  seq = 0;
});
courier.after.each(() => cleanup(dir));

courier('sends signed batches in order, at most batchSize each, a lone event after flushMs', async () => {
  const receiver = new Receiver({ '/hook': SECRET });
  const { courier: c, outbox, add } = await setup(receiver, { batchSize: 4, flushMs: 150 });
  try {
    add(10);
    await waitUntil(() => receiver.ids('/hook').length === 10, 5000, 'ten events');
    assert.equal(receiver.ids('/hook'), Array.from({ length: 10 }, (_, i) => `e${i}`));
    assert.equal(receiver.requests.map((r) => r.count), [4, 4, 2]);
    assert.is(receiver.badSignatures, 0);
    const t0 = Date.now();
    add(1);
    await waitUntil(() => receiver.ids('/hook').length === 11, 5000, 'the lone event');
    const latency = Date.now() - t0;
    assert.ok(latency >= 140 && latency < 1500, `a lone event waits about flushMs: ${latency} ms`);
    await waitUntil(() => outbox.pending === 0, 2000, 'acknowledged');
  } finally {
    await c.stop();
    await outbox.close();
    await receiver.down();
  }
});

courier('5xx is retried with the same delivery id until it succeeds; the run is logged once, and its end', async () => {
  const receiver = new Receiver({ '/hook': SECRET });
  receiver.answer.set('/hook', 503);
  const { courier: c, outbox, log, add } = await setup(receiver, { flushMs: 0 });
  try {
    add(3);
    await waitUntil(() => receiver.requests.length >= 4, 5000, 'retries');
    receiver.answer.delete('/hook');
    await waitUntil(() => receiver.ids('/hook').length === 3, 5000, 'delivery after retries');
    const deliveries = new Set(receiver.requests.map((r) => r.delivery));
    assert.is(deliveries.size, 1, 'one batch, one delivery id across its retries');
    const warns = log.lines.filter((l) => l.startsWith('warn'));
    assert.is(warns.length, 1, log.lines.join('\n'));
    assert.match(warns[0] ?? '', /failed: HTTP 503 "no"; 3 event\(s\) waiting/);
    await waitUntil(() => log.lines.some((l) => /works again after \d+ failed attempt/.test(l)), 2000, 'recovery line');
  } finally {
    await c.stop();
    await outbox.close();
    await receiver.down();
  }
});

courier('413 halves the batch until the receiver takes it', async () => {
  const receiver = new Receiver({ '/hook': SECRET });
  const { courier: c, outbox, add } = await setup(receiver, { batchSize: 8, flushMs: 0 });
  try {
    // The receiver answers 413 until a batch has shrunk to two events.
    receiver.answer.set('/hook', 413);
    add(8);
    await waitUntil(() => receiver.requests.some((r) => r.count === 2), 5000, 'a batch of two');
    receiver.answer.delete('/hook');
    await waitUntil(() => receiver.ids('/hook').length === 8, 5000, 'all eight');
    assert.equal(receiver.requests.filter((r) => r.status === 413).map((r) => r.count).slice(0, 3), [8, 4, 2]);
    assert.equal(receiver.ids('/hook'), Array.from({ length: 8 }, (_, i) => `e${i}`));
  } finally {
    await c.stop();
    await outbox.close();
    await receiver.down();
  }
});

courier('a refusal (401) keeps the events queued and retries at the slowest pace', async () => {
  const receiver = new Receiver({ '/hook': 'not-the-secret' });
  const { courier: c, outbox, log, add } = await setup(receiver, { flushMs: 0 }, 300);
  try {
    add(2);
    await waitUntil(() => receiver.requests.length >= 3, 5000, 'three refused attempts');
    const gaps = receiver.requests.slice(1, 3).map((r, i) => r.at - (receiver.requests[i]?.at ?? 0));
    for (const gap of gaps) assert.ok(gap >= 140, `retries wait maxRetryMs/2 at least: ${gap} ms`);
    assert.is(outbox.pending, 2, 'nothing dropped');
    assert.is(log.lines.filter((l) => l.startsWith('error')).length, 1, log.lines.join('\n'));
    assert.match(log.lines.join('\n'), /HTTP 401 "bad signature" \(the receiver refuses them/);
  } finally {
    await c.stop();
    await outbox.close();
    await receiver.down();
  }
});

courier('stop does not wait for a receiver that never answers; the batch stays queued', async () => {
  const sockets = new Set<import('node:net').Socket>();
  const hang: Server = createServer(() => {});
  hang.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  const port = (hang.address() as AddressInfo).port;
  const options = validate({ endpoints: [{ url: `http://127.0.0.1:${port}/`, secret: SECRET, flushMs: 0 }] });
  const log = recordingLog();
  const outbox = await Outbox.open(join(dir, 'o.jsonl'), log);
  const c = new Courier({ endpoint: options.endpoints[0]!, outbox, log, maxRetryMs: options.maxRetryMs });
  c.start();
  try {
    outbox.append(JSON.stringify({ id: 'x', event: 'upload' }));
    await waitUntil(() => sockets.size > 0, 5000, 'a request in flight');
    const t0 = Date.now();
    await c.stop();
    assert.ok(Date.now() - t0 < 500, `stopped in ${Date.now() - t0} ms`);
    assert.is(outbox.pending, 1);
  } finally {
    await outbox.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hang.close(() => r()));
  }
});

courier.run();
