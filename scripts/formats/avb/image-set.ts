import type { ProgressFn } from '../../progress.ts';
import { type AvbProblem, type PartitionsVerification, verifyPartitions } from './partitions.ts';

/**
 * A whole image set (a build folder, a device slot) verified the way libavb's avb_slot_verify does
 * (external/avb/libavb/avb_slot_verify.c), on top of verifyPartitions' checks: the bootloader's
 * trusted key, the stored rollback indexes, the top-level flags, A/B suffixes, and where it stops
 * — at the first problem, or with AVB_SLOT_VERIFY_FLAGS_ALLOW_VERIFICATION_ERROR (an unlocked
 * bootloader) at the first one it may not carry past. Each problem gets libavb's result code, so a
 * bootloader model can tell "does not verify" (red when locked, orange when unlocked) from "cannot
 * be parsed" (unbootable either way), and a flasher can refuse a tampered build. Beyond libavb at
 * boot, every hashtree descriptor's tree and root are checked against the partition (what
 * dm-verity would find on first read); FEC is not (a bootloader never reads it).
 *
 * One difference in order: verifyPartitions reads every vbmeta struct before any partition's
 * bytes, so when both a struct and a hash descriptor before its chain descriptor are bad, the
 * struct's problem comes first (libavb would meet the hash first). Whether the slot boots is the same.
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

export interface VerifyImageSetOptions {
  /**
   * The file holding a partition's bytes (raw or Android sparse), or undefined when there is no
   * such partition. `useAbSuffix` is false for descriptors flagged DO_NOT_USE_AB.
   */
  partition: (name: string, useAbSuffix: boolean) => string | undefined;
  /** The partition holding the top-level vbmeta struct (default "vbmeta"). */
  topLevel?: string;
  /** The partitions are an A/B slot's (libavb's ab_suffix is not empty). */
  abSlot?: boolean;
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
  onProgress?: ProgressFn;
}

export interface ImageSetProblem extends AvbProblem {
  result: Exclude<AvbSlotVerifyResult, 'OK'>;
}

export interface ImageSetVerification extends Omit<PartitionsVerification, 'problems'> {
  /** The first problem's result (libavb's return value), or OK. */
  result: AvbSlotVerifyResult;
  /** Every problem found, in order; without allowVerificationError, where the walk stopped. */
  problems: ImageSetProblem[];
  /** The top-level vbmeta struct's key, when it was read. */
  publicKey?: Buffer;
}

/** libavb's result for each problem verifyPartitions reports; anything else is bad metadata. */
const RESULTS: Record<string, ImageSetProblem['result']> = {
  AVB_IMAGE_MISSING: 'ERROR_IO',
  AVB_IMAGE_TRUNCATED: 'ERROR_IO',
  AVB_UNSUPPORTED_VERSION: 'ERROR_UNSUPPORTED_VERSION',
  AVB_PUBLIC_KEY_MISMATCH: 'ERROR_PUBLIC_KEY_REJECTED',
  AVB_PUBLIC_KEY_REJECTED: 'ERROR_PUBLIC_KEY_REJECTED',
  AVB_CHAIN_KEY_MISMATCH: 'ERROR_PUBLIC_KEY_REJECTED',
  AVB_ROLLBACK_INDEX: 'ERROR_ROLLBACK_INDEX',
  AVB_NOT_SIGNED: 'ERROR_VERIFICATION',
  AVB_HASH_MISMATCH: 'ERROR_VERIFICATION',
  AVB_SIGNATURE_INVALID: 'ERROR_VERIFICATION',
  AVB_KEY_SIZE_MISMATCH: 'ERROR_VERIFICATION',
  AVB_HASH_DESCRIPTOR_MISMATCH: 'ERROR_VERIFICATION',
  AVB_HASHTREE_ROOT_MISMATCH: 'ERROR_VERIFICATION',
  AVB_HASHTREE_DATA_MISMATCH: 'ERROR_VERIFICATION',
  AVB_FEC_MISMATCH: 'ERROR_VERIFICATION',
};

export function slotVerifyResult(p: AvbProblem): ImageSetProblem['result'] {
  // A partition that cannot be read (EACCES, EIO…) is an I/O error to libavb.
  return RESULTS[p.code] ?? (/^E[A-Z]+$/.test(p.code) ? 'ERROR_IO' : 'ERROR_INVALID_METADATA');
}

/** libavb's result_should_continue(): what allowVerificationError may carry on past. */
export function resultShouldContinue(r: AvbSlotVerifyResult): boolean {
  return (
    r === 'OK' ||
    r === 'ERROR_VERIFICATION' ||
    r === 'ERROR_ROLLBACK_INDEX' ||
    r === 'ERROR_PUBLIC_KEY_REJECTED'
  );
}

export async function verifyImageSet(opts: VerifyImageSetOptions): Promise<ImageSetVerification> {
  const topLevel = opts.topLevel ?? 'vbmeta';
  const allow = opts.allowVerificationError === true;
  const v = await verifyPartitions(opts.partition(topLevel, true) ?? '', {
    partitionName: topLevel,
    resolvePartition: opts.partition,
    trustedKey: opts.trustedKey,
    storedRollbackIndex: opts.storedRollbackIndex,
    bootloader: { abSlot: opts.abSlot === true },
    stopAt: (p) => !allow || !resultShouldContinue(slotVerifyResult(p)),
    fec: false,
    onProgress: opts.onProgress,
  });
  const problems = v.problems.map((p) => ({ ...p, result: slotVerifyResult(p) }));
  const top = v.vbmetas[0];
  return {
    ...v,
    problems,
    result: problems[0]?.result ?? 'OK',
    publicKey: top?.publicKey,
  };
}
