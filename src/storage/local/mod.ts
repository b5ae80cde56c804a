/**
 * The local-disk storage driver: the embedded default, everything under one data directory.
 *
 * @example
 * ```ts
 * import { LocalDiskDriver } from './storage/local/mod.ts';
 * const storage = new LocalDiskDriver('/var/lib/ferry').forUser('alice');
 * for await (const page of storage.list('')) console.log(page);
 * ```
 */
export { LocalDiskDriver } from './driver.ts';
export { canPinDirectories } from './home.ts';
