import { createHash, getHashes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { FormatError, InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { crc32Join } from '../crc32.ts';
import { joinUniformBlocks, type UniformBlocks } from '../uniform-blocks.ts';
import { runWorkerJob } from '../worker-job.ts';
import { hashBlocks } from './hashtree.worker.mjs';
import { roundUp } from './vbmeta.ts';

/**
 * dm-verity hash tree exactly as avbtool builds it (calc_hash_level_offsets +
 * generate_hash_tree): every level hashes `salt || block` per block, digests are padded with
 * zeros to the next power of two, each level is padded to a whole block, and levels are stored
 * top-down (the root-most level first, the data-block level last). The root digest is the salted
 * hash of the single top block. Level 0 (which reads the whole image) is spread across this
 * thread and worker threads; the tree itself (~1/128 of the image for sha256/4 KiB) is kept in
 * memory.
 */

export interface HashtreeOptions {
  /** Bytes of the image covered by the tree (avbtool: the image rounded up to blockSize). */
  imageSize: number;
  /** Data block size = hash block size (avbtool uses one value for both). */
  blockSize: number;
  /** 'sha1' | 'sha256' | 'sha512' … (node:crypto names, as avbtool's hashlib names). */
  hashAlgorithm: string;
  salt: Buffer;
  /** Threads hashing level 0 (this one included); default: available cores, 1 for small images. */
  workers?: number;
  /** Read through this (e.g. an Android sparse image reader) instead of the file; single-threaded. */
  read?: (buf: Buffer, position: number) => Promise<number>;
  onProgress?: ProgressFn;
  /** Also take the CRC-32 of the first `imageSize` bytes while they are read (`dataCrc32`). */
  crc32?: boolean;
  /** Also map the blocks that repeat one 32-bit word while they are read (`uniformBlocks`). */
  uniformBlocks?: boolean;
}

export interface Hashtree {
  rootDigest: Buffer;
  tree: Buffer;
  levelOffsets: number[];
  treeSize: number;
  digestSize: number;
  digestPadding: number;
  /** CRC-32 of the image's first `imageSize` bytes, when asked for. */
  dataCrc32?: number;
  /** The uniform blocks among the image's whole blocks within `imageSize`, when asked for. */
  uniformBlocks?: UniformBlocks;
}

/** What level-0 hashing found in one chunk of consecutive blocks (see hashBlocks). */
type Level0Chunk = { firstBlock: number; blocks: number; crc32?: number; uniform?: number[] };

export function calcHashLevelOffsets(
  imageSize: number,
  blockSize: number,
  digestSize: number,
): { levelOffsets: number[]; treeSize: number; levelSizes: number[] } {
  const levelSizes: number[] = [];
  let treeSize = 0;
  let size = imageSize;
  while (size > blockSize) {
    const numBlocks = Math.ceil(size / blockSize);
    const levelSize = roundUp(numBlocks * digestSize, blockSize);
    levelSizes.push(levelSize);
    treeSize += levelSize;
    size = levelSize;
  }
  const levelOffsets = levelSizes.map((_, n) => levelSizes.slice(n + 1).reduce((a, b) => a + b, 0));
  return { levelOffsets, treeSize, levelSizes };
}

export function roundToPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

/** Digest size and zero padding per tree entry for a hash algorithm, validating it exists. */
export function hashtreeDigestLayout(hashAlgorithm: string): { digestSize: number; digestPadding: number } {
  const alg = hashAlgorithm.toLowerCase();
  if (!getHashes().includes(alg))
    throw new InputError(`hash algorithm ${JSON.stringify(hashAlgorithm)} is not available`, {
      code: 'AVB_UNKNOWN_HASH',
      context: { hashAlgorithm },
    });
  const digestSize = createHash(alg).digest().length;
  return { digestSize, digestPadding: roundToPow2(digestSize) - digestSize };
}

const PARALLEL_MIN_BYTES = 64 * 1024 * 1024;

/** Builds the tree for the first `imageSize` bytes of `path`. */
export async function generateHashtree(path: string, o: HashtreeOptions): Promise<Hashtree> {
  const alg = o.hashAlgorithm.toLowerCase();
  const { digestSize, digestPadding } = hashtreeDigestLayout(alg);
  const { blockSize, imageSize, salt } = o;
  if (
    !Number.isInteger(blockSize) ||
    blockSize < 512 ||
    blockSize > 1 << 20 ||
    (blockSize & (blockSize - 1)) !== 0
  )
    throw new InputError(
      `hashtree block size must be a power of two between 512 and 1 MiB, not ${blockSize}`,
      {
        code: 'AVB_BAD_BLOCK_SIZE',
      },
    );
  if (imageSize < blockSize)
    throw new FormatError({
      format: 'avb-hashtree',
      reason: 'image is smaller than one block',
      field: 'image_size',
      expected: `>= ${blockSize}`,
      found: imageSize,
      file: path,
    });
  const slot = digestSize + digestPadding;
  const { levelOffsets, treeSize } = calcHashLevelOffsets(imageSize, blockSize, slot);
  const stage = `hashtree ${path}`;

  // avbtool: a single-block image has an empty tree and the root is that block's hash.
  if (imageSize === blockSize) {
    const one = new Uint8Array(slot);
    const chunks = await runHash(path, o, alg, 1, slot, one, 0);
    return {
      rootDigest: Buffer.from(one.subarray(0, digestSize)),
      tree: Buffer.alloc(0),
      levelOffsets,
      treeSize,
      digestSize,
      digestPadding,
      ...joinChunks(chunks, o),
    };
  }

  const shared = new SharedArrayBuffer(treeSize);
  const tree = Buffer.from(shared);
  const numBlocks = Math.ceil(imageSize / blockSize);
  const workers = Math.max(
    1,
    Math.min(
      o.read ? 1 : (o.workers ?? (imageSize >= PARALLEL_MIN_BYTES ? availableParallelism() : 1)),
      Math.ceil(numBlocks / 256),
    ),
  );
  let done = 0;
  const tick = (n: number) => {
    done += n;
    o.onProgress?.({ stage, done, total: imageSize, unit: 'bytes' });
  };
  const out = new Uint8Array(shared);
  let chunks: Level0Chunk[];
  if (workers === 1) {
    chunks = await runHash(path, o, alg, numBlocks, slot, out, levelOffsets[0], tick);
  } else {
    // This thread and workers - 1 worker threads take chunks of the image from one shared counter
    // (see hashBlocks): this one starts at once, each worker as soon as it is up.
    const claim = new SharedArrayBuffer(4);
    const job = {
      path,
      imageSize,
      blockSize,
      hashAlgorithm: alg,
      salt: Uint8Array.from(salt),
      startBlock: 0,
      endBlock: numBlocks,
      slot,
      outOffset: levelOffsets[0],
      shared,
      claim,
      crc32: o.crc32 === true,
      uniform: o.uniformBlocks === true,
    };
    const results = await Promise.all([
      runHash(path, o, alg, numBlocks, slot, out, levelOffsets[0], tick, new Int32Array(claim)),
      ...Array.from({ length: workers - 1 }, () => runWorker(path, job, tick)),
    ]);
    chunks = results.flat();
  }
  const { dataCrc32, uniformBlocks } = joinChunks(chunks, o);

  const rootDigest = hashUpperLevels(tree, {
    levelOffsets,
    imageSize,
    blockSize,
    hashAlgorithm: alg,
    salt,
    slot,
  });
  return { rootDigest, tree, levelOffsets, treeSize, digestSize, digestPadding, dataCrc32, uniformBlocks };
}

/** The image-wide CRC-32 and uniform-block map, asked for in `o`, from the chunks level 0 hashed. */
function joinChunks(
  chunks: Level0Chunk[],
  o: HashtreeOptions,
): { dataCrc32?: number; uniformBlocks?: UniformBlocks } {
  const { imageSize, blockSize } = o;
  const fullBlocks = Math.floor(imageSize / blockSize);
  const inOrder = [...chunks].sort((a, b) => a.firstBlock - b.firstBlock);
  return {
    dataCrc32: o.crc32
      ? crc32Join(
          inOrder.map((c) => ({
            crc32: c.crc32 ?? 0,
            length: Math.min(imageSize, (c.firstBlock + c.blocks) * blockSize) - c.firstBlock * blockSize,
          })),
        )
      : undefined,
    uniformBlocks: o.uniformBlocks
      ? joinUniformBlocks(
          blockSize,
          inOrder.map((c) => ({
            blocks: Math.min(fullBlocks, c.firstBlock + c.blocks) - Math.min(fullBlocks, c.firstBlock),
            runs: c.uniform ?? [],
          })),
        )
      : undefined,
  };
}

/**
 * Fills levels 1… of a tree whose level 0 (the data blocks' digests) is in place, as avbtool's
 * generate_hash_tree does, and returns the root digest. Upper levels are small (level 0 divided by
 * blockSize/slot per level), so they are hashed in this thread. Also used to check a stored tree
 * without its data: fill a copy from the stored level 0 and compare.
 */
export function hashUpperLevels(
  tree: Buffer,
  o: {
    levelOffsets: number[];
    imageSize: number;
    blockSize: number;
    hashAlgorithm: string;
    salt: Buffer;
    slot: number;
  },
): Buffer {
  const { levelOffsets, blockSize, salt, slot } = o;
  const alg = o.hashAlgorithm.toLowerCase();
  const numBlocks = Math.ceil(o.imageSize / blockSize);
  let level = 0;
  let srcSize = roundUp(numBlocks * slot, blockSize);
  while (srcSize > blockSize) {
    const src = levelOffsets[level];
    const dst = levelOffsets[level + 1];
    const n = srcSize / blockSize;
    const base = createHash(alg).update(salt);
    for (let i = 0; i < n; i++) {
      const d = base
        .copy()
        .update(tree.subarray(src + i * blockSize, src + (i + 1) * blockSize))
        .digest();
      d.copy(tree, dst + i * slot);
    }
    level++;
    srcSize = roundUp(n * slot, blockSize);
  }
  const top = levelOffsets[level];
  return createHash(alg)
    .update(salt)
    .update(tree.subarray(top, top + blockSize))
    .digest();
}

function shortRead(path: string, e: { message: string; offset?: number }): FormatError {
  return new FormatError({ format: 'avb-hashtree', reason: e.message, offset: e.offset, file: path });
}

/** Level 0 of blocks [0, endBlock) hashed in this thread (the chunks it claims, with `claim`). */
async function runHash(
  path: string,
  o: HashtreeOptions,
  alg: string,
  endBlock: number,
  slot: number,
  out: Uint8Array,
  outOffset: number,
  onBytes?: (n: number) => void,
  claim?: Int32Array,
): Promise<Level0Chunk[]> {
  try {
    const r = await hashBlocks({
      path,
      imageSize: o.imageSize,
      blockSize: o.blockSize,
      hashAlgorithm: alg,
      salt: o.salt,
      startBlock: 0,
      endBlock,
      slot,
      out,
      outOffset,
      claim,
      onBytes,
      read: o.read,
      crc32: o.crc32 === true,
      uniform: o.uniformBlocks === true,
    });
    return r.chunks;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'SHORT_READ') throw shortRead(path, e as Error);
    throw e;
  }
}

async function runWorker(
  path: string,
  job: Record<string, unknown>,
  tick: (n: number) => void,
): Promise<Level0Chunk[]> {
  const m = await runWorkerJob(
    new URL('./hashtree.worker.mjs', import.meta.url),
    { avbHashtreeJob: job },
    {
      name: 'hashtree',
      onMessage: (x) => {
        if (x.bytes) tick(x.bytes as number);
      },
      fail: (x) =>
        x.code === 'SHORT_READ'
          ? shortRead(path, { message: x.message ?? '', offset: x.offset as number | undefined })
          : new InputError(`hashing ${path} failed: ${x.message}`, {
              code: x.code ?? 'HASHTREE_FAILED',
              context: { file: path },
            }),
    },
  );
  return m.chunks as Level0Chunk[];
}
