/**
 * Fuzzing the APK parsers with mutated real inputs: only OmieError subclasses may escape, and
 * every case must finish quickly (no hangs, no unbounded allocation).
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { parseArsc } from '../../scripts/formats/apk/arsc.ts';
import { parseAxml } from '../../scripts/formats/apk/axml.ts';
import { parseDexClasses } from '../../scripts/formats/apk/dex.ts';
import { parseManifest } from '../../scripts/formats/apk/manifest.ts';
import { type SchemeReport, verifyApkSignatures } from '../../scripts/formats/apk/signing/index.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { mutate, prng } from '../helpers.ts';
import { ensureFixtures } from './fixtures.ts';

let apk: Buffer;
let manifest: Buffer;
let arsc: Buffer;
let dex: Buffer;

beforeAll(async () => {
  const paths = await ensureFixtures();
  apk = readFileSync(paths.rotation!);
  const z = await ZipArchive.open(bufferSource(readFileSync(paths['trackers-multidex']!)));
  manifest = await z.read(z.entry('AndroidManifest.xml')!);
  arsc = await z.read(z.entry('resources.arsc')!);
  dex = await z.read(z.entry('classes.dex')!);
}, 240_000);

const PER_CASE_MS = 2000;

async function fuzz(
  name: string,
  seed: number,
  cases: number,
  input: () => Buffer,
  run: (b: Buffer) => unknown | Promise<unknown>,
) {
  const rnd = prng(seed);
  let typed = 0;
  for (let i = 0; i < cases; i++) {
    const m = mutate(input(), rnd);
    const t0 = performance.now();
    try {
      await run(m);
    } catch (e) {
      if (!(e instanceof OmieError))
        throw new Error(`${name} case ${i} (seed ${seed}) threw ${(e as Error)?.stack ?? e}`);
      typed++;
    }
    const ms = performance.now() - t0;
    if (ms > PER_CASE_MS) throw new Error(`${name} case ${i} (seed ${seed}) took ${ms.toFixed(0)} ms`);
  }
  return typed;
}

describe('fuzz', () => {
  it('AXML + manifest: 2000 mutated AndroidManifest.xml', async () => {
    const typed = await fuzz(
      'axml',
      1,
      2000,
      () => manifest,
      (b) => {
        parseAxml(b);
        parseManifest(b, null);
      },
    );
    expect(typed).toBeGreaterThan(0);
  }, 60_000);

  it('resources.arsc: 2000 mutated tables, every entry looked up', async () => {
    const typed = await fuzz(
      'arsc',
      2,
      2000,
      () => arsc,
      (b) => {
        const t = parseArsc(b);
        let n = 0;
        for (const e of t.allEntries()) {
          t.resolve(e.id);
          if (++n > 10_000) break;
        }
      },
    );
    expect(typed).toBeGreaterThan(0);
  }, 60_000);

  it('DEX: 2000 mutated classes.dex', async () => {
    const typed = await fuzz(
      'dex',
      3,
      2000,
      () => dex,
      (b) => parseDexClasses(b),
    );
    expect(typed).toBeGreaterThan(0);
  }, 60_000);

  it('whole APK (zip + manifest + signatures v1/v2/v3 + lineage): 1000 mutated APKs', async () => {
    const typed = await fuzz(
      'apk',
      4,
      1000,
      () => apk,
      async (b) => {
        const z = await ZipArchive.open(bufferSource(b));
        const r = await verifyApkSignatures(z, { minSdk: 21 });
        // Scheme failures are reported, but never as untyped internal errors.
        for (const s of Object.values(r.schemes) as SchemeReport[])
          if (s.error?.code === 'INTERNAL')
            throw new Error(`untyped error in ${s.scheme}: ${s.error.message}`);
        const mf = z.entry('AndroidManifest.xml');
        if (mf) parseManifest(await z.read(mf), null);
      },
    );
    expect(typed).toBeGreaterThan(0);
  }, 120_000);
});
