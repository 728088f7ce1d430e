/** Small real APKs for the signing tests: resources only, built by aapt, then zipaligned. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FRAMEWORK_RES, runTool } from '../../scripts/host/tools.ts';
import { prng } from '../helpers.ts';

/**
 * Builds `<dir>/<name>-unsigned.apk` (aapt against Debian's framework-res) and its zipaligned
 * copy `<name>-aligned.apk`; `bigAsset` adds a stored 2.5 MiB asset (three v2 digest chunks).
 */
export async function aaptApk(
  dir: string,
  name: string,
  opts: { package: string; minSdk: number; targetSdk?: number; bigAsset?: boolean },
): Promise<{ unsigned: string; aligned: string }> {
  const src = join(dir, `src-${name}`);
  mkdirSync(join(src, 'res/values'), { recursive: true });
  writeFileSync(
    join(src, 'AndroidManifest.xml'),
    `<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="${opts.package}" android:versionCode="1" android:versionName="1.0">
  <uses-sdk android:minSdkVersion="${opts.minSdk}" android:targetSdkVersion="${opts.targetSdk ?? opts.minSdk}" />
  <application android:hasCode="false" />
</manifest>
`,
  );
  writeFileSync(
    join(src, 'res/values/values.xml'),
    '<?xml version="1.0" encoding="utf-8"?>\n<resources><string name="hello">hello</string></resources>\n',
  );
  const args = ['package', '-f', '-M', join(src, 'AndroidManifest.xml'), '-S', join(src, 'res')];
  if (opts.bigAsset) {
    mkdirSync(join(src, 'assets'), { recursive: true });
    const rnd = prng(7);
    const big = Buffer.alloc(2.5 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (rnd() * 256) | 0;
    writeFileSync(join(src, 'assets/blob.bin'), big);
    args.push('-A', join(src, 'assets'), '-0', 'bin');
  }
  const unsigned = join(dir, `${name}-unsigned.apk`);
  const aligned = join(dir, `${name}-aligned.apk`);
  await runTool('aapt', [...args, '-I', FRAMEWORK_RES, '-F', unsigned]);
  await runTool('zipalign', ['-f', '-p', '4', unsigned, aligned]);
  return { unsigned, aligned };
}
