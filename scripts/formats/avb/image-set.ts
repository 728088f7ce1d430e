import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { FormatError, type OmieError, VerificationError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { type AvbAlgorithmName, algorithmByType } from './algorithms.ts';
import { FOOTER_VERSION_MAJOR } from './footer.ts';
import { readAvbImage } from './image.ts';
import { avbPublicKeySha256 } from './keys.ts';
import {
  CHAIN_FLAG_DO_NOT_USE_AB,
  HASH_FLAG_DO_NOT_USE_AB,
  HASHTREE_FLAG_DO_NOT_USE_AB,
  type ParsedVbmeta,
  VBMETA_FLAG_HASHTREE_DISABLED,
  VBMETA_FLAG_VERIFICATION_DISABLED,
} from './vbmeta.ts';
import { type VerifiedDescriptor, verifyHash, verifyHashtree, verifyVbmeta } from './verify.ts';

/**
 * Verifies a whole image set against its top-level vbmeta the way libavb's avb_slot_verify does
 * (external/avb/libavb/avb_slot_verify.c): the vbmeta struct's hash and signature, whether its key
 * is trusted (the bootloader's validate_vbmeta_public_key), its rollback index against the stored
 * one, then every descriptor — chained vbmeta structs (signed by the key in their chain
 * descriptor, no flags, no chains of their own), hash descriptors against the partitions' bytes —
 * and, beyond what libavb checks at boot, every hashtree descriptor's tree and root against the
 * partition (what dm-verity would find on first read). Problems are collected with libavb's
 * result codes instead of thrown, so a bootloader model can tell "does not verify" (red when
 * locked, orange when unlocked) from "cannot be parsed" (unbootable either way), and a flasher
 * can refuse a tampered build with the first problem's typed error.
 *
 * Partitions are named as in the descriptors ("boot", "system"); `partition()` maps each to the
 * file holding its bytes: `<dir>/<name>.img` for a build, `<name>_<slot>` for a device slot.
 */

/** libavb's AvbSlotVerifyResult (the OOM / INVALID_ARGUMENT cases cannot happen here). */
export type AvbSlotVerifyResult =
  | 'OK'
  | 'ERROR_IO'
  | 'ERROR_VERIFICATION'
  | 'ERROR_ROLLBACK_INDEX'
  | 'ERROR_PUBLIC_KEY_REJECTED'
  | 'ERROR_INVALID_METADATA'
  | 'ERROR_UNSUPPORTED_VERSION';

/** AVB_MAX_NUMBER_OF_ROLLBACK_INDEX_LOCATIONS. */
export const AVB_ROLLBACK_LOCATIONS = 32;

export interface VerifyImageSetOptions {
  /**
   * The file holding a partition's bytes (raw or Android sparse), or undefined when there is no
   * such partition. `useAbSuffix` is false for descriptors flagged DO_NOT_USE_AB.
   */
  partition: (name: string, useAbSuffix: boolean) => string | undefined;
  /** The partition holding the top-level vbmeta struct (default "vbmeta"). */
  topLevel?: string;
  /**
   * The bootloader's validate_vbmeta_public_key for the top-level key (AVB public key blob and
   * public key metadata). Absent: any key that verifies its own signature is accepted, which checks
   * a build against its own vbmeta.
   */
  trustedKey?: (publicKey: Buffer, metadata: Buffer) => boolean;
  /** read_rollback_index: the stored rollback index of a location (default 0). */
  storedRollbackIndex?: (location: number) => bigint;
  /**
   * AVB_SLOT_VERIFY_FLAGS_ALLOW_VERIFICATION_ERROR (an unlocked bootloader): carry on past
   * signature, key, rollback and digest problems, collecting them all.
   */
  allowVerificationError?: boolean;
  /** Check hashtree descriptors' trees (default true). */
  hashtrees?: boolean;
  onProgress?: ProgressFn;
}

/** One vbmeta struct that was loaded (top-level first, then chained ones in descriptor order). */
export interface LoadedVbmeta {
  partition: string;
  image: string;
  /** Header + authentication + auxiliary blocks, as hashed into the vbmeta digest. */
  blob: Buffer;
  algorithm: AvbAlgorithmName;
  publicKey: Buffer;
  publicKeyMetadata: Buffer;
  rollbackIndex: bigint;
  /** The location its rollback index is checked against (the chain descriptor's for chained ones). */
  rollbackIndexLocation: number;
  flags: number;
}

export interface ImageSetProblem {
  result: Exclude<AvbSlotVerifyResult, 'OK'>;
  error: OmieError;
}

export interface ImageSetVerification {
  /** The first problem's result (libavb's return value), or OK. */
  result: AvbSlotVerifyResult;
  /** Every problem found, in order; with allowVerificationError off, at most one. */
  problems: ImageSetProblem[];
  vbmetas: LoadedVbmeta[];
  descriptors: VerifiedDescriptor[];
  /** Flags of the top-level vbmeta struct (0 when it could not be read). */
  flags: number;
  /** The top-level vbmeta struct's key, when it was read. */
  publicKey?: Buffer;
  /** Whether trustedKey() accepted the top-level key (undefined when not asked or not reached). */
  keyTrusted?: boolean;
  /** Rollback index per location of the verified structs (libavb's slot_data->rollback_indexes). */
  rollbackIndexes: Map<number, bigint>;
  /**
   * SHA-256 over every loaded vbmeta struct, as `avbtool calculate_vbmeta_digest` prints it and
   * bootloaders pass as androidboot.vbmeta.digest; undefined when the top-level struct is unreadable.
   */
  vbmetaDigest?: string;
  /** Size of the loaded vbmeta structs together (androidboot.vbmeta.size). */
  vbmetaSize: number;
}

/** libavb's result_should_continue(): which results allowVerificationError may carry on past. */
function continuable(r: AvbSlotVerifyResult): boolean {
  return (
    r === 'OK' ||
    r === 'ERROR_VERIFICATION' ||
    r === 'ERROR_ROLLBACK_INDEX' ||
    r === 'ERROR_PUBLIC_KEY_REJECTED'
  );
}

/** Stops the walk: a problem that must not (or may not) be carried past. */
class Stop extends Error {}

export async function verifyImageSet(opts: VerifyImageSetOptions): Promise<ImageSetVerification> {
  const out: ImageSetVerification = {
    result: 'OK',
    problems: [],
    vbmetas: [],
    descriptors: [],
    flags: 0,
    rollbackIndexes: new Map(),
    vbmetaSize: 0,
  };
  const allow = opts.allowVerificationError === true;
  const problem = (result: ImageSetProblem['result'], error: OmieError): void => {
    out.problems.push({ result, error });
    if (out.result === 'OK') out.result = result;
    if (!allow || !continuable(result)) throw new Stop();
  };
  try {
    await loadVbmeta(opts, out, problem, {
      partition: opts.topLevel ?? 'vbmeta',
      useAbSuffix: true,
      location: 0,
    });
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }
  if (out.vbmetas.length) {
    const h = createHash('sha256');
    for (const v of out.vbmetas) h.update(v.blob);
    out.vbmetaDigest = h.digest('hex');
    out.vbmetaSize = out.vbmetas.reduce((a, v) => a + v.blob.length, 0);
  }
  return out;
}

function classify(e: unknown): ImageSetProblem['result'] {
  if (e instanceof VerificationError) {
    if (e.code === 'AVB_UNSUPPORTED_VERSION') return 'ERROR_UNSUPPORTED_VERSION';
    if (e.code === 'AVB_IMAGE_TRUNCATED' || e.code === 'AVB_PARTITION_MISSING') return 'ERROR_IO';
    return 'ERROR_VERIFICATION';
  }
  if (e instanceof FormatError) return 'ERROR_INVALID_METADATA';
  throw e;
}

function missing(name: string, what: string): VerificationError {
  return new VerificationError('avb', `${what} ${name} has no partition (or image) to read`, {
    code: 'AVB_PARTITION_MISSING',
    context: { partition: name },
  });
}

async function loadVbmeta(
  opts: VerifyImageSetOptions,
  out: ImageSetVerification,
  problem: (r: ImageSetProblem['result'], e: OmieError) => void,
  at: { partition: string; useAbSuffix: boolean; location: number; expectedKey?: Buffer },
): Promise<void> {
  const main = at.location === 0;
  const file = opts.partition(at.partition, at.useAbSuffix);
  if (!file || !existsSync(file)) return problem('ERROR_IO', missing(at.partition, 'vbmeta in'));
  let parsed: ParsedVbmeta;
  try {
    const img = await readAvbImage(file);
    if (img.footer && img.footer.versionMajor !== FOOTER_VERSION_MAJOR)
      throw new VerificationError('avb', `AVB footer version ${img.footer.versionMajor} is not supported`, {
        code: 'AVB_UNSUPPORTED_VERSION',
        context: { file, partition: at.partition },
      });
    parsed = img.vbmeta;
  } catch (e) {
    return problem(classify(e), e as OmieError);
  }
  const h = parsed.header;
  const ctx = { file, partition: at.partition };
  // avb_vbmeta_image_verify: version, hash, signature (an unsigned struct does not verify either).
  try {
    const v = verifyVbmeta(parsed, { file });
    if (!v.signed)
      problem(
        'ERROR_VERIFICATION',
        new VerificationError('avb', `${at.partition}: vbmeta is not signed (algorithm NONE)`, {
          code: 'AVB_NOT_SIGNED',
          context: ctx,
        }),
      );
  } catch (e) {
    if (e instanceof Stop) throw e;
    problem(classify(e), e as OmieError);
  }
  if (main) {
    out.flags = h.flags;
    out.publicKey = Buffer.from(parsed.publicKey);
  } else if (h.flags !== 0)
    return problem(
      'ERROR_INVALID_METADATA',
      new VerificationError('avb', `${at.partition}: chained vbmeta has non-zero flags (${h.flags})`, {
        code: 'AVB_CHAINED_FLAGS',
        context: { ...ctx, found: h.flags, expected: 0 },
      }),
    );
  const location = main ? h.rollbackIndexLocation : at.location;
  if (location >= AVB_ROLLBACK_LOCATIONS)
    return problem(
      'ERROR_INVALID_METADATA',
      new VerificationError('avb', `${at.partition}: rollback index location ${location} is out of range`, {
        code: 'AVB_BAD_ROLLBACK_LOCATION',
        context: { ...ctx, found: location, expected: `< ${AVB_ROLLBACK_LOCATIONS}` },
      }),
    );
  // The key: a chained struct must carry its chain descriptor's key; the top-level one a key the
  // bootloader trusts.
  if (parsed.publicKey.length) {
    if (at.expectedKey) {
      if (!at.expectedKey.equals(parsed.publicKey))
        problem(
          'ERROR_PUBLIC_KEY_REJECTED',
          new VerificationError('avb', `${at.partition} is not signed with the key in its chain descriptor`, {
            code: 'AVB_CHAIN_KEY_MISMATCH',
            context: {
              ...ctx,
              expectedSha256: avbPublicKeySha256(at.expectedKey),
              foundSha256: avbPublicKeySha256(parsed.publicKey),
            },
          }),
        );
    } else if (opts.trustedKey) {
      out.keyTrusted = opts.trustedKey(parsed.publicKey, parsed.publicKeyMetadata);
      if (!out.keyTrusted)
        problem(
          'ERROR_PUBLIC_KEY_REJECTED',
          new VerificationError('avb', `${at.partition} is signed by a key this bootloader does not trust`, {
            code: 'AVB_PUBLIC_KEY_REJECTED',
            context: { ...ctx, foundSha256: avbPublicKeySha256(parsed.publicKey) },
          }),
        );
    }
  }
  const stored = opts.storedRollbackIndex?.(location) ?? 0n;
  if (h.rollbackIndex < stored)
    problem(
      'ERROR_ROLLBACK_INDEX',
      new VerificationError(
        'avb',
        `${at.partition}: rollback index ${h.rollbackIndex} is below the stored ${stored} (location ${location})`,
        {
          code: 'AVB_ROLLBACK_INDEX',
          context: { ...ctx, location, found: h.rollbackIndex.toString(), expected: `>= ${stored}` },
        },
      ),
    );
  out.vbmetas.push({
    partition: at.partition,
    image: file,
    blob: Buffer.from(parsed.blob),
    algorithm: algorithmByType(h.algorithmType, file).name,
    publicKey: Buffer.from(parsed.publicKey),
    publicKeyMetadata: Buffer.from(parsed.publicKeyMetadata),
    rollbackIndex: h.rollbackIndex,
    rollbackIndexLocation: location,
    flags: h.flags,
  });
  // libavb: with VERIFICATION_DISABLED nothing below the top-level struct is looked at.
  if (h.flags & VBMETA_FLAG_VERIFICATION_DISABLED) {
    out.rollbackIndexes.set(location, h.rollbackIndex);
    return;
  }
  const hashtreeDisabled = (out.flags & VBMETA_FLAG_HASHTREE_DISABLED) !== 0;
  const progress = { onProgress: opts.onProgress };
  const imageOf = (d: { partitionName: string; flags: number }, noAb: number) =>
    opts.partition(d.partitionName, !(d.flags & noAb)) as string;
  /** A hash or hashtree descriptor against its partition's bytes (missing partition: ERROR_IO). */
  const checkAgainstPartition = async (
    d: { kind: string; partitionName: string; flags: number },
    verify: () => Promise<VerifiedDescriptor>,
  ): Promise<void> => {
    const image = imageOf(d, d.kind === 'hash' ? HASH_FLAG_DO_NOT_USE_AB : HASHTREE_FLAG_DO_NOT_USE_AB);
    if (!image || !existsSync(image))
      return problem('ERROR_IO', missing(d.partitionName, `${d.kind} descriptor for`));
    try {
      out.descriptors.push(await verify());
    } catch (e) {
      if (e instanceof Stop) throw e;
      problem(classify(e), e as OmieError);
    }
  };
  for (const d of parsed.descriptors) {
    if (d.kind === 'hash') {
      if (!d.digest.length && !(d.flags & HASH_FLAG_DO_NOT_USE_AB)) {
        problem(
          'ERROR_INVALID_METADATA',
          new VerificationError('avb', `${d.partitionName}: a persistent digest cannot be used with A/B`, {
            code: 'AVB_PERSISTENT_DIGEST_AB',
            context: { ...ctx, descriptorPartition: d.partitionName },
          }),
        );
        continue;
      }
      if (d.hashAlgorithm !== 'sha256' && d.hashAlgorithm !== 'sha512') {
        problem(
          'ERROR_INVALID_METADATA',
          new VerificationError('avb', `${d.partitionName}: unsupported hash algorithm ${d.hashAlgorithm}`, {
            code: 'AVB_UNSUPPORTED_HASH',
            context: { ...ctx, found: d.hashAlgorithm, expected: 'sha256 or sha512' },
          }),
        );
        continue;
      }
      await checkAgainstPartition(d, () => verifyHash(d, imageOf(d, HASH_FLAG_DO_NOT_USE_AB), progress));
    } else if (d.kind === 'hashtree') {
      if (hashtreeDisabled || opts.hashtrees === false) continue;
      await checkAgainstPartition(d, () =>
        verifyHashtree(d, imageOf(d, HASHTREE_FLAG_DO_NOT_USE_AB), progress),
      );
    } else if (d.kind === 'chain_partition') {
      const bad = !main
        ? 'a chained vbmeta may not chain further'
        : d.rollbackIndexLocation === 0
          ? 'chain descriptor has rollback index location 0'
          : undefined;
      if (bad)
        return problem(
          'ERROR_INVALID_METADATA',
          new VerificationError('avb', `${d.partitionName}: ${bad}`, {
            code: 'AVB_BAD_CHAIN',
            context: { ...ctx, descriptorPartition: d.partitionName },
          }),
        );
      const before = out.vbmetas.length;
      await loadVbmeta(opts, out, problem, {
        partition: d.partitionName,
        useAbSuffix: !(d.flags & CHAIN_FLAG_DO_NOT_USE_AB),
        location: d.rollbackIndexLocation,
        expectedKey: d.publicKey,
      });
      if (out.vbmetas.length > before)
        out.descriptors.push({
          kind: 'chain_partition',
          partitionName: d.partitionName,
          image: out.vbmetas[before].image,
          result: 'chained',
        });
    }
  }
  out.rollbackIndexes.set(location, h.rollbackIndex);
}
