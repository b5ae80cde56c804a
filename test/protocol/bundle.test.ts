// The bundle record codec (src/protocol/bundle.ts): records survive any chunking, every malformed stream is
// `bad_message` (never another exception, never a hang), and the limits hold.
import { createHash, randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { encodeRecordHeader, RecordDecoder, type BundleRecord, type PutHeader } from '../../src/protocol/bundle.ts';

const LIMITS = { maxHeader: 64 * 1024, maxBody: 1024 * 1024 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

function putRecord(header: PutHeader, body: Buffer): Buffer {
  return Buffer.concat([encodeRecordHeader('put', header), body, sha(body)]);
}

/** Pushes `bytes` in random pieces of 1 to `max` bytes. */
function pushInPieces(decoder: RecordDecoder<'put'> | RecordDecoder<'want'>, bytes: Buffer, max: number, seed = 1): void {
  let x = seed;
  for (let at = 0; at < bytes.length; ) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (x % max);
    decoder.push(bytes.subarray(at, at + n));
    at += n;
  }
}

function badMessage(fn: () => void, what: string): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, FerryError, what);
    assert.is((err as FerryError).code, 'bad_message', what);
    return;
  }
  assert.unreachable(`${what}: accepted`);
}

const t = suite('bundle records');

t('records of every size come out whole, in order, however the stream is cut', () => {
  const sizes = [0, 1, 31, 32, 33, 4096, 65_536, 200_001, 1024 * 1024];
  const headers = sizes.map((size, i) => ({ path: `d${i % 3}/f${i}.bin`, size, mtime: 1_700_000_000_000 + i, ...(i % 2 ? { overwrite: true } : {}), parents: true }));
  const bodies = sizes.map((n) => randomBytes(n));
  const stream = Buffer.concat(headers.map((h, i) => putRecord(h, bodies[i] as Buffer)));
  for (const [max, views] of [[1, false], [7, true], [4096, false], [70_000, true], [stream.length, true]] as const) {
    const got: Array<BundleRecord<'put'>> = [];
    const decoder = new RecordDecoder('put', { ...LIMITS, views }, (r) => got.push(r));
    pushInPieces(decoder, stream, max);
    assert.ok(decoder.atBoundary, `at a boundary after all (pieces of up to ${max})`);
    assert.is(decoder.count, sizes.length);
    got.forEach((r, i) => {
      assert.equal(r.header, headers[i], `header ${i} (pieces of up to ${max})`);
      assert.ok((r.body as Buffer).equals(bodies[i] as Buffer), `body ${i} (pieces of up to ${max})`);
      assert.ok((r.digest as Buffer).equals(sha(bodies[i] as Buffer)), `digest ${i}`);
    });
  }
});

t('bodies are copies unless views are allowed: a reused buffer does not change a record', () => {
  const body = randomBytes(1000);
  const piece = putRecord({ path: 'a', size: body.length }, body);
  const got: Array<BundleRecord<'put'>> = [];
  new RecordDecoder('put', LIMITS, (r) => got.push(r)).push(piece);
  piece.fill(0);
  assert.ok((got[0]?.body as Buffer).equals(body), 'the copy kept its bytes');
});

t('want records carry a header only; the boundary is known between records', () => {
  const got: string[] = [];
  const decoder = new RecordDecoder('want', { maxHeader: 1024, maxBody: 0 }, (r) => got.push(r.header.path));
  const stream = Buffer.concat(['a', 'b/c', 'dé'].map((path) => encodeRecordHeader('want', { path })));
  decoder.push(stream.subarray(0, 5));
  assert.not.ok(decoder.atBoundary, 'inside the first record');
  decoder.push(stream.subarray(5));
  assert.ok(decoder.atBoundary);
  assert.equal(got, ['a', 'b/c', 'dé']);
});

t('malformed headers, lengths and sizes are bad_message', () => {
  const frame = (json: string) => {
    const b = Buffer.from(json);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const decode = (bytes: Buffer, limits = LIMITS) => () => new RecordDecoder('put', limits, () => {}).push(bytes);
  badMessage(decode(Buffer.alloc(4)), 'a header of 0 bytes');
  badMessage(decode(Buffer.from([0, 1, 0, 1])), 'a header over the limit');
  badMessage(decode(frame('{"path":"a","size":1'), { ...LIMITS }), 'not JSON');
  badMessage(decode(frame('[1,2]')), 'not an object');
  badMessage(decode(frame('null')), 'null');
  badMessage(decode(frame('{"path":"a"}')), 'no size');
  badMessage(decode(frame('{"path":"a","size":-1}')), 'a negative size');
  badMessage(decode(frame('{"path":"a","size":1.5}')), 'a fractional size');
  badMessage(decode(frame('{"path":1,"size":1}')), 'a path that is not a string');
  badMessage(decode(frame('{"path":"a","size":1,"mode":420}')), 'an unknown field');
  badMessage(decode(frame('{"path":"a","size":1,"t":"put"}')), 'a type tag (records have none)');
  badMessage(decode(frame('{"path":"a","size":1,"overwrite":null}')), 'null for an optional field');
  badMessage(decode(frame('{"path":"a","size":1048577}')), 'a body over the limit');
  badMessage(() => new RecordDecoder('want', { maxHeader: 1024, maxBody: 0 }, () => {}).push(frame('{"path":"a","size":0}')), 'a want with a size');
});

t('fuzz: random bytes and damaged streams are bad_message or wait for more, never anything else', () => {
  const valid = Buffer.concat(Array.from({ length: 20 }, (_, i) => putRecord({ path: `f${i}`, size: i * 7 }, randomBytes(i * 7))));
  let x = 7;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  for (let round = 0; round < 3000; round++) {
    let bytes: Buffer;
    if (round % 3 === 0) {
      bytes = randomBytes(next() % 300);
    } else {
      bytes = Buffer.from(valid);
      for (let k = 0; k <= next() % 4; k++) bytes[next() % bytes.length] = next() % 256;
      if (round % 3 === 2) bytes = bytes.subarray(0, next() % bytes.length);
    }
    const decoder = new RecordDecoder('put', { maxHeader: 256, maxBody: 4096 }, (r) => {
      assert.ok(r.body !== null && r.digest?.length === 32, 'a record has a body and a 32-byte digest');
    });
    try {
      pushInPieces(decoder, bytes, 1 + (next() % 64), round + 1);
    } catch (err) {
      if (!(err instanceof FerryError && err.code === 'bad_message')) throw err;
    }
  }
});

t.run();
