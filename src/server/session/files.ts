import { createHash } from 'node:crypto';
import { FerryError } from '../../core/errors.ts';
import { quotePath } from '../../core/paths.ts';
import { escapeText } from '../../core/text.ts';
import type { Entry, Usage } from '../../core/types.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { Results } from '../../protocol/results.ts';
import type { Storage } from '../../storage/storage.ts';
import { actorOf, need, Operation, type OperationScope } from './operation.ts';
import type { LoggedIn, SessionScope } from './scope.ts';

/** Server-sent listing messages stay well under a client's 64 KiB message limit. */
const PAGE_JSON_BUDGET = 48 * 1024;
const READ_CHUNK = 512 * 1024;

/** What the operations of a logged-in session run in (see operation.ts). */
export function scopeOf(s: SessionScope, user: LoggedIn): OperationScope {
  return { plugins: s.ctx.plugins, account: user.account, address: s.address, audit: (e) => s.audit(e) };
}

/** Sends items as several messages of type `t`, each well under the client's message limit. */
export async function sendPaged<T>(s: SessionScope, id: number, t: 'entries' | 'events', items: readonly T[]): Promise<void> {
  let page: T[] = [];
  let size = 0;
  const flush = async () => {
    if (page.length === 0) return;
    if (!s.transport.send(id, { t, [t]: page })) await s.transport.drained();
    page = [];
    size = 0;
  };
  for (const item of items) {
    const itemSize = Buffer.byteLength(JSON.stringify(item)) + 1;
    if (size + itemSize > PAGE_JSON_BUDGET) await flush();
    page.push(item);
    size += itemSize;
  }
  await flush();
}

/** Usage figures from a plugin (e.g. quota), for LIST and STAT replies. */
async function usageOf(s: SessionScope, user: LoggedIn): Promise<{ usage?: Usage }> {
  if (!s.ctx.plugins.has('usage:get')) return {};
  const usage = await s.ctx.plugins.first('usage:get', actorOf({ account: user.account, address: s.address }));
  return usage ? { usage } : {};
}

/** LIST: the entries of a directory (or the one entry of a file) in pages, then the totals and the usage. */
export async function list(s: SessionScope, id: number, msg: ClientMessageOf<'list'>, user: LoggedIn): Promise<Results['list']> {
  const scope = scopeOf(s, user);
  const op = new Operation(scope, 'list', { path: msg.path });
  op.permit();
  const target = await user.storage.stat(msg.path);
  await op.vet(() => ({ ...actorOf(scope), path: msg.path, entry: target }));
  if (!target) throw new FerryError('not_found', `No such file or directory: ${quotePath(msg.path)}`);
  let count = 0;
  let bytes = 0;
  const tally = (entries: readonly Entry[]) => {
    count += entries.length;
    for (const e of entries) if (e.type === 'file') bytes += e.size;
  };
  if (target.type === 'file') {
    await sendPaged(s, id, 'entries', [target]);
    tally([target]);
  } else {
    if (msg.recursive === true && !s.features.includes('bundle')) throw new FerryError('bad_message', "A recursive 'list' needs 'bundle', which was not negotiated");
    const pages = msg.recursive === true ? user.storage.listTree(msg.path) : user.storage.list(msg.path);
    for await (const page of pages) {
      await sendPaged(s, id, 'entries', page);
      tally(page);
    }
  }
  s.info(`LIST ${escapeText(msg.path || '.', 200)}${msg.recursive === true ? ' (recursive)' : ''}: ${count} entries`);
  return { count, bytes, ...(await usageOf(s, user)) };
}

/** STAT: one entry, the usage, and with `sha256` the file's digest (which needs the download permission). */
export async function stat(s: SessionScope, _id: number, msg: ClientMessageOf<'stat'>, user: LoggedIn): Promise<Results['stat']> {
  const scope = scopeOf(s, user);
  const op = new Operation(scope, 'stat', { path: msg.path });
  op.permit();
  const entry = await user.storage.stat(msg.path);
  await op.vet(() => ({ ...actorOf(scope), path: msg.path, entry }));
  if (!entry) throw new FerryError('not_found', `No such file or directory: ${quotePath(msg.path)}`);
  const usage = await usageOf(s, user);
  if (!msg.sha256 || entry.type !== 'file') return { entry, ...usage };
  // Hashing reads the whole file: it needs the download permission, like reading it would.
  need(user.account, 'download');
  return { entry, sha256: await hashFile(user.storage, msg.path), ...usage };
}

/**
 * A download link (feature `link`, offered where the server answers browsers): the file must be there and the user
 * may download it; the link is bound to this user and this client address, usable once, for a few seconds. The
 * download itself (GET /dl/...) is audited when it happens.
 */
export async function link(s: SessionScope, _id: number, msg: ClientMessageOf<'link'>, user: LoggedIn): Promise<Results['link']> {
  const links = s.ctx.links;
  if (links === null || !s.features.includes('link')) throw new FerryError('bad_message', "'link' was not negotiated in the handshake");
  const scope = scopeOf(s, user);
  const op = new Operation(scope, 'download', { path: msg.path });
  op.permit();
  const entry = await user.storage.stat(msg.path);
  if (!entry) throw new FerryError('not_found', `No such file or directory: ${quotePath(msg.path)}`);
  if (entry.type !== 'file') throw new FerryError('is_a_directory', `Is a directory: ${quotePath(msg.path)}`);
  const made = links.mint({ user: user.account.name, path: msg.path, host: s.host });
  return { url: made.url, size: entry.size, mtime: entry.mtime, expiresMs: made.expiresMs };
}

/** DELF: a file or an empty directory. */
export async function remove(s: SessionScope, _id: number, msg: ClientMessageOf<'delete'>, user: LoggedIn): Promise<null> {
  const scope = scopeOf(s, user);
  await new Operation(scope, 'delete', { path: msg.path }).run({
    describe: async () => ({ ...actorOf(scope), path: msg.path, entry: await user.storage.stat(msg.path) }),
    work: () => user.storage.remove(msg.path),
  });
  s.info(`DELF ${escapeText(msg.path, 200)}: deleted`);
  return null;
}

/** MKDIR: a directory, with `parents` its missing parents too (and an existing directory is fine). */
export async function mkdir(s: SessionScope, _id: number, msg: ClientMessageOf<'mkdir'>, user: LoggedIn): Promise<null> {
  const scope = scopeOf(s, user);
  await new Operation(scope, 'mkdir', { path: msg.path }).run({
    describe: () => ({ ...actorOf(scope), path: msg.path, entry: null }),
    work: () => user.storage.mkdir(msg.path, { parents: msg.parents === true }),
  });
  s.info(`MKDIR ${escapeText(msg.path, 200)}: created`);
  return null;
}

/** RENAME: a file or directory within the home; replacing a file needs `overwrite` and the overwrite permission. */
export async function rename(s: SessionScope, _id: number, msg: ClientMessageOf<'rename'>, user: LoggedIn): Promise<null> {
  const scope = scopeOf(s, user);
  const op = new Operation(scope, 'rename', { path: msg.from, to: msg.to });
  let replaces: Entry | null = null;
  await op.run({
    check: async () => {
      replaces = await user.storage.stat(msg.to);
      if (msg.overwrite && replaces) op.permit('overwrite');
    },
    describe: async () => ({ ...actorOf(scope), from: msg.from, to: msg.to, entry: await user.storage.stat(msg.from), replaces }),
    work: () => user.storage.rename(msg.from, msg.to, { overwrite: msg.overwrite === true }),
  });
  s.info(`RENAME ${escapeText(msg.from, 200)} -> ${escapeText(msg.to, 200)}: done`);
  return null;
}

/** SHA-256 (hex) of a stored file, read in chunks. */
async function hashFile(storage: Storage, path: string): Promise<string> {
  const recorded = await storage.recordedSha256?.(path);
  if (recorded) return recorded;
  const handle = await storage.openRead(path);
  try {
    const hash = createHash('sha256');
    for (let position = 0; position < handle.size; ) {
      const buf = await handle.read(position, READ_CHUNK);
      if (buf.length === 0) break;
      hash.update(buf);
      position += buf.length;
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}
