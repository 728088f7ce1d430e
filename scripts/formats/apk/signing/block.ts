/**
 * APK Signing Block (apksig ApkSigningBlockUtils.findApkSigningBlock): sits immediately before
 * the central directory. Layout: u64 size, ID-value pairs (u64 length, u32 id, value), u64 size
 * (same), 16-byte magic "APK Sig Block 42". Size counts everything but the first u64.
 */
import { FormatError } from '../../../errors.ts';
import { BinaryReader } from '../../binary.ts';
import type { ZipArchive } from '../zip.ts';

export const APK_SIG_BLOCK_MAGIC = Buffer.from('APK Sig Block 42', 'latin1');
export const BlockId = {
  V2: 0x7109871a,
  V3: 0xf05368c0,
  V31: 0x1b93ad61,
  /** apksigner's alignment padding block ("Brew"). */
  VERITY_PADDING: 0x42726577,
  SOURCE_STAMP_V1: 0x2b09189e,
  SOURCE_STAMP_V2: 0x6dff800d,
  /** Written by some store tools; carries no signature. */
  DEPENDENCY_INFO: 0x504b4453,
} as const;

/** Largest signing block we load (real ones are a few KiB to a few hundred KiB). */
const MAX_BLOCK = 64 * 1024 * 1024;

export interface SigningBlockPair {
  id: number;
  /** Offset of the value in the file. */
  offset: number;
  value: Buffer;
}

export interface SigningBlock {
  offset: number;
  size: number;
  pairs: SigningBlockPair[];
}

/** The APK Signing Block, or null when the APK has none (v1-only or unsigned). */
export async function findSigningBlock(zip: ZipArchive): Promise<SigningBlock | null> {
  const cdOffset = zip.layout.centralDirectoryOffset;
  if (cdOffset < 32) return null;
  const footer = await zip.source.read(cdOffset - 24, 24);
  if (!footer.subarray(8).equals(APK_SIG_BLOCK_MAGIC)) return null;
  const fail = (reason: string, offset: number, expected?: unknown, found?: unknown): never => {
    throw new FormatError({ format: 'apk-signing-block', reason, offset, expected, found, file: zip.name });
  };
  const sizeInFooter = footer.readBigUInt64LE(0);
  if (sizeInFooter < 24n || sizeInFooter > BigInt(Math.min(cdOffset - 8, MAX_BLOCK)))
    fail('block size out of range', cdOffset - 24, `24..${Math.min(cdOffset - 8, MAX_BLOCK)}`, sizeInFooter);
  const total = Number(sizeInFooter) + 8;
  const offset = cdOffset - total;
  const buf = await zip.source.read(offset, total);
  const sizeInHeader = buf.readBigUInt64LE(0);
  if (sizeInHeader !== sizeInFooter)
    fail('block sizes in header and footer differ', offset, sizeInFooter, sizeInHeader);
  const r = new BinaryReader(buf.subarray(0, total - 24), 'apk-signing-block', offset, zip.name).seek(8);
  const pairs: SigningBlockPair[] = [];
  while (r.remaining > 0) {
    const at = r.pos;
    if (r.remaining < 8) r.fail('truncated ID-value pair', { field: `pair ${pairs.length}`, at });
    const len = r.u64le(`pair ${pairs.length} length`);
    if (len < 4n || len > BigInt(r.remaining))
      r.fail('ID-value pair length out of range', {
        field: `pair ${pairs.length} length`,
        at,
        expected: `4..${r.remaining}`,
        found: len,
      });
    const id = r.u32le('pair id');
    const valueAt = r.pos;
    const value = r.bytes(Number(len) - 4, `pair 0x${id.toString(16)} value`);
    pairs.push({ id, offset: offset + valueAt, value });
  }
  return { offset, size: total, pairs };
}
