/**
 * In-process re-signing (formats/apk/signing/resign.ts) against `apksigner sign` re-signing the
 * same signed APK without v1: byte-identical with RSA keys (stripping, realignment and the v2
 * block all as apksig does them), accepted by `apksigner verify` and `zipalign -c -p`, with the
 * new signer only; inputs needing v1 refused; broken inputs only typed errors.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { generateSigningKey, type SigningKey, signApk } from '../../scripts/apkgen/index.ts';
import { OmieError } from '../../scripts/errors.ts';
import { resignApkFile, stripApkSignatures } from '../../scripts/formats/apk/signing/resign.ts';
import { loadApkSigningKey } from '../../scripts/formats/apk/signing/sign.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { mutate, prng, workDir } from '../helpers.ts';
import { aaptApk } from './aapt-apk.ts';
import { apksignerVerify } from './oracles.ts';
import { ensureRealApks } from './real-apks.ts';

const dir = workDir('apk-resign');
let oldKey: SigningKey;
let newKey: SigningKey;

/** A zip as no signer would lay it out: old signature files first, directories, data descriptors. */
async function awkwardZip(aaptApk: string): Promise<Buffer> {
  const built = await ZipArchive.open(bufferSource(readFileSync(aaptApk), aaptApk));
  const z = new yazl.ZipFile();
  const t = { mtime: new Date(2020, 0, 1) };
  z.addBuffer(Buffer.from('Signature-Version: 1.0\r\n\r\n'), 'META-INF/OLD.SF', { ...t, compress: false });
  z.addEmptyDirectory('META-INF/', t);
  z.addBuffer(Buffer.from('Manifest-Version: 1.0\r\n\r\n'), 'META-INF/MANIFEST.MF', t);
  for (const e of built.entries) z.addBuffer(await built.read(e), e.name, { ...t, compress: e.method !== 0 });
  z.addEmptyDirectory('assets/', t);
  const r = prng(5);
  const blob = Buffer.alloc(70_001);
  for (let i = 0; i < blob.length; i++) blob[i] = (r() * 256) | 0;
  z.addBuffer(blob, 'assets/odd.bin', { ...t, compress: false });
  z.addBuffer(blob.subarray(0, 9_999), 'lib/arm64-v8a/libomie.so', { ...t, compress: false });
  // Size unknown up front: yazl writes a data descriptor after the data.
  z.addReadStream(Readable.from([blob.subarray(5, 4_000)]), 'assets/streamed.bin', { ...t, compress: false });
  z.addReadStream(Readable.from([blob]), 'assets/streamed.z', t);
  z.addBuffer(Buffer.from('x'), 'META-INF/services/org.omie.Thing', { ...t, compress: false });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  await built.close();
  return Buffer.concat(chunks);
}

/** An aapt-built APK (zipaligned) signed v1 + v2 by the old key, as a test-key-signed base APK is. */
async function signedByOldKey(name: string, minSdk: number): Promise<{ unsigned: string; signed: string }> {
  const { unsigned, aligned } = await aaptApk(dir, name, {
    package: `org.omie.resign.${name}`,
    minSdk,
    targetSdk: 34,
  });
  const signed = join(dir, `${name}.old.apk`);
  await signApk(aligned, signed, { key: oldKey, v1: true, v2: true, v3: false });
  return { unsigned, signed };
}

/** resignApkFile refuses `input` with `code`, and leaves nothing at the output path. */
async function expectRefused(input: string, name: string, code: string, opts: { maxBytes?: number } = {}) {
  const out = join(dir, `${name}.ours.apk`);
  rmSync(out, { force: true });
  const e = await resignApkFile(input, out, await loadApkSigningKey(newKey), opts).catch((x) => x);
  expect(e).toBeInstanceOf(OmieError);
  expect(e.code).toBe(code);
  expect(() => readFileSync(out)).toThrow();
}

/** `apksigner sign` of an already signed APK, v2 only (what resignApkFile does). */
function apksignerResign(input: string, out: string, key: SigningKey, minSdk: number): Promise<void> {
  return signApk(input, out, { key, v1: false, v2: true, v3: false, minSdk });
}

describe('in-process APK re-signing', () => {
  const inputs: Record<'plain' | 'awkward', string> = { plain: '', awkward: '' };
  let unalignedSigned = '';

  beforeAll(async () => {
    oldKey = await generateSigningKey(join(dir, 'keys'), 'old', { subject: '/CN=Old Test Key' });
    newKey = await generateSigningKey(join(dir, 'keys'), 'new', { subject: '/CN=Partner Key' });
    const plain = await signedByOldKey('plain', 29);
    inputs.plain = plain.signed;
    // Stale signature files and directories ahead of aligned stored entries: removing them moves
    // every later record, which must be realigned as apksig does it.
    const unsignedAwkward = join(dir, 'awkward.unsigned.apk');
    writeFileSync(unsignedAwkward, await awkwardZip(plain.unsigned));
    inputs.awkward = join(dir, 'awkward.aligned.apk');
    await runTool('zipalign', ['-f', '-p', '4', unsignedAwkward, inputs.awkward]);
    // The same zip not aligned, signed: apksigner keeps misaligned data misaligned.
    unalignedSigned = join(dir, 'awkward.old.apk');
    await signApk(unsignedAwkward, unalignedSigned, {
      key: oldKey,
      v1: false,
      v2: true,
      v3: false,
      minSdk: 29,
    });
  }, 120_000);

  for (const name of ['plain', 'awkward'] as const) {
    it(`${name}: byte-identical to apksigner's re-signing, verified, aligned, new signer only`, async () => {
      const input = inputs[name];
      const ours = join(dir, `${name}.ours.apk`);
      const ref = join(dir, `${name}.ref.apk`);
      await resignApkFile(input, ours, await loadApkSigningKey(newKey));
      await apksignerResign(input, ref, newKey, 29);
      expect(readFileSync(ours).equals(readFileSync(ref))).toBe(true);
      const v = await apksignerVerify(ours);
      expect(v.verifies).toBe(true);
      expect(v.schemes.v2).toBe(true);
      expect(v.signers.length).toBe(1);
      expect(v.signers[0].dn).toMatch(/Partner Key/);
      await runTool('zipalign', ['-c', '-p', '4', ours]);
      // Every entry but the signature files and directories, with the same content.
      const before = await ZipArchive.openFile(input);
      const after = await ZipArchive.openFile(ours);
      const kept = before.entries.filter(
        (e) => !e.isDirectory && !/^META-INF\/[^/]*\.(SF|RSA|DSA|EC|MF)$/i.test(e.name),
      );
      expect(kept.length).toBeLessThan(before.entries.length);
      expect(after.entries.map((e) => e.name).sort()).toEqual(kept.map((e) => e.name).sort());
      for (const e of kept)
        expect((await after.read(after.entry(e.name)!)).equals(await before.read(e)), e.name).toBe(true);
      await before.close();
      await after.close();
    });
  }

  it('refuses (typed) stored data apksigner would leave misaligned, and writes nothing', async () => {
    await expectRefused(unalignedSigned, 'unaligned', 'APK_NOT_ALIGNED');
  });

  it('refuses (typed) an APK larger than it holds in memory, and writes nothing', async () => {
    const size = readFileSync(inputs.plain).length;
    await expectRefused(inputs.plain, 'big', 'APK_RESIGN_TOO_LARGE', { maxBytes: size - 1 });
    const out = join(dir, 'big.ours.apk');
    await resignApkFile(inputs.plain, out, await loadApkSigningKey(newKey), { maxBytes: size });
    expect((await apksignerVerify(out)).verifies).toBe(true);
  });

  it('refuses an APK whose minSdk needs v1 (typed), and writes nothing', async () => {
    await expectRefused((await signedByOldKey('sdk21', 21)).signed, 'sdk21', 'APK_RESIGN_NEEDS_V1');
  });

  it('real APKs (built by AGP and signed by apksigner, from the npm registry): the same bytes as apksigner re-signing them', async () => {
    const apks = await ensureRealApks();
    expect(apks.length).toBeGreaterThanOrEqual(3);
    for (const [i, input] of apks.entries()) {
      const ours = join(dir, `real-${i}.ours.apk`);
      const ref = join(dir, `real-${i}.ref.apk`);
      await resignApkFile(input, ours, await loadApkSigningKey(newKey));
      await apksignerResign(input, ref, newKey, 26);
      expect(readFileSync(ours).equals(readFileSync(ref)), input).toBe(true);
      const v = await apksignerVerify(ours);
      expect(v.verifies, input).toBe(true);
      expect(v.signers.map((x) => x.dn)).toEqual([expect.stringMatching(/Partner Key/)]);
    }
  }, 300_000);

  it('only typed errors for mutated signed APKs', async () => {
    const good = readFileSync(unalignedSigned);
    const r = prng(99);
    let typed = 0;
    for (let i = 0; i < 300; i++) {
      const bad = mutate(good, r);
      try {
        await stripApkSignatures(bad, `mutant-${i}`);
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`mutant ${i}: untyped ${(e as Error).stack}`);
        typed++;
      }
    }
    expect(typed).toBeGreaterThan(0);
  });
});
