import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileKey, type FileRecord } from '../../src/batch/journal.ts';
import { parseManifest, type Manifest, type Op } from '../../src/batch/manifest.ts';
import { deepest, excluder, overlaps, planStage, safeName, stagesOf, type FileTask, type RemoteView } from '../../src/batch/plan.ts';
import { FerryError } from '../../src/core/errors.ts';
import type { Entry } from '../../src/core/types.ts';

const FP = 'SHA256:' + 'A'.repeat(43);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function manifest(ops: string, baseDir = '/tmp'): Manifest {
  const r = parseManifest(`server: h\nfingerprint: ${FP}\nuser: u\npassword: \${P}\nops:\n${ops}`, { file: 'm.yaml', baseDir, env: { P: 'password1' } });
  if (!r.ok) throw new Error(r.problems.map((p) => `${p.line}: ${p.field}: ${p.message}`).join('\n'));
  return r.manifest;
}

/** A server as a map of path → content (files) plus folders; counts the requests it gets. */
class FakeRemote implements RemoteView {
  files = new Map<string, { content: string; mtime: number }>();
  dirs = new Set<string>(['']);
  calls: string[] = [];
  denyList = false;

  add(path: string, content: string, mtime = 1000): this {
    this.files.set(path, { content, mtime });
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) this.dirs.add(parts.slice(0, i).join('/'));
    return this;
  }

  private entry(path: string): Entry | null {
    const name = path.slice(path.lastIndexOf('/') + 1);
    const f = this.files.get(path);
    if (f) return { name, type: 'file', size: f.content.length, mtime: f.mtime };
    return this.dirs.has(path) ? { name, type: 'dir', size: 0, mtime: 0 } : null;
  }

  async list(path: string): Promise<Entry[]> {
    this.calls.push(`list ${path}`);
    if (this.denyList) throw new FerryError('permission_denied', 'no list');
    if (!this.dirs.has(path)) throw new FerryError('not_found', path);
    const prefix = path ? `${path}/` : '';
    const names = new Set<string>();
    for (const p of [...this.files.keys(), ...this.dirs]) {
      if (p !== '' && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) names.add(p);
    }
    return [...names].map((p) => this.entry(p) as Entry);
  }

  async stat(path: string): Promise<Entry | null> {
    this.calls.push(`stat ${path}`);
    return this.entry(path);
  }

  async statHash(path: string): Promise<{ entry: Entry; sha256: string | null }> {
    this.calls.push(`hash ${path}`);
    const e = this.entry(path);
    if (!e) throw new FerryError('not_found', path);
    return { entry: e, sha256: e.type === 'file' ? sha(this.files.get(path)?.content ?? '') : null };
  }
}

function journalOf(records: FileRecord[]) {
  const map = new Map(records.map((r) => [fileKey(r.kind, r.src, r.dst), r]));
  return { file: (kind: 'put' | 'get', src: string, dst: string) => map.get(fileKey(kind, src, dst)) };
}

const brief = (t: FileTask) => [t.src.replace(/^.*\/src\//, 'src/'), t.dst, t.skip ?? (t.error ? `error:${t.error.code}` : 'transfer')];

// ---------------------------------------------------------------------------------------------------

const helpers = suite('plan helpers');

helpers('overlaps: the same path, one inside the other, or the home', () => {
  assert.ok(overlaps('a', 'a'));
  assert.ok(overlaps('a/b', 'a'));
  assert.ok(overlaps('', 'x'));
  assert.not.ok(overlaps('ab', 'a'));
  assert.not.ok(overlaps('a/b', 'a/c'));
});

helpers('exclude patterns without a slash match names at any depth, and exclude whole folders', () => {
  const ex = excluder(['*.tmp', 'node_modules', 'cache/**']);
  assert.ok(ex('x.tmp'));
  assert.ok(ex('a/b/x.tmp'));
  assert.ok(ex('pkg/node_modules/lib/index.js'));
  assert.ok(ex('cache/a/b'));
  assert.not.ok(ex('src/main.ts'));
  assert.not.ok(excluder([])('anything'));
});

helpers('names a server lists are used locally only when they are one safe segment', () => {
  assert.is(safeName('report.csv'), 'report.csv');
  for (const bad of ['', '.', '..', 'a/b', 'a\\b', 'x\u0000y', '\u2024\u2024']) assert.is(safeName(bad), null, JSON.stringify(bad));
});

helpers('deepest keeps only the folders that are not a parent of another', () => {
  assert.equal(deepest(['a', 'a/b', 'a/b/c', 'x', 'a/d', '']), ['a/b/c', 'a/d', 'x']);
});

helpers('stages: consecutive independent transfers run together; mkdir/rename/delete and dependent transfers wait', () => {
  const m = manifest(`  - put: ./out
    to: up/
  - put: ./more
    to: up2/
  - get: down/x
    to: ./in/
  - get: up/out/a
    to: ./back/
  - mkdir: d
  - put: ./in/x
    to: z/
  - put: ./y
    to: z/
`);
  assert.equal(stagesOf(m.ops).map((s) => s.ops.map((o: Op) => o.index)), [[0, 1, 2], [3], [4], [5, 6]]);
});

helpers.run();

// ---------------------------------------------------------------------------------------------------

const puts = suite('planning uploads');
let dir: string;
puts.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-plan-'));
  mkdirSync(join(dir, 'src', 'sub', 'node_modules'), { recursive: true });
  writeFileSync(join(dir, 'src', 'a.txt'), 'aaa');
  writeFileSync(join(dir, 'src', 'b.txt'), 'bbbb');
  writeFileSync(join(dir, 'src', 'sub', 'c.txt'), 'c');
  writeFileSync(join(dir, 'src', 'sub', 'x.tmp'), 'tmp');
  writeFileSync(join(dir, 'src', 'sub', 'node_modules', 'm.js'), 'm');
  writeFileSync(join(dir, 'src', 'half.ferry-part'), 'partial download');
});
puts.after.each(() => rmSync(dir, { recursive: true, force: true }));

puts('a folder goes into `to/` under its name; excluded files and .ferry-part files are left out; no listing below a missing folder', async () => {
  const m = manifest(`  - put: ./src\n    to: backup/\n    exclude: ['*.tmp', node_modules]\n`, dir);
  const remote = new FakeRemote();
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  assert.equal(plan.files.map(brief), [
    ['src/a.txt', 'backup/src/a.txt', 'transfer'],
    ['src/b.txt', 'backup/src/b.txt', 'transfer'],
    ['src/sub/c.txt', 'backup/src/sub/c.txt', 'transfer'],
  ]);
  assert.equal(plan.excluded.get(0), 2);
  assert.equal(plan.remoteDirs, ['backup/src/sub']);
  // backup/src does not exist, so neither does backup/src/sub: one listing (there was one per folder before).
  assert.equal(remote.calls.sort(), ['list backup/src']);
  assert.equal(plan.files.map((t) => [t.replace, t.size]), [[true, 3], [true, 4], [true, 1]]);
});

puts('folders are looked at from the top: listed when what is above says they exist, inferred missing otherwise; empty folders are made too', async () => {
  mkdirSync(join(dir, 'src', 'empty', 'deeper'), { recursive: true });
  mkdirSync(join(dir, 'src', 'new', 'inner'), { recursive: true });
  writeFileSync(join(dir, 'src', 'new', 'inner', 'n.txt'), 'n');
  const m = manifest(`  - put: ./src
    to: backup/
    exclude: ['*.tmp', node_modules]
`, dir);
  const remote = new FakeRemote().add('backup/src/a.txt', 'aaa').add('backup/src/sub/old.txt', 'o');
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  // backup/src and backup/src/sub exist and are listed; empty, empty/deeper, new and new/inner are not in
  // backup/src's listing, so they are missing without a request.
  assert.equal(remote.calls.sort(), ['list backup/src', 'list backup/src/sub']);
  assert.equal(plan.remoteDirs.sort(), ['backup/src/empty/deeper', 'backup/src/new/inner']);
  assert.equal(plan.files.map(brief).map((b) => b[1]).sort(), ['backup/src/a.txt', 'backup/src/b.txt', 'backup/src/new/inner/n.txt', 'backup/src/sub/c.txt']);
});

puts('an uploaded folder with no files in it is still made on the server, with its empty folders', async () => {
  const empty = join(dir, 'only-folders');
  mkdirSync(join(empty, 'a', 'b'), { recursive: true });
  mkdirSync(join(empty, 'c'), { recursive: true });
  const m = manifest(`  - put: ./only-folders
    to: dest/
`, dir);
  const plan = await planStage({ ops: m.ops }, { remote: new FakeRemote(), journal: null });
  assert.equal(plan.files, []);
  assert.equal(plan.remoteDirs.sort(), ['dest/only-folders/a/b', 'dest/only-folders/c']);
});

puts('without a trailing slash the folder becomes `to`; a glob keeps paths under its base', async () => {
  const m = manifest(`  - put: ./src\n    to: copy\n  - put: ./src/**/*.txt\n    to: flat\n`, dir);
  const plan = await planStage({ ops: m.ops }, { remote: new FakeRemote(), journal: null });
  assert.equal(plan.files.filter((t) => t.op === 0).map((t) => t.dst).sort(), ['copy/a.txt', 'copy/b.txt', 'copy/sub/c.txt', 'copy/sub/node_modules/m.js', 'copy/sub/x.tmp']);
  assert.equal(plan.files.filter((t) => t.op === 1).map((t) => t.dst).sort(), ['flat/a.txt', 'flat/b.txt', 'flat/sub/c.txt']);
});

puts('existing destinations: skip, fail (unless identical), replace; if_changed compares digests', async () => {
  const remote = new FakeRemote().add('s/a.txt', 'aaa').add('f/a.txt', 'aaa').add('f/b.txt', 'XXXX').add('c/a.txt', 'aaa').add('c/b.txt', 'YYYY');
  const m = manifest(
    `  - put: [./src/a.txt, ./src/b.txt]\n    to: s/\n    overwrite: skip\n` +
      `  - put: [./src/a.txt, ./src/b.txt]\n    to: f/\n    overwrite: fail\n` +
      `  - put: [./src/a.txt, ./src/b.txt]\n    to: c/\n    if_changed: true\n`,
    dir,
  );
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  assert.equal(plan.files.map(brief), [
    ['src/a.txt', 's/a.txt', 'exists'],
    ['src/b.txt', 's/b.txt', 'transfer'],
    ['src/a.txt', 'f/a.txt', 'identical'],
    ['src/b.txt', 'f/b.txt', 'error:exists'],
    ['src/a.txt', 'c/a.txt', 'unchanged'],
    ['src/b.txt', 'c/b.txt', 'transfer'],
  ]);
  assert.equal(plan.files.map((t) => t.onExists), ['skip', 'skip', 'fail', 'fail', 'fail', 'fail']);
});

puts('the journal skips a file only when the source is unchanged and the destination is still there', async () => {
  const a = join(dir, 'src', 'a.txt');
  const b = join(dir, 'src', 'b.txt');
  const mtime = (p: string) => Math.floor(statSync(p).mtimeMs);
  const m = manifest(`  - put: [./src/a.txt, ./src/b.txt, ./src/sub/c.txt]\n    to: d/\n`, dir);
  const journal = journalOf([
    { kind: 'put', src: a, dst: 'd/a.txt', size: 3, mtime: mtime(a), sha256: sha('aaa'), at: '' },
    { kind: 'put', src: b, dst: 'd/b.txt', size: 4, mtime: mtime(b) - 5000, sha256: sha('bbbb'), at: '' }, // touched, same bytes
    { kind: 'put', src: join(dir, 'src', 'sub', 'c.txt'), dst: 'd/c.txt', size: 1, mtime: 0, sha256: sha('c'), at: '' },
  ]);
  const remote = new FakeRemote().add('d/a.txt', 'aaa').add('d/b.txt', 'bbbb');
  let plan = await planStage({ ops: m.ops }, { remote, journal });
  assert.equal(plan.files.map((t) => t.skip), ['journal', 'journal', null]); // c: gone from the server
  // The source changed since: sent again.
  writeFileSync(a, 'AAA');
  utimesSync(a, new Date(), new Date(Date.now() + 10_000));
  plan = await planStage({ ops: m.ops }, { remote, journal });
  assert.is(plan.files[0]?.skip, null);
});

puts('sha256: a local file that does not match is failed before anything moves', async () => {
  const m = manifest(`  - put: ./src/a.txt\n    sha256: ${sha('nope')}\n  - put: ./src/b.txt\n    sha256: ${sha('bbbb')}\n`, dir);
  const plan = await planStage({ ops: m.ops }, { remote: new FakeRemote(), journal: null });
  assert.equal(plan.files.map(brief), [
    ['src/a.txt', 'a.txt', 'error:digest_mismatch'],
    ['src/b.txt', 'b.txt', 'transfer'],
  ]);
  assert.is(plan.files[1]?.expectSha256, sha('bbbb'));
});

puts('a missing source fails its op; a server that refuses listings leaves the destination unknown', async () => {
  const m = manifest(`  - put: ./nope.txt\n  - put: ./src/a.txt\n    to: x/\n    overwrite: skip\n`, dir);
  const remote = new FakeRemote();
  remote.denyList = true;
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  assert.equal(plan.opErrors.map((e) => [e.op, e.code]), [[0, 'not_found']]);
  assert.equal(plan.files.map(brief), [['src/a.txt', 'x/a.txt', 'transfer']]);
  assert.is(plan.files[0]?.replace, false);
  assert.equal(plan.remoteDirs, []);
});

puts.run();

// ---------------------------------------------------------------------------------------------------

const gets = suite('planning downloads');
gets.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-plan-'));
});
gets.after.each(() => rmSync(dir, { recursive: true, force: true }));

gets('a remote folder is walked recursively into a local folder; a glob matches under its base', async () => {
  const remote = new FakeRemote().add('logs/2026/a.log', 'a').add('logs/2026/deep/b.log', 'bb').add('logs/c.txt', 'c');
  const m = manifest(`  - get: logs\n    to: ./out/\n  - get: 'logs/**/*.log'\n    to: ./flat\n`, dir);
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  const rel = (p: string) => p.slice(dir.length + 1);
  assert.equal(plan.files.filter((t) => t.op === 0).map((t) => [t.src, rel(t.dst)]), [
    ['logs/2026/a.log', 'out/logs/2026/a.log'],
    ['logs/2026/deep/b.log', 'out/logs/2026/deep/b.log'],
    ['logs/c.txt', 'out/logs/c.txt'],
  ]);
  assert.equal(plan.files.filter((t) => t.op === 1).map((t) => rel(t.dst)), ['flat/2026/a.log', 'flat/2026/deep/b.log']);
  assert.equal(plan.localDirs.map(rel), ['flat/2026', 'flat/2026/deep', 'out/logs', 'out/logs/2026', 'out/logs/2026/deep']);
});

gets('a hostile name in a listing is never turned into a local path', async () => {
  const remote = new FakeRemote().add('d/ok.txt', 'x');
  const list = remote.list.bind(remote);
  remote.list = async (path) => [...(await list(path)), { name: '../../etc/passwd', type: 'file', size: 1, mtime: 0 }];
  const m = manifest(`  - get: d\n    to: ./out/\n`, dir);
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  const bad = plan.files.find((t) => t.error);
  assert.is(bad?.error?.code, 'invalid_path');
  assert.is(plan.files.filter((t) => !t.error).length, 1);
  assert.not.ok(plan.localDirs.some((d) => !d.startsWith(dir)));
});

gets('a missing remote file fails its op; an existing local file follows overwrite', async () => {
  const remote = new FakeRemote().add('a.txt', 'aaa').add('b.txt', 'bbbb');
  writeFileSync(join(dir, 'a.txt'), 'aaa');
  writeFileSync(join(dir, 'b.txt'), 'old!');
  const m = manifest(`  - get: [a.txt, b.txt]\n    overwrite: fail\n  - get: missing.txt\n`, dir);
  const plan = await planStage({ ops: m.ops }, { remote, journal: null });
  assert.equal(plan.files.map((t) => t.skip ?? t.error?.code ?? 'transfer'), ['identical', 'exists']);
  assert.equal(plan.opErrors.map((e) => [e.op, e.code]), [[1, 'not_found']]);
});

gets.run();
