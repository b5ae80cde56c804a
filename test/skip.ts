/**
 * A test that cannot run on this machine (no mkfifo, no /proc/self/fd, not POSIX...) says so with `return
 * skip('why')`: the runner (scripts/test.mjs) counts it as skipped, never as passed. Where FERRY_NO_SKIP is set
 * (CI, on a machine that has everything these tests need), a skip fails the test instead, so that a test that
 * must run here cannot hide.
 *
 * @example
 * ```ts
 * t('a FIFO is not opened', async () => {
 *   if (spawnSync('mkfifo', [path]).status !== 0) return skip('no mkfifo on this system');
 *   ...
 * });
 * ```
 */
export function skip(reason: string): void {
  if (process.env.FERRY_NO_SKIP) throw new Error(`Skipped on a machine where it must run (FERRY_NO_SKIP): ${reason}`);
  // On a line of its own: uvu prints a suite's progress dots on the line before.
  console.log(`\n${SKIP_MARK} ${reason}`);
}

/** What a skip prints at the start of its line; the runner counts these lines. */
export const SKIP_MARK = '[ferry-test-skipped]';

/**
 * A test of `suite` that runs when what it needs is there (`missing()` gives null), and is skipped with the
 * reason `missing()` gives otherwise (counted, never passed; failed under FERRY_NO_SKIP).
 */
export function testWhen(suite: (name: string, body: () => Promise<void>) => void, missing: () => string | null, name: string, body: () => Promise<void>): void {
  suite(name, async () => {
    const why = missing();
    if (why !== null) return skip(why);
    await body();
  });
}
