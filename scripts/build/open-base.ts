import { createHash } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { InputError } from '../errors.ts';
import { extractFactoryImage, parseAndroidInfo, readFactoryZip } from '../formats/factory-zip.ts';
import { extractPayload } from '../formats/payload/extract.ts';
import { isOtaZip } from '../formats/payload/reader.ts';
import { isSparse, openImage, sparseToRaw } from '../formats/sparse.ts';
import { extractPartition, looksLikeSuper, readSuper } from '../formats/super/index.ts';
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
 * Unpacks a base whatever its packaging into `workDir/base/<partition>.img` (raw). Sparse images
 * are expanded, logical partitions are extracted from super (slot suffix dropped), factory zips
 * and OTAs are unpacked; nothing is ever loaded whole into memory.
 */
export async function openBase(
  input: string,
  workDir: string,
  opts: OpenBaseOptions = {},
): Promise<OpenedBase> {
  const kind = !opts.kind || opts.kind === 'auto' ? await detectBaseKind(input) : opts.kind;
  const out = join(workDir, 'base');
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const images: Record<string, string> = {};
  let boards: string[] | undefined;
  let sha256: string;

  if (kind === 'images') {
    const files = (await readdir(input)).filter((f) => f.endsWith('.img')).sort();
    if (files.length === 0)
      throw new InputError(`${input}: no *.img files`, { code: 'BASE_EMPTY', context: { dir: input } });
    const lines: string[] = [];
    for (const f of files) lines.push(`${f} ${await sha256File(join(input, f))}`);
    sha256 = createHash('sha256').update(lines.join('\n')).digest('hex');
    for (const f of files) await addImage(join(input, f), basename(f, '.img'), out, images, opts);
    boards = await readBoards(join(input, 'android-info.txt'));
  } else if (kind === 'ota') {
    sha256 = await sha256File(input);
    const results = await extractPayload(input, out, { onProgress: opts.onProgress });
    for (const r of results) images[r.name] = join(out, `${r.name}.img`);
  } else if (kind === 'factory-zip') {
    sha256 = await sha256File(input);
    const zip = await readFactoryZip(input);
    boards = zip.androidInfo?.boards;
    const unpacked = join(workDir, 'factory');
    await mkdir(unpacked, { recursive: true });
    for (const img of zip.images) {
      const tmp = join(unpacked, `${img.partition}.img`);
      await extractFactoryImage(input, img.entry, tmp, { onProgress: opts.onProgress });
      await addImage(tmp, img.partition, out, images, opts);
      await rm(tmp, { force: true });
    }
  } else {
    sha256 = await sha256File(input);
    await addImage(
      input,
      kind === 'super' ? 'super' : basename(input).replace(/\.img$/, ''),
      out,
      images,
      opts,
    );
  }
  return { kind, source: input, sha256, images, boards };
}

async function readBoards(androidInfo: string): Promise<string[] | undefined> {
  if (!existsSync(androidInfo)) return undefined;
  return parseAndroidInfo(await readFile(androidInfo, 'utf8'), androidInfo).boards;
}

/** Adds one image: expands sparse, splits super into its logical partitions, copies raw. */
async function addImage(
  path: string,
  name: string,
  out: string,
  images: Record<string, string>,
  opts: OpenBaseOptions,
): Promise<void> {
  const s = await sniff(path);
  let superHead = looksLikeSuper(s.head);
  if (!superHead && isSparse(s.head)) {
    const img = await openImage(path);
    try {
      const head = Buffer.alloc(8192 + 4);
      await img.read(head, 0);
      superHead = looksLikeSuper(head);
    } finally {
      await img.close();
    }
  }
  if (superHead) {
    const info = await readSuper(path);
    if (info.layout === 'super_empty') return; // metadata only: nothing to take from it
    const present = info.partitions.filter((p) => p.size > 0);
    const want = opts.slot ?? 'a';
    for (const p of present) {
      const m = /^(.*)_([ab])$/.exec(p.name);
      const plain = m ? m[1] : p.name;
      if (m && m[2] !== want && present.some((q) => q.name === `${plain}_${want}`)) continue;
      if (images[plain]) continue;
      const dest = join(out, `${plain}.img`);
      await extractPartition(path, p.name, dest, { onProgress: opts.onProgress });
      images[plain] = dest;
    }
    return;
  }
  const dest = join(out, `${name}.img`);
  if (isSparse(s.head)) await sparseToRaw(path, dest);
  else await copyFile(path, dest, constants.COPYFILE_FICLONE);
  images[name] = dest;
}
