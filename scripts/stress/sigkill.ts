// SIGKILL loop: a real `ferry serve` process is killed with SIGKILL at a random moment while clients upload,
// overwrite, rename and sign up; after each restart every file is either a complete old or new version, the
// renamed file is in exactly one place, users.json and audit.log parse, confirmed sign-ups survived, and no
// temporary file is visible in a home.
// Usage: node --import tsx scripts/stress/sigkill.ts [cycles=20]   (FERRY_STRESS_SEED for a fixed seed)
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { connect, type FerryClient } from '../../src/client/mod.ts';
import { cleanup, startServer, tempDir, type ServerHandle } from '../../test/e2e/harness.ts';

process.env.FERRY_SCRYPT_N ??= '1024';
const CYCLES = Number(process.argv[2] ?? 20);
let seed = Number(process.env.FERRY_STRESS_SEED ?? Date.now() % 1e9);
const firstSeed = seed;
/** A small deterministic PRNG (mulberry32) so that a failing run can be replayed with its seed. */
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (a: number, b: number) => Math.floor(a + rand() * (b - a));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const PASSWORD = 'correct horse battery';
const FILES = ['f0.bin', 'f1.bin', 'f2.bin', 'f3.bin'];

const root = tempDir('ferry-stress-sigkill-');
const dataDir = join(root, 'data');
const home = join(root, 'home');
const local = join(root, 'local');
mkdirSync(home);
mkdirSync(local);
const problems: string[] = [];
const stats = { cycles: 0, uploadsOk: 0, uploadsCut: 0, renamesOk: 0, signupsOk: 0, signupsCut: 0, mixedVersions: 0, tornAuditLines: 0, killDelays: [] as number[] };

async function client(server: ServerHandle, user: string, signup = false): Promise<FerryClient> {
  const c = await connect({ host: '127.0.0.1', port: server.port, fingerprint: server.fingerprint, knownHosts: null, timeoutMs: 5000 });
  if (signup) await c.signup(user, PASSWORD);
  else await c.login(user, PASSWORD);
  return c;
}

/** Hashes each path may hold after a restart. */
const possible = new Map<string, Set<string>>();
const renamed = { content: '', names: ['r.bin', 'r2.bin'] };
const confirmedUsers = new Set<string>(['stress']);

function check(cycle: number): void {
  const userHome = join(dataDir, 'homes', 'stress');
  for (const f of FILES) {
    const path = join(userHome, f);
    if (!existsSync(path)) {
      problems.push(`cycle ${cycle}: ${f} vanished`);
      continue;
    }
    const h = sha(readFileSync(path));
    if (!possible.get(f)!.has(h)) {
      stats.mixedVersions++;
      problems.push(`cycle ${cycle}: ${f} is neither the old nor a new complete version (sha ${h.slice(0, 12)})`);
    }
    possible.set(f, new Set([h]));
  }
  const present = renamed.names.filter((n) => existsSync(join(userHome, n)));
  if (present.length !== 1) problems.push(`cycle ${cycle}: the renamed file is in ${present.length} places (${present.join(', ')})`);
  else if (sha(readFileSync(join(userHome, present[0]!))) !== renamed.content) problems.push(`cycle ${cycle}: the renamed file changed`);
  // users.json parses and keeps every confirmed sign-up.
  try {
    const users = JSON.parse(readFileSync(join(dataDir, 'users.json'), 'utf8')) as { users?: Record<string, unknown> | unknown[] };
    const text = JSON.stringify(users);
    for (const u of confirmedUsers) if (!text.includes(`"${u}"`)) problems.push(`cycle ${cycle}: confirmed user ${u} is missing from users.json`);
  } catch (err) {
    problems.push(`cycle ${cycle}: users.json does not parse: ${String(err)}`);
  }
  // audit.log: every line is JSON (a torn last line is counted separately).
  const lines = readFileSync(join(dataDir, 'audit.log'), 'utf8').split('\n');
  const last = lines.pop();
  if (last !== '') {
    stats.tornAuditLines++;
    problems.push(`cycle ${cycle}: audit.log ends with a torn line (${JSON.stringify(last).slice(0, 60)})`);
  }
  lines.forEach((l, i) => {
    try {
      JSON.parse(l);
    } catch {
      problems.push(`cycle ${cycle}: audit.log line ${i + 1} does not parse`);
    }
  });
  // No temporary file in any home (partials live in <data>/.partial, outside every home).
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  for (const f of walk(join(dataDir, 'homes'))) {
    const rel = relative(dataDir, f);
    if (/\.(part|tmp|json)$|ferry-part|^\.|\/\./.test(rel.split('/').slice(2).join('/'))) problems.push(`cycle ${cycle}: temporary file visible in a home: ${rel}`);
  }
}

async function main(): Promise<void> {
  console.log(`sigkill: ${CYCLES} cycles, seed ${firstSeed}, data ${dataDir}`);
  // Set-up: one user with four files and a file to rename back and forth.
  let server = await startServer({ dataDir, home });
  const setup = await client(server, 'stress', true);
  for (const f of FILES) {
    const body = randomBytes(between(64 * 1024, 512 * 1024));
    writeFileSync(join(local, f), body);
    await setup.upload(join(local, f), f);
    possible.set(f, new Set([sha(body)]));
  }
  const r = randomBytes(200 * 1024);
  writeFileSync(join(local, 'r.bin'), r);
  await setup.upload(join(local, 'r.bin'), 'r.bin');
  renamed.content = sha(r);
  await setup.quit();
  await server.stop();

  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    server = await startServer({ dataDir, home });
    check(cycle); // state after the previous kill, seen after a restart
    const ops: Promise<unknown>[] = [];
    const clients: FerryClient[] = [];
    const c1 = await client(server, 'stress');
    const c2 = await client(server, 'stress');
    clients.push(c1, c2);
    // Each operation loops until the server dies, so that the kill lands in the middle of something.
    let killed = false;
    // Uploads and overwrites of the four files (two per client, so no upload is refused as busy).
    for (const [i, f] of FILES.entries()) {
      const c = i % 2 === 0 ? c1 : c2;
      ops.push(
        (async () => {
          for (let v = 0; !killed; v++) {
            const body = randomBytes(between(100 * 1024, 3 * 1024 * 1024));
            const file = join(local, `${f}.${cycle}.${v}`);
            writeFileSync(file, body);
            possible.get(f)!.add(sha(body));
            try {
              await c.upload(file, f, { overwrite: true, resume: false });
              stats.uploadsOk++;
            } catch {
              stats.uploadsCut++;
              return;
            }
          }
        })(),
      );
    }
    // A rename back and forth.
    ops.push(
      (async () => {
        const userHome = join(dataDir, 'homes', 'stress');
        while (!killed) {
          const [from, to] = existsSync(join(userHome, 'r.bin')) ? ['r.bin', 'r2.bin'] : ['r2.bin', 'r.bin'];
          await c1.rename(from!, to!);
          stats.renamesOk++;
        }
      })().catch(() => {}),
    );
    // Sign-ups on fresh connections.
    ops.push(
      (async () => {
        for (let k = 0; !killed; k++) {
          const name = `user${cycle}x${k}`;
          try {
            const c = await connect({ host: '127.0.0.1', port: server.port, fingerprint: server.fingerprint, knownHosts: null, timeoutMs: 5000 });
            clients.push(c);
            await c.signup(name, PASSWORD);
            confirmedUsers.add(name);
            stats.signupsOk++;
          } catch {
            stats.signupsCut++;
            return;
          }
        }
      })(),
    );
    const delay = between(20, 900);
    stats.killDelays.push(delay);
    await new Promise((res) => setTimeout(res, delay));
    await server.kill(); // SIGKILL
    killed = true;
    await Promise.allSettled(ops);
    for (const c of clients) c.destroy();
    stats.cycles++;
    process.stdout.write(`  cycle ${cycle}: killed after ${delay} ms; uploads ok ${stats.uploadsOk}, cut ${stats.uploadsCut}\n`);
  }
  server = await startServer({ dataDir, home });
  check(CYCLES + 1);
  await server.stop();
}

main()
  .catch((err: unknown) => problems.push(`the run itself failed: ${String((err as Error)?.stack ?? err)}`))
  .finally(() => {
    console.log(`sigkill: ${JSON.stringify({ ...stats, killDelays: `${Math.min(...stats.killDelays)}..${Math.max(...stats.killDelays)} ms` })}`);
    if (problems.length) {
      console.log(`sigkill: FAILED (${problems.length} problems, seed ${firstSeed}, data kept in ${root}):\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    } else {
      console.log('sigkill: OK: every file old or new and complete, rename atomic, users.json and audit.log parse, no temp files in homes');
      cleanup(root);
    }
  });
