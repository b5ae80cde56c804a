import type { EventEmitter } from 'node:events';

/**
 * Resolves on the first of `events`, or when the stream closes or fails: a destroyed stream never emits
 * 'drain' or 'end', so waiting for those alone can hang. The caller checks its own failure state after.
 */
export function settled(stream: EventEmitter, ...events: string[]): Promise<void> {
  return new Promise((resolve) => {
    const all = [...events, 'close', 'error'];
    const done = () => {
      for (const e of all) stream.off(e, done);
      resolve();
    };
    for (const e of all) stream.once(e, done);
  });
}
