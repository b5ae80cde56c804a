import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAddress as parseTarget } from '../../src/core/address.ts';
import { formatBytes, formatRate, splitWords } from '../../src/cli/format.ts';

const words = suite('command line words');

words('splits on spaces and tabs, keeping quoted groups', () => {
  assert.equal(splitWords('UPLD  "my file.txt"\treports/'), ['UPLD', 'my file.txt', 'reports/']);
  assert.equal(splitWords("put 'it''s' x"), ['put', 'its', 'x']);
  assert.equal(splitWords('put a\\ b "q\\"x"'), ['put', 'a b', 'q"x']);
  assert.equal(splitWords('LIST ""'), ['LIST', '']);
  assert.equal(splitWords('   '), []);
});

words('an unclosed quote is an error', () => {
  assert.throws(() => splitWords('UPLD "oops'), /Unclosed " quote/);
});

words.run();

const sizes = suite('human sizes');

sizes('bytes, KiB, MiB and GiB with sensible precision', () => {
  assert.is(formatBytes(11), '11 B');
  assert.is(formatBytes(1023), '1023 B');
  assert.is(formatBytes(15018), '14.7 KiB');
  assert.is(formatBytes(5_000_000), '4.77 MiB');
  assert.is(formatBytes(1024 ** 3), '1.00 GiB');
  assert.is(formatRate(1024 * 1024, 1000), '1.00 MiB/s');
});

sizes.run();

const targets = suite('server addresses');

targets('host, host:port, IPv6 with and without brackets', () => {
  assert.equal(parseTarget('files.example.org'), { host: 'files.example.org', port: 2121 });
  assert.equal(parseTarget('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
  assert.equal(parseTarget('[::1]:9000'), { host: '::1', port: 9000 });
  assert.equal(parseTarget('::1'), { host: '::1', port: 2121 });
});

targets('bad ports and empty hosts are refused with a clear message', () => {
  assert.throws(() => parseTarget('host:0'), /port must be 1-65535/);
  assert.throws(() => parseTarget('host:99999'), /port must be 1-65535/);
  assert.throws(() => parseTarget('host:abc'), /port must be 1-65535/);
  assert.throws(() => parseTarget(':2121'), /no host/);
});

targets.run();
