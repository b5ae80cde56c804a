import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { FerryError } from '../../core/errors.ts';
import { quotePath } from '../../core/paths.ts';
import type { BundleOptions, BundleReadOptions, BundleSink } from '../storage.ts';
import { digestMismatch } from './commit.ts';
import { fail, refusal } from './errors.ts';
import type { Home } from './home.ts';
import type { BundleMessageBody, BundleOutcome, BundleReply, ReadOutcome } from './jobs.ts';
import type { BundleLane, SmallCommits } from './lanes.ts';
import type { Partials } from './partials.ts';

/** Bytes handed to the worker and not yet answered, at most: `write` waits beyond this. */
const IN_FLIGHT = 8 * 1024 * 1024;

interface ChannelHooks {
  /** The worker's answer to a message. */
  reply(r: BundleReply): void;
  /** The stream is malformed, or the worker failed (once). */
  broken(err: FerryError): void;
  /** Waited for before each write (the download bundle waits for the client here). */
  beforeWrite?(): Promise<void>;
}

/**
 * A bundle's line to its commit worker (worker-bundle.ts): the stream goes there as it comes, in pieces (each one
 * copy into memory the worker is handed without another), numbered; the worker answers each piece with what
 * became of the records it completed. The event loop does no work per file but report it.
 */
class Channel implements BundleSink {
  readonly #lane: BundleLane;
  readonly #hooks: ChannelHooks;
  /** The worker has the bundle. */
  readonly opened: Promise<void>;
  #seq = 0;
  #answered = 0;
  #inFlight = 0;
  readonly #sizes = new Map<number, number>();
  #waiters: Array<{ seq: number; resolve: () => void; reject: (e: Error) => void }> = [];
  #error: FerryError | null = null;
  #closed = false;
  #aborted = false;
  /** The worker holds names it has not read yet (a reply said `more`), and no message asking for them is out. */
  #more = false;

  constructor(commits: SmallCommits, open: Promise<BundleMessageBody>, hooks: ChannelHooks) {
    this.#hooks = hooks;
    this.#lane = commits.bundle(
      (r) => this.#reply(r),
      (err) => this.#fail(new FerryError('internal', `The commit worker stopped: ${err.message}`)),
    );
    this.opened = open.then((message) => this.#lane.send(message));
    this.opened.catch((err: unknown) => this.#fail(fail(err, 'open', 'a bundle')));
  }

  async write(chunks: readonly Buffer[]): Promise<void> {
    await this.#hooks.beforeWrite?.();
    await this.opened;
    if (this.#error) throw this.#error;
    let size = 0;
    for (const c of chunks) size += c.length;
    const piece = Buffer.allocUnsafeSlow(size);
    let at = 0;
    for (const c of chunks) at += c.copy(piece, at);
    const seq = ++this.#seq;
    this.#sizes.set(seq, size);
    this.#inFlight += size;
    this.#lane.send({ seq, chunks: [piece] }, [piece.buffer as ArrayBuffer]);
    if (this.#inFlight > IN_FLIGHT) await this.until(seq - 1);
  }

  /** Resolves once every message is answered and the worker holds nothing back (see `more`). */
  async settled(): Promise<void> {
    let seq = this.#seq;
    for (;;) {
      await this.until(seq);
      if (!this.#more && this.#seq === seq) return;
      seq = Math.max(this.#seq, seq + 1);
    }
  }

  async end(): Promise<void> {
    await this.opened;
    await this.settled();
    const seq = ++this.#seq;
    this.#lane.send({ seq, end: true });
    try {
      await this.until(seq);
    } finally {
      this.#close();
    }
  }

  abort(): void {
    if (this.#closed || this.#aborted) return;
    this.#aborted = true;
    // The pieces sent before are still answered (and reported); the worker's answer to this ends the bundle.
    void this.opened
      .then(() => {
        const seq = ++this.#seq;
        this.#lane.send({ seq, abort: true });
        return this.until(seq);
      })
      .catch(() => {})
      .finally(() => this.#close());
  }

  /** Resolves once the worker has answered message `seq` (and every one before it). */
  until(seq: number): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#answered >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ seq, resolve, reject }));
  }

  #reply(r: BundleReply): void {
    this.#hooks.reply(r);
    this.#answered = r.seq;
    this.#inFlight -= this.#sizes.get(r.seq) ?? 0;
    this.#sizes.delete(r.seq);
    if (r.error) return this.#fail(new FerryError(r.error.code === 'bad_message' ? 'bad_message' : 'internal', r.error.message));
    // Only the newest answer tells what the worker still holds (an older one's `more` was asked for since).
    if (r.seq === this.#seq) {
      this.#more = r.more === true;
      if (this.#more) void this.#pull();
    }
    const ready = this.#waiters.filter((w) => w.seq <= r.seq);
    this.#waiters = this.#waiters.filter((w) => w.seq > r.seq);
    for (const w of ready) w.resolve();
  }

  /** Hands memory back to the worker (pieces the transport has written); dropped once the bundle is over. */
  give(buffers: ArrayBuffer[]): void {
    if (this.#closed || this.#error) return;
    this.#lane.send({ give: buffers }, buffers);
  }

  /** Asks the worker for the names it held back, once the peer has caught up (an empty message). */
  async #pull(): Promise<void> {
    try {
      await this.#hooks.beforeWrite?.();
    } catch {
      // The wait ends with the connection; so does the bundle.
    }
    if (this.#closed || this.#error || !this.#more) return;
    const seq = ++this.#seq;
    this.#more = false;
    this.#lane.send({ seq, chunks: [] });
  }

  #fail(err: FerryError): void {
    if (this.#error === null) this.#hooks.broken(err);
    this.#error ??= err;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(this.#error);
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lane.close();
  }
}

/** The local driver's upload bundle (Storage.openBundle): decoded and stored by the worker. */
export function localBundle(home: Home, partials: Partials, commits: SmallCommits, options: BundleOptions): BundleSink {
  const open = Promise.all([home.real(), partials.ensure()]).then(([root]): BundleMessageBody => ({
    open: {
      home: root,
      partials: partials.dir,
      token: `b${randomBytes(8).toString('hex')}`,
      mayOverwrite: options.mayOverwrite,
      mayCreateParents: options.mayCreateParents,
      maxFile: options.maxFileBytes,
      maxHeader: options.maxHeader,
      maxBody: options.maxBody,
    },
  }));
  return new Channel(commits, open, {
    reply: (r) => {
      for (const outcome of r.outcomes) report(outcome, options);
    },
    broken: (err) => options.onBroken(err),
  });
}

/** The local driver's download bundle (Storage.openBundleRead): read, hashed and packed by the worker. */
export function localBundleRead(home: Home, commits: SmallCommits, options: BundleReadOptions): BundleSink {
  const open = home.real().then((root): BundleMessageBody => ({
    read: { home: root, maxFile: options.maxFileBytes, maxHeader: options.maxHeader, frame: options.frame },
  }));
  /** The transport took the last pieces without asking to wait. */
  let room = true;
  /** Pieces written by the transport, handed back to the worker together at the end of the turn. */
  let written: ArrayBuffer[] = [];
  const giveBack = (): void => {
    const buffers = written;
    written = [];
    channel.give(buffers);
  };
  const onWritten = (piece: Buffer): void => {
    if (written.length === 0) setImmediate(giveBack);
    written.push(piece.buffer as ArrayBuffer);
  };
  const channel = new Channel(commits, open, {
    reply: (r) => {
      const pieces = (r.pieces ?? []).map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      if (pieces.length > 0) room = options.send(pieces, onWritten) && room;
      for (const outcome of r.read ?? []) reportRead(outcome, options);
    },
    broken: (err) => options.onBroken(err),
    // The client is behind: no more names go to the worker (and no more files are read) until it catches up.
    beforeWrite: async () => {
      if (room) return;
      await options.drained();
      room = true;
    },
  });
  return channel;
}

function report(o: BundleOutcome, options: BundleOptions): void {
  const { index, path, size, overwrite } = o;
  const base = { index, path, size, overwriteAsked: overwrite };
  if (o.ok) {
    const name = path.slice(path.lastIndexOf('/') + 1);
    options.onResult({ ...base, sha256: o.sha256, entry: { name, type: 'file', size, mtime: Math.floor(o.mtimeMs) } });
    return;
  }
  options.onResult({ ...base, error: refusalOf(o, quotePath(path), options.maxFileBytes) });
}

function reportRead(o: ReadOutcome, options: BundleReadOptions): void {
  const { index, path } = o;
  if (o.ok) return options.onResult({ index, path, size: o.size, sha256: o.sha256 });
  const shown = quotePath(path);
  let error: FerryError;
  switch (o.refused) {
    case 'leaves':
    case 'is_a_directory':
    case 'not_a_file':
      error = refusal(o.refused, 'read', shown);
      break;
    case 'too_large':
      error = new FerryError('too_large', `${shown} is larger than a bundle carries (${options.maxFileBytes} bytes): get it on its own`);
      break;
    case 'invalid_path':
      error = new FerryError('invalid_path', o.message ?? `Invalid path ${shown}`);
      break;
    default:
      error = fail(Object.assign(new Error(o.message ?? ''), { code: o.code }), 'read', shown);
  }
  options.onResult({ index, path, error });
}

/** A record the worker did not store, in the protocol's words (as `putWhole` would have refused it). */
function refusalOf(o: Extract<BundleOutcome, { ok: false }>, shown: string, maxFile: number): FerryError {
  switch (o.refused) {
    case 'leaves':
    case 'is_a_directory':
    case 'exists':
      return refusal(o.refused, 'upload', shown);
    case 'too_large':
      return new FerryError('too_large', `${shown} is ${o.size} bytes; this server accepts files of at most ${maxFile} bytes`);
    case 'mkdir':
      return new FerryError('permission_denied', 'Your account may not mkdir');
    case 'digest':
      return digestMismatch(shown);
    case 'invalid_path':
      return new FerryError('invalid_path', o.message ?? `Invalid path ${shown}`);
    default:
      if (o.code === 'ENOENT') return new FerryError('not_found', `Cannot upload ${shown}: its folder does not exist (ask for parents to create it)`);
      return fail(Object.assign(new Error(o.message ?? ''), { code: o.code }), 'upload', shown);
  }
}
