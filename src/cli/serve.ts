import { FerryServer } from '../server/server.ts';
import { consoleLog } from '../server/console.ts';
import { VERSION } from '../version.ts';

export interface ServeCliOptions {
  host?: string;
  port?: string | number;
  data?: string;
  signup?: string;
  insecure?: boolean;
}

function parsePort(value: string | number | undefined): number {
  if (value === undefined) return 2121;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Invalid --port '${value}': use a number from 0 to 65535`);
  return port;
}

/** `ferry serve`: runs until SIGINT or SIGTERM, then stops cleanly. */
export async function runServe(options: ServeCliOptions): Promise<void> {
  const signup = options.signup ?? 'open';
  if (signup !== 'open' && signup !== 'closed') throw new Error(`Invalid --signup '${signup}': use open or closed`);
  const log = consoleLog();
  const server = new FerryServer(
    {
      host: options.host ?? '0.0.0.0',
      port: parsePort(options.port),
      dataDir: options.data ?? './ferry-data',
      signup,
      insecure: options.insecure === true,
    },
    log,
  );
  const info = await server.start().catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') throw new Error(`Cannot listen on ${options.host ?? '0.0.0.0'}:${parsePort(options.port)}: address already in use`);
    if (err.code === 'EACCES') throw new Error(`Cannot listen on port ${parsePort(options.port)}: permission denied`);
    throw err;
  });
  const where = info.host.includes(':') ? `[${info.host}]:${info.port}` : `${info.host}:${info.port}`;
  const lines = [
    `ferry ${VERSION} serving ${info.dataDir}`,
    `listening on ${where} (${info.fingerprint ? 'TLS 1.3' : 'PLAIN TCP'})`,
  ];
  if (info.fingerprint) {
    if (info.identityCreated) lines.push('created a new TLS identity (ECDSA P-256, self-signed) in the data directory');
    lines.push(`fingerprint ${info.fingerprint}`);
  } else {
    lines.push('WARNING: --insecure: no TLS; passwords and files cross the network in clear');
  }
  lines.push(`sign-up ${signup}; admins are made with: ferry user add NAME --admin --data ${info.dataDir}`);
  lines.push(`To get started, connect a client: ferry connect <host>:${info.port}${info.fingerprint ? ` --fingerprint ${info.fingerprint}` : ' --insecure'}`);
  process.stdout.write(lines.join('\n') + '\n');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: stopping (transfers in flight are kept as partials for resume)`);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      void server.stop().then(resolve);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  log.info('stopped');
}
