import { definePlugin } from '../../src/plugin/mod.ts';
import { availableCodecs, codecByName, worthCompressing } from './codecs.ts';

export interface CompressOptions {
  /** Codecs to offer, best first (default: every one this runtime has: zstd, br, gzip). */
  codecs: string[];
}

/**
 * Negotiated stream compression for the bytes on the wire. Files are stored exactly as the user sent them
 * and SHA-256 is always over the original bytes; only the DATA frames are compressed, per transfer.
 * Uploads: the client decides (it knows the bytes) and the plugin decodes. Downloads: the plugin picks the
 * best codec the client accepts, unless the file's type or a sample says it would not shrink.
 */
export default definePlugin<CompressOptions>({
  name: 'compress',
  validate(raw) {
    const options = (raw ?? {}) as Record<string, unknown>;
    if (typeof options !== 'object' || Array.isArray(options)) throw new Error('options must be an object like { codecs: [gzip] }');
    for (const key of Object.keys(options)) if (key !== 'codecs') throw new Error(`unknown option '${key}' (known: codecs)`);
    const have = availableCodecs().map((c) => c.name);
    if (options.codecs === undefined) return { codecs: have };
    if (!Array.isArray(options.codecs) || options.codecs.length === 0 || !options.codecs.every((c) => typeof c === 'string')) {
      throw new Error(`codecs must be a non-empty list, from ${have.join(', ')}`);
    }
    for (const c of options.codecs) {
      if (!have.includes(c)) throw new Error(`codec '${c}' is not available in this runtime (available: ${have.join(', ')})`);
    }
    return { codecs: options.codecs as string[] };
  },
  features: (options) => options.codecs.map((c) => `encoding:${c}`),
  hooks: {
    'transfer:decode': ({ encoding }) => codecByName(encoding)?.decoder(),
    'transfer:encode': ({ accept, path, sample }) => {
      if (!worthCompressing(path, sample)) return undefined;
      const codec = accept.map((name) => codecByName(name)).find((c) => c !== undefined);
      return codec ? { encoding: codec.name, stream: codec.encoder() } : undefined;
    },
  },
});
