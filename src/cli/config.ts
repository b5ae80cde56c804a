import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isSeq, parseDocument, type Node } from 'yaml';
import { parseSize, SIZE_RULE } from '../core/size.ts';
import type { PluginSpec } from '../plugin/load.ts';

/** What `ferry serve --config FILE` may set; command-line flags win over the file. */
export interface ServeConfig {
  host?: string;
  port?: number;
  data?: string;
  signup?: 'open' | 'closed';
  insecure?: boolean;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  maxTransfersPerUser?: number;
  /** Bytes (the file takes a size such as `20 GiB`, read by the one rule of core/size.ts). */
  maxUploadSize?: number;
  /** `s3://BUCKET[/PREFIX]`: files in an object store (with s3Endpoint, s3Region). */
  storage?: string;
  s3Endpoint?: string;
  s3Region?: string;
  /** Balancers (addresses or CIDR blocks) that send a PROXY header. */
  proxyProtocol?: string[];
  /** `postgres://...`: state shared with other servers in PostgreSQL. */
  db?: string;
  /** false: no page for browsers on the port. */
  web?: boolean;
  /** A certificate file and its key (PEM) instead of the self-signed identity. */
  cert?: string;
  key?: string;
  plugins: PluginSpec[];
}

const TOP_FIELDS = [
  'host', 'port', 'data', 'signup', 'insecure', 'maxConnections', 'maxConnectionsPerAddress', 'maxTransfersPerUser', 'maxUploadSize', 'storage', 's3Endpoint', 's3Region', 'proxyProtocol', 'db', 'web', 'cert', 'key', 'plugins',
] as const;

/** A plugin given by word: a path if it looks like a file, otherwise a bundled plugin's name. */
export function pluginSpecFromWord(word: string): PluginSpec {
  return /[/\\]|\.(m?js|c?js|ts|mts)$/.test(word) ? { path: word } : { name: word };
}

/**
 * Reads a YAML or JSON config file. Every problem is reported at once, each on its own line as
 * `file:line: field: what is wrong`.
 */
export async function readServeConfig(file: string): Promise<{ config: ServeConfig; baseDir: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`Cannot read config '${file}': ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems: string[] = [];
  const at = (node: Node | null | undefined, field: string, message: string) => {
    const offset = node?.range?.[0];
    const line = offset === undefined ? '' : `:${lines.linePos(offset).line}`;
    problems.push(`${file}${line}: ${field ? `${field}: ` : ''}${message}`);
  };
  for (const e of doc.errors) problems.push(`${file}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`);
  if (problems.length > 0) throw new Error(problems.join('\n'));

  const config: ServeConfig = { plugins: [] };
  const root = doc.contents;
  if (root === null) return { config, baseDir: dirname(resolve(file)) };
  if (!isMap(root)) throw new Error(`${file}:1: the config must be a mapping of fields (${TOP_FIELDS.join(', ')})`);
  for (const pair of root.items) {
    const key = String((pair.key as { value?: unknown } | null)?.value ?? pair.key);
    const node = pair.value as Node | null;
    const value = doc.getIn([key]) as unknown;
    const plain = (node as { toJSON?: () => unknown } | null)?.toJSON?.() ?? value;
    switch (key) {
      case 'host':
      case 'data':
      case 'storage':
      case 's3Endpoint':
      case 's3Region':
      case 'db':
      case 'cert':
      case 'key':
        if (typeof plain !== 'string' || plain === '') at(node, key, 'must be a non-empty string');
        else config[key] = plain;
        break;
      case 'port':
        if (typeof plain !== 'number' || !Number.isInteger(plain) || plain < 0 || plain > 65535) at(node, key, 'must be a whole number from 0 to 65535');
        else config.port = plain;
        break;
      case 'signup':
        if (plain !== 'open' && plain !== 'closed') at(node, key, "must be 'open' or 'closed'");
        else config.signup = plain;
        break;
      case 'insecure':
      case 'web':
        if (typeof plain !== 'boolean') at(node, key, 'must be true or false');
        else config[key] = plain;
        break;
      case 'maxConnections':
      case 'maxConnectionsPerAddress':
      case 'maxTransfersPerUser':
        if (typeof plain !== 'number' || !Number.isSafeInteger(plain) || plain < 1) at(node, key, 'must be a whole number of 1 or more');
        else config[key] = plain;
        break;
      case 'maxUploadSize': {
        const bytes = parseSize(plain);
        if (bytes === null || bytes < 1) at(node, key, `must be ${SIZE_RULE}`);
        else config.maxUploadSize = bytes;
        break;
      }
      case 'proxyProtocol': {
        if (!Array.isArray(plain) || !plain.every((v): v is string => typeof v === 'string' && v !== '')) at(node, key, 'must be a list of addresses or CIDR blocks');
        else config.proxyProtocol = plain;
        break;
      }
      case 'plugins': {
        if (!isSeq(node)) {
          at(node, key, 'must be a list');
          break;
        }
        node.items.forEach((item, i) => {
          const field = `plugins[${i}]`;
          const itemNode = item as Node;
          const v = (itemNode as { toJSON?: () => unknown }).toJSON?.();
          if (typeof v === 'string') {
            config.plugins.push(pluginSpecFromWord(v));
            return;
          }
          if (typeof v !== 'object' || v === null || Array.isArray(v)) {
            at(itemNode, field, 'must be a plugin name, a path, or { name | path, options }');
            return;
          }
          const entry = v as Record<string, unknown>;
          for (const k of Object.keys(entry)) {
            if (['name', 'path', 'options'].includes(k)) continue;
            const keyNode = isMap(itemNode) ? (itemNode.items.find((p) => (p.key as { value?: unknown } | null)?.value === k)?.key as Node | undefined) : undefined;
            at(keyNode ?? itemNode, `${field}.${k}`, 'unknown field (use name, path, options)');
          }
          const hasName = typeof entry.name === 'string' && entry.name !== '';
          const hasPath = typeof entry.path === 'string' && entry.path !== '';
          if (hasName === hasPath) {
            at(itemNode, field, 'needs exactly one of name (a bundled plugin) or path (a .js/.mjs file)');
            return;
          }
          const spec: PluginSpec = hasName ? { name: entry.name as string } : { path: entry.path as string };
          if (entry.options !== undefined) spec.options = entry.options;
          config.plugins.push(spec);
        });
        break;
      }
      default:
        at(pair.key as Node, key, `unknown field (known: ${TOP_FIELDS.join(', ')})`);
    }
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return { config, baseDir: dirname(resolve(file)) };
}
