// The PROXY protocol (v1 and v2) behind a TCP balancer: the header's parts (pure), and `ferry serve
// --proxy-protocol` end to end over real sockets and real TLS — the real client's address in the server's lines and
// per-address limits, a header from an address not allowed refused, a balancer's connection without one refused.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Command, IPv4Address, IPv4ProxyAddress, IPv6Address, IPv6ProxyAddress, TransportProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { readServeConfig } from '../../src/cli/config.ts';
import { PREAMBLE } from '../../src/protocol/frame.ts';
import { examine, peerOf, ProxyAllowList } from '../../src/server/proxy-protocol.ts';
import { childEnv, runFerry, startServer, tempDir, cleanup, type ServerHandle } from '../e2e/harness.ts';

const v2 = (command: Command, address: IPv4ProxyAddress | IPv6ProxyAddress) => Buffer.from(new V2ProxyProtocol(command, TransportProtocol.STREAM, address).build());
const v4 = (src: number[], port: number) => new IPv4ProxyAddress(IPv4Address.createFrom(src), port, IPv4Address.createFrom([10, 0, 0, 1]), 2121);
const v6 = (src: number[], port: number) => new IPv6ProxyAddress(IPv6Address.createFrom(src), port, IPv6Address.createFrom(new Array(16).fill(0)), 2121);
const DOC6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

const unit = suite('PROXY protocol: headers and allow-lists');

unit('v1 and v2 headers give the client they name; LOCAL and UNKNOWN name none', () => {
  const one = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 5555 2121\r\n\x16\x03\x01');
  assert.equal(examine(one), { kind: 'v1', length: one.length - 3 });
  assert.equal(peerOf('v1', one.subarray(0, one.length - 3)), { ip: '203.0.113.7', port: 5555 });
  assert.equal(peerOf('v1', Buffer.from('PROXY TCP6 2001:db8::7 ::1 6000 2121\r\n')), { ip: '2001:db8::7', port: 6000 });
  assert.is(peerOf('v1', Buffer.from('PROXY UNKNOWN\r\n')), null);
  const two = Buffer.concat([v2(Command.PROXY, v4([198, 51, 100, 9], 4242)), Buffer.from([0x16, 0x03])]);
  assert.equal(examine(two), { kind: 'v2', length: two.length - 2 });
  assert.equal(peerOf('v2', two.subarray(0, two.length - 2)), { ip: '198.51.100.9', port: 4242 });
  assert.equal(peerOf('v2', v2(Command.PROXY, v6(DOC6, 6000))), { ip: '2001:db8::7', port: 6000 });
  assert.is(peerOf('v2', v2(Command.LOCAL, v4([0, 0, 0, 0], 0))), null);
});

unit('partial, foreign, malformed and oversized beginnings', () => {
  assert.equal(examine(Buffer.from('PRO')), { kind: 'more' });
  assert.equal(examine(Buffer.from('PROXY TCP4 1.2.3.4')), { kind: 'more' });
  assert.equal(examine(v2(Command.PROXY, v4([1, 2, 3, 4], 1)).subarray(0, 15)), { kind: 'more' });
  assert.equal(examine(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), { kind: 'none' }, 'a TLS ClientHello');
  assert.equal(examine(Buffer.from('PROXIMITY')), { kind: 'none' });
  assert.is(examine(Buffer.from(`PROXY ${'x'.repeat(200)}`)).kind, 'bad');
  const huge = v2(Command.PROXY, v4([1, 2, 3, 4], 1));
  huge.writeUInt16BE(60_000, 14);
  assert.is(examine(huge).kind, 'bad');
  assert.throws(() => peerOf('v1', Buffer.from('PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n')), /malformed PROXY v1/);
  assert.throws(() => peerOf('v1', Buffer.from('PROXY TCP4 hello\r\n')), /malformed PROXY v1/);
});

unit('allow-lists: addresses and CIDR blocks, IPv4-mapped IPv6 counts as IPv4; a bad entry is one clear error', () => {
  const list = new ProxyAllowList(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32']);
  assert.ok(list.allows('10.1.2.3'));
  assert.ok(list.allows('::ffff:127.0.0.1'));
  assert.ok(list.allows('2001:db8::7'));
  assert.not.ok(list.allows('11.0.0.1'));
  assert.not.ok(list.allows('127.0.0.2'));
  assert.not.ok(list.allows('::1'));
  for (const bad of ['nonsense', '10.0.0.0/33', '::1/129', '10.0.0.0/', '']) {
    assert.throws(() => new ProxyAllowList([bad]), /Invalid --proxy-protocol/, bad);
  }
});

unit('the config file: proxyProtocol is a list of addresses or blocks; anything else is file:line: field: why', async () => {
  const dir = tempDir('ferry-proxy-config-');
  try {
    writeFileSync(join(dir, 'ok.yaml'), 'proxyProtocol:\n  - 10.0.0.0/8\n  - "::1"\n');
    assert.equal((await readServeConfig(join(dir, 'ok.yaml'))).config.proxyProtocol, ['10.0.0.0/8', '::1']);
    writeFileSync(join(dir, 'bad.yaml'), 'port: 2121\nproxyProtocol: 10.0.0.0/8\n');
    await readServeConfig(join(dir, 'bad.yaml')).then(
      () => assert.unreachable('a scalar is taken'),
      (err: Error) => assert.match(err.message, /bad\.yaml:2: proxyProtocol: must be a list of addresses or CIDR blocks/),
    );
  } finally {
    cleanup(dir);
  }
});

unit.run();

const e2e = suite('ferry serve --proxy-protocol');
const servers: ServerHandle[] = [];
e2e.after(async () => {
  for (const s of servers) await s.dispose();
});

/** Opens a TCP connection, sends `header`, then a TLS handshake over it; resolves once it is up or failed. */
function through(port: number, header: Buffer | null): Promise<{ socket: tls.TLSSocket | null; closed: boolean }> {
  return new Promise((resolve) => {
    const raw = net.connect(port, '127.0.0.1', () => {
      if (header !== null) raw.write(header);
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false }, () => resolve({ socket: secure, closed: false }));
      secure.on('error', () => resolve({ socket: null, closed: true }));
    });
    raw.on('error', () => resolve({ socket: null, closed: true }));
    setTimeout(() => resolve({ socket: null, closed: false }), 10_000).unref();
  });
}

e2e('from the balancer: the real client in the server\'s lines and in per-address limits; no header: refused', async () => {
  const server = await startServer({ args: ['--proxy-protocol', '127.0.0.1/32,10.9.9.9', '--max-connections-per-address', '1'] });
  servers.push(server);
  assert.match(server.output(), /PROXY protocol \(v1, v2\) required from 127\.0\.0\.1\/32, 10\.9\.9\.9/);
  const a = await through(server.port, Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5555 2121\r\n'));
  assert.ok(a.socket, 'TLS over the connection after a v1 header');
  await server.waitFor(/\[#\d+ 203\.0\.113\.7:5555\] Connected/);
  const b = await through(server.port, v2(Command.PROXY, v6(DOC6, 6000)));
  assert.ok(b.socket, 'TLS after a v2 header');
  await server.waitFor(/\[#\d+ \[2001:db8::7\]:6000\] Connected/);
  // Both came from 127.0.0.1 with one connection allowed per address: the real addresses count, not the balancer's.
  const again = await through(server.port, Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5556 2121\r\n'));
  again.socket?.on('error', () => {});
  await server.waitFor(/\[203\.0\.113\.7\] refused: too many connections/);
  const none = await through(server.port, null);
  assert.is(none.socket, null, 'a connection from the balancer without a header');
  await server.waitFor(/\[127\.0\.0\.1\] refused: no PROXY header from a balancer in --proxy-protocol/);
  for (const s of [a.socket, b.socket, again.socket]) s?.destroy();
});

e2e('from anyone else: a PROXY header is refused, a plain ferry client is served as before', async () => {
  const server = await startServer({ args: ['--proxy-protocol', '10.0.0.0/8'] });
  servers.push(server);
  const forged = await through(server.port, Buffer.from('PROXY TCP4 198.51.100.1 127.0.0.1 1 2121\r\n'));
  assert.is(forged.socket, null);
  await server.waitFor(/\[127\.0\.0\.1\] refused: a PROXY header from an address not in --proxy-protocol/);
  const forged2 = await through(server.port, v2(Command.PROXY, v4([198, 51, 100, 1], 1)));
  assert.is(forged2.socket, null);
  assert.not.match(server.output(), /198\.51\.100\.1/, 'the forged address appears nowhere');
  const r = await server.connect('plain_user', 'password1', ['LIST'], { signup: true });
  assert.is(r.code, 0, r.stderr);
  await server.waitFor(/\[#\d+ 127\.0\.0\.1:\d+\] Connected/);
});

e2e('plain TCP (--insecure): a balancer\'s LOCAL connection (a health check) that sends nothing is not logged; one that speaks is served', async () => {
  const server = await startServer({ args: ['--insecure', '--proxy-protocol', '127.0.0.1/32'] });
  servers.push(server);
  const local = () => new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect(server.port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
  // As HAProxy's check: the header, a moment, then gone (a reset). It used to become a session: "Connected", "Disconnected".
  const check = await local();
  check.write(v2(Command.LOCAL, v4([0, 0, 0, 0], 0)));
  await new Promise((r) => setTimeout(r, 300));
  check.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 300));
  assert.not.match(server.output(), /\] Connected/, server.output());
  // The header and then the protocol: a session (LOCAL names no client: the connection's own address).
  const speaks = await local();
  speaks.write(v2(Command.LOCAL, v4([0, 0, 0, 0], 0)));
  speaks.write(Buffer.from(PREAMBLE));
  await server.waitFor(/\[#\d+ 127\.0\.0\.1:\d+\] Connected/);
  speaks.destroy();
});

e2e('a bad --proxy-protocol entry stops ferry serve with one line', async () => {
  const home = tempDir('ferry-proxy-');
  try {
    const r = await runFerry(['serve', '--port', '0', '--data', `${home}/data`, '--proxy-protocol', '10.0.0.0/8,nonsense'], { env: childEnv(home), timeoutMs: 20_000 });
    assert.is(r.code, 1);
    assert.match(r.stderr.trim(), /^ferry: Invalid --proxy-protocol 'nonsense': use addresses or CIDR blocks/);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  } finally {
    cleanup(home);
  }
});

e2e.run();
