// SHA-256 of one file in a worker thread, so several large files (the images a build writes,
// the base it reads) hash on separate cores while the main thread keeps working. Plain
// JavaScript: the worker starts without a TypeScript loader.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';

const CHUNK = 4 * 1024 * 1024;

/**
 * `direct`: read with O_DIRECT, for a file just written with O_DIRECT (not in the page cache):
 * reading it through the cache would fill GiBs of fresh cache pages only to hash them once.
 * O_DIRECT needs page-aligned memory: a WebAssembly memory's pages are (a Buffer's need not be).
 */
async function openForHashing(path, direct) {
  if (direct) {
    try {
      const fh = await open(path, constants.O_RDONLY | constants.O_DIRECT);
      const mem = new WebAssembly.Memory({ initial: (2 * CHUNK) / 65536, maximum: (2 * CHUNK) / 65536 });
      const all = Buffer.from(mem.buffer);
      return { fh, bufs: [all.subarray(0, CHUNK), all.subarray(CHUNK)] };
    } catch (e) {
      if (e.code !== 'EINVAL') throw e; // a filesystem without O_DIRECT: read through the cache
    }
  }
  return { fh: await open(path, 'r'), bufs: [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)] };
}

async function sha256(path, direct) {
  const h = createHash('sha256');
  const { fh, bufs } = await openForHashing(path, direct);
  try {
    // Two buffers: the next read is in flight while this one is hashed. Reads are at explicit,
    // chunk-aligned positions (O_DIRECT wants aligned offsets).
    let pos = 0;
    let which = 0;
    let pending = fh.read(bufs[0], 0, CHUNK, 0);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      const buf = bufs[which];
      which = 1 - which;
      pos += bytesRead;
      pending = fh.read(bufs[which], 0, CHUNK, pos);
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** A filesystem may take O_DIRECT at open and refuse the reads: hash through the cache then. */
async function sha256Any(path, direct) {
  try {
    return await sha256(path, direct);
  } catch (e) {
    if (!direct || e.code !== 'EINVAL') throw e;
    return sha256(path, false);
  }
}

sha256Any(workerData.path, workerData.direct === true).then(
  (hex) => parentPort.postMessage({ hex }),
  (e) => parentPort.postMessage({ error: e.message, code: e.code }),
);
