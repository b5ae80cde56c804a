// The storage conformance suite (conformance.ts) against the local-disk driver, in a temporary data directory;
// one server per data directory, so the two-server case is left out.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalDiskDriver } from '../../src/storage/local/mod.ts';
import { conformance } from './conformance.ts';

conformance({
  name: 'local disk',
  missing: () => null,
  objectStore: false,
  open: async () => {
    const root = await mkdtemp(join(tmpdir(), 'ferry-conformance-'));
    return { driver: new LocalDiskDriver(root), second: null, close: () => rm(root, { recursive: true, force: true }) };
  },
});
