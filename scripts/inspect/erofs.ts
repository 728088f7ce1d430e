import { open } from 'node:fs/promises';
import { type ErofsInfo, isErofs, parseErofs } from '../formats/fsdetect.ts';
import type { Detector } from './detect.ts';
import { readHead } from './ext4.ts';

/** A raw erofs filesystem image (magic 0xE0F5E1E2 at 1024). */
export const erofsDetector: Detector<ErofsInfo & { fileSize: number }> = {
  kind: 'erofs',
  detect: (s) => isErofs(s.head),
  async inspect(path) {
    const fh = await open(path, 'r');
    const size = (await fh.stat()).size;
    await fh.close();
    return { ...parseErofs(await readHead(path, 4096), path), fileSize: size };
  },
  human: (r) =>
    [
      'erofs filesystem image',
      `Volume name:    ${r.volumeName || '(none)'}`,
      `UUID:           ${r.uuid}`,
      `Block size:     ${r.blockSize}`,
      `Blocks:         ${r.blocks} (${r.size} bytes; file ${r.fileSize} bytes)`,
      `Inodes:         ${r.inodes}`,
      `Build time:     ${new Date(r.buildTime * 1000).toISOString()} (${r.buildTime})`,
      `Features:       ${r.features.join(' ')}`,
    ].join('\n'),
};
