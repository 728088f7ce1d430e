/**
 * The TypeScript erofs reader against the real tools, over every data layout mkfs.erofs 1.5 makes:
 * lz4 and lz4hc compression (compact and legacy full indexes), big pclusters (-C), ztailpacking,
 * uncompressed inline tails, chunk-based files (block map and chunk indexes), compact and extended
 * inodes. Each image's tree and every byte of every file must equal `fsck.erofs --extract` (oracle),
 * and each image must check clean with fsck.erofs.
 */
import { link, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError, OmieError } from '../../scripts/errors.ts';
import { crc32cRaw } from '../../scripts/formats/crc32c.ts';
import { lz4DecompressBlock } from '../../scripts/formats/lz4.ts';
import { applyErofsEdits, ErofsReader } from '../../scripts/fs/erofs.ts';
import { mutate, prng, workDir } from '../helpers.ts';

const W = workDir('fs-erofs-layouts');

/** Recomputes the erofs superblock checksum after a test patched the superblock. */
function resum(b: Buffer): void {
  b.writeUInt32LE(0, 1024 + 4);
  b.writeUInt32LE(crc32cRaw(0xffffffff, b.subarray(1024, 4096)), 1024 + 4);
}
const SRC = join(W, 'src');

/** Files that exercise every extent shape: empty, sub-block, block-exact, tails, incompressible, long runs. */
async function makeSource(): Promise<void> {
  await rm(SRC, { recursive: true, force: true });
  const rnd = prng(7);
  const random = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const text = (n: number) =>
    Buffer.from(
      Array.from({ length: n }, (_, i) => `line ${i % 977} ro.product.${i % 13}=value${(i * 31) % 101}\n`)
        .join('')
        .slice(0, n),
    );
  const mixed = (n: number) => {
    const parts: Buffer[] = [];
    let len = 0;
    while (len < n) {
      const p = rnd() < 0.5 ? random(1 + Math.floor(rnd() * 9000)) : text(1 + Math.floor(rnd() * 30000));
      parts.push(p);
      len += p.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  };
  const files: Record<string, Buffer> = {
    empty: Buffer.alloc(0),
    one: Buffer.from('x'),
    'etc/build.prop': text(3000),
    'etc/block4096': text(4096),
    'etc/block4097': text(4097),
    'etc/zeros.bin': Buffer.alloc(300_000),
    'lib/random.so': random(70_000),
    'lib/random-block.so': random(8192),
    'app/Big/Big.apk': mixed(900_000),
    'app/Text/Text.apk': text(250_123),
    'app/Dup/Dup.apk': text(250_123),
    'dir with space/ünïcode name.txt': text(5000),
  };
  for (const [p, data] of Object.entries(files)) {
    await mkdir(join(SRC, p, '..'), { recursive: true });
    await writeFile(join(SRC, p), data);
  }
  await mkdir(join(SRC, 'many'), { recursive: true });
  // A directory spanning several blocks.
  for (let i = 0; i < 400; i++)
    await writeFile(
      join(SRC, 'many', `entry-with-a-longish-name-${String(i).padStart(4, '0')}.xml`),
      `<a i="${i}"/>`,
    );
  await symlink('/system/bin/toybox', join(SRC, 'ls'));
  await link(join(SRC, 'etc/build.prop'), join(SRC, 'etc/build.prop.hardlink'));
  await symlink(`/${'x'.repeat(200)}/target`, join(SRC, 'longlink'));
}

/** Host tree as [path, type, size or target] plus file bytes, for comparison. */
async function hostTree(root: string): Promise<Map<string, { type: string; size: number; target?: string }>> {
  const out = new Map<string, { type: string; size: number; target?: string }>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const st = await lstat(full);
      const p = `${rel}/${name}`;
      if (st.isSymbolicLink()) out.set(p, { type: 'symlink', size: st.size, target: await readlink(full) });
      else if (st.isDirectory()) {
        out.set(p, { type: 'dir', size: 0 });
        await walk(full, p);
      } else out.set(p, { type: 'file', size: st.size });
    }
  };
  await walk(root, '');
  return out;
}

const VARIANTS: Array<[string, string[]]> = [
  ['uncompressed, inline tails', []],
  ['uncompressed, no inline data, extended inodes', ['-Enoinline_data,force-inode-extended']],
  ['chunk-based block map', ['--chunksize=4096']],
  ['chunk-based indexes, 64 KiB chunks', ['--chunksize=65536', '-Eforce-chunk-indexes']],
  ['lz4', ['-zlz4']],
  ['lz4hc', ['-zlz4hc']],
  ['lz4hc level 12, big pclusters (64 KiB)', ['-zlz4hc,12', '-C65536']],
  ['lz4hc, ztailpacking', ['-zlz4hc', '-Eztailpacking']],
  ['lz4hc, big pclusters and ztailpacking (AOSP-like)', ['-zlz4hc,9', '-C262144', '-Eztailpacking']],
  ['lz4, legacy (full) indexes', ['-zlz4', '-Elegacy-compress']],
  ['lz4hc, big pclusters, compact inodes', ['-zlz4hc', '-C16384', '-Eforce-inode-compact']],
];

describe('erofs reader over every mkfs.erofs layout (oracle: fsck.erofs --extract)', () => {
  beforeAll(makeSource, 60_000);

  it.each(VARIANTS)(
    '%s',
    async (name, args) => {
      const slug = name.replace(/[^a-z0-9]+/gi, '-');
      const image = join(W, `${slug}.img`);
      await rm(image, { force: true });
      await execa('mkfs.erofs', ['-T0', '--all-root', '--quiet', ...args, image, SRC]);
      expect((await execa('fsck.erofs', [image], { reject: false })).exitCode).toBe(0);
      const out = join(W, `${slug}.x`);
      await rm(out, { recursive: true, force: true });
      await execa('fsck.erofs', [`--extract=${out}`, '--no-preserve', image]);
      const expected = await hostTree(out);

      const r = new ErofsReader(image);
      try {
        const list = await r.list();
        const got = new Map(
          list
            .filter((e) => e.path !== '/')
            .map((e) => [
              e.path,
              {
                type: e.type,
                size: e.type === 'dir' ? 0 : e.size,
                ...(e.target !== undefined ? { target: e.target } : {}),
              },
            ]),
        );
        expect(got).toEqual(expected);
        for (const [p, e] of expected) {
          if (e.type !== 'file') continue;
          const mine = await r.readFile(p);
          const theirs = await readFile(join(out, p));
          expect(mine.length, p).toBe(theirs.length);
          expect(mine.equals(theirs), p).toBe(true);
        }
        // Ranged reads that start and end inside extents (copyOut reads 1 MiB at a time).
        const big = join(W, `${slug}.big`);
        await r.copyOut('/app/Big/Big.apk', big);
        expect((await readFile(big)).equals(await readFile(join(out, 'app/Big/Big.apk')))).toBe(true);
        if (args.some((a) => a.startsWith('-z'))) expect(await r.isCompressed()).toBe(true);
        // Where each file's data lies (OTA delta extents): the block-aligned extents dump.erofs -e
        // prints; inline tails (unaligned, in metadata blocks) and holes are nobody's blocks.
        const ranges = new Map((await r.fileDataRanges()).map((f) => [f.path, f.ranges]));
        const blocks = (rs: Array<[number, number]>) => {
          const m: Array<[number, number]> = [];
          for (const [a, b] of [...rs].sort((x, y) => x[0] - y[0])) {
            const [s, e] = [Math.floor(a / 4096), Math.ceil(b / 4096)];
            if (m.length && m[m.length - 1][1] >= s) m[m.length - 1][1] = Math.max(m[m.length - 1][1], e);
            else m.push([s, e]);
          }
          return m;
        };
        for (const p of ['/app/Big/Big.apk', '/app/Text/Text.apk', '/lib/random.so', '/etc/block4097']) {
          const dump = (await execa('dump.erofs', ['-e', `--path=${p}`, image])).stdout;
          const theirs = [
            ...dump.matchAll(/^\s*\d+:\s+\d+\.\.\s*\d+\s*\|\s*\d+\s*:\s*(\d+)\.\.\s*(\d+)\s*\|/gm),
          ]
            .map((m) => [Number(m[1]), Number(m[2])] as [number, number])
            .filter(([a, b]) => a % 4096 === 0 && a > 0 && b > a);
          if (p === '/app/Big/Big.apk')
            expect(theirs.length, 'dump.erofs -e lists no extents').toBeGreaterThan(0);
          expect(blocks(ranges.get(p) ?? []), p).toEqual(blocks(theirs));
        }
      } finally {
        await r.close();
      }
    },
    120_000,
  );

  it('rebuilds a big-pcluster, tail-packed image with the same compression profile', async () => {
    const image = join(W, 'aosp-like.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', [
      '-T0',
      '--all-root',
      '--quiet',
      '-zlz4hc,9',
      '-C262144',
      '-Eztailpacking',
      image,
      SRC,
    ]);
    const r = new ErofsReader(image);
    expect(await r.compressionProfile()).toEqual({ ztailpacking: true, pclusterBytes: 262144 });
    await r.close();
    const out = join(W, 'aosp-like-edited.img');
    await writeFile(join(W, 'added.txt'), 'added');
    await applyErofsEdits(image, out, [
      { op: 'remove', path: '/lib/random.so' },
      { op: 'write', path: '/etc/added.txt', source: join(W, 'added.txt'), mode: 0o644, uid: 0, gid: 0 },
    ]);
    const e = new ErofsReader(out);
    try {
      expect(await e.compressionProfile()).toEqual({ ztailpacking: true, pclusterBytes: 262144 });
      const x = join(W, 'aosp-like-edited.x');
      await rm(x, { recursive: true, force: true });
      await execa('fsck.erofs', [`--extract=${x}`, '--no-preserve', out]);
      expect(
        (await readFile(join(x, 'app/Big/Big.apk'))).equals(await readFile(join(SRC, 'app/Big/Big.apk'))),
      ).toBe(true);
      expect(
        (await e.readFile('/app/Big/Big.apk')).equals(await readFile(join(SRC, 'app/Big/Big.apk'))),
      ).toBe(true);
      expect((await e.readFile('/etc/added.txt')).toString()).toBe('added');
      // The hard link survived the rebuild as one inode (same nid in dump.erofs).
      const nid = async (p: string) =>
        /NID: (\d+)/.exec((await execa('dump.erofs', [`--path=${p}`, out])).stdout)![1];
      expect(await nid('/etc/build.prop.hardlink')).toBe(await nid('/etc/build.prop'));
      expect(await e.exists('/lib/random.so')).toBe(false);
    } finally {
      await e.close();
    }
  }, 120_000);

  it('fuzz: mutated compressed images only ever throw OmieError', async () => {
    const image = join(W, 'fuzz-z.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', [
      '-T0',
      '--all-root',
      '--quiet',
      '-zlz4hc',
      '-C65536',
      '-Eztailpacking',
      image,
      SRC,
    ]);
    const good = await readFile(image);
    const rnd = prng(61);
    const target = join(W, 'fuzz-z-case.img');
    const start = Date.now();
    let readOk = 0;
    for (let i = 0; i < 300; i++) {
      // Mutate an 8 KiB window anywhere after the superblock: inodes, map headers, lcluster
      // indexes, dirents, compressed data.
      const from = 1152 + Math.floor(rnd() * (good.length - 1152 - 8192));
      const to = from + 8192;
      const mid = mutate(good.subarray(from, to), rnd).subarray(0, to - from);
      const img = Buffer.concat([
        good.subarray(0, from),
        mid,
        Buffer.alloc(to - from - mid.length),
        good.subarray(to),
      ]);
      await writeFile(target, img);
      const r = new ErofsReader(target);
      try {
        for (const e of (await r.list()).filter((x) => x.type === 'file')) {
          await r.readFile(e.path);
          readOk++;
        }
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      } finally {
        await r.close();
      }
    }
    expect(readOk).toBeGreaterThan(0);
    expect(Date.now() - start).toBeLessThan(90_000);
  }, 120_000);

  it('reads shared xattrs (one copy in the shared area, referenced by id) and inline ones', async () => {
    const dir = join(W, 'xattr-src');
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'd'), { recursive: true });
    const py = ['import os, sys', 'd = sys.argv[1]'];
    for (let i = 0; i < 5; i++) {
      await writeFile(join(dir, 'd', `f${i}`), `${i}`);
      py.push(`os.setxattr(os.path.join(d, 'd', 'f${i}'), 'user.common', b'shared-value-used-by-all')`);
      py.push(`os.setxattr(os.path.join(d, 'd', 'f${i}'), 'user.own', bytes([${i}, 0, 255]))`);
    }
    await execa('python3', ['-c', py.join('\n'), dir]);
    const image = join(W, 'xattr.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', ['-T0', '--all-root', '--quiet', '-x1', image, dir]);
    const bytes = await readFile(image);
    // The common value is stored once: the files refer to it through h_shared_xattrs ids.
    expect(bytes.toString('latin1').split('shared-value-used-by-all').length - 1).toBe(1);
    const r = new ErofsReader(image);
    try {
      for (let i = 0; i < 5; i++) {
        const e = (await r.stat(`/d/f${i}`))!;
        expect(e.xattrs['user.common']).toBe(Buffer.from('shared-value-used-by-all').toString('hex'));
        expect(e.xattrs['user.own']).toBe(Buffer.from([i, 0, 255]).toString('hex'));
      }
    } finally {
      await r.close();
    }
  });

  it('reads fragments (a whole file in the packed inode) and long xattr name prefixes, built per erofs_fs.h', async () => {
    // erofs-utils 1.5 makes neither: patch an image it made, at places dump.erofs reports.
    const dir = join(W, 'frag-src');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    const packedData = Buffer.alloc(6000, 0x2e);
    // Long prefix table at offset 0 of the packed inode: u16 length, base_index 1 (user.), infix.
    const infix = Buffer.from('android.');
    packedData.writeUInt16LE(1 + infix.length, 0);
    packedData[2] = 1;
    infix.copy(packedData, 3);
    const fragment = Buffer.from(Array.from({ length: 300 }, (_, i) => `f${i}`).join('')).subarray(0, 300);
    fragment.copy(packedData, 1000);
    await writeFile(join(dir, 'packed'), packedData);
    await writeFile(join(dir, 'F'), Buffer.alloc(300, 0x41)); // becomes a fragment inode
    await writeFile(join(dir, 'G'), 'g');
    await execa('python3', ['-c', `import os; os.setxattr('${join(dir, 'G')}', 'user.x', b'VALUE-G')`]);
    const image = join(W, 'frag.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', ['-T0', '--all-root', '--quiet', image, dir]);
    const nid = async (p: string) =>
      Number(/NID: (\d+)/.exec((await execa('dump.erofs', [`--path=${p}`, image])).stdout)![1]);
    const b = await readFile(image);
    const metaBlk = b.readUInt32LE(1024 + 40);
    const fPos = metaBlk * 4096 + (await nid('/F')) * 32;
    expect(b.readUInt16LE(fPos + 2)).toBe(0); // no xattrs: the map header follows the inode
    b.writeUInt32LE(b.readUInt32LE(1024 + 80) | 0x20 | 0x40, 1024 + 80); // fragments, xattr_prefixes
    b.writeBigUInt64LE(BigInt(await nid('/packed')), 1024 + 96); // packed_nid
    b[1024 + 91] = 1; // xattr_prefix_count
    b.writeUInt32LE(0, 1024 + 92); // xattr_prefix_start (x 4 bytes, in the packed inode)
    b.writeUInt16LE((b.readUInt16LE(fPos) & 1) | (3 << 1), fPos); // COMPRESSED_COMPACT
    b.writeBigUInt64LE((1n << 63n) | 1000n, fPos + 32); // Z_EROFS_FRAGMENT_INODE_BIT | offset
    const g = b.indexOf(Buffer.concat([Buffer.from([1, 1, 7, 0]), Buffer.from('xVALUE-G')]));
    expect(g).toBeGreaterThan(0);
    b[g + 1] = 0x80; // long prefix 0
    resum(b);
    await writeFile(image, b);
    const r = new ErofsReader(image);
    try {
      expect((await r.readFile('/F')).toString()).toBe(fragment.toString());
      expect((await r.stat('/G'))!.xattrs).toEqual({
        'user.android.x': Buffer.from('VALUE-G').toString('hex'),
      });
    } finally {
      await r.close();
    }
  });

  it('verifies the superblock checksum (sb_csum: crc32c over the block from byte 1024)', async () => {
    const image = join(W, 'csum.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', ['-T0', '--all-root', '--quiet', image, join(SRC, 'etc')]);
    const b = await readFile(image);
    expect(b.readUInt32LE(1024 + 8) & 1).toBe(1); // mkfs.erofs sets sb_csum
    const ok = new ErofsReader(image);
    await ok.list();
    await ok.close();
    b[1024 + 120] ^= 0xff; // a reserved byte: only the checksum notices
    await writeFile(image, b);
    const r = new ErofsReader(image);
    const err = await r.list().catch((e) => e);
    await r.close();
    expect(err).toBeInstanceOf(FormatError);
    expect(err.field).toBe('checksum');
  });

  it('refuses unknown incompatible features by name', async () => {
    const image = join(W, 'feat.img');
    await rm(image, { force: true });
    await execa('mkfs.erofs', ['-T0', '--all-root', '--quiet', image, join(SRC, 'etc')]);
    const b = await readFile(image);
    b.writeUInt32LE(b.readUInt32LE(1024 + 80) | 0x80 | 0x400, 1024 + 80);
    await writeFile(image, b);
    const r = new ErofsReader(image);
    const err = await r.list().catch((e) => e);
    await r.close();
    expect(err).toBeInstanceOf(FormatError);
    expect(String(err.message)).toMatch(/unsupported incompatible features: 48bit, 0x400/);
    expect(err.field).toBe('feature_incompat');
  });
});

describe('lz4 block decoder', () => {
  it('decodes overlapping matches, long literal and match lengths, and stops at maxOutput', () => {
    // "abc" then a match of offset 3, length 4 + 15 + 255 + 1 (overlapping copy), then 20 literals.
    const lits = Buffer.from('0123456789abcdefghij');
    const block = Buffer.concat([
      Buffer.from([0x3f]),
      Buffer.from('abc'),
      Buffer.from([3, 0, 255, 1]),
      Buffer.from([0xf0, lits.length - 15]),
      lits,
    ]);
    const out = lz4DecompressBlock(block, { maxOutput: 1000 });
    const expected = Buffer.concat([Buffer.from('abc'.repeat(100)).subarray(0, 3 + 4 + 15 + 256), lits]);
    expect(out.toString()).toBe(expected.toString());
    expect(lz4DecompressBlock(block, { maxOutput: 10 }).toString()).toBe('abcabcabca');
  });

  it('rejects offsets before the start and truncated input with typed errors', () => {
    expect(() => lz4DecompressBlock(Buffer.from([0x10, 0x41, 5, 0]), { maxOutput: 100 })).toThrow(
      FormatError,
    );
    expect(() => lz4DecompressBlock(Buffer.from([0xf0]), { maxOutput: 100 })).toThrow(FormatError);
    expect(() => lz4DecompressBlock(Buffer.from([0x50, 0x41]), { maxOutput: 100 })).toThrow(FormatError);
    // Lenient mode (erofs without lz4_0padding): keep what was decoded before the garbage.
    expect(
      lz4DecompressBlock(Buffer.from([0x10, 0x41, 9, 0]), { maxOutput: 100, lenient: true }).toString(),
    ).toBe('A');
  });
});
