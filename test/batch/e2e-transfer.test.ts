import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cleanup, exited, startServer, tempDir, waitUntil, type ServerHandle } from '../e2e/harness.ts';
import { addUser, batch, hashTree, homeOf, lines, makeTree, manifest, serverLines, startBatch } from './e2e-helpers.ts';

const PASS = 'alice-password';
const t = suite('ferry batch against a real server');
let server: ServerHandle;
let work: string;

t.before(async () => {
  server = await startServer();
  work = tempDir('ferry-batch-');
  await addUser(server, 'alice', PASS);
  makeTree(join(work, 'photos'), 498);
  // Two files over 1 MiB: uploads that take the resumable path.
  writeFileSync(join(work, 'photos', 'big-1.bin'), randomBytes(1_500_000));
  writeFileSync(join(work, 'photos', 'big-2.bin'), randomBytes(2_500_000));
  writeFileSync(join(work, 'up.yaml'), manifest(server, 'alice', `  - put: ./photos\n    to: backup/\n`, 'concurrency: 8\n'));
  writeFileSync(join(work, 'down.yaml'), manifest(server, 'alice', `  - get: backup/photos\n    to: ./restored\n`));
});

t.after(async () => {
  await server.dispose();
  cleanup(work);
});

t('a 500-file folder goes up and comes back byte for byte', async () => {
  const source = hashTree(join(work, 'photos'));
  assert.is(source.size, 500);
  const started = Date.now();
  const up = await batch(server, ['up.yaml'], { cwd: work, password: PASS });
  const upMs = Date.now() - started;
  assert.is(up.code, 0, up.stderr + up.stdout);
  assert.match(up.stdout, /^done: transferred 500 files, [\d.]+ MiB in [\d.]+ s \([\d.]+ [KM]iB\/s\); 0 skipped, 0 failed$/m);
  assert.equal(hashTree(join(homeOf(server, 'alice'), 'backup', 'photos')), source);
  // One connection for the whole job, folders made once each rather than per file.
  assert.is(serverLines(server, /Connected/).length, 1);
  assert.ok(serverLines(server, /MKDIR backup\/photos/).length <= 4, serverLines(server, /MKDIR/).join('\n'));

  const t2 = Date.now();
  const down = await batch(server, ['down.yaml'], { cwd: work, password: PASS });
  const downMs = Date.now() - t2;
  assert.is(down.code, 0, down.stderr + down.stdout);
  assert.match(down.stdout, /^done: transferred 500 files/m);
  assert.equal(hashTree(join(work, 'restored')), source);
  assert.not.ok(readdirSync(join(work, 'restored'), { recursive: true }).some((n) => String(n).endsWith('.ferry-part')));
  console.log(`    500 files: up ${upMs} ms, down ${downMs} ms (whole process, including start-up)`);
});

t('empty folders go up and come back too (as scp -r and rsync -a make them)', async () => {
  mkdirSync(join(work, 'hollow', 'a', 'b'), { recursive: true });
  mkdirSync(join(work, 'hollow', 'c'), { recursive: true });
  writeFileSync(join(work, 'hollow', 'c', 'one.txt'), 'one');
  writeFileSync(join(work, 'hollow.yaml'), manifest(server, 'alice', `  - put: ./hollow\n    to: shelf/\n  - get: shelf/hollow\n    to: ./hollow-back\n`));
  const r = await batch(server, ['hollow.yaml'], { cwd: work, password: PASS });
  assert.is(r.code, 0, r.stderr + r.stdout);
  const home = homeOf(server, 'alice');
  assert.ok(existsSync(join(home, 'shelf', 'hollow', 'a', 'b')), 'the empty folder a/b on the server');
  assert.equal(readdirSync(join(home, 'shelf', 'hollow', 'a', 'b')), []);
  assert.ok(existsSync(join(work, 'hollow-back', 'a', 'b')), 'and back');
  assert.equal(readdirSync(join(work, 'hollow-back', 'a', 'b')), []);
  assert.equal(hashTree(join(work, 'hollow-back')), hashTree(join(work, 'hollow')));
});

t('a re-run skips everything, says so, and sends nothing', async () => {
  const uploadsBefore = serverLines(server, /UPLD /).length;
  const up = await batch(server, ['up.yaml'], { cwd: work, password: PASS });
  assert.is(up.code, 0, up.stderr);
  assert.match(up.stdout, /ops\[0\]: 500 skipped: done in an earlier run and unchanged since \(journal\)/);
  assert.match(up.stdout, /transferred 0 files, 0 B .*; 500 skipped, 0 failed/);
  assert.is(serverLines(server, /UPLD /).length, uploadsBefore);
  const down = await batch(server, ['down.yaml'], { cwd: work, password: PASS });
  assert.is(down.code, 0, down.stderr);
  assert.match(down.stdout, /500 skipped, 0 failed/, down.stdout);
});

t('a changed source file is sent again on the next run, and only that one', async () => {
  writeFileSync(join(work, 'photos', 'd1', 'file-0001.bin'), 'changed');
  const up = await batch(server, ['up.yaml'], { cwd: work, password: PASS });
  assert.is(up.code, 0, up.stderr);
  assert.match(up.stdout, /transferred 1 file, 7 B .*; 499 skipped/, up.stdout);
  // And downloading it again brings only that one.
  const down = await batch(server, ['down.yaml'], { cwd: work, password: PASS });
  assert.match(down.stdout, /transferred 1 file, 7 B .*; 499 skipped/, down.stdout);
  assert.equal(hashTree(join(work, 'restored')), hashTree(join(work, 'photos')));
  assert.equal(hashTree(join(homeOf(server, 'alice'), 'backup', 'photos')), hashTree(join(work, 'photos')));
});

t('--json: one JSON event per line on stdout, from start to summary', async () => {
  mkdirSync(join(work, 'j'), { recursive: true });
  writeFileSync(join(work, 'j', 'j.yaml'), manifest(server, 'alice', `  - get: backup/photos/d1\n    to: ./out/\n  - get: no/such/file\n`));
  const j = await batch(server, ['j.yaml', '--json'], { cwd: join(work, 'j'), password: PASS });
  assert.is(j.code, 1, j.stderr);
  const events = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });
  assert.is(events[0]?.event, 'start');
  assert.is(events.at(-1)?.event, 'summary');
  const done = events.filter((e) => e.event === 'done');
  const files = readdirSync(join(work, 'photos', 'd1'), { recursive: true }).filter((n) => String(n).endsWith('.bin'));
  assert.is(done.length, files.length);
  for (const e of done) assert.match(String(e.sha256), /^[0-9a-f]{64}$/);
  const error = events.find((e) => e.event === 'error');
  assert.equal([error?.op, error?.code, error?.retried], [1, 'not_found', false]);
  const summary = events.at(-1) as Record<string, unknown>;
  assert.equal([summary.exitCode, summary.files, summary.failed], [1, files.length, 1]);
  assert.equal(hashTree(join(work, 'j', 'out', 'd1')), hashTree(join(work, 'photos', 'd1')));
});

t('--manifest - reads the manifest from stdin; relative paths are from the working folder', async () => {
  const dir = join(work, 'stdin');
  mkdirSync(join(dir, 'in'), { recursive: true });
  writeFileSync(join(dir, 'in', 'note.txt'), 'from stdin');
  const text = manifest(server, 'alice', `  - put: ./in/note.txt\n    to: stdin/\n  - get: stdin/note.txt\n    to: ./back.txt\n`);
  const r = await batch(server, ['--manifest', '-', '--journal', join(dir, 'journal')], { cwd: dir, password: PASS, input: text });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /ferry batch <stdin>/);
  assert.ok(existsSync(join(homeOf(server, 'alice'), 'stdin', 'note.txt')));
  assert.equal(hashTree(dir).get('back.txt'), hashTree(join(dir, 'in')).get('note.txt'));
  assert.ok(lines(join(dir, 'journal')) >= 3);
  const dash = await batch(server, ['-', '--dry-run'], { cwd: dir, password: PASS, input: text });
  assert.is(dash.code, 0, dash.stderr);
  assert.match(dash.stdout, /dry run: .*nothing was transferred/);
});

t('a run killed midway resumes on the next run and ends with every file intact (one request per file)', async () => {
  const dir = join(work, 'kill');
  makeTree(join(dir, 'data'), 250, 16_384);
  writeFileSync(join(dir, 'data', 'large.bin'), randomBytes(4_000_000));
  writeFileSync(join(dir, 'k.yaml'), manifest(server, 'alice', `  - put: ./data\n    to: killed/\n`, 'concurrency: 2\n'));
  const journal = join(dir, 'k.yaml.journal');
  // One request per file (--no-bundles), each journaled as it ends; bundles: e2e-bundles.test.ts.
  const child = startBatch(server, ['k.yaml', '--no-bundles'], { cwd: dir, password: PASS });
  // The journal's first line is the run; wait for some finished files, then kill without warning.
  await waitUntil(() => lines(journal) > 30 || child.exitCode !== null, 30_000, 'files in the journal');
  child.kill('SIGKILL');
  await exited(child);
  const doneBefore = lines(journal) - 1;
  assert.ok(doneBefore < 251, `the run finished before it could be killed (${doneBefore} files)`);

  const r = await batch(server, ['k.yaml', '--no-bundles'], { cwd: dir, password: PASS });
  assert.is(r.code, 0, r.stderr + r.stdout);
  const skipped = Number(/ops\[0\]: (\d+) skipped: done in an earlier run/.exec(r.stdout)?.[1] ?? 0);
  // Exactly what the journal recorded is skipped; what was in flight is sent again (and resumed if large).
  assert.is(skipped, doneBefore, r.stdout);
  assert.match(r.stdout, new RegExp(`transferred ${251 - skipped} files?`));
  assert.equal(hashTree(join(homeOf(server, 'alice'), 'killed', 'data')), hashTree(join(dir, 'data')));
});

t.run();
