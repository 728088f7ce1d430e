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
import type { HashDescriptor, HashtreeDescriptor } from './vbmeta.ts';
import { type VbmetaVerification, verifyVbmeta } from './verify.ts';

/**
 * Verifies a whole build against its vbmeta, as a bootloader and dm-verity would over the
 * partitions' lifetime: the vbmeta signature, every chained vbmeta (signed by the key its chain
 * descriptor names, chaining no further), and every hash and hashtree descriptor against the
 * partition bytes (hashtree root recomputed with its salt and algorithm, the stored tree compared,
 * FEC parity recomputed where the descriptor has FEC). Unlike verifyImage (avbtool verify_image
 * semantics: the first failure throws), every problem is collected, and each names the partition,
 * what is damaged (data, tree, FEC, vbmeta) and, where blocks can tell, the first bad block.
 *
 * Streamed: each image's data is read once (level 0 of the tree by one worker thread per core,
 * scripts/formats/avb/hashtree.ts); the tree (≈ 1/128 of the data) and the FEC pass read the rest.
 */

export interface AvbProblem extends ContentProblem {
  /** Partition whose vbmeta or bytes are at fault. */
  partition: string;
  /** The vbmeta (partition name) that carries the descriptor or is itself at fault. */
  vbmeta: string;
  file?: string;
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
}

export interface PartitionsVerification {
  ok: boolean;
  /**
   * `avbtool calculate_vbmeta_digest` (SHA-256): the top-level vbmeta blob followed by each chained
   * partition's vbmeta blob in descriptor order, hex. What a bootloader reports as
   * androidboot.vbmeta.digest. Absent when a vbmeta it covers cannot be read.
   */
  vbmetaDigest?: string;
  vbmetas: VbmetaCheck[];
  descriptors: DescriptorVerification[];
  problems: AvbProblem[];
}

export type { TrustedHashtree };

export interface VerifyPartitionsOptions {
  /** Image of a named partition; default `<dir of vbmeta>/<name><ext>` like avbtool. */
  resolvePartition?: (partitionName: string) => string | undefined;
  /** The top-level vbmeta must be signed with this AVB public key blob. */
  expectedPublicKey?: Buffer;
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
  const out: PartitionsVerification = { ok: false, vbmetas: [], descriptors: [], problems: [] };
  const problem = (p: AvbProblem) => out.problems.push(p);
  const topName = partitionNameOf(vbmetaImage);
  const jobs: Job[] = [];
  const digest = createHash('sha256');
  let digestComplete = true;

  const load = async (name: string, file: string, expectedKey: Buffer | undefined, top: boolean) => {
    let img: AvbImage;
    try {
      img = await readAvbImage(file);
    } catch (e) {
      const err = asOmieError(e);
      problem({ code: err.code, partition: name, vbmeta: name, file, area: 'vbmeta', message: err.message });
      out.vbmetas.push({ partition: name, file, ok: false });
      return undefined;
    }
    const check: VbmetaCheck = { partition: name, file, ok: true };
    out.vbmetas.push(check);
    if (img.footer && img.footer.versionMajor !== FOOTER_VERSION_MAJOR) {
      check.ok = false;
      problem({
        code: 'AVB_UNSUPPORTED_VERSION',
        partition: name,
        vbmeta: name,
        file,
        area: 'vbmeta',
        message: `AVB footer version ${img.footer.versionMajor}.${img.footer.versionMinor} of ${file} is not supported`,
      });
    }
    try {
      Object.assign(check, verifyVbmeta(img.vbmeta, { expectedPublicKey: expectedKey, file }));
    } catch (e) {
      const err = asOmieError(e);
      check.ok = false;
      const code =
        !top && err.code === 'AVB_PUBLIC_KEY_MISMATCH'
          ? 'AVB_CHAIN_KEY_MISMATCH'
          : (err.code ?? 'AVB_FAILED');
      problem({
        code,
        partition: name,
        vbmeta: name,
        file,
        area: 'vbmeta',
        message:
          code === 'AVB_CHAIN_KEY_MISMATCH'
            ? `${file} is not signed with the key in the chain descriptor for ${name}`
            : err.message,
      });
    }
    return img;
  };

  const top = await load(topName, vbmetaImage, opts.expectedPublicKey, true);
  if (!top) {
    digestComplete = false;
  } else {
    digest.update(top.vbmeta.blob);
    const queue: Array<{ name: string; img: AvbImage; file: string }> = [
      { name: topName, img: top, file: vbmetaImage },
    ];
    for (const d of top.vbmeta.descriptors) {
      if (d.kind !== 'chain_partition') continue;
      const file = resolve(d.partitionName);
      if (!file) {
        digestComplete = false;
        problem({
          code: 'AVB_IMAGE_MISSING',
          partition: d.partitionName,
          vbmeta: topName,
          area: 'image',
          message: `vbmeta chains ${d.partitionName}, whose image is missing`,
        });
        continue;
      }
      const img = await load(d.partitionName, file, d.publicKey, false);
      if (!img) {
        digestComplete = false;
        continue;
      }
      digest.update(img.vbmeta.blob);
      queue.push({ name: d.partitionName, img, file });
    }
    for (const { name, img, file } of queue) {
      for (const d of img.vbmeta.descriptors) {
        if (d.kind === 'chain_partition' && name !== topName)
          problem({
            code: 'AVB_CHAIN_MISMATCH',
            partition: d.partitionName,
            vbmeta: name,
            file,
            area: 'vbmeta',
            message: `the chained vbmeta of ${name} chains ${d.partitionName} in turn; libavb accepts chain descriptors only in the top-level vbmeta`,
          });
        if (d.kind !== 'hash' && d.kind !== 'hashtree') continue;
        // A descriptor without a partition name describes the image that carries it (avbtool).
        const partition = d.partitionName || name;
        const target = d.partitionName ? resolve(d.partitionName) : file;
        const footered = img.footer && d.partitionName === name ? file : undefined;
        jobs.push({ partition, vbmeta: name, descriptor: d, file: target ?? footered });
      }
    }
  }
  if (digestComplete) out.vbmetaDigest = digest.digest('hex');

  const concurrency = Math.max(1, opts.concurrency ?? availableParallelism());
  const results: DescriptorVerification[] = new Array(jobs.length);
  // Problems in descriptor order, whatever order the jobs finish in.
  const found: AvbProblem[][] = jobs.map(() => []);
  // Largest first: the last to finish is then a small one.
  const order = jobs
    .map((_, i) => i)
    .sort((a, b) => jobs[b].descriptor.imageSize - jobs[a].descriptor.imageSize);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
      while (next < order.length) {
        const i = order[next++];
        results[i] = await verifyDescriptor(jobs[i], opts, (p) => found[i].push(p));
      }
    }),
  );
  out.descriptors = results;
  out.problems.push(...found.flat());
  out.ok = out.problems.length === 0;
  return out;
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
  if (!job.file) {
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
