import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FIELDS, formatProblem, interpolate, parseManifest, type Manifest, type Problem } from '../../src/batch/manifest.ts';

const FP = 'SHA256:' + 'A'.repeat(43);
const BASE = '/srv/jobs';
const ENV = { FERRY_PASSWORD: 's3cret-pass', HOME: '/root' };

function parse(text: string, env: Record<string, string | undefined> = ENV) {
  return parseManifest(text, { file: 'job.yaml', baseDir: BASE, env });
}

function ok(text: string, env?: Record<string, string | undefined>): Manifest {
  const r = parse(text, env);
  if (!r.ok) assert.unreachable(`expected a valid manifest, got:\n${r.problems.map(formatProblem).join('\n')}`);
  return (r as { manifest: Manifest }).manifest;
}

function problems(text: string, env?: Record<string, string | undefined>): Problem[] {
  const r = parse(text, env);
  if (r.ok) assert.unreachable('expected problems, the manifest was accepted');
  return (r as { problems: Problem[] }).problems;
}

const HEAD = `server: files.example.org:2121\nfingerprint: ${FP}\nuser: backup\npassword: \${FERRY_PASSWORD}\n`;

// ---------------------------------------------------------------------------------------------------

const interp = suite('interpolate');

interp('replaces ${VAR} from the environment and keeps other dollars', () => {
  assert.equal(interpolate('${HOME}/x-$y-$', { HOME: '/root' }), { value: '/root/x-$y-$', vars: ['HOME'], errors: [] });
});

interp('an unset variable is an error that names it', () => {
  const r = interpolate('a${NOPE}b', {});
  assert.equal(r.errors, ['environment variable NOPE is not set']);
});

interp('${VAR:-default} falls back when unset or empty; an empty set variable without default is kept empty', () => {
  assert.is(interpolate('${A:-x}', {}).value, 'x');
  assert.is(interpolate('${A:-x}', { A: '' }).value, 'x');
  assert.is(interpolate('${A:-x}', { A: 'y' }).value, 'y');
  assert.equal(interpolate('${A}', { A: '' }), { value: '', vars: ['A'], errors: [] });
});

interp('$${ is a literal ${, and broken references are errors', () => {
  assert.is(interpolate('$${HOME}', { HOME: 'no' }).value, '${HOME}');
  assert.equal(interpolate('${HOME', {}).errors.length, 1);
  assert.match(interpolate('${1x}', {}).errors[0] ?? '', /not a variable reference/);
});

interp.run();

// ---------------------------------------------------------------------------------------------------

const valid = suite('valid manifests');

valid('the issue example parses with the documented defaults', () => {
  const m = ok(`${HEAD}concurrency: 8
retries: 3
ops:
  - put: ./reports/*.csv
    to: reports/2026/
  - get: backups/db.dump
    to: ./restore/
  - mkdir: archive/
  - rename: reports/old.csv
    to: archive/old.csv
  - delete: tmp/scratch.bin
`);
  assert.equal(m.server, { host: 'files.example.org', port: 2121 });
  assert.is(m.fingerprint, FP);
  assert.is(m.password, 's3cret-pass');
  assert.is(m.concurrency, 8);
  assert.is(m.retries, 3);
  assert.is(m.ops.length, 5);
  const [put, get, mkdir, rename, del] = m.ops;
  assert.equal(put, {
    kind: 'put', index: 0, at: { line: 8, column: 5 }, sources: ['/srv/jobs/reports/*.csv'], to: 'reports/2026', into: true,
    overwrite: 'replace', ifChanged: false, exclude: [], sha256: null,
  });
  assert.equal(get?.kind === 'get' && [get.sources, get.to, get.into, get.overwrite], [['backups/db.dump'], '/srv/jobs/restore', true, 'replace']);
  assert.equal(mkdir?.kind === 'mkdir' && mkdir.path, 'archive');
  assert.equal(rename?.kind === 'rename' && [rename.from, rename.to, rename.overwrite], ['reports/old.csv', 'archive/old.csv', 'fail']);
  assert.equal(del?.kind === 'delete' && [del.path, del.missingOk], ['tmp/scratch.bin', false]);
  assert.equal(m.warnings, []);
});

valid('JSON is accepted, with line numbers', () => {
  const m = ok(JSON.stringify({ server: 'h', fingerprint: FP, user: 'u', password: '${FERRY_PASSWORD}', ops: [{ get: 'a/b.txt', to: 'out.txt' }] }, null, 2));
  const get = m.ops[0];
  assert.is(get?.kind, 'get');
  assert.equal(get?.kind === 'get' && [get.to, get.into], ['/srv/jobs/out.txt', false]);
  assert.is(m.server.port, 2121);
});

valid('defaults: concurrency 16, retries 3, FERRY_PASSWORD when password is absent', () => {
  const m = ok(`server: h\nuser: u\nops:\n  - mkdir: d\n`);
  assert.is(m.concurrency, 16);
  assert.is(m.retries, 3);
  assert.is(m.password, 's3cret-pass');
  assert.is(m.fingerprint, null);
});

valid('a literal password works but is warned about, with its line', () => {
  const m = ok(`server: h\nuser: u\npassword: hunter2hunter2\nops:\n  - mkdir: d\n`);
  assert.is(m.password, 'hunter2hunter2');
  assert.is(m.warnings.length, 1);
  assert.is(m.warnings[0]?.line, 3);
  assert.match(m.warnings[0]?.message ?? '', /in clear/);
});

valid('remote paths: a leading / is the home, doubled slashes collapse; rename into a folder keeps the name', () => {
  const m = ok(`${HEAD}ops:\n  - mkdir: /a//b/\n  - rename: x/y.txt\n    to: archive/\n  - put: f\n    to: /\n`);
  assert.equal(m.ops[0]?.kind === 'mkdir' && m.ops[0].path, 'a/b');
  assert.equal(m.ops[1]?.kind === 'rename' && m.ops[1].to, 'archive/y.txt');
  assert.equal(m.ops[2]?.kind === 'put' && [m.ops[2].to, m.ops[2].into], ['', true]);
});

valid('put: to without a trailing slash is the exact name; several sources or a glob always go into it', () => {
  const m = ok(`${HEAD}ops:\n  - put: a.txt\n    to: b.txt\n  - put: [a, b]\n    to: dir\n  - put: '*.log'\n    to: logs\n`);
  assert.equal(m.ops.map((o) => o.kind === 'put' && o.into), [false, true, true]);
});

valid('top-level exclude applies to every transfer; sha256 is normalised', () => {
  const m = ok(`${HEAD}exclude: '*.tmp'\nops:\n  - put: a.bin\n    exclude: [cache/**]\n    sha256: SHA256:${'AB'.repeat(32)}\n`);
  const put = m.ops[0];
  assert.equal(put?.kind === 'put' && [put.exclude, put.sha256], [['*.tmp', 'cache/**'], 'ab'.repeat(32)]);
});

valid('environment variables work in any string', () => {
  const m = ok(`${HEAD}ops:\n  - put: \${HOME}/x\n    to: \${DEST:-default}/\n`, { ...ENV, HOME: '/home/ann' });
  assert.equal(m.ops[0]?.kind === 'put' && [m.ops[0].sources, m.ops[0].to], [['/home/ann/x'], 'default']);
});

valid.run();

// ---------------------------------------------------------------------------------------------------

const invalid = suite('invalid manifests: every problem, with line and field');

invalid('three mistakes are all reported, in order, with their lines and field paths', () => {
  const text = `${HEAD}concurrency: lots
ops:
  - put: ./reports
    to: reports/
    overwrite: sometimes
  - get: a.txt
    colour: blue
`;
  const p = problems(text);
  assert.equal(
    p.map((x) => [x.line, x.field]),
    [
      [5, 'concurrency'],
      [9, 'ops[0].overwrite'],
      [11, 'ops[1].colour'],
    ],
  );
  assert.match(formatProblem(p[0] as Problem), /^job\.yaml:5:14: concurrency: must be a whole number/);
  assert.match(p[1]?.message ?? '', /one of skip, replace, fail/);
  assert.match(p[2]?.message ?? '', /unknown field/);
});

invalid('missing env vars, bad globs, wrong types and unknown fields together', () => {
  const p = problems(`server: h
user: \${NO_SUCH_USER}
password: \${NO_SUCH_PASS}
retries: -1
exclude: ['[abc']
ops:
  - put: ./x/{a,b
  - get: 'logs/*.[ch'
  - delete: 42
  - mkdir: ../escape
  - rename: a
  - put: a
    if_changed: yes
`);
  const fields = p.map((x) => x.field);
  assert.equal(fields, ['user', 'password', 'retries', 'exclude[0]', 'ops[0].put', 'ops[1].get', 'ops[2].delete', 'ops[3].mkdir', 'ops[4].to', 'ops[5].if_changed']);
  assert.match(p[0]?.message ?? '', /NO_SUCH_USER is not set/);
  assert.match(p[3]?.message ?? '', /not a valid glob/);
  assert.match(p[6]?.message ?? '', /must be a string, not 42 \(quote it/);
  assert.match(p[7]?.message ?? '', /'\.\.'/);
  assert.match(p[9]?.message ?? '', /true or false, not 'yes'/);
  for (const x of p) assert.ok(x.line >= 1 && x.column >= 1);
});

invalid('required fields are named; a top-level list, an op with two kinds or none', () => {
  assert.equal(problems(`fingerprint: ${FP}\n`, {}).map((x) => x.field).sort(), ['ops', 'password', 'server', 'user']);
  assert.equal(problems(`- a\n- b\n`).map((x) => x.field), ['(top level)']);
  const p = problems(`${HEAD}ops:\n  - put: a\n    get: b\n  - to: x\n  - just a string\n`);
  assert.equal(p.map((x) => [x.field, x.line]), [['ops[0]', 6], ['ops[1]', 8], ['ops[2]', 9]]);
});

invalid('YAML syntax errors and duplicate keys are reported with their line', () => {
  const p = problems(`server: a\nserver: b\nuser: u\n`);
  assert.is(p[0]?.field, '(syntax)');
  assert.is(p[0]?.line, 2);
});

invalid('bad fingerprints, servers and digests', () => {
  const p = problems(`server: host:99999\nfingerprint: nope\nuser: u\nops:\n  - get: [a, b]\n    sha256: abc\n  - put: 'x/*'\n    sha256: ${'a'.repeat(64)}\n`);
  assert.equal(p.map((x) => x.field), ['server', 'fingerprint', 'ops[0].sha256', 'ops[1].sha256']);
  assert.match(p[3]?.message ?? '', /one file/);
});

invalid('a near-miss field name gets a suggestion', () => {
  const p = problems(`${HEAD}ops:\n  - put: a\n    ifchanged: true\n  - delete: b\n    missing-ok: true\n`);
  assert.match(p[0]?.message ?? '', /did you mean 'if_changed'/);
  assert.match(p[1]?.message ?? '', /did you mean 'missing_ok'/);
});

invalid.run();

// ---------------------------------------------------------------------------------------------------

const schema = suite('docs/manifest.schema.json');

schema('lists exactly the fields the validator accepts', () => {
  const doc = JSON.parse(readFileSync(join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../../docs/manifest.schema.json'), 'utf8'));
  assert.equal(Object.keys(doc.properties).sort(), [...FIELDS.top].sort());
  const defs = doc.$defs as Record<string, { properties: Record<string, unknown> }>;
  for (const kind of ['put', 'get', 'mkdir', 'rename', 'delete'] as const) {
    assert.equal(Object.keys(defs[kind]?.properties ?? {}).sort(), [...FIELDS[kind]].sort(), kind);
  }
  assert.equal(doc.required.sort(), ['ops', 'server', 'user']);
});

schema.run();
