import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VerificationError } from '../../scripts/errors.ts';
import {
  encodeVbmetaHeader,
  formatAvbInfo,
  generateVbmetaBlob,
  infoImage,
  parseVbmeta,
  readAvbImage,
  verifyImage,
  verifyVbmeta,
} from '../../scripts/formats/avb/index.ts';
import { fecSize } from '../../scripts/formats/payload/fec.ts';
import { flipByte } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { avbtoolWithFec, DIR, installFakeFec, makeImage, testKey } from './fixtures.ts';

/**
 * Images real builds make that our own builder does not: hashtree footers with FEC
 * (add_hashtree_footer without --do_not_generate_fec, as every Pixel/LineageOS system image),
 * descriptors with tags this libavb does not know, vbmeta needing a newer libavb.
 *
 * No Debian package ships libfec's `fec` tool, which avbtool runs for FEC. A stand-in `fec` on
 * PATH answers avbtool the way libfec does (--print-fec-size, --encode writing the RS parity
 * followed by a fec_header whose last 60 bytes avbtool reads), computing the parity with the
 * libfec-interleaved RS encoder of scripts/formats/payload/fec.ts. avbtool then lays out tree, FEC,
 * vbmeta and footer itself, which is what the parser and verifier must cope with.
 */
const D = join(DIR, 'fec');
const avb = (args: string[]) => avbtoolWithFec(args, D);

beforeAll(async () => {
  await mkdir(D, { recursive: true });
  await installFakeFec();
});

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(VerificationError);
  expect((e as VerificationError).code).toBe(code);
}

describe('hashtree footers with FEC (avbtool add_hashtree_footer, FEC generated)', () => {
  // avbtool makes these images: without it there is nothing to read.
  it.skipIf(!AVBTOOL.present)(
    `info matches avbtool field by field; both verifiers accept; FEC bytes are skipped, tree bytes are not ${AVBTOOL.reason}`,
    async () => {
      const key = await testKey(2048);
      const sys = join(D, 'system.img');
      await makeImage(sys, 3 * 1024 * 1024 + 5 * 4096, 31);
      const r = await avb([
        'add_hashtree_footer',
        '--image',
        sys,
        '--partition_name',
        'system',
        '--partition_size',
        String(8 * 1024 * 1024),
        '--fec_num_roots',
        '2',
        '--hash_algorithm',
        'sha256',
        '--algorithm',
        'SHA256_RSA2048',
        '--key',
        key,
        '--prop',
        'com.android.build.system.os_version:14',
      ]);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);

      const info = await infoImage(sys);
      const ht = info.descriptors.find((d) => d.kind === 'hashtree');
      if (ht?.kind !== 'hashtree') throw new Error('no hashtree descriptor');
      expect(ht.fecNumRoots).toBe(2);
      expect(ht.fecOffset).toBe(ht.treeOffset + ht.treeSize);
      expect(ht.fecSize).toBe(fecSize(ht.treeOffset + ht.treeSize, 2, 4096));
      expect(formatAvbInfo(info).split('\n')).toEqual(
        (await avb(['info_image', '--image', sys])).stdout.split('\n'),
      );

      const res = await verifyImage(sys);
      expect(res.descriptors).toMatchObject([{ kind: 'hashtree', result: 'verified' }]);
      expect((await avb(['verify_image', '--image', sys])).exitCode).toBe(0);

      // FEC is not part of AVB verification (avbtool and libavb only check the tree): a damaged
      // FEC area still verifies with both, a damaged tree fails with both.
      // (Each copy is named system.img in its own directory: for a named partition, avbtool and we
      // verify <dir>/<partition><ext>.)
      await mkdir(join(D, 'fec-damaged'), { recursive: true });
      await mkdir(join(D, 'tree-damaged'), { recursive: true });
      const fecDamaged = join(D, 'fec-damaged', 'system.img');
      await copyFile(sys, fecDamaged);
      await flipByte(fecDamaged, ht.fecOffset + 100);
      await verifyImage(fecDamaged);
      expect((await avb(['verify_image', '--image', fecDamaged])).exitCode).toBe(0);
      const treeDamaged = join(D, 'tree-damaged', 'system.img');
      await copyFile(sys, treeDamaged);
      await flipByte(treeDamaged, ht.treeOffset + 100);
      await expectCode(verifyImage(treeDamaged), 'AVB_HASHTREE_DATA_MISMATCH');
      expect((await avb(['verify_image', '--image', treeDamaged])).exitCode).not.toBe(0);

      // The descriptor, FEC fields included, carries over into a vbmeta image like a Pixel's.
      const vbmeta = join(D, 'vbmeta.img');
      await avb([
        'make_vbmeta_image',
        '--output',
        vbmeta,
        '--algorithm',
        'SHA256_RSA2048',
        '--key',
        key,
        '--include_descriptors_from_image',
        sys,
        '--padding_size',
        '4096',
      ]);
      const vinfo = await infoImage(vbmeta);
      expect(vinfo.descriptors.find((d) => d.kind === 'hashtree')).toEqual(ht);
      expect(formatAvbInfo(vinfo).split('\n')).toEqual(
        (await avb(['info_image', '--image', vbmeta])).stdout.split('\n'),
      );
      await verifyImage(vbmeta, { resolvePartition: () => sys });
    },
    300_000,
  );
});

describe('descriptors and versions from newer or foreign tools', () => {
  async function vbmetaWithUnknownTag(): Promise<string> {
    const key = await testKey(2048);
    const { blob } = await generateVbmetaBlob({ algorithm: 'SHA256_RSA2048', key, props: { 'ro.a': 'b' } }, [
      { kind: 'unknown', tag: 77n, data: Buffer.from('descriptor from a future libavb\x00\x01') },
      { kind: 'kernel_cmdline', flags: 2, kernelCmdline: 'androidboot.x=y' },
    ]);
    const path = join(D, 'vbmeta-unknown.img');
    await writeFile(path, blob);
    return path;
  }

  it('an unknown descriptor tag is skipped by num_bytes_following, and the image verifies', async () => {
    const path = await vbmetaWithUnknownTag();
    const v = await readAvbImage(path);
    expect(v.vbmeta.descriptors.map((d) => d.kind)).toEqual(['unknown', 'kernel_cmdline', 'property']);
    expect(verifyVbmeta(v.vbmeta).signed).toBe(true);
    await verifyImage(path);
  });

  it.skipIf(!AVBTOOL.present)(
    `an unknown descriptor tag is shown like avbtool shows it, and avbtool verifies the image ${AVBTOOL.reason}`,
    async () => {
      const path = await vbmetaWithUnknownTag();
      expect(formatAvbInfo(await infoImage(path)).split('\n')).toEqual(
        (await avb(['info_image', '--image', path])).stdout.split('\n'),
      );
      expect((await avb(['verify_image', '--image', path])).exitCode).toBe(0);
    },
  );

  it('a vbmeta that needs libavb 1.4 or 2.0 is refused by the verifier (libavb), still shown by info', async () => {
    const key = await testKey(2048);
    for (const [major, minor] of [
      [1, 4],
      [2, 0],
    ]) {
      const { blob } = await generateVbmetaBlob({ algorithm: 'NONE' }, []);
      const parsed = parseVbmeta(blob);
      const header = encodeVbmetaHeader({
        ...parsed.header,
        requiredLibavbVersionMajor: major,
        requiredLibavbVersionMinor: minor,
      });
      const path = join(D, `vbmeta-${major}.${minor}.img`);
      await writeFile(path, Buffer.concat([header, blob.subarray(256)]));
      expect((await infoImage(path)).minimumLibavbVersion).toBe(`${major}.${minor}`);
      await expectCode(verifyImage(path), 'AVB_UNSUPPORTED_VERSION');
    }
    // A signed 1.0 image still verifies.
    const { blob } = await generateVbmetaBlob({ algorithm: 'SHA256_RSA2048', key }, []);
    expect(verifyVbmeta(parseVbmeta(blob)).signed).toBe(true);
  });
});
