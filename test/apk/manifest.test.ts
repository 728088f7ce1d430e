/**
 * Manifest reading on APKs linked by aapt2 from hand-written manifests — hex versionCode,
 * versionCodeMajor, codename SDKs, literal labels, no <uses-sdk> — and on the same APKs with the
 * android attribute names in the string pool renamed (as resource obfuscators do): attributes are
 * found by resource id, like `aapt2 dump badging` and the platform find them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FRAMEWORK_RES_APK, inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { parseManifest } from '../../scripts/formats/apk/manifest.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';

const MANIFESTS: Record<string, string> = {
  codename: `<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.omie.m"
    android:versionCode="0x10" android:versionCodeMajor="3" android:versionName="1.0">
  <uses-sdk android:minSdkVersion="Tiramisu" android:targetSdkVersion="Tiramisu"/>
  <application android:label="Literal Label">
    <activity android:name=".Main"><intent-filter><action android:name="android.intent.action.MAIN"/></intent-filter></activity>
  </application>
</manifest>`,
  'no-uses-sdk': `<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.omie.nosdk"
    android:versionCode="7">
  <application android:label="No SDK"/>
</manifest>`,
  numeric: `<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.omie.num"
    android:versionCode="2147483647" android:versionName="9">
  <uses-sdk android:minSdkVersion="21" android:targetSdkVersion="34"/>
  <application android:label="Numeric"><service android:name="org.other.Svc" android:exported="true"/></application>
</manifest>`,
};

/** Same-length renames of android attribute names in the (UTF-16 or UTF-8) string pool. */
const RENAMES: Array<[string, string]> = [
  ['versionCode', 'vXXXXXXXXXX'],
  ['versionName', 'vYYYYYYYYYY'],
  ['minSdkVersion', 'mXXXXXXXXXXXX'],
  ['targetSdkVersion', 'tXXXXXXXXXXXXXXX'],
  ['label', 'lXXXX'],
  ['exported', 'eXXXXXXX'],
];

function obfuscate(axml: Buffer): Buffer {
  const s = Buffer.from(axml);
  for (const [a, b] of RENAMES)
    for (const enc of ['utf16le', 'utf8'] as const) {
      const from = Buffer.from(a, enc);
      const to = Buffer.from(b, enc);
      for (let i = s.indexOf(from); i >= 0; i = s.indexOf(from, i + 1)) to.copy(s, i);
    }
  return s;
}

interface Badging2 {
  versionCode: string;
  versionName: string;
  sdk: string | null;
  target: string | null;
  label: string | null;
}

function badging(out: string): Badging2 {
  const pkg = /^package: name='[^']*' versionCode='([^']*)' versionName='([^']*)'/m.exec(out)!;
  return {
    versionCode: pkg[1]!,
    versionName: pkg[2]!,
    sdk: /^sdkVersion:'([^']*)'/m.exec(out)?.[1] ?? null,
    target: /^targetSdkVersion:'([^']*)'/m.exec(out)?.[1] ?? null,
    label: /^application: label='([^']*)'/m.exec(out)?.[1] ?? null,
  };
}

const dir = join(workDir('apk'), 'manifests');
const apks: Record<string, string> = {};

beforeAll(async () => {
  for (const [name, xml] of Object.entries(MANIFESTS)) {
    const src = join(dir, `${name}.xml`);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(src, xml);
    apks[name] = join(dir, `${name}.apk`);
    await runTool('aapt2', ['link', '--manifest', src, '-I', FRAMEWORK_RES_APK, '-o', apks[name]!]);
    const obf = join(dir, `${name}-obf.apk`);
    apks[`${name}-obf`] = obf;
  }
}, 120_000);

async function manifestOf(apk: string) {
  const z = await ZipArchive.open(bufferSource(readFileSync(apk)));
  return z.read(z.entry('AndroidManifest.xml')!);
}

describe('manifest attributes vs aapt2 dump badging', () => {
  for (const name of Object.keys(MANIFESTS))
    for (const obf of [false, true])
      it(`${name}${obf ? ' (attribute names obfuscated)' : ''}`, async () => {
        let file = apks[name]!;
        if (obf) {
          // Write the renamed manifest into a copy of the APK.
          const axml = obfuscate(await manifestOf(file));
          expect(axml.includes(Buffer.from('versionCode', 'utf16le'))).toBe(false);
          writeFileSync(`${apks[`${name}-obf`]!}.axml`, axml);
          await runTool('python3', [
            '-c',
            'import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1]);w=zipfile.ZipFile(sys.argv[2],"w")\n' +
              'for n in z.namelist(): w.writestr(n, open(sys.argv[3],"rb").read() if n=="AndroidManifest.xml" else z.read(n))\nw.close()',
            file,
            apks[`${name}-obf`]!,
            `${apks[`${name}-obf`]!}.axml`,
          ]);
          file = apks[`${name}-obf`]!;
        }
        const want = badging((await runTool('aapt2', ['dump', 'badging', file])).stdout);
        const m = parseManifest(await manifestOf(file), null);
        expect(String(m.versionCode)).toBe(want.versionCode);
        expect(m.versionName ?? '').toBe(want.versionName);
        expect(m.label).toBe(want.label);
        const sdk = (v: string | null, dflt: number) =>
          v === null ? dflt : /^\d+$/.test(v) ? Number(v) : 10000;
        expect(m.minSdkVersion).toBe(sdk(want.sdk, 1));
        expect(m.targetSdkVersion).toBe(sdk(want.target, m.minSdkVersion));
      });

  it('versionCodeMajor makes the long version code; components are found and qualified by id', async () => {
    const m = parseManifest(obfuscate(await manifestOf(apks.codename!)), null);
    expect(m.versionCode).toBe(16);
    expect(m.versionCodeMajor).toBe(3);
    expect(m.longVersionCode).toBe(3 * 2 ** 32 + 16);
    expect(m.components.map((c) => [c.name, c.exported, c.exportedExplicit])).toEqual([
      ['org.omie.m.Main', true, null],
    ]);
    const n = parseManifest(obfuscate(await manifestOf(apks.numeric!)), null);
    expect(n.components.map((c) => [c.name, c.exported, c.exportedExplicit])).toEqual([
      ['org.other.Svc', true, true],
    ]);
  });

  it('versionName, minSdkVersion and label given as resource references resolve like aapt2', async () => {
    const { mkdirSync } = await import('node:fs');
    const res = join(dir, 'refs', 'res', 'values');
    mkdirSync(res, { recursive: true });
    writeFileSync(
      join(res, 'v.xml'),
      '<resources><integer name="min">23</integer><string name="vn">5.6.7</string>' +
        '<string name="app">@string/app2</string><string name="app2">Ref App</string></resources>',
    );
    const mf = join(dir, 'refs', 'AndroidManifest.xml');
    writeFileSync(
      mf,
      '<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.omie.ref" ' +
        'android:versionCode="3" android:versionName="@string/vn"><uses-sdk android:minSdkVersion="@integer/min" ' +
        'android:targetSdkVersion="30"/><application android:label="@string/app"/></manifest>',
    );
    const compiled = join(dir, 'refs', 'c.zip');
    const out = join(dir, 'refs', 'refs.apk');
    await runTool('aapt2', ['compile', '--dir', join(dir, 'refs', 'res'), '-o', compiled]);
    await runTool('aapt2', ['link', '--manifest', mf, '-I', FRAMEWORK_RES_APK, '-o', out, compiled]);
    const text = (await runTool('aapt2', ['dump', 'badging', out])).stdout;
    const r = await inspectApk(out);
    expect(r.identity.versionName).toBe(badging(text).versionName);
    expect(String(r.sdk.min)).toBe(badging(text).sdk);
    expect(r.identity.label).toBe(/^application-label:'([^']*)'/m.exec(text)![1]);
    expect(r.identity.label).toBe('Ref App');
  });
});
