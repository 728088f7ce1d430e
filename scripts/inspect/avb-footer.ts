import { open } from 'node:fs/promises';
import { FOOTER_SIZE, hasFooterMagic } from '../formats/avb/footer.ts';
import { readBootImage } from '../formats/bootimg.ts';
import { bootImageDetector } from './bootimg.ts';
import type { Detector } from './detect.ts';
import { humanAvb, summariseAvb, type VbmetaSummary } from './vbmeta.ts';

export interface AvbFooterSummary extends VbmetaSummary {
  /** What the bytes before the AVB data are: ext4, erofs, boot, vendor_boot, sparse, raw. */
  contentKind: string;
  /** For boot / vendor_boot content: the boot image header as `omie inspect` shows a bare one. */
  bootImage?: Awaited<ReturnType<typeof readBootImage>>;
}

/** Recognises the filesystem / image type under the footer by its magic. */
async function contentKind(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(2048);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    const h = b.subarray(0, bytesRead);
    if (h.length >= 8 && h.toString('latin1', 0, 8) === 'ANDROID!') return 'boot';
    if (h.length >= 8 && h.toString('latin1', 0, 8) === 'VNDRBOOT') return 'vendor_boot';
    if (h.length >= 4 && h.readUInt32LE(0) === 0xed26ff3a) return 'sparse';
    if (h.length >= 1028 && h.readUInt32LE(1024) === 0xe0f5e1e2) return 'erofs';
    if (h.length >= 1082 && h.readUInt16LE(1080) === 0xef53) return 'ext4';
    if (h.length >= 4 && h.toString('latin1', 0, 4) === 'AVB0') return 'vbmeta';
    return 'raw';
  } finally {
    await fh.close();
  }
}

/** A partition image with an AVB footer ("AVBf" in its last 64 bytes): boot, system, vendor, … */
export const avbFooterDetector: Detector<AvbFooterSummary> = {
  kind: 'avb-footer',
  detect: (s) => s.size >= FOOTER_SIZE && hasFooterMagic(s.tail),
  inspect: async (path) => {
    const kind = await contentKind(path);
    const bootImage = kind === 'boot' || kind === 'vendor_boot' ? await readBootImage(path) : undefined;
    return { ...(await summariseAvb(path)).summary, contentKind: kind, bootImage };
  },
  human: (r) =>
    [
      `Content:                  ${r.contentKind}`,
      humanAvb(r),
      ...(r.bootImage ? ['', bootImageDetector.human(r.bootImage)] : []),
    ].join('\n'),
};
