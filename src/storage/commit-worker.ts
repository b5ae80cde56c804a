import { Worker } from 'node:worker_threads';

/**
 * Small uploads committed in one hop. Each file-system call made through Node's thread pool costs a wake-up of
 * a pool thread and one of the event loop (~40 µs on the machines measured, most of it futex and scheduler work);
 * a small upload used to take about fourteen of them. Here the whole commit of a small upload — create the
 * partial, write it, set its time, fsync, close, open its directory and check it is inside the home, check the
 * target, rename (or link without replacing), fsync the directory — runs as plain synchronous calls in a worker
 * thread: one round trip. The event loop never makes these calls itself, so a slow disk still stalls no client.
 *
 * Small downloads the same way: `read` resolves the path, checks it is inside the home, opens its directory and
 * checks that, opens the name there without following it, and reads the file whole if it is small (otherwise
 * says so, and the caller opens it to stream it): one hop instead of eight pool calls.
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
      if (m.mtime !== null) fs.futimesSync(fd, new Date(), new Date(m.mtime));
      fs.fsyncSync(fd);
      return m.mtime !== null ? m.mtime : fs.fstatSync(fd).mtimeMs;
    } finally {
      fs.closeSync(fd);
    }
  };

  // Into the opened, checked directory. Returns null when placed, or why it was refused.
  const place = (m) => {
    const dfd = fs.openSync(m.dir, C.O_RDONLY | C.O_DIRECTORY | C.O_NONBLOCK);
    try {
      const at = '/proc/self/fd/' + dfd;
      if (!inside(fs.readlinkSync(at), m.home)) return 'leaves';
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
      fs.fsyncSync(dfd);
      return null;
    } finally {
      fs.closeSync(dfd);
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

  parentPort.on('message', (m) => {
    if (m.op === 'read') {
      let reply;
      try {
        reply = { id: m.id, ok: true, ...read(m) };
      } catch (e) {
        reply = { id: m.id, ok: false, code: e && typeof e.code === 'string' ? e.code : undefined, message: String((e && e.message) || e) };
      }
      parentPort.postMessage(reply, reply.bytes ? [reply.bytes.buffer] : []);
      return;
    }
    let stage = 'write';
    let mtimeMs;
    try {
      mtimeMs = write(m);
      stage = 'place';
      const refused = place(m);
      parentPort.postMessage(refused === null ? { id: m.id, ok: true, mtimeMs } : { id: m.id, ok: false, stage, refused, mtimeMs });
    } catch (e) {
      if (stage === 'write') {
        try {
          fs.unlinkSync(m.partial);
        } catch {}
      }
      const code = e && typeof e.code === 'string' ? e.code : undefined;
      parentPort.postMessage({ id: m.id, ok: false, stage, code, message: String((e && e.message) || e), mtimeMs });
    }
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

/** One worker thread and the commits waiting for it. */
class Lane {
  readonly pending = new Map<number, Pending>();
  readonly worker: Worker;
  /** When this lane last finished a commit, or became busy, or came up (performance.now()). */
  progress = 0;
  /** The worker is up (starting one takes tens of milliseconds: a lane starting is not a stuck lane). */
  ready = false;

  constructor(onGone: (lane: Lane) => void) {
    // A small heap: the worker holds one commit's buffers (off-heap) and a few objects at a time.
    this.worker = new Worker(SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
    this.worker.unref();
    this.worker.on('message', (reply: ((SmallCommitResult | SmallReadResult) & { id: number }) | { ready: true }) => {
      this.progress = performance.now();
      if ('ready' in reply) {
        this.ready = true;
        return;
      }
      const { id, ...result } = reply;
      const waiting = this.pending.get(id);
      if (waiting === undefined) return;
      this.pending.delete(id);
      if (this.pending.size === 0) this.worker.unref();
      waiting.resolve(result);
    });
    const gone = (err: Error): void => {
      onGone(this);
      for (const waiting of this.pending.values()) waiting.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', gone);
    this.worker.on('exit', (code) => gone(new Error(`The commit worker stopped (exit code ${code})`)));
  }

  send<R>(id: number, job: object): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (this.pending.size === 0) this.progress = performance.now();
      this.pending.set(id, { resolve: resolve as (r: SmallCommitResult | SmallReadResult) => void, reject });
      this.worker.ref(); // a job under way keeps the process alive; an idle worker does not
      this.worker.postMessage({ id, ...job });
    });
  }
}

/**
 * Worker threads ("lanes") for the commits: one to begin with, started on first use. On a disk where commits
 * are quick (each is ~100 µs on tmpfs or an SSD) one lane keeps up, and more only cost start-up and switching
 * (measured on 2 cores, 2,000 x 4 KiB with 8 in flight: one lane 2.2 s of server CPU, four 3.2 s). Where
 * fsync is slow, a lane that has made no progress for SLOW_MS while commits wait is stuck on the disk: then
 * another lane starts (up to `maxLanes`, as many as the thread pool has), so that one slow fsync does not hold
 * up every other user's commit.
 */
const SLOW_MS = 20;

export class SmallCommits {
  #lanes: Lane[] = [];
  #next = 1;

  constructor(private readonly maxLanes = 4) {}

  run(commit: SmallCommit): Promise<SmallCommitResult> {
    return this.#lane().send(this.#next++, commit);
  }

  /** Reads a small file whole, with the checks of `openRead`, in one hop (see the worker's `read`). */
  read(job: SmallRead): Promise<SmallReadResult> {
    return this.#lane().send(this.#next++, { op: 'read', ...job });
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

  /** Stops the workers (commits under way are rejected). */
  async close(): Promise<void> {
    const lanes = this.#lanes;
    this.#lanes = [];
    await Promise.all(lanes.map((l) => l.worker.terminate()));
  }
}
