// `ca:` in a batch manifest (and FERRY_CA when it is absent): resolved against the manifest's folder, read and
// checked while the manifest is checked, every problem with its line and column.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatProblem, parseManifest, type Manifest, type Problem } from '../../src/batch/manifest.ts';
import { generateIdentity } from '../../src/tls/identity.ts';

const t = suite('manifest: ca');
let base = '';
let pem = '';

t.before(async () => {
  base = mkdtempSync(join(tmpdir(), 'ferry-manifest-ca-'));
  pem = (await generateIdentity({ commonName: 'Manifest Test CA' })).cert;
  mkdirSync(join(base, 'certs'));
  writeFileSync(join(base, 'certs', 'ca.pem'), `# a comment before the bundle\n${pem}${pem}`);
  writeFileSync(join(base, 'certs', 'key.pem'), '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
  writeFileSync(join(base, 'certs', 'broken.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
});

t.after(() => rmSync(base, { recursive: true, force: true }));

const head = (extra: string) => `server: files.example.org\n${extra}user: backup\npassword: \${P}\nops:\n  - mkdir: x\n`;
const parse = (text: string, env: Record<string, string> = {}) => parseManifest(text, { file: 'job.yaml', baseDir: base, env: { P: 'password-1', ...env } });

function ok(text: string, env?: Record<string, string>): Manifest {
  const r = parse(text, env);
  if (!r.ok) assert.unreachable(`expected a valid manifest, got:\n${r.problems.map(formatProblem).join('\n')}`);
  return (r as { manifest: Manifest }).manifest;
}

function problems(text: string, env?: Record<string, string>): Problem[] {
  const r = parse(text, env);
  if (r.ok) assert.unreachable('expected problems, the manifest was accepted');
  return (r as { problems: Problem[] }).problems;
}

t('a relative path is read from the manifest folder; every certificate of the bundle is kept', () => {
  const m = ok(head('ca: certs/ca.pem\n'));
  assert.is(m.ca?.file, join(base, 'certs', 'ca.pem'));
  assert.equal(m.ca?.certificates, [pem.trim(), pem.trim()]);
  assert.is(m.fingerprint, null);
  assert.is(ok(head(`ca: ${join(base, 'certs', 'ca.pem')}\n`)).ca?.file, join(base, 'certs', 'ca.pem'), 'an absolute path as it is');
  assert.is(ok(head('')).ca, null, 'none: the built-in authorities');
});

t('a missing file, a file with no certificate and a certificate that cannot be read are problems at their line', () => {
  const text = head('ca: certs/nope.pem\n');
  assert.equal(problems(text).map(formatProblem), [`job.yaml:2:5: ca: cannot read '${join(base, 'certs', 'nope.pem')}': no such file`]);
  assert.equal(problems(head('ca: certs/key.pem\n')).map(formatProblem), [`job.yaml:2:5: ca: cannot use '${join(base, 'certs', 'key.pem')}': it holds no PEM certificate`]);
  assert.match(formatProblem(problems(head('ca: certs/broken.pem\n'))[0] as Problem), /^job\.yaml:2:5: ca: cannot use '.*broken\.pem': its certificate 1 of 1 cannot be read \(.+\)$/);
  assert.match(formatProblem(problems(head('ca: certs\n'))[0] as Problem), /^job\.yaml:2:5: ca: cannot read '.*certs': it is a folder$/);
  assert.match(formatProblem(problems(head('ca: 12\n'))[0] as Problem), /^job\.yaml:2:5: ca: must be a string/);
});

t('ca makes no sense with insecure: true', () => {
  assert.equal(problems(head('ca: certs/ca.pem\ninsecure: true\n')).map((p) => `${p.line} ${p.field}`), ['2 ca']);
});

t('FERRY_CA stands in for a missing ca: read from where the variable says; a bad one is a problem of the manifest', () => {
  const m = ok(head(''), { FERRY_CA: join(base, 'certs', 'ca.pem') });
  assert.is(m.ca?.certificates.length, 2);
  assert.is(ok(head('ca: certs/ca.pem\n'), { FERRY_CA: '/nowhere/ca.pem' }).ca?.file, join(base, 'certs', 'ca.pem'), 'ca: wins');
  assert.equal(problems(head(''), { FERRY_CA: '/nowhere/ca.pem' }).map(formatProblem), [`job.yaml:1:1: ca: cannot read FERRY_CA '/nowhere/ca.pem': no such file`]);
  assert.is(ok(head('insecure: true\n'), { FERRY_CA: '/nowhere/ca.pem' }).ca, null, 'ignored for plain TCP');
});

t.run();
