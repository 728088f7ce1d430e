/**
 * Our APK reader on real Play-toolchain APKs (see real-apks.ts) against the real tools:
 * `aapt dump badging`, `apksigner verify --print-certs -v` and `baksmali list classes`.
 */
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dexEntryNames, parseDexClasses } from '../../scripts/formats/apk/dex.ts';
import { ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';
import { hostTool } from '../host-tools.ts';
import { expectSameAsApksigner, expectSameAsBadging } from './oracles.ts';
import { ensureRealApks, REAL_APK_PACKAGES } from './real-apks.ts';

const BAKSMALI = hostTool('baksmali');
const names = REAL_APK_PACKAGES.flatMap((p) => p.apks.map((a) => basename(a)));
let paths: Record<string, string> = {};
beforeAll(async () => {
  paths = Object.fromEntries((await ensureRealApks()).map((p) => [basename(p), p]));
}, 300_000);

describe('real APKs from the npm registry', () => {
  for (const name of names) {
    it(`${name}: manifest facts equal aapt dump badging`, async () => {
      await expectSameAsBadging(paths[name]!);
    }, 60_000);

    it(`${name}: verdict, schemes and signers equal apksigner verify --print-certs -v`, async () => {
      const want = await expectSameAsApksigner(paths[name]!);
      expect(want.signers.length).toBeGreaterThan(0);
    }, 60_000);

    it.skipIf(!BAKSMALI.present)(
      `${name}: class list of every dex equals baksmali list classes ${BAKSMALI.reason}`,
      async () => {
        const z = await ZipArchive.openFile(paths[name]!);
        const dexes = dexEntryNames(z.entries.map((e) => e.name));
        expect(dexes.length).toBeGreaterThan(0);
        const dir = workDir('apk');
        for (const n of dexes) {
          const buf = await z.read(z.entry(n)!, 256 * 1024 * 1024);
          const file = join(dir, `real-${name}-${n}`);
          writeFileSync(file, buf);
          const want = (await runTool('baksmali', ['list', 'classes', file])).stdout
            .split('\n')
            .filter(Boolean)
            .map((d) => d.slice(1, -1).replace(/\//g, '.'));
          expect(parseDexClasses(buf, n).classes.sort(), n).toEqual(want.sort());
        }
        await z.close();
      },
      180_000,
    );
  }
});
