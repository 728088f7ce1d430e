/**
 * The TypeScript v2/v3 signer against apksigner: RSA output byte-identical to `apksigner sign`
 * (PKCS#1 v1.5 is deterministic), ECDSA output with apksigner's layout; both verified by
 * apksigner and by our verifier; any flipped byte in a signed region rejected by both.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey, signApk } from '../../scripts/apkgen/index.ts';
import { buildOverlay } from '../../scripts/build/overlays.ts';
import { InputError, OmieError } from '../../scripts/errors.ts';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { BlockId, findSigningBlock } from '../../scripts/formats/apk/signing/block.ts';
import { verifyApkSignatures } from '../../scripts/formats/apk/signing/index.ts';
import {
  type ApkSigningKey,
  loadApkSigningKey,
  signApkBuffer,
  signApkFile,
} from '../../scripts/formats/apk/signing/sign.ts';
import { parseSigners } from '../../scripts/formats/apk/signing/v2.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { FRAMEWORK_RES } from '../../scripts/host/tools.ts';
import type { ProductYaml, ResolvedOverlay } from '../../scripts/model/index.ts';
import { workDir } from '../helpers.ts';
import { aaptApk } from './aapt-apk.ts';
import { apksignerVerify } from './oracles.ts';

const dir = workDir('apk-sign');
const keys: Record<'rsa' | 'rsa4096' | 'ec', SigningKey> = {} as never;
const signing: Record<string, ApkSigningKey> = {};
/** Unsigned, zipaligned inputs: a small overlay-like APK and one with a 2.5 MiB stored asset (3 digest chunks). */
const inputs: Record<'small' | 'big', string> = { small: '', big: '' };
let unaligned = '';

/** apksigner's own output for the same input and key. */
async function apksignerSigned(input: string, key: SigningKey, v3: boolean, out: string): Promise<Buffer> {
  await signApk(input, out, { key, v1: false, v2: true, v3, minSdk: 29 });
  return readFileSync(out);
}

async function ourVerdict(buf: Buffer) {
  try {
    const z = await ZipArchive.open(bufferSource(buf, 'signed.apk'));
    return await verifyApkSignatures(z, { minSdk: 29 });
  } catch (e) {
    // A tampered EOCD/CD may not even parse: that is a rejection too.
    if (e instanceof OmieError) return null;
    throw e;
  }
}

const certSha256 = (k: SigningKey) =>
  createHash('sha256')
    .update(Buffer.from(readFileSync(k.certPem, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64'))
    .digest('hex');

beforeAll(async () => {
  keys.rsa = await generateSigningKey(join(dir, 'keys'), 'rsa');
  keys.rsa4096 = await generateSigningKey(join(dir, 'keys'), 'rsa4096', { bits: 4096 });
  keys.ec = await generateSigningKey(join(dir, 'keys'), 'ec', { algorithm: 'ec' });
  for (const [n, k] of Object.entries(keys)) signing[n] = await loadApkSigningKey(k);
  const small = await aaptApk(dir, 'small', { package: 'org.omie.sign.small', minSdk: 29 });
  const big = await aaptApk(dir, 'big', { package: 'org.omie.sign.big', minSdk: 29, bigAsset: true });
  inputs.small = small.aligned;
  inputs.big = big.aligned;
  unaligned = big.unsigned;
}, 120_000);

describe('RSA: byte-identical to apksigner', () => {
  for (const [input, key, v3] of [
    ['small', 'rsa', false],
    ['small', 'rsa', true],
    ['big', 'rsa', false],
    ['big', 'rsa', true],
    ['small', 'rsa4096', false],
    ['big', 'rsa4096', true],
  ] as const)
    it(`${input} input, ${key}, v2${v3 ? '+v3' : ''}`, async () => {
      const tag = `${input}-${key}-${v3 ? 'v23' : 'v2'}`;
      const want = await apksignerSigned(inputs[input], keys[key], v3, join(dir, `apksigner-${tag}.apk`));
      const ours = join(dir, `ours-${tag}.apk`);
      await signApkFile(inputs[input], ours, signing[key]!, { minSdk: 29, v3 });
      const got = readFileSync(ours);
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
      // The in-memory variant writes the same bytes.
      expect(
        (await signApkBuffer(readFileSync(inputs[input]), signing[key]!, { minSdk: 29, v3 })).equals(want),
      ).toBe(true);
      const a = await apksignerVerify(ours);
      expect(a.verifies).toBe(true);
      // apksigner skips v2 for an SDK 29 APK that has v3 (and reports it as not verified).
      expect(a.schemes).toEqual({ v1: false, v2: !v3, v3 });
      expect(a.signers.map((s) => s.sha256)).toEqual([certSha256(keys[key])]);
    });
});

describe('ECDSA: apksigner layout, verified by both', () => {
  for (const v3 of [false, true])
    it(`v2${v3 ? '+v3' : ''}`, async () => {
      const tag = `ec-${v3 ? 'v23' : 'v2'}`;
      const ours = join(dir, `ours-${tag}.apk`);
      await signApkFile(inputs.big, ours, signing.ec!, { minSdk: 29, v3 });
      const want = await apksignerSigned(inputs.big, keys.ec, v3, join(dir, `apksigner-${tag}.apk`));
      const got = readFileSync(ours);
      const a = await apksignerVerify(ours);
      expect(a.verifies).toBe(true);
      expect(a.schemes).toEqual({ v1: false, v2: !v3, v3 });
      expect(a.signers.map((s) => s.sha256)).toEqual([certSha256(keys.ec)]);

      const shape = async (buf: Buffer) => {
        const z = await ZipArchive.open(bufferSource(buf));
        const b = (await findSigningBlock(z))!;
        return {
          blockOffset: b.offset,
          blockSize: b.size,
          cd: [z.layout.centralDirectoryOffset, z.layout.centralDirectorySize],
          pairs: b.pairs.map((p) => p.id),
          signers: b.pairs
            .filter((p) => p.id === BlockId.V2 || p.id === BlockId.V3)
            .map((p) =>
              parseSigners(p.value, p.id === BlockId.V2 ? 'v2' : 'v3').map((s) => ({
                algs: s.signatures.map((x) => x.alg),
                sdk: [s.minSdk, s.maxSdk, s.sdMinSdk, s.sdMaxSdk],
                attrs: s.attributes.map((x) => [x.id, x.value.toString('hex')]),
                certs: s.certs.map((c) => c.toString('hex')),
                publicKey: s.publicKey.toString('hex'),
                digests: s.digests.map((d) => d.digest.toString('hex')),
              })),
            ),
          // Everything outside the signing block (entries, padding, CD, EOCD) is the same bytes.
          outside: Buffer.concat([buf.subarray(0, b.offset), buf.subarray(b.offset + b.size)]).toString(
            'hex',
          ),
        };
      };
      expect(await shape(got)).toEqual(await shape(want));
      const r = (await ourVerdict(got))!;
      expect(r.problems).toEqual([]);
      expect(r.verified).toBe(true);
      expect(r.schemes.v2.verified).toBe(true);
      expect(r.schemes.v3.present).toBe(v3);
      expect(r.schemes.v2.signers[0]!.algorithm).toBe('ECDSA_WITH_SHA256');
      expect(r.signers.map((s) => s.sha256)).toEqual([certSha256(keys.ec)]);
    });
});

describe('tampering after signing', () => {
  it('a flipped byte in each signed region fails apksigner and our verifier', async () => {
    for (const [key, v3] of [
      ['rsa', true],
      ['ec', false],
    ] as const) {
      const signed = await signApkBuffer(readFileSync(inputs.big), signing[key]!, { minSdk: 29, v3 });
      const z = await ZipArchive.open(bufferSource(signed));
      const block = (await findSigningBlock(z))!;
      // The block an SDK 29 verifier checks: v3 when present (then v2 is not consulted), else v2.
      const scheme = v3 ? 'v3' : 'v2';
      const pair = block.pairs.find((p) => p.id === (v3 ? BlockId.V3 : BlockId.V2))!;
      const blob = z.entry('assets/blob.bin')!;
      const l = z.layout;
      const regions: Record<string, number> = {
        'first local header': 8,
        'stored entry, second 1 MiB chunk': (await z.dataOffset(blob)) + 1024 * 1024 + 5,
        'zero padding before the block': block.offset - 1,
        // signers, signer, signed data, digests, digest: lengths; then alg id, digest length.
        [`${scheme} signed data (content digest)`]: pair.offset + 7 * 4 + 3,
        [`${scheme} signature`]:
          pair.offset + pair.value.indexOf(parseSigners(pair.value, scheme)[0]!.signatures[0]!.sig) + 10,
        'central directory (external attributes)': l.centralDirectoryOffset + 38,
        'EOCD (central directory size)': l.eocdOffset + 12,
      };
      for (const [what, at] of Object.entries(regions)) {
        const bad = Buffer.from(signed);
        bad[at]! ^= 0x01;
        const f = join(dir, `tampered-${key}.apk`);
        writeFileSync(f, bad);
        expect({ what, key, apksigner: (await apksignerVerify(f)).verifies }).toEqual({
          what,
          key,
          apksigner: false,
        });
        const r = await ourVerdict(bad);
        expect({ what, key, ours: r?.verified ?? false }).toEqual({ what, key, ours: false });
      }
    }
  }, 120_000);
});

describe('refusals', () => {
  it('minSdk below 24 (would need v1), an unaligned input, an already signed input, a key that does not match its certificate', async () => {
    const code = async (p: Promise<unknown>) => {
      const e = await p.then(
        () => null,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(InputError);
      return (e as InputError).code;
    };
    const small = readFileSync(inputs.small);
    expect(await code(signApkBuffer(small, signing.rsa!, { minSdk: 23 }))).toBe('SIGN_MIN_SDK_UNSUPPORTED');
    expect(await code(signApkBuffer(readFileSync(unaligned), signing.rsa!, { minSdk: 29 }))).toBe(
      'APK_NOT_ALIGNED',
    );
    const signed = await signApkBuffer(small, signing.rsa!, { minSdk: 29 });
    expect(await code(signApkBuffer(signed, signing.rsa!, { minSdk: 29 }))).toBe('APK_ALREADY_SIGNED');
    expect(
      await code(
        signApkBuffer(
          small,
          { privateKey: signing.ec!.privateKey, certificate: signing.rsa!.certificate },
          {
            minSdk: 29,
          },
        ),
      ),
    ).toBe('SIGNING_KEY_CERT_MISMATCH');
    expect(
      await code(
        signApkBuffer(
          small,
          { privateKey: 'not a key', certificate: signing.rsa!.certificate },
          { minSdk: 29 },
        ),
      ),
    ).toBe('SIGNING_KEY_INVALID');
  });
});

describe('overlays built by the build', () => {
  it('buildOverlay signs with v2 in-process: apksigner and inspectApk verify it, signer = the product key', async () => {
    const o = {
      name: 'omie-test',
      package: 'org.omie.overlay.test',
      target: 'android',
      partition: 'product',
      priority: 1,
      values: [
        { type: 'string', name: 'config_ntpServer', value: 'ntp.example.org' },
        { type: 'bool', name: 'config_enableNetworkLocationOverlay', value: false },
      ],
      file: join(dir, 'overlay.yaml'),
      dir,
    } as unknown as ResolvedOverlay;
    for (const key of ['rsa', 'ec'] as const) {
      const out = join(dir, `overlay-${key}`, 'omie-test.apk');
      await buildOverlay(o, {} as ProductYaml, FRAMEWORK_RES, keys[key], out);
      const a = await apksignerVerify(out);
      expect(a.verifies).toBe(true);
      expect(a.schemes).toEqual({ v1: false, v2: true, v3: false });
      expect(a.signers.map((s) => s.sha256)).toEqual([certSha256(keys[key])]);
      const r = await inspectApk(out);
      expect(r.signatures.verified).toBe(true);
      expect(r.signatures.schemes.v2.verified).toBe(true);
      expect(r.signatures.signers.map((s) => s.sha256)).toEqual([certSha256(keys[key])]);
      expect(r.identity.package).toBe('org.omie.overlay.test');
    }
  }, 60_000);
});
