import cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressFn } from '../progress.ts';

const THROTTLE_MS = 100;

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
  const lastEmit = new Map<string, number>();

  const fn = ((e: ProgressEvent) => {
    // Byte-level producers report every chunk: at most one event per stage every 100 ms (plus the
    // first and the last), as a synchronous stderr write per chunk costs seconds on a large image.
    const now = performance.now();
    const last = lastEmit.get(e.stage);
    if (last !== undefined && e.done < e.total && now - last < THROTTLE_MS) return;
    lastEmit.set(e.stage, now);
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
