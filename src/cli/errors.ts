import { FerryError } from '../core/errors.ts';

/** A command line that cannot be run as given: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Prints one clear line (or the few lines of a host-key warning) and sets a non-zero exit code. */
export function handleError(err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const usage = e.name === 'UsageError' || e.name === 'CACError';
  let message = e.message;
  if (e instanceof FerryError && !message.toLowerCase().includes(e.code.replace(/_/g, ' '))) message = `${message} (${e.code})`;
  if (process.env.FERRY_DEBUG && e.stack) message += `\n${e.stack}`;
  process.stderr.write(`ferry: ${message}\n`);
  process.exitCode = usage ? 2 : 1;
}
