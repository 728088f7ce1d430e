/**
 * Logical-to-physical mapping of compressed erofs inodes (EROFS_INODE_COMPRESSED_FULL / _COMPACT),
 * following the kernel's fs/erofs/zmap.c: the 8-byte z_erofs_map_header after the inode and its
 * xattrs (8-byte aligned), then one index per logical cluster ("lcluster"), either 8-byte
 * z_erofs_lcluster_index records (FULL) or bit-packed compact packs of 2 lclusters in 8 bytes or
 * 16 in 32 bytes (COMPACT). An lcluster is PLAIN / HEAD1 / HEAD2 (an extent starts at clusterofs
 * in it, and its pcluster starts at blkaddr) or NONHEAD (continues the extent delta[0] lclusters
 * back; right after a head with big pclusters, delta[0] holds the pcluster's block count instead,
 * flagged by D0_CBLKCNT). The last extent may live inline after the indexes (ztailpacking) or in the
 * packed inode (fragments).
 *
 * `mapExtent(la)` returns the extent that holds byte `la`, cut at the end of la's lcluster, like
 * z_erofs_map_blocks_iter: callers walk a file extent by extent and decode each pcluster once.
 */
import { FormatError } from '../errors.ts';

export const Z_LCLUSTER_PLAIN = 0;
export const Z_LCLUSTER_HEAD1 = 1;
export const Z_LCLUSTER_NONHEAD = 2;
export const Z_LCLUSTER_HEAD2 = 3;

const ADVISE_COMPACTED_2B = 0x0001;
const ADVISE_BIG_PCLUSTER_1 = 0x0002;
const ADVISE_BIG_PCLUSTER_2 = 0x0004;
const ADVISE_INLINE_PCLUSTER = 0x0008;
const ADVISE_INTERLACED_PCLUSTER = 0x0010;
const ADVISE_FRAGMENT_PCLUSTER = 0x0020;
const LI_D0_CBLKCNT = 1 << 11;
const LI_PARTIAL_REF = 1 << 15;
const FRAGMENT_INODE_BIT = 7;

/** Compression algorithms by z_erofs algorithm type (erofs_fs.h Z_EROFS_COMPRESSION_*). */
export const Z_ALGORITHMS = ['lz4', 'lzma', 'deflate', 'zstd'] as const;

export type ZFormat = 'lz4' | 'lzma' | 'deflate' | 'zstd' | 'shifted' | 'interlaced';

export interface ZExtent {
  /** Logical start of the extent and the length mapped here (up to the end of the lcluster asked for). */
  la: number;
  llen: number;
  /** Physical byte position and length of the pcluster (or of the inline tail). */
  pa: number;
  plen: number;
  /** The pcluster is stored inline in the metadata (ztailpacking). */
  inline: boolean;
  /** The data is in the packed inode at `fragmentOff` (fragments). */
  fragment: boolean;
  format: ZFormat;
}

export interface ZInode {
  nid: number;
  layout: number;
  /** Byte position of the inode, its size (32/64) and its xattr area size. */
  pos: number;
  isize: number;
  xattrSize: number;
  size: number;
}

interface Recorder {
  lcn: number;
  type: number;
  clusterofs: number;
  delta0: number;
  pblk: number;
  compressedBlks: number;
  partialRef: boolean;
  nextPackOff: number;
  headType: number;
}

/** One compressed inode's map: header fields plus the index area, read once. */
export class ZMap {
  readonly advise: number;
  readonly algorithms: [number, number];
  readonly lclusterBits: number;
  /** Offset of the whole-file/tail data in the packed inode (fragments). */
  fragmentOff = 0;
  private idataSize = 0;
  private idataOff = 0;
  private tailHeadLcn = 0;
  private readonly ebase: number;

  /**
   * `header` is the 8-byte map header (8-byte aligned after the inode and its xattrs); `indexes`
   * the bytes right after it (enough for every lcluster plus the inline tail).
   */
  constructor(
    readonly ino: ZInode,
    readonly blkszBits: number,
    header: Buffer,
    private readonly indexes: Buffer,
    private readonly file?: string,
  ) {
    // Full indexes start after 8 more bytes of padding (Z_EROFS_FULL_INDEX_ALIGN); compact ones do not.
    this.ebase = alignUp(ino.pos + ino.isize + ino.xattrSize, 8) + 8 + (ino.layout === 1 ? 8 : 0);
    if (header.readUInt8(7) >> FRAGMENT_INODE_BIT) {
      // The whole file lives in the packed inode; the other 63 bits are its offset there.
      this.advise = ADVISE_FRAGMENT_PCLUSTER;
      this.fragmentOff = Number(header.readBigUInt64LE(0) & ((1n << 63n) - 1n));
      this.algorithms = [0, 0];
      this.lclusterBits = blkszBits;
      return;
    }
    this.advise = header.readUInt16LE(4);
    const alg = header.readUInt8(6);
    this.algorithms = [alg & 15, alg >> 4];
    this.lclusterBits = blkszBits + (header.readUInt8(7) & 7);
    if (ino.layout === 3 && !(this.advise & ADVISE_BIG_PCLUSTER_1) !== !(this.advise & ADVISE_BIG_PCLUSTER_2))
      this.fail('big pcluster head1/2 of compact indexes are inconsistent', 'h_advise', this.advise);
    if (this.advise & ADVISE_INLINE_PCLUSTER) {
      this.idataSize = header.readUInt16LE(2);
      const tail = this.mapExtent(ino.size - 1, true);
      if (!tail.plen || (tail.pa % (1 << blkszBits)) + tail.plen > 1 << blkszBits)
        this.fail('invalid tail-packing pcluster size', 'h_idata_size', this.idataSize);
    }
    if (this.advise & ADVISE_FRAGMENT_PCLUSTER) {
      this.fragmentOff = header.readUInt32LE(0);
      this.mapExtent(ino.size - 1, true);
    }
  }

  private fail(reason: string, field?: string, found?: unknown, offset?: number): never {
    throw new FormatError({
      format: 'erofs',
      reason: `${reason} (nid ${this.ino.nid})`,
      field,
      found,
      offset: offset ?? this.ino.pos,
      file: this.file,
    });
  }

  /** Position of `indexes[0]` in the image. */
  private get indexesPos(): number {
    return alignUp(this.ino.pos + this.ino.isize + this.ino.xattrSize, 8) + 8;
  }

  private u16(pos: number): number {
    const i = pos - this.indexesPos;
    if (i < 0 || i + 2 > this.indexes.length) this.fail('index beyond the index area', 'lcluster', i, pos);
    return this.indexes.readUInt16LE(i);
  }

  private u32(pos: number): number {
    const i = pos - this.indexesPos;
    if (i < 0 || i + 4 > this.indexes.length) this.fail('index beyond the index area', 'lcluster', i, pos);
    return this.indexes.readUInt32LE(i);
  }

  private get totalIdx(): number {
    return Math.ceil(this.ino.size / (1 << this.blkszBits));
  }

  private load(m: Recorder, lcn: number): void {
    if (this.ino.layout === 1) this.loadFull(m, lcn);
    else this.loadCompact(m, lcn);
  }

  private loadFull(m: Recorder, lcn: number): void {
    const pos = this.ebase + lcn * 8;
    m.lcn = lcn;
    m.nextPackOff = pos + 8;
    const advise = this.u16(pos);
    m.type = advise & 3;
    if (m.type === Z_LCLUSTER_NONHEAD) {
      m.clusterofs = 1 << this.lclusterBits;
      m.delta0 = this.u16(pos + 4);
      if (m.delta0 & LI_D0_CBLKCNT) {
        if (!(this.advise & (ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2)))
          this.fail('CBLKCNT without big pclusters', 'di_u.delta[0]', m.delta0, pos);
        m.compressedBlks = m.delta0 & ~LI_D0_CBLKCNT;
        m.delta0 = 1;
      }
    } else {
      m.partialRef = (advise & LI_PARTIAL_REF) !== 0;
      m.clusterofs = this.u16(pos + 2);
      if (m.clusterofs >= 1 << this.lclusterBits)
        this.fail('cluster offset beyond the lcluster', 'di_clusterofs', m.clusterofs, pos);
      m.pblk = this.u32(pos + 4);
    }
  }

  private decodeBits(lobits: number, packStart: number, bitPos: number): { lo: number; type: number } {
    const v = this.u32(packStart + (bitPos >> 3)) >>> (bitPos & 7);
    return { lo: v & ((1 << lobits) - 1), type: (v >>> lobits) & 3 };
  }

  private loadCompact(m: Recorder, lcnIn: number): void {
    const lclusterBits = this.lclusterBits;
    const totalIdx = this.totalIdx;
    if (lcnIn >= totalIdx || lclusterBits > 14) this.fail('lcluster out of range', 'lcn', lcnIn, this.ebase);
    let lcn = lcnIn;
    m.lcn = lcn;
    const initial4b = ((32 - (this.ebase % 32)) / 4) & 7;
    let compacted2b = 0;
    if (this.advise & ADVISE_COMPACTED_2B && initial4b < totalIdx)
      compacted2b = Math.floor((totalIdx - initial4b) / 16) * 16;
    let pos = this.ebase;
    let amortizedShift = 2;
    if (lcn >= initial4b) {
      pos += initial4b * 4;
      lcn -= initial4b;
      if (lcn < compacted2b) amortizedShift = 1;
      else {
        pos += compacted2b * 2;
        lcn -= compacted2b;
      }
    }
    pos += lcn * (1 << amortizedShift);
    let vcnt: number;
    if (amortizedShift === 2 && lclusterBits <= 14) vcnt = 2;
    else if (amortizedShift === 1 && lclusterBits <= 12) vcnt = 16;
    else this.fail('unsupported compact index for this lcluster size', 'h_clusterbits', lclusterBits);
    const packBytes = vcnt << amortizedShift;
    m.nextPackOff = Math.floor(pos / packBytes) * packBytes + packBytes;
    const lobits = Math.max(lclusterBits, 12);
    const encodeBits = ((packBytes - 4) * 8) / vcnt;
    const packStart = pos - (pos & (packBytes - 1));
    let i = (pos & (packBytes - 1)) >> amortizedShift;
    const bigPcluster = (this.advise & ADVISE_BIG_PCLUSTER_1) !== 0;
    let { lo, type } = this.decodeBits(lobits, packStart, encodeBits * i);
    m.type = type;
    if (type === Z_LCLUSTER_NONHEAD) {
      m.clusterofs = 1 << lclusterBits;
      if (lo & LI_D0_CBLKCNT) {
        if (!bigPcluster) this.fail('CBLKCNT without big pclusters', 'lcluster', lo, pos);
        m.compressedBlks = lo & ~LI_D0_CBLKCNT;
        m.delta0 = 1;
        return;
      }
      if (i + 1 !== vcnt) {
        m.delta0 = lo;
        return;
      }
      // The last lcluster of a pack stores delta[1]: take delta[0] from the previous one.
      ({ lo, type } = this.decodeBits(lobits, packStart, encodeBits * (i - 1)));
      if (type !== Z_LCLUSTER_NONHEAD) lo = 0;
      else if (lo & LI_D0_CBLKCNT) lo = 1;
      m.delta0 = lo + 1;
      return;
    }
    m.clusterofs = lo;
    m.delta0 = 0;
    // The pack stores the blkaddr of its first head; count the pcluster blocks before this one.
    let nblk: number;
    if (!bigPcluster) {
      nblk = 1;
      while (i > 0) {
        i--;
        const d = this.decodeBits(lobits, packStart, encodeBits * i);
        if (d.type === Z_LCLUSTER_NONHEAD) i -= d.lo;
        if (i >= 0) nblk++;
      }
    } else {
      nblk = 0;
      while (i > 0) {
        i--;
        const d = this.decodeBits(lobits, packStart, encodeBits * i);
        if (d.type === Z_LCLUSTER_NONHEAD) {
          if (d.lo & LI_D0_CBLKCNT) {
            i--;
            nblk += d.lo & ~LI_D0_CBLKCNT;
            continue;
          }
          if (d.lo <= 1) this.fail('bad big pcluster delta', 'lcluster', d.lo, pos);
          i -= d.lo - 2;
          continue;
        }
        nblk++;
      }
    }
    m.pblk = (this.u32(packStart + packBytes - 4) + nblk) >>> 0;
  }

  private lookback(m: Recorder, distance: number): void {
    let d = distance;
    let steps = 0;
    while (m.lcn >= d) {
      if (++steps > this.totalIdx + 1) break;
      const lcn = m.lcn - d;
      this.load(m, lcn);
      if (m.type === Z_LCLUSTER_NONHEAD) {
        d = m.delta0;
        if (!d) break;
        continue;
      }
      m.headType = m.type;
      return;
    }
    this.fail('bogus lookback distance', 'delta[0]', d);
  }

  /** Maps logical byte `la` (< i_size). `findTail` records the tail extent (ztailpacking/fragments). */
  mapExtent(laIn: number, findTail = false): ZExtent {
    const size = this.ino.size;
    if (laIn < 0 || laIn >= size) this.fail('offset beyond the file', 'la', laIn);
    if (this.advise & ADVISE_FRAGMENT_PCLUSTER && this.tailHeadLcn === 0 && !findTail)
      return { la: 0, llen: size, pa: 0, plen: 0, inline: false, fragment: true, format: 'shifted' };
    const bits = this.lclusterBits;
    const lsize = 2 ** bits;
    const initialLcn = Math.floor(laIn / lsize);
    const endoff = laIn % lsize;
    const m: Recorder = {
      lcn: 0,
      type: 0,
      clusterofs: 0,
      delta0: 0,
      pblk: 0,
      compressedBlks: 0,
      partialRef: false,
      nextPackOff: 0,
      headType: 0,
    };
    this.load(m, initialLcn);
    if (findTail && this.advise & ADVISE_INLINE_PCLUSTER) this.idataOff = m.nextPackOff;
    let end = (m.lcn + 1) * lsize;
    let la = 0;
    switch (m.type) {
      case Z_LCLUSTER_PLAIN:
      case Z_LCLUSTER_HEAD1:
      case Z_LCLUSTER_HEAD2:
        if (endoff >= m.clusterofs) {
          m.headType = m.type;
          la = m.lcn * lsize + m.clusterofs;
          if (this.advise & ADVISE_INLINE_PCLUSTER && end > size) end = size;
          break;
        }
        if (!m.lcn) this.fail('invalid logical cluster 0', 'clusterofs', m.clusterofs);
        end = m.lcn * lsize + m.clusterofs;
        this.lookback(m, 1);
        la = m.lcn * lsize + m.clusterofs;
        break;
      case Z_LCLUSTER_NONHEAD:
        this.lookback(m, m.delta0);
        la = m.lcn * lsize + m.clusterofs;
        break;
      default:
        this.fail('unknown lcluster type', 'type', m.type);
    }
    if (findTail) {
      this.tailHeadLcn = m.lcn;
      if (this.advise & ADVISE_FRAGMENT_PCLUSTER && this.ino.layout === 1)
        this.fragmentOff += m.pblk * 2 ** 32;
    }
    const ext: ZExtent = {
      la,
      llen: end - la,
      pa: 0,
      plen: 0,
      inline: false,
      fragment: false,
      format: 'shifted',
    };
    if (this.advise & ADVISE_INLINE_PCLUSTER && m.lcn === this.tailHeadLcn) {
      ext.inline = true;
      ext.pa = this.idataOff;
      ext.plen = this.idataSize;
    } else if (this.advise & ADVISE_FRAGMENT_PCLUSTER && m.lcn === this.tailHeadLcn) {
      ext.fragment = true;
    } else {
      ext.pa = m.pblk * 2 ** this.blkszBits;
      ext.plen = this.compressedLen(m, initialLcn);
    }
    if (m.headType === Z_LCLUSTER_PLAIN) {
      if (!ext.fragment && ext.llen > ext.plen)
        this.fail('uncompressed extent longer than its pcluster', 'llen', ext.llen);
      ext.format = this.advise & ADVISE_INTERLACED_PCLUSTER ? 'interlaced' : 'shifted';
    } else {
      const alg = m.headType === Z_LCLUSTER_HEAD2 ? this.algorithms[1] : this.algorithms[0];
      const name = Z_ALGORITHMS[alg];
      if (!name) this.fail('unknown compression algorithm', 'h_algorithmtype', alg);
      ext.format = name;
    }
    return ext;
  }

  private compressedLen(m: Recorder, initialLcn: number): number {
    const bs = 2 ** this.blkszBits;
    if (
      m.headType === Z_LCLUSTER_PLAIN ||
      (m.headType === Z_LCLUSTER_HEAD1 && !(this.advise & ADVISE_BIG_PCLUSTER_1)) ||
      (m.headType === Z_LCLUSTER_HEAD2 && !(this.advise & ADVISE_BIG_PCLUSTER_2))
    )
      return 2 ** this.lclusterBits;
    if (!m.compressedBlks) {
      const lcn = m.lcn + 1;
      this.load(m, lcn);
      if (m.type !== Z_LCLUSTER_NONHEAD) m.compressedBlks = 1;
      else if (m.delta0 !== 1 || !m.compressedBlks)
        this.fail(`bogus CBLKCNT (looked up from lcn ${initialLcn})`, 'lcluster', lcn);
    }
    return m.compressedBlks * bs;
  }
}

export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
