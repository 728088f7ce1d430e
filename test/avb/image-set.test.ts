/**
 * verifyImageSet: a whole image set (vbmeta, a chained vbmeta_system, a hash-footered boot, a
 * hashtree-footered system) verified the way libavb's avb_slot_verify does, with avbtool's
 * verify_image and calculate_vbmeta_digest as oracles for what is valid and for the digest.
 */
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addHashFooter,
  addHashtreeFooter,
  makeVbmetaImage,
  readAvbPublicKey,
  verifyImageSet,
  verifyPartitions,
} from '../../scripts/formats/avb/index.ts';
import { flipByte } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { DIR, makeImage, testKey } from './fixtures.ts';

const D = join(DIR, 'image-set');
let key: string;
let chainKey: string;
let otherKey: string;

async function avbtool(args: string[]) {
  return execa('python3', [AVBTOOL.path, ...args], { reject: false });
}

/** A signed set in `dir`: boot (hash), system (hashtree, chained through vbmeta_system). */
async function makeSet(
  dir: string,
  o: {
    chainSigner?: string;
    rollbackIndex?: number;
    flags?: number;
    chainFlags?: number;
    unsigned?: boolean;
  } = {},
) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await makeImage(join(dir, 'boot.img'), 192 * 1024, 1);
  await addHashFooter(join(dir, 'boot.img'), {
    partitionName: 'boot',
    partitionSize: 512 * 1024,
    salt: Buffer.from('b0'.repeat(32), 'hex'),
  });
  await makeImage(join(dir, 'system.img'), 1024 * 1024, 2);
  await addHashtreeFooter(join(dir, 'system.img'), {
    partitionName: 'system',
    hashAlgorithm: 'sha256',
    salt: Buffer.from('5a'.repeat(32), 'hex'),
  });
  await makeVbmetaImage(join(dir, 'vbmeta_system.img'), {
    algorithm: 'SHA256_RSA2048',
    key: o.chainSigner ?? chainKey,
    rollbackIndexLocation: 1,
    flags: o.chainFlags,
    includeDescriptorsFromImages: [join(dir, 'system.img')],
  });
  await makeVbmetaImage(join(dir, 'vbmeta.img'), {
    ...(o.unsigned ? {} : { algorithm: 'SHA256_RSA4096' as const, key }),
    rollbackIndex: o.rollbackIndex ?? 3,
    flags: o.flags,
    includeDescriptorsFromImages: [join(dir, 'boot.img')],
    chainPartitions: [{ partitionName: 'vbmeta_system', rollbackIndexLocation: 1, publicKeyPath: chainKey }],
  });
  return dir;
}

const inDir = (dir: string) => (name: string) => join(dir, `${name}.img`);

beforeAll(async () => {
  [key, chainKey, otherKey] = await Promise.all([
    testKey(4096),
    testKey(2048),
    testKey(2048, 'key2048-other'),
  ]);
});

describe('verifyImageSet', () => {
  it('verifies a good set: every struct, hash and hashtree; the digest is avbtool calculate_vbmeta_digest', async () => {
    const dir = await makeSet(join(D, 'good'));
    const r = await verifyImageSet({ partition: inDir(dir) });
    expect(r.result).toBe('OK');
    expect(r.problems).toEqual([]);
    expect(r.vbmetas.map((v) => [v.partition, v.rollbackIndexLocation, v.rollbackIndex])).toEqual([
      ['vbmeta', 0, 3n],
      ['vbmeta_system', 1, 0n],
    ]);
    expect(r.descriptors.map((d) => `${d.vbmeta}:${d.kind}:${d.partition}:${d.result}`).sort()).toEqual([
      'vbmeta:hash:boot:verified',
      'vbmeta_system:hashtree:system:verified',
    ]);
    expect(r.rollbackIndexes).toEqual(
      new Map([
        [0, 3n],
        [1, 0n],
      ]),
    );
    expect(r.publicKey?.equals(readAvbPublicKey(key))).toBe(true);
    expect(r.vbmetaDigest).toMatch(/^[0-9a-f]{64}$/);
    if (AVBTOOL.present) {
      const digest = await avbtool(['calculate_vbmeta_digest', '--image', join(dir, 'vbmeta.img')]);
      expect(digest.exitCode, digest.stderr).toBe(0);
      expect(r.vbmetaDigest).toBe(String(digest.stdout).trim());
      const v = await avbtool([
        'verify_image',
        '--image',
        join(dir, 'vbmeta.img'),
        '--follow_chain_partitions',
      ]);
      expect(v.exitCode, v.stderr).toBe(0);
    }
  });

  it.skipIf(!AVBTOOL.present)(
    'one flipped data byte in system.img: ERROR_VERIFICATION, as avbtool verify_image refuses it',
    async () => {
      const dir = await makeSet(join(D, 'tampered-system'));
      await flipByte(join(dir, 'system.img'), 5000);
      const r = await verifyImageSet({ partition: inDir(dir) });
      expect(r.result).toBe('ERROR_VERIFICATION');
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0].code).toBe('AVB_HASHTREE_ROOT_MISMATCH');
      expect(r.problems[0].partition).toBe('system');
      // The bad block is named, as the conformance check names it (one routine for both).
      expect(r.problems[0]).toMatchObject({ area: 'data', firstBadBlock: 1 });
      const v = await avbtool([
        'verify_image',
        '--image',
        join(dir, 'vbmeta.img'),
        '--follow_chain_partitions',
      ]);
      expect(v.exitCode).not.toBe(0);
    },
  );

  it('a flipped byte in boot.img is a hash descriptor mismatch; the digest still covers the vbmeta structs', async () => {
    const dir = await makeSet(join(D, 'tampered-boot'));
    const good = await verifyImageSet({ partition: inDir(dir) });
    await flipByte(join(dir, 'boot.img'), 100);
    const r = await verifyImageSet({ partition: inDir(dir), allowVerificationError: true });
    expect(r.result).toBe('ERROR_VERIFICATION');
    expect(r.problems.map((p) => p.code)).toEqual(['AVB_HASH_DESCRIPTOR_MISMATCH']);
    // Allowed errors do not stop the walk: the chained struct and system were still verified.
    expect(r.descriptors.map((d) => d.partition)).toContain('system');
    expect(r.vbmetaDigest).toBe(good.vbmetaDigest);
  });

  it('an untrusted key, a rolled-back index and a wrongly signed chained struct are refused', async () => {
    const dir = await makeSet(join(D, 'keys'));
    const trusted = readAvbPublicKey(key);
    const ok = await verifyImageSet({ partition: inDir(dir), trustedKey: (pk) => pk.equals(trusted) });
    expect(ok.result).toBe('OK');
    expect(ok.keyTrusted).toBe(true);
    const other = readAvbPublicKey(otherKey);
    const rejected = await verifyImageSet({ partition: inDir(dir), trustedKey: (pk) => pk.equals(other) });
    expect(rejected.result).toBe('ERROR_PUBLIC_KEY_REJECTED');
    expect(rejected.keyTrusted).toBe(false);
    expect(rejected.descriptors).toEqual([]); // a locked bootloader stops at the key
    const rolled = await verifyImageSet({
      partition: inDir(dir),
      storedRollbackIndex: (loc) => (loc === 0 ? 4n : 0n),
    });
    expect(rolled.result).toBe('ERROR_ROLLBACK_INDEX');
    expect(rolled.problems[0].context).toMatchObject({ location: 0, found: '3' });

    const bad = await makeSet(join(D, 'chain-other'), { chainSigner: otherKey });
    const r = await verifyImageSet({ partition: inDir(bad) });
    expect(r.result).toBe('ERROR_PUBLIC_KEY_REJECTED');
    expect(r.problems[0].code).toBe('AVB_CHAIN_KEY_MISMATCH');
  });

  it('unreadable or missing structs: ERROR_INVALID_METADATA / ERROR_IO, even when errors are allowed', async () => {
    const dir = await makeSet(join(D, 'broken'));
    const blank = join(D, 'blank');
    await mkdir(blank, { recursive: true });
    await writeFile(join(blank, 'vbmeta.img'), Buffer.alloc(65536));
    const r = await verifyImageSet({ partition: inDir(blank), allowVerificationError: true });
    expect(r.result).toBe('ERROR_INVALID_METADATA');
    expect(r.vbmetaDigest).toBeUndefined();
    await rm(join(dir, 'boot.img'));
    const m = await verifyImageSet({ partition: inDir(dir), allowVerificationError: true });
    expect(m.result).toBe('ERROR_IO');
    expect(m.problems[0].code).toBe('AVB_IMAGE_MISSING');
    // A partition the resolver does not know is missing too.
    await copyFile(join(D, 'good', 'boot.img'), join(dir, 'boot.img'));
    const none = await verifyImageSet({ partition: (n) => (n === 'system' ? undefined : inDir(dir)(n)) });
    expect(none.result).toBe('ERROR_IO');
    expect(none.problems[0].partition).toBe('system');
  });

  it("libavb's rules beyond avbtool: unsigned, chained flags, VERIFICATION_DISABLED; the check's walk is the same", async () => {
    const unsigned = await makeSet(join(D, 'unsigned'), { unsigned: true });
    const u = await verifyImageSet({ partition: inDir(unsigned), allowVerificationError: true });
    expect(u.result).toBe('ERROR_VERIFICATION');
    expect(u.problems.map((p) => p.code)).toEqual(['AVB_NOT_SIGNED']);
    // avbtool and the conformance check accept an unsigned vbmeta (6.3 reports it on its own).
    expect((await verifyPartitions(join(unsigned, 'vbmeta.img'))).problems).toEqual([]);

    const flagged = await makeSet(join(D, 'chain-flags'), { chainFlags: 1 });
    const f = await verifyImageSet({ partition: inDir(flagged), allowVerificationError: true });
    expect(f.result).toBe('ERROR_INVALID_METADATA');
    expect(f.problems[0]).toMatchObject({ code: 'AVB_CHAINED_FLAGS', partition: 'vbmeta_system' });
    // Not something an unlocked bootloader carries past: no partition was read.
    expect(f.descriptors).toEqual([]);

    const disabled = await makeSet(join(D, 'verification-disabled'), { flags: 2 });
    await flipByte(join(disabled, 'system.img'), 5000);
    const d = await verifyImageSet({ partition: inDir(disabled) });
    expect(d.result).toBe('OK');
    expect(d.flags).toBe(2);
    expect(d.vbmetas.map((v) => v.partition)).toEqual(['vbmeta']);
    // The check still reads the bytes whatever the flags say.
    const c = await verifyPartitions(join(disabled, 'vbmeta.img'));
    expect(c.problems.map((p) => `${p.partition}:${p.code}`)).toEqual(['system:AVB_HASHTREE_ROOT_MISMATCH']);
  });
});
