// dm-verity level-0 hashing, shared by the main thread (small images) and worker threads (large
// ones). Plain JavaScript on purpose: a worker thread then starts without a TypeScript loader,
// from any working directory, in well under 100 ms.
import { hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { addUniformRun, uniformWord } from '../uniform-word.mjs';

// Bytes per read. Each read scatters into one iovec per block, and the kernel caps a readv at
// IOV_MAX (1024) iovecs, so small block sizes get proportionally smaller reads.
const CHUNK = 2 * 1024 * 1024;
const MAX_IOVECS = 1024;

/**
 * Hashes data blocks [startBlock, endBlock) of `path` (each block salted: H(salt || block), a
 * short last block zero-padded to blockSize, as avbtool's generate_hash_tree) and writes each
 * digest at `outOffset + (block - startBlock) * slot` in `out` (a view over shared memory).
 *
 * The range is hashed in chunks of consecutive blocks. Threads given the same `claim` counter (an
 * Int32Array over shared memory, starting at 0) share the range: each takes the next chunk when it
 * is ready for one, so a thread that runs faster (uniform blocks cost no hashing) or gets more CPU
 * on a busy machine does more of it, and they all finish together. Without `claim`, this call
 * hashes every chunk.
 *
 * Speed matters here (this reads the whole image): blocks are read straight into a buffer laid
 * out as `salt | block | salt | block …` (one readv scattering into per-block views), so each
 * digest is a single one-shot `crypto.hash` over contiguous bytes — no per-block hash object,
 * copy or extra JS↔C++ crossings. The digest comes back as a latin1 string (one byte per
 * character) written straight into the tree: a Buffer result would cost an ArrayBuffer per block
 * (allocation and sweeping, ~15% of the pass). A block that repeats one 32-bit word (free space:
 * zeros) has the digest of the last such block with that word, so those are hashed once per word
 * (two word reads tell almost every data block apart first). Two such buffers alternate so disk
 * I/O overlaps hashing.
 * @param {{ path: string, imageSize: number, blockSize: number, hashAlgorithm: string, salt: Uint8Array,
 *   startBlock: number, endBlock: number, slot: number, out: Uint8Array, outOffset: number,
 *   claim?: Int32Array, onBytes?: (n: number) => void,
 *   read?: (buf: Buffer, position: number) => Promise<number>, crc32?: boolean, uniform?: boolean }} job
 * @returns {Promise<{ chunks: Array<{ firstBlock: number, blocks: number, crc32?: number, uniform?: number[] }> }>}
 *   the chunks this call hashed, in the order it hashed them; with `crc32`, each has the CRC-32 of
 *   its image bytes (up to imageSize, without padding); with `uniform`, the runs of its whole
 *   blocks (within imageSize) whose 32-bit little-endian words are all equal, as flat
 *   `start, count, value` triples in block order (what a sparse writer makes FILL chunks of).
 *   Either way callers need not read the image again for it.
 */
export async function hashBlocks(job) {
  const { path, imageSize, blockSize, hashAlgorithm, salt, startBlock, endBlock, slot, outOffset } = job;
  const out = Buffer.from(job.out.buffer, job.out.byteOffset, job.out.byteLength);
  const stride = salt.length + blockSize;
  const blocksPerChunk = Math.max(1, Math.min(MAX_IOVECS, Math.floor(CHUNK / blockSize)));
  // `read(buf, position)` lets the main thread hash a sparse image through its reader; it reads
  // into a contiguous scratch buffer whose blocks are then copied into the salted layout.
  const fh = job.read ? null : await open(path, 'r');
  const scratch = job.read ? Buffer.alloc(blocksPerChunk * blockSize) : null;
  try {
    const layouts = [0, 1].map(() => {
      const buf = Buffer.alloc(blocksPerChunk * stride);
      const views = [];
      const salted = [];
      for (let i = 0; i < blocksPerChunk; i++) {
        buf.set(salt, i * stride);
        views.push(buf.subarray(i * stride + salt.length, (i + 1) * stride));
        salted.push(buf.subarray(i * stride, (i + 1) * stride));
      }
      return { buf, views, salted };
    });
    const readChunk = async (layout, firstBlock) => {
      const nBlocks = Math.min(blocksPerChunk, endBlock - firstBlock);
      const pos = firstBlock * blockSize;
      const want = Math.min(nBlocks * blockSize, imageSize - pos);
      const got = fh
        ? await readvFully(fh, layout.views, want, pos)
        : await readIntoLayout(job.read, scratch, layout.views, want, pos, blockSize);
      if (got < want) {
        const e = new Error(`image is shorter than ${imageSize} bytes (read ended at ${pos + got})`);
        e.code = 'SHORT_READ';
        e.offset = pos + got;
        throw e;
      }
      // Zero the tail of a short last block (avbtool pads it with zeros).
      if (want < nBlocks * blockSize) layout.views[nBlocks - 1].fill(0, want - (nBlocks - 1) * blockSize);
      return nBlocks;
    };
    let unclaimed = 0;
    const claimChunk = () => {
      const first = startBlock + (job.claim ? Atomics.add(job.claim, 0, 1) : unclaimed++) * blocksPerChunk;
      return first < endBlock ? first : -1;
    };
    // Digest (latin1) of a block repeating each 32-bit word seen, bounded: hostile input cannot
    // grow it, it only stops saving work.
    const uniformDigests = new Map();
    const fullBlocks = Math.floor(imageSize / blockSize);
    const chunks = [];
    let which = 0;
    let next = claimChunk();
    let pending = next >= 0 ? readChunk(layouts[0], next) : null;
    while (pending) {
      const n = await pending;
      const cur = next;
      const { buf, views, salted } = layouts[which];
      next = claimChunk();
      pending = next >= 0 ? readChunk(layouts[1 - which], next) : null;
      const chunk = { firstBlock: cur, blocks: n, crc32: undefined, uniform: job.uniform ? [] : undefined };
      let at = outOffset + (cur - startBlock) * slot;
      for (let i = 0, b = cur; i < n; i++, b++, at += slot) {
        // A short last block is zero-padded by now: its word is that of the padded block.
        const word = uniformWord(buf, i * stride + salt.length, blockSize);
        let digest = word >= 0 ? uniformDigests.get(word) : undefined;
        if (digest === undefined) {
          digest = hash(hashAlgorithm, salted[i], 'latin1');
          if (word >= 0 && uniformDigests.size < 256) uniformDigests.set(word, digest);
        }
        out.latin1Write(digest, at);
        if (chunk.uniform && word >= 0 && b < fullBlocks) addUniformRun(chunk.uniform, b, 1, word);
      }
      if (job.crc32) {
        const imageBytes = Math.min(n * blockSize, imageSize - cur * blockSize);
        let crc = 0;
        for (let i = 0; i * blockSize < imageBytes; i++)
          crc = crc32(views[i].subarray(0, Math.min(blockSize, imageBytes - i * blockSize)), crc);
        chunk.crc32 = crc >>> 0;
      }
      chunks.push(chunk);
      job.onBytes?.(n * blockSize);
      which = 1 - which;
    }
    return { chunks };
  } finally {
    await fh?.close();
  }
}

/** Reads `want` bytes at `pos` scattered over `views` (in order); returns the bytes read (< want at EOF). */
export async function readvFully(fh, views, want, pos) {
  let got = 0;
  let first = 0; // index of the first view not yet full
  let skip = 0; // bytes already filled in views[first]
  while (got < want) {
    const iov = [];
    let left = want - got;
    for (let i = first; left > 0; i++) {
      const v = i === first ? views[i].subarray(skip) : views[i];
      const take = Math.min(v.length, left);
      iov.push(take === v.length ? v : v.subarray(0, take));
      left -= take;
    }
    const { bytesRead } = await fh.readv(iov, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
    // Advance past the views this read filled.
    let adv = skip + bytesRead;
    while (first < views.length && adv >= views[first].length) {
      adv -= views[first].length;
      first++;
    }
    skip = adv;
  }
  return got;
}

/** Reads `want` bytes at `pos` through `read` into `scratch`, then copies each block into its view. */
async function readIntoLayout(read, scratch, views, want, pos, blockSize) {
  let got = 0;
  while (got < want) {
    const bytesRead = await read(scratch.subarray(got, want), pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  for (let i = 0; i * blockSize < got; i++)
    scratch.copy(views[i], 0, i * blockSize, Math.min(got, (i + 1) * blockSize));
  return got;
}

if (!isMainThread && workerData?.avbHashtreeJob) {
  const j = workerData.avbHashtreeJob;
  let since = 0;
  hashBlocks({
    ...j,
    salt: new Uint8Array(j.salt),
    out: new Uint8Array(j.shared),
    claim: j.claim && new Int32Array(j.claim),
    onBytes: (n) => {
      since += n;
      if (since >= 32 * 1024 * 1024) {
        parentPort.postMessage({ type: 'progress', bytes: since });
        since = 0;
      }
    },
  }).then(
    (r) => parentPort.postMessage({ type: 'done', bytes: since, chunks: r.chunks }),
    (e) => parentPort.postMessage({ type: 'error', message: e.message, code: e.code, offset: e.offset }),
  );
}
