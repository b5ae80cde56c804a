import { resolve } from 'node:path';
import { formatAddress } from '../core/address.ts';
import { parseSize, SIZE_RULE } from '../core/size.ts';
import { escapeText } from '../core/text.ts';
import { loadPlugins, type PluginSpec } from '../plugin/load.ts';
import { ProxyAllowList } from '../server/proxy-protocol.ts';
import { FerryServer } from '../server/server.ts';
import type { ObjectStoreOptions } from '../server/options.ts';
import { parseS3Url } from '../storage/s3/mod.ts';
import { checkDatabaseUrl, liveServer, migrate, openDatabase, type Database } from '../db/mod.ts';
import type { PluginDatabase } from '../plugin/mod.ts';
import { consoleLog, type ServerLog } from '../server/console.ts';
import { fingerprintToHex } from '../tls/fingerprint.ts';
import { VERSION } from '../version.ts';
import { BUNDLED_PLUGINS } from './bundled-plugins.ts';
import { pluginSpecFromWord, readServeConfig, type ServeConfig } from './config.ts';

export interface ServeCliOptions {
  host?: string;
  port?: string | number;
  data?: string;
  signup?: string;
  insecure?: boolean;
  /** `--plugin NAME|PATH`, repeatable. */
  plugin?: string | string[];
  config?: string;
  maxConnections?: string | number;
  maxConnectionsPerAddress?: string | number;
  maxTransfersPerUser?: string | number;
  maxUploadSize?: string | number;
  storage?: string;
  /** `--cert FILE --key FILE`: a certificate (a CA's) instead of the self-signed identity. */
  cert?: string;
  key?: string;
  /** `--no-web`: false (cac's negated flag); absent: true. */
  web?: boolean;
  /** `--db postgres://...`: state shared with other servers (FERRY_DB when absent). */
  db?: string;
  /** `--proxy-protocol CIDR[,CIDR...]`, repeatable. */
  proxyProtocol?: string | string[];
  /** cac keeps these two as written (it camel-cases only after a letter). */
  's3-endpoint'?: string;
  's3-region'?: string;
}

/** A positive whole number from a flag, or undefined when the flag is absent. */
function parseCount(flag: string, value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`Invalid --${flag} '${value}': use a whole number of 1 or more`);
  return n;
}

/** A size from a flag (the one rule of core/size.ts: 500M, 20 GiB, 1GB), or undefined when the flag is absent. */
export function parseByteSize(flag: string, value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const bytes = parseSize(typeof value === 'number' ? String(value) : value);
  if (bytes === null || bytes < 1) throw new Error(`Invalid --${flag} '${escapeText(String(value), 40)}': use ${SIZE_RULE}`);
  return bytes;
}

function pluginLogger(log: ServerLog, name: string) {
  return {
    info: (m: string) => log.info(`[plugin ${name}] ${escapeText(String(m), 2000)}`),
    warn: (m: string) => log.warn(`[plugin ${name}] ${escapeText(String(m), 2000)}`),
    error: (m: string) => log.warn(`[plugin ${name}] ${escapeText(String(m), 2000)}`),
  };
}

function parsePort(value: string | number | undefined): number {
  if (value === undefined) return 2121;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Invalid --port '${value}': use a number from 0 to 65535`);
  return port;
}

/** `ferry serve`: runs until SIGINT or SIGTERM, then stops cleanly. */
export async function runServe(options: ServeCliOptions): Promise<void> {
  const { config, baseDir }: { config: ServeConfig; baseDir: string } = options.config
    ? await readServeConfig(options.config)
    : { config: { plugins: [] }, baseDir: process.cwd() };
  const signup = options.signup ?? config.signup ?? 'open';
  if (signup !== 'open' && signup !== 'closed') throw new Error(`Invalid --signup '${signup}': use open or closed`);
  const dataDir = resolve(options.data ?? config.data ?? './ferry-data');
  const objectStore = objectStoreOf(options, config);
  const proxyWords = options.proxyProtocol === undefined ? [] : Array.isArray(options.proxyProtocol) ? options.proxyProtocol : [options.proxyProtocol];
  const proxyProtocol = [...(config.proxyProtocol ?? []), ...proxyWords.flatMap((w) => String(w).split(','))].filter((w) => w.trim() !== '');
  new ProxyAllowList(proxyProtocol); // a bad entry stops here, with one line, before anything starts
  const dbUrl = options.db ?? config.db ?? (process.env['FERRY_DB'] || undefined);
  if (dbUrl !== undefined) checkDatabaseUrl(String(dbUrl));
  const log = consoleLog();
  // The shared database first: plugins keep their state there too, and an unreachable one stops here in one line.
  const database = dbUrl !== undefined ? await openDatabase(String(dbUrl), { warn: (m) => log.warn(m) }) : null;
  try {
    await serveWith(options, config, baseDir, dataDir, signup, objectStore, proxyProtocol, log, database);
  } finally {
    await database?.close();
  }
}

async function serveWith(
  options: ServeCliOptions,
  config: ServeConfig,
  baseDir: string,
  dataDir: string,
  signup: 'open' | 'closed',
  objectStore: ObjectStoreOptions | null,
  proxyProtocol: string[],
  log: ServerLog,
  database: Database | null,
): Promise<void> {
  const words = options.plugin === undefined ? [] : Array.isArray(options.plugin) ? options.plugin : [options.plugin];
  const specs: PluginSpec[] = [...config.plugins, ...words.map((w) => pluginSpecFromWord(String(w)))];
  // With an object store, plugins that sum up usage list a user's files through the server's storage (the server
  // is made below; the plugins ask only once it has started).
  let server: FerryServer | null = null;
  const homeFiles = objectStore !== null ? (user: string) => (server as FerryServer).homeFiles(user) : undefined;
  const plugins =
    specs.length > 0
      ? await loadPlugins(specs, {
          bundled: BUNDLED_PLUGINS,
          dataDir,
          baseDir,
          log: (name) => pluginLogger(log, name),
          ...(homeFiles ? { homeFiles } : {}),
          ...(database ? { db: pluginDatabase(database) } : {}),
        })
      : undefined;
  server = new FerryServer(
    {
      host: options.host ?? config.host ?? null,
      port: parsePort(options.port ?? config.port),
      dataDir,
      signup,
      insecure: options.insecure === true || config.insecure === true,
      objectStore,
      proxyProtocol,
      web: options.web !== false && config.web !== false,
      certificate: certificateOf(options, config, baseDir),
      ...defined({
        maxConnections: parseCount('max-connections', options.maxConnections) ?? config.maxConnections,
        maxConnectionsPerAddress: parseCount('max-connections-per-address', options.maxConnectionsPerAddress) ?? config.maxConnectionsPerAddress,
        maxTransfersPerUser: parseCount('max-transfers-per-user', options.maxTransfersPerUser) ?? config.maxTransfersPerUser,
        maxUploadBytes: parseByteSize('max-upload-size', options.maxUploadSize) ?? config.maxUploadSize,
      }),
    },
    log,
    plugins,
    database,
  );
  const info = await server.start().catch((err: NodeJS.ErrnoException) => {
    const where = formatAddress(options.host ?? config.host ?? '::', parsePort(options.port ?? config.port));
    if (err.code === 'EADDRINUSE') throw new Error(`Cannot listen on ${where}: address already in use`);
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'EAFNOSUPPORT') throw new Error(`Cannot listen on ${where}: no such address on this machine`);
    if (err.code === 'EACCES') throw new Error(`Cannot listen on port ${parsePort(options.port)}: permission denied`);
    throw err;
  });
  const where = formatAddress(info.host, info.port);
  const lines = [
    `ferry ${VERSION} serving ${info.dataDir}`,
    `listening on ${where} (${info.fingerprint ? 'TLS 1.3' : 'PLAIN TCP'})`,
  ];
  if (info.fingerprint) {
    if (info.certificate) lines.push(`certificate ${info.certificate}`);
    if (info.identityCreated) lines.push(`created a new TLS identity (ECDSA P-256, self-signed) in ${info.database ? 'the shared database' : 'the data directory'}`);
    lines.push(`fingerprint ${info.fingerprint}`);
  } else {
    lines.push('WARNING: --insecure: no TLS; passwords and files cross the network in clear');
  }
  if (info.web) lines.push(`page for browsers at https://${info.host === '::' || info.host === '0.0.0.0' ? 'localhost' : formatAddress(info.host, info.port).replace(/:\d+$/, '')}:${info.port}/ (the same port; --no-web turns it off)`);
  // A browser shows the certificate's SHA-256 in hex: the same fingerprint, in the form to compare there.
  if (info.web && info.fingerprint) lines.push(`the same fingerprint as a browser shows it (SHA-256): ${fingerprintToHex(info.fingerprint)}`);
  if (info.objectStore) lines.push(`files in ${info.objectStore}`);
  if (info.database) lines.push(`accounts, throttles, audit log and TLS identity shared in ${info.database}`);
  if (info.database && !info.objectStore) lines.push('files on this server\'s own disk: servers sharing the database see them only with --storage s3://... on one store');
  if (proxyProtocol.length > 0) lines.push(`PROXY protocol (v1, v2) required from ${proxyProtocol.join(', ')}; refused from anyone else`);
  if (plugins) lines.push(`plugins: ${plugins.names.join(', ')}`);
  lines.push(`sign-up ${signup}; admins are made with: ferry user add NAME --admin ${info.database ? '--db URL' : `--data ${info.dataDir}`}`);
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

/**
 * The object store from `--storage` (and `--s3-endpoint`, `--s3-region`) or the config file, or null for the data
 * directory. Credentials are never taken from the command line: the SDK reads them from the environment or ~/.aws.
 */
function objectStoreOf(options: ServeCliOptions, config: ServeConfig): ObjectStoreOptions | null {
  const url = options.storage ?? config.storage;
  const endpoint = options['s3-endpoint'] ?? config.s3Endpoint;
  const region = options['s3-region'] ?? config.s3Region;
  if (url === undefined || url === '') {
    if (endpoint !== undefined || region !== undefined) throw new Error('--s3-endpoint and --s3-region need --storage s3://BUCKET');
    return null;
  }
  if (!url.startsWith('s3://')) throw new Error(`Invalid --storage '${escapeText(url, 200)}': use s3://BUCKET[/PREFIX] (without --storage, files stay in the data directory)`);
  parseS3Url(url); // one clear line now for a malformed one
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) throw new Error(`Invalid --s3-endpoint '${escapeText(endpoint, 200)}': use http(s)://host[:port]`);
  if (region !== undefined && !/^[a-z0-9-]{1,40}$/.test(region)) throw new Error(`Invalid --s3-region '${escapeText(region, 60)}'`);
  return { url, ...(endpoint !== undefined ? { endpoint } : {}), ...(region !== undefined ? { region } : {}) };
}

/** `--cert` and `--key` (or `cert`/`key` in the config, relative to it): both or neither. */
function certificateOf(options: ServeCliOptions, config: ServeConfig, baseDir: string): { certFile: string; keyFile: string } | null {
  const cert = options.cert ?? (config.cert !== undefined ? resolve(baseDir, config.cert) : undefined);
  const key = options.key ?? (config.key !== undefined ? resolve(baseDir, config.key) : undefined);
  if (cert === undefined && key === undefined) return null;
  if (cert === undefined || key === undefined) throw new Error('--cert and --key go together: the certificate (PEM) and its private key');
  if (options.insecure === true || config.insecure === true) throw new Error('--cert/--key need TLS: leave out --insecure');
  return { certFile: resolve(String(cert)), keyFile: resolve(String(key)) };
}

/** The shared database as plugins see it (PluginContext.db): queries, transactions, their own migrations. */
export function pluginDatabase(db: Database): PluginDatabase {
  return {
    where: db.where,
    serverId: db.serverId,
    liveServer,
    query: (sql, params) => db.query(sql, params),
    transaction: (work) => db.transaction(work),
    migrate: (component, migrations) => migrate(db, `plugin:${component}`, migrations),
  };
}

/** The fields of `o` that are not undefined. */
function defined(o: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, number>;
}
