import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { Dir } from './ledger.ts';

/** Entries lstat'ed at once. */
const BATCH = 64;

function errno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The tree of regular files under `home` (a user's home on local disk), with their sizes. Symlinks are
 * not followed and, like FIFOs, sockets and devices, not counted (as the storage's own `usage()` does).
 * A missing home is an empty tree. Iterative, so deep trees cannot overflow the stack.
 */
export async function scanHome(home: string): Promise<Dir> {
  const root = new Dir();
  const pending: Array<[string, Dir]> = [[home, root]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [path, dir] = next;
    let handle;
    try {
      handle = await opendir(path, { bufferSize: 128 });
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') continue; // no home yet, or removed while we walked
      throw new Error(`Cannot read the home to sum up its usage: ${code ?? (err as Error).message}`);
    }
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      const names = batch;
      batch = [];
      const infos = await Promise.all(names.map((name) => lstat(join(path, name)).catch(() => null)));
      infos.forEach((info, i) => {
        const name = names[i] as string;
        if (info?.isFile()) dir.children.set(name, info.size);
        else if (info?.isDirectory()) {
          const child = new Dir();
          dir.children.set(name, child);
          pending.push([join(path, name), child]);
        }
      });
    };
    for await (const dirent of handle) {
      if (dirent.isDirectory()) {
        const child = new Dir();
        dir.children.set(dirent.name, child);
        pending.push([join(path, dirent.name), child]);
      } else if (dirent.isSymbolicLink() || dirent.isFIFO() || dirent.isSocket() || dirent.isBlockDevice() || dirent.isCharacterDevice()) {
        continue;
      } else {
        batch.push(dirent.name); // a file (its size is needed), or a file system that does not report types
        if (batch.length >= BATCH) await flush();
      }
    }
    await flush();
  }
  return root;
}

/** The tree of a user's files as the server's storage lists them (PluginContext.homeFiles: an object store). */
export async function treeOf(pages: AsyncIterable<Array<{ path: string; size: number }>>): Promise<Dir> {
  const root = new Dir();
  for await (const page of pages) {
    for (const { path, size } of page) {
      const names = path.split('/');
      const file = names.pop() as string;
      let dir = root;
      for (const name of names) {
        let child = dir.children.get(name);
        if (!(child instanceof Dir)) {
          child = new Dir();
          dir.children.set(name, child);
        }
        dir = child;
      }
      dir.children.set(file, size);
    }
  }
  return root;
}
