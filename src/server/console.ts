/**
 * The server's console: one line per connection, log-in, command and disconnect, each with a local
 * timestamp and the connection's tag. Never prints passwords or file contents.
 */
export interface ServerLog {
  info(line: string): void;
  warn(line: string): void;
}

function stamp(): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Lines written during one turn of the event loop go out together at its end (one write for the lines of many
 * pipelined requests, not one each), and at once when the process exits.
 */
export function consoleLog(stream: NodeJS.WritableStream = process.stdout): ServerLog {
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    unflushed.delete(flush);
    stream.write(text);
  };
  const write = (line: string): void => {
    if (pending.length === 0) {
      process.nextTick(flush);
      unflushed.add(flush);
    }
    pending.push(line);
  };
  return {
    info: (line) => write(`${stamp()} ${line}\n`),
    warn: (line) => write(`${stamp()} warning: ${line}\n`),
  };
}

/** Logs with lines not yet written: written out if the process exits first (one listener for all of them). */
const unflushed = new Set<() => void>();
process.once('exit', () => {
  for (const flush of unflushed) flush();
});

export const silentLog: ServerLog = { info() {}, warn() {} };
