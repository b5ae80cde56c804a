import cliProgress from 'cli-progress';
import type { TransferProgress } from '../client/mod.ts';
import { formatBytes, formatRate } from './format.ts';

export interface ProgressDisplay {
  update(p: TransferProgress): void;
  stop(): void;
}

const none: ProgressDisplay = { update() {}, stop() {} };

/** A progress bar with rate and ETA on stderr when it is a terminal; nothing otherwise. */
export function progressBar(label: string, enabled = process.stderr.isTTY === true): ProgressDisplay {
  if (!enabled) return none;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} |{bar}| {percentage}% | {done} / {size} | {rate} | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 40,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let begun = false;
  let base = 0;
  return {
    update({ done, total }) {
      if (!begun) {
        begun = true;
        base = done;
        bar.start(Math.max(total, 1), done, { done: formatBytes(done), size: formatBytes(total), rate: '-' });
      }
      bar.update(done, { done: formatBytes(done), size: formatBytes(total), rate: formatRate(done - base, Date.now() - started) });
    },
    stop() {
      if (begun) bar.stop();
    },
  };
}
