import { createHash, hash as oneShotHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { InputError } from '../../errors.ts';
import { bsdiff } from './bsdiff.ts';
import { bestFullOperation, type ReplaceType } from './compress.ts';
import { appendBlock, BlockSet, blocksIn, type Extent, normalize, sublist } from './extents.ts';
import type { BlobFile, GeneratedOperation, OperationType } from './payload-file.ts';

/**
 * Operations of an incremental (delta) payload for one partition, as delta_generator's A/B
 * generator makes them (payload_generator/delta_diff_utils.cc DeltaReadPartition, ab_generator.cc):
 *
 * 1. Every 4 KiB block of both images is identified by its content. New blocks of zeros become
 *    ZERO operations; new blocks found anywhere in the old image become SOURCE_COPY operations
 *    (DeltaMovedAndZeroBlocks).
 * 2. Each file of the new filesystem is diffed against the file of the same path in the old one
 *    (or, for a new path, the most similar name in the same folder), over the blocks step 1 left:
 *    SOURCE_COPY when unchanged, a bsdiff patch (BROTLI_BSDIFF, or SOURCE_BSDIFF) when it is
 *    smaller than compressing the new data, REPLACE_XZ/REPLACE otherwise (ReadExtentsToDiff).
 *    Never a whole-partition bsdiff.
 * 3. The blocks no file owns (filesystem metadata) are diffed the same way in 2 MiB chunks against
 *    the old blocks no operation has read yet.
 * Operations are sorted by destination and carry the SHA-256 of the source blocks they read.
 */

export interface DeltaFile {
  /** Path inside the filesystem (how old and new files are paired). */
  name: string;
  /** Blocks of the file's data, in file order. */
  extents: Extent[];
}

export interface DeltaOptions {
  blockSize: number;
  /** Blocks per operation for zeros, copies and data no file owns (delta_generator: 2 MiB). */
  softChunkBlocks: number;
  /** Blocks per operation of one file at most (bounds memory; larger files are cut). */
  hardChunkBlocks: number;
  /** Largest source a bsdiff is tried on (bsdiff needs ~17x its source in memory). */
  maxDiffBytes: number;
  /** How to encode new data when no diff is better. */
  codecs: ReplaceType[];
  diffType: 'BROTLI_BSDIFF' | 'SOURCE_BSDIFF';
  blobs: BlobFile;
  oldFiles?: DeltaFile[];
  newFiles?: DeltaFile[];
  /** New blocks no operation writes (dm-verity data the device computes). */
  skip?: Extent[];
  threads?: number;
  onBytes?: (done: number, total: number) => void;
}

export interface DeltaPartition {
  oldInfo: { size: number; sha256: Buffer };
  newInfo: { size: number; sha256: Buffer };
  operations: GeneratedOperation[];
}

const SCAN_PIECE = 4 << 20;

interface Scan {
  size: number;
  blocks: number;
  sha256: Buffer;
  /** Content id of each block ('' for a block of zeros). */
  ids: string[];
}

/** One pass over an image: its SHA-256 and an id per block. */
async function scan(fh: FileHandle, file: string, bs: number): Promise<Scan> {
  const size = (await fh.stat()).size;
  if (size % bs)
    throw new InputError(`${file}: its size ${size} is not a multiple of the block size ${bs}`, {
      code: 'PAYLOAD_IMAGE_UNALIGNED',
      context: { file, size, blockSize: bs },
    });
  const whole = createHash('sha256');
  const ids: string[] = new Array(size / bs);
  const zero = Buffer.alloc(bs);
  const buf = Buffer.allocUnsafe(SCAN_PIECE);
  for (let pos = 0; pos < size; ) {
    const n = Math.min(SCAN_PIECE, size - pos);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead !== n)
      throw new InputError(`${file} shrank while it was being read`, {
        code: 'SHORT_READ',
        context: { file },
      });
    const piece = buf.subarray(0, n);
    whole.update(piece);
    for (let o = 0; o < n; o += bs) {
      const block = piece.subarray(o, o + bs);
      ids[(pos + o) / bs] = block.equals(zero) ? '' : oneShotHash('sha1', block, 'base64');
    }
    pos += n;
  }
  return { size, blocks: size / bs, sha256: whole.digest(), ids };
}

async function readExtents(fh: FileHandle, extents: readonly Extent[], bs: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(blocksIn(extents) * bs);
  let at = 0;
  for (const e of extents) {
    const len = e.numBlocks * bs;
    for (let got = 0; got < len; ) {
      const { bytesRead } = await fh.read(out, at + got, len - got, e.startBlock * bs + got);
      if (bytesRead === 0) throw new InputError('image ends inside an extent', { code: 'SHORT_READ' });
      got += bytesRead;
    }
    at += len;
  }
  return out;
}

/** Levenshtein distance, for pairing a new file with the most similar old name (GetOldFile). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => i);
  for (let j = 1; j <= b.length; j++) {
    let prev = d[0];
    d[0] = j;
    for (let i = 1; i <= a.length; i++) {
      const cur = d[i];
      d[i] = Math.min(d[i] + 1, d[i - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[a.length];
}

const dirOf = (p: string) => p.slice(0, p.lastIndexOf('/') + 1);

/**
 * Whether a diff of `diffSize` beats the operation so far: IsDiffOperationBetter, which charges a
 * diff for its source hash and extents in the manifest.
 */
function diffIsBetter(type: OperationType, blobSize: number, diffSize: number, srcExtents: number): boolean {
  if (!type.startsWith('REPLACE')) return diffSize < blobSize;
  return diffSize + (1 + 1 + 32 + 1 + 1) + srcExtents * 6 < blobSize;
}

interface Job {
  name: string;
  oldExtents: Extent[];
  newExtents: Extent[];
  chunkBlocks: number;
}

export async function deltaOperations(
  oldImage: string,
  newImage: string,
  opts: DeltaOptions,
): Promise<DeltaPartition> {
  const bs = opts.blockSize;
  const oldFh = await open(oldImage, 'r');
  const newFh = await open(newImage, 'r');
  try {
    const [oldScan, newScan] = await Promise.all([scan(oldFh, oldImage, bs), scan(newFh, newImage, bs)]);
    const operations: GeneratedOperation[] = [];
    const oldVisited = new BlockSet();
    const newVisited = new BlockSet();
    if (opts.skip) newVisited.addExtents(opts.skip);

    // 1. Zeros and blocks the old image already has, wherever they are.
    const oldZero = new BlockSet();
    const firstOld = new Map<string, number>();
    for (let b = oldScan.blocks - 1; b >= 0; b--) {
      const id = oldScan.ids[b];
      if (id === '') oldZero.add(b);
      else firstOld.set(id, b);
    }
    oldVisited.addExtents(oldZero.extents());
    const newZeros: Extent[] = [];
    const oldSame: Extent[] = [];
    const newSame: Extent[] = [];
    for (let b = 0; b < newScan.blocks; b++) {
      if (newVisited.has(b)) continue;
      const id = newScan.ids[b];
      if (id === '') {
        appendBlock(newZeros, b);
        continue;
      }
      const from = firstOld.get(id);
      if (from === undefined) continue;
      appendBlock(oldSame, from);
      appendBlock(newSame, b);
    }
    newVisited.addExtents(newZeros);
    for (const e of newZeros)
      for (let o = 0; o < e.numBlocks; o += opts.softChunkBlocks)
        operations.push({
          type: 'ZERO',
          dstExtents: [
            { startBlock: e.startBlock + o, numBlocks: Math.min(opts.softChunkBlocks, e.numBlocks - o) },
          ],
        });
    oldVisited.addExtents(oldSame);
    newVisited.addExtents(newSame);
    let used = 0;
    for (const e of newSame)
      for (let o = 0; o < e.numBlocks; o += opts.softChunkBlocks) {
        const n = Math.min(opts.softChunkBlocks, e.numBlocks - o);
        operations.push({
          type: 'SOURCE_COPY',
          srcExtents: normalize(sublist(oldSame, used, n)),
          dstExtents: [{ startBlock: e.startBlock + o, numBlocks: n }],
        });
        used += n;
      }

    // 2. File by file, over what step 1 left.
    const jobs: Job[] = [];
    const oldByName = new Map((opts.oldFiles ?? []).map((f) => [f.name, f]));
    const oldByDir = new Map<string, DeltaFile[]>();
    for (const f of opts.oldFiles ?? []) {
      const d = dirOf(f.name);
      if (!oldByDir.has(d)) oldByDir.set(d, []);
      oldByDir.get(d)!.push(f);
    }
    const clip = (extents: Extent[], blocks: number) =>
      normalize(
        extents
          .map((e) => ({ startBlock: e.startBlock, numBlocks: Math.min(e.numBlocks, blocks - e.startBlock) }))
          .filter((e) => e.numBlocks > 0),
      );
    for (const file of opts.newFiles ?? []) {
      const newExtents = newVisited.filter(clip(file.extents, newScan.blocks));
      newVisited.addExtents(newExtents);
      if (!newExtents.length) continue;
      let old = oldByName.get(file.name);
      if (!old) {
        let best = Number.POSITIVE_INFINITY;
        for (const c of oldByDir.get(dirOf(file.name)) ?? []) {
          const d = distance(file.name, c.name);
          if (d < best) [best, old] = [d, c];
        }
      }
      const oldExtents = old ? oldZero.filter(clip(old.extents, oldScan.blocks)) : [];
      oldVisited.addExtents(oldExtents);
      jobs.push({ name: file.name, oldExtents, newExtents, chunkBlocks: opts.hardChunkBlocks });
    }
    // 3. Whatever no file owns, against the old blocks nothing has read.
    const newRest = newVisited.filter([{ startBlock: 0, numBlocks: newScan.blocks }]);
    if (newRest.length)
      jobs.push({
        name: '<non-file-data>',
        oldExtents: oldVisited.filter([{ startBlock: 0, numBlocks: oldScan.blocks }]),
        newExtents: newRest,
        chunkBlocks: opts.softChunkBlocks,
      });

    const total = jobs.reduce((a, j) => a + blocksIn(j.newExtents), 0) * bs;
    let done = 0;
    const runJob = async (job: Job) => {
      const blocks = blocksIn(job.newExtents);
      for (let o = 0; o < blocks; o += job.chunkBlocks) {
        const newExtents = normalize(sublist(job.newExtents, o, job.chunkBlocks));
        const oldExtents = normalize(sublist(job.oldExtents, o, job.chunkBlocks));
        operations.push(await diffChunk(oldFh, newFh, oldExtents, newExtents, opts));
        done += blocksIn(newExtents) * bs;
        opts.onBytes?.(done, total);
      }
    };
    // Largest first, so the long ones do not start last.
    jobs.sort((a, b) => blocksIn(b.newExtents) - blocksIn(a.newExtents));
    let next = 0;
    const lanes = Math.max(1, Math.min(opts.threads ?? availableParallelism(), jobs.length));
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (next < jobs.length) await runJob(jobs[next++]);
      }),
    );

    operations.sort((a, b) => a.dstExtents[0].startBlock - b.dstExtents[0].startBlock);
    // Every operation that reads the source names the hash of what it reads (minor version 3+).
    for (const op of operations)
      if (op.srcExtents?.length && !op.srcSha256)
        op.srcSha256 = createHash('sha256')
          .update(await readExtents(oldFh, op.srcExtents, bs))
          .digest();
    return {
      oldInfo: { size: oldScan.size, sha256: oldScan.sha256 },
      newInfo: { size: newScan.size, sha256: newScan.sha256 },
      operations,
    };
  } finally {
    await Promise.allSettled([oldFh.close(), newFh.close()]);
  }
}

/** ReadExtentsToDiff: the best operation to write `newExtents` given what `oldExtents` hold. */
async function diffChunk(
  oldFh: FileHandle,
  newFh: FileHandle,
  oldExtents: Extent[],
  newExtents: Extent[],
  opts: DeltaOptions,
): Promise<GeneratedOperation> {
  const bs = opts.blockSize;
  const next = await readExtents(newFh, newExtents, bs);
  let { type, blob }: { type: OperationType; blob: Buffer } = await bestFullOperation(next, opts.codecs);
  let srcExtents: Extent[] | undefined;
  let srcSha256: Buffer | undefined;
  if (oldExtents.length) {
    const old = await readExtents(oldFh, oldExtents, bs);
    if (old.equals(next)) {
      type = 'SOURCE_COPY';
      blob = Buffer.alloc(0);
      srcExtents = oldExtents;
    } else if (old.length <= opts.maxDiffBytes && diffIsBetter(type, blob.length, 0, oldExtents.length)) {
      const patch = await bsdiff(old, next, opts.diffType === 'BROTLI_BSDIFF' ? 'BSDF2' : 'BSDIFF40');
      if (diffIsBetter(type, blob.length, patch.length, oldExtents.length)) {
        type = opts.diffType;
        blob = patch;
        srcExtents = oldExtents;
      }
    }
    if (srcExtents) srcSha256 = createHash('sha256').update(old).digest();
  }
  return {
    type,
    dstExtents: newExtents,
    ...(srcExtents ? { srcExtents, srcSha256 } : {}),
    ...(blob.length ? { blob: await opts.blobs.append(blob) } : {}),
  };
}
