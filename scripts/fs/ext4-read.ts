/**
 * ext2/3/4 images read in TypeScript, without e2fsprogs: superblock, group descriptors (32/64-bit,
 * meta_bg), inodes, extent trees and legacy block maps, inline data, linear and htree directories
 * (read linearly: the dx root and nodes look like empty or "." / ".." entries to a linear walk, as
 * the format intends), extended attributes in the inode body, in an external block and in EA
 * inodes. Follows the kernel's fs/ext4/ext4.h and e2fsprogs' lib/ext2fs. Reads with positioned
 * reads through a small chunk cache for metadata; file data is read straight into the caller's
 * buffer, extent by extent, so images of any size are never loaded into memory.
 *
 * With metadata_csum, the superblock's and every read inode's CRC-32C are verified as the kernel
 * does before it trusts them (ext4_superblock_csum_verify, ext4_inode_csum_verify; e2fsprogs
 * csum.c), so a flipped bit in a field this reader does not otherwise need is still caught.
 * Group descriptor, directory block, extent block and xattr block checksums are not verified, nor
 * gdt_csum (e2fsprogs' debugfs, the oracle of the tests, ignores all of them), and the journal is
 * not replayed (debugfs does not either). Every check that fails throws a FormatError with the
 * offset and field.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { FormatError } from '../errors.ts';
import { crc32cRaw } from '../formats/crc32c.ts';
import { EXT4_INCOMPAT_NAMES } from '../formats/fsdetect.ts';

export const EXT4_SUPER_OFFSET = 1024;
const EXT4_MAGIC = 0xef53;

/**
 * What this reader handles. needs_recovery is accepted like debugfs does (the journal is not
 * replayed; read-only Android images never have one to replay); casefold only changes htree hashes,
 * which a linear walk does not use. compression, journal_dev (not a filesystem), dirdata and encrypt
 * (names and data would come out scrambled) are refused by name.
 */
const INCOMPAT_SUPPORTED =
  0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x20000;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_EA_INODE = 0x400;
const COMPAT_SPARSE_SUPER2 = 0x200;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_METADATA_CSUM = 0x400;
const INCOMPAT_CSUM_SEED = 0x2000;
/** s_checksum: the superblock's CRC-32C covers the 1020 bytes before it. */
const SUPER_CSUM_OFFSET = 0x3fc;
/** EXT4_INODE_CSUM_HI_EXTRA_END: i_extra_isize from which i_checksum_hi (0x82) is present. */
const INODE_CSUM_HI_EXTRA_END = 4;

const INODE_FL_EXTENTS = 0x80000;
const INODE_FL_EA_INODE = 0x200000;
const INODE_FL_INLINE_DATA = 0x10000000;

const EXTENT_MAGIC = 0xf30a;
/** ext4.h EXT4_MAX_EXTENT_DEPTH. */
const MAX_EXTENT_DEPTH = 5;
const XATTR_MAGIC = 0xea020000;
/** e2fsprogs caps EA inode values at 64 KiB (ext_attr.c read_xattrs_from_buffer). */
const MAX_EA_INODE_VALUE = 64 * 1024;
/** A directory larger than this is treated as corrupt rather than read into memory. */
const MAX_DIR_SIZE = 256 * 1024 * 1024;
/** Metadata cache: 64 KiB chunks, up to 16 MiB. */
const CHUNK = 64 * 1024;
const CACHE_CHUNKS = 256;

/** xattr name prefixes by e_name_index, as e2fsprogs names them (ext_attr.c ea_names). */
const XATTR_PREFIX: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  5: 'lustre.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
  10: 'gnu.',
};

export interface Ext4Super {
  /** Seed of the metadata checksums; null without metadata_csum. */
  csumSeed: number | null;
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodesCount: number;
  inodeSize: number;
  groupCount: number;
  descSize: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  firstMetaBg: number;
  backupBgs: [number, number];
}

export interface Ext4Inode {
  ino: number;
  /** Byte offset of the inode in the image. */
  pos: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  flags: number;
  linksCount: number;
  /** The 60 bytes of i_block (extent root, block map, inline data or fast symlink). */
  iblock: Buffer;
  fileAcl: number;
  /** The whole on-disk inode (inode_size bytes). */
  raw: Buffer;
}

/** A run of blocks: logical block → physical block, `len` blocks; uninit runs read as zeros. */
interface Run {
  logical: number;
  physical: number;
  len: number;
  uninit: boolean;
}

export interface Ext4Dirent {
  name: string;
  ino: number;
}

export function parseExt4Super(b: Buffer, file?: string): Ext4Super {
  const fail = (reason: string, field: string, rel: number, expected: unknown, found: unknown): never => {
    throw new FormatError({
      format: 'ext4',
      reason,
      field,
      offset: EXT4_SUPER_OFFSET + rel,
      expected,
      found,
      file,
    });
  };
  if (b.length < 1024)
    throw new FormatError({
      format: 'ext4',
      reason: 'truncated superblock',
      offset: EXT4_SUPER_OFFSET,
      file,
    });
  const magic = b.readUInt16LE(0x38);
  if (magic !== EXT4_MAGIC) fail('bad magic', 's_magic', 0x38, EXT4_MAGIC, magic);
  const logBlock = b.readUInt32LE(0x18);
  if (logBlock > 6)
    fail('block size out of range', 's_log_block_size', 0x18, '0..6 (1 KiB..64 KiB)', logBlock);
  const blockSize = 1024 << logBlock;
  const featureCompat = b.readUInt32LE(0x5c);
  const featureIncompat = b.readUInt32LE(0x60);
  const featureRoCompat = b.readUInt32LE(0x64);
  const unknown: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    const v = 2 ** bit;
    if ((featureIncompat >>> bit) & 1 && !(INCOMPAT_SUPPORTED & v))
      unknown.push(EXT4_INCOMPAT_NAMES[v] ?? `0x${v.toString(16)}`);
  }
  if (unknown.length)
    throw new FormatError(
      {
        format: 'ext4',
        reason: `unsupported incompatible features: ${unknown.join(', ')}`,
        field: 's_feature_incompat',
        offset: EXT4_SUPER_OFFSET + 0x60,
        expected: `bits of 0x${INCOMPAT_SUPPORTED.toString(16)}`,
        found: `0x${featureIncompat.toString(16)}`,
        file,
      },
      { code: 'EXT4_UNSUPPORTED' },
    );
  const revLevel = b.readUInt32LE(0x4c);
  const inodeSize = revLevel === 0 ? 128 : b.readUInt16LE(0x58);
  if (inodeSize < 128 || inodeSize > blockSize || inodeSize & (inodeSize - 1))
    fail('inode size out of range', 's_inode_size', 0x58, `power of 2, 128..${blockSize}`, inodeSize);
  const is64 = (featureIncompat & INCOMPAT_64BIT) !== 0;
  const descSize = is64 ? b.readUInt16LE(0xfe) : 32;
  if (is64 && (descSize < 64 || descSize > 1024 || descSize & (descSize - 1)))
    fail('group descriptor size out of range', 's_desc_size', 0xfe, 'power of 2, 64..1024', descSize);
  const blocksCount = b.readUInt32LE(0x4) + (is64 ? b.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = b.readUInt32LE(0x14);
  const blocksPerGroup = b.readUInt32LE(0x20);
  const inodesPerGroup = b.readUInt32LE(0x28);
  const inodesCount = b.readUInt32LE(0x0);
  if (blocksPerGroup === 0 || blocksPerGroup > blockSize * 8)
    fail('blocks per group out of range', 's_blocks_per_group', 0x20, `1..${blockSize * 8}`, blocksPerGroup);
  if (inodesPerGroup === 0 || inodesPerGroup > blockSize * 8)
    fail('inodes per group out of range', 's_inodes_per_group', 0x28, `1..${blockSize * 8}`, inodesPerGroup);
  if (firstDataBlock >= blocksCount)
    fail(
      'first data block beyond the filesystem',
      's_first_data_block',
      0x14,
      `< ${blocksCount}`,
      firstDataBlock,
    );
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (inodesCount > groupCount * inodesPerGroup || inodesCount < 11)
    fail(
      'inode count out of range',
      's_inodes_count',
      0x0,
      `11..${groupCount * inodesPerGroup}`,
      inodesCount,
    );
  const metadataCsum = (featureRoCompat & RO_COMPAT_METADATA_CSUM) !== 0;
  if (metadataCsum) {
    const checksumType = b[0x175];
    if (checksumType !== 1)
      fail('unknown checksum type', 's_checksum_type', 0x175, '1 (crc32c)', checksumType);
    const want = b.readUInt32LE(SUPER_CSUM_OFFSET);
    const got = crc32cRaw(0xffffffff, b.subarray(0, SUPER_CSUM_OFFSET));
    if (got !== want)
      fail('superblock checksum mismatch', 's_checksum', SUPER_CSUM_OFFSET, hex32(got), hex32(want));
  }
  return {
    // ext2fs_init_csum_seed: the stored seed, or the CRC-32C of the filesystem UUID.
    csumSeed: !metadataCsum
      ? null
      : featureIncompat & INCOMPAT_CSUM_SEED
        ? b.readUInt32LE(0x270)
        : crc32cRaw(0xffffffff, b.subarray(0x68, 0x78)),
    blockSize,
    blocksCount,
    firstDataBlock,
    blocksPerGroup,
    inodesPerGroup,
    inodesCount,
    inodeSize,
    groupCount,
    descSize,
    featureCompat,
    featureIncompat,
    featureRoCompat,
    firstMetaBg: b.readUInt32LE(0x104),
    backupBgs: [b.readUInt32LE(0x24c), b.readUInt32LE(0x250)],
  };
}

/** e2fsprogs ext2fs_bg_has_super: which groups hold a superblock backup (and so descriptors). */
function groupHasSuper(sb: Ext4Super, g: number): boolean {
  if (g === 0) return true;
  if (sb.featureCompat & COMPAT_SPARSE_SUPER2) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (g <= 1 || !(sb.featureRoCompat & RO_COMPAT_SPARSE_SUPER)) return true;
  if (!(g & 1)) return false;
  for (const base of [3, 5, 7]) {
    let n = base;
    while (n < g) n *= base;
    if (n === g) return true;
  }
  return false;
}

/**
 * One opened ext4 image. The file handle is opened for the duration of `use()` calls (nested calls
 * share it) so a reader nobody closes does not leak a descriptor.
 */
export class Ext4Image {
  private fh: FileHandle | null = null;
  private users = 0;
  private opening: Promise<void> | null = null;
  private fileSize = 0;
  private cache = new Map<number, Buffer>();
  /** Inode table block of each group. */
  private inodeTables: number[] = [];
  sb!: Ext4Super;

  constructor(readonly imagePath: string) {}

  /** Runs `fn` with the image open (superblock and descriptors parsed on the first call). */
  async use<T>(fn: () => Promise<T>): Promise<T> {
    this.users++;
    try {
      if (!this.fh) {
        this.opening ??= this.openImage();
        await this.opening;
      }
      return await fn();
    } finally {
      this.users--;
      if (this.users === 0 && this.fh) {
        const fh = this.fh;
        this.fh = null;
        this.opening = null;
        await fh.close();
      }
    }
  }

  private async openImage(): Promise<void> {
    const fh = await open(this.imagePath, 'r');
    this.fh = fh;
    this.fileSize = (await fh.stat()).size;
    if (this.inodeTables.length) return;
    this.sb = parseExt4Super(await this.read(EXT4_SUPER_OFFSET, 1024), this.imagePath);
    await this.readDescriptors();
  }

  fail(
    reason: string,
    d: { field?: string; offset?: number; expected?: unknown; found?: unknown } = {},
  ): never {
    throw new FormatError({ format: 'ext4', reason, ...d, file: this.imagePath });
  }

  /** Positioned read of exactly `len` bytes into `into` (a fresh buffer by default). */
  private async read(pos: number, len: number, into?: Buffer, at = 0): Promise<Buffer> {
    if (pos < 0 || len < 0 || pos + len > this.fileSize)
      this.fail('read beyond end of image', {
        offset: pos,
        expected: `<= ${this.fileSize}`,
        found: pos + len,
      });
    const b = into ?? Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.fh!.read(b, at + done, len - done, pos + done);
      if (bytesRead === 0) this.fail('short read', { offset: pos + done });
      done += bytesRead;
    }
    return b;
  }

  /** Metadata read through the chunk cache. */
  private async meta(pos: number, len: number): Promise<Buffer> {
    if (pos < 0 || pos + len > this.fileSize)
      this.fail('metadata beyond end of image', {
        offset: pos,
        expected: `<= ${this.fileSize}`,
        found: pos + len,
      });
    const first = Math.floor(pos / CHUNK);
    const last = Math.floor((pos + len - 1) / CHUNK);
    if (first === last) {
      const c = await this.chunk(first);
      return c.subarray(pos - first * CHUNK, pos - first * CHUNK + len);
    }
    const parts: Buffer[] = [];
    for (let i = first; i <= last; i++) parts.push(await this.chunk(i));
    const all = Buffer.concat(parts);
    return all.subarray(pos - first * CHUNK, pos - first * CHUNK + len);
  }

  private async chunk(i: number): Promise<Buffer> {
    const hit = this.cache.get(i);
    if (hit) {
      this.cache.delete(i);
      this.cache.set(i, hit);
      return hit;
    }
    const start = i * CHUNK;
    const b = await this.read(start, Math.min(CHUNK, this.fileSize - start));
    this.cache.set(i, b);
    if (this.cache.size > CACHE_CHUNKS) this.cache.delete(this.cache.keys().next().value!);
    return b;
  }

  /** Checks that blocks [blk, blk+len) lie inside the filesystem and the image file. */
  private checkBlocks(blk: number, len: number, field: string, offset: number): void {
    const sb = this.sb;
    if (blk < sb.firstDataBlock || blk + len > sb.blocksCount)
      this.fail('block number beyond the filesystem', {
        field,
        offset,
        expected: `${sb.firstDataBlock}..${sb.blocksCount - 1}`,
        found: blk + len - 1,
      });
  }

  private async block(blk: number, field: string, offset: number): Promise<Buffer> {
    this.checkBlocks(blk, 1, field, offset);
    return this.meta(blk * this.sb.blockSize, this.sb.blockSize);
  }

  /** Group descriptor table (or meta_bg descriptor blocks): each group's inode table location. */
  private async readDescriptors(): Promise<void> {
    const sb = this.sb;
    const perBlock = sb.blockSize / sb.descSize;
    const descBlocks = Math.ceil(sb.groupCount / perBlock);
    const metaBg = (sb.featureIncompat & INCOMPAT_META_BG) !== 0;
    const tables: number[] = [];
    const lastDesc = sb.firstDataBlock + 1 + (metaBg ? Math.min(descBlocks, sb.firstMetaBg) : descBlocks);
    if (lastDesc * sb.blockSize > this.fileSize)
      this.fail('group descriptors beyond the end of the image', {
        field: 's_blocks_count',
        offset: EXT4_SUPER_OFFSET + 4,
        expected: `descriptor table within ${this.fileSize} bytes`,
        found: `${sb.groupCount} groups`,
      });
    for (let i = 0; i < descBlocks; i++) {
      let blk: number;
      if (!metaBg || i < sb.firstMetaBg) blk = sb.firstDataBlock + 1 + i;
      else {
        // ext2fs_descriptor_block_loc2: a meta group's descriptors sit in its first group, after
        // the superblock backup when that group has one.
        const g = perBlock * i;
        blk = sb.firstDataBlock + g * sb.blocksPerGroup + (groupHasSuper(sb, g) ? 1 : 0);
        if (i === 0 && sb.blockSize === 1024 && sb.firstDataBlock === 0) blk += 1;
      }
      const b = await this.block(blk, 'group descriptor block', EXT4_SUPER_OFFSET);
      for (let j = 0; j < perBlock && tables.length < sb.groupCount; j++) {
        const d = j * sb.descSize;
        const table = b.readUInt32LE(d + 8) + (sb.descSize >= 64 ? b.readUInt32LE(d + 0x28) * 2 ** 32 : 0);
        const itableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
        this.checkBlocks(table, itableBlocks, 'bg_inode_table', blk * sb.blockSize + d + 8);
        tables.push(table);
      }
    }
    this.inodeTables = tables;
  }

  async inode(ino: number): Promise<Ext4Inode> {
    const sb = this.sb;
    if (ino < 1 || ino > sb.inodesCount)
      this.fail('inode number out of range', {
        field: 'inode',
        expected: `1..${sb.inodesCount}`,
        found: ino,
      });
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    const pos = this.inodeTables[g] * sb.blockSize + ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize;
    const raw = await this.meta(pos, sb.inodeSize);
    if (sb.csumSeed !== null) this.verifyInodeChecksum(ino, pos, raw, sb.csumSeed);
    const mode = raw.readUInt16LE(0);
    const size = raw.readUInt32LE(4) + raw.readUInt32LE(0x6c) * 2 ** 32;
    // ext4 addresses at most 2^32 blocks per file.
    if (size > 2 ** 32 * sb.blockSize)
      this.fail(`inode ${ino} size too large`, { field: 'i_size', offset: pos + 4, found: size });
    const fileAcl =
      raw.readUInt32LE(0x68) + (sb.featureIncompat & INCOMPAT_64BIT ? raw.readUInt16LE(0x76) * 2 ** 32 : 0);
    return {
      ino,
      pos,
      mode,
      uid: (raw.readUInt16LE(2) | (raw.readUInt16LE(0x78) << 16)) >>> 0,
      gid: (raw.readUInt16LE(0x18) | (raw.readUInt16LE(0x7a) << 16)) >>> 0,
      size,
      flags: raw.readUInt32LE(0x20),
      linksCount: raw.readUInt16LE(0x1a),
      iblock: raw.subarray(0x28, 0x28 + 60),
      fileAcl,
      raw,
    };
  }

  /** e2fsprogs ext2fs_inode_csum_verify: seed, inode number, generation, then the inode. */
  private verifyInodeChecksum(ino: number, pos: number, raw: Buffer, seed: number): void {
    const hasHi = raw.length > 128 && raw.readUInt16LE(0x80) >= INODE_CSUM_HI_EXTRA_END;
    const want = raw.readUInt16LE(0x7c) + (hasHi ? raw.readUInt16LE(0x82) * 0x10000 : 0);
    const copy = Buffer.from(raw);
    copy.writeUInt16LE(0, 0x7c);
    if (hasHi) copy.writeUInt16LE(0, 0x82);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(ino, 0);
    raw.copy(head, 4, 0x64, 0x68); // i_generation
    let got = crc32cRaw(crc32cRaw(seed, head), copy);
    if (!hasHi) got &= 0xffff;
    if (got === want) return;
    // An inode that was never written is all zeros, checksum included (e2fsprogs accepts it).
    if (raw.subarray(0, 128).every((x) => x === 0)) return;
    this.fail(`inode ${ino} checksum mismatch`, {
      field: hasHi ? 'i_checksum_lo/hi' : 'i_checksum_lo',
      offset: pos + 0x7c,
      expected: hex32(got),
      found: hex32(want),
    });
  }

  /**
   * Extended attributes in storage order (inode body, then the external block), as e2fsprogs'
   * ext2fs_xattrs_read lists them: full names with the index prefix, raw values (POSIX ACLs in the
   * ext4 disk format, as debugfs ea_list prints them). Includes "system.data".
   */
  async xattrs(ino: Ext4Inode): Promise<Array<{ name: string; value: Buffer }>> {
    const sb = this.sb;
    const out: Array<{ name: string; value: Buffer }> = [];
    if (sb.inodeSize > 128) {
      const extra = ino.raw.readUInt16LE(0x80);
      if (extra >= 2 && sb.inodeSize > 128 + extra + 4) {
        if (extra & 3)
          this.fail(`inode ${ino.ino} extra size not a multiple of 4`, {
            field: 'i_extra_isize',
            offset: ino.pos + 0x80,
            found: extra,
          });
        const at = 128 + extra;
        if (ino.raw.readUInt32LE(at) === XATTR_MAGIC) {
          const area = ino.raw.subarray(at + 4);
          await this.xattrEntries(ino, area, area, ino.pos + at + 4, out);
        }
      }
    }
    if (ino.fileAcl !== 0) {
      const blk = ino.fileAcl;
      const b = await this.block(blk, 'i_file_acl', ino.pos + 0x68);
      const magic = b.readUInt32LE(0);
      if (magic !== XATTR_MAGIC)
        this.fail('bad xattr block magic', {
          field: 'h_magic',
          offset: blk * sb.blockSize,
          expected: XATTR_MAGIC,
          found: magic,
        });
      await this.xattrEntries(ino, b.subarray(32), b, blk * sb.blockSize + 32, out);
    }
    return out;
  }

  /**
   * ext4_xattr_entry records (e_name_len u8, e_name_index u8, e_value_offs u16, e_value_inum u32,
   * e_value_size u32, e_hash u32, name, 4-byte aligned) until four zero bytes; value offsets are
   * relative to `valueBase` (the first entry in the inode body, the block start in a block).
   */
  private async xattrEntries(
    ino: Ext4Inode,
    entries: Buffer,
    valueBase: Buffer,
    pos: number,
    out: Array<{ name: string; value: Buffer }>,
  ): Promise<void> {
    const entriesOff = entries.byteOffset - valueBase.byteOffset;
    let off = 0;
    while (off + 4 <= entries.length && entries.readUInt32LE(off) !== 0) {
      if (off + 16 > entries.length)
        this.fail(`xattr entry header overflows its area (inode ${ino.ino})`, {
          offset: pos + off,
          expected: `<= ${entries.length}`,
          found: off + 16,
        });
      const nameLen = entries.readUInt8(off);
      const index = entries.readUInt8(off + 1);
      const valueOffs = entries.readUInt16LE(off + 2);
      const valueInum = entries.readUInt32LE(off + 4);
      const valueSize = entries.readUInt32LE(off + 8);
      const next = off + ((16 + nameLen + 3) & ~3);
      if (next > entries.length)
        this.fail(`xattr name overflows its area (inode ${ino.ino})`, {
          field: 'e_name_len',
          offset: pos + off,
          expected: `<= ${entries.length - off - 16}`,
          found: nameLen,
        });
      const name =
        (XATTR_PREFIX[index] ?? '') + entries.subarray(off + 16, off + 16 + nameLen).toString('latin1');
      let value: Buffer;
      if (valueInum === 0) {
        const start = valueOffs;
        if (valueSize > 0 && (start < entriesOff + off || start + valueSize > valueBase.length))
          this.fail(`xattr value outside its area (inode ${ino.ino})`, {
            field: 'e_value_offs',
            offset: pos + off + 2,
            expected: `value within ${valueBase.length} bytes`,
            found: `${start}+${valueSize}`,
          });
        value = Buffer.from(valueBase.subarray(start, start + valueSize));
      } else {
        if (!(this.sb.featureIncompat & INCOMPAT_EA_INODE))
          this.fail(`xattr value in an inode without the ea_inode feature (inode ${ino.ino})`, {
            field: 'e_value_inum',
            offset: pos + off + 4,
            found: valueInum,
          });
        if (valueSize > MAX_EA_INODE_VALUE)
          this.fail(`xattr value too large (inode ${ino.ino})`, {
            field: 'e_value_size',
            offset: pos + off + 8,
            expected: `<= ${MAX_EA_INODE_VALUE}`,
            found: valueSize,
          });
        const ea = await this.inode(valueInum);
        if (!(ea.flags & INODE_FL_EA_INODE) || ea.flags & INODE_FL_INLINE_DATA || ea.size !== valueSize)
          this.fail(`xattr value inode is not a matching EA inode (inode ${ino.ino})`, {
            field: 'e_value_inum',
            offset: ea.pos,
            expected: `EA inode of ${valueSize} bytes`,
            found: `flags 0x${ea.flags.toString(16)}, size ${ea.size}`,
          });
        value = await this.readRange(ea, 0, valueSize);
      }
      out.push({ name, value });
      off = next;
    }
  }

  /** The bytes of an inline_data inode: i_block, then the "system.data" xattr. */
  private async inlineData(ino: Ext4Inode): Promise<Buffer> {
    const tail = (await this.xattrs(ino)).find((x) => x.name === 'system.data')?.value ?? Buffer.alloc(0);
    const all = Buffer.concat([ino.iblock, tail]);
    if (ino.size > all.length)
      this.fail(`inline data shorter than the inode size (inode ${ino.ino})`, {
        field: 'i_size',
        offset: ino.pos + 4,
        expected: `<= ${all.length}`,
        found: ino.size,
      });
    return all;
  }

  private runsCache = new Map<number, Run[]>();

  /** One more extent node or indirect block for the inode being mapped. */
  private async mapNode(
    ino: Ext4Inode,
    blk: number,
    field: string,
    offset: number,
    budget: { left: number },
  ): Promise<Buffer> {
    if (--budget.left < 0)
      this.fail(`block mapping visits more nodes than the filesystem has blocks (inode ${ino.ino})`, {
        field,
        offset,
        expected: `<= ${this.sb.blocksCount}`,
      });
    return this.block(blk, field, offset);
  }

  /** The block runs of an extent or block-mapped inode, sorted by logical block. */
  async runs(ino: Ext4Inode): Promise<Run[]> {
    const hit = this.runsCache.get(ino.ino);
    if (hit) return hit;
    const maxLogical = Math.ceil(ino.size / this.sb.blockSize);
    const runs: Run[] = [];
    // A corrupt tree can point many entries at the same node: bound the nodes visited so such an
    // image fails instead of walking a combinatorial number of paths.
    const budget = { left: this.sb.blocksCount };
    if (ino.flags & INODE_FL_EXTENTS)
      await this.extentNode(ino, ino.iblock, ino.pos + 0x28, -1, runs, maxLogical, budget);
    else await this.blockMap(ino, runs, maxLogical, budget);
    this.runsCache.set(ino.ino, runs);
    if (this.runsCache.size > 8) this.runsCache.delete(this.runsCache.keys().next().value!);
    return runs;
  }

  /**
   * One extent tree node: ext4_extent_header (eh_magic, eh_entries, eh_max, eh_depth), then
   * eh_entries ext4_extent_idx (depth > 0) or ext4_extent (leaves). Each child's depth must be its
   * parent's minus one, so the walk ends even on a corrupt tree.
   */
  private async extentNode(
    ino: Ext4Inode,
    node: Buffer,
    pos: number,
    wantDepth: number,
    runs: Run[],
    maxLogical: number,
    budget: { left: number },
  ): Promise<void> {
    const magic = node.readUInt16LE(0);
    if (magic !== EXTENT_MAGIC)
      this.fail(`bad extent header magic (inode ${ino.ino})`, {
        field: 'eh_magic',
        offset: pos,
        expected: EXTENT_MAGIC,
        found: magic,
      });
    const entries = node.readUInt16LE(2);
    const max = node.readUInt16LE(4);
    const depth = node.readUInt16LE(6);
    const capacity = Math.floor((node.length - 12) / 12);
    if (max > capacity || entries > max)
      this.fail(`extent header entries out of range (inode ${ino.ino})`, {
        field: 'eh_entries',
        offset: pos + 2,
        expected: `entries <= max <= ${capacity}`,
        found: `${entries}/${max}`,
      });
    if (depth > MAX_EXTENT_DEPTH || (wantDepth >= 0 && depth !== wantDepth))
      this.fail(`extent tree depth out of range (inode ${ino.ino})`, {
        field: 'eh_depth',
        offset: pos + 6,
        expected: wantDepth >= 0 ? wantDepth : `<= ${MAX_EXTENT_DEPTH}`,
        found: depth,
      });
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      const logical = node.readUInt32LE(e);
      if (depth > 0) {
        const child = node.readUInt32LE(e + 4) + node.readUInt16LE(e + 8) * 2 ** 32;
        const b = await this.mapNode(ino, child, 'ei_leaf', pos + e + 4, budget);
        await this.extentNode(ino, b, child * this.sb.blockSize, depth - 1, runs, maxLogical, budget);
        continue;
      }
      let len = node.readUInt16LE(e + 4);
      const uninit = len > 32768;
      if (uninit) len -= 32768;
      const physical = node.readUInt16LE(e + 6) * 2 ** 32 + node.readUInt32LE(e + 8);
      const prev = runs[runs.length - 1];
      if (prev && logical < prev.logical + prev.len)
        this.fail(`extents overlap or are out of order (inode ${ino.ino})`, {
          field: 'ee_block',
          offset: pos + e,
          expected: `>= ${prev.logical + prev.len}`,
          found: logical,
        });
      if (len === 0 || logical >= maxLogical) continue; // past EOF (preallocated): never read
      this.checkBlocks(physical, len, 'ee_start', pos + e + 6);
      runs.push({ logical, physical, len, uninit });
    }
  }

  /** Legacy block map: 12 direct pointers, then single, double and triple indirect blocks. */
  private async blockMap(
    ino: Ext4Inode,
    runs: Run[],
    maxLogical: number,
    budget: { left: number },
  ): Promise<void> {
    const per = this.sb.blockSize / 4;
    const add = (logical: number, physical: number, at: number) => {
      if (physical === 0) return; // hole
      this.checkBlocks(physical, 1, 'i_block', at);
      const prev = runs[runs.length - 1];
      if (prev && prev.logical + prev.len === logical && prev.physical + prev.len === physical) prev.len++;
      else runs.push({ logical, physical, len: 1, uninit: false });
    };
    for (let i = 0; i < 12 && i < maxLogical; i++)
      add(i, ino.iblock.readUInt32LE(i * 4), ino.pos + 0x28 + i * 4);
    let base = 12;
    const walk = async (blk: number, level: number, start: number, at: number): Promise<void> => {
      if (blk === 0 || start >= maxLogical) return;
      const b = await this.mapNode(ino, blk, 'indirect block', at, budget);
      const span = per ** level;
      for (let i = 0; i < per && start + i * span < maxLogical; i++) {
        const p = b.readUInt32LE(i * 4);
        if (level === 0) add(start + i, p, blk * this.sb.blockSize + i * 4);
        else await walk(p, level - 1, start + i * span, blk * this.sb.blockSize + i * 4);
      }
    };
    for (let level = 0; level < 3; level++) {
      await walk(ino.iblock.readUInt32LE((12 + level) * 4), level, base, ino.pos + 0x28 + (12 + level) * 4);
      base += per ** (level + 1);
    }
  }

  /** The block runs holding an inode's data: none when it is inline, or a fast symlink's. */
  async dataRuns(ino: Ext4Inode): Promise<Run[]> {
    if (ino.flags & INODE_FL_INLINE_DATA) return [];
    if ((ino.mode & 0o170000) === 0o120000 && ino.size < 60) return [];
    return this.runs(ino);
  }

  /** `len` bytes of an inode's data from `off` (holes and uninitialized extents read as zeros). */
  async readRange(ino: Ext4Inode, off: number, len: number, into?: Buffer, at = 0): Promise<Buffer> {
    const out = into ?? Buffer.alloc(len);
    if (into) out.fill(0, at, at + len);
    if (off + len > ino.size)
      this.fail(`read past the end of inode ${ino.ino}`, {
        field: 'i_size',
        expected: `<= ${ino.size}`,
        found: off + len,
      });
    if (len === 0) return out;
    if (ino.flags & INODE_FL_INLINE_DATA) {
      (await this.inlineData(ino)).copy(out, at, off, off + len);
      return out;
    }
    const bs = this.sb.blockSize;
    const runs = await this.runs(ino);
    // First run that may intersect: binary search on logical block.
    const firstBlock = Math.floor(off / bs);
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid].logical + runs[mid].len <= firstBlock) lo = mid + 1;
      else hi = mid;
    }
    const end = off + len;
    for (let i = lo; i < runs.length; i++) {
      const r = runs[i];
      const rStart = r.logical * bs;
      if (rStart >= end) break;
      const rEnd = rStart + r.len * bs;
      const s = Math.max(off, rStart);
      const e = Math.min(end, rEnd);
      if (e <= s || r.uninit) continue;
      await this.read(r.physical * bs + (s - rStart), e - s, out, at + (s - off));
    }
    return out;
  }

  /** A symlink's target bytes: fast (in i_block, under 60 bytes), inline, or in data blocks. */
  async symlinkTarget(ino: Ext4Inode): Promise<Buffer> {
    if (ino.size > 4096)
      this.fail(`symlink too long (inode ${ino.ino})`, {
        field: 'i_size',
        offset: ino.pos + 4,
        expected: '<= 4096',
        found: ino.size,
      });
    // e2fsprogs ext2fs_is_fast_symlink and the kernel agree: a non-inline target under 60 bytes
    // lives in i_block, whatever the flags.
    if (!(ino.flags & INODE_FL_INLINE_DATA) && ino.size < 60)
      return Buffer.from(ino.iblock.subarray(0, ino.size));
    return this.readRange(ino, 0, ino.size);
  }

  /**
   * A directory's live entries (inode != 0), "." and ".." included for block directories. Block
   * directories, linear or htree, are walked block by block: ext4_dir_entry_2 (inode u32, rec_len
   * u16, name_len u8, file_type u8, name), rec_len never crossing a block. Inline directories keep
   * the parent's inode number in i_block's first 4 bytes, then entries, continued in system.data.
   */
  async readDir(ino: Ext4Inode): Promise<Ext4Dirent[]> {
    const out: Ext4Dirent[] = [];
    if (ino.size > MAX_DIR_SIZE)
      this.fail(`directory too large (inode ${ino.ino})`, {
        field: 'i_size',
        offset: ino.pos + 4,
        expected: `<= ${MAX_DIR_SIZE}`,
        found: ino.size,
      });
    if (ino.flags & INODE_FL_INLINE_DATA) {
      const data = await this.inlineData(ino);
      out.push({ name: '..', ino: data.readUInt32LE(0) });
      this.dirents(ino, data.subarray(4, 60), ino.pos + 0x28 + 4, out);
      if (data.length > 60) this.dirents(ino, data.subarray(60), ino.pos, out);
      return out;
    }
    // Only mapped blocks: like ext2fs_dir_iterate, a hole in a directory holds no entries.
    const bs = this.sb.blockSize;
    for (const r of await this.runs(ino)) {
      if (r.uninit) continue;
      for (let i = 0; i < r.len && (r.logical + i) * bs < ino.size; i++) {
        const b = await this.block(r.physical + i, 'directory block', ino.pos + 0x28);
        this.dirents(ino, b, (r.physical + i) * bs, out);
      }
    }
    return out;
  }

  private dirents(ino: Ext4Inode, b: Buffer, pos: number, out: Ext4Dirent[]): void {
    let off = 0;
    while (off + 8 <= b.length) {
      const child = b.readUInt32LE(off);
      const raw = b.readUInt16LE(off + 4);
      // e2fsprogs ext2fs_get_rec_len: 64 KiB blocks store their length as 0 or 65535.
      const recLen =
        raw === 65535 || raw === 0 ? (b.length >= 65536 ? 65536 : raw) : (raw & 65532) | ((raw & 3) << 16);
      const nameLen = b.readUInt8(off + 6);
      if (recLen < 8 || recLen % 4 || off + recLen > b.length || nameLen + 8 > recLen)
        this.fail(`bad directory entry (directory inode ${ino.ino})`, {
          field: 'rec_len',
          offset: pos + off,
          expected: `multiple of 4, >= ${nameLen + 8}, <= ${b.length - off}`,
          found: recLen,
        });
      if (child !== 0) {
        const name = b.subarray(off + 8, off + 8 + nameLen).toString('utf8');
        out.push({ name, ino: child });
      }
      off += recLen;
    }
  }
}

function hex32(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}
