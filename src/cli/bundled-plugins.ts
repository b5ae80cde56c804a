import type { BundledPlugins } from '../plugin/load.ts';
import type { ClientEncodings, FerryPlugin } from '../plugin/types.ts';
import { compressionForClient } from '../../plugins/compress/client.ts';

/** Plugins shipped inside ferry, by the name `--plugin NAME` uses. Static imports, so the bundle has them. */
export const BUNDLED_PLUGINS: BundledPlugins = {
  compress: async () => (await import('../../plugins/compress/index.ts')).default as FerryPlugin<unknown>,
  quota: async () => (await import('../../plugins/quota/index.ts')).default as FerryPlugin<unknown>,
  webhook: async () => (await import('../../plugins/webhook/index.ts')).default as FerryPlugin<unknown>,
};

/**
 * The client sides of the bundled plugins: the wire encodings (compression) that `ferry connect` and `ferry batch`
 * offer. The client decides per file whether to use one (plugins/compress), when the server agreed to it.
 */
export function clientEncodings(): ClientEncodings {
  return compressionForClient();
}
