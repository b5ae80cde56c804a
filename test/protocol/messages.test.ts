import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { parseClientMessage, parseServerMessage } from '../../src/protocol/mod.ts';

const msgs = suite('control messages');

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.instance(err, FerryError);
    return (err as FerryError).code;
  }
  return 'no error';
}

msgs('a valid put is parsed with its fields', () => {
  const m = parseClientMessage('{"t":"put","path":"a.txt","size":11,"overwrite":true}');
  assert.equal(m, { t: 'put', path: 'a.txt', size: 11, overwrite: true });
});

msgs('optional fields may be absent', () => {
  assert.equal(parseClientMessage('{"t":"get","path":"x"}'), { t: 'get', path: 'x' });
});

msgs('invalid JSON is bad_message', () => {
  assert.is(code(() => parseClientMessage('{"t":')), 'bad_message');
  assert.is(code(() => parseClientMessage(Buffer.from([0xff, 0xfe]))), 'bad_message');
});

msgs('non-object JSON is bad_message', () => {
  for (const s of ['[]', 'null', '1', '"put"']) assert.is(code(() => parseClientMessage(s)), 'bad_message', s);
});

msgs('unknown type is unknown_message', () => {
  assert.is(code(() => parseClientMessage('{"t":"format_disk"}')), 'unknown_message');
  assert.is(code(() => parseClientMessage('{"x":1}')), 'unknown_message');
  assert.is(code(() => parseClientMessage('{"t":"__proto__"}')), 'unknown_message');
  assert.is(code(() => parseClientMessage('{"t":"toString"}')), 'unknown_message');
});

msgs('server-only types are unknown from a client', () => {
  assert.is(code(() => parseClientMessage('{"t":"welcome","v":1}')), 'unknown_message');
});

msgs('missing, mistyped and extra fields are bad_message', () => {
  assert.is(code(() => parseClientMessage('{"t":"put","path":"a"}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"put","path":"a","size":-1}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"put","path":"a","size":1.5}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"put","path":"a","size":1e300}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"put","path":1,"size":1}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"ping","evil":1}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"end","sha256":"XYZ"}')), 'bad_message');
  assert.is(code(() => parseClientMessage('{"t":"hello","v":1,"agent":"x","features":[1]}')), 'bad_message');
});

msgs('an unknown error code from a server becomes internal, keeping the text', () => {
  const m = parseServerMessage('{"t":"error","code":"future_thing","message":"hm"}');
  assert.equal(m, { t: 'error', code: 'internal', message: 'future_thing: hm' });
});

msgs.run();
