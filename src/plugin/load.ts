import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PluginError, PluginHost } from './host.ts';
import { HOOK_KINDS, type FerryPlugin, type HomeFile, type PluginDatabase, type PluginLogger } from './types.ts';

/** One plugin to load: a bundled one by name, or a module file by path, with its options. */
export interface PluginSpec {
  name?: string;
  path?: string;
  options?: unknown;
}

/** Finds bundled plugins by name (supplied by the CLI, so that this layer does not depend on plugins/). */
export type BundledPlugins = Readonly<Record<string, () => Promise<FerryPlugin<unknown>>>>;

export interface LoadOptions {
  bundled: BundledPlugins;
  /** Server data directory: each plugin gets `<data>/plugins/<name>/`. */
  dataDir: string;
  /** Relative plugin paths resolve from here (the config file's directory, or the working directory). */
  baseDir: string;
  log: (plugin: string) => PluginLogger;
  /** Users' files where they are not under `<dataDir>/homes` (PluginContext.homeFiles). */
  homeFiles?: (user: string) => AsyncIterable<HomeFile[]>;
  /** The servers' shared database (PluginContext.db). */
  db?: PluginDatabase;
}

/** Checks that a module's export looks like a plugin; names what is wrong. */
export function checkPlugin(value: unknown, where: string): FerryPlugin<unknown> {
  const p = value as Partial<FerryPlugin<unknown>> | null;
  if (typeof p !== 'object' || p === null) throw new Error(`${where} does not export a plugin (export default definePlugin({ name, hooks }))`);
  if (typeof p.name !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/i.test(p.name)) throw new Error(`${where}: the plugin needs a 'name' of letters, digits, . _ -`);
  if (typeof p.hooks !== 'object' || p.hooks === null) throw new Error(`Plugin '${p.name}' (${where}) has no 'hooks' object`);
  for (const [hook, entry] of Object.entries(p.hooks)) {
    if (!Object.hasOwn(HOOK_KINDS, hook)) throw new Error(`Plugin '${p.name}' has an unknown hook '${hook}' (known: ${Object.keys(HOOK_KINDS).join(', ')})`);
    const fn = typeof entry === 'function' ? entry : (entry as { handler?: unknown } | undefined)?.handler;
    if (typeof fn !== 'function') throw new Error(`Plugin '${p.name}': hook '${hook}' is not a function`);
  }
  if (p.features !== undefined && typeof p.features !== 'function' && (!Array.isArray(p.features) || !p.features.every((f) => typeof f === 'string'))) {
    throw new Error(`Plugin '${p.name}': 'features' must be a list of strings (or a function of the options returning one)`);
  }
  if (p.timeoutMs !== undefined && !(typeof p.timeoutMs === 'number' && p.timeoutMs > 0)) throw new Error(`Plugin '${p.name}': 'timeoutMs' must be a positive number`);
  return p as FerryPlugin<unknown>;
}

/** Loads a plugin module from a file: its default export, or a named export `plugin`. */
async function importPluginFile(file: string): Promise<unknown> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'ENOENT') throw new Error(`Cannot load plugin '${file}': no such file`);
    if (e.code === 'ERR_UNKNOWN_FILE_EXTENSION') throw new Error(`Cannot load plugin '${file}': this runtime cannot load that file type (use .js or .mjs)`);
    throw new Error(`Cannot load plugin '${file}': ${e.message}`);
  }
  return mod.default ?? mod.plugin;
}

/** Loads, validates and sets up every plugin, in order. Any failure is thrown with the plugin's name. */
export async function loadPlugins(specs: readonly PluginSpec[], options: LoadOptions): Promise<PluginHost> {
  const plugins: FerryPlugin<unknown>[] = [];
  for (const spec of specs) {
    let plugin: FerryPlugin<unknown>;
    if (spec.path !== undefined) {
      const file = isAbsolute(spec.path) ? spec.path : resolve(options.baseDir, spec.path);
      plugin = checkPlugin(await importPluginFile(file), file);
    } else if (spec.name !== undefined) {
      const factory = options.bundled[spec.name];
      if (!factory) {
        throw new Error(`Unknown plugin '${spec.name}': bundled plugins are ${Object.keys(options.bundled).join(', ')}; give a path (./my-plugin.js) for your own`);
      }
      plugin = checkPlugin(await factory(), `bundled plugin '${spec.name}'`);
    } else {
      throw new Error('A plugin entry needs a name (bundled) or a path (a .js/.mjs file)');
    }
    if (plugins.some((p) => p.name === plugin.name)) throw new Error(`Plugin '${plugin.name}' is configured twice`);
    let pluginOptions: unknown = spec.options ?? {};
    if (plugin.validate) {
      try {
        pluginOptions = plugin.validate(pluginOptions);
      } catch (err) {
        throw new Error(`Plugin '${plugin.name}': invalid options: ${(err as Error).message}`);
      }
    }
    const dataDir = join(options.dataDir, 'plugins', plugin.name);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    try {
      await plugin.setup?.({
        name: plugin.name,
        options: pluginOptions,
        dataDir,
        serverDataDir: options.dataDir,
        log: options.log(plugin.name),
        ...(options.homeFiles ? { homeFiles: options.homeFiles } : {}),
        ...(options.db ? { db: options.db } : {}),
      });
    } catch (err) {
      throw new PluginError(plugin.name, 'setup', err);
    }
    const features = typeof plugin.features === 'function' ? plugin.features(pluginOptions) : plugin.features;
    plugins.push({ ...plugin, ...(features ? { features } : {}) });
  }
  const hostLog = options.log('plugins');
  return new PluginHost(plugins, hostLog);
}
