/**
 * Signature variants apksigner can produce beyond the plain fixtures — verity signatures next to
 * the classic ones, several signers — verified by us and by `apksigner verify --print-certs -v`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { APK_SIG_BLOCK_MAGIC, BlockId, findSigningBlock } from '../../scripts/formats/apk/signing/block.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { onceInDir, workDir } from '../helpers.ts';
import { ensureFixtures } from './fixtures.ts';
import { apksignerVerify, expectSameAsApksigner } from './oracles.ts';

const DIR = join(workDir('apk'), 'schemes');
let keys: Record<string, SigningKey>;
const out = (n: string) => join(DIR, `${n}.apk`);

interface Variant {
  name: string;
  signers: string[];
  flags: string[];
  /** Sign the "big" input (a 3 MiB stored asset: several verity tree levels, several 1 MiB chunks). */
  big?: boolean;
}

const VARIANTS: Variant[] = [
  {
    name: 'verity-rsa',
    signers: ['rsa'],
    flags: ['--verity-enabled', 'true', '--v3-signing-enabled', 'true'],
  },
  { name: 'verity-ec', signers: ['ec'], flags: ['--verity-enabled', 'true', '--v3-signing-enabled', 'true'] },
  {
    name: 'verity-big',
    signers: ['rsa'],
    flags: ['--verity-enabled', 'true', '--v3-signing-enabled', 'true'],
    big: true,
  },
  { name: 'two-signers', signers: ['rsa', 'ec'], flags: ['--v3-signing-enabled', 'false'] },
];

beforeAll(async () => {
  const unsigned = (await ensureFixtures()).unsigned!;
  await onceInDir(DIR, ['test/apk/schemes.test.ts', 'scripts/apkgen', 'scripts/formats/apk'], async () => {
    const k = join(DIR, 'keys');
    const made = {
      rsa: await generateSigningKey(k, 'rsa', { subject: '/C=US/O=Omie Kit Tests/CN=Schemes RSA' }),
      ec: await generateSigningKey(k, 'ec', {
        subject: '/C=US/O=Omie Kit Tests/CN=Schemes EC',
        algorithm: 'ec',
      }),
    } as Record<string, SigningKey>;
    // A 3 MiB incompressible stored entry, added with Python's zipfile (deterministic bytes).
    const big = join(DIR, 'big-unsigned.apk');
    await runTool('python3', [
      '-c',
      'import shutil,sys,zipfile,random;shutil.copy(sys.argv[1],sys.argv[2]);r=random.Random(7);' +
        'z=zipfile.ZipFile(sys.argv[2],"a");z.writestr(zipfile.ZipInfo("assets/big.bin",(2008,1,1,0,0,0)),' +
        'bytes(r.getrandbits(8) for _ in range(3<<20)));z.close()',
      unsigned,
      big,
    ]);
    for (const v of VARIANTS) {
      const signerArgs = v.signers.flatMap((s, i) => [
        ...(i ? ['--next-signer'] : []),
        '--key',
        made[s]!.keyPk8,
        '--cert',
        made[s]!.certPem,
      ]);
      await runTool('apksigner', [
        'sign',
        ...signerArgs,
        ...v.flags,
        '--out',
        out(v.name),
        v.big ? big : unsigned,
      ]);
    }
  });
  const k = join(DIR, 'keys');
  keys = {
    rsa: await generateSigningKey(k, 'rsa'),
    ec: await generateSigningKey(k, 'ec', { algorithm: 'ec' }),
  };
  expect(existsSync(keys.rsa!.certPem)).toBe(true);
}, 300_000);

describe('signature variants vs apksigner verify', () => {
  for (const v of VARIANTS)
    it(`${v.name}: verdict, per-scheme results and signers`, async () => {
      const want = await expectSameAsApksigner(out(v.name));
      expect(want.verifies).toBe(true);
    }, 60_000);

  it('verity: v2 and v3 carry a classic and a VERITY_* signature, and both are checked', async () => {
    const rsa = await inspectApk(out('verity-rsa'));
    expect(rsa.signatures.schemes.v2.signers[0]!.algorithms).toEqual([
      'RSA_PKCS1_V1_5_WITH_SHA256',
      'VERITY_RSA_PKCS1_V1_5_WITH_SHA256',
    ]);
    expect(rsa.signatures.schemes.v3.signers[0]!.algorithms).toContain('VERITY_RSA_PKCS1_V1_5_WITH_SHA256');
    const ec = await inspectApk(out('verity-ec'));
    expect(ec.signatures.schemes.v2.signers[0]!.algorithms).toContain('VERITY_ECDSA_WITH_SHA256');
    expect(ec.signatures.schemes.v2.verified).toBe(true);
  }, 60_000);

  it('v1: a signature block without its .SF is skipped with a warning, as apksigner does', async () => {
    const { readFileSync } = await import('node:fs');
    const src = (await ensureFixtures())['v1-only']!;
    const extra = join(DIR, 'v1-orphan-block.apk');
    await runTool('python3', [
      '-c',
      'import shutil,sys,zipfile;shutil.copy(sys.argv[1],sys.argv[2]);z=zipfile.ZipFile(sys.argv[2],"a");' +
        'z.writestr("META-INF/ORPHAN.RSA",open(sys.argv[3],"rb").read());z.close()',
      src,
      extra,
      join(DIR, 'keys', 'rsa.x509.pem'),
    ]);
    expect(readFileSync(extra).includes(Buffer.from('META-INF/ORPHAN.RSA'))).toBe(true);
    const want = await apksignerVerify(extra);
    const r = await inspectApk(extra);
    expect(want.verifies).toBe(true);
    expect(r.signatures.verified).toBe(true);
    expect(r.signatures.schemes.v1.signers.map((s) => s.certificates[0]!.sha256)).toEqual(
      want.signers.map((s) => s.sha256),
    );
  }, 60_000);

  it('verity: a changed byte in the stored data fails v2 and v3 with a content digest mismatch', async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    const buf = readFileSync(out('verity-big'));
    buf[2 << 20] = buf[2 << 20]! ^ 0xff;
    const bad = join(DIR, 'verity-big-tampered.apk');
    writeFileSync(bad, buf);
    const r = await inspectApk(bad);
    expect(r.signatures.verified).toBe(false);
    expect((await apksignerVerify(bad)).verifies).toBe(false);
    for (const s of ['v2', 'v3'] as const)
      expect(r.signatures.schemes[s].error?.code, s).toBe('APK_SIG_CONTENT_DIGEST_MISMATCH');
  }, 60_000);

  it('extra pairs in the APK Signing Block: unknown ids are ignored, a v3.1 block is verified', async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    const src = readFileSync(out('verity-rsa'));
    const z = await ZipArchive.open(bufferSource(src));
    const block = (await findSigningBlock(z))!;
    const v3 = block.pairs.find((p) => p.id === BlockId.V3)!;
    // New block = old pairs + unknown id + a v3.1 copy of the v3 signer. Signed regions are the
    // bytes before the block, the central directory and the EOCD with its CD offset pointing at
    // the block, so every existing signature stays valid.
    const pair = (id: number, value: Buffer) => {
      const h = Buffer.alloc(12);
      h.writeBigUInt64LE(BigInt(value.length + 4));
      h.writeUInt32LE(id, 8);
      return Buffer.concat([h, value]);
    };
    const known = block.pairs.filter((p) => p.id !== BlockId.VERITY_PADDING).map((p) => pair(p.id, p.value));
    const build = (padded: boolean) => {
      let pairs = Buffer.concat([
        ...known,
        pair(0x12345678, Buffer.from('not a signature')),
        pair(BlockId.V31, v3.value),
      ]);
      if (padded) {
        // Verity signatures need a block of whole pages: apksigner's padding pair ("Brew").
        let pad = 4096 - ((pairs.length + 32) % 4096);
        if (pad < 12) pad += 4096;
        pairs = Buffer.concat([pairs, pair(BlockId.VERITY_PADDING, Buffer.alloc(pad - 12))]);
      }
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(pairs.length + 24));
      const newBlock = Buffer.concat([size, pairs, size, APK_SIG_BLOCK_MAGIC]);
      const cd = src.subarray(z.layout.centralDirectoryOffset, z.layout.eocdOffset);
      const eocd = Buffer.from(src.subarray(z.layout.eocdOffset));
      eocd.writeUInt32LE(block.offset + newBlock.length, 16);
      return { apk: Buffer.concat([src.subarray(0, block.offset), newBlock, cd, eocd]) };
    };
    // Unpadded: apksigner refuses the verity digests, and so do we (on v2 and v3 alike).
    const unpadded = join(DIR, 'extra-pairs-unpadded.apk');
    writeFileSync(unpadded, build(false).apk);
    expect((await apksignerVerify(unpadded)).verifies).toBe(false);
    const u = await inspectApk(unpadded);
    expect(u.signatures.verified).toBe(false);
    expect(u.signatures.schemes.v2.error?.code).toBe('APK_SIG_VERITY_ALIGNMENT');
    const { apk: padded } = build(true);
    const file = join(DIR, 'extra-pairs.apk');
    writeFileSync(file, padded);
    const want = await apksignerVerify(file);
    const r = await inspectApk(file);
    expect(want.verifies).toBe(true);
    expect(r.signatures.verified).toBe(true);
    expect(r.signatures.otherBlockIds).toContain('0x12345678');
    expect(r.signatures.schemes['v3.1']).toMatchObject({ present: true, verified: true });
    expect(r.signatures.schemes['v3.1'].signers[0]!.certificates[0]!.sha256).toBe(want.signers[0]!.sha256);
    // A v3.1 block whose signer was altered is reported on v3.1 alone.
    const bad = readFileSync(file);
    const v31 = (await findSigningBlock(await ZipArchive.open(bufferSource(bad))))!.pairs.find(
      (p) => p.id === BlockId.V31,
    )!;
    expect(v31.value.equals(v3.value)).toBe(true);
    // Inside the first signer's signed data (after the u32 lengths of signers, signer, signed data).
    bad[v31.offset + 64] = bad[v31.offset + 64]! ^ 1;
    const b = await inspectApk(writeAndReturn(join(DIR, 'extra-pairs-bad.apk'), bad, writeFileSync));
    expect(b.signatures.schemes['v3.1'].verified).toBe(false);
    expect(b.signatures.schemes.v3.verified).toBe(true);
  }, 60_000);
});

function writeAndReturn(file: string, buf: Buffer, write: (f: string, b: Buffer) => void): string {
  write(file, buf);
  return file;
}
