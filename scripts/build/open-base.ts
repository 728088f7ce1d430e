import { createHash } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { openInput } from '../conformance/open-input.ts';
import { InputError } from '../errors.ts';
import { parseAndroidInfo } from '../formats/factory-zip.ts';
import { isOtaZip } from '../formats/payload/reader.ts';
import { isSparse, openImage } from '../formats/sparse.ts';
import { looksLikeSuper } from '../formats/super/index.ts';
import { sniff } from '../inspect/detect.ts';
import type { ProgressFn } from '../progress.ts';
import { sha256File } from './record.ts';

export type BaseKind = 'images' | 'sparse' | 'super' | 'factory-zip' | 'ota';

/** A partner's base, unpacked into raw partition images in a work folder. */
export interface OpenedBase {
  kind: BaseKind;
  source: string;
  /** sha256 of the base file (for a folder: of its image files, sorted by name, as "name sha256" lines). */
  sha256: string;
  /** Partition name (no slot suffix) → raw image path in the work folder. */
  images: Record<string, string>;
  /** `require board=` values from android-info.txt, when the base had one. */
  boards?: string[];
}

export interface OpenBaseOptions {
  kind?: BaseKind | 'auto';
  /** Slot to take from an A/B super (default: _a, falling back to the only one present). */
  slot?: 'a' | 'b';
  onProgress?: ProgressFn;
}

const ZIP_MAGIC = 0x04034b50;

/** What kind of base a path is, by content. */
export async function detectBaseKind(path: string): Promise<BaseKind> {
  const st = await stat(path).catch(() => {
    throw new InputError(`base not found: ${path}`, {
      code: 'BASE_MISSING',
      context: { path },
      hint: 'run `omie sample-base <dir>` for the sample, or set base.path in the product',
    });
  });
  if (st.isDirectory()) return 'images';
  const s = await sniff(path);
  if (s.head.length >= 4 && s.head.subarray(0, 4).toString('latin1') === 'CrAU') return 'ota';
  if (s.head.length >= 4 && s.head.readUInt32LE(0) === ZIP_MAGIC)
    return (await isOtaZip(path)) ? 'ota' : 'factory-zip';
  if (looksLikeSuper(s.head)) return 'super';
  if (isSparse(s.head)) {
    const img = await openImage(path);
    try {
      const head = Buffer.alloc(8192 + 4);
      await img.read(head, 0);
      return looksLikeSuper(head) ? 'super' : 'sparse';
    } finally {
      await img.close();
    }
  }
  throw new InputError(`${path}: not a recognised Android base`, {
    code: 'BASE_UNKNOWN',
    context: { file: path },
    hint: 'a base is a folder of partition images, a super.img, a factory/fastboot zip, an OTA zip or a payload.bin',
  });
}

/**
 * Unpacks a base whatever its packaging into raw partition images under `workDir/base` (the
 * checker's openInput does the unpacking: sparse expanded, super split, zips and OTAs extracted,
 * streamed). The build edits images in place, so images the opener would read in place from the
 * partner's files are copied into the work folder first.
 */
export async function openBase(
  input: string,
  workDir: string,
  opts: OpenBaseOptions = {},
): Promise<OpenedBase> {
  const kind = await detectBaseKind(input);
  if (opts.kind && opts.kind !== 'auto' && opts.kind !== kind) {
    throw new InputError(`base ${input} is a ${kind} base, but the product says ${opts.kind}`, {
      code: 'BASE_KIND_MISMATCH',
      context: { file: input, expected: opts.kind, found: kind },
      hint: 'fix base.kind in the product (or use auto)',
    });
  }
  const out = join(workDir, 'base');
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  // The base's digest (for the build record) is taken in worker threads while it is unpacked.
  const digest = baseSha256(input, kind);
  digest.catch(() => {}); // awaited below; unpacking errors come first
  const opened = await openInput(input, out, { slot: opts.slot, onProgress: opts.onProgress });
  const images: Record<string, string> = {};
  for (const [name, path] of Object.entries(opened.images)) {
    if (path.startsWith(`${out}${sep}`)) images[name] = path;
    else {
      images[name] = join(out, `${name}.img`);
      await copyFile(path, images[name], constants.COPYFILE_FICLONE);
    }
  }
  let boards: string[] | undefined;
  if (kind === 'images')
    boards = (await readBoards(join(input, 'android-info.txt'))) ?? opened.androidInfo?.boards;
  else if (kind === 'factory-zip') boards = opened.androidInfo?.boards;
  return { kind, source: input, sha256: await digest, images, boards };
}

/**
 * sha256 of the base file; for a folder, of its "name sha256" lines, sorted by name, for the
 * images and (an unzipped factory image) the image-*.zip openInput also reads.
 */
async function baseSha256(input: string, kind: BaseKind): Promise<string> {
  if (kind !== 'images') return sha256File(input);
  const files = (await readdir(input)).filter((x) => x.endsWith('.img') || /^image-.*\.zip$/i.test(x)).sort();
  const digests = await Promise.all(files.map((f) => sha256File(join(input, f))));
  return createHash('sha256')
    .update(files.map((f, i) => `${f} ${digests[i]}`).join('\n'))
    .digest('hex');
}

async function readBoards(androidInfo: string): Promise<string[] | undefined> {
  if (!existsSync(androidInfo)) return undefined;
  return parseAndroidInfo(await readFile(androidInfo, 'utf8'), androidInfo).boards;
}
