import { type FileHandle, open } from 'node:fs/promises';
import { FormatError, InputError } from '../../errors.ts';
import { type ImageReader, openImage as openRawOrSparse } from '../sparse.ts';
import { type AvbFooter, FOOTER_SIZE, hasFooterMagic, parseFooter } from './footer.ts';
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
  /** Size in bytes (expanded size for an Android sparse image, like avbtool's ImageHandler). */
  size: number;
  /** The file is an Android sparse image (read through libsparse semantics). */
  sparse: boolean;
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

/** Opens a raw or Android sparse image for random access to its (expanded) bytes. */
export function openReader(path: string): Promise<ImageReader> {
  return openRawOrSparse(path);
}

export async function readAt(fh: FileHandle | ImageReader, pos: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  let got = 0;
  if ('sparse' in fh) {
    got = await fh.read(b, pos);
  } else {
    while (got < len) {
      const { bytesRead } = await fh.read(b, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  }
  return got === len ? b : b.subarray(0, Math.max(0, got));
}

/** Throws when `path` is an Android sparse image (writers here handle raw images only). */
export async function refuseSparse(path: string, what: string): Promise<void> {
  const fh = await openImage(path);
  try {
    const head = await readAt(fh, 0, 4);
    if (head.length === 4 && head.readUInt32LE(0) === SPARSE_MAGIC)
      throw new FormatError(
        {
          format: 'avb',
          reason: `${what} needs a raw image; this is an Android sparse image (convert it with simg2img first)`,
          field: 'magic',
          offset: 0,
          file: path,
        },
        { code: 'AVB_SPARSE_UNSUPPORTED' },
      );
  } finally {
    await fh.close();
  }
}

/** Reads footer (if any) and the vbmeta blob of a raw or sparse image, every size bounds-checked. */
export async function readAvbImage(path: string): Promise<AvbImage> {
  const r = await openReader(path);
  try {
    const size = r.size;
    let footer: AvbFooter | undefined;
    if (size >= FOOTER_SIZE) {
      const last = await readAt(r, size - FOOTER_SIZE, FOOTER_SIZE);
      if (hasFooterMagic(last)) footer = parseFooter(last, { file: path, imageSize: size });
    }
    const vbmetaOffset = footer ? footer.vbmetaOffset : 0;
    const hb = await readAt(r, vbmetaOffset, VBMETA_HEADER_SIZE);
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
    const blob = await readAt(r, vbmetaOffset, total);
    return {
      path,
      size,
      sparse: r.sparse,
      footer,
      vbmetaOffset,
      vbmeta: parseVbmeta(blob, { file: path, baseOffset: vbmetaOffset }),
    };
  } finally {
    await r.close();
  }
}
