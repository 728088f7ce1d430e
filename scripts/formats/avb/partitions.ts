import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { asOmieError, VerificationError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import type { ImageReader } from '../sparse.ts';
import {
  type ContentCheck,
  type ContentProblem,
  type ContentResult,
  checkHash,
  checkHashtree,
  type TrustedHashtree,
} from './contents.ts';
import { FOOTER_VERSION_MAJOR } from './footer.ts';
import { type AvbImage, openReader, readAvbImage } from './image.ts';
import { avbPublicKeySha256 } from './keys.ts';
import {
  CHAIN_FLAG_DO_NOT_USE_AB,
  type ChainPartitionDescriptor,
  HASH_FLAG_DO_NOT_USE_AB,
  HASHTREE_FLAG_DO_NOT_USE_AB,
  type HashDescriptor,
  type HashtreeDescriptor,
  VBMETA_FLAG_HASHTREE_DISABLED,
  VBMETA_FLAG_VERIFICATION_DISABLED,
} from './vbmeta.ts';
import { type VbmetaVerification, verifyVbmeta } from './verify.ts';

/**
 * Verifies a whole build (or a device slot) against its vbmeta, as a bootloader and dm-verity
 * would over the partitions' lifetime: the vbmeta signature, every chained vbmeta (signed by the
 * key its chain descriptor names, no flags, chaining no further), the metadata rules libavb
 * enforces (rollback index locations, hash algorithms), and every hash and hashtree descriptor
 * against the partition bytes (hashtree root recomputed with its salt and algorithm, the stored
 * tree compared, FEC parity recomputed where the descriptor has FEC). Unlike verifyImage (avbtool
 * verify_image semantics: the first failure throws), every problem is collected, and each names
 * the partition, what is damaged (data, tree, FEC, vbmeta) and, where blocks can tell, the first
 * bad block. A bootloader's view on top (its trusted key, stored rollback indexes, flags, where
 * to stop) is what verifyImageSet (image-set.ts) asks for; the checks are these.
 *
 * The vbmeta structs are read first (top-level, then chained ones in descriptor order: the order
 * of the vbmeta digest), then the descriptors are checked, several at once. Streamed: each
 * image's data is read once for its tree (level 0 on one thread per core,
 * scripts/formats/avb/hashtree.ts), then the stored tree (≈ 1/128 of the data); where there is
 * FEC, its check reads data and tree once more (in RS-interleaved order).
 */

/** AVB_MAX_NUMBER_OF_ROLLBACK_INDEX_LOCATIONS. */
export const AVB_ROLLBACK_LOCATIONS = 32;

export interface AvbProblem extends ContentProblem {
  /** Partition whose vbmeta or bytes are at fault. */
  partition: string;
  /** The vbmeta (partition name) that carries the descriptor or is itself at fault. */
  vbmeta: string;
  file?: string;
  /** What was expected and found, where the problem has more to say than its message. */
  context?: Record<string, unknown>;
}

export interface DescriptorVerification {
  partition: string;
  kind: 'hash' | 'hashtree';
  /** The vbmeta carrying the descriptor. */
  vbmeta: string;
  file?: string;
  result: ContentResult;
  fec?: ContentCheck['fec'];
  bytes: number;
}

export interface VbmetaCheck extends Partial<VbmetaVerification> {
  partition: string;
  file?: string;
  ok: boolean;
  /** From the header, when the struct could be read. */
  rollbackIndex?: bigint;
  /** The location its rollback index counts for (a chained struct: its chain descriptor's). */
  rollbackIndexLocation?: number;
  flags?: number;
  publicKeyMetadata?: Buffer;
  /** Bytes of the vbmeta struct (header + authentication + auxiliary blocks). */
  size?: number;
}

export interface PartitionsVerification {
  ok: boolean;
  /**
   * `avbtool calculate_vbmeta_digest` (SHA-256): the top-level vbmeta blob followed by each chained
   * partition's vbmeta blob in descriptor order, hex. What a bootloader reports as
   * androidboot.vbmeta.digest. Absent when a vbmeta it covers cannot be read.
   */
  vbmetaDigest?: string;
  /** Bytes the digest covers (androidboot.vbmeta.size). */
  vbmetaSize: number;
  /** Top-level first, then chained ones in descriptor order. */
  vbmetas: VbmetaCheck[];
  /** Flags of the top-level vbmeta struct (0 when it could not be read). */
  flags: number;
  /** Whether `trustedKey` accepted the top-level key (undefined when not asked or not reached). */
  keyTrusted?: boolean;
  /** Rollback index per location of the structs read (libavb's slot_data->rollback_indexes). */
  rollbackIndexes: Map<number, bigint>;
  descriptors: DescriptorVerification[];
  problems: AvbProblem[];
}

export type { TrustedHashtree };

export interface VerifyPartitionsOptions {
  /** Name of the top-level partition (default: the file name without extension). */
  partitionName?: string;
  /**
   * Image of a named partition; default `<dir of vbmeta>/<name><ext>` like avbtool. `useAbSuffix`
   * is false for a descriptor flagged DO_NOT_USE_AB (a slot's resolver then answers the partition
   * without its slot suffix).
   */
  resolvePartition?: (partitionName: string, useAbSuffix: boolean) => string | undefined;
  /** The top-level vbmeta must be signed with this AVB public key blob. */
  expectedPublicKey?: Buffer;
  /**
   * The bootloader's validate_vbmeta_public_key for the top-level key (AVB public key blob and
   * its metadata): a key it refuses is AVB_PUBLIC_KEY_REJECTED.
   */
  trustedKey?: (publicKey: Buffer, metadata: Buffer) => boolean;
  /** read_rollback_index: a struct whose rollback index is below its location's is AVB_ROLLBACK_INDEX. */
  storedRollbackIndex?: (location: number) => bigint;
  /**
   * libavb's avb_slot_verify rules that depend on the device rather than on the image: an unsigned
   * vbmeta is a problem (AVB_NOT_SIGNED; avbtool and the conformance check accept it, 6.3 reports
   * it on its own), the top-level flags are obeyed (VERIFICATION_DISABLED: nothing past the
   * top-level struct; HASHTREE_DISABLED: no hashtree), and on an A/B slot (`abSlot`) a hash
   * descriptor with a persistent digest must be DO_NOT_USE_AB.
   */
  bootloader?: { abSlot: boolean };
  /** Called with each problem as it is found: true stops the walk there (nothing more is read). */
  stopAt?: (problem: AvbProblem) => boolean;
  /** Check FEC parity where a hashtree descriptor has FEC (default true; avbtool never does). */
  fec?: boolean;
  acceptZeroedHashtree?: boolean;
  /** By partition name: digests taken by the caller from the same bytes (an in-build check). */
  trustedHashtrees?: Map<string, TrustedHashtree>;
  /** Descriptors verified at once (default: cores); large ones also spread level 0 over cores. */
  concurrency?: number;
  onProgress?: ProgressFn;
}

interface Job {
  partition: string;
  vbmeta: string;
  descriptor: HashDescriptor | HashtreeDescriptor;
  file?: string;
}

/** Verifies `vbmetaImage` (vbmeta.img, or a partition with an AVB footer) and everything it covers. */
export async function verifyPartitions(
  vbmetaImage: string,
  opts: VerifyPartitionsOptions = {},
): Promise<PartitionsVerification> {
  const resolve = opts.resolvePartition ?? siblingOf(vbmetaImage);
  const out: PartitionsVerification = {
    ok: false,
    vbmetas: [],
    flags: 0,
    rollbackIndexes: new Map(),
    vbmetaSize: 0,
    descriptors: [],
    problems: [],
  };
  let stopped = false;
  const problem = (p: AvbProblem) => {
    out.problems.push(p);
    if (opts.stopAt?.(p)) stopped = true;
  };
  const jobs = await readVbmetas(vbmetaImage, opts.partitionName ?? partitionNameOf(vbmetaImage), {
    opts,
    resolve,
    out,
    problem,
    stopped: () => stopped,
  });

  const concurrency = Math.max(1, opts.concurrency ?? availableParallelism());
  const results: Array<DescriptorVerification | undefined> = new Array(jobs.length);
  // Problems in descriptor order, whatever order the jobs finish in.
  const found: AvbProblem[][] = jobs.map(() => []);
  // Largest first: the last to finish is then a small one.
  const order = jobs
    .map((_, i) => i)
    .sort((a, b) => jobs[b].descriptor.imageSize - jobs[a].descriptor.imageSize);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
      while (next < order.length && !stopped) {
        const i = order[next++];
        results[i] = await verifyDescriptor(jobs[i], opts, (p) => {
          found[i].push(p);
          if (opts.stopAt?.(p)) stopped = true;
        });
      }
    }),
  );
  out.descriptors = results.filter((r): r is DescriptorVerification => r !== undefined);
  out.problems.push(...found.flat());
  out.ok = out.problems.length === 0;
  return out;
}

interface Walk {
  opts: VerifyPartitionsOptions;
  resolve: (partitionName: string, useAbSuffix: boolean) => string | undefined;
  out: PartitionsVerification;
  problem: (p: AvbProblem) => void;
  stopped: () => boolean;
}

/**
 * Reads and checks the top-level vbmeta and the ones it chains (filling `out.vbmetas`, the digest,
 * the rollback indexes), and returns the hash and hashtree descriptors to check against the bytes.
 */
async function readVbmetas(vbmetaImage: string, topName: string, w: Walk): Promise<Job[]> {
  const { opts, out, problem } = w;
  const bootloader = opts.bootloader;
  const top = await loadVbmeta(topName, vbmetaImage, undefined, w);
  if (!top || w.stopped()) return [];
  out.flags = top.vbmeta.header.flags;
  const blobs = [top.vbmeta.blob];
  let digestComplete = true;
  const queue: Array<{ name: string; img: AvbImage; file: string }> = [
    { name: topName, img: top, file: vbmetaImage },
  ];
  // libavb: with VERIFICATION_DISABLED nothing below the top-level struct is looked at.
  const verificationDisabled = !!bootloader && (out.flags & VBMETA_FLAG_VERIFICATION_DISABLED) !== 0;
  for (const d of verificationDisabled ? [] : top.vbmeta.descriptors) {
    if (d.kind !== 'chain_partition') continue;
    if (d.rollbackIndexLocation === 0 || d.rollbackIndexLocation >= AVB_ROLLBACK_LOCATIONS) {
      digestComplete = false;
      problem({
        partition: d.partitionName,
        vbmeta: topName,
        file: vbmetaImage,
        area: 'vbmeta',
        code: 'AVB_BAD_CHAIN',
        message: `the chain descriptor for ${d.partitionName} has rollback index location ${d.rollbackIndexLocation}: libavb takes 1 to ${AVB_ROLLBACK_LOCATIONS - 1}`,
      });
    } else {
      const file = w.resolve(d.partitionName, !(d.flags & CHAIN_FLAG_DO_NOT_USE_AB));
      const img = await loadVbmeta(d.partitionName, file, d, w);
      if (img && file) {
        blobs.push(img.vbmeta.blob);
        queue.push({ name: d.partitionName, img, file });
      } else digestComplete = false;
    }
    if (w.stopped()) return [];
  }
  if (digestComplete) {
    const h = createHash('sha256');
    for (const b of blobs) h.update(b);
    out.vbmetaDigest = h.digest('hex');
    out.vbmetaSize = blobs.reduce((n, b) => n + b.length, 0);
  }
  if (verificationDisabled) return [];
  const hashtreesDisabled = !!bootloader && (out.flags & VBMETA_FLAG_HASHTREE_DISABLED) !== 0;
  const jobs: Job[] = [];
  for (const { name, img, file } of queue) {
    for (const d of img.vbmeta.descriptors) {
      if (d.kind === 'chain_partition' && name !== topName)
        problem({
          partition: d.partitionName,
          vbmeta: name,
          file,
          code: 'AVB_CHAIN_MISMATCH',
          area: 'vbmeta',
          message: `the chained vbmeta of ${name} chains ${d.partitionName} in turn; libavb accepts chain descriptors only in the top-level vbmeta`,
        });
      if (d.kind !== 'hash' && d.kind !== 'hashtree') continue;
      // A descriptor without a partition name describes the image that carries it (avbtool).
      const at = { partition: d.partitionName || name, vbmeta: name, file };
      if (d.kind === 'hashtree' && hashtreesDisabled) continue;
      if (d.kind === 'hash') {
        if (d.hashAlgorithm !== 'sha256' && d.hashAlgorithm !== 'sha512') {
          problem({
            ...at,
            code: 'AVB_UNSUPPORTED_HASH',
            area: 'vbmeta',
            message: `the hash descriptor of ${at.partition} uses ${d.hashAlgorithm}: libavb verifies sha256 and sha512 only`,
            context: { found: d.hashAlgorithm, expected: 'sha256 or sha512' },
          });
          continue;
        }
        if (bootloader?.abSlot && !d.digest.length && !(d.flags & HASH_FLAG_DO_NOT_USE_AB)) {
          problem({
            ...at,
            code: 'AVB_PERSISTENT_DIGEST_AB',
            area: 'vbmeta',
            message: `the hash descriptor of ${at.partition} expects a persistent digest, which libavb refuses on an A/B slot`,
          });
          continue;
        }
      }
      if (w.stopped()) return [];
      const noAb = d.kind === 'hash' ? HASH_FLAG_DO_NOT_USE_AB : HASHTREE_FLAG_DO_NOT_USE_AB;
      const target = d.partitionName ? w.resolve(d.partitionName, !(d.flags & noAb)) : file;
      const footered = img.footer && d.partitionName === name ? file : undefined;
      jobs.push({ partition: at.partition, vbmeta: name, descriptor: d, file: target ?? footered });
    }
  }
  return w.stopped() ? [] : jobs;
}

/**
 * One vbmeta struct: read, footer version, hash and signature (with the key its chain descriptor
 * names, or the expected / trusted top-level key), libavb's header rules, rollback index.
 */
async function loadVbmeta(
  name: string,
  file: string | undefined,
  chain: ChainPartitionDescriptor | undefined,
  w: Walk,
): Promise<AvbImage | undefined> {
  const { opts, out } = w;
  const at = { partition: name, vbmeta: name, file: file || undefined, area: 'vbmeta' as const };
  const unread = (code: string | undefined, message: string, area: AvbProblem['area'] = 'vbmeta') => {
    out.vbmetas.push({ partition: name, file: at.file, ok: false });
    w.problem({ ...at, area, code: code ?? 'AVB_FAILED', message });
    return undefined;
  };
  if (!file || !existsSync(file))
    return unread(
      'AVB_IMAGE_MISSING',
      chain
        ? `vbmeta chains ${name}, whose image is missing`
        : `${name} has no image to read its vbmeta from`,
      'image',
    );
  let img: AvbImage;
  try {
    img = await readAvbImage(file);
  } catch (e) {
    const err = asOmieError(e);
    return unread(err.code, err.message);
  }
  const v = img.vbmeta;
  const h = v.header;
  const location = chain ? chain.rollbackIndexLocation : h.rollbackIndexLocation;
  const check: VbmetaCheck = {
    partition: name,
    file,
    ok: true,
    publicKey: Buffer.from(v.publicKey),
    publicKeyMetadata: Buffer.from(v.publicKeyMetadata),
    rollbackIndex: h.rollbackIndex,
    rollbackIndexLocation: location,
    flags: h.flags,
    size: v.blob.length,
  };
  out.vbmetas.push(check);
  const fail = (code: string, message: string, context?: Record<string, unknown>) => {
    check.ok = false;
    w.problem({ ...at, code, message, ...(context ? { context } : {}) });
    return w.stopped();
  };
  if (
    img.footer &&
    img.footer.versionMajor !== FOOTER_VERSION_MAJOR &&
    fail(
      'AVB_UNSUPPORTED_VERSION',
      `AVB footer version ${img.footer.versionMajor}.${img.footer.versionMinor} of ${file} is not supported`,
    )
  )
    return img;
  try {
    Object.assign(
      check,
      verifyVbmeta(v, { expectedPublicKey: chain?.publicKey ?? opts.expectedPublicKey, file }),
    );
  } catch (e) {
    const err = asOmieError(e);
    const chainKey = chain && err.code === 'AVB_PUBLIC_KEY_MISMATCH';
    if (
      fail(
        chainKey ? 'AVB_CHAIN_KEY_MISMATCH' : (err.code ?? 'AVB_FAILED'),
        chainKey ? `${file} is not signed with the key in the chain descriptor for ${name}` : err.message,
        err.context,
      )
    )
      return img;
  }
  // avb_slot_verify: an unsigned struct does not verify (avbtool accepts it).
  if (
    opts.bootloader &&
    check.signed === false &&
    fail('AVB_NOT_SIGNED', `${name}: vbmeta is not signed (algorithm NONE)`)
  )
    return img;
  if (
    chain &&
    h.flags !== 0 &&
    fail('AVB_CHAINED_FLAGS', `${name}: a chained vbmeta must have no flags (it has ${h.flags})`, {
      found: h.flags,
      expected: 0,
    })
  )
    return img;
  if (
    location >= AVB_ROLLBACK_LOCATIONS &&
    fail('AVB_BAD_ROLLBACK_LOCATION', `${name}: rollback index location ${location} is out of range`, {
      found: location,
      expected: `< ${AVB_ROLLBACK_LOCATIONS}`,
    })
  )
    return img;
  if (!chain && opts.trustedKey && v.publicKey.length) {
    out.keyTrusted = opts.trustedKey(v.publicKey, v.publicKeyMetadata);
    if (
      !out.keyTrusted &&
      fail('AVB_PUBLIC_KEY_REJECTED', `${name} is signed by a key this bootloader does not trust`, {
        foundSha256: avbPublicKeySha256(v.publicKey),
      })
    )
      return img;
  }
  const stored = opts.storedRollbackIndex?.(location) ?? 0n;
  if (h.rollbackIndex < stored)
    fail(
      'AVB_ROLLBACK_INDEX',
      `${name}: rollback index ${h.rollbackIndex} is below the stored ${stored} (location ${location})`,
      {
        location,
        found: h.rollbackIndex.toString(),
        expected: `>= ${stored}`,
      },
    );
  out.rollbackIndexes.set(location, h.rollbackIndex);
  return img;
}

/** avbtool's rule: partition `name` is `<dir>/<name><ext>` beside the vbmeta image, when it exists. */
function siblingOf(vbmetaImage: string): (name: string) => string | undefined {
  return (name) => {
    const p = join(dirname(vbmetaImage), `${name}${extname(vbmetaImage)}`);
    return existsSync(p) ? p : undefined;
  };
}

/** `system.img` → system, `vbmeta_system.img` → vbmeta_system, `boot-signed.img` → boot-signed. */
function partitionNameOf(file: string): string {
  const base = file.slice(Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\')) + 1);
  const ext = extname(base);
  return ext ? base.slice(0, -ext.length) : base;
}

/**
 * `avbtool calculate_vbmeta_digest --hash_algorithm sha256`: SHA-256 over the vbmeta blob of
 * `vbmetaImage` and, in descriptor order, the vbmeta blob of each partition it chains.
 */
export async function calculateVbmetaDigest(
  vbmetaImage: string,
  resolvePartition?: (partitionName: string) => string | undefined,
): Promise<string> {
  const resolve =
    resolvePartition ?? ((name: string) => join(dirname(vbmetaImage), `${name}${extname(vbmetaImage)}`));
  const top = await readAvbImage(vbmetaImage);
  const h = createHash('sha256').update(top.vbmeta.blob);
  for (const d of top.vbmeta.descriptors) {
    if (d.kind !== 'chain_partition') continue;
    const file = resolve(d.partitionName);
    if (!file)
      throw new VerificationError('avb', `vbmeta chains ${d.partitionName}, whose image is missing`, {
        code: 'AVB_IMAGE_MISSING',
        context: { partition: d.partitionName, file: vbmetaImage },
      });
    h.update((await readAvbImage(file)).vbmeta.blob);
  }
  return h.digest('hex');
}

async function verifyDescriptor(
  job: Job,
  opts: VerifyPartitionsOptions,
  problem: (p: AvbProblem) => void,
): Promise<DescriptorVerification> {
  const d = job.descriptor;
  const base = {
    partition: job.partition,
    kind: d.kind,
    vbmeta: job.vbmeta,
    file: job.file,
    bytes: d.imageSize,
  };
  const failed: DescriptorVerification = { ...base, result: 'failed' };
  const at = { partition: job.partition, vbmeta: job.vbmeta, file: job.file };
  if (!job.file || !existsSync(job.file)) {
    problem({
      ...at,
      code: 'AVB_IMAGE_MISSING',
      area: 'image',
      message: `no image of ${job.partition} to verify against its ${d.kind} descriptor in ${job.vbmeta}`,
    });
    return failed;
  }
  let r: ImageReader;
  try {
    r = await openReader(job.file);
  } catch (e) {
    problem({ ...at, code: asOmieError(e).code, area: 'image', message: asOmieError(e).message });
    return failed;
  }
  try {
    if (r.size < d.imageSize) {
      problem({
        ...at,
        code: 'AVB_IMAGE_TRUNCATED',
        area: 'image',
        message: `${job.file} is ${r.size} bytes, the ${d.kind} descriptor of ${job.partition} covers ${d.imageSize}`,
      });
      return failed;
    }
    const found =
      d.kind === 'hash'
        ? await checkHash(d, job.file, r, opts.onProgress)
        : await checkHashtree(d, job.file, r, {
            ...opts,
            trusted: opts.trustedHashtrees?.get(job.partition),
          });
    for (const p of found.problems) problem({ ...at, ...p });
    return { ...base, result: found.result, fec: found.fec };
  } catch (e) {
    const err = asOmieError(e);
    problem({ ...at, code: err.code, area: 'image', message: err.message });
    return failed;
  } finally {
    await r.close();
  }
}
