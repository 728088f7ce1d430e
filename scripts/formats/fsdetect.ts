import { FormatError } from '../errors.ts';

/**
 * Recognises the two filesystems Android partitions use, from their superblocks at byte 1024:
 * ext4 (linux/fs/ext4/ext4.h struct ext4_super_block, magic 0xEF53 at offset 56) and erofs
 * (linux/fs/erofs/erofs_fs.h struct erofs_super_block, magic 0xE0F5E1E2 at offset 0).
 * Enough for `omie inspect` summaries; editing goes through e2fsprogs / erofs-utils.
 */

export const SUPERBLOCK_OFFSET = 1024;
export const EXT4_MAGIC = 0xef53;
export const EROFS_MAGIC = 0xe0f5e1e2;

export interface Ext4Info {
  fs: 'ext4';
  blockSize: number;
  blocksCount: number;
  /** blocksCount * blockSize. */
  size: number;
  freeBlocks: number;
  inodesCount: number;
  freeInodes: number;
  inodeSize: number;
  volumeName: string;
  lastMounted: string;
  uuid: string;
  /** mkfs time (seconds since epoch; 0 when unset, as Android's reproducible builds leave it). */
  createdAt: number;
  features: string[];
}

export interface ErofsInfo {
  fs: 'erofs';
  blockSize: number;
  blocks: number;
  size: number;
  inodes: number;
  /** Seconds since epoch (plus buildTimeNsec). */
  buildTime: number;
  buildTimeNsec: number;
  volumeName: string;
  uuid: string;
  features: string[];
}

const EXT4_COMPAT: Record<number, string> = {
  1: 'dir_prealloc',
  2: 'imagic_inodes',
  4: 'has_journal',
  8: 'ext_attr',
  16: 'resize_inode',
  32: 'dir_index',
  512: 'sparse_super2',
  1024: 'fast_commit',
  2048: 'stable_inodes',
  4096: 'orphan_file',
};
/** ext4 incompatible features (ext4.h EXT4_FEATURE_INCOMPAT_*), by bit. */
export const EXT4_INCOMPAT_NAMES: Record<number, string> = {
  1: 'compression',
  2: 'filetype',
  4: 'needs_recovery',
  8: 'journal_dev',
  16: 'meta_bg',
  64: 'extent',
  128: '64bit',
  256: 'mmp',
  512: 'flex_bg',
  1024: 'ea_inode',
  4096: 'dirdata',
  8192: 'metadata_csum_seed',
  16384: 'large_dir',
  32768: 'inline_data',
  65536: 'encrypt',
  131072: 'casefold',
};
const EXT4_RO_COMPAT: Record<number, string> = {
  1: 'sparse_super',
  2: 'large_file',
  8: 'huge_file',
  16: 'uninit_bg',
  32: 'dir_nlink',
  64: 'extra_isize',
  256: 'quota',
  512: 'bigalloc',
  1024: 'metadata_csum',
  4096: 'read-only',
  8192: 'project',
  16384: 'shared_blocks',
  32768: 'verity',
  65536: 'orphan_present',
};
/** erofs_fs.h EROFS_FEATURE_*; some incompat bits carry two names (compr_cfgs, compr_head2, dedupe). */
const EROFS_COMPAT: Record<number, string> = {
  1: 'sb_csum',
  2: 'mtime',
  4: 'xattr_filter',
  8: 'shared_ea_in_metabox',
  16: 'plain_xattr_pfx',
};
/** erofs_fs.h EROFS_FEATURE_INCOMPAT_* bit → name. */
export const EROFS_INCOMPAT: Record<number, string> = {
  1: 'lz4_0padding',
  2: 'big_pcluster',
  4: 'chunked_file',
  8: 'device_table',
  16: 'ztailpacking',
  32: 'fragments',
  64: 'xattr_prefixes',
  128: '48bit',
  256: 'metabox',
};

function flags(v: number, names: Record<number, string>): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    const f = 2 ** bit;
    if (Math.floor(v / f) % 2 === 1) out.push(names[f] ?? `unknown_0x${f.toString(16)}`);
  }
  return out;
}

function str(b: Buffer, at: number, n: number): string {
  const s = b.subarray(at, at + n);
  const end = s.indexOf(0);
  return s.subarray(0, end < 0 ? n : end).toString('utf8');
}

function uuid(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `head` holds the image's first >= 2048 bytes. */
export function isExt4(head: Buffer): boolean {
  return head.length >= SUPERBLOCK_OFFSET + 58 && head.readUInt16LE(SUPERBLOCK_OFFSET + 56) === EXT4_MAGIC;
}

export function isErofs(head: Buffer): boolean {
  return head.length >= SUPERBLOCK_OFFSET + 4 && head.readUInt32LE(SUPERBLOCK_OFFSET) === EROFS_MAGIC;
}

/** Parses an ext4 (also ext2/3) superblock from the image's first 2048+ bytes. */
export function parseExt4(head: Buffer, file?: string): Ext4Info {
  if (!isExt4(head) || head.length < SUPERBLOCK_OFFSET + 1024)
    throw new FormatError({
      format: 'ext4',
      reason: 'no ext4 superblock',
      field: 's_magic',
      offset: SUPERBLOCK_OFFSET + 56,
      file,
    });
  const sb = head.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
  const logBlock = sb.readUInt32LE(24);
  if (logBlock > 6)
    throw new FormatError({
      format: 'ext4',
      reason: 'block size out of range',
      field: 's_log_block_size',
      offset: SUPERBLOCK_OFFSET + 24,
      expected: '0..6',
      found: logBlock,
      file,
    });
  const blockSize = 1024 << logBlock;
  const incompat = sb.readUInt32LE(96);
  const is64 = (incompat & 0x80) !== 0;
  const blocksCount = sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const freeBlocks = sb.readUInt32LE(12) + (is64 ? sb.readUInt32LE(0x158) * 2 ** 32 : 0);
  const revLevel = sb.readUInt32LE(76);
  return {
    fs: 'ext4',
    blockSize,
    blocksCount,
    size: blocksCount * blockSize,
    freeBlocks,
    inodesCount: sb.readUInt32LE(0),
    freeInodes: sb.readUInt32LE(16),
    inodeSize: revLevel === 0 ? 128 : sb.readUInt16LE(88),
    volumeName: str(sb, 120, 16),
    lastMounted: str(sb, 136, 64),
    uuid: uuid(sb.subarray(104, 120)),
    createdAt: sb.readUInt32LE(0x108),
    features: [
      ...flags(sb.readUInt32LE(92), EXT4_COMPAT),
      ...flags(incompat, EXT4_INCOMPAT_NAMES),
      ...flags(sb.readUInt32LE(100), EXT4_RO_COMPAT),
    ],
  };
}

/** Parses an erofs superblock from the image's first 1024+128 bytes. */
export function parseErofs(head: Buffer, file?: string): ErofsInfo {
  if (!isErofs(head) || head.length < SUPERBLOCK_OFFSET + 128)
    throw new FormatError({
      format: 'erofs',
      reason: 'no erofs superblock',
      field: 'magic',
      offset: SUPERBLOCK_OFFSET,
      file,
    });
  const sb = head.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 128);
  const bits = sb.readUInt8(12);
  if (bits < 9 || bits > 16)
    throw new FormatError({
      format: 'erofs',
      reason: 'block size out of range',
      field: 'blkszbits',
      offset: SUPERBLOCK_OFFSET + 12,
      expected: '9..16',
      found: bits,
      file,
    });
  const blockSize = 2 ** bits;
  const blocks = sb.readUInt32LE(36);
  return {
    fs: 'erofs',
    blockSize,
    blocks,
    size: blocks * blockSize,
    inodes: Number(sb.readBigUInt64LE(16)),
    buildTime: Number(sb.readBigUInt64LE(24)),
    buildTimeNsec: sb.readUInt32LE(32),
    volumeName: str(sb, 64, 16),
    uuid: uuid(sb.subarray(48, 64)),
    features: [...flags(sb.readUInt32LE(8), EROFS_COMPAT), ...flags(sb.readUInt32LE(80), EROFS_INCOMPAT)],
  };
}
