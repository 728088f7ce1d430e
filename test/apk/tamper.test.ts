/**
 * Tampering: any changed byte in a signed region must make verification fail with a
 * VerificationError naming the scheme and what mismatched; apksigner must reject the same files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError, OmieError, VerificationError } from '../../scripts/errors.ts';
import { BlockId, findSigningBlock } from '../../scripts/formats/apk/signing/block.ts';
import {
  assertVerified,
  type SignatureReport,
  verifyApkSignatures,
} from '../../scripts/formats/apk/signing/index.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { prng, workDir } from '../helpers.ts';
import { ensureFixtures } from './fixtures.ts';
import { apksignerVerify } from './oracles.ts';

let paths: Record<string, string>;
beforeAll(async () => {
  paths = await ensureFixtures();
}, 240_000);

async function verifyBuf(buf: Buffer, minSdk = 21): Promise<SignatureReport> {
  const z = await ZipArchive.open(bufferSource(buf, 'tampered.apk'));
  return verifyApkSignatures(z, { minSdk });
}

function flip(buf: Buffer, at: number): Buffer {
  const b = Buffer.from(buf);
  b[at]! ^= 0x01;
  return b;
}

async function oracleRejects(buf: Buffer, name: string): Promise<boolean> {
  const f = join(workDir('apk'), `tampered-${name}.apk`);
  writeFileSync(f, buf);
  return !(await apksignerVerify(f)).verifies;
}

describe('tampering', () => {
  it('a byte in a stored entry: v1 names the entry, v2 and v3 report a content digest mismatch', async () => {
    const orig = readFileSync(paths.v123!);
    const z = await ZipArchive.open(bufferSource(orig));
    const e = z.entry('resources.arsc')!;
    expect(e.method).toBe(0);
    const bad = flip(orig, (await z.dataOffset(e)) + 10);
    const r = await verifyBuf(bad);
    expect(r.verified).toBe(false);
    expect(r.schemes.v1.error).toMatchObject({
      code: 'APK_V1_ENTRY_DIGEST_MISMATCH',
      context: { entry: 'resources.arsc' },
    });
    expect(r.schemes.v2.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
    expect(r.schemes.v3.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
    expect(() => assertVerified(r)).toThrow(VerificationError);
    try {
      assertVerified(r);
    } catch (err) {
      expect((err as VerificationError).scheme).toBe('v1');
      expect((err as VerificationError).message).toContain('resources.arsc');
    }
    expect(await oracleRejects(bad, 'entry')).toBe(true);
  }, 30_000);

  it('consultedOnly leaves out a v1 signature the verdict does not consult (minSdk >= 24 with v2/v3), as apksig does', async () => {
    const apk = readFileSync(paths.v123!);
    const verify = async (minSdk: number, consultedOnly?: boolean) =>
      verifyApkSignatures(await ZipArchive.open(bufferSource(apk, 'v123.apk')), { minSdk, consultedOnly });
    const all = await verify(24);
    expect(all.schemes.v1).toMatchObject({ present: true, verified: true, considered: false });
    const consulted = await verify(24, true);
    expect(consulted.schemes.v1).toMatchObject({
      present: true,
      verified: false,
      considered: false,
      error: null,
    });
    expect(consulted.verified).toBe(true);
    expect(consulted.signers).toEqual(all.signers);
    expect(consulted.schemes.v2.verified && consulted.schemes.v3.verified).toBe(true);
    // Below 24 the platform needs v1: it is verified all the same.
    expect((await verify(23, true)).schemes.v1).toMatchObject({ verified: true, considered: true });
    // A v1 signature the verdict does not consult is still one where there is nothing newer.
    const v1only = readFileSync(paths['v1-only']!);
    const r = await verifyApkSignatures(await ZipArchive.open(bufferSource(v1only, 'v1-only.apk')), {
      minSdk: 24,
      consultedOnly: true,
    });
    expect(r.schemes.v1).toMatchObject({ verified: true, considered: true });
  });

  it('a byte in a deflated entry is rejected by v1 (corrupt or digest mismatch) and v2', async () => {
    const orig = readFileSync(paths.v123!);
    const z = await ZipArchive.open(bufferSource(orig));
    const e = z.entries.find((x) => x.method === 8 && !x.name.startsWith('META-INF/'))!;
    const bad = flip(orig, (await z.dataOffset(e)) + Math.floor(e.compressedSize / 2));
    const r = await verifyBuf(bad);
    expect(r.verified).toBe(false);
    expect(['APK_V1_ENTRY_DIGEST_MISMATCH', 'APK_V1_ENTRY_CORRUPT']).toContain(r.schemes.v1.error?.code);
    expect(r.schemes.v2.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
  });

  it('a byte in the central directory: v2/v3 fail (v1 does not cover it), apksigner rejects', async () => {
    const orig = readFileSync(paths.v123!);
    const z = await ZipArchive.open(bufferSource(orig));
    const bad = flip(orig, z.entries[0]!.cdRecordOffset + 12); // last-modified time
    const r = await verifyBuf(bad);
    expect(r.verified).toBe(false);
    expect(r.schemes.v1.verified).toBe(true);
    expect(r.schemes.v2.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
    expect(r.schemes.v2.error?.context).toMatchObject({ scheme: 'v2', algorithm: 'CHUNKED_SHA256' });
    expect(r.schemes.v3.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
    expect(await oracleRejects(bad, 'cd')).toBe(true);
  }, 30_000);

  it('a byte in the EOCD record: v2 content digest mismatch', async () => {
    const orig = readFileSync(paths['v2-only']!);
    const z = await ZipArchive.open(bufferSource(orig));
    const bad = flip(orig, z.layout.eocdOffset + 8); // entries on this disk (not used for reading)
    const r = await verifyBuf(bad, 24);
    expect(r.schemes.v2.error?.code).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
    expect(r.verified).toBe(false);
  });

  it("a byte in the v2 / v3 signed data in the APK Signing Block: that scheme's signature fails", async () => {
    const orig = readFileSync(paths.v123!);
    const z = await ZipArchive.open(bufferSource(orig));
    const block = (await findSigningBlock(z))!;
    for (const [id, scheme] of [
      [BlockId.V2, 'v2'],
      [BlockId.V3, 'v3'],
    ] as const) {
      const pair = block.pairs.find((p) => p.id === id)!;
      // value: u32 signers length, u32 signer length, u32 signed data length, signed data…
      const bad = flip(orig, pair.offset + 12 + 20);
      const r = await verifyBuf(bad);
      expect(r.verified).toBe(false);
      expect(r.schemes[scheme].error?.code).toBe('APK_SIG_SIGNATURE_MISMATCH');
      expect(r.schemes[scheme].error?.message).toMatch(
        new RegExp(
          `^${scheme}: signer #1: RSA_PKCS1_V1_5_WITH_SHA256 signature over signed data does not verify`,
        ),
      );
      const other = scheme === 'v2' ? 'v3' : 'v2';
      expect(r.schemes[other].verified).toBe(true);
      expect(await oracleRejects(bad, scheme)).toBe(true);
    }
  }, 30_000);

  it('a byte in the v3 rotation lineage: the lineage signature fails', async () => {
    const orig = readFileSync(paths.rotation!);
    const z = await ZipArchive.open(bufferSource(orig));
    const block = (await findSigningBlock(z))!;
    const pair = block.pairs.find((p) => p.id === BlockId.V3)!;
    // The lineage attribute is the last part of the signed data; its second node's certificate
    // is signed by the first key. Find the second certificate's DER inside the pair and flip a byte in it.
    const r0 = await verifyBuf(orig);
    expect(r0.lineage).toHaveLength(2);
    const attrId = Buffer.from([0x8c, 0x6f, 0xa0, 0x3b]);
    const at = pair.value.indexOf(attrId);
    expect(at).toBeGreaterThan(0);
    // attribute: id, u32 version, u32 node1 len, node1…, u32 node2 len, u32 signed data len, u32 cert len, cert…
    const node1Len = pair.value.readUInt32LE(at + 8);
    const node2 = at + 12 + node1Len;
    const bad = flip(orig, pair.offset + node2 + 4 + 4 + 4 + 40);
    const r = await verifyBuf(bad);
    expect(r.schemes.v3.verified).toBe(false);
    // Changing signed data changes both the v3 signer signature and the lineage node; the signer's
    // signature is checked first.
    expect(r.schemes.v3.error?.code).toMatch(/^APK_SIG_(SIGNATURE_MISMATCH|LINEAGE_SIGNATURE_MISMATCH)$/);
  });

  it('any single flipped byte in a signed region of a v2-only APK is rejected (200 random positions)', async () => {
    const orig = readFileSync(paths['v2-only']!);
    const z = await ZipArchive.open(bufferSource(orig));
    const block = (await findSigningBlock(z))!;
    const rnd = prng(4242);
    const regions = [
      [0, block.offset],
      [z.layout.centralDirectoryOffset, orig.length],
    ] as const;
    const total = regions.reduce((n, [a, b]) => n + (b - a), 0);
    for (let i = 0; i < 200; i++) {
      let k = Math.floor(rnd() * total);
      let at = 0;
      for (const [a, b] of regions) {
        if (k < b - a) {
          at = a + k;
          break;
        }
        k -= b - a;
      }
      const bad = flip(orig, at);
      try {
        const r = await verifyBuf(bad, 24);
        expect(r.verified, `flip at ${at}`).toBe(false);
        expect(r.schemes.v2.verified, `flip at ${at}`).toBe(false);
        expect(r.schemes.v2.error?.context.scheme ?? 'v2').toBe('v2');
      } catch (e) {
        // The zip itself no longer parses: rejected with a typed error, which is also fine.
        expect(e, `flip at ${at}`).toBeInstanceOf(FormatError);
      }
    }
  }, 60_000);

  it('errors are typed OmieErrors with the scheme in their context', async () => {
    const orig = readFileSync(paths['v2-only']!);
    const z = await ZipArchive.open(bufferSource(orig));
    const r = await verifyBuf(flip(orig, z.layout.centralDirectoryOffset + 20), 24);
    expect(() => assertVerified(r, 'x.apk')).toThrow(OmieError);
    try {
      assertVerified(r, 'x.apk');
    } catch (e) {
      expect(e).toBeInstanceOf(VerificationError);
      expect((e as VerificationError).scheme).toBe('v2');
      expect((e as VerificationError).exitCode).toBe(1);
    }
  });
});
