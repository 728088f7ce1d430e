import { parentPort, workerData } from 'node:worker_threads';
import { asOmieError } from '../../errors.ts';
import { applyPartition, type PartitionJob } from './apply.ts';

/** Worker thread: applies one partition (see extract.ts) and posts progress, then the result or error. */
const job = workerData as PartitionJob;
applyPartition(job, (done, total) => parentPort!.postMessage({ kind: 'progress', done, total }))
  .then((result) => parentPort!.postMessage({ kind: 'done', result }))
  .catch((e: unknown) => {
    const err = asOmieError(e);
    parentPort!.postMessage({
      kind: 'error',
      error: {
        name: err.name,
        message: err.message,
        code: err.code,
        exitCode: err.exitCode,
        context: err.context,
      },
    });
  });
