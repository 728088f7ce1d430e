/**
 * The build a device check is about (`omie check --device SERIAL --image BUILD`): what a device
 * running it must report. Read from the build's images (vbmeta.img and the vbmetas it chains,
 * the ground truth) or from its build-record.json, never from the device.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { InputError } from '../errors.ts';
import { avbPublicKeySha256, calculateVbmetaDigest, readAvbImage } from '../formats/avb/index.ts';
import { openInput } from './open-input.ts';

export interface BuildReference {
  /** What it was read from: an image folder, a build output folder, a build-record.json, a zip… */
  source: string;
  /** `avbtool calculate_vbmeta_digest` (SHA-256): a device running the build reports it as ro.boot.vbmeta.digest. */
  vbmetaDigest: string;
  /** SHA-256 of the AVB public key blob the top-level vbmeta is signed with. */
  avbPublicKeySha256?: string;
  /** `vbmeta.img` / `build-record.json`: where the values were taken from. */
  from: 'images' | 'build-record';
}

/** Reads the build reference from an image folder, a build output folder, its record, or an image file/zip. */
export async function readBuildReference(input: string): Promise<BuildReference> {
  const st = await stat(input).catch(() => {
    throw new InputError(`${input}: no such file or folder`, {
      code: 'CHECK_INPUT_MISSING',
      context: { input },
      hint: 'pass the build the device should run: its output folder, its build-record.json or its images',
    });
  });
  if (st.isDirectory() && existsSync(join(input, 'vbmeta.img')))
    return fromImages(input, join(input, 'vbmeta.img'));
  const record = st.isDirectory() ? join(input, 'build-record.json') : input;
  if (basename(record).endsWith('.json')) {
    if (!existsSync(record))
      throw new InputError(`${input} has neither vbmeta.img nor build-record.json`, {
        code: 'CHECK_BUILD_UNKNOWN',
        context: { input },
      });
    return fromRecord(record);
  }
  // A single image file, super.img or a fastboot/factory zip: open it like `omie check` does.
  const work = await mkdtemp(join(tmpdir(), 'omie-build-ref-'));
  try {
    const { images } = await openInput(input, work);
    if (!images.vbmeta)
      throw new InputError(`${input} holds no vbmeta.img: its vbmeta digest cannot be known`, {
        code: 'CHECK_BUILD_UNKNOWN',
        context: { input, images: Object.keys(images) },
      });
    return await fromImages(input, images.vbmeta, (name) => images[name]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function fromImages(
  source: string,
  vbmeta: string,
  resolve?: (name: string) => string | undefined,
): Promise<BuildReference> {
  const top = await readAvbImage(vbmeta);
  return {
    source,
    from: 'images',
    vbmetaDigest: await calculateVbmetaDigest(vbmeta, resolve),
    avbPublicKeySha256: top.vbmeta.publicKey.length ? avbPublicKeySha256(top.vbmeta.publicKey) : undefined,
  };
}

async function fromRecord(file: string): Promise<BuildReference> {
  let r: { avb?: { vbmetaDigest?: unknown }; keys?: { avbPublicKeySha256?: unknown } };
  try {
    r = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: not a build record (${(e as Error).message})`, {
      code: 'CHECK_BUILD_UNKNOWN',
      context: { file },
    });
  }
  const digest = r.avb?.vbmetaDigest;
  if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest))
    throw new InputError(`${file} records no vbmeta digest (avb.vbmetaDigest)`, {
      code: 'CHECK_BUILD_UNKNOWN',
      context: { file },
      hint: 'records written before the kit recorded vbmeta digests lack it: pass the build folder with its vbmeta.img instead',
    });
  const key = r.keys?.avbPublicKeySha256;
  return {
    source: file,
    from: 'build-record',
    vbmetaDigest: digest,
    avbPublicKeySha256: typeof key === 'string' ? key : undefined,
  };
}
