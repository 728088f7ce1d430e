import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildApk, generateSigningKey } from '../../scripts/apkgen/index.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';

describe('apkgen', () => {
  it('builds an APK that apksigner verifies and aapt reads back, deterministically', async () => {
    const dir = join(workDir('apk'), 'apkgen');
    const key = await generateSigningKey(join(dir, 'keys'), 'gen');
    const again = await generateSigningKey(join(dir, 'keys'), 'gen');
    expect(readFileSync(again.certPem, 'utf8')).toBe(readFileSync(key.certPem, 'utf8'));
    const spec = {
      package: 'org.omie.gen',
      versionCode: 3,
      label: 'Gen',
      usesPermissions: [
        'android.permission.INTERNET',
        { name: 'android.permission.CAMERA', maxSdkVersion: 30 },
      ],
    };
    await buildApk(spec, { key }, join(dir, 'a.apk'));
    await buildApk(spec, { key }, join(dir, 'b.apk'));
    expect(readFileSync(join(dir, 'a.apk')).equals(readFileSync(join(dir, 'b.apk')))).toBe(true);
    const v = await runTool('apksigner', ['verify', '--print-certs', join(dir, 'a.apk')]);
    expect(v.stdout).toContain('CN=gen');
    const b = await runTool('aapt', ['dump', 'badging', join(dir, 'a.apk')]);
    expect(b.stdout).toContain("package: name='org.omie.gen' versionCode='3'");
    expect(b.stdout).toContain("uses-permission: name='android.permission.CAMERA' maxSdkVersion='30'");
    expect(b.stdout).toContain("application-label:'Gen'");
  }, 60_000);
});
