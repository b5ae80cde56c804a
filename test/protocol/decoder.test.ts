import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { DEFAULT_LIMITS, FrameDecoder, FrameKind, HEADER_SIZE, PREAMBLE, encodeData, encodeHeader, encodeMessage } from '../../src/protocol/mod.ts';

type Got = { kind: 'msg'; id: number; body: string } | { kind: 'data'; id: number; bytes: Buffer; last: boolean };

function decoder(preamble = false, limits = DEFAULT_LIMITS) {
  const got: Got[] = [];
  const d = new FrameDecoder(
    {
      onMessage: (id, body) => got.push({ kind: 'msg', id, body: body.toString() }),
      onData: (id, bytes, last) => got.push({ kind: 'data', id, bytes: Buffer.from(bytes), last }),
    },
    { ...limits },
    preamble,
  );
  return { d, got };
}

function expectError(fn: () => void, code: string) {
  try {
    fn();
  } catch (err) {
    assert.instance(err, FerryError);
    assert.is((err as FerryError).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

const frames = suite('frame decoder');

frames('one message frame in one write decodes', () => {
  const { d, got } = decoder();
  d.push(encodeMessage(7, { t: 'ping' }));
  assert.equal(got, [{ kind: 'msg', id: 7, body: '{"t":"ping"}' }]);
  assert.ok(d.atBoundary);
});

frames('one frame split across two writes and at every byte decodes the same', () => {
  const frame = encodeMessage(3, { t: 'list', path: 'a/b' });
  for (let cut = 1; cut < frame.length; cut++) {
    const { d, got } = decoder();
    d.push(frame.subarray(0, cut));
    assert.is(got.length, 0, `nothing before the frame is complete (cut ${cut})`);
    assert.not.ok(d.atBoundary);
    d.push(frame.subarray(cut));
    assert.equal(got, [{ kind: 'msg', id: 3, body: '{"t":"list","path":"a/b"}' }]);
  }
});

frames('two frames in one write decode in order', () => {
  const { d, got } = decoder();
  const [h, p] = encodeData(5, Buffer.from('hello'));
  d.push(Buffer.concat([encodeMessage(5, { t: 'put' }), h, p]));
  assert.is(got.length, 2);
  assert.equal(got[0], { kind: 'msg', id: 5, body: '{"t":"put"}' });
  assert.equal(got[1], { kind: 'data', id: 5, bytes: Buffer.from('hello'), last: true });
});

frames('data payload is delivered in pieces as it arrives, without buffering', () => {
  const { d, got } = decoder();
  const payload = Buffer.alloc(1000, 1);
  const [h] = encodeData(9, payload);
  d.push(Buffer.concat([h, payload.subarray(0, 400)]));
  d.push(payload.subarray(400, 999));
  d.push(payload.subarray(999));
  assert.equal(got.map((g) => (g.kind === 'data' ? [g.bytes.length, g.last] : null)), [[400, false], [599, false], [1, true]]);
});

frames('an empty data frame is delivered as a last piece', () => {
  const { d, got } = decoder();
  d.push(encodeHeader(FrameKind.DATA, 2, 0));
  assert.equal(got, [{ kind: 'data', id: 2, bytes: Buffer.alloc(0), last: true }]);
});

frames('message larger than the limit ends the connection before allocation', () => {
  const { d, got } = decoder(false, { maxMessage: 100, maxData: 1000 });
  expectError(() => d.push(encodeHeader(FrameKind.MSG, 1, 101)), 'frame_too_large');
  assert.is(got.length, 0);
  // Once failed, stays failed.
  expectError(() => d.push(encodeMessage(1, { t: 'ping' })), 'frame_too_large');
});

frames('message exactly at the limit is accepted', () => {
  const { d, got } = decoder(false, { maxMessage: 100, maxData: 1000 });
  const body = Buffer.alloc(100, 0x20);
  d.push(Buffer.concat([encodeHeader(FrameKind.MSG, 1, 100), body]));
  assert.is(got.length, 1);
});

frames('data frame larger than the limit is refused', () => {
  const { d } = decoder(false, { maxMessage: 100, maxData: 1000 });
  expectError(() => d.push(encodeHeader(FrameKind.DATA, 1, 1001)), 'frame_too_large');
});

frames('unknown frame kind is refused', () => {
  const { d } = decoder();
  const h = encodeHeader(FrameKind.MSG, 1, 2);
  h[0] = 7;
  expectError(() => d.push(h), 'bad_frame');
});

frames('data frame for id 0 is refused', () => {
  const { d } = decoder();
  expectError(() => d.push(encodeHeader(FrameKind.DATA, 0, 1)), 'unexpected_message');
});

frames('empty message is refused', () => {
  const { d } = decoder();
  expectError(() => d.push(encodeHeader(FrameKind.MSG, 1, 0)), 'bad_message');
});

frames('a truncated frame is not delivered and leaves the decoder mid-frame', () => {
  const { d, got } = decoder();
  const f = encodeMessage(1, { t: 'ping' });
  d.push(f.subarray(0, HEADER_SIZE + 2));
  assert.is(got.length, 0);
  assert.not.ok(d.atBoundary);
});

frames.run();

const pre = suite('preamble');

pre('a stream that starts with the preamble decodes', () => {
  const { d, got } = decoder(true);
  d.push(Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello' })]));
  assert.is(got.length, 1);
});

pre('preamble split byte by byte is accepted', () => {
  const { d, got } = decoder(true);
  for (const b of PREAMBLE) d.push(Buffer.of(b));
  d.push(encodeMessage(0, { t: 'hello' }));
  assert.is(got.length, 1);
});

pre('garbage before the handshake is refused at the first wrong byte', () => {
  const { d } = decoder(true);
  expectError(() => d.push(Buffer.from('GET / HTTP/1.1\r\n')), 'bad_preamble');
  const { d: d2 } = decoder(true);
  d2.push(Buffer.from(PREAMBLE.subarray(0, 3)));
  expectError(() => d2.push(Buffer.from('x')), 'bad_preamble');
});

pre.run();
