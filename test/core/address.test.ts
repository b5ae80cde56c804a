import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalIp, formatAddress, parseAddress } from '../../src/core/address.ts';

const t = suite('core/address');

t('host, host:port, [v6]:port, [v6] and a bare v6 address', () => {
  assert.equal(parseAddress('files.example.org'), { host: 'files.example.org', port: 2121 });
  assert.equal(parseAddress('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
  assert.equal(parseAddress('[::1]:9000'), { host: '::1', port: 9000 });
  assert.equal(parseAddress('[::1]'), { host: '::1', port: 2121 });
  assert.equal(parseAddress('::1'), { host: '::1', port: 2121 });
  assert.equal(parseAddress('[fe80::1%eth0]:22').host, 'fe80::1%eth0');
});

t('bad addresses are refused with the reason', () => {
  assert.throws(() => parseAddress(':9000'), /no host/);
  assert.throws(() => parseAddress('host:0'), /port must be 1-65535/);
  assert.throws(() => parseAddress('host:65536'), /port must be 1-65535/);
  assert.throws(() => parseAddress('host:12x'), /port must be 1-65535/);
  assert.throws(() => parseAddress('[nothost]:1'), /not an IPv6 address/);
  assert.throws(() => parseAddress('fe80::1::2:99'), /in brackets/);
});

t('formatAddress brackets IPv6; canonicalIp unmaps IPv4-mapped addresses', () => {
  assert.is(formatAddress('::1', 2121), '[::1]:2121');
  assert.is(formatAddress('10.0.0.1', 2121), '10.0.0.1:2121');
  assert.is(canonicalIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.is(canonicalIp('::FFFF:10.1.2.3'), '10.1.2.3');
  assert.is(canonicalIp('::1'), '::1');
  assert.is(canonicalIp('::ffff:7f00:1'), '::ffff:7f00:1');
});

t.run();
