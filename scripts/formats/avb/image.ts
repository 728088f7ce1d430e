import { type FileHandle, open } from 'node:fs/promises';
import { FormatError, InputError } from '../../errors.ts';
import { type AvbFooter, readFooter } from './footer.ts';
import {
  type ParsedVbmeta,
  parseVbmeta,
  parseVbmetaHeader,
  VBMETA_HEADER_SIZE,
  vbmetaBlobSize,
} from './vbmeta.ts';

/** A vbmeta image or a partition image with an AVB footer, as avbtool's _parse_image sees it. */
export interface AvbImage {
  path: string;
  /** File size in bytes. */
  size: number;
  /** Present when the image ends with an "AVBf" footer. */
  footer?: AvbFooter;
  /** Where the vbmeta blob starts (0 for vbmeta images). */
  vbmetaOffset: number;
  vbmeta: ParsedVbmeta;
}

const SPARSE_MAGIC = 0xed26ff3a;

export async function openImage(path: string, flags = 'r'): Promise<FileHandle> {
  return open(path, flags).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
}

export async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(b, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === len ? b : b.subarray(0, got);
}

/** Reads footer (if any) and the vbmeta blob of an image, with every size bounds-checked. */
export async function readAvbImage(path: string): Promise<AvbImage> {
  const fh = await openImage(path);
  try {
    const size = (await fh.stat()).size;
    const head = await readAt(fh, 0, 4);
    if (head.length === 4 && head.readUInt32LE(0) === SPARSE_MAGIC)
      throw new FormatError(
        {
          format: 'vbmeta',
          reason: 'Android sparse image: convert it to a raw image first',
          field: 'magic',
          offset: 0,
          file: path,
        },
        { code: 'AVB_SPARSE_UNSUPPORTED' },
      );
    const footer = await readFooter(fh, size, path);
    const vbmetaOffset = footer ? footer.vbmetaOffset : 0;
    const hb = await readAt(fh, vbmetaOffset, VBMETA_HEADER_SIZE);
    if (hb.length < VBMETA_HEADER_SIZE)
      throw new FormatError({
        format: 'vbmeta',
        reason: 'truncated',
        field: 'header',
        offset: vbmetaOffset,
        expected: `${VBMETA_HEADER_SIZE} bytes`,
        found: hb.length,
        file: path,
      });
    const header = parseVbmetaHeader(hb, { file: path, baseOffset: vbmetaOffset });
    const total = vbmetaBlobSize(header, path, vbmetaOffset);
    if (footer && total > footer.vbmetaSize)
      throw new FormatError({
        format: 'vbmeta',
        reason: 'vbmeta blocks are larger than the footer says',
        field: 'vbmeta_size',
        offset: vbmetaOffset,
        expected: `<= ${footer.vbmetaSize}`,
        found: total,
        file: path,
      });
    const blob = await readAt(fh, vbmetaOffset, total);
    return {
      path,
      size,
      footer,
      vbmetaOffset,
      vbmeta: parseVbmeta(blob, { file: path, baseOffset: vbmetaOffset }),
    };
  } finally {
    await fh.close();
  }
}
