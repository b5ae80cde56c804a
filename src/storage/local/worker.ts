/**
 * The commit worker: the code that runs in the worker threads of lanes.ts. Every call here is synchronous — that
 * is the point: the whole commit of a small upload (create the partial, write it, set its time, fsync, close,
 * open its directory and check it is inside the home, check the target, rename or place without replacing,
 * fsync the directory) costs one hop between threads instead of one thread-pool round trip per call.
 *
 * The checks are the ones the event loop makes in pinned mode (home.ts), in the same order, decided by the
 * same functions (confine.ts): the directory is opened (`O_DIRECTORY`), `/proc/self/fd/N` must name a place
 * inside the home, the target is looked up through that descriptor and never followed, a symlink there counts
 * only if it resolves inside the home.
 *
 * A real module: the source (tsx, Deno) starts it from its file, the single executable from the bundle of it
 * that the build embeds (worker-start.ts).
 */
import { parentPort } from 'node:worker_threads';
import type { BundleMessage, Job, JobMessage, Reply } from './jobs.ts';
import { WorkerBundle, WorkerBundleRead } from './worker-bundle.ts';
import { WorkerHash } from './worker-hash.ts';
import { commit, failure, PlacedDirs, read } from './sync.ts';
/**
 * A batch of jobs: their replies go back together, in one message, after the fsync of each directory that
 * received a file (a reply says "placed" only once the directory entry is durable). A long batch (a slow
 * disk) sends what it has every few milliseconds, so that quick jobs do not wait for the slowest.
 */
function runBatch(jobs: JobMessage['jobs']): void {
  let replies: Reply[] = [];
  let done: Job[] = [];
  const dirs = new PlacedDirs();
  let started = performance.now();
  const send = (): void => {
    const failed = dirs.finish();
    for (let i = 0; i < replies.length; i++) {
      const job = done[i] as Job;
      const why = job.op === 'read' ? undefined : failed.get(job);
      const r = replies[i] as Reply;
      if (why !== undefined) replies[i] = { id: r.id, ok: false, stage: 'place', ...why, ...('mtimeMs' in r && r.mtimeMs !== undefined ? { mtimeMs: r.mtimeMs } : {}) };
    }
    const transfer: ArrayBuffer[] = [];
    for (const r of replies) if ('bytes' in r && r.bytes) transfer.push(r.bytes.buffer as ArrayBuffer);
    parentPort?.postMessage({ replies }, transfer);
    replies = [];
    done = [];
    started = performance.now();
  };
  for (const { id, ...job } of jobs) {
    if (job.op === 'read') {
      try {
        replies.push({ id, ...read(job) });
      } catch (e) {
        replies.push({ id, ok: false, ...failure(e) });
      }
    } else {
      replies.push({ id, ...commit(job, dirs) });
    }
    done.push(job);
    if (performance.now() - started > 5) send();
  }
  if (replies.length > 0) send();
}

/** The bundles this worker is storing, by id. */
const bundles = new Map<number, WorkerBundle | WorkerBundleRead>();
/** The running hashes it keeps, by id (worker-hash.ts). */
const hashes = new Map<number, WorkerHash>();

function bundleMessage(m: BundleMessage): void {
  if ('hash' in m) {
    hashes.set(m.bundle, new WorkerHash(m.bundle, m.hash.state));
    return;
  }
  const hash = hashes.get(m.bundle);
  if (hash !== undefined) {
    if ('chunks' in m) hash.take(m.seq, m.chunks, (reply) => parentPort?.postMessage(reply));
    else hashes.delete(m.bundle); // its end or abort
    return;
  }
  if ('open' in m) {
    bundles.set(m.bundle, new WorkerBundle(m.bundle, m.open));
    return;
  }
  if ('read' in m) {
    bundles.set(m.bundle, new WorkerBundleRead(m.bundle, m.read));
    return;
  }
  const bundle = bundles.get(m.bundle);
  if ('give' in m) {
    if (bundle instanceof WorkerBundleRead) bundle.give(m.give);
    return;
  }
  if ('abort' in m || bundle === undefined) {
    bundles.delete(m.bundle);
    if ('seq' in m) parentPort?.postMessage({ bundle: m.bundle, seq: m.seq, outcomes: [], ...(bundle === undefined && !('abort' in m) ? { error: { code: 'internal', message: 'No such bundle' } } : {}) });
    return;
  }
  if ('end' in m) {
    bundles.delete(m.bundle);
    parentPort?.postMessage(bundle.end(m.seq));
    return;
  }
  const reply = bundle.take(m.seq, m.chunks);
  parentPort?.postMessage(reply, (reply.pieces ?? []).map((p) => p.buffer as ArrayBuffer));
}

if (parentPort) {
  parentPort.on('message', (m: JobMessage | BundleMessage) => ('jobs' in m ? runBatch(m.jobs) : bundleMessage(m)));
  parentPort.postMessage({ ready: true });
}
