import type { BundleMessageBody, BundleReply, Job, Reply, SmallCommit, SmallCommitResult, SmallRead, SmallReadResult, WorkerMessage } from './jobs.ts';
import { startWorker } from './worker-start.ts';

export type { SmallCommit, SmallCommitResult, SmallRead, SmallReadResult } from './jobs.ts';

/**
 * Small uploads committed, and small downloads read, off the event loop in batches. Each file-system call made
 * through Node's thread pool costs a wake-up of a pool thread and one of the event loop (~40 µs on the machines
 * measured, most of it futex and scheduler work); a small upload used to take about fourteen of them. Here the
 * whole commit of a small upload runs as plain synchronous calls in a worker thread (worker.ts), and the jobs
 * asked for during one turn of the event loop (many pipelined requests, from every connection) travel to the
 * worker together and come back together: one round trip per batch, one fsync per directory per batch. The
 * event loop never makes these calls itself, so a slow disk still stalls no client.
 */

type Pending = { resolve: (r: SmallCommitResult | SmallReadResult) => void; reject: (e: Error) => void };
interface Queued {
  id: number;
  job: Job;
  pending: Pending;
  /** Memory the job hands over (its buffers travel without a copy and become unusable on this side). */
  transfer: readonly ArrayBuffer[];
}

/** A bundle's line to the worker that stores it (see `SmallCommits.bundle`). */
export interface BundleLane {
  /** Sends a message about the bundle (`transfer`: memory handed over without a copy). */
  send(message: BundleMessageBody, transfer?: readonly ArrayBuffer[]): void;
  /** The bundle is over: its worker no longer needs to stay up for it. */
  close(): void;
}

interface BundleListener {
  reply(r: BundleReply): void;
  gone(err: Error): void;
}

/** One worker thread and the jobs waiting for it. */
class Lane {
  readonly pending = new Map<number, Pending>();
  /** Bundles stored by this worker. */
  readonly bundles = new Map<number, BundleListener>();
  readonly worker;
  /** When this lane last finished a batch, or became busy, or came up (performance.now()). */
  progress = 0;
  /** The worker is up (starting one takes tens of milliseconds: a lane starting is not a stuck lane). */
  ready = false;

  constructor(onGone: (lane: Lane) => void) {
    // A small heap: the worker holds one batch's buffers (off-heap) and a few objects at a time.
    this.worker = startWorker({ resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
    this.worker.unref();
    this.worker.on('message', (message: WorkerMessage) => {
      this.progress = performance.now();
      if ('ready' in message) {
        this.ready = true;
        return;
      }
      if ('bundle' in message) {
        this.bundles.get(message.bundle)?.reply(message);
        return;
      }
      for (const { id, ...result } of message.replies) {
        const waiting = this.pending.get(id);
        if (waiting === undefined) continue;
        this.pending.delete(id);
        waiting.resolve(result as SmallCommitResult | SmallReadResult);
      }
      this.unrefIfIdle();
    });
    const gone = (err: Error): void => {
      onGone(this);
      for (const waiting of this.pending.values()) waiting.reject(err);
      this.pending.clear();
      for (const bundle of this.bundles.values()) bundle.gone(err);
      this.bundles.clear();
    };
    this.worker.on('error', gone);
    this.worker.on('exit', (code) => gone(new Error(`The commit worker stopped (exit code ${code})`)));
  }

  /** Jobs under way keep the process alive; an idle worker does not. */
  unrefIfIdle(): void {
    if (this.pending.size === 0 && this.bundles.size === 0) this.worker.unref();
  }

  send(batch: readonly Queued[]): void {
    if (this.pending.size === 0) this.progress = performance.now();
    for (const { id, pending } of batch) this.pending.set(id, pending);
    this.worker.ref(); // jobs under way keep the process alive; an idle worker does not
    const transfer = batch.flatMap((q) => q.transfer);
    this.worker.postMessage({ jobs: batch.map(({ id, job }) => ({ id, ...job })) }, transfer);
  }
}

/**
 * A lane that has made no progress for this long while jobs wait is stuck on the disk (see SmallCommits).
 */
const SLOW_MS = 20;

/**
 * Worker threads ("lanes") for the jobs: one to begin with, started on first use. Jobs asked for during one turn
 * of the event loop (the commits and reads of many pipelined requests, of every connection) go to a lane
 * together, as one message, and come back together: one wake-up of each thread per batch instead of per file.
 * On a disk where commits are quick (~100 µs on tmpfs or an SSD) one lane keeps up, and more only cost start-up
 * and switching (measured on 2 cores, 2,000 x 4 KiB with 8 in flight: one lane 2.2 s of server CPU, four
 * 3.2 s). Where fsync is slow, a lane that has made no progress for SLOW_MS while jobs wait is stuck on the
 * disk: then another lane starts (up to `maxLanes`, as many as the thread pool has), so that one slow fsync
 * does not hold up every other user's commit.
 */
export class SmallCommits {
  #lanes: Lane[] = [];
  #next = 1;
  /** Jobs asked for in this turn of the event loop, sent together when it ends. */
  #outbox: Queued[] = [];

  constructor(private readonly maxLanes = 4) {}

  /**
   * Commits a small upload. `transfer`: memory of its chunks handed to the worker without a copy (whole
   * ArrayBuffers the caller owns alone; after this call they are detached here). Otherwise the chunks are copied
   * — each with the whole ArrayBuffer under it, which for a slice of Node's buffer pool is 8 KiB.
   */
  run(commit: SmallCommit, transfer: readonly ArrayBuffer[] = []): Promise<SmallCommitResult> {
    return this.#submit(commit, transfer) as Promise<SmallCommitResult>;
  }

  /** Reads a small file whole, with the checks of `openRead`, in one hop (see the worker's `read`). */
  read(job: SmallRead): Promise<SmallReadResult> {
    return this.#submit({ op: 'read', ...job }) as Promise<SmallReadResult>;
  }

  #submit(job: Job, transfer: readonly ArrayBuffer[] = []): Promise<SmallCommitResult | SmallReadResult> {
    return new Promise((resolve, reject) => {
      if (this.#outbox.length === 0) setImmediate(() => this.#flush());
      this.#outbox.push({ id: this.#next++, job, pending: { resolve, reject }, transfer });
    });
  }

  #flush(): void {
    const batch = this.#outbox;
    this.#outbox = [];
    if (batch.length > 0) this.#lane().send(batch);
  }

  #lane(): Lane {
    const now = performance.now();
    let lane = this.#lanes.find((l) => l.pending.size === 0);
    const stuck = (l: Lane) => l.ready && now - l.progress > SLOW_MS;
    if (lane === undefined && this.#lanes.length < this.maxLanes && this.#lanes.every(stuck)) {
      lane = new Lane((gone) => {
        this.#lanes = this.#lanes.filter((l) => l !== gone);
      });
      this.#lanes.push(lane);
    }
    return lane ?? this.#lanes.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  /**
   * A line to one worker for a bundle: its messages all go to that worker, in order (it keeps the bundle's
   * state), and its replies come to `reply`; `gone` if the worker stops.
   */
  bundle(reply: (r: BundleReply) => void, gone: (err: Error) => void): BundleLane {
    const lane = this.#lane();
    const id = this.#next++;
    lane.bundles.set(id, { reply, gone });
    lane.worker.ref();
    return {
      send: (message, transfer = []) => lane.worker.postMessage({ ...message, bundle: id }, transfer),
      close: () => {
        lane.bundles.delete(id);
        lane.unrefIfIdle();
      },
    };
  }

  /** Stops the workers (jobs under way are rejected). */
  async close(): Promise<void> {
    const lanes = this.#lanes;
    this.#lanes = [];
    const waiting = this.#outbox;
    this.#outbox = [];
    for (const { pending } of waiting) pending.reject(new Error('The commit workers are stopped'));
    await Promise.all(lanes.map((l) => l.worker.terminate()));
  }
}

let shared: SmallCommits | undefined;

/**
 * The process's commit workers, shared by every driver (and so every data directory) in it, as the thread pool
 * is: started on first use, idle workers do not keep the process alive.
 */
export function sharedCommits(): SmallCommits {
  shared ??= new SmallCommits();
  return shared;
}
