import cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressFn } from '../progress.ts';

/**
 * Renders ProgressEvents: one bar per stage on a TTY, a plain line every 10% otherwise, and
 * newline-delimited JSON events on stderr with --json (stdout stays one JSON document).
 */
export function makeProgress(json: boolean): ProgressFn & { stop(): void } {
  const tty = process.stderr.isTTY && !json && !process.env.CI;
  const multi = tty
    ? new cliProgress.MultiBar(
        {
          format: '{stage} [{bar}] {percentage}% {value}/{total}',
          clearOnComplete: false,
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  const lastDecile = new Map<string, number>();

  const fn = ((e: ProgressEvent) => {
    if (json) {
      process.stderr.write(`${JSON.stringify({ event: 'progress', ...e })}\n`);
      return;
    }
    if (multi) {
      let bar = bars.get(e.stage);
      if (!bar) {
        bar = multi.create(e.total, 0, { stage: e.stage });
        bars.set(e.stage, bar);
      }
      bar.setTotal(e.total);
      bar.update(e.done, { stage: e.stage });
      return;
    }
    const decile = e.total > 0 ? Math.floor((e.done / e.total) * 10) : 10;
    if (lastDecile.get(e.stage) !== decile) {
      lastDecile.set(e.stage, decile);
      process.stderr.write(`${e.stage}: ${decile * 10}%\n`);
    }
  }) as ProgressFn & { stop(): void };
  fn.stop = () => multi?.stop();
  return fn;
}
