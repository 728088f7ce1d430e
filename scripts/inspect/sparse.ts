import { FormatError } from '../errors.ts';
import { isErofs, isExt4 } from '../formats/fsdetect.ts';
import {
  isSparse,
  readSparse,
  type SparseChunkType,
  type SparseHeader,
  SparseImage,
} from '../formats/sparse.ts';
import { looksLikeSuper } from '../formats/super/read.ts';
import type { Detector } from './detect.ts';

export interface SparseSummary {
  header: SparseHeader;
  /** Chunks per type. */
  counts: Record<SparseChunkType, number>;
  /** Expanded bytes per type (crc32 chunks cover none). */
  bytes: Record<SparseChunkType, number>;
  /**
   * CRC32 chunks checked against the expanded data: 'none' when there are none, 'ok', or why
   * they do not match (simg2img does not check them; a device flashing the image may).
   */
  crc32: string;
  /** What the expanded image holds, by its own magic: super, ext4, erofs or unknown. */
  contains: 'super' | 'ext4' | 'erofs' | 'unknown';
  /** The chunk list, like `simg_dump -v` (first 10000). */
  chunks: Array<{
    index: number;
    type: SparseChunkType;
    offset: number;
    size: number;
    block: number;
    blocks: number;
    fill?: string;
  }>;
}

/** Sniffs the expanded content of a sparse image (first 12 KiB) without expanding it. */
export async function sparseContent(img: SparseImage): Promise<SparseSummary['contains']> {
  const head = Buffer.alloc(Math.min(12288, img.size));
  await img.read(head, 0);
  if (looksLikeSuper(head)) return 'super';
  if (isExt4(head)) return 'ext4';
  if (isErofs(head)) return 'erofs';
  return 'unknown';
}

/** An Android sparse image (magic 0xed26ff3a), whatever it wraps. */
export const sparseDetector: Detector<SparseSummary> = {
  kind: 'sparse',
  detect: (s) => isSparse(s.head),
  async inspect(path) {
    const img = await SparseImage.open(path);
    try {
      const zero = { raw: 0, fill: 0, dontCare: 0, crc32: 0 };
      const counts = { ...zero };
      const bytes = { ...zero };
      for (const c of img.chunks) {
        counts[c.type]++;
        bytes[c.type] += c.blocks * img.header.blockSize;
      }
      let crc = 'none';
      if (counts.crc32 > 0) {
        const none = () => {};
        crc = await readSparse(path, { data: none, fill: none, skip: none }, { verifyCrc: true }).then(
          () => 'ok',
          (e) => {
            if (e instanceof FormatError) return e.message;
            throw e;
          },
        );
      }
      return {
        header: img.header,
        counts,
        bytes,
        crc32: crc,
        contains: await sparseContent(img),
        chunks: img.chunks.slice(0, 10000).map((c) => ({
          index: c.index,
          type: c.type,
          offset: c.headerOffset,
          size: c.dataSize,
          block: c.block,
          blocks: c.blocks,
          fill: c.fillValue === undefined ? undefined : `0x${c.fillValue.toString(16).padStart(8, '0')}`,
        })),
      };
    } finally {
      await img.close();
    }
  },
  human(r) {
    const h = r.header;
    return [
      `Android sparse image v${h.majorVersion}.${h.minorVersion}`,
      `Block size:     ${h.blockSize}`,
      `Output blocks:  ${h.totalBlocks} (${h.rawSize} bytes expanded)`,
      `Chunks:         ${h.totalChunks} (raw ${r.counts.raw}, fill ${r.counts.fill}, dont-care ${r.counts.dontCare}, crc32 ${r.counts.crc32})`,
      `Raw data:       ${r.bytes.raw} bytes; fill ${r.bytes.fill}; dont-care ${r.bytes.dontCare}`,
      `Contains:       ${r.contains}`,
      ...(r.crc32 !== 'none' ? [`CRC32 chunks:   ${r.crc32}`] : []),
    ].join('\n');
  },
};
