// The storage conformance suite (test/storage/conformance.ts) against the s3 driver on a real object store
// (Swift with s3api, started by scripts/services/swift.sh): a bucket of its own; the second server is another
// driver on the same bucket and prefix.
import { S3Driver } from '../../src/storage/s3/mod.ts';
import { conformance } from '../storage/conformance.ts';
import { closeStore, openStore, storeMissing } from './store.ts';

conformance({
  name: 'object store (s3)',
  missing: storeMissing,
  objectStore: true,
  open: async () => {
    const store = await openStore();
    const location = { bucket: store.bucket, prefix: 'conformance' };
    const driver = new S3Driver(location, { endpoint: store.endpoint });
    const second = new S3Driver(location, { endpoint: store.endpoint });
    await driver.check();
    return {
      driver,
      second,
      close: async () => {
        driver.close();
        second.close();
        await closeStore(store);
      },
    };
  },
});
