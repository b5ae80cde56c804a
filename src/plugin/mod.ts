/**
 * The plugin SDK: everything a plugin (bundled or a user's own) needs from ferry, and the only module of ferry's
 * that the bundled plugins import. The hook types and `definePlugin`; the host and loader (for the server);
 * and the few helpers of ferry's own that plugins use, so that they read sizes, audit events and retry delays
 * exactly as ferry does.
 *
 * @example
 * ```ts
 * import { definePlugin } from 'ferry/plugin'; // src/plugin/mod.ts
 * export default definePlugin({ name: 'no-exe', hooks: { 'upload:before': (op) => op.path.endsWith('.exe') ? { deny: 'denied', message: 'no executables' } : undefined } });
 * ```
 */
export * from './types.ts';
export { PluginHost, PluginError, DEFAULT_HOOK_TIMEOUT_MS } from './host.ts';
export { loadPlugins, checkPlugin, type PluginSpec, type BundledPlugins, type LoadOptions } from './load.ts';
export { AUDIT_EVENTS, type AuditEvent, type AuditEventType } from '../audit/event.ts';
export { backoff } from '../core/backoff.ts';
export { formatSize, parseSize, SIZE_RULE } from '../core/size.ts';
export { escapeText } from '../core/text.ts';
