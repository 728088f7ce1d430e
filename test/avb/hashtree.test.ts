import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  addHashtreeFooter,
  calcHashLevelOffsets,
  generateHashtree,
  infoImage,
  verifyImage,
} from '../../scripts/formats/avb/index.ts';
import { AVBTOOL } from '../oracles.ts';
import { avbtool, DIR, makeImage } from './fixtures.ts';

interface Case {
  name: string;
  size: number;
  hash: 'sha1' | 'sha256' | 'sha512';
  blockSize?: number;
  partitionSize?: number;
  workers?: number;
}

const cases: Case[] = [
  { name: 'single block sha256', size: 4096, hash: 'sha256' },
  { name: 'three blocks sha1', size: 3 * 4096, hash: 'sha1' },
  { name: '1 MiB sha256', size: 1 << 20, hash: 'sha256' },
  {
    name: 'not block-aligned sha1 (partition size given)',
    size: 12345,
    hash: 'sha1',
    partitionSize: 1 << 20,
  },
  {
    name: 'block size 1024 sha256, unaligned',
    size: 65536 + 5000,
    hash: 'sha256',
    blockSize: 1024,
    partitionSize: 1 << 20,
  },
  { name: 'sha512 256 KiB', size: 256 * 1024, hash: 'sha512' },
  {
    name: '3-level tree sha256, 2 worker threads',
    size: 24 * 1024 * 1024 + 8192,
    hash: 'sha256',
    workers: 2,
  },
  { name: '3-level tree sha1, 2 worker threads', size: 20 * 1024 * 1024, hash: 'sha1', workers: 2 },
];

describe('dm-verity hashtree', () => {
  it('level offsets match avbtool calc_hash_level_offsets for known sizes', () => {
    // 1 GiB, sha256, 4 KiB: 262144 leaves * 32 B = 8 MiB level 0, 64 KiB level 1, 512 B → 4 KiB level 2
    const r = calcHashLevelOffsets(1 << 30, 4096, 32);
    expect(r.levelSizes).toEqual([8 << 20, 64 << 10, 4096]);
    expect(r.levelOffsets).toEqual([(64 << 10) + 4096, 4096, 0]);
    expect(r.treeSize).toBe((8 << 20) + (64 << 10) + 4096);
    expect(calcHashLevelOffsets(4096, 4096, 32)).toMatchObject({ treeSize: 0, levelOffsets: [] });
  });

  /** Our footer on a fresh image, and a copy of the same image for avbtool (made once per case). */
  const made = new Map<string, ReturnType<typeof footerOurs>>();
  async function footerOurs(c: Case) {
    const salt = createHash('sha256')
      .update(c.name)
      .digest('hex')
      .slice(0, c.hash === 'sha1' ? 40 : 64);
    const base = join(DIR, `ht-${c.size}-${c.hash}-${c.blockSize ?? 4096}`);
    const ours = `${base}/system.img`;
    const ref = `${base}/ref/system.img`;
    await mkdir(`${base}/ref`, { recursive: true });
    await makeImage(ours, c.size, c.size ^ 0x5a5a);
    await copyFile(ours, ref);
    const res = await addHashtreeFooter(ours, {
      partitionName: 'system',
      hashAlgorithm: c.hash,
      salt,
      blockSize: c.blockSize,
      partitionSize: c.partitionSize,
      workers: c.workers,
      crc32: true,
    });
    if (res.descriptor.kind !== 'hashtree') throw new Error('expected a hashtree descriptor');
    return { salt, ours, ref, res, d: res.descriptor };
  }
  function footer(c: Case) {
    if (!made.has(c.name)) made.set(c.name, footerOurs(c));
    return made.get(c.name)!;
  }

  /** The tree generated on its own (not as a footer), from the descriptor's parameters. */
  function rebuildTree(c: Case, image: string, d: Awaited<ReturnType<typeof footerOurs>>['d']) {
    return generateHashtree(image, {
      imageSize: d.imageSize,
      blockSize: d.dataBlockSize,
      hashAlgorithm: c.hash,
      salt: d.salt,
      workers: 1,
    });
  }

  for (const c of cases) {
    it(`${c.name}: our footer verifies, its tree rebuilds to the same root, CRC-32 taken while hashing`, async () => {
      const { salt, ours, res, d } = await footer(c);
      // The CRC-32 taken while hashing (per worker range, joined) is the finished file's.
      expect(res.crc32).toBe(crc32(await readFile(ours)));
      expect(d.salt.toString('hex')).toBe(salt);
      const v = await verifyImage(ours);
      expect(v.descriptors).toEqual([expect.objectContaining({ kind: 'hashtree', result: 'verified' })]);
      const again = await rebuildTree(c, ours, d);
      expect(again.rootDigest.equals(d.rootDigest)).toBe(true);
    });

    it.skipIf(!AVBTOOL.present)(
      `${c.name}: image bytes equal avbtool add_hashtree_footer, avbtool verifies ours ${AVBTOOL.reason}`,
      async () => {
        const { salt, ours, ref, d } = await footer(c);
        const args = [
          'add_hashtree_footer',
          '--image',
          ref,
          '--partition_name',
          'system',
          '--hash_algorithm',
          c.hash,
        ];
        args.push('--salt', salt, '--do_not_generate_fec');
        if (c.blockSize) args.push('--block_size', String(c.blockSize));
        if (c.partitionSize) args.push('--partition_size', String(c.partitionSize));
        await avbtool(args);
        const [a, b] = await Promise.all([readFile(ours), readFile(ref)]);
        expect(a.length).toBe(b.length);
        expect(a.equals(b)).toBe(true);
        // The root digest avbtool reports is ours, and so is the tree it wrote.
        const text = await avbtool(['info_image', '--image', ref]);
        expect(text).toContain(`Root Digest:           ${d.rootDigest.toString('hex')}`);
        // A tree generated on its own (not as a footer) is avbtool's too.
        const again = await rebuildTree(c, ours, d);
        expect(again.tree.equals(b.subarray(d.treeOffset, d.treeOffset + d.treeSize))).toBe(true);
        await avbtool(['verify_image', '--image', ours]);
      },
    );
  }

  it('info of a hashtree image reports the tree where avbtool puts it', async () => {
    const p = join(DIR, 'ht-info/vendor.img');
    await mkdir(join(DIR, 'ht-info'), { recursive: true });
    await makeImage(p, 64 * 4096, 7);
    await addHashtreeFooter(p, { partitionName: 'vendor', hashAlgorithm: 'sha256', salt: '00' });
    const i = await infoImage(p);
    const ht = i.descriptors[0];
    expect(ht.kind).toBe('hashtree');
    if (ht.kind === 'hashtree') {
      expect(ht.treeOffset).toBe(64 * 4096);
      expect(ht.treeSize).toBe(4096);
      expect(i.footer?.vbmetaOffset).toBe(65 * 4096);
      expect(i.footer?.originalImageSize).toBe(64 * 4096);
    }
  });
});
