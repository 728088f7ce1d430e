/**
 * Turns whatever a partner hands `omie check` into raw partition images: a folder of *.img
 * (raw ones are read in place, sparse ones expanded), a super.img (logical partitions extracted,
 * slot _a preferred), a single sparse/raw image, a fastboot/factory zip, or an A/B OTA (zip or
 * payload.bin).
 * Only what must be converted is written to the work folder; nothing is loaded whole in memory.
 */
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { InputError } from '../errors.ts';
import { type AndroidInfo, openFactoryZip, partitionOf } from '../formats/factory-zip.ts';
import { isOtaZip } from '../formats/payload/reader.ts';
import { isSparse, openImage, sparseToRaw } from '../formats/sparse.ts';
import { extractPartition, looksLikeSuper, readSuper } from '../formats/super/index.ts';
import type { ProgressFn } from '../progress.ts';

export type InputKind = 'images' | 'super' | 'image' | 'fastboot-zip' | 'ota';

export interface OpenedInput {
  kind: InputKind;
  /** Partition name (slot suffix dropped) → raw image path. */
  images: Record<string, string>;
  /** fastboot/factory zip: its android-info.txt, if any. */
  androidInfo?: AndroidInfo;
}

/** Enough of the head to see a sparse header and both LP geometry copies (offsets 4096, 8192). */
const HEAD = 16 * 1024;

async function head(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(HEAD);
    const { bytesRead } = await fh.read(b, 0, HEAD, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function addImage(
  path: string,
  name: string,
  work: string,
  images: Record<string, string>,
  slot: 'a' | 'b',
  onProgress?: ProgressFn,
): Promise<void> {
  const h = await head(path);
  let isSuper = looksLikeSuper(h);
  const sparse = isSparse(h);
  if (!isSuper && sparse) {
    const img = await openImage(path);
    try {
      const b = Buffer.alloc(HEAD);
      await img.read(b, 0);
      isSuper = looksLikeSuper(b);
    } finally {
      await img.close();
    }
  }
  if (isSuper) {
    const info = await readSuper(path);
    // super_empty.img (factory zips, fastboot update) is the partition table only: the logical
    // partitions come as separate images next to it.
    if (info.layout === 'super_empty') return;
    const present = info.partitions.filter((p) => p.size > 0);
    for (const p of present) {
      const m = /^(.*)_([ab])$/.exec(p.name);
      const plain = m ? m[1] : p.name;
      if (m && m[2] !== slot && present.some((q) => q.name === `${plain}_${slot}`)) continue;
      if (images[plain]) continue;
      const dest = join(work, `${plain}.img`);
      await extractPartition(path, p.name, dest, { onProgress });
      images[plain] = dest;
    }
    return;
  }
  if (sparse) {
    const dest = join(work, `${name}.img`);
    await sparseToRaw(path, dest);
    images[name] = dest;
    return;
  }
  images[name] = path; // raw: read in place
}

const ZIP_MAGIC = Buffer.from('PK\x03\x04', 'latin1');

/**
 * Adds the images of a fastboot or factory zip (extracted one by one, a deflated image zip
 * inflated once into `work`); returns its android-info.txt.
 */
async function addZipImages(
  path: string,
  work: string,
  images: Record<string, string>,
  slot: 'a' | 'b',
  onProgress?: ProgressFn,
): Promise<AndroidInfo | undefined> {
  const zip = await openFactoryZip(path, { tmpDir: work });
  try {
    await mkdir(join(work, 'zip'), { recursive: true });
    // Separate images first, super.img last: a partition given on its own wins over super's.
    const entries = zip.info.images
      .filter((img) => /^[a-z0-9_]+$/.test(img.partition))
      .sort((a, b) => Number(a.partition === 'super') - Number(b.partition === 'super'));
    for (const img of entries) {
      const name = img.partition;
      if (images[name]) continue;
      const dest = join(work, 'zip', `${name}.img`);
      await zip.extract(img.entry, dest, { onProgress });
      await addImage(dest, name, work, images, slot, onProgress);
      // A sparse, super or super_empty entry was converted or consumed: drop the copy.
      if (images[name] !== dest) await rm(dest, { force: true });
    }
    return zip.info.androidInfo;
  } finally {
    await zip.close();
  }
}

export async function openInput(
  input: string,
  work: string,
  opts: { slot?: 'a' | 'b'; onProgress?: ProgressFn } = {},
): Promise<OpenedInput> {
  const slot = opts.slot ?? 'a';
  const st = await stat(input).catch(() => {
    throw new InputError(`${input}: no such file or folder`, {
      code: 'CHECK_INPUT_MISSING',
      context: { input },
    });
  });
  const images: Record<string, string> = {};
  if (st.isDirectory()) {
    const names = (await readdir(input)).sort();
    const files = names.filter((f) => f.endsWith('.img'));
    // An unzipped Pixel factory image: the partitions are in the image-*.zip beside
    // bootloader-*.img and radio-*.img.
    const nested = names.filter((f) => /^image-.*\.zip$/i.test(f));
    if (!files.length && !nested.length)
      throw new InputError(`${input}: no *.img files`, { code: 'CHECK_INPUT_EMPTY', context: { input } });
    // super.img last: a partition image given on its own wins over the one inside super.
    files.sort((a, b) => Number(a === 'super.img') - Number(b === 'super.img'));
    for (const f of files) {
      // A dump of an A/B device names images by slot (system_a.img, boot_b.img): take the asked slot.
      const partition = partitionOf(f);
      const m = /^(.+)_([ab])$/.exec(partition);
      if (m && m[2] !== slot && files.includes(`${m[1]}_${slot}.img`)) continue;
      const name = m ? m[1] : partition;
      if (images[name]) continue;
      await addImage(join(input, f), name, work, images, slot, opts.onProgress);
    }
    let androidInfo: AndroidInfo | undefined;
    for (const z of nested)
      androidInfo ??= await addZipImages(join(input, z), work, images, slot, opts.onProgress);
    return { kind: 'images', images, ...(androidInfo ? { androidInfo } : {}) };
  }
  const h = await head(input);
  const isPayload = h.subarray(0, 4).toString('latin1') === 'CrAU';
  if (isPayload || h.subarray(0, 4).equals(ZIP_MAGIC)) {
    if (isPayload || (await isOtaZip(input))) {
      // Loaded for OTAs only: the payload decompressors are of no use to any other base.
      const { extractPayload } = await import('../formats/payload/extract.ts');
      for (const r of await extractPayload(input, work, { onProgress: opts.onProgress }))
        images[r.name] = join(work, `${r.name}.img`);
      return { kind: 'ota', images };
    }
    const androidInfo = await addZipImages(input, work, images, slot, opts.onProgress);
    return { kind: 'fastboot-zip', images, androidInfo };
  }
  const name = basename(input)
    .replace(/\.img$/, '')
    .replace(/_[ab]$/, '');
  const before = Object.keys(images).length;
  await addImage(input, name, work, images, slot, opts.onProgress);
  return { kind: Object.keys(images).length - before > 1 || looksLikeSuper(h) ? 'super' : 'image', images };
}
