/**
 * erofs images: a reader in TypeScript (superblock, inodes, directories, inline/shared xattrs with
 * long name prefixes, and file data of every layout: flat, inline tail, chunk-based, and lz4/lz4hc
 * compressed with big pclusters, ztailpacking, fragments and dedupe), following the on-disk format
 * of the Linux kernel's fs/erofs/erofs_fs.h, plus rebuilding with erofs-utils. The reader does not
 * depend on erofs-utils, whose Debian 1.5 cannot read images with fragments or dedupe (1.6+), which
 * is what recent AOSP builds make.
 *
 * erofs-utils 1.5 (Debian) neither restores xattrs when extracting (`fsck.erofs --extract`) nor
 * prints them (`dump.erofs`), and its mkfs has no `--fs-config-file`/`--mount-point` (those exist in
 * Android's build only). So the rebuild is: extract the data with fsck.erofs, apply the edits on the
 * host tree, put back every owner, mode, SELinux label and capability read by this module (chown,
 * chmod, setxattr: needs root, or runs under fakeroot), then `mkfs.erofs -T<epoch> -U<uuid>` which
 * copies owners and xattrs from the host tree. Labels for added files are computed from the image's
 * own file_contexts by the caller (see selinux.ts), which is what `--file-contexts` would do.
 */
import {
  chmod,
  copyFile,
  type FileHandle,
  lchown,
  link,
  mkdir,
  mkdtemp,
  open,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvironmentError, FormatError, InputError, VerificationError } from '../errors.ts';
import { crc32cRaw } from '../formats/crc32c.ts';
import { EROFS_INCOMPAT } from '../formats/fsdetect.ts';
import { lz4DecompressBlock } from '../formats/lz4.ts';
import { runTool, which } from '../host/tools.ts';
import type { ProgressFn } from '../progress.ts';
import { alignUp, ZMap } from './erofs-zmap.ts';
import { capabilitiesXattr, type FsConfigRule, resolveFsConfig } from './fs-config.ts';
import type { FileContexts } from './selinux.ts';
import {
  type FileDataRanges,
  type FsEdit,
  type FsEntry,
  type FsReader,
  fileTypeFromMode,
  labelXattr,
  normPath,
  withDerivedXattrs,
} from './types.ts';

export const EROFS_SUPER_OFFSET = 1024;
export const EROFS_MAGIC = 0xe0f5e1e2;

const LAYOUT_FLAT_PLAIN = 0;
const LAYOUT_COMPRESSED_FULL = 1;
const LAYOUT_FLAT_INLINE = 2;
const LAYOUT_COMPRESSED_COMPACT = 3;
const LAYOUT_CHUNK_BASED = 4;

/** xattr name prefixes by e_name_index (erofs_fs.h EROFS_XATTR_INDEX_*). */
const XATTR_PREFIX: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  5: 'lustre.',
  6: 'security.',
};
/** e_name_index bit meaning "long prefix number (index & 0x7f) from the superblock's table". */
const XATTR_LONG_PREFIX = 0x80;

/**
 * Incompatible features (erofs_fs.h EROFS_FEATURE_INCOMPAT_*) this reader implements: zero_padding
 * (lz4_0padding), big_pcluster, chunked_file, device_table, ztailpacking, fragments,
 * xattr_prefixes. Others the kernel knows (48bit, metabox) are refused by name.
 */
const EROFS_INCOMPAT_SUPPORTED = 0x7f;
const COMPAT_SB_CHKSUM = 0x1;
const INCOMPAT_ZERO_PADDING = 0x1;
const INCOMPAT_CHUNKED_FILE = 0x4;
const INCOMPAT_FRAGMENTS = 0x20;
const INCOMPAT_XATTR_PREFIXES = 0x40;
/** erofs_fs.h EROFS_NULL_ADDR: a hole in a chunk-based file. */
const NULL_ADDR = 0xffffffff;
const CHUNK_FORMAT_BLKBITS_MASK = 0x1f;
const CHUNK_FORMAT_INDEXES = 0x20;

export interface ErofsSuper {
  blockSize: number;
  rootNid: number;
  inodes: bigint;
  buildTime: bigint;
  blocks: number;
  metaBlkAddr: number;
  xattrBlkAddr: number;
  uuid: string;
  volumeName: string;
  featureCompat: number;
  featureIncompat: number;
  /** Number of extra devices (device table), nid of the packed inode (fragments), long xattr prefixes. */
  extraDevices: number;
  packedNid: number;
  xattrPrefixCount: number;
  xattrPrefixStart: number;
}

export function isErofs(head: Buffer): boolean {
  return head.length >= EROFS_SUPER_OFFSET + 4 && head.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_MAGIC;
}

export function parseErofsSuper(b: Buffer, file?: string): ErofsSuper {
  if (b.length < 128)
    throw new FormatError({ format: 'erofs', reason: 'truncated superblock', offset: 1024, file });
  const magic = b.readUInt32LE(0);
  if (magic !== EROFS_MAGIC)
    throw new FormatError({
      format: 'erofs',
      reason: 'bad magic',
      field: 'magic',
      offset: 1024,
      expected: EROFS_MAGIC,
      found: magic,
      file,
    });
  const blkszbits = b.readUInt8(12);
  if (blkszbits < 9 || blkszbits > 16)
    throw new FormatError({
      format: 'erofs',
      reason: 'block size out of range',
      field: 'blkszbits',
      expected: '9..16',
      found: blkszbits,
      file,
    });
  const featureIncompat = b.readUInt32LE(80);
  const unknown = Object.keys({ ...bitsOf(featureIncompat) })
    .map(Number)
    .filter((bit) => !(bit & EROFS_INCOMPAT_SUPPORTED));
  if (unknown.length)
    throw new FormatError({
      format: 'erofs',
      reason: `unsupported incompatible features: ${unknown
        .map((bit) => EROFS_INCOMPAT[bit] ?? `0x${bit.toString(16)}`)
        .join(', ')}`,
      field: 'feature_incompat',
      offset: EROFS_SUPER_OFFSET + 80,
      expected: `bits of 0x${EROFS_INCOMPAT_SUPPORTED.toString(16)}`,
      found: `0x${featureIncompat.toString(16)}`,
      file,
    });
  const dirblkbits = b.readUInt8(90);
  if (dirblkbits !== 0)
    throw new FormatError({
      format: 'erofs',
      reason: 'directory block size other than the block size is not supported',
      field: 'dirblkbits',
      offset: EROFS_SUPER_OFFSET + 90,
      expected: 0,
      found: dirblkbits,
      file,
    });
  const packedNid = b.readBigUInt64LE(96);
  const uuid = b.subarray(48, 64).toString('hex');
  return {
    featureCompat: b.readUInt32LE(8),
    blockSize: 1 << blkszbits,
    rootNid: b.readUInt16LE(14),
    inodes: b.readBigUInt64LE(16),
    buildTime: b.readBigUInt64LE(24),
    blocks: b.readUInt32LE(36),
    metaBlkAddr: b.readUInt32LE(40),
    xattrBlkAddr: b.readUInt32LE(44),
    uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
    volumeName: b.subarray(64, 80).toString('latin1').replace(/\0.*$/s, ''),
    featureIncompat,
    extraDevices: b.readUInt16LE(86),
    packedNid: packedNid > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(packedNid),
    xattrPrefixCount: featureIncompat & INCOMPAT_XATTR_PREFIXES ? b.readUInt8(91) : 0,
    xattrPrefixStart: b.readUInt32LE(92),
  };
}

/** Set bits of a u32, as a record keyed by bit value. */
function bitsOf(v: number): Record<number, true> {
  const out: Record<number, true> = {};
  for (let bit = 0; bit < 32; bit++) if ((v >>> bit) & 1) out[2 ** bit] = true;
  return out;
}

interface Inode {
  nid: number;
  layout: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** i_u: raw_blkaddr (flat layouts), chunk format in its low 16 bits (chunk-based). */
  blkaddr: number;
  /** Byte offset of the inode in the image. */
  pos: number;
  /** Size of the inode structure (32 or 64). */
  isize: number;
  /** Size of the inline xattr area. */
  xattrSize: number;
  xattrs: Record<string, string>;
}

const MAX_DIRS = 1_000_000;
/** Longest symlink target read (PATH_MAX); erofs stores them as file data. */
const MAX_SYMLINK = 4096;
/** readFile holds the whole file in memory: larger files go through copyOut, 1 MiB at a time. */
const MAX_READ_FILE = 512 * 1024 * 1024;
/** Bound on one pcluster's decoded size, whatever its headers claim (lz4 expands at most ~255x). */
const MAX_EXTENT_OUTPUT = 64 * 1024 * 1024;

/** FsReader for erofs images: everything, file data included, is read in TypeScript. */
export class ErofsReader implements FsReader {
  readonly kind = 'erofs' as const;
  private fh: FileHandle | null = null;
  private sb: ErofsSuper | null = null;
  private fileSize = 0;
  private cache: FsEntry[] | null = null;
  private byPath: Map<string, FsEntry> | null = null;
  private inodes = new Map<string, Inode>();
  private zmaps = new Map<number, ZMap>();
  private sharedXattrs = new Map<number, Buffer>();
  private packed: Inode | null = null;
  private longPrefixes: Array<{ base: number; infix: string }> | null = null;
  /** The last decoded pcluster (callers walk files forwards, lcluster by lcluster). */
  private lastPcluster: { key: string; data: Buffer } | null = null;

  constructor(readonly imagePath: string) {}

  async superblock(): Promise<ErofsSuper> {
    await this.openImage();
    return this.sb!;
  }

  private async openImage(): Promise<void> {
    if (this.fh) return;
    this.fh = await open(this.imagePath, 'r');
    this.fileSize = (await this.fh.stat()).size;
    this.sb = parseErofsSuper(await this.read(EROFS_SUPER_OFFSET, 128), this.imagePath);
    if (this.sb.featureCompat & COMPAT_SB_CHKSUM) {
      // Kernel erofs_superblock_csum_verify: crc32c(~0) over the superblock's block from byte 1024,
      // with the checksum field zeroed.
      const len =
        this.sb.blockSize > EROFS_SUPER_OFFSET ? this.sb.blockSize - EROFS_SUPER_OFFSET : this.sb.blockSize;
      const block = await this.read(EROFS_SUPER_OFFSET, Math.min(len, this.fileSize - EROFS_SUPER_OFFSET));
      const expected = block.readUInt32LE(4);
      block.writeUInt32LE(0, 4);
      const crc = crc32cRaw(0xffffffff, block);
      if (crc !== expected)
        this.fail('superblock checksum mismatch', {
          field: 'checksum',
          offset: EROFS_SUPER_OFFSET + 4,
          expected: `0x${expected.toString(16)}`,
          found: `0x${crc.toString(16)}`,
        });
    }
  }

  private fail(
    reason: string,
    d: { field?: string; offset?: number; expected?: unknown; found?: unknown } = {},
  ): never {
    throw new FormatError({ format: 'erofs', reason, ...d, file: this.imagePath });
  }

  private async read(pos: number, len: number): Promise<Buffer> {
    if (pos < 0 || len < 0 || pos + len > this.fileSize)
      this.fail('read beyond end of image', {
        offset: pos,
        expected: `<= ${this.fileSize}`,
        found: pos + len,
      });
    const b = Buffer.alloc(len);
    const { bytesRead } = await this.fh!.read(b, 0, len, pos);
    if (bytesRead !== len) this.fail('short read', { offset: pos });
    return b;
  }

  private async inode(nid: number): Promise<Inode> {
    const sb = this.sb!;
    const pos = sb.metaBlkAddr * sb.blockSize + nid * 32;
    const h = await this.read(pos, 32);
    const format = h.readUInt16LE(0);
    const extended = (format & 1) === 1;
    const layout = (format >> 1) & 0x7;
    // Bits above the layout: bit 4 is EROFS_I_NLINK_1 (48-bit images, refused at the superblock).
    if (format & ~0x1f || layout > LAYOUT_CHUNK_BASED)
      this.fail(`unsupported inode format (nid ${nid})`, { field: 'i_format', offset: pos, found: format });
    const icount = h.readUInt16LE(2);
    let ino: Inode;
    if (extended) {
      const x = await this.read(pos, 64);
      const size = x.readBigUInt64LE(8);
      if (size > BigInt(this.fileSize) * 1024n)
        this.fail(`inode size too large (nid ${nid})`, { field: 'i_size', offset: pos + 8, found: size });
      ino = {
        nid,
        layout,
        pos,
        isize: 64,
        mode: x.readUInt16LE(4),
        size: Number(size),
        blkaddr: x.readUInt32LE(16),
        uid: x.readUInt32LE(24),
        gid: x.readUInt32LE(28),
        xattrSize: 0,
        xattrs: {},
      };
    } else {
      ino = {
        nid,
        layout,
        pos,
        isize: 32,
        mode: h.readUInt16LE(4),
        size: h.readUInt32LE(8),
        blkaddr: h.readUInt32LE(16),
        uid: h.readUInt16LE(24),
        gid: h.readUInt16LE(26),
        xattrSize: 0,
        xattrs: {},
      };
    }
    if (![0o100000, 0o040000, 0o120000, 0o020000, 0o060000, 0o010000, 0o140000].includes(ino.mode & 0o170000))
      this.fail(`bogus file type in i_mode (nid ${nid})`, {
        field: 'i_mode',
        offset: pos + 4,
        found: ino.mode,
      });
    if (icount > 0) {
      ino.xattrSize = 12 + (icount - 1) * 4;
      ino.xattrs = await this.readXattrs(ino, pos + ino.isize, ino.xattrSize);
    }
    return ino;
  }

  /**
   * Inline xattr area: erofs_xattr_ibody_header (h_name_filter u32, h_shared_count u8, 7 reserved),
   * h_shared_count u32 ids of shared entries (at xattr_blkaddr + id * 4, where AOSP's mkfs puts
   * labels used by several files), then 4-byte aligned erofs_xattr_entry records.
   */
  private async readXattrs(ino: Inode, pos: number, size: number): Promise<Record<string, string>> {
    const sb = this.sb!;
    const area = await this.read(pos, size);
    const out: Record<string, string> = {};
    const shared = area.readUInt8(4);
    let off = 12 + shared * 4;
    if (off > size)
      this.fail(`shared xattr count overflows the xattr area (nid ${ino.nid})`, {
        field: 'h_shared_count',
        offset: pos + 4,
        expected: `<= ${(size - 12) / 4}`,
        found: shared,
      });
    for (let i = 0; i < shared; i++) {
      const at = sb.xattrBlkAddr * sb.blockSize + area.readUInt32LE(12 + i * 4) * 4;
      // Thousands of inodes share a few labels: read each shared entry once.
      let entry = this.sharedXattrs.get(at);
      if (!entry) {
        const e = await this.read(at, 4);
        entry = await this.read(at, 4 + e.readUInt8(0) + e.readUInt16LE(2));
        this.sharedXattrs.set(at, entry);
      }
      await this.addXattr(out, entry, 0);
    }
    while (off + 4 <= size) {
      const len = 4 + area.readUInt8(off) + area.readUInt16LE(off + 2);
      if (off + len > size)
        this.fail(`xattr entry overflows the xattr area (nid ${ino.nid})`, {
          field: 'e_value_size',
          offset: pos + off,
          expected: `<= ${size - off}`,
          found: len,
        });
      await this.addXattr(out, area, off);
      off += alignUp(len, 4);
    }
    return out;
  }

  private async addXattr(out: Record<string, string>, b: Buffer, off: number): Promise<void> {
    const nameLen = b.readUInt8(off);
    const index = b.readUInt8(off + 1);
    const valueLen = b.readUInt16LE(off + 2);
    const name = b.subarray(off + 4, off + 4 + nameLen).toString('latin1');
    const value = b.subarray(off + 4 + nameLen, off + 4 + nameLen + valueLen);
    let prefix: string | undefined;
    if (index & XATTR_LONG_PREFIX) {
      const long = (await this.xattrLongPrefixes())[index & 0x7f];
      if (!long)
        this.fail('xattr refers to a missing long name prefix', {
          field: 'e_name_index',
          expected: `< ${this.sb!.xattrPrefixCount}`,
          found: index & 0x7f,
        });
      prefix = (XATTR_PREFIX[long.base] ?? '') + long.infix;
    } else prefix = XATTR_PREFIX[index];
    // Like the kernel, entries with an index it has no handler for are not listed.
    if (prefix === undefined) return;
    out[prefix + name] = value.toString('hex');
  }

  /**
   * The long xattr name prefixes (erofs-utils 1.7+): xattr_prefix_count records at
   * xattr_prefix_start * 4, in the packed inode's data when there is one, each a u16 length then
   * erofs_xattr_long_prefix (base_index u8, infix), 4-byte aligned.
   */
  private async xattrLongPrefixes(): Promise<Array<{ base: number; infix: string }>> {
    if (this.longPrefixes) return this.longPrefixes;
    const sb = this.sb!;
    const start = sb.xattrPrefixStart * 4;
    const inPacked =
      sb.packedNid > 0 && (sb.featureIncompat & INCOMPAT_FRAGMENTS) !== 0 && !(sb.featureCompat & 0x10);
    const readAt = async (pos: number, len: number) =>
      inPacked ? this.readRange(await this.packedInode(), pos, len) : this.read(pos, len);
    const out: Array<{ base: number; infix: string }> = [];
    let pos = start;
    for (let i = 0; i < sb.xattrPrefixCount; i++) {
      const len = (await readAt(pos, 2)).readUInt16LE(0);
      if (len < 1)
        this.fail('empty long xattr prefix', { field: 'xattr prefix length', offset: pos, found: len });
      const p = await readAt(pos + 2, len);
      out.push({ base: p.readUInt8(0), infix: p.subarray(1).toString('latin1') });
      pos = alignUp(pos + 2 + len, 4);
    }
    this.longPrefixes = out;
    return out;
  }

  private async packedInode(): Promise<Inode> {
    if (this.packed) return this.packed;
    const sb = this.sb!;
    if (!(sb.featureIncompat & INCOMPAT_FRAGMENTS) || sb.packedNid <= 0)
      this.fail('data refers to the packed inode, which the image does not have', {
        field: 'packed_nid',
        found: sb.packedNid,
      });
    const ino = await this.inode(sb.packedNid);
    if (fileTypeFromMode(ino.mode) !== 'file')
      this.fail('the packed inode is not a regular file', { field: 'packed_nid', found: sb.packedNid });
    this.packed = ino;
    return ino;
  }

  /** Bytes [start, start + len) of an inode's data, whatever its layout. */
  private async readRange(ino: Inode, start: number, len: number): Promise<Buffer> {
    if (start < 0 || len < 0 || start + len > ino.size)
      this.fail(`read beyond the end of the file (nid ${ino.nid})`, {
        field: 'i_size',
        expected: `<= ${ino.size}`,
        found: start + len,
      });
    if (len === 0) return Buffer.alloc(0);
    switch (ino.layout) {
      case LAYOUT_FLAT_PLAIN:
      case LAYOUT_FLAT_INLINE:
        return this.flatData(ino, start, len);
      case LAYOUT_CHUNK_BASED:
        return this.chunkData(ino, start, len);
      default:
        return this.compressedData(ino, start, len);
    }
  }

  /**
   * FLAT_PLAIN: blocks from raw_blkaddr. FLAT_INLINE: the same except the last block, which is
   * stored right after the inode and its xattrs and must not cross a block boundary (kernel
   * erofs_map_blocks_flatmode: lastblk = nblocks - 1 even when the size is a multiple of the block).
   */
  private async flatData(ino: Inode, start: number, len: number): Promise<Buffer> {
    const bs = this.sb!.blockSize;
    const end = start + len;
    const tailStart = ino.layout === LAYOUT_FLAT_INLINE ? (Math.ceil(ino.size / bs) - 1) * bs : ino.size;
    const parts: Buffer[] = [];
    if (start < tailStart)
      parts.push(await this.read(ino.blkaddr * bs + start, Math.min(end, tailStart) - start));
    if (end > tailStart) {
      const inlinePos = ino.pos + ino.isize + ino.xattrSize;
      if ((inlinePos % bs) + (ino.size - tailStart) > bs)
        this.fail(`inline data crosses a block boundary (nid ${ino.nid})`, {
          field: 'i_size',
          offset: inlinePos,
          expected: `<= ${bs - (inlinePos % bs)} bytes inline`,
          found: ino.size - tailStart,
        });
      const a = Math.max(start, tailStart) - tailStart;
      parts.push(await this.read(inlinePos + a, end - tailStart - a));
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /**
   * CHUNK_BASED: the file is cut in chunks of 2^(blkszbits + (format & 0x1f)) bytes; after the inode
   * and its xattrs come either u32 block addresses or (format & 0x20) 8-byte erofs_inode_chunk_index
   * records (startblk_hi u16, device_id u16, blkaddr u32), 8-byte aligned. NULL_ADDR is a hole.
   */
  private async chunkData(ino: Inode, start: number, len: number): Promise<Buffer> {
    const sb = this.sb!;
    if (!(sb.featureIncompat & INCOMPAT_CHUNKED_FILE))
      this.fail(`chunk-based inode without the chunked_file feature (nid ${ino.nid})`, { field: 'i_format' });
    const format = ino.blkaddr & 0xffff;
    if (format & ~(CHUNK_FORMAT_BLKBITS_MASK | CHUNK_FORMAT_INDEXES))
      this.fail(`unknown chunk format (nid ${ino.nid})`, {
        field: 'i_u.c.format',
        offset: ino.pos + 16,
        found: format,
      });
    const chunkBits = Math.log2(sb.blockSize) + (format & CHUNK_FORMAT_BLKBITS_MASK);
    if (chunkBits > 40) this.fail('chunk size out of range', { field: 'i_u.c.format', found: format });
    const chunk = 2 ** chunkBits;
    const unit = format & CHUNK_FORMAT_INDEXES ? 8 : 4;
    const table = alignUp(ino.pos + ino.isize + ino.xattrSize, unit);
    const out = Buffer.alloc(len);
    for (let at = start; at < start + len; ) {
      const n = Math.floor(at / chunk);
      const e = await this.read(table + n * unit, unit);
      const blk = unit === 8 ? e.readUInt32LE(4) : e.readUInt32LE(0);
      if (unit === 8 && (e.readUInt16LE(0) !== 0 || (e.readUInt16LE(2) !== 0 && sb.extraDevices > 0)))
        this.fail(`chunk on an extra device or beyond 32-bit block addresses (nid ${ino.nid})`, {
          field: 'device_id',
          offset: table + n * unit,
          found: `${e.readUInt16LE(2)}/${e.readUInt16LE(0)}`,
        });
      const upto = Math.min(start + len, (n + 1) * chunk);
      if (blk !== NULL_ADDR)
        (await this.read(blk * sb.blockSize + (at - n * chunk), upto - at)).copy(out, at - start);
      at = upto;
    }
    return out;
  }

  private zmapOf(ino: Inode): Promise<ZMap> | ZMap {
    const cached = this.zmaps.get(ino.nid);
    if (cached) return cached;
    return (async () => {
      const sb = this.sb!;
      const hpos = alignUp(ino.pos + ino.isize + ino.xattrSize, 8);
      const header = await this.read(hpos, 8);
      // Index area: at most 8 bytes per lcluster (full) or 4 (compact), plus the inline tail and
      // the unaligned 4-byte reads of the compact decoder.
      const lclusters = Math.ceil(ino.size / sb.blockSize);
      const want = lclusters * (ino.layout === LAYOUT_COMPRESSED_FULL ? 8 : 4) + sb.blockSize + 64;
      const indexes = await this.read(hpos + 8, Math.max(0, Math.min(want, this.fileSize - hpos - 8)));
      const map = new ZMap(ino, Math.log2(sb.blockSize), header, indexes, this.imagePath);
      if (this.zmaps.size > 4096) this.zmaps.clear();
      this.zmaps.set(ino.nid, map);
      return map;
    })();
  }

  /** Compressed inodes: walks the extents covering the range and decodes each pcluster once. */
  private async compressedData(ino: Inode, start: number, len: number): Promise<Buffer> {
    const zmap = await this.zmapOf(ino);
    const out = Buffer.alloc(len);
    const end = start + len;
    for (let at = start; at < end; ) {
      const ext = zmap.mapExtent(at);
      const extEnd = Math.min(ext.la + ext.llen, ino.size);
      if (extEnd <= at)
        this.fail(`extent does not advance (nid ${ino.nid})`, { field: 'lcluster', found: at });
      const upto = Math.min(end, extEnd);
      let data: Buffer;
      if (ext.fragment) {
        const packed = await this.packedInode();
        if (packed.nid === ino.nid) this.fail('packed inode refers to itself', { field: 'packed_nid' });
        data = await this.readRange(packed, zmap.fragmentOff + (at - ext.la), upto - at);
        data.copy(out, at - start);
      } else {
        const decoded = await this.decodePcluster(ino, ext, extEnd - ext.la);
        if (decoded.length < upto - ext.la)
          this.fail(`pcluster decodes to fewer bytes than its extent (nid ${ino.nid})`, {
            field: 'pcluster',
            offset: ext.pa,
            expected: upto - ext.la,
            found: decoded.length,
          });
        decoded.copy(out, at - start, at - ext.la, upto - ext.la);
      }
      at = upto;
    }
    return out;
  }

  /** Decoded bytes of an extent's pcluster, at least `need` of them when the data has them. */
  private async decodePcluster(
    ino: Inode,
    ext: import('./erofs-zmap.ts').ZExtent,
    need: number,
  ): Promise<Buffer> {
    const key = `${ext.pa}:${ext.plen}:${ext.la}:${ino.nid}`;
    if (this.lastPcluster?.key === key && this.lastPcluster.data.length >= need)
      return this.lastPcluster.data;
    const raw = await this.read(ext.pa, ext.plen);
    const bs = this.sb!.blockSize;
    let data: Buffer;
    switch (ext.format) {
      case 'shifted':
        data = raw;
        break;
      case 'interlaced': {
        // The block is rotated so that logical offset la lands at la % blocksize.
        const skip = ext.la % bs;
        data = Buffer.concat([raw.subarray(skip), raw.subarray(0, skip)]);
        break;
      }
      case 'lz4': {
        let input = raw;
        const zeroPadding = (this.sb!.featureIncompat & INCOMPAT_ZERO_PADDING) !== 0;
        if (zeroPadding) {
          // The compressed stream ends at the end of the pcluster; leading zeros are padding.
          let margin = 0;
          while (margin < raw.length && raw[margin] === 0) margin++;
          if (margin >= Math.min(raw.length, 4096))
            this.fail(`lz4 pcluster is all padding (nid ${ino.nid})`, { field: 'pcluster', offset: ext.pa });
          input = raw.subarray(margin);
        }
        // The whole extent (not only `need`), so the walk decodes this pcluster once.
        const max = Math.min(ino.size - ext.la, ext.plen * 256 + 64, MAX_EXTENT_OUTPUT);
        data = lz4DecompressBlock(input, {
          maxOutput: Math.max(max, Math.min(need, MAX_EXTENT_OUTPUT)),
          // Extents are rarely more than a few times their pcluster: start there, grow if needed.
          sizeHint: Math.max(need, ext.plen * 4),
          lenient: !zeroPadding,
          baseOffset: ext.pa + (raw.length - input.length),
          file: this.imagePath,
        });
        break;
      }
      default:
        this.fail(`${ext.format} compression is not supported (nid ${ino.nid}; lz4/lz4hc are)`, {
          field: 'h_algorithmtype',
          expected: 'lz4',
          found: ext.format,
        });
    }
    this.lastPcluster = { key, data };
    return data;
  }

  private async readDir(ino: Inode): Promise<Array<{ name: string; nid: number }>> {
    const bs = this.sb!.blockSize;
    const out: Array<{ name: string; nid: number }> = [];
    // Directory blocks one at a time: erofs_dirent (nid u64, nameoff u16, file_type u8, reserved)
    // records, then the names; the first nameoff gives the record count.
    for (let off = 0; off < ino.size; off += bs) {
      const b = await this.readRange(ino, off, Math.min(bs, ino.size - off));
      if (b.length < 12)
        this.fail(`directory block too short (nid ${ino.nid})`, { field: 'i_size', found: b.length });
      const first = b.readUInt16LE(8);
      const count = Math.floor(first / 12);
      if (first % 12 !== 0 || count === 0 || first > b.length)
        this.fail(`bad directory block (nid ${ino.nid})`, {
          field: 'nameoff',
          found: first,
          offset: ino.pos,
        });
      for (let i = 0; i < count; i++) {
        const nid = b.readBigUInt64LE(i * 12);
        const nameoff = b.readUInt16LE(i * 12 + 8);
        const nextoff = i + 1 < count ? b.readUInt16LE((i + 1) * 12 + 8) : b.length;
        if (nameoff > nextoff || nextoff > b.length || nameoff < first)
          this.fail(`bad directory entry name offset (nid ${ino.nid})`, {
            field: 'nameoff',
            offset: ino.pos,
            found: nameoff,
          });
        let name = b.subarray(nameoff, nextoff).toString('utf8');
        if (i + 1 === count) name = name.replace(/\0.*$/s, '');
        if (nid > BigInt(Number.MAX_SAFE_INTEGER))
          this.fail('directory entry nid out of range', { field: 'nid', found: nid });
        out.push({ name, nid: Number(nid) });
      }
    }
    return out;
  }

  async list(onProgress?: ProgressFn): Promise<FsEntry[]> {
    if (this.cache) return this.cache;
    await this.openImage();
    const entries: FsEntry[] = [];
    const seenDirs = new Set<number>();
    const visit = async (nid: number, path: string) => {
      const ino = await this.inode(nid);
      this.inodes.set(path, ino);
      const type = fileTypeFromMode(ino.mode);
      let target: string | undefined;
      if (type === 'symlink') {
        if (ino.size > MAX_SYMLINK)
          this.fail('symlink too long', {
            field: 'i_size',
            offset: ino.pos,
            expected: `<= ${MAX_SYMLINK}`,
            found: ino.size,
          });
        target = (await this.readRange(ino, 0, ino.size)).toString('utf8');
      }
      entries.push(
        withDerivedXattrs({
          path,
          type,
          mode: ino.mode & 0o7777,
          uid: ino.uid,
          gid: ino.gid,
          size: ino.size,
          ...(target !== undefined ? { target } : {}),
          xattrs: ino.xattrs,
        }),
      );
      if (type !== 'dir') return;
      if (seenDirs.has(nid) || seenDirs.size > MAX_DIRS)
        this.fail('directory cycle', { offset: ino.pos, field: 'nid', found: nid });
      seenDirs.add(nid);
      for (const d of await this.readDir(ino)) {
        if (d.name === '.' || d.name === '..') continue;
        if (!d.name || d.name.includes('/'))
          this.fail('invalid file name', { found: d.name, offset: ino.pos, field: 'dirent name' });
        await visit(d.nid, path === '/' ? `/${d.name}` : `${path}/${d.name}`);
      }
      onProgress?.({
        stage: 'erofs list',
        done: entries.length,
        total: Number(this.sb!.inodes),
        unit: 'items',
      });
    };
    await visit(this.sb!.rootNid, '/');
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.cache = entries;
    return entries;
  }

  /**
   * Where every file, directory and symlink keeps its data: the blocks of flat layouts (the
   * inline tail block excepted), each chunk of chunk-based ones, each pcluster of compressed ones
   * (inline tails and packed fragments excepted).
   */
  async fileDataRanges(): Promise<FileDataRanges[]> {
    await this.list();
    const bs = this.sb!.blockSize;
    const out: FileDataRanges[] = [];
    for (const [path, ino] of [...this.inodes].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (ino.size === 0 || !['file', 'dir', 'symlink'].includes(fileTypeFromMode(ino.mode))) continue;
      const ranges: Array<[number, number]> = [];
      const add = (start: number, end: number) => {
        const last = ranges[ranges.length - 1];
        if (last && last[1] === start) last[1] = end;
        else if (!last || last[0] !== start) ranges.push([start, end]);
      };
      if (ino.layout === LAYOUT_FLAT_PLAIN || ino.layout === LAYOUT_FLAT_INLINE) {
        const blocks = Math.ceil(ino.size / bs) - (ino.layout === LAYOUT_FLAT_INLINE ? 1 : 0);
        if (blocks > 0) add(ino.blkaddr * bs, (ino.blkaddr + blocks) * bs);
      } else if (ino.layout === LAYOUT_CHUNK_BASED) {
        const format = ino.blkaddr & 0xffff;
        const chunk = bs * 2 ** (format & CHUNK_FORMAT_BLKBITS_MASK);
        const unit = format & CHUNK_FORMAT_INDEXES ? 8 : 4;
        const table = alignUp(ino.pos + ino.isize + ino.xattrSize, unit);
        const count = Math.ceil(ino.size / chunk);
        const index = await this.read(table, count * unit);
        for (let n = 0; n < count; n++) {
          const blk = unit === 8 ? index.readUInt32LE(n * 8 + 4) : index.readUInt32LE(n * 4);
          if (blk === NULL_ADDR) continue;
          const len = Math.ceil(Math.min(chunk, ino.size - n * chunk) / bs) * bs;
          add(blk * bs, blk * bs + len);
        }
      } else {
        const zmap = await this.zmapOf(ino);
        for (let at = 0; at < ino.size; ) {
          const ext = zmap.mapExtent(at);
          if (!ext.inline && !ext.fragment && ext.plen > 0) add(ext.pa, ext.pa + ext.plen);
          const next = ext.la + ext.llen;
          if (next <= at)
            this.fail(`extent does not advance (nid ${ino.nid})`, { field: 'lcluster', found: at });
          at = next;
        }
      }
      if (ranges.length) out.push({ path, ranges });
    }
    return out;
  }

  async stat(path: string): Promise<FsEntry | null> {
    const p = normPath(path);
    if (!this.byPath) this.byPath = new Map((await this.list()).map((e) => [e.path, e]));
    return this.byPath.get(p) ?? null;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== null;
  }

  /**
   * How the image compresses, for a rebuild that stays as small: ztailpacking, and the largest
   * physical cluster from the lz4 compression config (z_erofs_lz4_cfgs.max_pclusterblks, stored
   * after the superblock when big pclusters are on; one block otherwise). Null when uncompressed.
   */
  async compressionProfile(): Promise<{ ztailpacking: boolean; pclusterBytes: number } | null> {
    if (!(await this.isCompressed())) return null;
    const sb = this.sb!;
    const ztailpacking = (sb.featureIncompat & 0x10) !== 0;
    let pclusterBytes = sb.blockSize;
    if (sb.featureIncompat & 0x2) {
      const head = await this.read(EROFS_SUPER_OFFSET, 128);
      const algs = head.readUInt16LE(84);
      let pos = EROFS_SUPER_OFFSET + 128 + head.readUInt8(13) * 16;
      for (let alg = 0; alg < 16 && pos + 2 <= sb.blockSize; alg++) {
        if (!((algs >> alg) & 1)) continue;
        const size = (await this.read(pos, 2)).readUInt16LE(0);
        if (alg === 0 && size >= 4)
          pclusterBytes = Math.max(1, (await this.read(pos + 2, 4)).readUInt16LE(2)) * sb.blockSize;
        pos += 2 + size;
      }
    }
    return { ztailpacking, pclusterBytes: Math.min(pclusterBytes, 1024 * 1024) };
  }

  /** True when some regular file uses a compressed layout (the rebuild then compresses too). */
  async isCompressed(): Promise<boolean> {
    await this.list();
    return [...this.inodes.values()].some(
      (i) => i.layout === LAYOUT_COMPRESSED_FULL || i.layout === LAYOUT_COMPRESSED_COMPACT,
    );
  }

  private async regularFile(path: string): Promise<Inode> {
    const p = normPath(path);
    await this.list();
    const ino = this.inodes.get(p);
    if (!ino || fileTypeFromMode(ino.mode) !== 'file')
      throw new InputError(`${this.imagePath}: no regular file ${p}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    return ino;
  }

  async readFile(path: string): Promise<Buffer> {
    const ino = await this.regularFile(path);
    if (ino.size > MAX_READ_FILE)
      throw new InputError(`${this.imagePath}: ${normPath(path)} is too large to read into memory`, {
        code: 'FS_TOO_LARGE',
        context: { image: this.imagePath, path: normPath(path), size: ino.size, max: MAX_READ_FILE },
        hint: 'copy it out to a file instead (copyOut streams)',
      });
    return this.readRange(ino, 0, ino.size);
  }

  async copyOut(path: string, hostPath: string): Promise<void> {
    const ino = await this.regularFile(path);
    const out = await open(hostPath, 'w');
    try {
      const chunk = 1 << 20;
      for (let off = 0; off < ino.size; off += chunk)
        await out.write(await this.readRange(ino, off, Math.min(chunk, ino.size - off)));
    } finally {
      await out.close();
    }
  }

  /**
   * Writes the tree to a host directory (data, directories, symlinks; modes, owners and xattrs are
   * restored by the caller). Device nodes, FIFOs and sockets are refused: read-only Android
   * partitions hold none, and creating them needs privileges.
   */
  async extractTo(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // Hard links (several dirents, one nid) stay links, so mkfs.erofs keeps them one inode.
    const firstPathOfNid = new Map<number, string>();
    for (const e of await this.list()) {
      if (e.path === '/') continue;
      const host = join(dir, e.path.slice(1));
      const nid = this.inodes.get(e.path)?.nid ?? -1;
      if (e.type === 'dir') await mkdir(host, { mode: 0o755 });
      else if (e.type === 'file' && firstPathOfNid.has(nid)) await link(firstPathOfNid.get(nid)!, host);
      else if (e.type === 'file') {
        await this.copyOut(e.path, host);
        firstPathOfNid.set(nid, host);
      } else if (e.type === 'symlink') await symlink(e.target ?? '', host);
      else
        throw new InputError(`${this.imagePath}: cannot extract the ${e.type} ${e.path}`, {
          code: 'FS_SPECIAL_FILE',
          context: { image: this.imagePath, path: e.path, type: e.type },
        });
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
    this.lastPcluster = null;
  }
}

/**
 * Extracts an erofs image to a host directory with the TypeScript reader (erofs-utils 1.5's
 * `fsck.erofs --extract` cannot read images with fragments or dedupe): data, symlinks, modes, and
 * owners when running as root. xattrs are not written to the host.
 */
export async function extractErofs(image: string, dir: string): Promise<void> {
  const reader = new ErofsReader(image);
  try {
    await reader.extractTo(dir);
    const root = process.getuid?.() === 0;
    // Deepest first, so that read-only directories are closed after their children were written.
    const entries = [...(await reader.list())].reverse();
    for (const e of entries) {
      const host = e.path === '/' ? dir : join(dir, e.path.slice(1));
      if (root) await lchown(host, e.uid, e.gid);
      if (e.type !== 'symlink') await chmod(host, e.mode);
    }
  } finally {
    await reader.close();
  }
}

/** `fsck.erofs IMAGE`: throws VerificationError when the image does not check clean. */
export async function checkErofs(image: string): Promise<void> {
  const r = await runTool('fsck.erofs', [image], { reject: false });
  if (r.exitCode !== 0)
    throw new VerificationError('erofs', `fsck.erofs reports problems in ${image} (exit ${r.exitCode})`, {
      code: 'EROFS_FSCK',
      context: { image, report: `${r.stdout}\n${r.stderr}`.trim().slice(-4000) },
    });
}

export interface BuildErofsOptions {
  uuid: string;
  /** Fixed timestamp for every inode (default SOURCE_DATE_EPOCH or 0). */
  epoch?: number;
  /** lz4hc compression (what Android uses); default false. */
  compress?: boolean;
  /** With compress: largest physical cluster in bytes (mkfs -C; big pclusters compress better). */
  pclusterBytes?: number;
  /** With compress: pack the tail of each file inline (mkfs -Eztailpacking). */
  ztailpacking?: boolean;
}

/**
 * Metadata for each host path (relative to the tree root, "/" for the root): applied with chown,
 * chmod and setxattr before mkfs.erofs, which copies owners and xattrs from the host tree.
 */
export type ErofsMetadata = Array<{
  path: string;
  mode: number;
  uid: number;
  gid: number;
  xattrs: Record<string, string>;
}>;

/**
 * Builds an erofs image from a host tree, with owners, modes and xattrs taken from `meta` (every
 * host entry missing from it keeps root:root and its host mode, and no xattrs).
 */
export async function buildErofs(
  srcDir: string,
  image: string,
  meta: ErofsMetadata,
  opts: BuildErofsOptions,
): Promise<void> {
  const epoch =
    opts.epoch ??
    (process.env.SOURCE_DATE_EPOCH && /^\d+$/.test(process.env.SOURCE_DATE_EPOCH)
      ? Number(process.env.SOURCE_DATE_EPOCH)
      : 0);
  const work = await mkdtemp(join(tmpdir(), 'omie-erofs-build-'));
  try {
    const metaFile = join(work, 'meta.json');
    await writeFile(metaFile, JSON.stringify({ root: srcDir, entries: meta }));
    const script = join(work, 'apply.py');
    await writeFile(script, APPLY_META_PY);
    const mkfsArgs = [
      `-T${epoch}`,
      `-U${opts.uuid}`,
      ...(opts.compress ? ['-zlz4hc'] : []),
      ...(opts.compress && opts.pclusterBytes && opts.pclusterBytes > 4096
        ? [`-C${opts.pclusterBytes}`]
        : []),
      ...(opts.compress && opts.ztailpacking ? ['-Eztailpacking'] : []),
      '--quiet',
      image,
      srcDir,
    ];
    await rm(image, { force: true });
    if (process.getuid?.() === 0) {
      await runTool('python3', [script, metaFile]);
      await runTool('mkfs.erofs', mkfsArgs);
    } else {
      // Without root, owners and security.* xattrs cannot be set on the host: fakeroot records them
      // and serves them back to mkfs.erofs in the same session.
      if (!which('fakeroot'))
        throw new EnvironmentError('rebuilding erofs images needs root or fakeroot', {
          code: 'TOOL_MISSING',
          context: { tool: 'fakeroot', debianPackage: 'fakeroot' },
          hint: 'install fakeroot (apt-get install fakeroot) or run as root',
        });
      const sh = `python3 "$1" "$2" && mkfs.erofs ${mkfsArgs.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')}`;
      await runTool('fakeroot', ['--', 'sh', '-c', sh, 'sh', script, metaFile]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Sets owners, modes and xattrs on a host tree (python3: Node has no xattr API). */
const APPLY_META_PY = `
import json, os, sys
cfg = json.load(open(sys.argv[1]))
root = cfg['root']
for e in cfg['entries']:
    p = os.path.join(root, e['path'].lstrip('/')) if e['path'] != '/' else root
    if not os.path.lexists(p):
        continue
    islink = os.path.islink(p)
    os.lchown(p, e['uid'], e['gid'])
    if not islink:
        os.chmod(p, e['mode'])
    for name in os.listxattr(p, follow_symlinks=False):
        if name not in e['xattrs']:
            os.removexattr(p, name, follow_symlinks=False)
    for name, value in sorted(e['xattrs'].items()):
        os.setxattr(p, name, bytes.fromhex(value), follow_symlinks=False)
`;

export interface ErofsEditOptions {
  epoch?: number;
  /** Keep the image's UUID (default) or set another. */
  uuid?: string;
  /** Force compression on/off; default: same as the input image. */
  compress?: boolean;
  onProgress?: ProgressFn;
}

/**
 * Applies edits to an erofs image: extract → edit the host tree → restore metadata → mkfs.erofs →
 * fsck.erofs. Writes `outImage` (may equal `image`).
 */
export async function applyErofsEdits(
  image: string,
  outImage: string,
  edits: FsEdit[],
  opts: ErofsEditOptions = {},
): Promise<void> {
  const reader = new ErofsReader(image);
  const work = await mkdtemp(join(tmpdir(), 'omie-erofs-edit-'));
  try {
    const sb = await reader.superblock();
    const entries = await reader.list();
    const profile = await reader.compressionProfile();
    const compress = opts.compress ?? profile !== null;
    const root = join(work, 'root');
    opts.onProgress?.({ stage: 'erofs extract', done: 0, total: 1, unit: 'items' });
    await reader.extractTo(root);
    await reader.close();
    const meta = new Map(
      entries.map((e) => [
        e.path,
        { path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: { ...e.xattrs } },
      ]),
    );
    const host = (p: string) => (p === '/' ? root : join(root, p.slice(1)));
    const setXattrs = (
      m: { xattrs: Record<string, string> },
      label?: string | null,
      caps?: string | null,
    ) => {
      if (label) m.xattrs['security.selinux'] = labelXattr(label).toString('hex');
      else if (label === null) delete m.xattrs['security.selinux'];
      if (caps) m.xattrs['security.capability'] = caps;
      else if (caps === null) delete m.xattrs['security.capability'];
    };
    for (const e of edits) {
      const p = normPath(e.path);
      switch (e.op) {
        case 'remove':
          if (!meta.has(p))
            throw new InputError(`cannot remove ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p, image },
            });
          await rm(host(p), { recursive: true, force: true });
          for (const k of [...meta.keys()]) if (k === p || k.startsWith(`${p}/`)) meta.delete(k);
          break;
        case 'mkdir': {
          await mkdir(host(p), { recursive: false }).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'EEXIST')
              throw new InputError(`cannot mkdir ${p}: ${err.code}`, {
                code: 'FS_NO_PARENT',
                context: { path: p },
              });
          });
          const m = { path: p, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: meta.get(p)?.xattrs ?? {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'write': {
          if (meta.has(p)) await rm(host(p), { recursive: true, force: true });
          await copyFile(e.source, host(p)).catch((err: NodeJS.ErrnoException) => {
            throw new InputError(`cannot write ${p}: ${err.code}`, {
              code: 'FS_NO_PARENT',
              context: { path: p, source: e.source },
            });
          });
          const m = { path: p, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'symlink': {
          await rm(host(p), { recursive: true, force: true });
          await symlink(e.target, host(p));
          const m = { path: p, mode: 0o777, uid: e.uid, gid: e.gid, xattrs: {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'setattr': {
          const m = meta.get(p);
          if (!m)
            throw new InputError(`cannot change ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p, image },
            });
          if (e.mode !== undefined) m.mode = e.mode;
          if (e.uid !== undefined) m.uid = e.uid;
          if (e.gid !== undefined) m.gid = e.gid;
          setXattrs(m, e.label, e.capabilities);
          break;
        }
      }
    }
    opts.onProgress?.({ stage: 'erofs rebuild', done: 0, total: 1, unit: 'items' });
    const tmpOut = join(work, 'out.img');
    await buildErofs(root, tmpOut, [...meta.values()], {
      uuid: opts.uuid ?? sb.uuid,
      epoch: opts.epoch,
      compress,
      // Keep the input's pcluster size and tail packing so the rebuilt image stays as small.
      pclusterBytes: profile?.pclusterBytes,
      ztailpacking: profile?.ztailpacking,
    });
    await checkErofs(tmpOut);
    await copyFile(tmpOut, outImage);
    opts.onProgress?.({ stage: 'erofs rebuild', done: 1, total: 1, unit: 'items' });
  } finally {
    await reader.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** Owners, modes and labels for every entry of an erofs source tree (root-owned, 0755/0644). */
export async function erofsMeta(
  root: string,
  mountPoint: string,
  fc: FileContexts,
  rules: FsConfigRule[] = [],
): Promise<ErofsMetadata> {
  const { readdir, lstat } = await import('node:fs/promises');
  const out: ErofsMetadata = [];
  const add = (path: string, type: 'dir' | 'file' | 'symlink', hostMode: number) => {
    const cfg = resolveFsConfig(rules, path);
    const mode =
      (cfg.mode ?? type === 'dir') ? 0o755 : type === 'symlink' ? 0o777 : hostMode & 0o111 ? 0o755 : 0o644;
    const label = fc.lookup(path === '/' ? mountPoint : `${mountPoint}${path}`, type);
    const xattrs: Record<string, string> = {};
    if (label) xattrs['security.selinux'] = labelXattr(label).toString('hex');
    if (cfg.capabilities) xattrs['security.capability'] = capabilitiesXattr(cfg.capabilities).toString('hex');
    out.push({ path, mode, uid: cfg.uid, gid: cfg.gid, xattrs });
  };
  add('/', 'dir', 0o755);
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const st = await lstat(join(dir, name));
      const path = `${rel}/${name}`;
      add(path, st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file', st.mode);
      if (st.isDirectory()) await walk(join(dir, name), path);
    }
  };
  await walk(root, '');
  return out;
}
