/** The Web Worker that hashes uploads (hash-core.ts); built by scripts/build-web.mjs as its own asset. */
import { HashCore, type HashReply, type HashRequest } from './hash-core.ts';

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<HashRequest>) => void) | null; postMessage(r: HashReply): void };
const core = new HashCore((r) => scope.postMessage(r));
scope.onmessage = (e) => core.handle(e.data);
