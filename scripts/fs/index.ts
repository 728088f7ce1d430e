/**
 * Filesystems of Android partitions, read and edited offline. `openFilesystem` detects ext4 or
 * erofs by magic and returns an FsReader; `applyEdits` applies FsEdit lists to either.
 */
import { InputError } from '../errors.ts';
import type { ProgressFn } from '../progress.ts';
import { applyErofsEdits, ErofsReader, isErofs } from './erofs.ts';
import { applyExt4Edits, Ext4Reader, isExt4, readHead } from './ext4.ts';
import type { FileDataRanges, FsEdit, FsReader } from './types.ts';

export { capabilitiesXattr, capabilityNames, type FsConfigRule } from './fs-config.ts';
export { FileContexts, parseFileContexts } from './selinux.ts';
export * from './types.ts';

export type FsKind = 'ext4' | 'erofs';

/** ext4 or erofs by superblock magic, or null. */
export async function detectFilesystem(imagePath: string): Promise<FsKind | null> {
  const head = await readHead(imagePath, 2048);
  if (isErofs(head)) return 'erofs';
  if (isExt4(head)) return 'ext4';
  return null;
}

/** Opens a raw (non-sparse) ext4 or erofs image for reading. */
export async function openFilesystem(imagePath: string): Promise<FsReader> {
  const kind = await detectFilesystem(imagePath);
  if (kind === 'erofs') return new ErofsReader(imagePath);
  if (kind === 'ext4') return new Ext4Reader(imagePath);
  throw new InputError(`${imagePath}: neither ext4 nor erofs (sparse images must be unsparsed first)`, {
    code: 'FS_UNKNOWN',
    context: { file: imagePath },
  });
}

/** Where each file's data lies in an ext4 or erofs image, or null for any other image. */
export async function fileDataRanges(imagePath: string): Promise<FileDataRanges[] | null> {
  const kind = await detectFilesystem(imagePath);
  const reader =
    kind === 'erofs' ? new ErofsReader(imagePath) : kind === 'ext4' ? new Ext4Reader(imagePath) : null;
  try {
    return reader ? await reader.fileDataRanges() : null;
  } finally {
    await reader?.close();
  }
}

export interface ApplyEditsOptions {
  epoch?: number;
  /** ext4: shrink to minimum size afterwards. */
  shrink?: boolean;
  onProgress?: ProgressFn;
}

/** Applies edits in place (ext4: debugfs session; erofs: extract, edit, rebuild), then fscks. */
export async function applyEdits(
  imagePath: string,
  edits: FsEdit[],
  opts: ApplyEditsOptions = {},
): Promise<void> {
  const kind = await detectFilesystem(imagePath);
  if (kind === 'ext4') return applyExt4Edits(imagePath, edits, opts);
  if (kind === 'erofs') return applyErofsEdits(imagePath, imagePath, edits, opts);
  throw new InputError(`${imagePath}: neither ext4 nor erofs`, {
    code: 'FS_UNKNOWN',
    context: { file: imagePath },
  });
}
