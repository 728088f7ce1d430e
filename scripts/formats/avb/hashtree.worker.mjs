// dm-verity level-0 hashing, shared by the main thread (small images) and worker threads (large
// ones). Plain JavaScript on purpose: a worker thread then starts without a TypeScript loader,
// from any working directory, in well under 100 ms.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

const CHUNK = 2 * 1024 * 1024;

/**
 * Hashes data blocks [startBlock, endBlock) of `path` (each block salted: H(salt || block), a
 * short last block zero-padded to blockSize, as avbtool's generate_hash_tree) and writes each
 * digest at `outOffset + index * slot` in `out` (a view over shared memory). Reads are
 * double-buffered so disk I/O overlaps hashing.
 * @param {{ path: string, imageSize: number, blockSize: number, hashAlgorithm: string, salt: Uint8Array,
 *   startBlock: number, endBlock: number, slot: number, out: Uint8Array, outOffset: number,
 *   onBytes?: (n: number) => void, read?: (buf: Buffer, position: number) => Promise<number> }} job
 * @returns {Promise<void>}
 */
export async function hashBlocks(job) {
  const { path, imageSize, blockSize, hashAlgorithm, startBlock, endBlock, slot, out, outOffset } = job;
  const base = createHash(hashAlgorithm).update(job.salt);
  const blocksPerChunk = Math.max(1, Math.floor(CHUNK / blockSize));
  // `read(buf, position)` lets the main thread hash a sparse image through its reader.
  const fh = job.read ? null : await open(path, 'r');
  const readAt = job.read ?? ((b, pos) => fh.read(b, 0, b.length, pos).then((r) => r.bytesRead));
  try {
    const bufs = [Buffer.alloc(blocksPerChunk * blockSize), Buffer.alloc(blocksPerChunk * blockSize)];
    const readChunk = async (buf, firstBlock) => {
      const nBlocks = Math.min(blocksPerChunk, endBlock - firstBlock);
      const pos = firstBlock * blockSize;
      const want = Math.min(nBlocks * blockSize, imageSize - pos);
      let got = 0;
      while (got < want) {
        const bytesRead = await readAt(buf.subarray(got, want), pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got < want) {
        const e = new Error(`image is shorter than ${imageSize} bytes (read ended at ${pos + got})`);
        e.code = 'SHORT_READ';
        e.offset = pos + got;
        throw e;
      }
      // Zero the tail of a short last block (avbtool pads it with zeros).
      if (want < nBlocks * blockSize) buf.fill(0, want, nBlocks * blockSize);
      return nBlocks;
    };
    let cur = startBlock;
    let which = 0;
    let pending = cur < endBlock ? readChunk(bufs[0], cur) : null;
    while (pending) {
      const n = await pending;
      const buf = bufs[which];
      const next = cur + n;
      pending = next < endBlock ? readChunk(bufs[1 - which], next) : null;
      for (let i = 0; i < n; i++) {
        const d = base
          .copy()
          .update(buf.subarray(i * blockSize, (i + 1) * blockSize))
          .digest();
        out.set(d, outOffset + (cur - startBlock + i) * slot);
      }
      job.onBytes?.(n * blockSize);
      cur = next;
      which = 1 - which;
    }
  } finally {
    await fh?.close();
  }
}

if (!isMainThread && workerData?.avbHashtreeJob) {
  const j = workerData.avbHashtreeJob;
  let since = 0;
  hashBlocks({
    ...j,
    salt: new Uint8Array(j.salt),
    out: new Uint8Array(j.shared),
    onBytes: (n) => {
      since += n;
      if (since >= 32 * 1024 * 1024) {
        parentPort.postMessage({ type: 'progress', bytes: since });
        since = 0;
      }
    },
  }).then(
    () => parentPort.postMessage({ type: 'done', bytes: since }),
    (e) => parentPort.postMessage({ type: 'error', message: e.message, code: e.code, offset: e.offset }),
  );
}
