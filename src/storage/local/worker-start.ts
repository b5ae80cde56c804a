import process from 'node:process';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a commit worker (worker.ts). The one place that knows how the running program reaches that module:
 *
 * - the single executable: the build replaces this module with one that starts the worker from the bundle of
 *   worker.ts it embeds (scripts/build.mjs, `workerSource`), so nothing is read from disk;
 * - Deno runs the TypeScript file in a worker as it is;
 * - Node runs the source through tsx, which a worker thread does not inherit: a two-line bootstrap registers it
 *   in the worker first.
 */
export function startWorker(options: WorkerOptions): Worker {
  // (`deno check` applies tsconfig.json's `types: ["node"]` without the global that types import.meta.url.)
  const url = new URL('./worker.ts', (import.meta as ImportMeta & { url: string }).url);
  if ('deno' in process.versions) {
    // Deno applies resourceLimits its own way: with them, a message of a megabyte or more to the worker (a
    // bundle's piece) is dropped without a word (seen with Deno 2.9), and the bundle would wait for ever. Without them.
    const { resourceLimits: _, ...rest } = options;
    return new Worker(url, rest);
  }
  const bootstrap = `import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${JSON.stringify(url.href)}));`;
  return new Worker(bootstrap, { ...options, eval: true });
}
