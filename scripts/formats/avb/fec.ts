import { availableParallelism } from 'node:os';
import { InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { FEC_BLOCKSIZE, NN } from '../reed-solomon.mjs';
import { runWorkerJob } from '../worker-job.ts';
import { checkFecRounds } from './fec.worker.mjs';

/**
 * Checks the dm-verity FEC of a hashtree image: the Reed-Solomon parity libfec (`fec --encode`,
 * run by avbtool add_hashtree_footer) stored at `fecOffset` is recomputed over [0, dataSize) —
 * the data and hash tree, fec_offset bytes — and compared. avbtool and libavb never check it; a
 * device reads it only to repair blocks, so bad parity is found when it is needed. Rounds are
 * spread over worker threads.
 */
export interface FecCheck {
  dataSize: number;
  fecOffset: number;
  fecSize: number;
  roots: number;
  workers?: number;
  onProgress?: ProgressFn;
}

export interface FecMismatch {
  message: string;
  /** First bad 4096-byte block of the FEC area. */
  firstBadBlock?: number;
  /** Its offset in the image. */
  offset?: number;
}

const PARALLEL_MIN_ROUNDS = 64;

/** undefined when the stored parity matches; otherwise where it first differs. */
export async function verifyFec(path: string, o: FecCheck): Promise<FecMismatch | undefined> {
  const rsN = NN - o.roots;
  if (!Number.isInteger(o.roots) || o.roots < 2 || o.roots > 24)
    return { message: `fec_num_roots ${o.roots} is outside libfec's 2–24` };
  if (o.dataSize % FEC_BLOCKSIZE !== 0)
    return { message: `fec_offset ${o.dataSize} is not a multiple of ${FEC_BLOCKSIZE}` };
  const rounds = Math.ceil(o.dataSize / FEC_BLOCKSIZE / rsN);
  const want = rounds * o.roots * FEC_BLOCKSIZE;
  if (o.fecSize !== want)
    return {
      message: `fec_size is ${o.fecSize}, ${rounds} RS rounds of ${o.roots} roots over ${o.dataSize} bytes take ${want}`,
    };
  const workers = Math.max(
    1,
    Math.min(o.workers ?? availableParallelism(), Math.ceil(rounds / PARALLEL_MIN_ROUNDS)),
  );
  const per = Math.ceil(rounds / workers);
  let done = 0;
  const stage = `fec ${path}`;
  const tick = (n: number) => {
    done += n;
    o.onProgress?.({ stage, done, total: rounds, unit: 'items' });
  };
  const job = { path, dataSize: o.dataSize, fecOffset: o.fecOffset, roots: o.roots, rounds };
  const ranges = Array.from({ length: workers }, (_, w) => [w * per, Math.min(rounds, (w + 1) * per)]).filter(
    ([a, b]) => a < b,
  );
  const found = await Promise.all(
    ranges.map(([startRound, endRound]) =>
      workers === 1
        ? checkFecRounds({ ...job, startRound, endRound, onRounds: tick })
        : runWorker({ ...job, startRound, endRound }, tick),
    ),
  );
  const bad = found.find((f) => f !== null);
  if (!bad) return undefined;
  const block = Math.floor((bad.round * o.roots * FEC_BLOCKSIZE + bad.byte) / FEC_BLOCKSIZE);
  return {
    message: `FEC parity of RS round ${bad.round} (FEC block ${block}, offset ${o.fecOffset + block * FEC_BLOCKSIZE}) does not match the data and tree`,
    firstBadBlock: block,
    offset: o.fecOffset + block * FEC_BLOCKSIZE,
  };
}

async function runWorker(
  job: Record<string, unknown>,
  tick: (n: number) => void,
): Promise<{ round: number; byte: number } | null> {
  const m = await runWorkerJob(
    new URL('./fec.worker.mjs', import.meta.url),
    { avbFecJob: job },
    {
      name: 'FEC',
      onMessage: (x) => {
        if (x.rounds) tick(x.rounds as number);
      },
      fail: (x) =>
        new InputError(`checking the FEC of ${job.path} failed: ${x.message}`, {
          code: x.code ?? 'AVB_FEC_FAILED',
          context: { file: job.path },
        }),
    },
  );
  return (m.bad as { round: number; byte: number } | null) ?? null;
}
