import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { FormatError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import type { ImageReader } from '../sparse.ts';
import { verifyFec } from './fec.ts';
import { calcHashLevelOffsets, generateHashtree, hashtreeDigestLayout, hashUpperLevels } from './hashtree.ts';
import { readAt } from './image.ts';
import type { HashDescriptor, HashtreeDescriptor } from './vbmeta.ts';

/**
 * One hash or hashtree descriptor against the bytes of its partition image, as a device checks
 * them (hash: at boot; hashtree: dm-verity block by block as blocks are read). Returns every
 * problem found, each naming what is damaged (data, tree, FEC) and, where the tree can tell, the
 * first bad block. Shared by verifyImage (avbtool verify_image semantics) and verifyPartitions.
 */

export type AvbArea = 'vbmeta' | 'data' | 'tree' | 'fec' | 'image';

export interface ContentProblem {
  /** VerificationError-style code: AVB_HASHTREE_ROOT_MISMATCH, AVB_FEC_MISMATCH, … */
  code: string;
  area: AvbArea;
  /** First bad block (of the descriptor's block size, FEC: 4096) counted from the start of `area`. */
  firstBadBlock?: number;
  /** Byte offset of that block in the image file. */
  offset?: number;
  message: string;
}

export type ContentResult =
  | 'verified'
  | 'trusted-data'
  | 'zeroed-hashtree-accepted'
  | 'persistent-digest-not-checked'
  | 'failed';

export interface ContentCheck {
  /**
   * verified: the bytes were hashed here; trusted-data: the stored tree was verified up to the
   * signed root but the data blocks' digests were the caller's (TrustedHashtree);
   * zeroed-hashtree-accepted, persistent-digest-not-checked: as avbtool; failed: see problems.
   */
  result: ContentResult;
  /** FEC: checked (verified/failed), absent from the descriptor, or not checked. */
  fec?: 'verified' | 'failed' | 'absent' | 'skipped';
  problems: ContentProblem[];
}

/**
 * Digests the caller computed itself from the very bytes of an image (a build that just wrote
 * the tree): the data blocks are then not hashed again. The stored tree is still read and checked
 * up to the signed root, the descriptor is still compared with these values, and the file must be
 * the same unchanged file (device, inode, size, modification time) as when the digests were taken.
 */
export interface TrustedHashtree {
  file: { dev: number; ino: number; size: number; mtimeMs: number };
  rootDigest: Buffer;
  salt: Buffer;
  hashAlgorithm: string;
  imageSize: number;
  blockSize: number;
}

export interface HashtreeCheckOptions {
  /** Check FEC parity where the descriptor has FEC (avbtool never does). */
  fec?: boolean;
  acceptZeroedHashtree?: boolean;
  /** Digests the caller took of these very bytes: the data is not hashed again. */
  trusted?: TrustedHashtree;
  onProgress?: ProgressFn;
}

/** SHA-x of salt ‖ the first imageSize bytes, compared with the hash descriptor's digest. */
export async function checkHash(
  d: HashDescriptor,
  file: string,
  r: ImageReader,
  onProgress?: ProgressFn,
): Promise<ContentCheck> {
  let h: ReturnType<typeof createHash>;
  try {
    h = createHash(d.hashAlgorithm).update(d.salt);
  } catch {
    throw new FormatError({
      format: 'vbmeta-descriptor',
      reason: 'unsupported hash algorithm',
      field: 'hash_algorithm',
      found: d.hashAlgorithm,
      file,
    });
  }
  const buf = Buffer.alloc(4 * 1024 * 1024);
  let pos = 0;
  while (pos < d.imageSize) {
    const n = await r.read(buf.subarray(0, Math.min(buf.length, d.imageSize - pos)), pos);
    if (n <= 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
    onProgress?.({
      stage: `verify ${d.partitionName || file}`,
      done: pos,
      total: d.imageSize,
      unit: 'bytes',
    });
  }
  if (pos < d.imageSize)
    return {
      result: 'failed',
      problems: [
        {
          code: 'AVB_IMAGE_TRUNCATED',
          area: 'image',
          message: `${file} ends at ${pos}, the hash descriptor covers ${d.imageSize} bytes`,
        },
      ],
    };
  if (!d.digest.length) return { result: 'persistent-digest-not-checked', problems: [] };
  const found = h.digest();
  if (found.equals(d.digest)) return { result: 'verified', problems: [] };
  return {
    result: 'failed',
    problems: [
      {
        code: 'AVB_HASH_DESCRIPTOR_MISMATCH',
        area: 'data',
        message: `${d.hashAlgorithm} of the first ${d.imageSize} bytes of ${file} is ${found.toString('hex')}, the hash descriptor says ${d.digest.toString('hex')} (one digest covers the whole image: no block can be named)`,
      },
    ],
  };
}

/** Index of the first `unit`-sized piece where a and b differ in [from, to), or -1. */
function firstDifference(a: Buffer, b: Buffer, from: number, to: number, unit: number): number {
  for (let off = from; off < to; off += 64 * 1024) {
    const end = Math.min(to, off + 64 * 1024);
    if (a.subarray(off, end).equals(b.subarray(off, end))) continue;
    for (let i = off; i < end; i++) if (a[i] !== b[i]) return Math.floor((i - from) / unit);
  }
  return -1;
}

/**
 * The hashtree root recomputed from the data (with the descriptor's salt and algorithm) against
 * the descriptor, then the stored tree against the computed one, then FEC. A bad root is located
 * through the stored tree when that tree still hashes up to the signed root (its level 0 is then
 * authentic): the first data block whose digest differs from it is the first bad block.
 */
export async function checkHashtree(
  d: HashtreeDescriptor,
  file: string,
  r: ImageReader,
  opts: HashtreeCheckOptions = {},
): Promise<ContentCheck> {
  const partition = d.partitionName || file;
  if (d.dataBlockSize !== d.hashBlockSize)
    throw new FormatError({
      format: 'vbmeta-descriptor',
      reason: 'data and hash block sizes differ (unsupported)',
      field: 'hash_block_size',
      found: d.hashBlockSize,
      expected: d.dataBlockSize,
      file,
    });
  const bs = d.dataBlockSize;
  const { digestSize, digestPadding } = hashtreeDigestLayout(d.hashAlgorithm);
  const slot = digestSize + digestPadding;
  const layout = calcHashLevelOffsets(d.imageSize, bs, slot);
  const problems: ContentCheck['problems'] = [];
  const numBlocks = Math.ceil(d.imageSize / bs);
  // A wrong tree_size shows as a tree mismatch below; only bound what is read into memory.
  if (d.treeSize > layout.treeSize + 1024 * 1024)
    throw new FormatError({
      format: 'vbmeta-descriptor',
      reason: 'tree size larger than the tree for image_size',
      field: 'tree_size',
      found: d.treeSize,
      expected: layout.treeSize,
      file,
    });
  const stored = d.treeSize ? await readAt(r, d.treeOffset, d.treeSize) : Buffer.alloc(0);
  if (stored.length < d.treeSize) {
    problems.push({
      code: 'AVB_IMAGE_TRUNCATED',
      area: 'tree',
      message: `${file} ends inside the hash tree (at ${d.treeOffset + stored.length}, tree ends at ${d.treeOffset + d.treeSize})`,
    });
    return { result: 'failed', problems };
  }
  const zeroed = d.treeSize === 0 || stored.subarray(0, 8).toString('latin1') === 'ZeRoHaSH';
  const level0 = layout.levelOffsets[0] ?? 0;
  const level0End = level0 + numBlocks * slot;
  const treeBlock = (i: number) => ({ firstBadBlock: i, offset: d.treeOffset + i * bs });
  // The stored tree re-hashed from its own level 0: equal to the stored tree and to the signed
  // root digest when the tree is intact; its level 0 is then authentic, and locates bad data.
  const rehashStored = () => {
    const copy = Buffer.from(stored);
    const root = hashUpperLevels(copy, {
      ...layout,
      imageSize: d.imageSize,
      blockSize: bs,
      hashAlgorithm: d.hashAlgorithm,
      salt: d.salt,
      slot,
    });
    return { copy, root };
  };

  const trusted = opts.trusted;
  if (trusted && !zeroed && stored.length === layout.treeSize && (await sameFile(file, trusted.file))) {
    const mismatch =
      !trusted.rootDigest.equals(d.rootDigest) ||
      !trusted.salt.equals(d.salt) ||
      trusted.hashAlgorithm !== d.hashAlgorithm ||
      trusted.imageSize !== d.imageSize ||
      trusted.blockSize !== bs;
    if (mismatch)
      problems.push({
        code: 'AVB_HASHTREE_ROOT_MISMATCH',
        area: 'vbmeta',
        message: `the hashtree descriptor of ${partition} (root ${d.rootDigest.toString('hex')}) is not the one computed over its data (root ${trusted.rootDigest.toString('hex')})`,
      });
    const { copy, root } = rehashStored();
    if (!root.equals(d.rootDigest) || !copy.equals(stored)) {
      const i = firstDifference(copy, stored, 0, stored.length, bs);
      problems.push({
        code: 'AVB_HASHTREE_DATA_MISMATCH',
        area: 'tree',
        ...(i >= 0 ? treeBlock(i) : {}),
        message: `the hash tree stored in ${file} does not hash up to the descriptor's root digest${i >= 0 ? ` (first inconsistent tree block ${i})` : ''}`,
      });
    }
    if (problems.length) return { result: 'failed', problems };
    const fec = await fecOf(d, file, opts, problems);
    return { result: problems.length ? 'failed' : 'trusted-data', fec, problems };
  }

  let computed: Awaited<ReturnType<typeof generateHashtree>>;
  try {
    computed = await generateHashtree(file, {
      imageSize: d.imageSize,
      blockSize: bs,
      hashAlgorithm: d.hashAlgorithm,
      salt: d.salt,
      onProgress: opts.onProgress,
      // Raw files are hashed on every core straight from disk; sparse ones through the reader.
      read: r.sparse ? (b, p) => r.read(b, p) : undefined,
    });
  } catch (e) {
    if (e instanceof FormatError && e.format === 'avb-hashtree')
      return {
        result: 'failed',
        problems: [{ code: 'AVB_IMAGE_TRUNCATED', area: 'data', message: `${file}: ${e.message}` }],
      };
    throw e;
  }
  const rootOk = !d.rootDigest.length || computed.rootDigest.equals(d.rootDigest);
  if (!rootOk) {
    // Which data block? Only the stored tree can say, and only if it is itself intact.
    const authentic =
      stored.length === layout.treeSize && !zeroed && rehashStored().root.equals(d.rootDigest);
    const i =
      numBlocks === 1 ? 0 : authentic ? firstDifference(computed.tree, stored, level0, level0End, slot) : -1;
    problems.push({
      code: 'AVB_HASHTREE_ROOT_MISMATCH',
      area: 'data',
      ...(i >= 0 ? { firstBadBlock: i, offset: i * bs } : {}),
      message:
        i >= 0
          ? `data block ${i} (offset ${i * bs}) of ${file} does not match its digest: the hashtree root of ${partition} is ${computed.rootDigest.toString('hex')}, the descriptor says ${d.rootDigest.toString('hex')}`
          : `the hashtree root of ${file} is ${computed.rootDigest.toString('hex')}, the descriptor says ${d.rootDigest.toString('hex')}; the stored tree does not match the descriptor either, so the bad block cannot be located (data and tree changed, or the descriptor did)`,
    });
    return { result: 'failed', problems };
  }
  if (zeroed && opts.acceptZeroedHashtree)
    return { result: 'zeroed-hashtree-accepted', fec: 'skipped', problems };
  if (!stored.equals(computed.tree)) {
    const i = firstDifference(computed.tree, stored, 0, Math.min(stored.length, computed.tree.length), bs);
    problems.push({
      code: 'AVB_HASHTREE_DATA_MISMATCH',
      area: 'tree',
      ...(i >= 0 ? treeBlock(i) : {}),
      message: `the hash tree stored in ${file} differs from the tree of its data${i >= 0 ? ` from tree block ${i} (offset ${d.treeOffset + i * bs})` : ` (${stored.length} bytes stored, ${computed.tree.length} expected)`}`,
    });
    return { result: 'failed', problems };
  }
  const fec = await fecOf(d, file, opts, problems);
  return { result: problems.length ? 'failed' : 'verified', fec, problems };
}

async function fecOf(
  d: HashtreeDescriptor,
  file: string,
  opts: HashtreeCheckOptions,
  problems: ContentCheck['problems'],
): Promise<ContentCheck['fec']> {
  if (!d.fecNumRoots || !d.fecSize) return 'absent';
  if (opts.fec === false) return 'skipped';
  const bad = await verifyFec(file, {
    dataSize: d.fecOffset,
    fecOffset: d.fecOffset,
    fecSize: d.fecSize,
    roots: d.fecNumRoots,
    onProgress: opts.onProgress,
  });
  if (!bad) return 'verified';
  problems.push({ code: 'AVB_FEC_MISMATCH', area: 'fec', ...bad });
  return 'failed';
}

async function sameFile(file: string, id: TrustedHashtree['file']): Promise<boolean> {
  const s = await stat(file).catch(() => undefined);
  return !!s && s.dev === id.dev && s.ino === id.ino && s.size === id.size && s.mtimeMs === id.mtimeMs;
}
