/**
 * One sample base per test run, shared by test/sample and test/build-plan (vitest runs files in
 * parallel workers): generated once under test/.work/sample-base with a directory lock, reused when
 * its manifest exists. Keys and the APK cache live next to it (generated on first use).
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSampleBase, type SampleBase } from '../../scripts/sample/base.ts';
import { workDir } from '../helpers.ts';

export const SAMPLE_ROOT = workDir('sample-base');
export const SAMPLE_KEYS = join(SAMPLE_ROOT, 'keys');
export const SAMPLE_APK_CACHE = join(SAMPLE_ROOT, 'apk-cache');
export const SAMPLE_DIR = join(SAMPLE_ROOT, 'base');

const LOCK = join(SAMPLE_ROOT, 'lock');

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('timed out waiting for the sample base lock');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** The shared sample base (generated on first call of the run, or reused from test/.work). */
export async function sampleBase(): Promise<SampleBase> {
  return withLock(async () => {
    const manifest = join(SAMPLE_DIR, 'sample-base.json');
    if (existsSync(manifest) && existsSync(join(SAMPLE_DIR, 'factory.zip'))) {
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
    return generateSampleBase({ outDir: SAMPLE_DIR, keysDir: SAMPLE_KEYS, apkCacheDir: SAMPLE_APK_CACHE });
  });
}
