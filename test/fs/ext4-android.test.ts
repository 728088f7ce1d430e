/**
 * ext4 images shaped like AOSP's (mke2fs + e2fsdroid): non-system-as-root layout (/build.prop at the
 * root, as product/vendor/system_ext have), inline_data, metadata_csum, 64bit, huge_file, htree
 * directories, hard links, fast/slow/inline symlinks, names with spaces and unicode, xattrs of every
 * rendering debugfs uses (quoted with C escapes, hex, elided long values), a partition larger than
 * its filesystem, and real block sharing (the shared_blocks feature e2fsdroid -s sets, with two
 * inodes owning the same blocks). Oracles: the host tree mke2fs -d copied, e2fsck -fn, debugfs dump.
 */
import {
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyExt4Edits, Ext4Reader, ext4Info, parseEaList, unescapeCString } from '../../scripts/fs/ext4.ts';
import { prng, workDir } from '../helpers.ts';

const W = workDir('fs-ext4-android');
const SRC = join(W, 'src');
const FEATURES = '^has_journal,inline_data,metadata_csum,64bit,huge_file,dir_index,extra_isize';

/** xattrs set on the host source (mke2fs -d copies them), name -> bytes. */
const XATTRS: Record<string, Record<string, Buffer>> = {
  'app/Foo/Foo.apk': {
    'user.label': Buffer.from('u:object_r:system_file:s0\0'),
    'user.binary': Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    'user.long': Buffer.from('u:object_r:hal_graphics_composer_default_exec:s0\0'),
    'user.escapes': Buffer.from("quote\" back\\slash tab\there nl\nx 'apos' \x7f"),
    'user.name with space': Buffer.from('v'),
  },
  'build.prop': { 'user.empty': Buffer.alloc(0) },
};

async function makeSource(): Promise<void> {
  await rm(SRC, { recursive: true, force: true });
  const rnd = prng(11);
  await mkdir(join(SRC, 'app/Foo'), { recursive: true });
  await mkdir(join(SRC, 'etc/permissions'), { recursive: true });
  await mkdir(join(SRC, 'dir with space/ünïcödé'), { recursive: true });
  await writeFile(join(SRC, 'build.prop'), 'ro.product.product.name=omie\n');
  await writeFile(
    join(SRC, 'app/Foo/Foo.apk'),
    Buffer.from(Array.from({ length: 150_000 }, () => Math.floor(rnd() * 256))),
  );
  await writeFile(join(SRC, 'dir with space/ünïcödé/file name.txt'), 'unicode and spaces');
  await writeFile(join(SRC, 'tiny'), 'inline');
  await writeFile(join(SRC, 'dir with space/quote"in name'), 'quoted'); // inline_data: kept in the inode
  for (
    let i = 0;
    i < 600;
    i++ // several directory blocks: an htree index with dir_index
  )
    await writeFile(
      join(SRC, 'etc/permissions', `com.example.permission.number${String(i).padStart(4, '0')}.xml`),
      `<p n="${i}"/>`,
    );
  await link(join(SRC, 'build.prop'), join(SRC, 'etc/build.prop.hardlink'));
  await symlink('/system/bin/toybox', join(SRC, 'fast-link'));
  await symlink(`/product/${'long/'.repeat(30)}target`, join(SRC, 'slow-link'));
  await symlink('../dir with space/ünïcödé/file name.txt', join(SRC, 'link to spaced'));
  const py = ['import os, sys, json', 'root = sys.argv[1]', 'spec = json.loads(sys.argv[2])'];
  py.push('for p, attrs in spec.items():');
  py.push(
    '  for k, v in attrs.items(): os.setxattr(os.path.join(root, p), k, bytes.fromhex(v), follow_symlinks=False)',
  );
  const spec = Object.fromEntries(
    Object.entries(XATTRS).map(([p, a]) => [
      p,
      Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v.toString('hex')])),
    ]),
  );
  await execa('python3', ['-c', py.join('\n'), SRC, JSON.stringify(spec)]);
}

async function hostTree(root: string) {
  const out = new Map<string, { type: string; size: number; mode: number; target?: string }>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const st = await lstat(full);
      const p = `${rel}/${name}`;
      if (st.isSymbolicLink())
        out.set(p, { type: 'symlink', size: st.size, mode: 0o777, target: await readlink(full) });
      else if (st.isDirectory()) {
        out.set(p, { type: 'dir', size: 0, mode: st.mode & 0o7777 });
        await walk(full, p);
      } else out.set(p, { type: 'file', size: st.size, mode: st.mode & 0o7777 });
    }
  };
  await walk(root, '');
  return out;
}

async function mkimage(image: string, src = SRC): Promise<void> {
  await rm(image, { force: true });
  await execa(
    'mke2fs',
    ['-q', '-F', '-t', 'ext4', '-O', FEATURES, '-b', '4096', '-I', '256', '-d', src, image, '64M'],
    {
      env: { E2FSPROGS_FAKE_TIME: '0' },
    },
  );
}

describe('ext4 images with AOSP feature sets (oracle: the mke2fs -d source, e2fsck, debugfs)', () => {
  const image = join(W, 'product.img');
  beforeAll(async () => {
    await makeSource();
    await mkimage(image);
  }, 120_000);

  it('lists, reads and labels every kind of entry like the source tree', async () => {
    expect((await execa('e2fsck', ['-fn', image], { reject: false })).exitCode).toBe(0);
    const info = await ext4Info(image);
    for (const f of ['inline_data', 'metadata_csum', '64bit', 'huge_file', 'dir_index'])
      expect(info.features).toContain(f);
    const r = new Ext4Reader(image);
    const list = await r.list();
    const got = new Map(
      list
        .filter((e) => e.path !== '/' && e.path !== '/lost+found')
        .map((e) => [
          e.path,
          {
            type: e.type,
            size: e.type === 'dir' ? 0 : e.size,
            mode: e.mode,
            ...(e.target !== undefined ? { target: e.target } : {}),
          },
        ]),
    );
    expect(got).toEqual(await hostTree(SRC));
    // Non-SAR layout: build.prop at the root; the hard link is the same file.
    expect((await r.readFile('/build.prop')).toString()).toContain('ro.product.product.name');
    expect((await r.readFile('/etc/build.prop.hardlink')).equals(await r.readFile('/build.prop'))).toBe(true);
    for (const p of [
      '/app/Foo/Foo.apk',
      '/tiny',
      '/dir with space/ünïcödé/file name.txt',
      '/dir with space/quote"in name',
    ])
      expect((await r.readFile(p)).equals(await readFile(join(SRC, p))), p).toBe(true);
    for (const [p, attrs] of Object.entries(XATTRS)) {
      const e = (await r.stat(`/${p}`))!;
      const want = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, v.toString('hex')]));
      expect(e.xattrs, p).toEqual(want);
    }
    // inline_data keeps file bytes in the system.data xattr: it is storage, not an attribute.
    expect((await r.stat('/tiny'))!.xattrs).toEqual({});
  }, 60_000);

  it('edits a partition image larger than its filesystem without cutting it short', async () => {
    const img = join(W, 'padded.img');
    await mkimage(img);
    const fsBytes = (await ext4Info(img)).blockCount * 4096;
    await truncate(img, fsBytes + 32 * 1024 * 1024);
    const big = join(W, 'big.bin');
    await writeFile(big, Buffer.alloc(80 * 1024 * 1024, 7)); // does not fit: the filesystem grows
    await applyExt4Edits(img, [{ op: 'write', path: '/big.bin', source: big, mode: 0o644, uid: 0, gid: 0 }], {
      epoch: 0,
    });
    expect((await stat(img)).size).toBeGreaterThanOrEqual(fsBytes + 32 * 1024 * 1024);
    const r = new Ext4Reader(img);
    expect((await r.stat('/big.bin'))!.size).toBe(80 * 1024 * 1024);
    expect((await r.readFile('/build.prop')).toString()).toContain('omie');
  }, 120_000);

  it('unshares really shared blocks (e2fsdroid -s dedupe) before editing, keeping both files intact', async () => {
    const src = join(W, 'dedupe-src');
    await rm(src, { recursive: true, force: true });
    await mkdir(src);
    const content = Buffer.from(Array.from({ length: 20_000 }, (_, i) => (i * 13) & 0xff));
    await writeFile(join(src, 'A.apk'), content);
    await writeFile(join(src, 'B.apk'), content);
    const img = join(W, 'dedupe.img');
    await mkimage(img, src);
    // Make B point at A's blocks and free its own, as e2fsdroid's block deduplication does.
    const extents = async (p: string) => {
      const s = (await execa('debugfs', ['-R', `stat ${p}`, img])).stdout;
      const m = /\(0-4\):(\d+)-(\d+)/.exec(s)!;
      return Number(m[1]);
    };
    const a = await extents('/B.apk'.replace('B', 'A'));
    const b = await extents('/B.apk');
    await execa('debugfs', ['-w', '-f', '-', img], {
      input: `sif /B.apk block[5] ${a}\nfreeb ${b} 5\nfeature shared_blocks\n`,
    });
    await execa('e2fsck', ['-fy', img], { reject: false }); // group free counts after freeb
    expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
    expect(await extents('/B.apk')).toBe(a);
    const r0 = new Ext4Reader(img);
    expect((await r0.readFile('/B.apk')).equals(content)).toBe(true);
    // Replace A: without unsharing, freeing A's blocks would corrupt B.
    const other = join(W, 'other.apk');
    await writeFile(other, 'a different A');
    await applyExt4Edits(img, [{ op: 'write', path: '/A.apk', source: other, mode: 0o644, uid: 0, gid: 0 }], {
      epoch: 0,
    });
    const r = new Ext4Reader(img);
    expect((await r.readFile('/A.apk')).toString()).toBe('a different A');
    expect((await r.readFile('/B.apk')).equals(content)).toBe(true);
    expect((await ext4Info(img)).features).not.toContain('shared_blocks');
    expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
  }, 120_000);

  it('decodes every debugfs xattr rendering (print_c_string escapes, hex, elided)', () => {
    const ea = parseEaList(
      [
        'Extended attributes:',
        '  user.q (9) = "a\\"b\\\\c\\td\\n\\000"',
        '  user.name with space (1) = "v"',
        '  security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ',
        '  system.data (0)',
        '  security.selinux (65)',
        '  user.bad (3) = "toolongvalue"',
      ].join('\n'),
    );
    expect(ea.map((e) => e.name)).toEqual([
      'user.q',
      'user.name with space',
      'security.capability',
      'security.selinux',
      'user.bad',
    ]);
    expect(ea[0].value).toEqual(Buffer.from('a"b\\c\td\n\0'));
    expect(ea[3].value).toBeNull();
    expect(ea[4].value).toBeNull(); // length mismatch: fetched exactly with ea_get -x
    expect(unescapeCString("\\a\\b\\f\\v\\'\\177ü")).toEqual(
      Buffer.from([7, 8, 12, 11, 39, 127, 0xc3, 0xbc]),
    );
  });
});
