import picomatch from 'picomatch';
import { isAlias, isMap, isScalar, isSeq, type LineCounter, type Node, type Pair, type YAMLMap } from 'yaml';
import { interpolate } from './interpolate.ts';
import { globError, isGlob, normaliseRemote } from './remote-paths.ts';

/** Where something is in the manifest: 1-based line and column. */
export interface Position {
  line: number;
  column: number;
}

/** One thing wrong with a manifest: where, which field (`ops[2].overwrite`), and what. */
export interface Problem extends Position {
  file: string;
  field: string;
  message: string;
}

/**
 * Checks the values of a parsed YAML document against what a manifest allows, collecting every problem with its
 * line, column and field path instead of stopping at the first (parseManifest reports them all at once).
 */
export class Checker {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
    readonly env: Readonly<Record<string, string | undefined>>,
  ) {}

  pos(node: Node | Pair | null | undefined, fallback?: Position): Position {
    const range = node && 'range' in node ? node.range : node && 'key' in node && isScalar(node.key) ? node.key.range : undefined;
    if (!range) return fallback ?? { line: 1, column: 1 };
    const { line, col } = this.lines.linePos(range[0]);
    return { line, column: col };
  }

  problem(at: Position, field: string, message: string): void {
    this.problems.push({ file: this.file, ...at, field, message });
  }

  warn(at: Position, field: string, message: string): void {
    this.warnings.push({ file: this.file, ...at, field, message });
  }

  /** Fields of a map, checked against the allowed names; unknown ones are problems. */
  fields(map: YAMLMap, allowed: readonly string[], path: string): Map<string, { node: Node | null; at: Position; keyAt: Position }> {
    const out = new Map<string, { node: Node | null; at: Position; keyAt: Position }>();
    for (const pair of map.items) {
      const keyNode = pair.key as Node | null;
      const keyAt = this.pos(keyNode, this.pos(map));
      const key = isScalar(keyNode) ? keyNode.value : undefined;
      if (typeof key !== 'string') {
        this.problem(keyAt, path || '(top level)', 'field names must be strings');
        continue;
      }
      const field = path ? `${path}.${key}` : key;
      if (!allowed.includes(key)) {
        const near = allowed.find((a) => distance(a, key.toLowerCase().replace(/-/g, '_')) <= 2);
        this.problem(keyAt, field, `unknown field${near ? ` (did you mean '${near}'?)` : ''}; allowed here: ${allowed.join(', ')}`);
        continue;
      }
      const value = (pair.value as Node | null) ?? null;
      out.set(key, { node: value, at: this.pos(value, keyAt), keyAt });
    }
    return out;
  }

  /** A string value, with `${VAR}` replaced. Null (after reporting) when it is not one. */
  string(entry: { node: Node | null; at: Position }, field: string, opts: { nonEmpty?: boolean } = {}): string | null {
    const { node, at } = entry;
    if (isAlias(node)) {
      this.problem(at, field, 'YAML aliases (*name) are not supported here');
      return null;
    }
    if (!isScalar(node) || typeof node.value !== 'string') {
      this.problem(at, field, `must be a string, not ${describe(node)}${isScalar(node) && typeof node.value === 'number' ? " (quote it: '...')" : ''}`);
      return null;
    }
    const r = interpolate(node.value, this.env);
    for (const e of r.errors) this.problem(at, field, e);
    if (r.errors.length > 0) return null;
    if (opts.nonEmpty && r.value.trim() === '') {
      this.problem(at, field, r.vars.length ? `is empty (after \${${r.vars.join('}, ${')}})` : 'must not be empty');
      return null;
    }
    return r.value;
  }

  /** A string or a non-empty list of strings. */
  strings(entry: { node: Node | null; at: Position }, field: string): string[] | null {
    const { node, at } = entry;
    if (isSeq(node)) {
      if (node.items.length === 0) {
        this.problem(at, field, 'must not be an empty list');
        return null;
      }
      const out: string[] = [];
      let ok = true;
      node.items.forEach((item, i) => {
        const s = this.string({ node: item as Node, at: this.pos(item as Node, at) }, `${field}[${i}]`, { nonEmpty: true });
        if (s === null) ok = false;
        else out.push(s);
      });
      return ok ? out : null;
    }
    const s = this.string(entry, field, { nonEmpty: true });
    return s === null ? null : [s];
  }

  boolean(entry: { node: Node | null; at: Position }, field: string): boolean | null {
    if (isScalar(entry.node) && typeof entry.node.value === 'boolean') return entry.node.value;
    this.problem(entry.at, field, `must be true or false, not ${describe(entry.node)}`);
    return null;
  }

  integer(entry: { node: Node | null; at: Position }, field: string, min: number, max: number): number | null {
    const v = isScalar(entry.node) ? entry.node.value : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.problem(entry.at, field, `must be a whole number from ${min} to ${max}, not ${describe(entry.node)}`);
      return null;
    }
    return v;
  }

  /** One of `values` (a string). */
  oneOf<T extends string>(entry: { node: Node | null; at: Position }, field: string, values: readonly T[]): T | null {
    const s = isScalar(entry.node) ? entry.node.value : undefined;
    if (typeof s === 'string' && (values as readonly string[]).includes(s)) return s as T;
    this.problem(entry.at, field, `must be one of ${values.join(', ')}, not ${describe(entry.node)}`);
    return null;
  }

  globs(entry: { node: Node | null; at: Position }, field: string): string[] | null {
    const list = this.strings(entry, field);
    if (!list) return null;
    let ok = true;
    list.forEach((g, i) => {
      const why = globError(g);
      if (why) {
        this.problem(entry.at, list.length > 1 || isSeq(entry.node) ? `${field}[${i}]` : field, `'${g}' ${why}`);
        ok = false;
      }
    });
    return ok ? list : null;
  }

  remote(entry: { node: Node | null; at: Position }, field: string, opts: { glob?: boolean; home?: boolean } = {}): string | null {
    const s = this.string(entry, field);
    if (s === null) return null;
    return this.remoteValue(s, entry.at, field, opts);
  }

  remoteValue(s: string, at: Position, field: string, opts: { glob?: boolean; home?: boolean } = {}): string | null {
    if (opts.glob && (isGlob(s) || /[[{]/.test(s))) {
      const why = globError(s.replace(/^\/+/, ''));
      if (why) {
        this.problem(at, field, `'${s}' ${why}`);
        return null;
      }
    }
    try {
      const path = normaliseRemote(opts.glob && isGlob(s) ? picomatch.scan(s.replace(/^\/+/, '')).base : s);
      if (path === '' && !opts.home && !(opts.glob && isGlob(s))) {
        this.problem(at, field, 'must name something inside your home, not the home itself');
        return null;
      }
      return opts.glob && isGlob(s) ? s.replace(/^\/+/, '') : path;
    } catch (err) {
      this.problem(at, field, (err as Error).message);
      return null;
    }
  }
}

/** Edit distance (insertions, deletions, substitutions), for "did you mean" hints. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}

/** A YAML value as a problem describes it: `a map`, `'text'`, `nothing (null)`... */
export function describe(node: Node | null): string {
  if (node === null || (isScalar(node) && node.value === null)) return 'nothing (null)';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isAlias(node)) return 'an alias';
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    return `a ${typeof v}`;
  }
  return 'something else';
}
