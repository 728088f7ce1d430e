// SHA-256 of one file in a worker thread, so several large files (the images a build writes,
// the base it reads) hash on separate cores while the main thread keeps working. Plain
// JavaScript: the worker starts without a TypeScript loader.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';

const CHUNK = 4 * 1024 * 1024;

async function sha256(path) {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    // Two buffers: the next read is in flight while this one is hashed.
    const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let which = 0;
    let pending = fh.read(bufs[0], 0, CHUNK, null);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      const buf = bufs[which];
      which = 1 - which;
      pending = fh.read(bufs[which], 0, CHUNK, null);
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

sha256(workerData.path).then(
  (hex) => parentPort.postMessage({ hex }),
  (e) => parentPort.postMessage({ error: e.message, code: e.code }),
);
