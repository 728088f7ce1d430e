/**
 * The OTA package writer on small payloads: signapk -w signatures by RSA (SHA-256 and the old
 * SHA-1 certificates) and EC keys, checked by openssl cms; and the whole-file signature reader
 * under fuzzing (mutated footers, comments and PKCS#7 blocks give a typed error or "not valid").
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { writeOtaPackage } from '../../scripts/formats/ota/package.ts';
import { readWholeFileSignature } from '../../scripts/formats/ota/whole-file.ts';
import { fullOperations } from '../../scripts/formats/payload/full.ts';
import { BlobFile, type FinalPayload, finalizePayload } from '../../scripts/formats/payload/payload-file.ts';
import { locatePayload } from '../../scripts/formats/payload/reader.ts';
import { loadPayloadSigningKey } from '../../scripts/formats/payload/signature.ts';
import { mutate, prng, workDir } from '../helpers.ts';

const W = workDir('ota-package');
const at = (f: string) => join(W, f);

const post = {
  device: ['tablet'],
  build: ['Omie/omie_tablet/tablet:14/UQ1A/1:user/release-keys'],
  buildIncremental: '1',
  timestamp: 1707134400,
  sdkLevel: '34',
  securityPatchLevel: '2024-02-05',
  partitionState: [],
};

async function payloadFor(keyPem: string): Promise<{ payload: FinalPayload; blobs: BlobFile }> {
  const rnd = prng(3);
  writeFileSync(
    at('boot.img'),
    Buffer.concat([
      Buffer.from(Array.from({ length: 8192 }, () => Math.floor(rnd() * 256))),
      Buffer.alloc(8192),
    ]),
  );
  const blobs = await BlobFile.create(at(`${Date.now()}.blobs`));
  const r = await fullOperations(at('boot.img'), { blockSize: 4096, chunkSize: 8192, codec: 'xz', blobs });
  const payload = await finalizePayload(
    {
      blockSize: 4096,
      minorVersion: 0,
      partitions: [{ name: 'boot', newInfo: { size: r.size, sha256: r.sha256 }, operations: r.operations }],
    },
    blobs,
    await loadPayloadSigningKey(keyPem),
  );
  return { payload, blobs };
}

async function pkg(name: string, keyPem: string, certPem: string): Promise<string> {
  const { payload, blobs } = await payloadFor(keyPem);
  const out = at(name);
  const certificateFile = readFileSync(certPem);
  await writeOtaPackage(out, {
    payload,
    metadata: { post },
    key: createPrivateKey(readFileSync(keyPem)),
    certificate: new X509Certificate(certificateFile),
    certificateFile,
  });
  await blobs.dispose();
  return out;
}

/** openssl cms checks the detached PKCS#7 of the comment over the bytes before the comment length. */
async function cmsVerify(zipPath: string): Promise<number> {
  const zip = readFileSync(zipPath);
  const size = zip.readUInt16LE(zip.length - 2);
  const start = zip.readUInt16LE(zip.length - 6);
  writeFileSync(`${zipPath}.signed`, zip.subarray(0, zip.length - size - 2));
  writeFileSync(`${zipPath}.p7`, zip.subarray(zip.length - start, zip.length - 6));
  const r = await execa(
    'openssl',
    [
      'cms',
      '-verify',
      '-inform',
      'DER',
      '-in',
      `${zipPath}.p7`,
      '-binary',
      '-content',
      `${zipPath}.signed`,
      '-noverify',
    ],
    { reject: false, stdout: 'ignore' },
  );
  return r.exitCode ?? -1;
}

const keys: Record<string, { key: string; cert: string }> = {};

beforeAll(async () => {
  const req = (key: string, cert: string, md: string, subj: string) =>
    execa('openssl', [
      'req',
      '-new',
      '-x509',
      `-${md}`,
      '-key',
      key,
      '-out',
      cert,
      '-days',
      '30',
      '-subj',
      subj,
    ]);
  await execa('openssl', ['genrsa', '-out', at('rsa.pem'), '2048']);
  await req(at('rsa.pem'), at('rsa.x509.pem'), 'sha256', '/CN=rsa');
  await req(at('rsa.pem'), at('rsa-sha1.x509.pem'), 'sha1', '/CN=rsa-sha1');
  await execa('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('ec.sec1.pem')]);
  await execa('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', at('ec.sec1.pem'), '-out', at('ec.pem')]);
  await req(at('ec.pem'), at('ec.x509.pem'), 'sha256', '/CN=ec');
  keys.rsa = { key: at('rsa.pem'), cert: at('rsa.x509.pem') };
  keys.sha1 = { key: at('rsa.pem'), cert: at('rsa-sha1.x509.pem') };
  keys.ec = { key: at('ec.pem'), cert: at('ec.x509.pem') };
}, 60_000);

describe('OTA package signature (signapk -w)', () => {
  it.each([
    ['rsa', 'sha256'],
    ['sha1', 'sha1'],
    ['ec', 'sha256'],
  ] as const)('%s key: openssl cms verifies it, and so does the reader (digest %s)', async (k, digest) => {
    const zip = await pkg(`${k}.zip`, keys[k].key, keys[k].cert);
    expect(await cmsVerify(zip)).toBe(0);
    const s = await readWholeFileSignature(zip);
    expect(s).toMatchObject({ valid: true, digest });
    expect(s.certificate.equals(new X509Certificate(readFileSync(keys[k].cert)).raw)).toBe(true);
    // The payload is where the metadata says (the reader's property-files check agrees).
    expect((await locatePayload(zip)).propertyFilesMismatch).toBeUndefined();
  });

  it('fuzz: 300 packages with mutated tails give "not valid" or a typed error', async () => {
    const zip = await pkg('fuzz.zip', keys.rsa.key, keys.rsa.cert);
    const good = readFileSync(zip);
    const rnd = prng(17);
    const tail = 2048;
    let invalid = 0;
    for (let i = 0; i < 300; i++) {
      const cut = good.length - tail;
      const bad = Buffer.concat([good.subarray(0, cut), mutate(good.subarray(cut), rnd)]);
      if (bad.equals(good)) continue;
      const f = at('fuzz-case.zip');
      const fh = await open(f, 'w');
      await fh.write(bad);
      await fh.close();
      try {
        const s = await readWholeFileSignature(f);
        if (!s.valid) invalid++;
      } catch (e) {
        expect(e, `case ${i}`).toBeInstanceOf(OmieError);
        invalid++;
      }
    }
    expect(invalid).toBeGreaterThan(250);
  });
});
