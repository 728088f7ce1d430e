import { copyFile, link, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addHashFooter,
  addHashtreeFooter,
  calculateVbmetaDigest,
  type HashtreeDescriptor,
  makeVbmetaImage,
  readAvbImage,
  type TrustedHashtree,
  verifyPartitions,
} from '../../scripts/formats/avb/index.ts';
import { flipByte, onceInDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { avbtoolWithFec, DIR, installFakeFec, makeImage, testKey } from './fixtures.ts';

/**
 * verifyPartitions against `avbtool verify_image --follow_chain_partitions` on a small build laid
 * out like a real one: vbmeta.img holds vendor's hashtree descriptor and chains vbmeta_system.img
 * (system + product hashtrees) and boot.img (a hash footer signed by its own key). One byte is
 * flipped in the data, the stored tree, the descriptor or the signature covering each of system,
 * product and vendor; both verifiers must agree on every case, and ours names the first bad block.
 */
const D = join(DIR, 'partitions');
const PRISTINE = join(D, 'pristine');
const BS = 4096;
const SIZES: Record<string, number> = { system: 4 << 20, product: 2 << 20, vendor: 2 << 20 };
/** The vbmeta that carries each partition's descriptor. */
const CARRIER: Record<string, string> = {
  system: 'vbmeta_system',
  product: 'vbmeta_system',
  vendor: 'vbmeta',
};
const trusted = new Map<string, TrustedHashtree>();

async function avbtoolVerify(dir: string): Promise<number> {
  const r = await execa(
    'python3',
    [AVBTOOL.path, 'verify_image', '--image', join(dir, 'vbmeta.img'), '--follow_chain_partitions'],
    {
      reject: false,
    },
  );
  return r.exitCode ?? -1;
}

/** A case folder: hard links to the pristine build, except `file`, which is a copy to damage. */
async function caseDir(name: string, file: string): Promise<string> {
  const dir = join(D, 'cases', name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const f of await readdir(PRISTINE))
    if (f.endsWith('.img'))
      await (f === file ? copyFile(join(PRISTINE, f), join(dir, f)) : link(join(PRISTINE, f), join(dir, f)));
  return dir;
}

async function descriptorOf(partition: string): Promise<HashtreeDescriptor> {
  const v = await readAvbImage(join(PRISTINE, `${CARRIER[partition]}.img`));
  const d = v.vbmeta.descriptors.find((x) => x.kind === 'hashtree' && x.partitionName === partition);
  if (d?.kind !== 'hashtree') throw new Error(`no hashtree descriptor for ${partition}`);
  return d;
}

beforeAll(async () => {
  const [key, bootKey] = await Promise.all([testKey(2048), testKey(2048, 'key2048-other')]);
  await mkdir(D, { recursive: true });
  await onceInDir(
    PRISTINE,
    ['test/avb/partitions.test.ts', 'test/avb/fixtures.ts', 'scripts/formats/avb'],
    async () => {
      await mkdir(PRISTINE, { recursive: true });
      let seed = 40;
      for (const [name, size] of Object.entries(SIZES)) {
        const img = join(PRISTINE, `${name}.img`);
        await makeImage(img, size, seed++);
        await addHashtreeFooter(img, {
          partitionName: name,
          hashAlgorithm: 'sha256',
          algorithm: 'SHA256_RSA2048',
          key,
        });
      }
      const boot = join(PRISTINE, 'boot.img');
      await makeImage(boot, 1 << 20, seed++);
      await addHashFooter(boot, {
        partitionName: 'boot',
        partitionSize: 2 << 20,
        algorithm: 'SHA256_RSA2048',
        key: bootKey,
      });
      await makeVbmetaImage(join(PRISTINE, 'vbmeta_system.img'), {
        algorithm: 'SHA256_RSA2048',
        key,
        rollbackIndexLocation: 1,
        includeDescriptorsFromImages: ['system', 'product'].map((p) => join(PRISTINE, `${p}.img`)),
      });
      await makeVbmetaImage(join(PRISTINE, 'vbmeta.img'), {
        algorithm: 'SHA256_RSA2048',
        key,
        includeDescriptorsFromImages: [join(PRISTINE, 'vendor.img')],
        chainPartitions: [
          { partitionName: 'vbmeta_system', rollbackIndexLocation: 1, publicKeyPath: key },
          { partitionName: 'boot', rollbackIndexLocation: 2, publicKeyPath: bootKey },
        ],
      });
    },
  );
}, 300_000);

describe('verifyPartitions: a build against its vbmeta', () => {
  it('an intact build verifies: both vbmetas chained, every descriptor checked, digest as avbtool', async () => {
    const v = await verifyPartitions(join(PRISTINE, 'vbmeta.img'));
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.vbmetas.map((x) => [x.partition, x.ok])).toEqual([
      ['vbmeta', true],
      ['vbmeta_system', true],
      ['boot', true],
    ]);
    expect(
      v.descriptors.map((d) => `${d.vbmeta}:${d.kind}:${d.partition}:${d.result}:${d.fec ?? ''}`).sort(),
    ).toEqual([
      'boot:hash:boot:verified:',
      'vbmeta:hashtree:vendor:verified:absent',
      'vbmeta_system:hashtree:product:verified:absent',
      'vbmeta_system:hashtree:system:verified:absent',
    ]);
    expect(await calculateVbmetaDigest(join(PRISTINE, 'vbmeta.img'))).toBe(v.vbmetaDigest);
  });

  it.skipIf(!AVBTOOL.present)(
    `vbmeta digest equals avbtool calculate_vbmeta_digest ${AVBTOOL.reason}`,
    async () => {
      const r = await execa('python3', [
        AVBTOOL.path,
        'calculate_vbmeta_digest',
        '--image',
        join(PRISTINE, 'vbmeta.img'),
        '--hash_algorithm',
        'sha256',
      ]);
      const v = await verifyPartitions(join(PRISTINE, 'vbmeta.img'));
      expect(v.vbmetaDigest).toBe(r.stdout.trim());
      expect(await avbtoolVerify(PRISTINE)).toBe(0);
    },
  );

  for (const partition of ['system', 'product', 'vendor']) {
    it.skipIf(!AVBTOOL.present)(
      `${partition}: flipped bytes in data, tree, descriptor and signature; ours and avbtool agree ${AVBTOOL.reason}`,
      async () => {
        const d = await descriptorOf(partition);
        const carrier = `${CARRIER[partition]}.img`;
        const carrierBytes = await readFile(join(PRISTINE, carrier));
        const header = (await readAvbImage(join(PRISTINE, carrier))).vbmeta.header;
        const cases: Array<{ name: string; file: string; offset: number; want: Record<string, unknown>[] }> =
          [
            {
              name: 'data',
              file: `${partition}.img`,
              offset: 100 * BS + 7,
              want: [
                {
                  code: 'AVB_HASHTREE_ROOT_MISMATCH',
                  partition,
                  area: 'data',
                  firstBadBlock: 100,
                  offset: 100 * BS,
                },
              ],
            },
            {
              name: 'tree',
              file: `${partition}.img`,
              offset: d.treeOffset + d.treeSize - BS + 10,
              want: [
                {
                  code: 'AVB_HASHTREE_DATA_MISMATCH',
                  partition,
                  area: 'tree',
                  firstBadBlock: d.treeSize / BS - 1,
                  offset: d.treeOffset + d.treeSize - BS,
                },
              ],
            },
            {
              name: 'descriptor',
              file: carrier,
              offset: carrierBytes.indexOf(d.rootDigest) + 3,
              // The vbmeta's hash no longer covers it, and the data no longer matches the root.
              want: [
                { code: 'AVB_HASH_MISMATCH', partition: CARRIER[partition], area: 'vbmeta' },
                { code: 'AVB_HASHTREE_ROOT_MISMATCH', partition, area: 'data' },
              ],
            },
            {
              name: 'signature',
              file: carrier,
              offset: 256 + header.signatureOffset + 5,
              want: [{ code: 'AVB_SIGNATURE_INVALID', partition: CARRIER[partition], area: 'vbmeta' }],
            },
          ];
        for (const c of cases) {
          const dir = await caseDir(`${partition}-${c.name}`, c.file);
          await flipByte(join(dir, c.file), c.offset);
          const ours = await verifyPartitions(join(dir, 'vbmeta.img'));
          expect(ours.ok, `${partition} ${c.name}`).toBe(false);
          expect(ours.problems, `${partition} ${c.name}`).toMatchObject(c.want);
          expect(await avbtoolVerify(dir), `avbtool on ${partition} ${c.name}`).not.toBe(0);
        }
        // The copy of the descriptor in the partition's own footer is not what boot uses (vbmeta
        // carries it): neither verifier looks at it.
        const own = await readFile(join(PRISTINE, `${partition}.img`));
        const dir = await caseDir(`${partition}-footer`, `${partition}.img`);
        await flipByte(join(dir, `${partition}.img`), own.lastIndexOf(d.rootDigest) + 3);
        expect((await verifyPartitions(join(dir, 'vbmeta.img'))).problems).toEqual([]);
        expect(await avbtoolVerify(dir)).toBe(0);
      },
      300_000,
    );
  }

  it('a chained partition signed by another key than its chain descriptor names is refused', async () => {
    const dir = await caseDir('chain-key', 'boot.img');
    await addHashFooter(join(dir, 'boot.img'), {
      partitionName: 'boot',
      partitionSize: 2 << 20,
      algorithm: 'SHA256_RSA2048',
      key: await testKey(2048),
    });
    const v = await verifyPartitions(join(dir, 'vbmeta.img'));
    expect(v.problems).toMatchObject([{ code: 'AVB_CHAIN_KEY_MISMATCH', partition: 'boot', area: 'vbmeta' }]);
  });

  it('a missing partition image is a problem, not a pass; the boot hash names the whole image', async () => {
    const dir = await caseDir('missing', 'boot.img');
    await rm(join(dir, 'product.img'));
    await flipByte(join(dir, 'boot.img'), 12345);
    const v = await verifyPartitions(join(dir, 'vbmeta.img'));
    expect(v.problems).toMatchObject([
      { code: 'AVB_IMAGE_MISSING', partition: 'product', vbmeta: 'vbmeta_system', area: 'image' },
      { code: 'AVB_HASH_DESCRIPTOR_MISMATCH', partition: 'boot', vbmeta: 'boot', area: 'data' },
    ]);
    expect(v.problems[1].firstBadBlock).toBeUndefined();
  });

  it('trusted digests: the data is not hashed again, the tree still is; a changed file is verified in full', async () => {
    const dir = await caseDir('trusted', 'system.img');
    const sys = join(dir, 'system.img');
    const d = await descriptorOf('system');
    const s = await stat(sys);
    trusted.set('system', {
      file: { dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs },
      rootDigest: d.rootDigest,
      salt: d.salt,
      hashAlgorithm: d.hashAlgorithm,
      imageSize: d.imageSize,
      blockSize: d.dataBlockSize,
    });
    const ok = await verifyPartitions(join(dir, 'vbmeta.img'), { trustedHashtrees: trusted });
    expect(ok.descriptors.find((x) => x.partition === 'system')?.result).toBe('trusted-data');
    expect(ok.ok).toBe(true);
    // A data byte changed behind the caller's back with the same modification time goes unseen:
    // that is what trusting the caller's digests means (the build's own bytes, just written).
    await flipByte(sys, 100 * BS);
    await utimes(sys, s.atime, s.mtime);
    const same = await stat(sys);
    trusted.set('system', {
      ...trusted.get('system')!,
      file: { dev: same.dev, ino: same.ino, size: same.size, mtimeMs: same.mtimeMs },
    });
    expect((await verifyPartitions(join(dir, 'vbmeta.img'), { trustedHashtrees: trusted })).ok).toBe(true);
    // The stored tree is checked all the same, up to the signed root.
    await flipByte(sys, d.treeOffset + 5);
    await utimes(sys, s.atime, s.mtime);
    const t = await verifyPartitions(join(dir, 'vbmeta.img'), { trustedHashtrees: trusted });
    expect(t.problems).toMatchObject([
      { code: 'AVB_HASHTREE_DATA_MISMATCH', area: 'tree', firstBadBlock: 0 },
    ]);
    // Once the file is not the one the digests were taken of, everything is hashed again.
    await flipByte(sys, d.treeOffset + 5);
    await writeFile(join(dir, 'touch'), '');
    await utimes(sys, new Date(), new Date());
    const full = await verifyPartitions(join(dir, 'vbmeta.img'), { trustedHashtrees: trusted });
    expect(full.problems).toMatchObject([
      { code: 'AVB_HASHTREE_ROOT_MISMATCH', area: 'data', firstBadBlock: 100 },
    ]);
  });
});

describe.skipIf(!AVBTOOL.present)(`FEC checked where present ${AVBTOOL.reason}`, () => {
  it('parity made by avbtool add_hashtree_footer verifies; a flipped FEC byte is found, avbtool does not look', async () => {
    await installFakeFec();
    const dir = join(D, 'fec');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const key = await testKey(2048);
    const sys = join(dir, 'system.img');
    // > 253 blocks of data and tree: several RS rounds.
    await makeImage(sys, 3 * 1024 * 1024 + 5 * BS, 31);
    const r = await avbtoolWithFec(
      [
        'add_hashtree_footer',
        '--image',
        sys,
        '--partition_name',
        'system',
        '--partition_size',
        String(8 << 20),
        '--fec_num_roots',
        '2',
        '--hash_algorithm',
        'sha256',
        '--algorithm',
        'SHA256_RSA2048',
        '--key',
        key,
      ],
      dir,
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const v = await verifyPartitions(sys);
    expect(v.problems).toEqual([]);
    expect(v.descriptors).toMatchObject([{ partition: 'system', result: 'verified', fec: 'verified' }]);
    const d = (await readAvbImage(sys)).vbmeta.descriptors.find(
      (x) => x.kind === 'hashtree',
    ) as HashtreeDescriptor;
    await flipByte(sys, d.fecOffset + 2 * BS + 77);
    const bad = await verifyPartitions(sys);
    expect(bad.problems).toMatchObject([
      {
        code: 'AVB_FEC_MISMATCH',
        partition: 'system',
        area: 'fec',
        firstBadBlock: 2,
        offset: d.fecOffset + 2 * BS,
      },
    ]);
    expect((await avbtoolWithFec(['verify_image', '--image', sys], dir)).exitCode).toBe(0);
    expect((await verifyPartitions(sys, { fec: false })).ok).toBe(true);
  }, 300_000);
});
