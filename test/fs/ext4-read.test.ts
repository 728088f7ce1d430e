/**
 * The TypeScript ext4 reader (ext4-read.ts behind Ext4Reader) against e2fsprogs: images made by
 * Debian's mke2fs -d in many shapes (1/2/4 KiB blocks, 128/256-byte inodes, inline_data, block maps
 * with triple indirection, ext2, no metadata_csum, 64bit, meta_bg, ea_inode, htree directories of
 * one and two index levels built by e2fsck -D), xattrs set with debugfs ea_set (in the inode, in an
 * external block, in an EA inode), owners with high 16 bits, setuid modes, devices and FIFOs, sparse
 * files, fast/slow symlinks. Oracles: the debugfs-based reader (DebugfsExt4Reader: ls -p, ea_list,
 * ea_get, stat) for the listing, `debugfs rdump` and the mke2fs source tree for the bytes.
 */
import { createHash } from 'node:crypto';
import {
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../scripts/errors.ts';
import { DebugfsExt4Reader, Ext4Reader } from '../../scripts/fs/ext4.ts';
import { Ext4Image } from '../../scripts/fs/ext4-read.ts';
import { flipByte, prng, workDir } from '../helpers.ts';

const W = workDir('fs-ext4-read');

function randomBytes(n: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

async function makeSource(
  dir: string,
  opts: { manyFiles: number; tripleIndirect: boolean; trailingHole: boolean },
): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'system/app/Foo'), { recursive: true });
  await mkdir(join(dir, 'system/bin'), { recursive: true });
  await mkdir(join(dir, 'many'), { recursive: true });
  await mkdir(join(dir, 'dir with space/ünïcödé'), { recursive: true });
  await mkdir(join(dir, 'empty'), { recursive: true });
  for (const n of [0, 1, 59, 60, 61, 1023, 1024, 1025, 4095, 4096, 4097, 12 * 1024 + 1, 300_000])
    await writeFile(join(dir, `system/size-${n}`), randomBytes(n, n + 1));
  await writeFile(join(dir, 'system/app/Foo/Foo.apk'), randomBytes(700_000, 3));
  await writeFile(join(dir, 'system/bin/toybox'), 'ELF toybox');
  await writeFile(join(dir, 'dir with space/ünïcödé/file name.txt'), 'unicode and spaces');
  // Sparse: data, a hole, data. (No hole at the end: mke2fs 1.47 -d with inline_data cuts such a
  // file's size to its last data block.)
  const sparse = join(dir, 'system/sparse.bin');
  await writeFile(sparse, randomBytes(5000, 7));
  const sfh = await open(sparse, 'r+');
  await sfh.write(randomBytes(3000, 9), 0, 3000, 2 * 1024 * 1024 + 100);
  await sfh.close();
  await truncate(sparse, 3 * 1024 * 1024);
  if (!opts.trailingHole) await writeFile(sparse, 'end', { flag: 'a' });
  if (opts.tripleIndirect) {
    // With 1 KiB blocks, logical blocks past 12 + 256 + 65536 go through the triple indirect block.
    const f = join(dir, 'system/triple.bin');
    const fh = await open(f, 'w');
    await fh.write(randomBytes(2000, 10), 0, 2000, 0);
    await fh.write(randomBytes(5000, 11), 0, 5000, 67 * 1024 * 1024 + 17);
    await fh.close();
  }
  for (let i = 0; i < opts.manyFiles; i++)
    await writeFile(
      join(dir, 'many', `com.example.permission.number${String(i).padStart(5, '0')}.xml`),
      `${i}`,
    );
  await symlink('/system/bin/toybox', join(dir, 'system/bin/sh'));
  await symlink(`/product/${'long/'.repeat(20)}target`, join(dir, 'system/slow-link'));
  await symlink(`${'x'.repeat(59)}`, join(dir, 'system/link-59'));
  await symlink(`${'y'.repeat(60)}`, join(dir, 'system/link-60'));
  await symlink('../dir with space/ünïcödé/file name.txt', join(dir, 'link to spaced'));
}

/** debugfs edits that set what mke2fs -d does not: xattrs of every placement, big owners, specials. */
async function decorate(image: string, opts: { eaInode: boolean; blockSize: number }): Promise<void> {
  const vdir = join(W, 'values');
  await mkdir(vdir, { recursive: true });
  const val = async (name: string, b: Buffer) => {
    await writeFile(join(vdir, name), b);
    return join(vdir, name);
  };
  const label = await val('label', Buffer.from('u:object_r:system_file:s0\0'));
  const longLabel = await val('long', Buffer.from('u:object_r:hal_graphics_composer_default_exec:s0\0'));
  const cap = await val('cap', Buffer.from('0000000200000000000000000000000000000000', 'hex'));
  const big = await val('big', randomBytes(Math.min(700, opts.blockSize - 200), 20));
  const cmds = [
    `ea_set -f ${label} / security.selinux`,
    `ea_set -f ${label} /system security.selinux`,
    `ea_set -f ${longLabel} /system/bin/toybox security.selinux`,
    `ea_set -f ${cap} /system/bin/toybox security.capability`,
    'ea_set /system/size-1 user.small hello',
    'ea_set /system/size-1 trusted.t trustme',
    `ea_set -f ${big} /system/size-1 user.big`,
    `ea_set -f ${label} /system/bin/sh security.selinux`,
    `ea_set -f ${label} /many security.selinux`,
    'sif /system/size-59 uid 100000',
    'sif /system/size-59 gid 70001',
    'sif /system/bin/toybox mode 0106755',
    'sif /system/size-60 mode 0101640',
    // debugfs mknod takes its name literally, in the current directory.
    'cd /system',
    'mknod null c 1 3',
    'mknod fifo p',
    'mknod block b 7 0',
  ];
  if (opts.eaInode)
    // debugfs ea_set -f reads 4096 bytes at most; over 4040 bytes (4 KiB blocks) libext2fs puts
    // the value in an EA inode (ext_attr.c EXT4_XATTR_MIN_LARGE_EA_SIZE).
    cmds.push(`ea_set -f ${await val('huge', randomBytes(4096, 21))} /system/size-0 user.huge`);
  await writeFile(join(vdir, 'cmds'), `${cmds.join('\n')}\n`);
  const r = await execa('debugfs', ['-w', '-f', join(vdir, 'cmds'), image]);
  const errs = r.stderr.split('\n').filter((l) => l && !/^debugfs \d/.test(l));
  expect(errs).toEqual([]);
}

interface Variant {
  name: string;
  mkfs: string[];
  size: string;
  manyFiles: number;
  tripleIndirect?: boolean;
  eaInode?: boolean;
  blockSize: number;
  /** A feature `debugfs stats` must show, to be sure the variant is what it claims. */
  expectFeature?: string;
  expectNoFeature?: string;
}

const VARIANTS: Variant[] = [
  {
    name: 'b4096-i256',
    mkfs: ['-t', 'ext4', '-b', '4096', '-I', '256'],
    size: '64M',
    manyFiles: 600,
    blockSize: 4096,
  },
  {
    name: 'b1024-i128-htree2',
    mkfs: ['-t', 'ext4', '-b', '1024', '-I', '128'],
    size: '64M',
    manyFiles: 5000,
    blockSize: 1024,
  },
  {
    name: 'b2048-inline',
    mkfs: ['-t', 'ext4', '-b', '2048', '-I', '256', '-O', 'inline_data'],
    size: '64M',
    manyFiles: 600,
    blockSize: 2048,
    expectFeature: 'inline_data',
  },
  {
    name: 'blockmap-b1024',
    mkfs: ['-t', 'ext4', '-b', '1024', '-O', '^extent,^64bit'],
    size: '96M',
    manyFiles: 600,
    tripleIndirect: true,
    blockSize: 1024,
    expectNoFeature: 'extent',
  },
  { name: 'ext2', mkfs: ['-t', 'ext2', '-b', '4096'], size: '64M', manyFiles: 600, blockSize: 4096 },
  {
    name: 'nocsum-64bit',
    mkfs: ['-t', 'ext4', '-b', '4096', '-O', '^metadata_csum,64bit'],
    size: '64M',
    manyFiles: 600,
    blockSize: 4096,
    expectFeature: '64bit',
  },
  {
    name: 'meta_bg',
    mkfs: ['-t', 'ext4', '-b', '1024', '-O', 'meta_bg,^resize_inode,64bit', '-N', '200000'],
    size: '600M',
    manyFiles: 600,
    blockSize: 1024,
    expectFeature: 'meta_bg',
  },
  {
    name: 'ea_inode',
    mkfs: ['-t', 'ext4', '-b', '4096', '-O', 'ea_inode,inline_data'],
    size: '64M',
    manyFiles: 600,
    eaInode: true,
    blockSize: 4096,
    expectFeature: 'ea_inode',
  },
];

async function buildVariant(v: Variant): Promise<{ image: string; src: string }> {
  const src = join(W, `src-${v.name}`);
  const image = join(W, `${v.name}.img`);
  await makeSource(src, {
    manyFiles: v.manyFiles,
    tripleIndirect: v.tripleIndirect ?? false,
    trailingHole: !v.mkfs.join(' ').includes('inline_data'),
  });
  await rm(image, { force: true });
  await execa('mke2fs', ['-q', '-F', ...v.mkfs, '-d', src, image, v.size], {
    env: { E2FSPROGS_FAKE_TIME: '1700000000' },
  });
  await decorate(image, { eaInode: v.eaInode ?? false, blockSize: v.blockSize });
  // mke2fs -d writes linear directories: e2fsck -D indexes the big one (htree).
  await execa('e2fsck', ['-fyD', image], { reject: false });
  const fsck = await execa('e2fsck', ['-fn', image], { reject: false });
  expect(fsck.exitCode, fsck.stdout).toBe(0);
  return { image, src };
}

async function hostFiles(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (dir: string, rel: string) => {
    for (const name of await readdir(dir)) {
      const full = join(dir, name);
      const st = await lstat(full);
      const p = `${rel}/${name}`;
      if (st.isDirectory()) await walk(full, p);
      else if (st.isFile()) out.set(p, await readFile(full));
      else if (st.isSymbolicLink()) out.set(`${p} -> `, Buffer.from(await readlink(full)));
    }
  };
  await walk(root, '');
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.each(VARIANTS)('TypeScript ext4 reader vs e2fsprogs: $name', (v) => {
  let image = '';
  let src = '';
  beforeAll(async () => {
    ({ image, src } = await buildVariant(v));
  }, 180_000);

  it("finds every file's data blocks where debugfs stat says they are (OTA delta extents)", async () => {
    const ranges = (await new Ext4Reader(image).fileDataRanges()).filter((r) => !r.path.startsWith('/many/'));
    const paths = ranges.map((r) => r.path);
    expect(paths).toEqual(
      expect.arrayContaining(['/system/size-300000', '/system/app/Foo/Foo.apk', '/many']),
    );
    if (v.mkfs.join(' ').includes('inline_data')) expect(paths).not.toContain('/system/size-59');
    const cmds = join(W, `stat-${v.name}`);
    await writeFile(cmds, paths.map((p) => `stat "${p}"`).join('\n'));
    const out = (await execa('debugfs', ['-f', cmds, image])).stdout.split(/^debugfs: stat /m).slice(1);
    expect(out).toHaveLength(paths.length);
    const merge = (runs: Array<[number, number]>) => {
      const sorted = [...runs].sort((a, b) => a[0] - b[0]);
      const m: Array<[number, number]> = [];
      for (const [a, b] of sorted)
        if (m.length && m[m.length - 1][1] === a) m[m.length - 1][1] = b;
        else m.push([a, b]);
      return m;
    };
    for (const [i, r] of ranges.entries()) {
      // Data runs only: (IND)/(DIND)/(TIND) and (ETBn) are mapping blocks, not the file's data.
      const theirs = [...out[i].matchAll(/\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?/g)].map(
        (m) => [Number(m[3]), Number(m[4] ?? m[3]) + 1] as [number, number],
      );
      const ours = r.ranges.map(([a, b]) => [a / v.blockSize, b / v.blockSize] as [number, number]);
      expect(merge(ours), r.path).toEqual(merge(theirs));
    }
  });

  it('lists exactly what debugfs lists (paths, types, modes, owners, sizes, targets, xattrs)', async () => {
    const stats = (await execa('debugfs', ['-R', 'stats', image])).stdout;
    if (v.expectFeature) expect(stats).toMatch(new RegExp(`features:.*\\b${v.expectFeature}\\b`));
    if (v.expectNoFeature) expect(stats).not.toMatch(new RegExp(`features:.*\\b${v.expectNoFeature}\\b`));
    const htree = await execa('debugfs', ['-R', 'htree_dump /many', image]);
    expect(htree.stdout).toMatch(/Root node dump/);
    if (v.manyFiles >= 5000)
      expect(htree.stdout).toMatch(/Entry #0: Hash 0x[0-9a-f]+, block \d+\n.*Reading directory block/s);

    const ts = await new Ext4Reader(image).list();
    const oracle = await new DebugfsExt4Reader(image).list();
    expect(ts.length).toBe(oracle.length);
    expect(ts).toEqual(oracle);
    const byPath = new Map(ts.map((e) => [e.path, e]));
    expect(byPath.get('/system/bin/toybox')).toMatchObject({
      mode: 0o6755,
      label: 'u:object_r:hal_graphics_composer_default_exec:s0',
      capabilities: '0000000200000000000000000000000000000000',
    });
    expect(byPath.get('/system/size-59')).toMatchObject({ uid: 100000, gid: 70001 });
    expect(byPath.get('/system/size-1')!.xattrs['user.big']).toBeDefined();
    expect(byPath.get('/system/null')?.type).toBe('chardev');
    expect(byPath.get('/system/link-60')?.target).toBe('y'.repeat(60));
    if (v.eaInode)
      expect(byPath.get('/system/size-0')!.xattrs['user.huge']).toBe(randomBytes(4096, 21).toString('hex'));
  });

  it('reads every file like debugfs rdump and the source tree; extractTree matches rdump', async () => {
    const r = new Ext4Reader(image);
    const rdump = join(W, `rdump-${v.name}`);
    const mine = join(W, `mine-${v.name}`);
    await rm(rdump, { recursive: true, force: true });
    await rm(mine, { recursive: true, force: true });
    await mkdir(rdump, { recursive: true });
    await mkdir(mine, { recursive: true });
    await new DebugfsExt4Reader(image).extractTree('/', rdump);
    await r.extractTree('/', mine);
    const fromDebugfs = await hostFiles(rdump);
    const fromSource = await hostFiles(src);
    const fromMine = await hostFiles(mine);
    const files = (await r.list()).filter((e) => e.type === 'file');
    for (const e of files) {
      const got = await r.readFile(e.path);
      expect(got.length, e.path).toBe(e.size);
      expect(sha(got), e.path).toBe(sha(fromDebugfs.get(e.path)!));
      if (fromSource.has(e.path)) expect(sha(got), e.path).toBe(sha(fromSource.get(e.path)!));
    }
    expect([...fromMine.keys()].sort()).toEqual([...fromDebugfs.keys()].sort());
    for (const [p, b] of fromMine) expect(sha(b), p).toBe(sha(fromDebugfs.get(p)!));
    // copyOut streams the same bytes.
    const out = join(W, `copy-${v.name}`);
    await r.copyOut('/system/app/Foo/Foo.apk', out);
    expect(sha(await readFile(out))).toBe(sha(fromSource.get('/system/app/Foo/Foo.apk')!));
    // Owners are set before modes, so setuid bits survive (rdump chowns last and loses them).
    expect((await lstat(join(mine, 'system/bin/toybox'))).mode & 0o7777).toBe(0o6755);
  }, 120_000);

  it('reports missing and non-regular files like before', async () => {
    const r = new Ext4Reader(image);
    expect(await r.stat('/nope')).toBeNull();
    expect(await r.exists('/system/bin/toybox')).toBe(true);
    await expect(r.readFile('/nope')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
    await expect(r.readFile('/system')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
    await expect(r.copyOut('/system/bin/sh', join(W, 'x'))).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
  });
});

describe('TypeScript ext4 reader: files over 4 GiB, unknown features', () => {
  it('reads a sparse file larger than 4 GiB (i_size_high) at its far end', async () => {
    const src = join(W, 'src-huge');
    const image = join(W, 'huge.img');
    await rm(src, { recursive: true, force: true });
    await mkdir(src, { recursive: true });
    const tail = randomBytes(10_000, 30);
    const at = 4 * 1024 ** 3 + 12345;
    const fh = await open(join(src, 'huge.bin'), 'w');
    await fh.write(tail, 0, tail.length, at);
    await fh.close();
    await rm(image, { force: true });
    await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', src, image, '32M']);
    const r = new Ext4Reader(image);
    const e = (await r.stat('/huge.bin'))!;
    expect(e.size).toBe(at + tail.length);
    expect(e).toEqual((await new DebugfsExt4Reader(image).list()).find((x) => x.path === '/huge.bin'));
    await expect(r.readFile('/huge.bin')).rejects.toMatchObject({ code: 'FS_TOO_LARGE' });
    const img = new Ext4Image(image);
    await img.use(async () => {
      const ino = await img.inode(12);
      expect(ino.size).toBe(at + tail.length);
      expect(
        (await img.readRange(ino, at - 100, 10_100)).equals(Buffer.concat([Buffer.alloc(100), tail])),
      ).toBe(true);
      expect((await img.readRange(ino, 2 ** 32 - 5, 10)).equals(Buffer.alloc(10))).toBe(true);
    });
  });

  it('refuses unknown incompatible features by name', async () => {
    const image = join(W, 'encrypt.img');
    await rm(image, { force: true });
    await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', 'encrypt', image, '8M']);
    const err = await new Ext4Reader(image).list().catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.code).toBe('EXT4_UNSUPPORTED');
    expect(err.message).toMatch(/encrypt/);
  });
});

describe('TypeScript ext4 reader: metadata checksums (oracle: e2fsck -fn)', () => {
  async function makeImage(name: string, features: string[]): Promise<string> {
    const src = join(W, `src-${name}`);
    await rm(src, { recursive: true, force: true });
    await mkdir(join(src, 'dir'), { recursive: true });
    await writeFile(join(src, 'dir/file.txt'), 'checksummed');
    const image = join(W, `${name}.img`);
    await rm(image, { force: true });
    await execa('mke2fs', [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-b',
      '4096',
      '-I',
      '256',
      ...features,
      '-d',
      src,
      image,
      '8M',
    ]);
    return image;
  }

  /** Byte offset of an inode in the image, from debugfs imap. */
  async function inodeOffset(image: string, path: string): Promise<number> {
    const out = (await execa('debugfs', ['-R', `imap ${path}`, image])).stdout;
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
    if (!m) throw new Error(`no imap for ${path}: ${out}`);
    return Number(m[1]) * 4096 + Number.parseInt(m[2], 16);
  }

  const fsckClean = async (image: string) =>
    (await execa('e2fsck', ['-fn', image], { reject: false })).exitCode === 0;

  it('reads images with metadata_csum, with the seed from the UUID or stored (metadata_csum_seed)', async () => {
    const plain = await makeImage('csum', ['-O', 'metadata_csum']);
    const seeded = await makeImage('csum-seed', ['-O', 'metadata_csum,metadata_csum_seed']);
    // A new UUID leaves the stored seed as it was: only a reader that uses it verifies.
    await execa('tune2fs', ['-U', 'random', seeded]);
    for (const image of [plain, seeded]) {
      expect(await fsckClean(image)).toBe(true);
      expect(await new Ext4Reader(image).list()).toEqual(await new DebugfsExt4Reader(image).list());
      expect((await new Ext4Reader(image).readFile('/dir/file.txt')).toString()).toBe('checksummed');
    }
  });

  it('a flipped bit in a field it does not use (i_mtime) fails the inode checksum, as for e2fsck', async () => {
    const image = await makeImage('csum-inode', ['-O', 'metadata_csum']);
    const at = await inodeOffset(image, '/dir/file.txt');
    await flipByte(image, at + 0x10, 0x10); // i_mtime
    expect(await fsckClean(image)).toBe(false);
    const err = await new Ext4Reader(image).readFile('/dir/file.txt').catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/inode \d+ checksum mismatch/);
    expect(err.context).toMatchObject({ offset: at + 0x7c, field: 'i_checksum_lo/hi' });
  });

  it('a flipped bit in the superblock fails its checksum', async () => {
    const image = await makeImage('csum-super', ['-O', 'metadata_csum']);
    await flipByte(image, 1024 + 0x88, 0x10); // s_last_mounted
    expect(await fsckClean(image)).toBe(false);
    const err = await new Ext4Reader(image).list().catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/superblock checksum mismatch/);
  });

  it('without metadata_csum there is nothing to verify: the same flip reads on', async () => {
    const image = await makeImage('nocsum', ['-O', '^metadata_csum']);
    const at = await inodeOffset(image, '/dir/file.txt');
    await flipByte(image, at + 0x10, 0x10);
    expect((await new Ext4Reader(image).readFile('/dir/file.txt')).toString()).toBe('checksummed');
  });
});
