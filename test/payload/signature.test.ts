import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError, VerificationError } from '../../scripts/errors.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';

const { OtaMetadataMessage, SignaturesMessage } = payloadProtos();

import { PAYLOAD_HEADER_SIZE, parseOtaMetadata, readPayload } from '../../scripts/formats/payload/reader.ts';
import { assertPayloadSigned, checkPayloadSignatures } from '../../scripts/formats/payload/signature.ts';
import { writeOtaZip, writePayload } from '../../scripts/formats/payload/writer.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';

/**
 * Signed payloads made like AOSP's payload_signer: placeholders of the final size first, then the
 * metadata (header + manifest) is signed, then the payload without either signature blob. The
 * signatures come from the openssl CLI (RSA PKCS#1 v1.5 / ECDSA over SHA-256), not from our code.
 */
const W = workDir('payload-signature');
const at = (f: string) => join(W, f);

async function openssl(args: string[], input?: Buffer): Promise<Buffer> {
  const r = await execa('openssl', args, { input, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout as Uint8Array);
}

/** Signatures message bytes; EC signatures are zero-padded to `size` like payload_signer does. */
function sigMessage(sig: Buffer, size: number): Buffer {
  const data = Buffer.concat([sig, Buffer.alloc(size - sig.length)]);
  return Buffer.from(
    SignaturesMessage.encode(
      SignaturesMessage.fromObject({ signatures: [{ data, unpaddedSignatureSize: sig.length }] }),
    ).finish(),
  );
}

/** Replaces both placeholder signatures of `path` with real ones made by openssl with `key`. */
async function signInPlace(path: string, key: string, size: number): Promise<void> {
  const p = await readPayload(path);
  const raw = readFileSync(path);
  const metadataSize = PAYLOAD_HEADER_SIZE + p.manifestSize;
  const metaSig = sigMessage(
    await openssl(['dgst', '-sha256', '-sign', key], raw.subarray(0, metadataSize)),
    size,
  );
  expect(metaSig.length).toBe(p.metadataSignatureSize);
  metaSig.copy(raw, metadataSize);
  const sigAt = p.blobsOffset + (p.manifest.signaturesOffset ?? 0);
  const signed = Buffer.concat([raw.subarray(0, metadataSize), raw.subarray(p.blobsOffset, sigAt)]);
  const paySig = sigMessage(await openssl(['dgst', '-sha256', '-sign', key], signed), size);
  expect(paySig.length).toBe(p.manifest.signaturesSize);
  paySig.copy(raw, sigAt);
  writeFileSync(path, raw);
}

async function signedPayload(name: string, key: string, sigSize: number): Promise<string> {
  const img = at(`${name}-system.img`);
  const rnd = prng(5);
  writeFileSync(img, Buffer.from(Array.from({ length: 24 * 4096 }, () => Math.floor(rnd() * 4))));
  const out = at(`${name}.bin`);
  await writePayload(out, {
    partitions: [{ name: 'system', imagePath: img, ops: 'xz' }],
    chunkSize: 8 * 4096,
    metadataSignatures: [Buffer.alloc(sigSize)],
    payloadSignatures: [Buffer.alloc(sigSize)],
  });
  await signInPlace(out, key, sigSize);
  return out;
}

let rsaKey: string;
let rsaCert: string;
let otherCert: string;
let ecKey: string;
let ecPub: string;

beforeAll(async () => {
  rsaKey = at('rsa.pem');
  rsaCert = at('rsa.x509.pem');
  ecKey = at('ec.pem');
  ecPub = at('ec.pub.pem');
  otherCert = at('other.x509.pem');
  await openssl(['genrsa', '-out', rsaKey, '2048']);
  await openssl([
    'req',
    '-new',
    '-x509',
    '-key',
    rsaKey,
    '-out',
    rsaCert,
    '-days',
    '30',
    '-subj',
    '/CN=omie-ota',
  ]);
  await openssl(
    ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('other.pem')].concat([
      '-out',
      otherCert,
      '-days',
      '30',
      '-subj',
      '/CN=other',
    ]),
  );
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', ecKey]);
  await openssl(['ec', '-in', ecKey, '-pubout', '-out', ecPub]);
}, 60_000);

describe('payload signatures (payload_signer layout, openssl signatures)', () => {
  it('RSA-2048: both signatures verify with the X.509 certificate; another key does not', async () => {
    const p = await readPayload(await signedPayload('rsa', rsaKey, 256));
    const ok = await checkPayloadSignatures(p, { key: rsaCert });
    expect(ok.metadataSignature).toEqual({ status: 'valid', count: 1, sizes: [256] });
    expect(ok.payloadSignature).toEqual({ status: 'valid', count: 1, sizes: [256] });
    const bad = await checkPayloadSignatures(p, { key: otherCert });
    expect([bad.metadataSignature.status, bad.payloadSignature.status]).toEqual(['invalid', 'invalid']);
    const none = await checkPayloadSignatures(p);
    expect(none.payloadSignature.status).toBe('present');
    await expect(assertPayloadSigned(p, otherCert)).rejects.toMatchObject({
      code: 'PAYLOAD_METADATA_SIGNATURE_INVALID',
    });
  });

  it('ECDSA P-256: padded DER signatures are cut to unpadded_signature_size', async () => {
    const p = await readPayload(await signedPayload('ec', ecKey, 72));
    const r = await assertPayloadSigned(p, ecPub);
    expect(r.payloadSignature.status).toBe('valid');
    expect(r.payloadSignature.sizes[0]).toBeLessThanOrEqual(72);
  });

  it('a changed data blob breaks only the payload signature; unsigned payloads are refused', async () => {
    const path = await signedPayload('tamper', rsaKey, 256);
    const p0 = await readPayload(path);
    const raw = readFileSync(path);
    raw[p0.blobsOffset + 10] ^= 0xff;
    writeFileSync(path, raw);
    const p = await readPayload(path);
    const r = await checkPayloadSignatures(p, { key: rsaCert });
    expect([r.metadataSignature.status, r.payloadSignature.status]).toEqual(['valid', 'invalid']);
    await expect(assertPayloadSigned(p, rsaCert)).rejects.toMatchObject({
      code: 'PAYLOAD_SIGNATURE_INVALID',
    });

    const img = at('plain.img');
    writeFileSync(img, Buffer.alloc(4096, 1));
    await writePayload(at('plain.bin'), { partitions: [{ name: 'boot', imagePath: img }] });
    const u = await readPayload(at('plain.bin'));
    expect((await checkPayloadSignatures(u, { key: rsaCert })).payloadSignature.status).toBe('absent');
    await expect(assertPayloadSigned(u, rsaCert)).rejects.toBeInstanceOf(VerificationError);
  });

  it('OTA zip: payload_properties.txt hashes are checked; metadata.pb is decoded and shown', async () => {
    const bin = await signedPayload('zip', rsaKey, 256);
    const zip = at('ota.zip');
    await writeOtaZip(zip, bin, {
      metadata: { 'pre-device': 'panther' },
      metadataPb: {
        type: 'AB',
        wipe: false,
        downgrade: false,
        splDowngrade: false,
        propertyFiles: { 'ota-property-files': 'payload.bin:1234:5678' },
        precondition: { device: ['panther'], build: [] },
        postcondition: {
          device: ['panther'],
          build: ['google/panther/panther:14/UQ1A.240205.004/11269751:user/release-keys'],
          buildIncremental: '11269751',
          timestamp: 1706745600,
          sdkLevel: '34',
          securityPatchLevel: '2024-02-05',
          partitionState: [
            { partitionName: 'system', device: ['panther'], build: [], version: '1706745600' },
          ],
        },
      },
    });
    const p = await readPayload(zip);
    expect(p.location.otaMetadataPb).toMatchObject({
      type: 'AB',
      propertyFiles: { 'ota-property-files': 'payload.bin:1234:5678' },
      precondition: { device: ['panther'] },
      postcondition: {
        timestamp: 1706745600,
        securityPatchLevel: '2024-02-05',
        sdkLevel: '34',
        partitionState: [{ partitionName: 'system', version: '1706745600' }],
      },
    });
    expect(p.location.propertyFilesMismatch).toMatch(
      /says payload\.bin:1234:5678, the zip has payload\.bin:\d+:\d+/,
    );
    const r = await assertPayloadSigned(p, rsaCert);
    expect(r.properties).toEqual({
      FILE_HASH: 'match',
      FILE_SIZE: 'match',
      METADATA_HASH: 'match',
      METADATA_SIZE: 'match',
    });

    const json = JSON.parse((await omie(['--json', 'inspect', zip])).stdout);
    const info = json.result ?? json;
    expect(JSON.stringify(info)).toContain('UQ1A.240205.004');
    const text = (await omie(['inspect', zip])).stdout;
    expect(text).toMatch(/Security patch: +2024-02-05/);
    expect(text).toMatch(/Signatures: +metadata 1 \(256 B\), payload 1 \(256 B\)/);
    expect(text).toMatch(/METADATA_HASH match/);
    expect(text).toMatch(/WARNING: ota-property-files says payload\.bin:1234:5678/);

    // Like ota_from_target_files: reserve the property string, then fill in the real offsets
    // (space-padded to the same length so nothing moves).
    const reserved = (s: string) => s.padEnd(60, ' ');
    const good = at('ota-good.zip');
    await writeOtaZip(good, bin, { metadata: { 'ota-property-files': reserved('payload.bin:0:0') } });
    const loc = (await readPayload(good)).location;
    await writeOtaZip(good, bin, {
      metadata: { 'ota-property-files': reserved(`payload.bin:${loc.offset}:${loc.size}`) },
    });
    const again = (await readPayload(good)).location;
    expect(again.offset).toBe(loc.offset);
    expect(again.propertyFilesMismatch).toBeUndefined();
  }, 120_000);

  it('omie extract-ota --cert: extracts when signed by the certificate, exit 1 otherwise', async () => {
    const bin = await signedPayload('cli', rsaKey, 256);
    const ok = await omie(['--json', 'extract-ota', '--cert', rsaCert, bin, at('cli-out')]);
    expect(ok.exitCode).toBe(0);
    const bad = await omie(['extract-ota', '--cert', otherCert, bin, at('cli-bad')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/signature/);
  }, 120_000);
});

describe('fuzz', () => {
  it('metadata.pb: 3000 mutated messages → FormatError or plain values', () => {
    const seed = Buffer.from(
      OtaMetadataMessage.encode(
        OtaMetadataMessage.fromObject({
          type: 'AB',
          propertyFiles: { 'ota-property-files': 'payload.bin:1:2' },
          precondition: { device: ['a'], build: ['b'], timestamp: 5 },
          postcondition: { device: ['a'], partitionState: [{ partitionName: 'system', version: '1' }] },
        }),
      ).finish(),
    );
    expect(parseOtaMetadata(seed).precondition?.timestamp).toBe(5);
    const rnd = prng(17);
    for (let i = 0; i < 3000; i++) {
      try {
        const m = parseOtaMetadata(mutate(seed, rnd));
        expect(typeof m.type).toBe('string');
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
      }
    }
  });

  it('signature check: 200 payloads with mutated signature blobs → valid, invalid or FormatError', async () => {
    const path = await signedPayload('fuzz-sig', rsaKey, 256);
    const raw = readFileSync(path);
    const p0 = await readPayload(path);
    const sigAt = p0.blobsOffset + (p0.manifest.signaturesOffset ?? 0);
    const rnd = prng(23);
    for (let i = 0; i < 200; i++) {
      const m = Buffer.from(raw);
      const tail = mutate(m.subarray(sigAt), rnd);
      const f = at('fuzz-sig-m.bin');
      writeFileSync(f, Buffer.concat([m.subarray(0, sigAt), tail.subarray(0, raw.length - sigAt)]));
      try {
        const r = await checkPayloadSignatures(await readPayload(f), { key: rsaCert });
        expect(['valid', 'invalid', 'absent']).toContain(r.payloadSignature.status);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
      }
    }
  }, 120_000);
});
