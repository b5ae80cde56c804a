// The client's request multiplexer (src/client/mux.ts) with a fake wire: ids, pipelining, typed and checked
// results, pages, abandoned requests, the connection closing. No socket.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { Mux } from '../../src/client/mux.ts';
import type { ServerMessage } from '../../src/protocol/messages.ts';

/** A wire that records what is sent; `answer` plays the server. */
function fake() {
  const sent: Array<{ id: number; message: Record<string, unknown> }> = [];
  const connection: ServerMessage[] = [];
  const mux = new Mux({ send: (id, message) => (sent.push({ id, message: message as Record<string, unknown> }), true) }, (m) => connection.push(m));
  const answer = (id: number, msg: ServerMessage) => mux.message(id, msg);
  return { sent, connection, mux, answer };
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const t = suite('client: request multiplexer (fake wire)');

t('each request gets its own id; replies are routed by id whatever their order', async () => {
  const { sent, mux, answer } = fake();
  const a = mux.call('stat', { path: 'a' });
  const b = mux.call('stat', { path: 'b' });
  await tick();
  assert.equal(sent.map((s) => [s.id, s.message.t, s.message.path]), [[1, 'stat', 'a'], [2, 'stat', 'b']]);
  const entry = (name: string) => ({ name, type: 'file', size: 1, mtime: 2 });
  answer(2, { t: 'ok', result: { entry: entry('b') } });
  answer(1, { t: 'ok', result: { entry: entry('a') } });
  assert.is((await a).result.entry.name, 'a');
  assert.is((await b).result.entry.name, 'b');
  assert.is(mux.inFlight, 0);
});

t('pages before the ok are collected; results are checked against the result table', async () => {
  const { mux, answer } = fake();
  const listing = mux.call('list', { path: '' });
  await tick();
  answer(1, { t: 'entries', entries: [{ name: 'x', type: 'dir', size: 0, mtime: 1 }] });
  answer(1, { t: 'entries', entries: [{ name: 'y', type: 'file', size: 3, mtime: 1 }] });
  answer(1, { t: 'ok', result: { count: 2, bytes: 3 } });
  const r = await listing;
  assert.equal(r.entries.map((e) => e.name), ['x', 'y']);
  assert.equal(r.result, { count: 2, bytes: 3 });
  const bad = mux.call('list', { path: '' });
  await tick();
  answer(2, { t: 'ok', result: { count: 'two' } });
  await bad.then(
    () => assert.unreachable('a malformed result must be refused'),
    (err: FerryError) => assert.is(err.code, 'bad_message'),
  );
  const badPage = mux.call('list', { path: '' });
  await tick();
  answer(3, { t: 'entries', entries: [{ name: 1 }] });
  await badPage.then(
    () => assert.unreachable(),
    (err: FerryError) => assert.is(err.code, 'bad_message'),
  );
});

t("the server's error fails that request only", async () => {
  const { mux, answer } = fake();
  const failing = mux.call('delete', { path: 'nope' });
  const fine = mux.call('ping', {});
  await tick();
  answer(1, { t: 'error', code: 'not_found', message: 'no such file' });
  answer(2, { t: 'ok' });
  await failing.then(
    () => assert.unreachable(),
    (err: FerryError) => assert.equal([err.code, err.message], ['not_found', 'no such file']),
  );
  assert.is((await fine).result, null);
});

t('a reply for a request that is not open breaks the protocol; an abandoned one is dropped until its final word', async () => {
  const { sent, mux, answer } = fake();
  assert.throws(() => answer(7, { t: 'ok' }), (err: FerryError) => err.code === 'unexpected_message');
  const { id } = mux.open();
  mux.abandon(id);
  assert.equal(sent.at(-1), { id, message: { t: 'cancel' } });
  mux.release(id);
  mux.data(id, Buffer.from('late bytes'));
  answer(id, { t: 'end', sha256: 'a'.repeat(64) });
  assert.throws(() => answer(id, { t: 'ok' }), (err: FerryError) => err.code === 'unexpected_message');
});

t('messages for the connection (id 0) go to the connection; a close fails every open request with its reason', async () => {
  const { connection, mux, answer } = fake();
  answer(0, { t: 'error', code: 'shutting_down', message: 'The server is stopping' });
  assert.is(connection.length, 1);
  const pending = mux.call('ping', {});
  const data = mux.open();
  mux.close(new FerryError('shutting_down', 'The server is stopping'));
  await pending.then(
    () => assert.unreachable(),
    (err: FerryError) => assert.is(err.code, 'shutting_down'),
  );
  await data.box.next().then(
    () => assert.unreachable(),
    (err: FerryError) => assert.is(err.code, 'shutting_down'),
  );
  assert.throws(() => mux.open(), (err: FerryError) => err.code === 'shutting_down');
});

t.run();
