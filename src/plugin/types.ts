import type { Transform } from 'node:stream';
import type { AuditEvent } from '../audit/event.ts';
import type { Permission, Role } from '../auth/types.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';

/**
 * The plugin contract. Every hook's signature lives in `Hooks`; its *kind* — how the host calls it and
 * what its result means — is fixed in `HOOK_KINDS`, typed so that a hook without a kind does not compile.
 *
 * - veto:    called in plugin order and awaited; the first `{ deny }` wins and the client gets that error.
 *            A veto hook that throws or times out DENIES (fail closed) with code `denied`.
 * - first:   called in plugin order; the first non-undefined result wins (authentication, stream wrappers).
 *            A throw or time-out fails the operation with `internal` (fail closed).
 * - notify:  called in plugin order without awaiting; never blocks or fails anything; errors and time-outs
 *            are logged with the plugin's and the hook's name.
 */

/** The connection before log-in. */
export interface ConnectionInfo {
  /** `ip:port` (`[v6]:port`). */
  address: string;
  /** The IP alone. */
  host: string;
}

/** Who is acting. */
export interface Actor {
  user: string;
  role: Role;
  address: string;
}

export interface UploadOp extends Actor {
  path: string;
  /** Declared size in bytes (what the client promised to send). */
  size: number;
  /** The file the upload would replace, if any (null when the path is new). */
  replaces: Entry | null;
}

export interface DownloadOp extends Actor {
  path: string;
  size: number;
  /** Byte offset the download resumes from. */
  offset: number;
}

export interface PathOp extends Actor {
  path: string;
  /** What is at `path` now (for delete: what is about to be deleted). */
  entry: Entry | null;
}

export interface RenameOp extends Actor {
  from: string;
  to: string;
  entry: Entry | null;
  /** The entry the rename would replace. */
  replaces: Entry | null;
}

/** How an operation ended, for the `*:after` notifications. */
export type Outcome = { ok: true } | { ok: false; code: ErrorCode; message: string };

/** A refusal: the client sees `code` and `message` as an ordinary request error. */
export interface Deny {
  deny: ErrorCode;
  message: string;
}

export type Verdict = Deny | undefined | void;

/** Result of an authentication hook: a user it vouches for, a refusal, or undefined to pass. */
export type AuthResult = { user: { name: string; role?: Role; perms?: Permission[] } } | Deny | undefined;

export interface LoginAttempt {
  user: string;
  password: string;
  address: string;
}

/** A wire encoding for one upload's DATA frames (e.g. the client compressed them). */
export interface UploadDecoding {
  encoding: string;
  op: UploadOp;
}

/** A download whose client accepts these encodings (in preference order). */
export interface DownloadEncoding {
  accept: readonly string[];
  op: DownloadOp;
  /** Name of the file (to skip types that do not compress). */
  path: string;
  /** The first bytes of the file (up to 64 KiB), to judge whether encoding is worth it. */
  sample: Buffer;
}

export interface EncodedStream {
  /** Encoding name announced to the client (must be one it accepts). */
  encoding: string;
  /** Turns file bytes into wire bytes. */
  stream: Transform;
}

/** Usage figures shown in LIST and STAT replies (e.g. against a quota). */
export type { Usage } from '../core/types.ts';
import type { Usage } from '../core/types.ts';

/**
 * The client side of wire encodings (e.g. compression), offered in the handshake as `encoding:<name>`. The
 * client library knows nothing about particular codecs: a plugin's client part supplies them.
 */
export interface ClientEncodings {
  /** Encodings in order of preference. */
  names: readonly string[];
  /** File bytes → wire bytes, or null if unknown. */
  encoder(name: string): Transform | null;
  /** Wire bytes → file bytes, or null if unknown. */
  decoder(name: string): Transform | null;
  /** Whether encoding a file is worth it, judged from its name and first bytes. */
  worthEncoding(path: string, sample: Uint8Array): boolean;
}

export interface ServerInfo {
  host: string;
  port: number;
  dataDir: string;
}

export type MaybePromise<T> = T | Promise<T>;

export interface Hooks {
  'server:start': (info: ServerInfo) => MaybePromise<void>;
  'server:stop': () => MaybePromise<void>;
  'connection:open': (conn: ConnectionInfo) => MaybePromise<Verdict>;
  'auth:login': (attempt: LoginAttempt) => MaybePromise<AuthResult>;
  'list:before': (op: PathOp) => MaybePromise<Verdict>;
  'upload:before': (op: UploadOp) => MaybePromise<Verdict>;
  /** Exactly once for every upload that passed `upload:before`: committed, refused, cut off or interrupted. */
  'upload:after': (op: UploadOp, outcome: Outcome) => MaybePromise<void>;
  'download:before': (op: DownloadOp) => MaybePromise<Verdict>;
  'download:after': (op: DownloadOp, outcome: Outcome) => MaybePromise<void>;
  'delete:before': (op: PathOp) => MaybePromise<Verdict>;
  'delete:after': (op: PathOp, outcome: Outcome) => MaybePromise<void>;
  'rename:before': (op: RenameOp) => MaybePromise<Verdict>;
  'rename:after': (op: RenameOp, outcome: Outcome) => MaybePromise<void>;
  'mkdir:before': (op: PathOp) => MaybePromise<Verdict>;
  'mkdir:after': (op: PathOp, outcome: Outcome) => MaybePromise<void>;
  /** Turns an upload's wire bytes back into file bytes, for an encoding the plugin handles. */
  'transfer:decode': (req: UploadDecoding) => MaybePromise<Transform | undefined>;
  /** Chooses an encoding for a download's wire bytes (or undefined to send them as they are). */
  'transfer:encode': (req: DownloadEncoding) => MaybePromise<EncodedStream | undefined>;
  /** Usage to show with LIST and STAT (first plugin that knows wins). */
  'usage:get': (actor: Actor) => MaybePromise<Usage | undefined>;
  /** Every audit event, after it was written. */
  audit: (event: AuditEvent) => MaybePromise<void>;
}

export type HookName = keyof Hooks;
export type HookKind = 'veto' | 'first' | 'notify';

/** The kind of every hook. A hook missing here is a type error. */
export const HOOK_KINDS = {
  'server:start': 'notify',
  'server:stop': 'notify',
  'connection:open': 'veto',
  'auth:login': 'first',
  'list:before': 'veto',
  'upload:before': 'veto',
  'upload:after': 'notify',
  'download:before': 'veto',
  'download:after': 'notify',
  'delete:before': 'veto',
  'delete:after': 'notify',
  'rename:before': 'veto',
  'rename:after': 'notify',
  'mkdir:before': 'veto',
  'mkdir:after': 'notify',
  'transfer:decode': 'first',
  'transfer:encode': 'first',
  'usage:get': 'first',
  audit: 'notify',
} as const satisfies Record<HookName, HookKind>;

type KindOf<H extends HookName> = (typeof HOOK_KINDS)[H];
export type VetoHook = { [H in HookName]: KindOf<H> extends 'veto' ? H : never }[HookName];
export type FirstHook = { [H in HookName]: KindOf<H> extends 'first' ? H : never }[HookName];
export type NotifyHook = { [H in HookName]: KindOf<H> extends 'notify' ? H : never }[HookName];

/** A hook may be a function, or `{ handler, order }` to run before or after the others. */
export type HookEntry<H extends HookName> = Hooks[H] | { handler: Hooks[H]; order?: 'pre' | 'post' };

export interface PluginLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** What `setup` gets: the plugin's own logger, options and a directory for its state. */
export interface PluginContext<O = unknown> {
  /** The plugin's name. */
  name: string;
  /** Options from the config file (after `validate`, if the plugin has one). */
  options: O;
  /** `<data>/plugins/<name>/`, created for the plugin; survives restarts. */
  dataDir: string;
  /** The server's data directory (read-only use: users' homes are under homes/, unless `homeFiles` is given). */
  serverDataDir: string;
  log: PluginLogger;
  /**
   * Present when users' files are not under `<serverDataDir>/homes` (an object store, `ferry serve --storage`):
   * a user's files as the server's storage lists them, page by page, each by its path relative to the home.
   * A plugin that sums up usage uses this instead of walking the disk. Callable once the server has started.
   */
  homeFiles?: (user: string) => AsyncIterable<HomeFile[]>;
  /**
   * Present when several servers share state in PostgreSQL (`ferry serve --db`): where a plugin keeps what must be
   * exact across servers. Callable from `setup` on.
   */
  db?: PluginDatabase;
}

/** One SQL runner: the pool, or the connection of a transaction. Parameters are `$1, $2...`. */
export interface PluginQuerier {
  query<R extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

/**
 * The servers' shared database as a plugin sees it (PluginContext.db). A database that cannot be reached fails a
 * query with FerryError('unavailable'); serialization failures and deadlocks in `transaction` are retried.
 */
export interface PluginDatabase extends PluginQuerier {
  /** The database's URL without its password, for messages. */
  readonly where: string;
  /** This server's id (uuid) among the servers on the database. */
  readonly serverId: string;
  /** An SQL condition that holds while the server whose id is in `column` is running (seen within 30 s). */
  liveServer(column: string): string;
  transaction<T>(work: (q: PluginQuerier) => Promise<T>): Promise<T>;
  /** Brings the plugin's own tables up to date: steps numbered 1, 2, 3..., each applied once, one server at a time. */
  migrate(component: string, migrations: ReadonlyArray<{ version: number; name: string; sql: string }>): Promise<number[]>;
}

/** A file of a user's home (PluginContext.homeFiles). */
export interface HomeFile {
  /** Relative to the home, `/`-separated. */
  path: string;
  size: number;
}

export interface FerryPlugin<O = unknown> {
  name: string;
  /** Wire features the plugin adds to the handshake (e.g. `encoding:gzip`), or a function of its options. */
  features?: readonly string[] | ((options: O) => readonly string[]);
  /** Checks and normalises raw options; throw an Error with a clear message to refuse them. */
  validate?: (raw: unknown) => O;
  setup?: (ctx: PluginContext<O>) => MaybePromise<void>;
  hooks: { [H in HookName]?: HookEntry<H> };
  /** Per-hook time limit in ms (default 5000). */
  timeoutMs?: number;
}

/** Typed identity function for plugin authors: `export default definePlugin({ name, hooks: { ... } })`. */
export function definePlugin<O = unknown>(plugin: FerryPlugin<O>): FerryPlugin<O> {
  return plugin;
}
