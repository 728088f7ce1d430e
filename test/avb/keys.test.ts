import { statSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../scripts/errors.ts';
import {
  avbPublicKeySha256,
  decodeAvbPublicKey,
  generateAvbKey,
  infoImage,
  isPublicTestKey,
  makeVbmetaImage,
  PUBLIC_TEST_KEY_SHA256,
  publicTestKeyName,
  readAvbImage,
  readAvbPublicKey,
  verifyImage,
} from '../../scripts/formats/avb/index.ts';
import { AVBTOOL } from '../oracles.ts';
import { AOSP_TESTKEY_RSA4096_PUBLIC_PEM, avbtool, DIR, testKey } from './fixtures.ts';

const D = join(DIR, 'keys-test');
let k2048: string;
let k4096: string;

beforeAll(async () => {
  await import('node:fs/promises').then((fs) => fs.mkdir(D, { recursive: true }));
  [k2048, k4096] = await Promise.all([testKey(2048), testKey(4096)]);
});

describe('AVB public key blobs', () => {
  it("carry the Montgomery constants libavb's RSA code needs", () => {
    for (const k of [k2048, k4096]) {
      const pk = decodeAvbPublicKey(readAvbPublicKey(k));
      // n0inv = -1/n mod 2^32 and rr = (2^bits)^2 mod n.
      expect((BigInt(pk.n0inv) * (pk.modulus & 0xffffffffn)) % 2n ** 32n).toBe(2n ** 32n - 1n);
      expect(pk.rr).toBe((1n << BigInt(2 * pk.numBits)) % pk.modulus);
    }
  });

  it.skipIf(!AVBTOOL.present)(
    `equal avbtool extract_public_key for private and public PEMs ${AVBTOOL.reason}`,
    async () => {
      for (const k of [k2048, k4096]) {
        const out = join(D, 'x.avbpubkey');
        await avbtool(['extract_public_key', '--key', k, '--output', out]);
        expect(readAvbPublicKey(k).equals(await readFile(out))).toBe(true);
      }
    },
  );

  it('detects the AOSP public test key by its AVB blob digest', async () => {
    const pem = join(D, 'testkey_rsa4096_pub.pem');
    await writeFile(pem, AOSP_TESTKEY_RSA4096_PUBLIC_PEM);
    const blob = readAvbPublicKey(pem);
    expect(avbPublicKeySha256(blob)).toBe('7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6');
    expect(isPublicTestKey(blob)).toBe(true);
    expect(publicTestKeyName(blob)).toBe('testkey_rsa4096');
    expect(isPublicTestKey(readAvbPublicKey(k4096))).toBe(false);
    expect(isPublicTestKey(readAvbPublicKey(k2048))).toBe(false);
  });

  it.skipIf(!AVBTOOL.present)(
    `the test key digests are those the oracles' README documents, and avbtool's blob is ours ${AVBTOOL.reason}`,
    async () => {
      const pem = join(D, 'testkey_rsa4096_pub.pem');
      await writeFile(pem, AOSP_TESTKEY_RSA4096_PUBLIC_PEM);
      await avbtool(['extract_public_key', '--key', pem, '--output', join(D, 'tk.avbpubkey')]);
      expect(readAvbPublicKey(pem).equals(await readFile(join(D, 'tk.avbpubkey')))).toBe(true);
      const readme = join(dirname(AVBTOOL.path), 'README.md');
      const documented = [
        ...(await readFile(readme, 'utf8')).matchAll(/(testkey_rsa\d+): ([0-9a-f]{64})/g),
      ].map((m) => [m[2], m[1]] as const);
      expect(documented).toHaveLength(3);
      expect(Object.fromEntries(documented)).toEqual(PUBLIC_TEST_KEY_SHA256);
    },
  );

  it('an image carrying the test key is reported as such (and fails verification when not really signed by it)', async () => {
    const p = join(D, 'vbmeta-testkey.img');
    await makeVbmetaImage(p, { algorithm: 'SHA256_RSA4096', key: k4096 });
    const img = await readAvbImage(p);
    const h = img.vbmeta.header;
    const keyAt = 256 + h.authenticationDataBlockSize + h.publicKeyOffset;
    const bytes = await readFile(p);
    readAvbPublicKey(join(D, 'testkey_rsa4096_pub.pem')).copy(bytes, keyAt);
    await writeFile(p, bytes);
    expect((await infoImage(p)).publicTestKey).toBe('testkey_rsa4096');
    await expect(verifyImage(p)).rejects.toMatchObject({ code: 'AVB_HASH_MISMATCH', scheme: 'avb' });
  });

  it('generateAvbKey writes a 0600 PKCS#1 key, refuses to overwrite, and the key signs', async () => {
    const p = join(D, 'gen2048.pem');
    await rm(p, { force: true });
    const blob = await generateAvbKey(p, 2048);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(await readFile(p, 'utf8')).toContain('BEGIN RSA PRIVATE KEY');
    expect(blob.length).toBe(8 + 512);
    expect(readAvbPublicKey(p).equals(blob)).toBe(true);
    await expect(generateAvbKey(p, 2048)).rejects.toBeInstanceOf(InputError);
    await expect(generateAvbKey(join(D, 'bad.pem'), 1024 as 2048)).rejects.toBeInstanceOf(InputError);
    const vb = join(D, 'gen.img');
    await makeVbmetaImage(vb, { algorithm: 'SHA512_RSA2048', key: p });
    expect((await verifyImage(vb, { expectedPublicKey: blob })).signed).toBe(true);
  });

  it.skipIf(!AVBTOOL.present)(`avbtool verifies what a generated key signs ${AVBTOOL.reason}`, async () => {
    const p = join(D, 'gen2048-avbtool.pem');
    await rm(p, { force: true });
    await generateAvbKey(p, 2048);
    const vb = join(D, 'gen-avbtool.img');
    await makeVbmetaImage(vb, { algorithm: 'SHA512_RSA2048', key: p });
    await avbtool(['verify_image', '--image', vb, '--key', p]);
  });

  it('rejects a key that does not fit the algorithm with a typed error', async () => {
    await expect(
      makeVbmetaImage(join(D, 'x.img'), { algorithm: 'SHA256_RSA4096', key: k2048 }),
    ).rejects.toMatchObject({
      code: 'AVB_KEY_SIZE_MISMATCH',
    });
    await expect(makeVbmetaImage(join(D, 'x.img'), { algorithm: 'SHA256_RSA4096' })).rejects.toMatchObject({
      code: 'AVB_KEY_REQUIRED',
    });
  });
});
