// dm-verity FEC parity check for a range of RS rounds, shared by the main thread (small images)
// and worker threads (large ones). Plain JavaScript so a worker starts without a TypeScript loader.
import { open } from 'node:fs/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FEC_BLOCKSIZE, NN, rsParity, rsTables } from '../reed-solomon.mjs';

/** Rounds per read: rsN columns × this many 4 KiB blocks each (≈ 8 MiB for 2 roots). */
const ROUNDS_PER_CHUNK = 8;

/**
 * libfec's layout (fec_ecc_interleave): the data area [0, dataSize) is cut into rsN = 255 - roots
 * columns of `rounds` blocks; round i's codewords take byte k of block i of every column, and
 * its parity (4096 × roots bytes, `roots` per k) sits at fecOffset + i × roots × 4096. Each chunk
 * of rounds is read as one contiguous run per column, the parity recomputed and compared.
 * @param {{ path: string, dataSize: number, fecOffset: number, roots: number, rounds: number,
 *   startRound: number, endRound: number, onRounds?: (n: number) => void }} job
 * @returns {Promise<{ round: number, byte: number } | null>} the first round whose stored parity
 *   differs (and the first differing byte in that round's parity), or null when all match.
 */
export async function checkFecRounds(job) {
  const { path, dataSize, fecOffset, roots, rounds, startRound, endRound } = job;
  const rsN = NN - roots;
  const t = rsTables(roots);
  const column = rounds * FEC_BLOCKSIZE;
  const data = Buffer.alloc(rsN * ROUNDS_PER_CHUNK * FEC_BLOCKSIZE);
  const stored = Buffer.alloc(ROUNDS_PER_CHUNK * roots * FEC_BLOCKSIZE);
  const parity = Buffer.alloc(roots * FEC_BLOCKSIZE);
  const fh = await open(path, 'r');
  try {
    for (let r = startRound; r < endRound; r += ROUNDS_PER_CHUNK) {
      const n = Math.min(ROUNDS_PER_CHUNK, endRound - r);
      const span = n * FEC_BLOCKSIZE;
      // Column j of this chunk lands at j × span in `data`; bytes past dataSize read as zeros.
      for (let j = 0; j < rsN; j++) {
        const pos = j * column + r * FEC_BLOCKSIZE;
        const want = Math.max(0, Math.min(span, dataSize - pos));
        await readFully(fh, data, j * span, want, pos);
        if (want < span) data.fill(0, j * span + want, (j + 1) * span);
      }
      const storedLen = n * roots * FEC_BLOCKSIZE;
      const got = await readFully(fh, stored, 0, storedLen, fecOffset + r * roots * FEC_BLOCKSIZE);
      if (got < storedLen) stored.fill(0, got, storedLen);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < FEC_BLOCKSIZE; k++)
          rsParity(t, roots, data, i * FEC_BLOCKSIZE + k, span, rsN, parity, k * roots);
        const s = stored.subarray(i * parity.length, (i + 1) * parity.length);
        if (!parity.equals(s)) {
          let byte = 0;
          while (parity[byte] === s[byte]) byte++;
          return { round: r + i, byte };
        }
      }
      job.onRounds?.(n);
    }
    return null;
  } finally {
    await fh.close();
  }
}

async function readFully(fh, buf, off, len, pos) {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, off + got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

if (!isMainThread && workerData?.avbFecJob) {
  checkFecRounds({
    ...workerData.avbFecJob,
    onRounds: (n) => parentPort.postMessage({ type: 'progress', rounds: n }),
  }).then(
    (bad) => parentPort.postMessage({ type: 'done', bad }),
    (e) => parentPort.postMessage({ type: 'error', message: e.message, code: e.code }),
  );
}
