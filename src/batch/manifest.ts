import { isAbsolute, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { parseAddress } from '../core/address.ts';
import { CaFileError, readCaFile } from '../tls/ca.ts';
import { parseFingerprint } from '../tls/fingerprint.ts';
import { interpolate } from './interpolate.ts';
import { Checker, describe, type Position, type Problem } from './manifest-checker.ts';
import { globError, isGlob } from './remote-paths.ts';

export { interpolate, type Interpolated } from './interpolate.ts';
export { globError, isGlob, normaliseRemote } from './remote-paths.ts';
export type { Position, Problem } from './manifest-checker.ts';

/** What to do when the destination of a transfer or rename already exists. */
export type Overwrite = 'skip' | 'replace' | 'fail';
export const OVERWRITE_VALUES: readonly Overwrite[] = ['skip', 'replace', 'fail'];

export const DEFAULT_CONCURRENCY = 16;
export const MAX_CONCURRENCY = 256;
export const DEFAULT_RETRIES = 3;
export const MAX_RETRIES = 100;

interface OpBase {
  /** 0-based index in `ops`. */
  index: number;
  /** Where the op starts in the manifest. */
  at: Position;
}

/** Upload: local files, globs or directories to a remote path. */
/** What put and get have in common. */
interface TransferOpBase extends OpBase {
  overwrite: Overwrite;
  ifChanged: boolean;
  exclude: string[];
  sha256: string | null;
}

export interface PutOp extends TransferOpBase {
  kind: 'put';
  /** Absolute local paths or glob patterns, as written (after `${VAR}`), resolved against the manifest's folder. */
  sources: string[];
  /** Remote destination, normalised (no leading or trailing `/`; `''` is the home). */
  to: string;
  /** `to` names a folder to put things into (it ended in `/`, was omitted, or there are several sources). */
  into: boolean;
}

/** Download: remote files, globs or directories to a local path. */
export interface GetOp extends TransferOpBase {
  kind: 'get';
  /** Remote paths or glob patterns, normalised like `PutOp.to`. */
  sources: string[];
  /** Absolute local destination. */
  to: string;
  into: boolean;
}

export interface MkdirOp extends OpBase {
  kind: 'mkdir';
  path: string;
}

export interface RenameOp extends OpBase {
  kind: 'rename';
  from: string;
  to: string;
  overwrite: Overwrite;
}

export interface DeleteOp extends OpBase {
  kind: 'delete';
  path: string;
  missingOk: boolean;
}

export type Op = PutOp | GetOp | MkdirOp | RenameOp | DeleteOp;
export type OpKind = Op['kind'];
export const OP_KINDS: readonly OpKind[] = ['put', 'get', 'mkdir', 'rename', 'delete'];

export interface Manifest {
  /** The manifest's file name as given (`<stdin>` for standard input). */
  file: string;
  /** Relative local paths are resolved against this folder. */
  baseDir: string;
  server: { host: string; port: number };
  fingerprint: string | null;
  /**
   * The certificate authorities to trust instead of the built-in ones (`ca:`, resolved against the manifest's folder,
   * else `FERRY_CA`): the file and its PEM certificates, read and checked. Null: the built-in ones.
   */
  ca: { file: string; certificates: string[] } | null;
  insecure: boolean;
  user: string;
  password: string;
  concurrency: number;
  retries: number;
  ops: Op[];
  /** Things that are allowed but unwise (a password written in clear), with where they are. */
  warnings: Problem[];
  /** Where `server` is written, for problems found later (an unknown host). */
  serverAt: Position;
}

/**
 * The fields each part of a manifest may have. The JSON Schema in docs/manifest.schema.json lists the
 * same names (a test compares them).
 */
export const FIELDS = {
  top: ['server', 'fingerprint', 'ca', 'insecure', 'user', 'password', 'concurrency', 'retries', 'exclude', 'ops'],
  put: ['put', 'to', 'overwrite', 'if_changed', 'exclude', 'sha256'],
  get: ['get', 'to', 'overwrite', 'if_changed', 'exclude', 'sha256'],
  mkdir: ['mkdir'],
  rename: ['rename', 'to', 'overwrite'],
  delete: ['delete', 'missing_ok'],
} as const satisfies Record<'top' | OpKind, readonly string[]>;

/** Default `overwrite` per op kind: transfers replace (like cp, scp, sftp), renames refuse (like sftp). */
export const DEFAULT_OVERWRITE: Record<'put' | 'get' | 'rename', Overwrite> = { put: 'replace', get: 'replace', rename: 'fail' };

export interface ParseOptions {
  /** Shown in problems; `<stdin>` for standard input. */
  file: string;
  /** Folder that relative local paths are resolved against. */
  baseDir: string;
  /** Where `${VAR}` values come from. */
  env: Readonly<Record<string, string | undefined>>;
}

export type ParseResult = { ok: true; manifest: Manifest } | { ok: false; problems: Problem[]; warnings: Problem[] };

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/**
 * Parses and validates a manifest (YAML, or JSON, which is YAML too). Every problem is collected, with
 * its line, column and field path, so one run reports them all; nothing is checked over the network.
 *
 * @example
 * ```ts
 * const r = parseManifest(text, { file: 'nightly.yaml', baseDir: '/etc/ferry', env: process.env });
 * if (!r.ok) for (const p of r.problems) console.error(formatProblem(p));
 * ```
 */
export function parseManifest(text: string, options: ParseOptions): ParseResult {
  const r = _parseManifest(text, options);
  const byPlace = (a: Problem, b: Problem) => a.line - b.line || a.column - b.column;
  if (!r.ok) r.problems.sort(byPlace);
  (r.ok ? r.manifest.warnings : r.warnings).sort(byPlace);
  return r;
}

function _parseManifest(text: string, options: ParseOptions): ParseResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  const c = new Checker(options.file, lines, options.env);
  for (const err of doc.errors) {
    const { line, col } = lines.linePos(err.pos[0]);
    c.problem({ line, column: col }, '(syntax)', err.message.split('\n')[0] ?? err.message);
  }
  if (c.problems.length > 0) return { ok: false, problems: c.problems, warnings: c.warnings };

  const root = doc.contents as Node | null;
  if (!isMap(root)) {
    c.problem(c.pos(root), '(top level)', `the manifest must be a map of fields (server, user, ops, ...), not ${describe(root)}`);
    return { ok: false, problems: c.problems, warnings: c.warnings };
  }
  const top = c.fields(root, FIELDS.top, '');
  const rootAt = c.pos(root);
  const need = (name: string) => {
    const e = top.get(name);
    if (!e) c.problem(rootAt, name, 'is required');
    return e;
  };

  let server: { host: string; port: number } | null = null;
  const serverEntry = need('server');
  const serverAt = serverEntry?.at ?? rootAt;
  if (serverEntry) {
    const s = c.string(serverEntry, 'server', { nonEmpty: true });
    if (s !== null) {
      try {
        server = parseAddress(s.trim());
      } catch (err) {
        c.problem(serverEntry.at, 'server', (err as Error).message);
      }
    }
  }

  let fingerprint: string | null = null;
  const fpEntry = top.get('fingerprint');
  if (fpEntry) {
    const s = c.string(fpEntry, 'fingerprint', { nonEmpty: true });
    if (s !== null) {
      try {
        fingerprint = parseFingerprint(s);
      } catch (err) {
        c.problem(fpEntry.at, 'fingerprint', (err as Error).message.replace(/^Cannot read fingerprint '[^']*': /, 'expected '));
      }
    }
  }

  const insecureEntry = top.get('insecure');
  const insecure = insecureEntry ? c.boolean(insecureEntry, 'insecure') === true : false;
  if (insecure && fpEntry) c.problem(fpEntry.at, 'fingerprint', 'makes no sense with insecure: true (plain TCP has no certificate)');

  // Read now, like every other mistake of the manifest, so that a bad file is reported before anything is sent.
  let ca: { file: string; certificates: string[] } | null = null;
  const caEntry = top.get('ca');
  const readCa = (file: string, at: Position, source: string) => {
    try {
      ca = { file, certificates: readCaFile(file, source) };
    } catch (err) {
      if (!(err instanceof CaFileError)) throw err;
      const whose = source === 'ca' ? '' : `${source} `;
      c.problem(at, 'ca', `${err.unreadable ? 'cannot read' : 'cannot use'} ${whose}'${file}': ${err.reason}`);
    }
  };
  if (caEntry) {
    const s = c.string(caEntry, 'ca', { nonEmpty: true });
    if (insecure) c.problem(caEntry.at, 'ca', 'makes no sense with insecure: true (plain TCP has no certificate)');
    else if (s !== null) readCa(isAbsolute(s) ? s : resolve(options.baseDir, s), caEntry.at, 'ca');
  } else if (options.env['FERRY_CA'] && !insecure) {
    readCa(options.env['FERRY_CA'], rootAt, 'FERRY_CA');
  }
  if (insecure && insecureEntry) c.warn(insecureEntry.at, 'insecure', 'plain TCP: the password and the files cross the network unencrypted');

  const userEntry = need('user');
  const user = userEntry ? c.string(userEntry, 'user', { nonEmpty: true }) : null;

  let password: string | null = null;
  const pwEntry = top.get('password');
  if (pwEntry) {
    password = c.string(pwEntry, 'password', { nonEmpty: true });
    const raw = isScalar(pwEntry.node) && typeof pwEntry.node.value === 'string' ? pwEntry.node.value : null;
    if (raw !== null && interpolate(raw, {}).vars.length === 0) {
      c.warn(pwEntry.at, 'password', 'is written in clear in the manifest; prefer password: ${FERRY_PASSWORD} and set it in the environment');
    }
  } else {
    const fromEnv = options.env['FERRY_PASSWORD'];
    if (fromEnv) password = fromEnv;
    else c.problem(rootAt, 'password', 'is required: write password: ${FERRY_PASSWORD} (or another variable) and set it in the environment');
  }

  const concurrencyEntry = top.get('concurrency');
  const concurrency = concurrencyEntry ? c.integer(concurrencyEntry, 'concurrency', 1, MAX_CONCURRENCY) : DEFAULT_CONCURRENCY;
  const retriesEntry = top.get('retries');
  const retries = retriesEntry ? c.integer(retriesEntry, 'retries', 0, MAX_RETRIES) : DEFAULT_RETRIES;
  const excludeEntry = top.get('exclude');
  const globalExclude = excludeEntry ? (c.globs(excludeEntry, 'exclude') ?? []) : [];

  const ops: Op[] = [];
  const opsEntry = need('ops');
  if (opsEntry) {
    const seq = opsEntry.node;
    if (!isSeq(seq)) {
      c.problem(opsEntry.at, 'ops', `must be a list of operations, not ${describe(seq)}`);
    } else if (seq.items.length === 0) {
      c.problem(opsEntry.at, 'ops', 'is empty: nothing to do');
    } else {
      seq.items.forEach((item, index) => {
        const op = parseOp(c, item as Node | null, index, opsEntry.at, options, globalExclude);
        if (op) ops.push(op);
      });
    }
  }

  if (c.problems.length > 0 || !server || user === null || password === null || concurrency === null || retries === null) {
    return { ok: false, problems: c.problems, warnings: c.warnings };
  }
  return {
    ok: true,
    manifest: {
      file: options.file,
      baseDir: options.baseDir,
      server,
      fingerprint,
      ca,
      insecure,
      user,
      password,
      concurrency,
      retries,
      ops,
      warnings: c.warnings,
      serverAt,
    },
  };
}

function parseOp(c: Checker, node: Node | null, index: number, listAt: Position, options: ParseOptions, globalExclude: string[]): Op | null {
  const path = `ops[${index}]`;
  const at = c.pos(node, listAt);
  if (!isMap(node)) {
    c.problem(at, path, `must be a map such as {put: ./file, to: dir/}, not ${describe(node)}`);
    return null;
  }
  const keys = node.items.map((p) => (isScalar(p.key) ? p.key.value : undefined));
  const kinds = OP_KINDS.filter((k) => keys.includes(k));
  if (kinds.length === 0) {
    c.problem(at, path, `names no operation: expected one of ${OP_KINDS.join(', ')}`);
    return null;
  }
  if (kinds.length > 1) {
    c.problem(at, path, `names ${kinds.length} operations (${kinds.join(', ')}); write one per list item`);
    return null;
  }
  const kind = kinds[0] as OpKind;
  const f = c.fields(node, FIELDS[kind], path);
  const before = c.problems.length;
  const main = f.get(kind);
  if (!main) return null; // reported by fields() (e.g. a non-string key) — cannot happen for a found kind
  const field = (name: string) => `${path}.${name}`;

  switch (kind) {
    case 'put':
    case 'get': {
      const overwriteEntry = f.get('overwrite');
      const overwrite = overwriteEntry ? c.oneOf(overwriteEntry, field('overwrite'), OVERWRITE_VALUES) : DEFAULT_OVERWRITE[kind];
      const ifChangedEntry = f.get('if_changed');
      const ifChanged = ifChangedEntry ? c.boolean(ifChangedEntry, field('if_changed')) : false;
      const excludeEntry = f.get('exclude');
      const exclude = excludeEntry ? c.globs(excludeEntry, field('exclude')) : [];
      const raw = c.strings(main, field(kind));
      let sources: string[] | null = null;
      if (raw) {
        sources = [];
        raw.forEach((s, i) => {
          const name = raw.length > 1 || isSeq(main.node) ? `${field(kind)}[${i}]` : field(kind);
          if (kind === 'put') {
            // An unbalanced [ or { is a broken glob far more often than a file name.
            if (isGlob(s) || /[[{]/.test(s)) {
              const why = globError(s);
              if (why) return c.problem(main.at, name, `'${s}' ${why} (write \\[ for a literal [)`);
            }
            sources?.push(isAbsolute(s) ? s : resolve(options.baseDir, s));
          } else {
            const r = c.remoteValue(s, main.at, name, { glob: true });
            if (r !== null) sources?.push(r);
          }
        });
      }
      const toEntry = f.get('to');
      let to: string | null = kind === 'put' ? '' : options.baseDir;
      let into = true;
      if (toEntry) {
        const s = c.string(toEntry, field('to'));
        if (s === null) to = null;
        else if (kind === 'put') {
          to = c.remoteValue(s, toEntry.at, field('to'), { home: true });
          into = s.trim() === '' || s.endsWith('/') || to === '';
        } else {
          to = resolve(options.baseDir, s === '' ? '.' : s);
          into = s === '' || s.endsWith('/') || s.endsWith('\\') || s === '.' || s === '..';
        }
      }
      const many = (raw?.length ?? 0) > 1 || (raw ?? []).some(isGlob);
      if (many) into = true;
      let sha256: string | null = null;
      const shaEntry = f.get('sha256');
      if (shaEntry) {
        const s = c.string(shaEntry, field('sha256'));
        if (s !== null) {
          const hex = s.trim().replace(/^sha256:/i, '');
          if (!SHA256_HEX.test(hex)) c.problem(shaEntry.at, field('sha256'), 'must be 64 hexadecimal digits (a SHA-256 digest)');
          else if (many) c.problem(shaEntry.at, field('sha256'), `asserts the digest of one file, but ${kind} names several or a glob`);
          else sha256 = hex.toLowerCase();
        }
      }
      if (c.problems.length > before || !sources || to === null || overwrite === null || ifChanged === null || exclude === null) return null;
      const common = { index, at, sources, to, into, overwrite, ifChanged, exclude: [...globalExclude, ...exclude], sha256 };
      return kind === 'put' ? { kind, ...common } : { kind, ...common };
    }
    case 'mkdir': {
      const p = c.remote(main, field('mkdir'));
      return p === null ? null : { kind, index, at, path: p };
    }
    case 'delete': {
      const p = c.remote(main, field('delete'));
      const missingEntry = f.get('missing_ok');
      const missingOk = missingEntry ? c.boolean(missingEntry, field('missing_ok')) : false;
      return p === null || missingOk === null ? null : { kind, index, at, path: p, missingOk };
    }
    case 'rename': {
      const from = c.remote(main, field('rename'));
      const toEntry = f.get('to');
      if (!toEntry) c.problem(at, field('to'), 'is required: where to rename to');
      const toRaw = toEntry ? c.string(toEntry, field('to'), { nonEmpty: true }) : null;
      // `to: archive/` moves the source into that folder under its own name.
      const into = toRaw !== null && toRaw.endsWith('/');
      let to = toEntry && toRaw !== null ? c.remoteValue(toRaw, toEntry.at, field('to'), { home: into }) : null;
      if (to !== null && from !== null && into) to = [to, from.slice(from.lastIndexOf('/') + 1)].filter(Boolean).join('/');
      const overwriteEntry = f.get('overwrite');
      const overwrite = overwriteEntry ? c.oneOf(overwriteEntry, field('overwrite'), OVERWRITE_VALUES) : DEFAULT_OVERWRITE.rename;
      return from === null || to === null || overwrite === null ? null : { kind, index, at, from, to, overwrite };
    }
  }
}

/** `file:line:column: field: message`, the way compilers report. */
export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}`;
}
