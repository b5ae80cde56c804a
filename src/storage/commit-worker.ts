import { Worker } from 'node:worker_threads';

/**
 * Small uploads committed, and small downloads read, off the event loop in batches. Each file-system call made
 * through Node's thread pool costs a wake-up of a pool thread and one of the event loop (~40 µs on the machines
 * measured, most of it futex and scheduler work); a small upload used to take about fourteen of them. Here the
 * whole commit of a small upload — create the partial, write it, set its time, fsync, close, open its directory
 * and check it is inside the home, check the target, rename (or link without replacing), fsync the directory —
 * runs as plain synchronous calls in a worker thread, and the jobs asked for during one turn of the event loop
 * (many pipelined requests, from every connection) travel to the worker together and come back together: one
 * round trip per batch, one fsync per directory per batch. The event loop never makes these calls itself, so a
 * slow disk still stalls no client.
 *
 * Small downloads the same way: `read` resolves the path, checks it is inside the home, opens its directory and
 * checks that, opens the name there without following it, and reads the file whole if it is small (otherwise
 * says so, and the caller opens it to stream it).
 *
 * The checks are the ones `LocalStorage` makes in pinned mode (see local.ts): the directory is opened
 * (`O_DIRECTORY`), `/proc/self/fd/N` must name a place inside the home, the target is looked up through that
 * descriptor and never followed, a symlink there counts only if it resolves inside the home.
 *
 * The worker's code is a plain JavaScript string, run with `eval: true`, so that it works the same from source
 * (tsx), from the bundle inside the single executable and on Deno, with nothing to resolve on disk.
 */
const SOURCE = String.raw`
(async () => {
  const load = async (m) => (typeof require === 'function' ? require(m) : await import(m));
  const fs = await load('node:fs');
  const { parentPort } = await load('node:worker_threads');
  const C = fs.constants;
  const realpath = fs.realpathSync.native ?? fs.realpathSync;
  const inside = (p, d) => p === d || p.startsWith(d.endsWith('/') ? d : d + '/');
  const missing = (e) => e && e.code === 'ENOENT';

  // The partial: created (never through a link), written, timed, made durable. Returns its mtime (ms).
  const write = (m) => {
    const fd = fs.openSync(m.partial, C.O_WRONLY | C.O_CREAT | C.O_TRUNC | C.O_NOFOLLOW, 0o600);
    try {
      let position = 0;
      for (const chunk of m.chunks) {
        for (let done = 0; done < chunk.length; ) {
          const n = fs.writeSync(fd, chunk, done, chunk.length - done, position);
          if (n === 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
          done += n;
          position += n;
        }
      }
      if (m.mtime !== null) fs.futimesSync(fd, new Date(), (Math.floor(m.mtime) + 0.001) / 1000); // as utimeSeconds (fs/time.ts)
      fs.fsyncSync(fd);
      return m.mtime !== null ? m.mtime : fs.fstatSync(fd).mtimeMs;
    } finally {
      fs.closeSync(fd);
    }
  };

  // Into the opened, checked directory. Returns null when placed, or why it was refused. The directory's fsync
  // is left to the end of the batch (one per directory however many files went into it): the directory stays
  // open in \`dirs\` (its real path -> descriptor) and \`m.syncDir\` names it.
  const place = (m, dirs) => {
    const dfd = fs.openSync(m.dir, C.O_RDONLY | C.O_DIRECTORY | C.O_NONBLOCK);
    let kept = false;
    try {
      const at = '/proc/self/fd/' + dfd;
      const real = fs.readlinkSync(at);
      if (!inside(real, m.home)) return 'leaves';
      const target = at + '/' + m.name;
      let info = null;
      try {
        info = fs.lstatSync(target);
      } catch (e) {
        if (!missing(e)) throw e;
      }
      if (info !== null) {
        let kind = info;
        if (info.isSymbolicLink()) {
          let real = null;
          try {
            real = realpath(target);
          } catch {}
          if (real === null || !inside(real, m.home)) return 'leaves';
          try {
            kind = fs.statSync(target);
          } catch {
            kind = null;
          }
        }
        if (kind !== null && kind.isDirectory()) return 'is_a_directory';
        if (!m.overwrite) return 'exists';
      }
      if (m.overwrite) {
        fs.renameSync(m.partial, target);
      } else {
        try {
          fs.linkSync(m.partial, target);
          fs.unlinkSync(m.partial);
        } catch (e) {
          if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK'].includes(e && e.code)) throw e;
          let there = true;
          try {
            fs.lstatSync(target);
          } catch (e2) {
            if (!missing(e2)) throw e2;
            there = false;
          }
          if (there) return 'exists';
          fs.renameSync(m.partial, target);
        }
      }
      m.syncDir = real;
      if (!dirs.has(real)) {
        dirs.set(real, dfd);
        kept = true;
      }
      return null;
    } finally {
      if (!kept) fs.closeSync(dfd);
    }
  };

  // A small file read whole in one hop: resolved and checked as LocalStorage.openRead does (realpath inside the
  // home, its directory opened and checked through /proc/self/fd, the name opened there without following it).
  const read = (m) => {
    const real = realpath(m.path);
    if (!inside(real, m.home)) return { refused: 'leaves' };
    if (real === m.home) return { refused: 'is_a_directory' };
    const slash = real.lastIndexOf('/');
    const dfd = fs.openSync(real.slice(0, slash) || '/', C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_NONBLOCK);
    let fd;
    try {
      const at = '/proc/self/fd/' + dfd;
      if (!inside(fs.readlinkSync(at), m.home)) return { refused: 'leaves' };
      fd = fs.openSync(at + '/' + real.slice(slash + 1), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } finally {
      fs.closeSync(dfd);
    }
    try {
      const info = fs.fstatSync(fd);
      if (info.isDirectory()) return { refused: 'is_a_directory' };
      if (!info.isFile()) return { refused: 'not_a_file' };
      if (info.size > m.max) return { large: true };
      const bytes = Buffer.allocUnsafeSlow(info.size);
      let got = 0;
      while (got < info.size) {
        const n = fs.readSync(fd, bytes, got, info.size - got, got);
        if (n === 0) break;
        got += n;
      }
      return { size: got, mtimeMs: info.mtimeMs, bytes: bytes.subarray(0, got) };
    } finally {
      fs.closeSync(fd);
    }
  };

  const failure = (e) => ({ code: e && typeof e.code === 'string' ? e.code : undefined, message: String((e && e.message) || e) });

  const commit = (m, dirs) => {
    let stage = 'write';
    let mtimeMs;
    try {
      mtimeMs = write(m);
      stage = 'place';
      const refused = place(m, dirs);
      return refused === null ? { id: m.id, ok: true, mtimeMs } : { id: m.id, ok: false, stage, refused, mtimeMs };
    } catch (e) {
      if (stage === 'write') {
        try {
          fs.unlinkSync(m.partial);
        } catch {}
      }
      return { id: m.id, ok: false, stage, ...failure(e), mtimeMs };
    }
  };

  // A batch of jobs: their replies go back together, in one message, after the fsync of each directory that
  // received a file (a reply says "placed" only once the directory entry is durable). A long batch (a slow
  // disk) sends what it has every few milliseconds, so that quick jobs do not wait for the slowest.
  parentPort.on('message', ({ jobs }) => {
    let replies = [];
    let done = [];
    let dirs = new Map();
    let started = performance.now();
    const send = () => {
      const failed = new Map();
      for (const [real, dfd] of dirs) {
        try {
          fs.fsyncSync(dfd);
        } catch (e) {
          failed.set(real, failure(e));
        }
        try {
          fs.closeSync(dfd);
        } catch {}
      }
      for (let i = 0; i < replies.length; i++) {
        const why = done[i].syncDir !== undefined ? failed.get(done[i].syncDir) : undefined;
        if (why !== undefined) replies[i] = { id: replies[i].id, ok: false, stage: 'place', ...why, mtimeMs: replies[i].mtimeMs };
      }
      const transfer = [];
      for (const r of replies) if (r.bytes) transfer.push(r.bytes.buffer);
      parentPort.postMessage({ replies }, transfer);
      replies = [];
      done = [];
      dirs = new Map();
      started = performance.now();
    };
    for (const m of jobs) {
      if (m.op === 'read') {
        try {
          replies.push({ id: m.id, ok: true, ...read(m) });
        } catch (e) {
          replies.push({ id: m.id, ok: false, ...failure(e) });
        }
      } else {
        replies.push(commit(m, dirs));
      }
      done.push(m);
      if (performance.now() - started > 5) send();
    }
    if (replies.length > 0) send();
  });
  parentPort.postMessage({ ready: true });
})();
`;

export interface SmallCommit {
  /** Absolute path of the partial file to create (it must not exist as a link; it is replaced if a file). */
  partial: string;
  /** The whole content. */
  chunks: Uint8Array[];
  /** Modification time to set (ms since epoch), or null to keep the time of writing. */
  mtime: number | null;
  /** Absolute path of the target's directory, as the home joined with the virtual parents (links followed). */
  dir: string;
  /** The real path of the home: the opened directory must be inside it. */
  home: string;
  /** The target's name in `dir`. */
  name: string;
  overwrite: boolean;
}

export type SmallCommitResult =
  | { ok: true; mtimeMs: number }
  /** `write`: the partial could not be written (it has been removed); `place`: it is written, not placed. */
  | { ok: false; stage: 'write' | 'place'; refused?: 'leaves' | 'is_a_directory' | 'exists'; code?: string; message?: string; mtimeMs?: number };

export interface SmallRead {
  /** Absolute path: the home joined with the virtual path (links followed, then checked). */
  path: string;
  /** The real path of the home. */
  home: string;
  /** Files larger than this are not read: the answer is `large`. */
  max: number;
}

export type SmallReadResult =
  | { ok: true; size: number; mtimeMs: number; bytes: Uint8Array; refused?: undefined; large?: undefined }
  | { ok: true; large: true; refused?: undefined }
  | { ok: true; refused: 'leaves' | 'is_a_directory' | 'not_a_file'; large?: undefined }
  | { ok: false; code?: string; message?: string };

type Pending = { resolve: (r: SmallCommitResult | SmallReadResult) => void; reject: (e: Error) => void };
type Reply = (SmallCommitResult | SmallReadResult) & { id: number };
interface Job {
  id: number;
  job: object;
  pending: Pending;
}

/** One worker thread and the jobs waiting for it. */
class Lane {
  readonly pending = new Map<number, Pending>();
  readonly worker: Worker;
  /** When this lane last finished a batch, or became busy, or came up (performance.now()). */
  progress = 0;
  /** The worker is up (starting one takes tens of milliseconds: a lane starting is not a stuck lane). */
  ready = false;

  constructor(onGone: (lane: Lane) => void) {
    // A small heap: the worker holds one batch's buffers (off-heap) and a few objects at a time.
    this.worker = new Worker(SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
    this.worker.unref();
    this.worker.on('message', (message: { replies: Reply[] } | { ready: true }) => {
      this.progress = performance.now();
      if ('ready' in message) {
        this.ready = true;
        return;
      }
      for (const { id, ...result } of message.replies) {
        const waiting = this.pending.get(id);
        if (waiting === undefined) continue;
        this.pending.delete(id);
        waiting.resolve(result as SmallCommitResult | SmallReadResult);
      }
      if (this.pending.size === 0) this.worker.unref();
    });
    const gone = (err: Error): void => {
      onGone(this);
      for (const waiting of this.pending.values()) waiting.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', gone);
    this.worker.on('exit', (code) => gone(new Error(`The commit worker stopped (exit code ${code})`)));
  }

  send(batch: readonly Job[]): void {
    if (this.pending.size === 0) this.progress = performance.now();
    for (const { id, pending } of batch) this.pending.set(id, pending);
    this.worker.ref(); // jobs under way keep the process alive; an idle worker does not
    this.worker.postMessage({ jobs: batch.map(({ id, job }) => ({ id, ...job })) });
  }
}

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
const SLOW_MS = 20;

export class SmallCommits {
  #lanes: Lane[] = [];
  #next = 1;
  /** Jobs asked for in this turn of the event loop, sent together when it ends. */
  #outbox: Job[] = [];

  constructor(private readonly maxLanes = 4) {}

  run(commit: SmallCommit): Promise<SmallCommitResult> {
    return this.#submit(commit) as Promise<SmallCommitResult>;
  }

  /** Reads a small file whole, with the checks of `openRead`, in one hop (see the worker's `read`). */
  read(job: SmallRead): Promise<SmallReadResult> {
    return this.#submit({ op: 'read', ...job }) as Promise<SmallReadResult>;
  }

  #submit(job: object): Promise<SmallCommitResult | SmallReadResult> {
    return new Promise((resolve, reject) => {
      if (this.#outbox.length === 0) setImmediate(() => this.#flush());
      this.#outbox.push({ id: this.#next++, job, pending: { resolve, reject } });
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
