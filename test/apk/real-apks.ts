/**
 * Real third-party APKs built by Google's toolchain (AGP, d8/R8, aapt2, apksigner), fetched from
 * the npm registry at pinned versions with `npm pack` into test/.work/apk/real. The tarball's
 * sha512 must equal both the integrity pinned here and the one `npm view` reports.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { onceInDir, workDir } from '../helpers.ts';

export interface RealApkPackage {
  name: string;
  version: string;
  integrity: string;
  /** APK paths inside the tarball. */
  apks: string[];
}

export const REAL_APK_PACKAGES: RealApkPackage[] = [
  {
    name: 'appium-uiautomator2-server',
    version: '10.6.6',
    integrity:
      'sha512-Ae7mB19OcLkEBi/U/r9eKnCmCJHV5iNf2/HYYHstuP7iWGCTXj1WXfIC++7fBfGWdSZVDoWc6nJO8miZInE1Wg==',
    apks: [
      'package/apks/appium-uiautomator2-server-v10.6.6.apk',
      'package/apks/appium-uiautomator2-server-debug-androidTest.apk',
    ],
  },
  {
    name: 'io.appium.settings',
    version: '8.0.10',
    integrity:
      'sha512-hvCl6u2QMrggrOohOy9pDTFo0bIWn78Nxdvj57UoPoCSFrkP0a8y73a1GaV31x3IzPw6QIECakpznft1/2/3bA==',
    apks: ['package/apks/settings_apk-debug.apk'],
  },
];

async function fetchPackage(p: RealApkPackage, dir: string): Promise<void> {
  const spec = `${p.name}@${p.version}`;
  const view = await execa('npm', ['view', spec, 'dist.integrity'], { cwd: dir });
  if (view.stdout.trim() !== p.integrity)
    throw new Error(`${spec}: registry integrity ${view.stdout.trim()} != pinned ${p.integrity}`);
  const pack = await execa('npm', ['pack', spec, '--silent'], { cwd: dir });
  const tgz = join(dir, pack.stdout.trim().split('\n').pop()!);
  const got = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  if (got !== p.integrity) throw new Error(`${spec}: tarball sha512 ${got} != ${p.integrity}`);
  const out = join(dir, `${p.name}-${p.version}`);
  mkdirSync(out, { recursive: true });
  await execa('tar', ['xzf', tgz, '-C', out, ...p.apks]);
}

/** Fetches (once per run, cached across runs) and returns the absolute paths of the real APKs. */
export async function ensureRealApks(): Promise<string[]> {
  const dir = join(workDir('apk'), 'real');
  await onceInDir(dir, ['test/apk/real-apks.ts'], async () => {
    mkdirSync(dir, { recursive: true });
    for (const p of REAL_APK_PACKAGES) await fetchPackage(p, dir);
  });
  const paths = REAL_APK_PACKAGES.flatMap((p) => p.apks.map((a) => join(dir, `${p.name}-${p.version}`, a)));
  for (const f of paths) readdirSync(join(f, '..')); // fail loudly if a cached folder went missing
  return paths;
}
