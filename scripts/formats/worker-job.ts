import { Worker } from 'node:worker_threads';

/** What a job worker posts: progress while it runs, then `done` or `error` once. */
export interface WorkerMessage {
  type: 'progress' | 'done' | 'error';
  message?: string;
  code?: string;
  [k: string]: unknown;
}

/**
 * Runs one job in a plain-JavaScript worker thread (no TypeScript loader needed, whatever the
 * parent runs under) and settles with its `done` message, or with `fail(error message)`.
 * `onMessage` sees every message (progress counts ride on them).
 */
export function runWorkerJob(
  url: URL,
  workerData: unknown,
  o: { onMessage?: (m: WorkerMessage) => void; fail: (m: WorkerMessage) => Error; name: string },
): Promise<WorkerMessage> {
  return new Promise((resolve, reject) => {
    const w = new Worker(url, {
      workerData,
      execArgv: [],
      // Only Buffers (outside the JS heap) pass through: a small young generation keeps the
      // thread's footprint down (the build's peak RSS is measured).
      resourceLimits: { maxYoungGenerationSizeMb: 2 },
    });
    let settled = false;
    w.on('message', (m: WorkerMessage) => {
      o.onMessage?.(m);
      if (m.type === 'done') {
        settled = true;
        resolve(m);
        void w.terminate();
      } else if (m.type === 'error') {
        settled = true;
        reject(o.fail(m));
        void w.terminate();
      }
    });
    w.on('error', (e) => {
      if (!settled) reject(e);
      settled = true;
    });
    w.on('exit', (code) => {
      if (!settled) reject(new Error(`${o.name} worker exited with code ${code}`));
    });
  });
}
