/**
 * The build's re-signing of kept test-key APKs: in process (v2 only) where the APK allows it,
 * apksigner (v1 + v2) where it needs v1; either way apksigner verifies the result and the new
 * key is the only signer.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey, signApk } from '../../scripts/apkgen/index.ts';
import { resignApk } from '../../scripts/build/resign.ts';
import { aaptApk } from '../apk/aapt-apk.ts';
import { apksignerVerify } from '../apk/oracles.ts';
import { workDir } from '../helpers.ts';

const dir = workDir('build-resign');
let testKey: SigningKey;
let partner: SigningKey;

beforeAll(async () => {
  testKey = await generateSigningKey(join(dir, 'keys'), 'testkey', { subject: '/CN=Stand-in Test Key' });
  partner = await generateSigningKey(join(dir, 'keys'), 'partner', { subject: '/CN=Partner' });
}, 60_000);

describe('resignApk', () => {
  for (const [minSdk, v1] of [
    [29, false],
    [21, true],
  ] as const) {
    it(`minSdk ${minSdk}: ${v1 ? 'apksigner, v1 + v2' : 'in process, v2'}; only the partner signs`, async () => {
      const { aligned } = await aaptApk(dir, `sdk${minSdk}`, { package: `org.omie.resign${minSdk}`, minSdk });
      const signed = join(dir, `sdk${minSdk}.testkey.apk`);
      await signApk(aligned, signed, { key: testKey, v1: true, v2: true, v3: false });
      const out = join(dir, `sdk${minSdk}.partner.apk`);
      await resignApk(signed, out, partner);
      const v = await apksignerVerify(out);
      expect(v.verifies).toBe(true);
      expect(v.schemes).toMatchObject({ v1, v2: true });
      expect(v.signers.map((s) => s.dn)).toEqual([expect.stringMatching(/Partner/)]);
    });
  }

  it('signs with an AOSP-style key (a .pk8 and a .x509.pem, no PEM private key) in process', async () => {
    const { aligned } = await aaptApk(dir, 'pk8', { package: 'org.omie.resignpk8', minSdk: 29 });
    const signed = join(dir, 'pk8.testkey.apk');
    await signApk(aligned, signed, { key: testKey, v1: true, v2: true, v3: false });
    const out = join(dir, 'pk8.partner.apk');
    await resignApk(signed, out, { ...partner, keyPem: '' });
    const v = await apksignerVerify(out);
    expect(v.verifies).toBe(true);
    expect(v.signers.map((s) => s.dn)).toEqual([expect.stringMatching(/Partner/)]);
  });
});
