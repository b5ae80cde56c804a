import type { BundledPlugins } from '../plugin/load.ts';
import type { FerryPlugin } from '../plugin/types.ts';

/** Plugins shipped inside ferry, by the name `--plugin NAME` uses. Static imports, so the bundle has them. */
export const BUNDLED_PLUGINS: BundledPlugins = {
  compress: async () => (await import('../../plugins/compress/index.ts')).default as FerryPlugin<unknown>,
  quota: async () => (await import('../../plugins/quota/index.ts')).default as FerryPlugin<unknown>,
  webhook: async () => (await import('../../plugins/webhook/index.ts')).default as FerryPlugin<unknown>,
};
