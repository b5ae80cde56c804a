import { mkdir } from 'node:fs/promises';
import pLimit from 'p-limit';
import pMap from 'p-map';
import { backoff } from '../core/backoff.ts';
import type { FerryClient } from '../client/mod.ts';
import { TooLargeForBundle } from '../client/transfer.ts';
import { FerryError } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';
import { bundleable, groupBundles, runBundles, type BundleRun } from './bundles.ts';
import type { Journal } from './journal.ts';
import type { Manifest, Op } from './manifest.ts';
import { displayLocal, hashLocalFile, planStage, SKIP_TEXT, stagesOf, type FileTask, type RemoteView, type SkipReason } from './plan.ts';
import { ProgressState, type BatchEvent, type FileRef, type Reporter, type SummaryEvent } from './report.ts';

export interface RunOptions {
  manifest: Manifest;
  dryRun: boolean;
  /** Null: no journal (a manifest from stdin without --journal). */
  journal: Journal | null;
  /** Requests in flight on the connection (the manifest's, or --concurrency). */
  concurrency: number;
  reporter: Reporter;
  /** Aborted on Ctrl-C: no new work starts; what is in flight gets a moment, then the connection is dropped. */
  signal: AbortSignal;
  /** Opens a logged-in connection (connect + login). Called again after the connection is lost. */
  connect: () => Promise<FerryClient>;
  /** First retry delay (core/backoff.ts: doubles each attempt, at most 30 s, with jitter). Default 500 ms. */
  retryDelayMs?: number;
  /** In-flight requests that see no byte for this long drop the connection (it is reopened). Default 120 s. */
  stallMs?: number;
  /** How long in-flight transfers may finish after Ctrl-C before the connection is dropped. Default 1.5 s. */
  graceMs?: number;
  /** Small files many to a stream (bundles) where the server offers it. Default true. */
  bundles?: boolean;
}

/** Exit codes: the contract with scripts. */
export const EXIT = { ok: 0, failed: 1, invalid: 2, connect: 3, interrupted: 130 } as const;

interface Failure {
  code: string;
  message: string;
  retryable: boolean;
}

const LOCAL_RETRYABLE = new Set(['EMFILE', 'ENFILE', 'EBUSY', 'EAGAIN', 'EINTR', 'ETIMEDOUT']);

/** Whether trying again can help: the protocol's table for FerryErrors; transient codes for local ones. */
export function classify(err: unknown): Failure {
  if (err instanceof FerryError) return { code: err.code, message: err.message, retryable: err.retryable };
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'error';
  const message = e instanceof Error ? e.message : String(err);
  if (code === 'EACCES' || code === 'EPERM') return { code: 'permission_denied', message, retryable: false };
  if (code === 'ENOENT' || code === 'ENOTDIR') return { code: 'not_found', message, retryable: false };
  if (code === 'ENOSPC' || code === 'EDQUOT') return { code: 'no_space', message, retryable: false };
  // A file that changed while it was read: the next attempt reads it afresh.
  if (/shrank while/.test(message)) return { code: 'size_mismatch', message, retryable: true };
  return { code: code.toLowerCase(), message, retryable: LOCAL_RETRYABLE.has(code) };
}

class Interrupted extends Error {}

/** One connection, reopened on demand after it is lost (one reconnect however many requests notice). */
class Session {
  private client: FerryClient | null = null;
  private opening: Promise<FerryClient> | null = null;
  connections = 0;

  constructor(private readonly open: () => Promise<FerryClient>) {}

  get(): Promise<FerryClient> {
    const c = this.client;
    if (c && !c.closed) return Promise.resolve(c);
    this.opening ??= this.open()
      .then((fresh) => {
        this.client = fresh;
        this.connections++;
        return fresh;
      })
      .finally(() => {
        this.opening = null;
      });
    return this.opening;
  }

  get current(): FerryClient | null {
    return this.client;
  }

  async quit(): Promise<void> {
    await this.client?.quit();
  }

  destroy(): void {
    this.client?.destroy();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The folders above a remote path (`a/b/c` → `a/b`, `a`). */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) out.push(path.slice(0, i));
  return out;
}

function opKey(op: Op): string {
  switch (op.kind) {
    case 'mkdir':
    case 'delete':
      return `${op.index} ${op.kind} ${JSON.stringify(op.path)}`;
    case 'rename':
      return `${op.index} rename ${JSON.stringify(op.from)} ${JSON.stringify(op.to)}`;
    default:
      return `${op.index} ${op.kind}`;
  }
}

/**
 * Runs a manifest: connects (exit 3 if it cannot), then each stage in order — plan it, create the
 * folders it needs, and transfer its files in parallel over the one connection (`concurrency`
 * requests in flight) — retrying what may pass, journaling what finished, reporting as it goes.
 * Never throws for a failed file or operation: they are counted and the rest runs.
 */
export async function runBatch(options: RunOptions): Promise<SummaryEvent> {
  const { manifest, dryRun, journal, reporter, signal } = options;
  const attemptsAllowed = manifest.retries + 1;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const progress = new ProgressState();
  const session = new Session(options.connect);
  /** Planning requests, folders and simple operations: at most `concurrency` in flight. */
  const limiter = pLimit(options.concurrency);
  const emit = (e: BatchEvent) => reporter.event(e);
  let skipped = 0;
  let failed = 0;
  let notRun = 0;
  let resumedBytes = 0;
  let interrupted = false;
  let exitCode: number = EXIT.ok;
  const show = (kind: 'put' | 'get', path: string, side: 'src' | 'dst') =>
    (kind === 'put') === (side === 'src') ? displayLocal(path) : path;

  emit({
    event: 'start',
    manifest: manifest.file,
    server: `${manifest.server.host}:${manifest.server.port}`,
    user: manifest.user,
    ops: manifest.ops.length,
    concurrency: options.concurrency,
    journal: journal?.path ?? null,
    dryRun,
  });
  for (const w of manifest.warnings) emit({ event: 'warning', message: w.message, file: w.file, line: w.line, column: w.column, field: w.field });
  if (journal && journal.state.unreadable > 0) {
    emit({ event: 'warning', message: `the journal had ${journal.state.unreadable} unreadable line(s) (a run cut short?); they were ignored` });
  }

  // Ctrl-C: stop starting work; give what is in flight a moment, then drop the connection.
  let graceTimer: NodeJS.Timeout | null = null;
  const onAbort = () => {
    interrupted = true;
    graceTimer = setTimeout(() => session.destroy(), options.graceMs ?? 1500);
    graceTimer.unref();
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });

  // A connection where requests wait and no byte moves for too long is dropped, and reopened.
  let lastBytes = -1;
  let lastMove = Date.now();
  const watchdog = setInterval(() => {
    const c = session.current;
    if (!c || c.closed) return;
    const total = c.wireBytes.in + c.wireBytes.out;
    if (total !== lastBytes || (progress.active.size === 0 && limiter.activeCount === 0)) {
      lastBytes = total;
      lastMove = Date.now();
    } else if (Date.now() - lastMove > (options.stallMs ?? 120_000)) {
      c.destroy();
      lastMove = Date.now();
    }
  }, 1000);
  watchdog.unref();

  /** Runs `fn` on the connection, retrying what may pass with exponential backoff. */
  async function attempt<T>(ref: Partial<FileRef> | null, fn: (client: FerryClient) => Promise<T>): Promise<{ ok: true; value: T; attempts: number } | { ok: false; failure: Failure; attempts: number }> {
    for (let n = 1; ; n++) {
      if (interrupted) throw new Interrupted();
      try {
        const client = await session.get();
        return { ok: true, value: await fn(client), attempts: n };
      } catch (err) {
        if (interrupted) throw new Interrupted();
        const failure = classify(err);
        if (!failure.retryable || n >= attemptsAllowed) return { ok: false, failure, attempts: n };
        const delayMs = backoff(n, { firstMs: retryDelayMs, capMs: 30_000 });
        if (ref?.op !== undefined && ref.kind !== undefined && ref.from !== undefined) {
          emit({ event: 'retry', ...(ref as FileRef), attempt: n, of: attemptsAllowed, code: failure.code, message: failure.message, delayMs });
        } else {
          emit({ event: 'warning', message: `${failure.code}: ${failure.message}; retrying in ${(delayMs / 1000).toFixed(1)} s (attempt ${n + 1} of ${attemptsAllowed})` });
        }
        await sleep(delayMs, signal);
      }
    }
  }

  /** Planning requests: limited like transfers, retried; a final failure is thrown. */
  const remote: RemoteView = {
    list: (path) => call((c) => c.list(path).then((r) => r.entries)),
    stat: (path) => call((c) => c.exists(path)),
    statHash: (path) => call((c) => c.statHash(path)),
  };
  async function call<T>(fn: (c: FerryClient) => Promise<T>): Promise<T> {
    const r = await limiter(() => attempt(null, fn));
    if (r.ok) return r.value;
    throw new FerryError(r.failure.code as never, r.failure.message);
  }

  const finish = (): SummaryEvent => {
    clearInterval(watchdog);
    if (graceTimer) clearTimeout(graceTimer);
    signal.removeEventListener('abort', onAbort);
    reporter.stop();
    const ms = Date.now() - progress.started;
    if (interrupted) exitCode = EXIT.interrupted;
    else if (exitCode === EXIT.ok && failed > 0) exitCode = EXIT.failed;
    const summary: SummaryEvent = {
      event: 'summary',
      exitCode,
      files: dryRun ? progress.filesTotal : progress.filesDone,
      bytes: dryRun ? progress.bytesTotal : progress.bytesDone,
      resumedBytes,
      skipped,
      failed,
      notRun,
      ms,
      rate: dryRun ? 0 : Math.round(((progress.bytesDone - resumedBytes) * 1000) / Math.max(1, ms)),
      interrupted,
      dryRun,
      connections: session.connections,
    };
    emit(summary);
    return summary;
  };

  // Connect and log in first: a server that cannot be reached or refuses us is exit 3, nothing else runs.
  try {
    const first = await attempt(null, (c) => Promise.resolve(c));
    if (!first.ok) {
      emit({ event: 'error', code: first.failure.code, message: `Cannot connect to ${manifest.server.host}:${manifest.server.port} as ${manifest.user}: ${first.failure.message}`, attempts: first.attempts, retried: first.attempts > 1 });
      exitCode = EXIT.connect;
      notRun = manifest.ops.length;
      return finish();
    }
    // A server that takes bundles lists a whole tree in one request.
    if (first.value.bundles && options.bundles !== false) remote.listTree = (path) => call((c) => c.listTree(path).then((r) => r.entries));
  } catch (err) {
    if (!(err instanceof Interrupted)) throw err;
    notRun = manifest.ops.length;
    return finish();
  }

  reporter.attach(progress);
  const stages = stagesOf(manifest.ops);
  let stageIndex = 0;
  try {
    for (; stageIndex < stages.length; stageIndex++) {
      if (interrupted) break;
      const stage = stages[stageIndex]!;
      const op = stage.ops[0]!;
      if (op.kind === 'put' || op.kind === 'get') await runTransfers(stage.ops);
      else await runSimple(op);
    }
  } catch (err) {
    if (!(err instanceof Interrupted)) throw err;
  }
  if (interrupted) {
    for (const s of stages.slice(stageIndex + 1)) notRun += s.ops.length;
  }
  if (!interrupted) await session.quit();
  else session.destroy();
  return finish();

  async function runTransfers(ops: Op[]): Promise<void> {
    let plan;
    try {
      plan = await planStage({ ops }, { remote, journal });
    } catch (err) {
      if (err instanceof Interrupted) throw err;
      const f = classify(err);
      for (const op of ops) {
        failed++;
        emit({ event: 'error', op: op.index, kind: op.kind, code: f.code, message: `Cannot plan this operation: ${f.message}`, attempts: attemptsAllowed, retried: f.retryable });
      }
      return;
    }
    for (const op of ops) {
      const mine = plan.files.filter((t) => t.op === op.index);
      const todo = mine.filter((t) => !t.skip && !t.error);
      emit({
        event: 'op',
        op: op.index,
        kind: op.kind,
        files: todo.length,
        bytes: todo.reduce((n, t) => n + t.size, 0),
        skip: mine.filter((t) => t.skip).length,
        fail: mine.filter((t) => t.error).length + plan.opErrors.filter((e) => e.op === op.index).length,
        excluded: plan.excluded.get(op.index) ?? 0,
      });
    }
    const ref = (t: FileTask): FileRef => ({ op: t.op, kind: t.kind, from: show(t.kind, t.src, 'src'), to: show(t.kind, t.dst, 'dst') });
    for (const e of plan.opErrors) {
      failed++;
      emit({ event: 'error', op: e.op, kind: e.kind, from: e.kind === 'put' ? displayLocal(e.source) : e.source, code: e.code, message: e.message, attempts: 1, retried: false });
    }
    const todo: FileTask[] = [];
    for (const t of plan.files) {
      if (dryRun) {
        const action = t.error ? 'fail' : t.skip ? 'skip' : 'transfer';
        emit({ event: 'plan', ...ref(t), action, size: t.size, ...(t.skip ? { reason: t.skip } : {}), ...(t.error ? { message: t.error.message } : {}) });
      }
      if (t.error) {
        failed++;
        if (!dryRun) emit({ event: 'error', ...ref(t), code: t.error.code, message: t.error.message, attempts: 0, retried: false });
      } else if (t.skip) {
        skipped++;
        if (t.skip === 'journal') journal?.keep(t.kind, t.src, t.dst);
        if (!dryRun) emit({ event: 'skip', ...ref(t), reason: t.skip, message: SKIP_TEXT[t.skip] });
      } else {
        todo.push(t);
        progress.filesTotal++;
        progress.bytesTotal += t.size;
      }
    }
    if (dryRun || (todo.length === 0 && plan.remoteDirs.length === 0 && plan.localDirs.length === 0)) return;

    // Small files travel in bundles, many to a stream, where the server offers them (bundles.ts); the others one
    // by one, larger first, so the long transfers overlap the many small ones rather than trail them.
    const offersBundles = options.bundles !== false && (await session.get().then((c) => c.bundles, () => false));

    // Folders first, once each: the deepest missing remote ones (with parents), the local ones. A failure is not
    // reported for a folder that files go into (their uploads fail with the reason), only for one that stays
    // empty (nothing else would say it is missing). With bundles, the server makes the folders its files go
    // into as it stores them (each upload asks for its parents): only the empty ones are made here.
    const filled = new Set(todo.filter((t) => t.kind === 'put').flatMap((t) => ancestors(t.dst)));
    await Promise.all(
      plan.remoteDirs
        .filter((dir) => !(offersBundles && filled.has(dir)))
        .map(async (dir) => {
          const r = await limiter(() => attempt(null, (c) => c.mkdir(dir, true))).catch(() => null);
          if (r && !r.ok && !filled.has(dir)) {
            failed++;
            emit({ event: 'error', op: ops[0]?.index ?? 0, kind: 'put', to: dir, code: r.failure.code, message: `Cannot make the folder '${dir}': ${r.failure.message}`, attempts: r.attempts, retried: r.attempts > 1 });
          }
        }),
    );
    for (const dir of plan.localDirs) await mkdir(dir, { recursive: true }).catch(() => {});

    const bundled = offersBundles ? todo.filter(bundleable) : [];
    const inBundles = new Set(bundled);
    const queue = todo.filter((t) => !inBundles.has(t)).sort((a, b) => b.size - a.size);
    const alone = (t: FileTask, unsure = false): Promise<void> => {
      if (!interrupted) return transfer(t, ref(t), unsure);
      notRun++; // Ctrl-C: what has not started does not start
      return Promise.resolve();
    };
    await Promise.all([
      // At most `concurrency` in flight; p-map takes the next file only as one finishes.
      pMap(queue, (t) => alone(t), { concurrency: options.concurrency }),
      runBundles(groupBundles(bundled), bundleRun(alone, ref)),
    ]);
  }

  /** How bundles report their files into this run (see bundles.ts). */
  function bundleRun(alone: (t: FileTask, unsure?: boolean) => Promise<void>, ref: (t: FileTask) => FileRef): BundleRun {
    return {
      client: () => session.get(),
      done: (t, file, ms) => {
        progress.fileDone(file.size);
        journal?.recordFile({ kind: t.kind, src: t.src, dst: t.dst, size: file.size, mtime: t.mtime, sha256: file.sha256 });
        emit({ event: 'done', ...ref(t), size: file.size, sha256: file.sha256, resumedFrom: 0, wireBytes: file.size, encoding: null, ms, attempts: 1 });
      },
      failed: async (t, err) => {
        const f = classify(err);
        // Too large for a bundle now (it grew), or worth another try: on its own, with its retries.
        if (err instanceof TooLargeForBundle || f.retryable) return alone(t);
        if (f.code === 'exists' && t.onExists === 'skip') {
          skipped++;
          emit({ event: 'skip', ...ref(t), reason: 'exists', message: SKIP_TEXT.exists });
          return;
        }
        failed++;
        emit({ event: 'error', ...ref(t), code: f.code, message: f.message, attempts: 1, retried: false });
      },
      alone,
      progress: (label, to, bytes) => {
        const id = progress.begin(label, to, bytes);
        return (done) => (done === null ? progress.end(id, false) : progress.update(id, done));
      },
    };
  }

  /**
   * Moves one file on its own, with its retries. `unsure`: a bundle that held it went down before saying what
   * became of it, so an upload may find it already there: with the same bytes, that is its success.
   */
  async function transfer(t: FileTask, r: FileRef, unsure = false): Promise<void> {
    const id = progress.begin(r.from, r.to ?? '', t.size);
    const started = Date.now();
    let finished = false;
    try {
      const result = await attempt(r, async (client) => {
        const common = {
          onProgress: (p: { done: number }) => progress.update(id, p.done),
          ...(t.expectSha256 ? { expectSha256: t.expectSha256 } : {}),
        };
        if (t.kind === 'put') return client.upload(t.src, t.dst, { overwrite: t.replace, parents: true, ...common });
        return client.download(t.src, t.dst, { overwrite: t.replace, ...common });
      });
      if (result.ok) {
        finished = true;
        const v = result.value;
        resumedBytes += v.resumedFrom;
        journal?.recordFile({ kind: t.kind, src: t.src, dst: t.dst, size: v.size, mtime: t.mtime, sha256: v.sha256 });
        emit({ event: 'done', ...r, size: v.size, sha256: v.sha256, resumedFrom: v.resumedFrom, wireBytes: v.wireBytes, encoding: v.encoding, ms: Date.now() - started, attempts: result.attempts });
        return;
      }
      const f = result.failure;
      if (f.code === 'exists' && unsure && t.kind === 'put') {
        const same = await attempt(null, (c) => Promise.all([c.statHash(t.dst), hashLocalFile(t.src)])).catch(() => null);
        if (same?.ok && same.value[0].entry.size === t.size && same.value[0].sha256 === same.value[1]) {
          finished = true;
          journal?.recordFile({ kind: t.kind, src: t.src, dst: t.dst, size: t.size, mtime: t.mtime, sha256: same.value[1] });
          emit({ event: 'done', ...r, size: t.size, sha256: same.value[1], resumedFrom: 0, wireBytes: 0, encoding: null, ms: Date.now() - started, attempts: result.attempts });
          return;
        }
      }
      if (f.code === 'exists' && t.onExists === 'skip') {
        skipped++;
        emit({ event: 'skip', ...r, reason: 'exists', message: SKIP_TEXT.exists });
        return;
      }
      failed++;
      emit({ event: 'error', ...r, code: f.code, message: f.message, attempts: result.attempts, retried: result.attempts > 1 });
    } catch (err) {
      if (!(err instanceof Interrupted)) throw err;
      notRun++;
    } finally {
      progress.end(id, finished);
    }
  }

  async function runSimple(op: Exclude<Op, { kind: 'put' | 'get' }>): Promise<void> {
    const key = opKey(op);
    const r: FileRef = op.kind === 'rename' ? { op: op.index, kind: op.kind, from: op.from, to: op.to } : { op: op.index, kind: op.kind, from: op.path };
    const skip = (reason: SkipReason) => {
      skipped++;
      if (dryRun) emit({ event: 'plan', ...r, action: 'skip', reason });
      else emit({ event: 'skip', ...r, reason, message: SKIP_TEXT[reason] });
    };
    const fail = (code: string, message: string, attempts: number) => {
      failed++;
      if (dryRun) emit({ event: 'plan', ...r, action: 'fail', message });
      else emit({ event: 'error', ...r, code, message, attempts, retried: attempts > 1 });
    };
    if (journal?.opDone(key)) return skip('journal');
    if (dryRun) {
      // Look, do not touch: what would happen against the server as it is now.
      try {
        if (op.kind === 'rename') {
          const [from, to] = await Promise.all([remote.stat(op.from), remote.stat(op.to)]);
          if (!from) return fail('not_found', `'${op.from}' does not exist on the server (now)`, 0);
          if (to && op.overwrite === 'skip') return skip('exists');
          if (to && op.overwrite === 'fail') return fail('exists', `'${op.to}' exists (overwrite: fail)`, 0);
        } else if (op.kind === 'delete') {
          if (!(await remote.stat(op.path))) return op.missingOk ? skip('missing') : fail('not_found', `'${op.path}' does not exist on the server (now)`, 0);
        }
      } catch (err) {
        if (err instanceof Interrupted) throw err;
      }
      emit({ event: 'plan', ...r, action: 'run' });
      return;
    }
    const started = Date.now();
    let tries = 0;
    const result = await limiter(() =>
      attempt(r, async (client): Promise<SkipReason | null> => {
        tries++;
        try {
          if (op.kind === 'mkdir') await client.mkdir(op.path, true);
          else if (op.kind === 'delete') await client.delete(op.path);
          else {
            if (op.overwrite === 'skip' && (await client.exists(op.to))) return 'exists';
            await client.rename(op.from, op.to, op.overwrite === 'replace');
          }
          return null;
        } catch (err) {
          if (err instanceof FerryError && err.code === 'not_found') {
            if (op.kind === 'delete' && op.missingOk) return 'missing';
            // A retry after a lost connection: the attempt before may have done it, and only its reply was lost.
            if (op.kind === 'delete' && tries > 1) return null;
            if (op.kind === 'rename' && tries > 1 && (await client.exists(op.to))) return null;
          }
          throw err;
        }
      }),
    );
    if (result.ok) {
      if (result.value) return skip(result.value);
      journal?.recordOp(key);
      emit({ event: 'done', ...r, ms: Date.now() - started, attempts: result.attempts });
      return;
    }
    fail(result.failure.code, result.failure.message, result.attempts);
  }
}
