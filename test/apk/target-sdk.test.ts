/**
 * From targetSdkVersion 30 the platform refuses an APK without a v2 or later signature
 * (PackageManager's assertMinSignatureSchemeIsValid), and apksig reports it: a v1-only APK that
 * targets 30 or more does not verify, one that targets 29 does. Checked against apksigner.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApk, generateSigningKey } from '../../scripts/apkgen/index.ts';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { onceInDir, workDir } from '../helpers.ts';
import { apksignerVerify } from './oracles.ts';

const DIR = join(workDir('apk'), 'target-sdk');
const apk = (name: string) => join(DIR, `${name}.apk`);

beforeAll(async () => {
  await onceInDir(DIR, ['test/apk/target-sdk.test.ts', 'scripts/apkgen'], async () => {
    const key = await generateSigningKey(join(DIR, 'keys'), 'v1only');
    const spec = (pkg: string, targetSdk: number) => ({
      package: pkg,
      minSdk: 19,
      targetSdk,
      label: 'Target',
    });
    for (const [name, target] of [
      ['v1-target29', 29],
      ['v1-target30', 30],
    ] as const)
      await buildApk(
        spec(`org.omie.target.t${target}`, target),
        { key, v1: true, v2: false, v3: false },
        apk(name),
      );
    await buildApk(
      spec('org.omie.target.v2', 33),
      { key, v1: true, v2: true, v3: false },
      apk('v1v2-target33'),
    );
  });
}, 300_000);

describe('minimum signature scheme for the target SDK', () => {
  it('a v1-only APK targeting 29 verifies, with us and with apksigner', async () => {
    const r = await inspectApk(apk('v1-target29'));
    expect(r.signatures.verified, r.signatures.problems.join('; ')).toBe(true);
    expect((await apksignerVerify(apk('v1-target29'))).verifies).toBe(true);
  });

  it('a v1-only APK targeting 30 does not verify, with us and with apksigner', async () => {
    const r = await inspectApk(apk('v1-target30'));
    expect(r.signatures.verified).toBe(false);
    expect(r.signatures.problems).toEqual([
      'targetSdkVersion 30 >= 30 requires an APK Signature Scheme v2 or later signature, which is missing',
    ]);
    expect((await apksignerVerify(apk('v1-target30'))).verifies).toBe(false);
  });

  it('the same with a v2 signature beside v1 verifies at target 33', async () => {
    const r = await inspectApk(apk('v1v2-target33'));
    expect(r.signatures.verified, r.signatures.problems.join('; ')).toBe(true);
    expect((await apksignerVerify(apk('v1v2-target33'))).verifies).toBe(true);
  });
});
