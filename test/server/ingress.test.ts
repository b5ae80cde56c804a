// The ingress queue's memory bounds: one session pauses its client beyond QUEUE_HIGH; when the sessions of the
// process hold more than the shared budget together, each pauses beyond QUEUE_LOW already.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Ingress, QUEUE_HIGH, QUEUE_LOW, SharedQueue, type IngressSink } from '../../src/server/session/ingress.ts';

const t = suite('ingress');

/** A session whose uploads' writes wait until `release` is called; counts pauses, and records what it handled in order. */
function session(shared: SharedQueue) {
  let release: () => void = () => {};
  const blocked = new Promise<void>((resolve) => (release = resolve));
  const state = { paused: 0, resumed: 0, written: 0, order: [] as string[], bytes: [] as string[] };
  const sink: IngressSink = {
    request: async (id, msg) => void state.order.push(`${msg.t} ${id}`),
    data: async (id, chunks, link) => {
      await blocked;
      for (const c of chunks) state.written += c.length;
      state.order.push(`data ${id}${link ? ' by link' : ''} ${chunks.length}`);
      state.bytes.push(Buffer.concat(chunks).toString());
    },
    fail: (err) => assert.unreachable(err.message),
    pause: () => void state.paused++,
    resume: () => void state.resumed++,
    isReady: () => true,
    isClosed: () => false,
  };
  return { ingress: new Ingress(sink, shared), state, release: () => release() };
}

const chunk = (n: number) => ({ kind: 'data' as const, id: 1, chunks: [Buffer.alloc(n)], bytes: n });
const tick = () => new Promise((r) => setTimeout(r, 10));

t('one session pauses beyond QUEUE_HIGH, resumes below QUEUE_LOW, and gives its bytes back to the shared count', async () => {
  const shared = new SharedQueue(1024 * 1024 * 1024);
  const s = session(shared);
  for (let sent = 0; sent <= QUEUE_HIGH; sent += 256 * 1024) s.ingress.enqueue(chunk(256 * 1024));
  assert.is(s.state.paused, 1);
  assert.ok(shared.bytes > QUEUE_HIGH);
  s.release();
  await tick();
  assert.is(s.state.resumed, 1);
  assert.is(shared.bytes, 0, 'everything written is off the shared count');
});

t('when the process holds more than the shared budget, a session pauses beyond QUEUE_LOW', async () => {
  const shared = new SharedQueue(3 * QUEUE_LOW);
  const a = session(shared);
  const b = session(shared);
  // a holds 2.5 x QUEUE_LOW (under its own QUEUE_HIGH, so not paused); b then goes past the shared budget.
  for (let i = 0; i < 10; i++) a.ingress.enqueue(chunk(QUEUE_LOW / 4));
  assert.is(a.state.paused, 0);
  for (let i = 0; i < 3; i++) b.ingress.enqueue(chunk(QUEUE_LOW / 2));
  assert.ok(shared.full);
  assert.is(b.state.paused, 1, 'b pauses at QUEUE_LOW, far below QUEUE_HIGH');
  a.ingress.enqueue(chunk(1));
  assert.is(a.state.paused, 1, 'a pauses with its next bytes');
  a.release();
  b.release();
  await tick();
  assert.equal([a.state.resumed, b.state.resumed], [1, 1]);
  assert.is(shared.bytes, 0);
});

t('clear() takes what was queued off the shared count', async () => {
  const shared = new SharedQueue(1024 * 1024 * 1024);
  const s = session(shared);
  for (let i = 0; i < 4; i++) s.ingress.enqueue(chunk(1000));
  s.ingress.clear();
  s.release();
  await tick();
  assert.is(shared.bytes, 0);
});


t("'after' work runs behind what was queued before it (a link's end behind its bytes and an earlier cancel), before what comes later", async () => {
  const { ingress, state, release } = session(new SharedQueue(1024 * 1024 * 1024));
  ingress.enqueue({ ...chunk(10), id: 2, link: true });
  ingress.enqueue({ ...chunk(10), id: 2, link: true });
  ingress.enqueue({ kind: 'msg', id: 2, msg: { t: 'cancel' }, bytes: 10 });
  ingress.enqueue({ kind: 'after', id: 2, bytes: 0, run: async () => void state.order.push('link lost 2') });
  ingress.enqueue({ kind: 'msg', id: 3, msg: { t: 'list', path: '' }, bytes: 10 });
  await tick();
  assert.equal(state.order, [], 'nothing passes the write in progress');
  release();
  await tick();
  assert.equal(state.order, ['data 2 by link 1', 'data 2 by link 1', 'cancel 2', 'link lost 2', 'list 3']);
});

t("an upload's queued pieces are handed over together and in order, whether a frame brought one or a link several", async () => {
  const shared = new SharedQueue(1024 * 1024 * 1024);
  const { ingress, state, release } = session(shared);
  const data = (text: string, id = 1, link = false) => {
    const chunks = text.split(',').map((p) => Buffer.from(p));
    return { kind: 'data' as const, id, chunks, bytes: chunks.reduce((n, c) => n + c.length, 0), ...(link ? { link: true as const } : {}) };
  };
  ingress.enqueue(data('first'));
  ingress.enqueue(data('a,b,c', 2, true));
  ingress.enqueue(data('d', 2, true));
  ingress.enqueue(data('e,f', 2, true));
  ingress.enqueue(data('g'));
  ingress.enqueue(data('h', 2));
  await tick();
  release();
  await tick();
  assert.equal(state.order, ['data 1 1', 'data 2 by link 6', 'data 1 1', 'data 2 1']);
  assert.equal(state.bytes, ['first', 'abcdef', 'g', 'h']);
  assert.is(state.written, 13);
  assert.is(shared.bytes, 0, 'every byte given back to the shared count');
});

t.run();
