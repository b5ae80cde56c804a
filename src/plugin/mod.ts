export * from './types.ts';
export { PluginHost, PluginError, DEFAULT_HOOK_TIMEOUT_MS } from './host.ts';
export { loadPlugins, checkPlugin, type PluginSpec, type BundledPlugins, type LoadOptions } from './load.ts';
