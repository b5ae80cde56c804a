import type { ClientEncodings } from '../../src/plugin/mod.ts';
import { availableCodecs, codecByName, worthCompressing } from './codecs.ts';

/** The client side of the compress plugin: what `connect` and `batch` offer in the handshake. */
export function compressionForClient(): ClientEncodings {
  const codecs = availableCodecs();
  return {
    names: codecs.map((c) => c.name),
    encoder: (name) => codecByName(name)?.encoder() ?? null,
    decoder: (name) => codecByName(name)?.decoder() ?? null,
    worthEncoding: worthCompressing,
  };
}
