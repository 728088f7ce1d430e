/** Which v2/v3 signatures get verified: apksig ApkSigningBlockUtils.getSignaturesToVerify. */
import { describe, expect, it } from 'vitest';
import { signaturesToVerify } from '../../scripts/formats/apk/signing/common.ts';

const MAX = 0x7fffffff;
const pick = (algs: number[], min: number, max = MAX) => {
  const r = signaturesToVerify(
    algs.map((alg) => ({ alg })),
    min,
    max,
  );
  return 'ok' in r ? r.ok.map((s) => s.algorithm.name) : { minProvided: r.minProvided };
};

describe('signaturesToVerify', () => {
  it('the strongest signature per SDK band: classic from 24 and verity from 28 are both checked', () => {
    expect(pick([0x0103, 0x0421], 24)).toEqual([
      'RSA_PKCS1_V1_5_WITH_SHA256',
      'VERITY_RSA_PKCS1_V1_5_WITH_SHA256',
    ]);
    expect(pick([0x0103, 0x0104], 24)).toEqual(['RSA_PKCS1_V1_5_WITH_SHA512']);
    expect(pick([0x0201, 0x0423, 0x0202], 24)).toEqual(['ECDSA_WITH_SHA512', 'VERITY_ECDSA_WITH_SHA256']);
  });

  it('a verity-only signer verifies only for SDK >= 28, and the reason says so', () => {
    expect(pick([0x0421], 24)).toEqual({ minProvided: 28 });
    expect(pick([0x0425], 28)).toEqual(['VERITY_DSA_WITH_SHA256']);
    // Capped below 28: the verity band is out of range, nothing to verify.
    expect(pick([0x0421], 24, 27)).toEqual({ minProvided: null });
  });

  it('unknown algorithm ids are ignored', () => {
    expect(pick([0x9999, 0x0101], 24)).toEqual(['RSA_PSS_WITH_SHA256']);
    expect(pick([0x9999], 24)).toEqual({ minProvided: null });
  });
});
