import type { BundledPlugins } from '../plugin/load.ts';

/** Plugins shipped inside ferry, by the name `--plugin NAME` uses. Static imports, so the bundle has them. */
export const BUNDLED_PLUGINS: BundledPlugins = {};
