import { createHash, type KeyObject, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { crc32OfFile } from '../crc32.ts';
import type { UniformBlocks } from '../uniform-blocks.ts';
import {
  type AvbAlgorithmName,
  algorithmByName,
  avbDigest,
  loadPrivateKey,
  signDigest,
} from './algorithms.ts';
import { encodeFooter, FOOTER_SIZE, readFooter } from './footer.ts';
import { calcHashLevelOffsets, generateHashtree, hashtreeDigestLayout } from './hashtree.ts';
import { openImage, readAvbImage, refuseSparse } from './image.ts';
import { avbPublicKeyFromBytes, encodeAvbPublicKey } from './keys.ts';
import {
  AVB_VERSION_MAJOR,
  AVBTOOL_RELEASE_STRING,
  type AvbDescriptor,
  CHAIN_FLAG_DO_NOT_USE_AB,
  encodeDescriptor,
  encodeVbmetaHeader,
  HASH_FLAG_DO_NOT_USE_AB,
  HASHTREE_FLAG_CHECK_AT_MOST_ONCE,
  HASHTREE_FLAG_DO_NOT_USE_AB,
  type HashDescriptor,
  type HashtreeDescriptor,
  roundUp,
  VBMETA_FLAG_HASHTREE_DISABLED,
  type VbmetaHeader,
} from './vbmeta.ts';

/**
 * Writing AVB metadata the way avbtool 1.3.0 does (make_vbmeta_image, add_hash_footer,
 * add_hashtree_footer on raw images): same descriptor order, same block layout and padding, same
 * required libavb version, same footer placement, so `avbtool info_image` prints identical text
 * and `avbtool verify_image` / libavb accept the result.
 */

/** avbtool's MAX_VBMETA_SIZE + MAX_FOOTER_SIZE reserved at the end of a partition. */
export const MAX_VBMETA_SIZE = 64 * 1024;
export const MAX_FOOTER_SIZE = 4096;
/** avbtool's ImageHandler block size for raw images. */
const IMAGE_BLOCK = 4096;

export interface ChainPartition {
  partitionName: string;
  rollbackIndexLocation: number;
  /** PEM key (private or public) or AVB public key blob file; or give `publicKey`. */
  publicKeyPath?: string;
  /** AVB public key blob. */
  publicKey?: Buffer;
  /** AVB_CHAIN_PARTITION_DESCRIPTOR_FLAGS_DO_NOT_USE_AB (avbtool --chain_partition_do_not_use_ab). */
  doNotUseAb?: boolean;
}

export interface VbmetaOptions {
  /** Default 'NONE' (unsigned), like avbtool. */
  algorithm?: AvbAlgorithmName;
  /** RSA private key: PEM path, PEM text, or KeyObject. Required unless algorithm is NONE. */
  key?: string | KeyObject;
  publicKeyMetadata?: Buffer;
  rollbackIndex?: number | bigint;
  rollbackIndexLocation?: number;
  flags?: number;
  /** Sets AVB_VBMETA_IMAGE_FLAGS_HASHTREE_DISABLED (avbtool --set_hashtree_disabled_flag). */
  setHashtreeDisabledFlag?: boolean;
  /** Property descriptors, in order (avbtool --prop / --prop_from_file). */
  props?: Record<string, string | Buffer> | Array<[string, string | Buffer]>;
  kernelCmdlines?: string[];
  includeDescriptorsFromImages?: string[];
  chainPartitions?: ChainPartition[];
  /** Replaces "avbtool 1.3.0". */
  releaseString?: string;
  appendToReleaseString?: string;
}

export interface BlobResult {
  blob: Buffer;
  header: VbmetaHeader;
}

function propList(p: VbmetaOptions['props']): Array<[string, Buffer]> {
  if (!p) return [];
  const entries = Array.isArray(p) ? p : Object.entries(p);
  return entries.map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8')]);
}

function chainKey(cp: ChainPartition): Buffer {
  if (cp.publicKey) return cp.publicKey;
  if (!cp.publicKeyPath)
    throw new InputError(`chain partition ${cp.partitionName}: publicKey or publicKeyPath is required`, {
      code: 'AVB_CHAIN_KEY_MISSING',
    });
  // avbtool stores the file bytes as-is (an extract_public_key blob); we also accept PEM keys.
  const bytes = readFileSync(cp.publicKeyPath);
  return avbPublicKeyFromBytes(bytes, cp.publicKeyPath);
}

/**
 * The vbmeta blob (header + authentication + auxiliary blocks), avbtool's _generate_vbmeta_blob.
 * `descriptors` come first, then chain descriptors, properties, kernel cmdlines, and the
 * descriptors of included images.
 */
export async function generateVbmetaBlob(
  o: VbmetaOptions,
  descriptors: AvbDescriptor[] = [],
  requiredLibavbVersionMinor = 0,
): Promise<BlobResult> {
  const alg = algorithmByName(o.algorithm ?? 'NONE');
  let minor = requiredLibavbVersionMinor;
  const rollbackIndexLocation = o.rollbackIndexLocation ?? 0;
  const all: AvbDescriptor[] = [...descriptors];
  const used = new Set<number>([rollbackIndexLocation]);
  for (const cp of o.chainPartitions ?? []) {
    if (used.has(cp.rollbackIndexLocation))
      throw new InputError(`rollback index location ${cp.rollbackIndexLocation} is already in use`, {
        code: 'AVB_ROLLBACK_LOCATION_IN_USE',
        context: { partition: cp.partitionName },
      });
    used.add(cp.rollbackIndexLocation);
    if (cp.rollbackIndexLocation < 1)
      throw new InputError('chained rollback index location must be 1 or larger', {
        code: 'AVB_BAD_ROLLBACK_LOCATION',
        context: { partition: cp.partitionName },
      });
    all.push({
      kind: 'chain_partition',
      partitionName: cp.partitionName,
      rollbackIndexLocation: cp.rollbackIndexLocation,
      publicKey: chainKey(cp),
      flags: cp.doNotUseAb ? CHAIN_FLAG_DO_NOT_USE_AB : 0,
    });
  }
  const parts: Buffer[] = all.map(encodeDescriptor);
  for (const [key, value] of propList(o.props))
    parts.push(encodeDescriptor({ kind: 'property', key, value }));
  for (const c of o.kernelCmdlines ?? [])
    parts.push(encodeDescriptor({ kind: 'kernel_cmdline', flags: 0, kernelCmdline: c }));
  if (o.includeDescriptorsFromImages?.length) {
    // avbtool keeps only the last descriptor per (type, partition name) and emits those sorted by
    // "<ClassName>_<partition>" after the descriptors without a partition name.
    const byName = new Map<string, Buffer>();
    const className: Record<string, string> = {
      hashtree: 'AvbHashtreeDescriptor',
      hash: 'AvbHashDescriptor',
      chain_partition: 'AvbChainPartitionDescriptor',
    };
    for (const path of o.includeDescriptorsFromImages) {
      const img = await readAvbImage(path);
      minor = Math.max(minor, img.vbmeta.header.requiredLibavbVersionMinor);
      for (const d of img.vbmeta.descriptors) {
        if ('partitionName' in d) byName.set(`${className[d.kind]}_${d.partitionName}`, encodeDescriptor(d));
        else parts.push(encodeDescriptor(d));
      }
    }
    for (const k of [...byName.keys()].sort(pyCompare)) parts.push(byName.get(k)!);
  }
  const encodedDescriptors = Buffer.concat(parts);

  let encodedKey: Buffer = Buffer.alloc(0);
  let key: KeyObject | undefined;
  if (alg.publicKeyBytes > 0) {
    if (!o.key)
      throw new InputError(`a key is required for algorithm ${alg.name}`, { code: 'AVB_KEY_REQUIRED' });
    key = loadPrivateKey(o.key, (p) => readFileSync(p));
    encodedKey = encodeAvbPublicKey(key);
    if (encodedKey.length !== alg.publicKeyBytes)
      throw new InputError(`key is the wrong size for algorithm ${alg.name}`, {
        code: 'AVB_KEY_SIZE_MISMATCH',
        context: { algorithm: alg.name, keyBits: (encodedKey.length - 8) * 4 },
      });
  }
  const pkmd = o.publicKeyMetadata ?? Buffer.alloc(0);
  let releaseString = o.releaseString ?? AVBTOOL_RELEASE_STRING;
  if (o.appendToReleaseString !== undefined) releaseString += ` ${o.appendToReleaseString}`;

  const auxSize = roundUp(encodedDescriptors.length + encodedKey.length + pkmd.length, 64);
  const authSize = roundUp(alg.hashBytes + alg.signatureBytes, 64);
  const header: VbmetaHeader = {
    requiredLibavbVersionMajor: AVB_VERSION_MAJOR,
    requiredLibavbVersionMinor: minor,
    authenticationDataBlockSize: authSize,
    auxiliaryDataBlockSize: auxSize,
    algorithmType: alg.type,
    hashOffset: 0,
    hashSize: alg.hashBytes,
    signatureOffset: alg.hashBytes,
    signatureSize: alg.signatureBytes,
    publicKeyOffset: encodedDescriptors.length,
    publicKeySize: encodedKey.length,
    publicKeyMetadataOffset: encodedDescriptors.length + encodedKey.length,
    publicKeyMetadataSize: pkmd.length,
    descriptorsOffset: 0,
    descriptorsSize: encodedDescriptors.length,
    rollbackIndex: BigInt(o.rollbackIndex ?? 0),
    flags: (o.flags ?? 0) | (o.setHashtreeDisabledFlag ? VBMETA_FLAG_HASHTREE_DISABLED : 0),
    rollbackIndexLocation,
    releaseString,
  };
  const headerBlob = encodeVbmetaHeader(header);
  const aux = Buffer.alloc(auxSize);
  Buffer.concat([encodedDescriptors, encodedKey, pkmd]).copy(aux);
  const auth = Buffer.alloc(authSize);
  if (key) {
    const digest = avbDigest(alg, headerBlob, aux);
    digest.copy(auth, 0);
    signDigest(alg, key, digest).copy(auth, alg.hashBytes);
  }
  return { blob: Buffer.concat([headerBlob, auth, aux]), header };
}

/** Python's default str ordering (by code point), which sorted() uses. */
function pyCompare(a: string, b: string): number {
  const A = [...a];
  const B = [...b];
  for (let i = 0; i < Math.min(A.length, B.length); i++) {
    const d = A[i].codePointAt(0)! - B[i].codePointAt(0)!;
    if (d) return d;
  }
  return A.length - B.length;
}

export interface MakeVbmetaOptions extends VbmetaOptions {
  /** Pad the output so its size is a multiple of this (avbtool --padding_size). */
  paddingSize?: number;
  /** Descriptors taken as they are (e.g. from another vbmeta), placed before the chain descriptors. */
  descriptors?: AvbDescriptor[];
}

/** avbtool make_vbmeta_image: writes a standalone vbmeta image to `out`. */
export async function makeVbmetaImage(out: string, o: MakeVbmetaOptions): Promise<BlobResult> {
  let minor = 0;
  if ((o.rollbackIndexLocation ?? 0) > 0) minor = Math.max(minor, 2);
  if (o.chainPartitions?.some((c) => c.doNotUseAb)) minor = Math.max(minor, 3);
  const res = await generateVbmetaBlob(o, o.descriptors ?? [], minor);
  let blob = res.blob;
  if (o.paddingSize && o.paddingSize > 0)
    blob = Buffer.concat([blob, Buffer.alloc(roundUp(blob.length, o.paddingSize) - blob.length)]);
  await writeFile(out, blob);
  return res;
}

interface FooterCommon extends VbmetaOptions {
  partitionName: string;
  /** Salt as bytes or hex; default: random, digest-sized (avbtool reads /dev/urandom). */
  salt?: Buffer | string;
  /** Also write the vbmeta blob to this file (avbtool --output_vbmeta_image). */
  outputVbmetaImage?: string;
  /** Do not append vbmeta + footer (avbtool --do_not_append_vbmeta_image). */
  doNotAppendVbmeta?: boolean;
  doNotUseAb?: boolean;
  onProgress?: ProgressFn;
}

export interface AddHashFooterOptions extends FooterCommon {
  /** Final partition size; when absent the size is computed (avbtool --dynamic_partition_size). */
  partitionSize?: number;
  /** Default 'sha256' (avbtool's default for add_hash_footer). */
  hashAlgorithm?: string;
  usePersistentDigest?: boolean;
}

export interface AddHashtreeFooterOptions extends FooterCommon {
  /** Final partition size, or 0/absent to append right after the image (avbtool default). */
  partitionSize?: number;
  /** Default 'sha1', avbtool's default for add_hashtree_footer; Android builds pass sha256. */
  hashAlgorithm?: string;
  /** Data and hash block size, default 4096. */
  blockSize?: number;
  usePersistentRootDigest?: boolean;
  checkAtMostOnce?: boolean;
  /** Do not store the tree (tree size 0 in the descriptor), avbtool --no_hashtree. */
  noHashtree?: boolean;
  /** FEC is not implemented: passing true throws. */
  generateFec?: boolean;
  workers?: number;
  /**
   * Also return the CRC-32 of the finished image file (`crc32`), e.g. for a zip entry header:
   * the data is checksummed in the hashing pass, only what is appended after it is read back.
   */
  crc32?: boolean;
  /**
   * Also return which blocks of the image's data repeat one 32-bit word (`uniformBlocks`), mapped
   * in the hashing pass, e.g. for a sparse writer to plan its chunks without reading the image.
   */
  uniformBlocks?: boolean;
}

export interface FooterResult extends BlobResult {
  originalImageSize: number;
  vbmetaOffset: number;
  /** The hash or hashtree descriptor written. */
  descriptor: HashDescriptor | HashtreeDescriptor;
  /** Final image size. */
  imageSize: number;
  /** CRC-32 of the whole image file as written, when asked for (add_hashtree_footer only). */
  crc32?: number;
  /** Uniform blocks of the image's first `descriptor.imageSize` bytes, when asked for (hashtree only). */
  uniformBlocks?: UniformBlocks;
}

function saltBytes(salt: Buffer | string | undefined, digestSize: number, persistent: boolean): Buffer {
  if (Buffer.isBuffer(salt)) return salt;
  if (typeof salt === 'string' && salt.length) {
    if (!/^([0-9a-fA-F]{2})*$/.test(salt))
      throw new InputError(`salt must be hex, got ${JSON.stringify(salt)}`, { code: 'AVB_BAD_SALT' });
    return Buffer.from(salt, 'hex');
  }
  if (salt === undefined && !persistent) return randomBytes(digestSize);
  return Buffer.alloc(0);
}

/** Returns the original size after removing an existing footer (avbtool is idempotent this way). */
async function stripExistingFooter(path: string): Promise<number> {
  const fh = await openImage(path, 'r+');
  try {
    const size = (await fh.stat()).size;
    const f = await readFooter(fh, size, path);
    if (f) {
      await fh.truncate(f.originalImageSize);
      return f.originalImageSize;
    }
    return size;
  } finally {
    await fh.close();
  }
}

async function appendVbmetaAndFooter(
  path: string,
  vbmetaOffset: number,
  blob: Buffer,
  originalImageSize: number,
  partitionSize: number,
): Promise<number> {
  const fh = await openImage(path, 'r+');
  try {
    const padded = Buffer.concat([blob, Buffer.alloc(roundUp(blob.length, IMAGE_BLOCK) - blob.length)]);
    await fh.write(padded, 0, padded.length, vbmetaOffset);
    let end = vbmetaOffset + padded.length;
    if (partitionSize > 0) {
      if (end > partitionSize - IMAGE_BLOCK)
        failFooter(
          'footer',
          `vbmeta (${blob.length} bytes) does not fit in partition size ${partitionSize}`,
          { image: path },
        );
      end = partitionSize - IMAGE_BLOCK; // avbtool's DONT_CARE gap: zeros in a raw file
    }
    const footerBlock = Buffer.alloc(IMAGE_BLOCK);
    encodeFooter({ originalImageSize, vbmetaOffset, vbmetaSize: blob.length }).copy(
      footerBlock,
      IMAGE_BLOCK - FOOTER_SIZE,
    );
    await fh.truncate(end);
    await fh.write(footerBlock, 0, IMAGE_BLOCK, end);
    return end + IMAGE_BLOCK;
  } finally {
    await fh.close();
  }
}

async function hashFile(
  path: string,
  alg: string,
  salt: Buffer,
  size: number,
  onProgress?: ProgressFn,
): Promise<Buffer> {
  const h = createHash(alg).update(salt);
  const fh = await openImage(path);
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      onProgress?.({ stage: `hash ${path}`, done: pos, total: size, unit: 'bytes' });
    }
    if (pos < size)
      throw new InputError(`${path} is shorter than ${size} bytes`, {
        code: 'SHORT_READ',
        context: { file: path, size: pos },
      });
  } finally {
    await fh.close();
  }
  return h.digest();
}

function failFooter(what: string, msg: string, context: Record<string, unknown>): never {
  throw new InputError(`${what}: ${msg}`, { code: 'AVB_FOOTER_FAILED', context });
}

/** avbtool add_hash_footer (raw images): hash descriptor + vbmeta + footer, in place. */
export async function addHashFooter(image: string, o: AddHashFooterOptions): Promise<FooterResult> {
  const hashAlgorithm = o.hashAlgorithm ?? 'sha256';
  const { digestSize } = hashtreeDigestLayout(hashAlgorithm);
  let minor = 0;
  if (o.usePersistentDigest || o.doNotUseAb) minor = 1;
  if ((o.rollbackIndexLocation ?? 0) > 0) minor = 2;
  if (o.chainPartitions?.some((c) => c.doNotUseAb)) minor = 3;
  const maxMetadata = MAX_VBMETA_SIZE + MAX_FOOTER_SIZE;
  const dynamic = !o.partitionSize;
  await refuseSparse(image, 'add_hash_footer');
  if (!dynamic && o.partitionSize! < maxMetadata)
    failFooter(
      'add_hash_footer',
      `partition size ${o.partitionSize} is too small, needs at least ${maxMetadata}`,
      { image },
    );
  const originalImageSize = await stripExistingFooter(image);
  const restore = async () => {
    const fh = await openImage(image, 'r+');
    await fh.truncate(originalImageSize).finally(() => fh.close());
  };
  try {
    const partitionSize = dynamic ? roundUp(originalImageSize + maxMetadata, IMAGE_BLOCK) : o.partitionSize!;
    if (partitionSize % IMAGE_BLOCK !== 0)
      failFooter('add_hash_footer', `partition size ${partitionSize} is not a multiple of ${IMAGE_BLOCK}`, {
        image,
      });
    const maxImageSize = partitionSize - maxMetadata;
    if (originalImageSize > maxImageSize)
      failFooter(
        'add_hash_footer',
        `image size of ${originalImageSize} exceeds maximum image size of ${maxImageSize} in order to fit in a partition size of ${partitionSize}`,
        { image, partitionSize },
      );
    const salt = saltBytes(o.salt, digestSize, !!o.usePersistentDigest);
    const digest = await hashFile(image, hashAlgorithm, salt, originalImageSize, o.onProgress);
    const descriptor: HashDescriptor = {
      kind: 'hash',
      imageSize: originalImageSize,
      hashAlgorithm,
      partitionName: o.partitionName,
      salt,
      digest: o.usePersistentDigest ? Buffer.alloc(0) : digest,
      flags: o.doNotUseAb ? HASH_FLAG_DO_NOT_USE_AB : 0,
    };
    const res = await generateVbmetaBlob(o, [descriptor], minor);
    if (o.outputVbmetaImage) await writeFile(o.outputVbmetaImage, res.blob);
    let imageSize = originalImageSize;
    const vbmetaOffset = roundUp(originalImageSize, IMAGE_BLOCK);
    if (!o.doNotAppendVbmeta)
      imageSize = await appendVbmetaAndFooter(
        image,
        vbmetaOffset,
        res.blob,
        originalImageSize,
        partitionSize,
      );
    return { ...res, originalImageSize, vbmetaOffset, descriptor, imageSize };
  } catch (e) {
    await restore();
    throw e;
  }
}

/** avbtool add_hashtree_footer --do_not_generate_fec (raw images), in place. */
export async function addHashtreeFooter(image: string, o: AddHashtreeFooterOptions): Promise<FooterResult> {
  if (o.generateFec)
    throw new InputError(
      'FEC generation is not implemented; build without FEC (avbtool --do_not_generate_fec)',
      {
        code: 'AVB_FEC_UNSUPPORTED',
      },
    );
  await refuseSparse(image, 'add_hashtree_footer');
  const hashAlgorithm = o.hashAlgorithm ?? 'sha1';
  const blockSize = o.blockSize ?? 4096;
  const partitionSize = o.partitionSize ?? 0;
  let minor = 0;
  if (o.usePersistentRootDigest || o.doNotUseAb || o.checkAtMostOnce) minor = 1;
  if ((o.rollbackIndexLocation ?? 0) > 0) minor = 2;
  if (o.chainPartitions?.some((c) => c.doNotUseAb)) minor = 3;
  const { digestSize, digestPadding } = hashtreeDigestLayout(hashAlgorithm);
  let maxImageSize = 0;
  if (partitionSize > 0) {
    const maxTree = o.noHashtree
      ? 0
      : calcHashLevelOffsets(partitionSize, blockSize, digestSize + digestPadding).treeSize;
    maxImageSize = partitionSize - maxTree - MAX_VBMETA_SIZE - MAX_FOOTER_SIZE;
  }
  {
    const fh = await openImage(image);
    const size = (await fh.stat()).size;
    await fh.close();
    if (partitionSize > 0 && partitionSize % IMAGE_BLOCK !== 0)
      failFooter(
        'add_hashtree_footer',
        `partition size ${partitionSize} is not a multiple of ${IMAGE_BLOCK}`,
        { image },
      );
    if (partitionSize === 0 && size % IMAGE_BLOCK !== 0)
      failFooter('add_hashtree_footer', `file size of ${size} is not a multiple of ${IMAGE_BLOCK}`, {
        image,
      });
  }
  const originalImageSize = await stripExistingFooter(image);
  const restore = async () => {
    const fh = await openImage(image, 'r+');
    await fh.truncate(originalImageSize).finally(() => fh.close());
  };
  try {
    let imageSize = roundUp(originalImageSize, blockSize);
    if (partitionSize > 0 && imageSize > maxImageSize)
      failFooter(
        'add_hashtree_footer',
        `image size of ${imageSize} exceeds maximum image size of ${maxImageSize} in order to fit in a partition size of ${partitionSize}`,
        { image, partitionSize },
      );
    const salt = saltBytes(o.salt, digestSize, !!o.usePersistentRootDigest);
    imageSize = roundUp(imageSize, IMAGE_BLOCK);
    {
      const fh = await openImage(image, 'r+');
      await fh.truncate(imageSize).finally(() => fh.close());
    }
    const treeOffset = imageSize;
    const ht = await generateHashtree(image, {
      imageSize,
      blockSize,
      hashAlgorithm,
      salt,
      workers: o.workers,
      onProgress: o.onProgress,
      crc32: o.crc32,
      uniformBlocks: o.uniformBlocks,
    });
    const tree = o.noHashtree ? Buffer.alloc(0) : ht.tree;
    const descriptor: HashtreeDescriptor = {
      kind: 'hashtree',
      dmVerityVersion: 1,
      imageSize,
      treeOffset,
      treeSize: o.noHashtree ? 0 : ht.treeSize,
      dataBlockSize: blockSize,
      hashBlockSize: blockSize,
      fecNumRoots: 0,
      fecOffset: 0,
      fecSize: 0,
      hashAlgorithm,
      partitionName: o.partitionName,
      salt,
      rootDigest: o.usePersistentRootDigest ? Buffer.alloc(0) : ht.rootDigest,
      flags:
        (o.doNotUseAb ? HASHTREE_FLAG_DO_NOT_USE_AB : 0) |
        (o.checkAtMostOnce ? HASHTREE_FLAG_CHECK_AT_MOST_ONCE : 0),
    };
    const paddedTree = roundUp(tree.length, IMAGE_BLOCK);
    if (paddedTree > 0) {
      const fh = await openImage(image, 'r+');
      try {
        await fh.write(tree, 0, tree.length, treeOffset);
        await fh.truncate(treeOffset + paddedTree);
      } finally {
        await fh.close();
      }
    }
    const res = await generateVbmetaBlob(o, [descriptor], minor);
    if (o.outputVbmetaImage) await writeFile(o.outputVbmetaImage, res.blob);
    const vbmetaOffset = treeOffset + paddedTree;
    let finalSize = vbmetaOffset;
    if (!o.doNotAppendVbmeta)
      finalSize = await appendVbmetaAndFooter(
        image,
        vbmetaOffset,
        res.blob,
        originalImageSize,
        partitionSize,
      );
    const crc32 =
      ht.dataCrc32 === undefined
        ? undefined
        : await crc32OfFile(image, { from: treeOffset, crc: ht.dataCrc32 });
    return {
      ...res,
      originalImageSize,
      vbmetaOffset,
      descriptor,
      imageSize: finalSize,
      crc32,
      uniformBlocks: ht.uniformBlocks,
    };
  } catch (e) {
    await restore();
    throw e;
  }
}
