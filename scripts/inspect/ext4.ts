import { open } from 'node:fs/promises';
import { type Ext4Info, isExt4, parseExt4 } from '../formats/fsdetect.ts';
import type { Detector } from './detect.ts';

async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A raw ext4 filesystem image (superblock magic 0xEF53 at 1024+56). */
export const ext4Detector: Detector<Ext4Info & { fileSize: number }> = {
  kind: 'ext4',
  detect: (s) => isExt4(s.head),
  async inspect(path) {
    const fh = await open(path, 'r');
    const size = (await fh.stat()).size;
    await fh.close();
    return { ...parseExt4(await head(path, 4096), path), fileSize: size };
  },
  human: (r) =>
    [
      'ext4 filesystem image',
      `Volume name:    ${r.volumeName || '(none)'}`,
      `UUID:           ${r.uuid}`,
      `Block size:     ${r.blockSize}`,
      `Blocks:         ${r.blocksCount} (${r.size} bytes; file ${r.fileSize} bytes), free ${r.freeBlocks}`,
      `Inodes:         ${r.inodesCount} (${r.inodeSize} bytes each), free ${r.freeInodes}`,
      `Last mounted:   ${r.lastMounted || '(never)'}`,
      `Features:       ${r.features.join(' ')}`,
    ].join('\n'),
};

export { head as readHead };
