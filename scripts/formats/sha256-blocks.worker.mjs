// Worker thread of io.ts's SequentialWriter: SHA-256 of the file it writes, from its staging
// blocks (shared memory, hashed in place) and of the runs of zeros it skips, in the order posted.
// Plain JavaScript, so it needs no TypeScript loader.
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const blocks = workerData.blocks.map((b) => new Uint8Array(b));
const zeros = new Uint8Array(4 << 20);
const hash = createHash('sha256');

parentPort.on('message', (m) => {
  if (m.end) {
    parentPort.postMessage({ id: m.id, hex: hash.digest('hex') });
    return;
  }
  if (m.zeros !== undefined)
    for (let n = m.zeros; n > 0; n -= zeros.length) hash.update(zeros.subarray(0, Math.min(n, zeros.length)));
  else hash.update(blocks[m.block].subarray(0, m.length));
  parentPort.postMessage({ id: m.id });
});
