import type { FileHandle } from 'node:fs/promises';
import { FormatError } from '../../errors.ts';
import { BinaryReader } from '../binary.ts';

/**
 * The AVB footer (AvbFooter, avb_footer.h): the last 64 bytes of a partition image that carries
 * its own vbmeta ("AVBf", big-endian). It records the size of the image before AVB data was
 * appended and where the vbmeta blob is.
 */
export const FOOTER_MAGIC = 'AVBf';
export const FOOTER_SIZE = 64;
export const FOOTER_VERSION_MAJOR = 1;
export const FOOTER_VERSION_MINOR = 0;

export interface AvbFooter {
  versionMajor: number;
  versionMinor: number;
  originalImageSize: number;
  vbmetaOffset: number;
  vbmetaSize: number;
}

export function hasFooterMagic(last64: Buffer): boolean {
  return (
    last64.length >= FOOTER_SIZE &&
    last64.toString('latin1', last64.length - 64, last64.length - 60) === FOOTER_MAGIC
  );
}

/** Parses a 64-byte footer. `imageSize`, when given, is used to check the offsets it holds. */
export function parseFooter(buf: Buffer, opts: { file?: string; imageSize?: number } = {}): AvbFooter {
  const base = opts.imageSize !== undefined ? opts.imageSize - FOOTER_SIZE : 0;
  if (buf.length !== FOOTER_SIZE)
    throw new FormatError({
      format: 'avb-footer',
      reason: 'truncated',
      expected: FOOTER_SIZE,
      found: buf.length,
      file: opts.file,
    });
  const r = new BinaryReader(buf, 'avb-footer', base, opts.file);
  r.magic(FOOTER_MAGIC);
  const f: AvbFooter = {
    versionMajor: r.u32be('version_major'),
    versionMinor: r.u32be('version_minor'),
    originalImageSize: r.u64beNum('original_image_size'),
    vbmetaOffset: r.u64beNum('vbmeta_offset'),
    vbmetaSize: r.u64beNum('vbmeta_size'),
  };
  if (opts.imageSize !== undefined) {
    const limit = opts.imageSize - FOOTER_SIZE;
    if (f.vbmetaOffset + f.vbmetaSize > limit)
      r.fail('vbmeta lies outside the image', {
        field: 'vbmeta_offset',
        at: 16,
        expected: `<= ${limit}`,
        found: f.vbmetaOffset + f.vbmetaSize,
      });
    if (f.originalImageSize > limit)
      r.fail('original image size exceeds the image', {
        field: 'original_image_size',
        at: 8,
        expected: `<= ${limit}`,
        found: f.originalImageSize,
      });
  }
  return f;
}

export function encodeFooter(
  f: Omit<AvbFooter, 'versionMajor' | 'versionMinor'> & Partial<AvbFooter>,
): Buffer {
  const b = Buffer.alloc(FOOTER_SIZE);
  b.write(FOOTER_MAGIC, 0, 'latin1');
  b.writeUInt32BE(f.versionMajor ?? FOOTER_VERSION_MAJOR, 4);
  b.writeUInt32BE(f.versionMinor ?? FOOTER_VERSION_MINOR, 8);
  b.writeBigUInt64BE(BigInt(f.originalImageSize), 12);
  b.writeBigUInt64BE(BigInt(f.vbmetaOffset), 20);
  b.writeBigUInt64BE(BigInt(f.vbmetaSize), 28);
  return b;
}

/** Reads the footer of an open image, or undefined when the last 64 bytes are not one. */
export async function readFooter(
  fh: FileHandle,
  size: number,
  file?: string,
): Promise<AvbFooter | undefined> {
  if (size < FOOTER_SIZE) return undefined;
  const b = Buffer.alloc(FOOTER_SIZE);
  await fh.read(b, 0, FOOTER_SIZE, size - FOOTER_SIZE);
  if (!hasFooterMagic(b)) return undefined;
  return parseFooter(b, { file, imageSize: size });
}
