/**
 * One sample base per test run, shared by test/sample and test/build-plan (vitest runs files in
 * parallel workers): generated once under test/.work/sample-base (onceInDir), and reused by later
 * runs while the generator's code is unchanged. Keys and the APK cache live next to it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSampleBase, type SampleBase } from '../../scripts/sample/base.ts';
import { onceInDir, workDir } from '../helpers.ts';

export const SAMPLE_ROOT = workDir('sample-base');
export const SAMPLE_KEYS = join(SAMPLE_ROOT, 'keys');
export const SAMPLE_APK_CACHE = join(SAMPLE_ROOT, 'apk-cache');
export const SAMPLE_DIR = join(SAMPLE_ROOT, 'base');

/** The shared sample base (generated on first call of the run, or reused from test/.work). */
export async function sampleBase(): Promise<SampleBase> {
  await onceInDir(SAMPLE_DIR, ['scripts/sample/base.ts'], async () => {
    await generateSampleBase({ outDir: SAMPLE_DIR, keysDir: SAMPLE_KEYS, apkCacheDir: SAMPLE_APK_CACHE });
  });
  const manifest = join(SAMPLE_DIR, 'sample-base.json');
  const m = JSON.parse(await readFile(manifest, 'utf8'));
  return {
    ...m,
    dir: SAMPLE_DIR,
    images: {
      system: join(SAMPLE_DIR, m.images.system),
      product: join(SAMPLE_DIR, m.images.product),
      vendor: join(SAMPLE_DIR, m.images.vendor),
    },
    vbmeta: join(SAMPLE_DIR, m.vbmeta),
    superImg: join(SAMPLE_DIR, m.superImg),
    factoryZip: join(SAMPLE_DIR, m.factoryZip),
    manifestPath: manifest,
  } as SampleBase;
}
