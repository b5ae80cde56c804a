import cliProgress from 'cli-progress';
import type { OpKind, Problem } from './manifest.ts';
import { SKIP_TEXT, type SkipReason } from './plan.ts';
import { formatBytes } from '../core/size.ts';

/** Where a file event happened: the op (index in `ops`), its kind, and the file's source and destination. */
export interface FileRef {
  op: number;
  kind: OpKind;
  /** put/get/rename: source; mkdir/delete: the path. */
  from: string;
  /** put/get/rename: destination; absent for mkdir/delete. */
  to?: string;
}

/**
 * What a batch reports, in order: `start`; per op `op` when its stage begins (with `plan` per file in a
 * dry run); `done`, `skip`, `retry`, `error` as things happen; `progress` now and then; `summary` last.
 * With --json each is one line of JSON on stdout.
 */
export type BatchEvent =
  | { event: 'start'; manifest: string; server: string; user: string; ops: number; concurrency: number; journal: string | null; dryRun: boolean }
  | { event: 'invalid'; problems: Problem[] }
  | { event: 'warning'; message: string; file?: string; line?: number; column?: number; field?: string }
  | { event: 'op'; op: number; kind: OpKind; files: number; bytes: number; skip: number; fail: number; excluded: number }
  | ({ event: 'plan'; action: 'transfer' | 'run' | 'skip' | 'fail'; size?: number; reason?: string; message?: string } & FileRef)
  | {
      event: 'progress';
      files: number;
      filesTotal: number;
      bytes: number;
      bytesTotal: number;
      rate: number;
      active: Array<{ from: string; to: string; done: number; size: number }>;
    }
  | ({ event: 'done'; size?: number; sha256?: string; resumedFrom?: number; wireBytes?: number; encoding?: string | null; ms: number; attempts: number } & FileRef)
  | ({ event: 'skip'; reason: SkipReason; message: string } & FileRef)
  | ({ event: 'retry'; attempt: number; of: number; code: string; message: string; delayMs: number } & FileRef)
  | ({ event: 'error'; code: string; message: string; attempts: number; retried: boolean } & Partial<FileRef>)
  | {
      event: 'summary';
      exitCode: number;
      files: number;
      bytes: number;
      resumedBytes: number;
      skipped: number;
      failed: number;
      notRun: number;
      ms: number;
      rate: number;
      interrupted: boolean;
      dryRun: boolean;
      connections: number;
    };

export type SummaryEvent = Extract<BatchEvent, { event: 'summary' }>;

/** The live numbers of a run, read by the displays. */
export class ProgressState {
  filesTotal = 0;
  bytesTotal = 0;
  filesDone = 0;
  /** Sizes of the files finished. */
  bytesDone = 0;
  readonly started = Date.now();
  readonly active = new Map<number, { from: string; to: string; size: number; done: number; base: number }>();
  private nextId = 1;

  begin(from: string, to: string, size: number): number {
    const id = this.nextId++;
    this.active.set(id, { from, to, size, done: 0, base: 0 });
    return id;
  }

  update(id: number, done: number): void {
    const a = this.active.get(id);
    if (a) a.done = done;
  }

  end(id: number, finished: boolean): void {
    const a = this.active.get(id);
    this.active.delete(id);
    if (a && finished) {
      this.filesDone++;
      this.bytesDone += a.size;
    }
  }

  /** A file finished that was not begun on its own (it travelled in a bundle, whose progress is begun as one). */
  fileDone(size: number): void {
    this.filesDone++;
    this.bytesDone += size;
  }

  /** Bytes finished plus the bytes of the files in flight. */
  bytesNow(): number {
    let n = this.bytesDone;
    for (const a of this.active.values()) n += a.done;
    return n;
  }
}

export interface Reporter {
  event(e: BatchEvent): void;
  /** Called once the run starts moving files; the reporter may read it on a timer. */
  attach(progress: ProgressState): void;
  /** Stops timers and bars; called before the summary is reported. */
  stop(): void;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function arrow(e: FileRef): string {
  return e.to !== undefined ? `${e.from} -> ${e.to}` : e.from;
}

function where(e: Partial<FileRef>): string {
  if (e.op === undefined || e.kind === undefined) return '';
  return `ops[${e.op}] ${e.kind}${e.from !== undefined ? ` ${arrow(e as FileRef)}` : ''}: `;
}

/** One human line for an event, or null for events a person does not need line by line. */
export function humanLine(e: BatchEvent): { stream: 'out' | 'err'; text: string } | null {
  switch (e.event) {
    case 'start':
      return {
        stream: 'out',
        text: `ferry batch ${e.manifest}: ${e.server} as ${e.user}, ${e.ops} operation${e.ops === 1 ? '' : 's'}, concurrency ${e.concurrency}${e.journal ? `, journal ${e.journal}` : ', no journal'}${e.dryRun ? ' (dry run: nothing will be transferred)' : ''}`,
      };
    case 'invalid':
      return null;
    case 'warning':
      return { stream: 'err', text: `warning: ${e.file !== undefined ? `${e.file}:${e.line}:${e.column}: ${e.field}: ` : ''}${e.message}` };
    case 'op': {
      if (e.kind !== 'put' && e.kind !== 'get') return null;
      const parts = [`${e.files} file${e.files === 1 ? '' : 's'} (${formatBytes(e.bytes)}) to transfer`];
      if (e.skip) parts.push(`${e.skip} to skip`);
      if (e.fail) parts.push(`${e.fail} failing`);
      if (e.excluded) parts.push(`${e.excluded} excluded`);
      return { stream: 'out', text: `ops[${e.op}] ${e.kind}: ${parts.join(', ')}` };
    }
    case 'plan': {
      const what = e.action === 'transfer' ? e.kind : e.action;
      const size = e.size !== undefined && e.action === 'transfer' ? ` (${formatBytes(e.size)})` : '';
      const why = e.reason ? `: ${SKIP_TEXT[e.reason as SkipReason] ?? e.reason}` : e.message ? `: ${e.message}` : '';
      return { stream: 'out', text: `  ${what.padEnd(8)} ${arrow(e)}${size}${why}` };
    }
    case 'progress':
      return null;
    case 'done': {
      if (e.kind === 'put' || e.kind === 'get') {
        const resumed = e.resumedFrom ? `, resumed at ${formatBytes(e.resumedFrom)}` : '';
        return { stream: 'out', text: `${e.kind} ${arrow(e)}: ${formatBytes(e.size ?? 0)}${resumed}, sha256 verified` };
      }
      return { stream: 'out', text: `${e.kind} ${arrow(e)}: done` };
    }
    case 'skip':
      return { stream: 'out', text: `skip ${e.kind} ${arrow(e)}: ${e.message}` };
    case 'retry':
      return { stream: 'err', text: `retry ${where(e)}${e.code}: ${e.message} (attempt ${e.attempt + 1} of ${e.of} in ${seconds(e.delayMs)})` };
    case 'error':
      return { stream: 'err', text: `error: ${where(e)}${e.message}${e.message.includes(e.code) ? '' : ` (${e.code})`}${e.retried ? `, after ${e.attempts} attempts` : ''}` };
    case 'summary':
      return { stream: 'out', text: summaryText(e) };
  }
}

export function summaryText(s: SummaryEvent): string {
  const head = s.dryRun ? 'dry run' : s.interrupted ? 'interrupted' : s.failed > 0 ? 'finished with errors' : s.exitCode === 3 ? 'not connected' : 'done';
  const verb = s.dryRun ? 'would transfer' : 'transferred';
  const rate = s.dryRun ? '' : ` in ${seconds(s.ms)} (${formatBytes(Math.round(s.rate))}/s)`;
  const resumed = s.resumedBytes > 0 ? `, ${formatBytes(s.resumedBytes)} of it resumed` : '';
  const tail = [`${s.skipped} skipped`, `${s.failed} failed`];
  if (s.notRun > 0) tail.push(`${s.notRun} not run`);
  const after = s.interrupted ? '; run the same command again to continue' : s.dryRun ? '; nothing was transferred' : '';
  return `${head}: ${verb} ${s.files} file${s.files === 1 ? '' : 's'}, ${formatBytes(s.bytes)}${resumed}${rate}; ${tail.join(', ')}${after}`;
}

type Write = (text: string) => void;

/** --json: one JSON object per line on stdout, `progress` at most twice a second while files move. */
export function jsonReporter(out: Write, intervalMs = 500): Reporter {
  let timer: NodeJS.Timeout | null = null;
  let last = '';
  const write = (e: BatchEvent) => out(`${JSON.stringify(e)}\n`);
  return {
    event: write,
    attach(p) {
      timer = setInterval(() => {
        if (p.active.size === 0) return;
        const e: BatchEvent = {
          event: 'progress',
          files: p.filesDone,
          filesTotal: p.filesTotal,
          bytes: p.bytesNow(),
          bytesTotal: p.bytesTotal,
          rate: Math.round((p.bytesNow() * 1000) / Math.max(1, Date.now() - p.started)),
          active: [...p.active.values()].map((a) => ({ from: a.from, to: a.to, done: a.done, size: a.size })),
        };
        const key = `${e.files}/${e.bytes}`;
        if (key !== last) write(e);
        last = key;
      }, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

/**
 * Not a terminal: plain lines. Each finished file on stdout; problems, retries and warnings on stderr;
 * skipped files counted per op (one line) rather than listed, except in a dry run.
 */
export function plainReporter(out: Write, err: Write): Reporter {
  const skips = new Map<string, number>();
  const flushSkips = () => {
    for (const [key, n] of skips) {
      const [op, reason] = key.split('\u0000') as [string, SkipReason];
      out(`ops[${op}]: ${n} skipped: ${SKIP_TEXT[reason]}\n`);
    }
    skips.clear();
  };
  return {
    event(e) {
      if (e.event === 'skip') {
        const key = `${e.op}\u0000${e.reason}`;
        skips.set(key, (skips.get(key) ?? 0) + 1);
        return;
      }
      if (e.event !== 'progress') flushSkips(); // skips come in runs: one line per op and reason
      const line = humanLine(e);
      if (line) (line.stream === 'out' ? out : err)(`${line.text}\n`);
    },
    attach() {},
    stop: flushSkips,
  };
}

/**
 * A terminal: an overall bar (files, bytes, rate, ETA) and a bar per active file of 256 KiB or more, on
 * stderr; errors, retries and warnings printed above the bars; the summary on stdout at the end.
 */
export function terminalReporter(out: Write, stream: NodeJS.WriteStream = process.stderr): Reporter {
  let bars: cliProgress.MultiBar | null = null;
  // While the bars are up, every line goes above them (a line written past them would tear them).
  const plain = plainReporter(
    (t) => (bars ? bars.log(t) : out(t)),
    (t) => (bars ? bars.log(t) : stream.write(t)),
  );
  let overall: cliProgress.SingleBar | null = null;
  const fileBars = new Map<number, cliProgress.SingleBar>();
  let timer: NodeJS.Timeout | null = null;
  const MAX_FILE_BARS = 6;
  const log = (text: string) => {
    if (bars) bars.log(text);
    else stream.write(text);
  };
  return {
    event(e) {
      if (e.event === 'done' || e.event === 'progress') return;
      if (e.event === 'skip') return plain.event(e);
      if (!bars) return plain.event(e);
      const line = humanLine(e);
      if (!line) return;
      if (line.stream === 'err' || e.event === 'op') log(`${line.text}\n`);
      else out(`${line.text}\n`);
    },
    attach(p) {
      bars = new cliProgress.MultiBar(
        {
          stream,
          hideCursor: true,
          clearOnComplete: true,
          fps: 10,
          format: '{label} |{bar}| {percentage}% | {detail}',
          barsize: 30,
        },
        cliProgress.Presets.shades_classic,
      );
      overall = bars.create(1, 0, { label: 'total'.padEnd(24), detail: '' });
      const tick = () => {
        if (!bars || !overall) return;
        const now = p.bytesNow();
        const ms = Math.max(1, Date.now() - p.started);
        const rate = (now * 1000) / ms;
        const eta = rate > 0 && p.bytesTotal > now ? ` | ETA ${Math.ceil((p.bytesTotal - now) / rate)} s` : '';
        overall.setTotal(Math.max(1, p.bytesTotal));
        overall.update(now, {
          detail: `${p.filesDone}/${p.filesTotal} files | ${formatBytes(now)} / ${formatBytes(p.bytesTotal)} | ${formatBytes(Math.round(rate))}/s${eta}`,
        });
        for (const [id, bar] of fileBars) {
          const a = p.active.get(id);
          if (a) bar.update(a.done, { detail: `${formatBytes(a.done)} / ${formatBytes(a.size)}` });
          else {
            bars.remove(bar);
            fileBars.delete(id);
          }
        }
        for (const [id, a] of p.active) {
          if (fileBars.size >= MAX_FILE_BARS) break;
          if (fileBars.has(id) || a.size < 256 * 1024) continue;
          const name = a.from.length > 24 ? `…${a.from.slice(-23)}` : a.from.padEnd(24);
          fileBars.set(id, bars.create(Math.max(1, a.size), a.done, { label: name, detail: `${formatBytes(a.done)} / ${formatBytes(a.size)}` }));
        }
      };
      timer = setInterval(tick, 100);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      plain.stop(); // the last skip counts, above the bars
      bars?.update(); // prints what was logged since the last redraw, which stop() alone would drop
      bars?.stop();
      bars = null;
    },
  };
}
