import type { BundledPlugins } from '../plugin/load.ts';
import type { FerryPlugin } from '../plugin/types.ts';

/** Plugins shipped inside ferry, by the name `--plugin NAME` uses. Static imports, so the bundle has them. */
export const BUNDLED_PLUGINS: BundledPlugins = {
  quota: async () => (await import('../../plugins/quota/index.ts')).default as FerryPlugin<unknown>,
};
