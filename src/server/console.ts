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

export function consoleLog(stream: NodeJS.WritableStream = process.stdout): ServerLog {
  return {
    info: (line) => stream.write(`${stamp()} ${line}\n`),
    warn: (line) => stream.write(`${stamp()} warning: ${line}\n`),
  };
}

export const silentLog: ServerLog = { info() {}, warn() {} };
