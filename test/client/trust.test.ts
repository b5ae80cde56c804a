// The client's trust policy (src/client/trust.ts), branch by branch, with a real known_hosts file in a temp folder and
// CA verdicts made up here: pins, hosts remembered with and without the `ca` marker, renewals, the move from a
// self-signed certificate to a CA's, the refusal of a downgrade, and unknown hosts with and without a CA.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KnownHosts } from '../../src/client/known-hosts.ts';
import { checkIdentity, trustNotice, type CaVerdict, type HostCheck, type PresentedIdentity, type TrustOptions } from '../../src/client/trust.ts';

const OLD = 'SHA256:' + 'O'.repeat(43);
const NEW = 'SHA256:' + 'N'.repeat(43);
const HOST = 'files.example.org';
const PORT = 2121;
const KEY = `${HOST}:${PORT}`;

const VALID: CaVerdict = { valid: true, reason: null, issuer: 'Test CA R1', validTo: '2027-03-01' };
const SELF_SIGNED: CaVerdict = { valid: false, reason: 'the certificate is self-signed (DEPTH_ZERO_SELF_SIGNED_CERT)', issuer: 'ferry', validTo: '2036-01-01' };
const WRONG_NAME: CaVerdict = {
  valid: false,
  reason: "Hostname/IP does not match certificate's altnames: Host: files.example.org. is not in the cert's altnames: DNS:other.test",
  issuer: 'Test CA R1',
  validTo: '2027-03-01',
};

const presented = (fingerprint: string, ca: CaVerdict): PresentedIdentity => ({ host: HOST, port: PORT, fingerprint, ca });

let dir = '';
let file = '';
let hosts: KnownHosts;
/** confirmHost that records its calls and answers `answer`. */
let asked: HostCheck[] = [];
const confirm = (answer: boolean): TrustOptions => ({
  confirmHost: async (check) => {
    asked.push(check);
    return answer;
  },
});

const knownHostsText = async () => readFile(file, 'utf8').catch(() => '');
const start = async (lines: string[]) => {
  if (lines.length > 0) await writeFile(file, lines.map((l) => `${l}\n`).join(''));
};
/** Expects `promise` to reject; returns the message. */
async function refused(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as Error).message;
  }
  assert.unreachable('the connection was trusted');
  return '';
}

const t = suite('checkIdentity: fingerprints, known_hosts and certificate authorities');

t.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-trust-'));
  file = join(dir, 'known_hosts');
  hosts = new KnownHosts(file);
  asked = [];
});

t.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

// --- --fingerprint ---------------------------------------------------------------------------------------------

t('a pin that matches a CA-verified certificate is remembered with the ca marker', async () => {
  const trust = await checkIdentity(presented(NEW, VALID), { fingerprint: NEW }, hosts);
  assert.is(trust.status, 'pinned');
  assert.is(trust.verifiedBy, 'Test CA R1');
  assert.is(await knownHostsText(), `${KEY} ${NEW} ca\n`);
  assert.is(trustNotice(trust), null, 'a pin says nothing more');
});

t('a pin that matches a certificate no CA verifies is remembered without the marker, even over a ca-marked line', async () => {
  await start([`${KEY} ${OLD} ca`]);
  const trust = await checkIdentity(presented(NEW, SELF_SIGNED), { fingerprint: NEW }, hosts);
  assert.is(trust.status, 'pinned');
  assert.is(trust.verifiedBy, null);
  assert.is(await knownHostsText(), `${KEY} ${NEW}\n`);
});

t('a pin that does not match is refused even when a CA verifies the certificate; nothing is remembered', async () => {
  const message = await refused(checkIdentity(presented(NEW, VALID), { fingerprint: OLD, ...confirm(true) }, hosts));
  assert.match(message, new RegExp(`has fingerprint ${NEW}, not the pinned ${OLD}: refusing`));
  assert.is(await knownHostsText(), '');
  assert.is(asked.length, 0);
});

// --- a host remembered as verified by a CA ----------------------------------------------------------------------

t('ca-marked host: a certificate no CA verifies is refused loudly, with the reason, even with the same fingerprint', async () => {
  await start([`${KEY} ${OLD} ca`]);
  for (const [fingerprint, verdict] of [[NEW, SELF_SIGNED], [OLD, SELF_SIGNED], [NEW, WRONG_NAME]] as const) {
    const message = await refused(checkIdentity(presented(fingerprint, verdict), confirm(true), hosts));
    const lines = message.split('\n');
    assert.is(lines[0], `WARNING: ${KEY} WAS VERIFIED BY A CERTIFICATE AUTHORITY BEFORE, AND NOW IS NOT.`);
    assert.ok(lines.includes(`Reason:     ${verdict.reason}`), message);
    assert.ok(lines.includes(`Remembered: ${OLD} (verified by a certificate authority)`), message);
    assert.match(message, new RegExp(`Presented:  ${fingerprint} \\(issued by ${verdict.issuer}, valid until ${verdict.validTo}\\)`));
    assert.match(lines.at(-1) ?? '', new RegExp(`^Refusing to connect\\. Only if the change is expected .*pass --fingerprint ${fingerprint}$`));
  }
  assert.is(asked.length, 0, 'the user is not asked to wave it through');
  assert.is(await knownHostsText(), `${KEY} ${OLD} ca\n`, 'known_hosts is unchanged');
});

t('ca-marked host: the same fingerprint, verified by a CA, is known; the file is not rewritten', async () => {
  await start([`# kept`, `${KEY} ${OLD} ca`]);
  const before = await stat(file);
  const trust = await checkIdentity(presented(OLD, VALID), {}, hosts);
  assert.is(trust.status, 'known');
  assert.is(trust.verifiedBy, 'Test CA R1');
  assert.is(trust.previous, null);
  assert.is(trustNotice(trust), null);
  assert.is(await knownHostsText(), `# kept\n${KEY} ${OLD} ca\n`);
  assert.is((await stat(file)).ino, before.ino, 'the same file: an atomic rewrite would be a new one');
});

t('ca-marked host: a new fingerprint verified by a CA is a renewal, accepted and remembered with the marker', async () => {
  await start([`${KEY} ${OLD} ca`, `other.example:2121 ${OLD}`]);
  const trust = await checkIdentity(presented(NEW, VALID), confirm(false), hosts);
  assert.is(trust.status, 'renewed');
  assert.is(trust.previous, OLD);
  assert.is(trust.verifiedBy, 'Test CA R1');
  assert.is(asked.length, 0);
  assert.is(await knownHostsText(), `${KEY} ${NEW} ca\nother.example:2121 ${OLD}\n`);
  assert.is(trustNotice(trust), `Server ${KEY} renewed its certificate (issued by Test CA R1, valid until 2027-03-01): new fingerprint ${NEW}`);
});

// --- a host remembered by its fingerprint alone ---------------------------------------------------------------------

t('fingerprint-only host: the same fingerprint, now verified by a CA, is known and quietly marked ca', async () => {
  await start([`${KEY} ${OLD}`]);
  const trust = await checkIdentity(presented(OLD, VALID), {}, hosts);
  assert.is(trust.status, 'known');
  assert.is(trust.verifiedBy, 'Test CA R1');
  assert.is(trustNotice(trust), null, 'quietly');
  assert.is(await knownHostsText(), `${KEY} ${OLD} ca\n`);
});

t('fingerprint-only host: the same fingerprint, no CA, is known and the line stays as it was', async () => {
  await start([`${KEY} ${OLD}`]);
  const trust = await checkIdentity(presented(OLD, SELF_SIGNED), {}, hosts);
  assert.is(trust.status, 'known');
  assert.is(trust.verifiedBy, null);
  assert.is(await knownHostsText(), `${KEY} ${OLD}\n`);
});

t('fingerprint-only host: a new certificate verified by a CA (the operator moved to one) is accepted with a notice', async () => {
  await start([`${KEY} ${OLD}`]);
  const trust = await checkIdentity(presented(NEW, VALID), confirm(false), hosts);
  assert.is(trust.status, 'to-ca');
  assert.is(trust.previous, OLD);
  assert.is(asked.length, 0);
  assert.is(await knownHostsText(), `${KEY} ${NEW} ca\n`);
  const notice = trustNotice(trust) ?? '';
  assert.ok(notice.startsWith(`Server ${KEY} now has a certificate verified by Test CA R1 for ${HOST}, valid until 2027-03-01`), notice);
  assert.ok(notice.includes(OLD) && notice.endsWith(`new fingerprint ${NEW}`), notice);
  assert.not.match(notice, /\n/, 'one line');
});

t('fingerprint-only host: a new certificate no CA verifies for this host is the fingerprint-changed refusal, as before', async () => {
  await start([`${KEY} ${OLD}`]);
  for (const verdict of [SELF_SIGNED, WRONG_NAME]) {
    const message = await refused(checkIdentity(presented(NEW, verdict), confirm(true), hosts));
    assert.equal(message.split('\n'), [
      `WARNING: THE FINGERPRINT OF ${KEY} HAS CHANGED.`,
      `Remembered: ${OLD}`,
      `Presented:  ${NEW}`,
      `Someone may be intercepting the connection, or the server's identity was replaced.`,
      `Refusing to connect. If the change is expected, pass --fingerprint ${NEW}`,
    ]);
  }
  assert.is(asked.length, 0);
  assert.is(await knownHostsText(), `${KEY} ${OLD}\n`);
});

// --- unknown hosts ------------------------------------------------------------------------------------------------------

t('unknown host verified by a CA: trusted without asking, remembered with the marker, told in one line', async () => {
  const trust = await checkIdentity(presented(NEW, VALID), confirm(false), hosts);
  assert.is(trust.status, 'ca');
  assert.is(trust.verifiedBy, 'Test CA R1');
  assert.is(asked.length, 0, 'confirmHost was not called');
  assert.is(await knownHostsText(), `${KEY} ${NEW} ca\n`);
  assert.is(trustNotice(trust), `Certificate verified by Test CA R1 for ${HOST} (valid until 2027-03-01); ${KEY} remembered as ${NEW}`);
});

t('unknown host verified by a CA, with no known_hosts file to keep it in: trusted', async () => {
  const trust = await checkIdentity(presented(NEW, VALID), {}, null);
  assert.is(trust.status, 'ca');
});

t('unknown host no CA verifies: the user is asked; yes remembers it without the marker', async () => {
  const trust = await checkIdentity(presented(NEW, WRONG_NAME), confirm(true), hosts);
  assert.is(trust.status, 'asked');
  assert.is(trust.verifiedBy, null);
  assert.equal(asked, [{ host: HOST, port: PORT, fingerprint: NEW, known: null }]);
  assert.is(await knownHostsText(), `${KEY} ${NEW}\n`);
  assert.is(trustNotice(trust), null);
});

t('unknown host no CA verifies: no is refused; not interactive is refused naming --fingerprint; nothing remembered', async () => {
  assert.match(await refused(checkIdentity(presented(NEW, SELF_SIGNED), confirm(false), hosts)), new RegExp(`^Server ${KEY} not trusted; nothing was sent$`));
  assert.is(asked.length, 1);
  const message = await refused(checkIdentity(presented(NEW, SELF_SIGNED), {}, hosts));
  assert.is(message, `Unknown server ${KEY} with fingerprint ${NEW}; verify it with the server's operator, then pass --fingerprint ${NEW}`);
  assert.is(await knownHostsText(), '');
});

t.run();
