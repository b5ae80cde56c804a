import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, auditTime, type AuditEvent, type AuditEventInput } from '../../src/audit/mod.ts';

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const isPosix = process.platform !== 'win32';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-audit-'));
}

function ev(user: string, path: string, extra: Partial<AuditEventInput> = {}): AuditEventInput {
  return { event: 'upload', user, address: '10.0.0.1:5000', result: 'ok', path, ...extra };
}

async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return text.split('\n').filter((l) => l !== '');
}

// ---------------------------------------------------------------------------------------------------------
const time = suite('auditTime');

time('is ISO UTC with microseconds and close to the wall clock', () => {
  const t = auditTime();
  assert.match(t, TIME);
  const drift = Math.abs(Date.parse(t.slice(0, 23) + 'Z') - Date.now());
  assert.ok(drift < 2000, `drift ${drift} ms`);
});

time.run();

// ---------------------------------------------------------------------------------------------------------
const log = suite('AuditLog append and read');

log('an appended event reads back with its time filled in', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    await audit.append(ev('ann', 'a.txt', { bytes: 11, sha256: 'ab'.repeat(32) }));
    const [e, ...rest] = await audit.read({});
    assert.is(rest.length, 0);
    assert.ok(e);
    assert.match(e.time, TIME);
    assert.equal({ ...e, time: 'x' }, {
      time: 'x', event: 'upload', user: 'ann', address: '10.0.0.1:5000', result: 'ok', path: 'a.txt',
      bytes: 11, sha256: 'ab'.repeat(32),
    });
    const raw = await lines(join(dir, 'audit.log'));
    assert.is(raw.length, 1);
    assert.ok(raw[0]!.startsWith('{"time":"'), 'time is the first field');
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('the log file is created on first append with mode 0600', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(join(dir, 'data'));
  try {
    assert.equal(await audit.read({}), []);
    assert.is(await stat(join(dir, 'data', 'audit.log')).catch(() => null), null, 'a read creates nothing');
    await audit.append(ev('ann', 'a'));
    const st = await stat(join(dir, 'data', 'audit.log'));
    if (isPosix) assert.is(st.mode & 0o777, 0o600);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('a given time is kept', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    await audit.append(ev('ann', 'a', { time: '2024-04-18T12:31:03.694276Z' }));
    assert.is((await audit.read({}))[0]?.time, '2024-04-18T12:31:03.694276Z');
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('read filters by user and keeps the last `limit` events in order', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    for (let i = 0; i < 30; i++) await audit.append(ev(i % 3 === 0 ? 'bob' : 'ann', `f${i}`));
    const all = await audit.read({});
    assert.is(all.length, 30);
    assert.equal(all.map((e) => e.path), Array.from({ length: 30 }, (_, i) => `f${i}`));
    const bob = await audit.read({ user: 'bob' });
    assert.equal(bob.map((e) => e.path), ['f0', 'f3', 'f6', 'f9', 'f12', 'f15', 'f18', 'f21', 'f24', 'f27']);
    assert.equal((await audit.read({ user: 'bob', limit: 3 })).map((e) => e.path), ['f21', 'f24', 'f27']);
    assert.equal((await audit.read({ limit: 2 })).map((e) => e.path), ['f28', 'f29']);
    assert.equal(await audit.read({ user: 'nobody' }), []);
    assert.equal(await audit.read({ limit: 0 }), []);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('the default limit is the last 1000 events', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    const text = Array.from({ length: 1200 }, (_, i) =>
      JSON.stringify({ time: auditTime(), event: 'download', user: 'ann', address: 'a:1', result: 'ok', path: `f${i}` }),
    ).join('\n');
    await writeFile(join(dir, 'audit.log'), text + '\n');
    const got = await audit.read({});
    assert.is(got.length, 1000);
    assert.is(got[0]?.path, 'f200');
    assert.is(got[999]?.path, 'f1199');
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('garbage lines and a truncated last line are skipped, and the next append starts a fresh line', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  const file = join(dir, 'audit.log');
  try {
    await audit.append(ev('ann', 'one'));
    await audit.close();
    await appendFile(file, 'not json at all\n[1,2]\n{"time":"x","event":"bogus","user":"a","address":"b","result":"ok"}\n\n');
    await appendFile(file, JSON.stringify({ time: auditTime(), ...ev('ann', 'two') }) + '\n');
    await appendFile(file, '{"time":"2026-11-24T07:01:02.123456Z","event":"upl'); // a crash mid-line
    const again = new AuditLog(dir);
    assert.equal((await again.read({})).map((e) => e.path), ['one', 'two']);
    await again.append(ev('ann', 'three'));
    assert.equal((await again.read({})).map((e) => e.path), ['one', 'two', 'three']);
    await again.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

log('200 concurrent appends produce 200 intact lines', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    const big = 'x'.repeat(5000); // lines larger than a pipe buffer
    await Promise.all(Array.from({ length: 200 }, (_, i) => audit.append(ev(`u${i % 7}`, `f${i}`, { detail: big }))));
    const raw = await lines(join(dir, 'audit.log'));
    assert.is(raw.length, 200);
    const parsed = raw.map((l) => JSON.parse(l) as AuditEvent);
    assert.equal(parsed.map((e) => e.path), Array.from({ length: 200 }, (_, i) => `f${i}`), 'in call order');
    assert.ok(parsed.every((e) => e.detail === big));
    assert.is((await audit.read({ limit: 500 })).length, 200);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

log('appends after close are refused', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    await audit.append(ev('ann', 'a'));
    await audit.close();
    try {
      await audit.append(ev('ann', 'b'));
      assert.unreachable('append after close');
    } catch (err) {
      assert.match((err as Error).message, /closed/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

log.run();

// ---------------------------------------------------------------------------------------------------------
const clear = suite('AuditLog clear');

const ARCHIVE = /^audit-\d{8}T\d{9}Z(-\d+)?\.log$/;

clear('clear archives the old log and starts a new one with a log_clear entry naming the archive', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    await audit.append(ev('ann', 'a'));
    await audit.append(ev('bob', 'b'));
    const before = await readFile(join(dir, 'audit.log'), 'utf8');
    const name = await audit.clear('root', '10.0.0.9:4000');
    assert.match(name, ARCHIVE);
    assert.equal(await readdir(join(dir, 'audit-archive')), [name]);
    assert.is(await readFile(join(dir, 'audit-archive', name), 'utf8'), before);
    const now = await audit.read({});
    assert.is(now.length, 1);
    assert.equal({ ...now[0], time: 't' }, {
      time: 't', event: 'log_clear', user: 'root', address: '10.0.0.9:4000', result: 'ok', detail: name,
    });
    await audit.append(ev('ann', 'c'));
    assert.equal((await audit.read({})).map((e) => e.event), ['log_clear', 'upload']);
    if (isPosix) {
      assert.is((await stat(join(dir, 'audit.log'))).mode & 0o777, 0o600);
      assert.is((await stat(join(dir, 'audit-archive', name))).mode & 0o777, 0o600);
    }
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

clear('two clears in the same millisecond get distinct archives and nothing is lost', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    await audit.append(ev('ann', 'a'));
    const names = await Promise.all([audit.clear('root', 'h:1'), audit.clear('root', 'h:1'), audit.clear('root', 'h:1')]);
    assert.is(new Set(names).size, 3);
    for (const n of names) assert.match(n, ARCHIVE);
    assert.equal((await readdir(join(dir, 'audit-archive'))).sort(), [...names].sort());
    const first = await readFile(join(dir, 'audit-archive', names[0]!), 'utf8');
    assert.match(first, /"path":"a"/);
    const second = await readFile(join(dir, 'audit-archive', names[1]!), 'utf8');
    assert.match(second, new RegExp(`"detail":"${names[0]!.replace(/\./g, '\\.')}"`));
    assert.equal((await audit.read({})).map((e) => e.detail), [names[2]]);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

clear('clear of a log that does not exist yet still records who cleared it', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    const name = await audit.clear('root', 'h:1');
    assert.is(await readFile(join(dir, 'audit-archive', name), 'utf8'), '');
    assert.equal((await audit.read({})).map((e) => [e.event, e.user, e.detail]), [['log_clear', 'root', name]]);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

clear('appends racing with clear are not lost: those before go to the archive, those after to the new log', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    const before = Array.from({ length: 50 }, (_, i) => audit.append(ev('ann', `b${i}`)));
    const cleared = audit.clear('root', 'h:1');
    const after = Array.from({ length: 50 }, (_, i) => audit.append(ev('ann', `a${i}`)));
    await Promise.all([...before, cleared, ...after]);
    const name = await cleared;
    const archived = (await lines(join(dir, 'audit-archive', name))).map((l) => (JSON.parse(l) as AuditEvent).path);
    assert.equal(archived, Array.from({ length: 50 }, (_, i) => `b${i}`));
    const live = await audit.read({});
    assert.is(live[0]?.event, 'log_clear');
    assert.equal(live.slice(1).map((e) => e.path), Array.from({ length: 50 }, (_, i) => `a${i}`));
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

clear('a read during a clear sees a whole log, old or new', async () => {
  const dir = await tempDir();
  const audit = new AuditLog(dir);
  try {
    for (let i = 0; i < 20; i++) await audit.append(ev('ann', `f${i}`));
    const reads = [audit.read({}), audit.clear('root', 'h:1').then(() => audit.read({}))];
    const [old, fresh] = await Promise.all(reads);
    assert.is(old?.length, 20);
    assert.equal(fresh?.map((e) => e.event), ['log_clear']);
  } finally {
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  }
});

clear.run();
