import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileKey, Journal, parseJournal, type FileRecord } from '../../src/batch/journal.ts';

const rec = (src: string, extra: Partial<FileRecord> = {}): Omit<FileRecord, 'at'> => ({
  kind: 'put',
  src,
  dst: `remote/${src}`,
  size: 10,
  mtime: 1_700_000_000_000,
  sha256: 'a'.repeat(64),
  ...extra,
});
const line = (o: object) => `${JSON.stringify(o)}\n`;

const parse = suite('parseJournal');

parse('reads files and ops; the latest record of a file wins', () => {
  const text =
    line({ t: 'run', started: 'x' }) +
    line({ t: 'file', ...rec('a'), at: 't1' }) +
    line({ t: 'file', ...rec('a', { size: 20 }), at: 't2' }) +
    line({ t: 'op', key: '2 mkdir "d"' });
  const s = parseJournal(text);
  assert.is(s.files.size, 1);
  assert.is(s.files.get(fileKey('put', 'a', 'remote/a'))?.size, 20);
  assert.equal([...s.ops], ['2 mkdir "d"']);
  assert.is(s.unreadable, 0);
});

parse('a truncated last line is skipped and counted, the rest kept', () => {
  const text = line({ t: 'file', ...rec('a') }) + line({ t: 'file', ...rec('b') }).slice(0, 30);
  const s = parseJournal(text);
  assert.is(s.files.size, 1);
  assert.is(s.unreadable, 1);
});

parse('garbage and records missing fields are skipped', () => {
  const s = parseJournal('not json\n[1,2]\n{"t":"file","kind":"put","src":"a"}\n{"t":"weird"}\n\n');
  assert.is(s.files.size, 0);
  assert.is(s.unreadable, 4);
});

parse('a complete line ends a run: its ops are forgotten, its files kept', () => {
  const text = line({ t: 'op', key: 'k1' }) + line({ t: 'file', ...rec('a') }) + line({ t: 'complete' }) + line({ t: 'op', key: 'k2' });
  const s = parseJournal(text);
  assert.equal([...s.ops], ['k2']);
  assert.is(s.files.size, 1);
});

parse.run();

// ---------------------------------------------------------------------------------------------------

const file = suite('Journal on disk');
let dir: string;
file.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-journal-'));
});
file.after.each(() => rmSync(dir, { recursive: true, force: true }));

file('records are appended one line each and survive a reopen', () => {
  const path = join(dir, 'job.yaml.journal');
  const j = Journal.open(path);
  j.recordFile(rec('a'));
  j.recordOp('1 mkdir "d"');
  // Each record is on disk before close (a killed process loses nothing it reported).
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  assert.is(lines.length, 3);
  assert.is(JSON.parse(lines[0] as string).t, 'run');
  j.close(false);
  const again = Journal.open(path);
  assert.ok(again.file('put', 'a', 'remote/a'));
  assert.ok(again.opDone('1 mkdir "d"'));
  again.close(false);
});

file('opening compacts: a cut-short line is dropped so later appends stay readable', () => {
  const path = join(dir, 'j');
  writeFileSync(path, line({ t: 'file', ...rec('a') }) + '{"t":"file","kind":"pu');
  const j = Journal.open(path);
  assert.is(j.state.unreadable, 1);
  j.recordFile(rec('b'));
  j.close(false);
  const s = parseJournal(readFileSync(path, 'utf8'));
  assert.is(s.unreadable, 0);
  assert.equal([...s.files.values()].map((r) => r.src).sort(), ['a', 'b']);
});

file('a complete close keeps only the files this run saw, and forgets ops', () => {
  const path = join(dir, 'j');
  writeFileSync(path, line({ t: 'file', ...rec('old') }) + line({ t: 'file', ...rec('kept') }) + line({ t: 'op', key: 'k' }));
  const j = Journal.open(path);
  j.keep('put', 'kept', 'remote/kept');
  j.recordFile(rec('new'));
  j.close(true);
  const text = readFileSync(path, 'utf8');
  const s = parseJournal(text);
  assert.equal([...s.files.values()].map((r) => r.src).sort(), ['kept', 'new']);
  assert.is(s.ops.size, 0);
  assert.match(text.trim().split('\n').at(-1) ?? '', /"t":"complete"/);
});

file('an incomplete close keeps everything for the next run', () => {
  const path = join(dir, 'j');
  writeFileSync(path, line({ t: 'file', ...rec('old') }));
  const j = Journal.open(path);
  j.recordOp('k');
  j.close(false);
  const s = parseJournal(readFileSync(path, 'utf8'));
  assert.is(s.files.size, 1);
  assert.ok(s.ops.has('k'));
});

file('a second user of the journal is refused while the first runs; a lock left by a dead process is taken over', () => {
  const path = join(dir, 'j');
  const j = Journal.open(path);
  assert.ok(existsSync(`${path}.lock`));
  // This process holds the lock: pretend another live process does.
  writeFileSync(`${path}.lock`, `${process.ppid}\n`);
  assert.throws(() => Journal.open(path), /another ferry batch/);
  j.close(false);
  // The lock is no longer this run's (another holds it now): closing leaves it alone (fs/lock-file.ts).
  assert.ok(existsSync(`${path}.lock`));
  // A process that has exited.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  writeFileSync(`${path}.lock`, `${dead}\n`);
  const k = Journal.open(path);
  k.close(false);
});

file('peek reads without locking or writing', () => {
  const path = join(dir, 'j');
  writeFileSync(path, line({ t: 'file', ...rec('a') }) + 'cut');
  const before = readFileSync(path, 'utf8');
  const j = Journal.peek(path);
  assert.ok(j.file('put', 'a', 'remote/a'));
  j.recordFile(rec('b'));
  j.close(true);
  assert.is(readFileSync(path, 'utf8'), before);
  assert.not.ok(existsSync(`${path}.lock`));
});

file.run();
