import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { VerificationError } from '../../scripts/errors.ts';
import {
  type AvbAlgorithmName,
  addHashFooter,
  addHashtreeFooter,
  formatAvbInfo,
  infoImage,
  makeVbmetaImage,
  readAvbImage,
  readAvbPublicKey,
  verifyImage,
  verifyVbmeta,
} from '../../scripts/formats/avb/index.ts';
import { flipByte } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { avbtool, avbtoolStatus, DIR, makeImage, testKey } from './fixtures.ts';

const D = join(DIR, 'sign');
const withAvbtool = it.skipIf(!AVBTOOL.present);
let k2048: string;
let k4096: string;
let k2048b: string;

beforeAll(async () => {
  await mkdir(join(D, 'ref'), { recursive: true });
  [k2048, k4096, k2048b] = await Promise.all([testKey(2048), testKey(4096), testKey(2048, 'key2048-other')]);
});

/** Our `info_image` text equals avbtool's, field by field (the oracle tests only). */
async function sameInfo(path: string): Promise<void> {
  const ours = formatAvbInfo(await infoImage(path));
  const ref = await avbtool(['info_image', '--image', path]);
  // Field by field: same lines, in order.
  expect(ours.split('\n')).toEqual(ref.split('\n'));
}

async function expectVerifyError(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(VerificationError);
  expect((e as VerificationError).scheme).toBe('avb');
  expect((e as VerificationError).code).toBe(code);
}

describe('make_vbmeta_image per algorithm', () => {
  const algs: Array<[AvbAlgorithmName, () => string | undefined]> = [
    ['NONE', () => undefined],
    ['SHA256_RSA2048', () => k2048],
    ['SHA512_RSA2048', () => k2048],
    ['SHA256_RSA4096', () => k4096],
    ['SHA512_RSA4096', () => k4096],
  ];
  for (const [alg, key] of algs) {
    const ours = join(D, `vbmeta-${alg}.img`);
    const make = () =>
      makeVbmetaImage(ours, {
        algorithm: alg,
        key: key(),
        rollbackIndex: 1700000000,
        rollbackIndexLocation: 3,
        flags: 2,
        props: [
          ['com.omie.build', 'eng "quoted" it\'s'],
          ['x', ''],
        ],
        kernelCmdlines: ['androidboot.omie=1', 'quiet'],
        paddingSize: 4096,
      });

    it(`${alg}: the signature verifies with the key it was made with`, async () => {
      const res = await make();
      expect(res.header.requiredLibavbVersionMinor).toBe(2);
      const v = verifyVbmeta((await readAvbImage(ours)).vbmeta);
      expect(v.algorithm).toBe(alg);
      expect(v.signed).toBe(alg !== 'NONE');
      if (key()) expect(v.publicKey.equals(readAvbPublicKey(key()!))).toBe(true);
      expect(formatAvbInfo(await infoImage(ours))).toContain(`Algorithm:                ${alg}`);
    });

    withAvbtool(
      `${alg}: bytes equal avbtool's, info matches, avbtool verifies ours ${AVBTOOL.reason}`,
      async () => {
        await make();
        const ref = join(D, 'ref', `vbmeta-${alg}.img`);
        await sameInfo(ours);
        const args = ['make_vbmeta_image', '--output', ref, '--algorithm', alg];
        if (key()) args.push('--key', key()!);
        args.push('--rollback_index', '1700000000', '--rollback_index_location', '3', '--flags', '2');
        args.push('--prop', 'com.omie.build:eng "quoted" it\'s', '--prop', 'x:');
        args.push(
          '--kernel_cmdline',
          'androidboot.omie=1',
          '--kernel_cmdline',
          'quiet',
          '--padding_size',
          '4096',
        );
        await avbtool(args);
        expect((await readFile(ours)).equals(await readFile(ref))).toBe(true);
        await avbtool(['verify_image', '--image', ours]);
      },
    );
  }
});

describe('footers, chaining and verification', () => {
  const chain = join(D, 'chain');
  const refChain = join(D, 'chain-ref');
  const SALT_BOOT = 'a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0';

  beforeAll(async () => {
    await mkdir(chain, { recursive: true });
    await mkdir(refChain, { recursive: true });
    for (const dir of [chain, refChain]) {
      await makeImage(join(dir, 'boot.img'), 300_001, 11);
      await makeImage(join(dir, 'system.img'), 2 * 1024 * 1024, 12);
    }
    await writeFile(join(chain, 'boot.avbpubkey'), readAvbPublicKey(k2048));
    await copyFile(join(chain, 'boot.avbpubkey'), join(refChain, 'boot.avbpubkey'));
    // Ours
    await addHashFooter(join(chain, 'boot.img'), {
      partitionName: 'boot',
      partitionSize: 1024 * 1024,
      salt: SALT_BOOT,
      algorithm: 'SHA256_RSA2048',
      key: k2048,
      rollbackIndex: 7,
      props: { 'com.android.build.boot.os_version': '14' },
    });
    await addHashtreeFooter(join(chain, 'system.img'), {
      partitionName: 'system',
      hashAlgorithm: 'sha256',
      salt: '5a17',
      props: { 'com.android.build.system.fingerprint': 'omie/tablet:14/1/eng' },
    });
    await makeVbmetaImage(join(chain, 'vbmeta.img'), {
      algorithm: 'SHA256_RSA4096',
      key: k4096,
      rollbackIndex: 2,
      includeDescriptorsFromImages: [join(chain, 'system.img')],
      chainPartitions: [
        { partitionName: 'boot', rollbackIndexLocation: 1, publicKeyPath: join(chain, 'boot.avbpubkey') },
      ],
      props: { 'com.omie.vbmeta': 'yes' },
    });
  });

  /** The same chain made by avbtool, from the same inputs (the oracle tests only). */
  async function makeRefChain(): Promise<void> {
    const at = (f: string) => join(refChain, f);
    await avbtool([
      'add_hash_footer',
      '--image',
      at('boot.img'),
      '--partition_name',
      'boot',
      '--partition_size',
      String(1024 * 1024),
      '--salt',
      SALT_BOOT,
      '--algorithm',
      'SHA256_RSA2048',
      '--key',
      k2048,
      '--rollback_index',
      '7',
      '--prop',
      'com.android.build.boot.os_version:14',
    ]);
    await avbtool([
      'add_hashtree_footer',
      '--image',
      at('system.img'),
      '--partition_name',
      'system',
      '--hash_algorithm',
      'sha256',
      '--salt',
      '5a17',
      '--do_not_generate_fec',
      '--prop',
      'com.android.build.system.fingerprint:omie/tablet:14/1/eng',
    ]);
    await avbtool([
      'make_vbmeta_image',
      '--output',
      at('vbmeta.img'),
      '--algorithm',
      'SHA256_RSA4096',
      '--key',
      k4096,
      '--rollback_index',
      '2',
      '--include_descriptors_from_image',
      at('system.img'),
      '--chain_partition',
      `boot:1:${at('boot.avbpubkey')}`,
      '--prop',
      'com.omie.vbmeta:yes',
    ]);
  }

  withAvbtool(
    `every image is byte-identical to avbtool output and info_image matches ours ${AVBTOOL.reason}`,
    async () => {
      await makeRefChain();
      for (const f of ['boot.img', 'system.img', 'vbmeta.img']) {
        await sameInfo(join(chain, f));
        expect((await readFile(join(chain, f))).equals(await readFile(join(refChain, f)))).toBe(true);
      }
    },
  );

  it('our verifyImage follows the chain and checks hash + hashtree contents', async () => {
    const r = await verifyImage(join(chain, 'vbmeta.img'), { expectedPublicKey: k4096 });
    expect(r.algorithm).toBe('SHA256_RSA4096');
    expect(r.descriptors.map((d) => [d.kind, d.partitionName, d.result])).toEqual([
      ['chain_partition', 'boot', 'chained'],
      ['hashtree', 'system', 'verified'],
    ]);
    expect(r.chained).toHaveLength(1);
    expect(r.chained[0].descriptors).toEqual([
      expect.objectContaining({ kind: 'hash', partitionName: 'boot', result: 'verified' }),
    ]);
    // also with an explicit expectation, like avbtool --expected_chain_partition
    await verifyImage(join(chain, 'vbmeta.img'), {
      followChainPartitions: false,
      expectedChainPartitions: [
        { partitionName: 'boot', rollbackIndexLocation: 1, publicKey: readAvbPublicKey(k2048) },
      ],
    });
  });

  withAvbtool(`avbtool verify_image accepts our chained setup ${AVBTOOL.reason}`, async () => {
    const out = await avbtool([
      'verify_image',
      '--image',
      join(chain, 'vbmeta.img'),
      '--follow_chain_partitions',
    ]);
    expect(out).toContain('system: Successfully verified sha256 hashtree');
    expect(out).toContain('boot: Successfully verified sha256 hash');
    await avbtool([
      'verify_image',
      '--image',
      join(chain, 'vbmeta.img'),
      '--key',
      k4096,
      '--expected_chain_partition',
      `boot:1:${join(chain, 'boot.avbpubkey')}`,
    ]);
  });

  async function tampered(name: string): Promise<string> {
    const dir = join(D, `tamper-${name}`);
    await mkdir(dir, { recursive: true });
    for (const f of ['boot.img', 'system.img', 'vbmeta.img']) await copyFile(join(chain, f), join(dir, f));
    return dir;
  }

  /** Tampered copies of the chain; each call starts again from a fresh copy. */
  async function systemDataFlipped(): Promise<string> {
    const dir = await tampered('system-data');
    await flipByte(join(dir, 'system.img'), 4096 * 5 + 17);
    return dir;
  }
  async function systemTreeFlipped(): Promise<string> {
    const dir = await tampered('system-tree');
    await flipByte(join(dir, 'system.img'), 2 * 1024 * 1024 + 100);
    return dir;
  }
  async function bootDataFlipped(): Promise<string> {
    const dir = await tampered('boot-data');
    await flipByte(join(dir, 'boot.img'), 1234);
    return dir;
  }
  async function vbmetaFlipped(where: 'aux' | 'signature'): Promise<string> {
    const dir = await tampered(`vbmeta-${where}`);
    const h = (await readAvbImage(join(dir, 'vbmeta.img'))).vbmeta.header;
    const auxStart = 256 + h.authenticationDataBlockSize;
    // Inside the last property, or inside the signature.
    const at = where === 'aux' ? auxStart + h.descriptorsSize - 20 : 256 + h.signatureOffset + 100;
    await flipByte(join(dir, 'vbmeta.img'), at);
    return dir;
  }

  it('a flipped byte in the system data → AVB_HASHTREE_ROOT_MISMATCH', async () => {
    const dir = await systemDataFlipped();
    await expectVerifyError(verifyImage(join(dir, 'vbmeta.img')), 'AVB_HASHTREE_ROOT_MISMATCH');
  });

  it('a flipped byte in the stored hashtree → AVB_HASHTREE_DATA_MISMATCH', async () => {
    const dir = await systemTreeFlipped();
    await expectVerifyError(verifyImage(join(dir, 'system.img')), 'AVB_HASHTREE_DATA_MISMATCH');
  });

  it('a flipped byte in the boot data → AVB_HASH_DESCRIPTOR_MISMATCH', async () => {
    const dir = await bootDataFlipped();
    await expectVerifyError(verifyImage(join(dir, 'vbmeta.img')), 'AVB_HASH_DESCRIPTOR_MISMATCH');
    await expectVerifyError(verifyImage(join(dir, 'boot.img')), 'AVB_HASH_DESCRIPTOR_MISMATCH');
  });

  it('a flipped byte in the vbmeta auxiliary block → AVB_HASH_MISMATCH; in the signature → AVB_SIGNATURE_INVALID', async () => {
    const aux = await vbmetaFlipped('aux');
    await expectVerifyError(verifyImage(join(aux, 'vbmeta.img')), 'AVB_HASH_MISMATCH');
    await verifyImage(join(chain, 'vbmeta.img')); // the same bytes untouched verify
    const sig = await vbmetaFlipped('signature');
    await expectVerifyError(verifyImage(join(sig, 'vbmeta.img')), 'AVB_SIGNATURE_INVALID');
  });

  withAvbtool(`avbtool refuses each of the same tampered images ${AVBTOOL.reason}`, async () => {
    // Following the chain, as a device does: without it avbtool stops at the chain descriptor.
    const verifyChain = (dir: string) =>
      avbtoolStatus(['verify_image', '--image', join(dir, 'vbmeta.img'), '--follow_chain_partitions']);
    // The untouched chain passes, so each refusal below is about its flipped byte.
    expect(await verifyChain(chain)).toBe(0);
    expect(await verifyChain(await systemDataFlipped())).not.toBe(0);
    const tree = await systemTreeFlipped();
    expect(await avbtoolStatus(['verify_image', '--image', join(tree, 'system.img')])).not.toBe(0);
    const boot = await bootDataFlipped();
    expect(await avbtoolStatus(['verify_image', '--image', join(boot, 'boot.img')])).not.toBe(0);
    expect(await verifyChain(await vbmetaFlipped('aux'))).not.toBe(0);
    expect(await verifyChain(await vbmetaFlipped('signature'))).not.toBe(0);
  });

  it('wrong expected key → AVB_PUBLIC_KEY_MISMATCH; chained image signed by another key → AVB_CHAIN_KEY_MISMATCH', async () => {
    await expectVerifyError(
      verifyImage(join(chain, 'vbmeta.img'), { expectedPublicKey: k2048 }),
      'AVB_PUBLIC_KEY_MISMATCH',
    );
    const dir = await tampered('chain-key');
    await addHashFooter(join(dir, 'boot.img'), {
      partitionName: 'boot',
      partitionSize: 1024 * 1024,
      algorithm: 'SHA256_RSA2048',
      key: k2048b,
    });
    await verifyImage(join(dir, 'boot.img')); // valid on its own…
    await expectVerifyError(verifyImage(join(dir, 'vbmeta.img')), 'AVB_CHAIN_KEY_MISMATCH'); // …but not for the chain
    await expectVerifyError(
      verifyImage(join(dir, 'vbmeta.img'), {
        followChainPartitions: false,
        expectedChainPartitions: [
          { partitionName: 'boot', rollbackIndexLocation: 2, publicKey: readAvbPublicKey(k2048) },
        ],
      }),
      'AVB_CHAIN_MISMATCH',
    );
  });

  /** The chain's system and boot images as img2simg writes them (a required host tool). */
  async function sparseCopies(): Promise<string> {
    const dir = join(D, 'sparse');
    await mkdir(dir, { recursive: true });
    await execa('img2simg', [join(chain, 'system.img'), join(dir, 'system.img')]);
    await execa('img2simg', [join(chain, 'boot.img'), join(dir, 'boot.img')]);
    return dir;
  }

  it('reads and verifies Android sparse images with a footer (img2simg output)', async () => {
    const dir = await sparseCopies();
    const info = await infoImage(join(dir, 'system.img'));
    expect(info.sparse).toBe(true);
    expect(formatAvbInfo(info)).toContain('Minimum libavb version:   1.0 (Sparse)');
    const r = await verifyImage(join(dir, 'system.img'));
    expect(r.descriptors[0]).toMatchObject({ kind: 'hashtree', result: 'verified' });
    await verifyImage(join(dir, 'boot.img'));
    await expect(addHashFooter(join(dir, 'boot.img'), { partitionName: 'boot' })).rejects.toMatchObject({
      code: 'AVB_SPARSE_UNSUPPORTED',
    });
  });

  withAvbtool(`info of a sparse image with a footer matches avbtool's ${AVBTOOL.reason}`, async () => {
    const dir = await sparseCopies();
    await sameInfo(join(dir, 'system.img'));
  });

  it('re-running add_hash_footer replaces the footer (idempotent like avbtool)', async () => {
    const dir = await tampered('rerun');
    const p = join(dir, 'boot.img');
    const before = await readFile(p);
    await addHashFooter(p, {
      partitionName: 'boot',
      partitionSize: 1024 * 1024,
      salt: SALT_BOOT,
      algorithm: 'SHA256_RSA2048',
      key: k2048,
      rollbackIndex: 7,
      props: { 'com.android.build.boot.os_version': '14' },
    });
    expect((await readFile(p)).equals(before)).toBe(true);
  });
});

describe('images made by avbtool', () => {
  // avbtool makes these images: without it there is nothing to parse.
  withAvbtool(
    `parses avbtool make_vbmeta_image / add_hash_footer / add_hashtree_footer outputs with every option ${AVBTOOL.reason}`,
    async () => {
      const dir = join(D, 'from-avbtool');
      await mkdir(dir, { recursive: true });
      const at = (f: string) => join(dir, f);
      await writeFile(at('pkmd.bin'), Buffer.from('public key metadata \x00\x01\x02'));
      await writeFile(at('blob.bin'), Buffer.from([0, 1, 2, 0x27, 0x22, 0x5c, 0xff, 10, 13, 9]));
      await writeFile(at('big.bin'), Buffer.alloc(300, 0x41));
      await writeFile(at('k.avbpubkey'), readAvbPublicKey(k2048));
      await makeImage(at('boot.img'), 123_457, 21);
      await makeImage(at('vendor.img'), 1024 * 1024, 22);
      await avbtool([
        'add_hash_footer',
        '--image',
        at('boot.img'),
        '--partition_name',
        'boot',
        '--dynamic_partition_size',
        '--use_persistent_digest',
        '--do_not_use_ab',
        '--hash_algorithm',
        'sha512',
        '--algorithm',
        'SHA512_RSA4096',
        '--key',
        k4096,
      ]);
      await avbtool([
        'add_hashtree_footer',
        '--image',
        at('vendor.img'),
        '--partition_name',
        'vendor',
        '--partition_size',
        String(4 * 1024 * 1024),
        '--do_not_generate_fec',
        '--check_at_most_once',
        '--setup_as_rootfs_from_kernel',
        '--hash_algorithm',
        'sha1',
      ]);
      await avbtool([
        'make_vbmeta_image',
        '--output',
        at('vbmeta.img'),
        '--algorithm',
        'SHA256_RSA2048',
        '--key',
        k2048,
        '--public_key_metadata',
        at('pkmd.bin'),
        '--prop_from_file',
        `blob:${at('blob.bin')}`,
        '--prop_from_file',
        `big:${at('big.bin')}`,
        '--set_hashtree_disabled_flag',
        '--append_to_release_string',
        'omie',
        '--include_descriptors_from_image',
        at('boot.img'),
        '--include_descriptors_from_image',
        at('vendor.img'),
        '--chain_partition_do_not_use_ab',
        `vbmeta_system:2:${at('k.avbpubkey')}`,
        '--rollback_index_location',
        '1',
        '--padding_size',
        '1000',
      ]);
      for (const f of ['boot.img', 'vendor.img', 'vbmeta.img']) await sameInfo(at(f));
      const vb = await readAvbImage(at('vbmeta.img'));
      expect(vb.vbmeta.publicKeyMetadata.toString('latin1')).toBe('public key metadata \x00\x01\x02');
      expect(vb.vbmeta.header.requiredLibavbVersionMinor).toBe(3);
      // Verification of avbtool's images (vbmeta_system is not present: verify the footers directly).
      await verifyImage(at('vendor.img'));
      const boot = await verifyImage(at('boot.img'));
      expect(boot.descriptors[0].result).toBe('persistent-digest-not-checked');
      expect(verifyVbmeta(vb.vbmeta).algorithm).toBe('SHA256_RSA2048');

      // Our builder reproduces the same vbmeta from the same inputs.
      await makeVbmetaImage(at('ours-vbmeta.img'), {
        algorithm: 'SHA256_RSA2048',
        key: k2048,
        publicKeyMetadata: await readFile(at('pkmd.bin')),
        props: [
          ['blob', await readFile(at('blob.bin'))],
          ['big', await readFile(at('big.bin'))],
        ],
        setHashtreeDisabledFlag: true,
        appendToReleaseString: 'omie',
        includeDescriptorsFromImages: [at('boot.img'), at('vendor.img')],
        chainPartitions: [
          {
            partitionName: 'vbmeta_system',
            rollbackIndexLocation: 2,
            publicKeyPath: at('k.avbpubkey'),
            doNotUseAb: true,
          },
        ],
        rollbackIndexLocation: 1,
        paddingSize: 1000,
      });
      expect((await readFile(at('ours-vbmeta.img'))).equals(await readFile(at('vbmeta.img')))).toBe(true);
    },
  );
});
