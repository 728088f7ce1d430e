/**
 * Progress reporting for long work. Library modules take an optional `onProgress` callback and
 * know nothing of terminals; the CLI turns events into bars (TTY), plain lines, or JSON events.
 */
export interface ProgressEvent {
  /** What is running, e.g. "hashtree system", "flash vendor_a". */
  stage: string;
  done: number;
  total: number;
  unit?: 'bytes' | 'items';
}

export type ProgressFn = (e: ProgressEvent) => void;

export const noProgress: ProgressFn = () => {};
