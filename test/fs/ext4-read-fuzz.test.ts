/**
 * Fuzzing the TypeScript ext4 reader: small images (extents with an index node, htree directory,
 * inline data, xattr blocks; and an ext2 block-mapped one with indirect blocks) get random byte
 * flips, sets and truncations aimed at the superblock, group descriptors, inode table, extent and
 * indirect nodes, directory and xattr blocks (located with debugfs). Listing and reading every file
 * must either work or throw a typed error (OmieError), never another exception, never hang.
 */
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { Ext4Reader } from '../../scripts/fs/ext4.ts';
import { prng, workDir } from '../helpers.ts';

const W = workDir('fs-ext4-read-fuzz');
const ITERATIONS = Number(process.env.EXT4_FUZZ_ITERATIONS ?? 250);

interface Seed {
  image: Buffer;
  /** [start, end) byte ranges holding metadata. */
  regions: Array<[number, number]>;
}

async function makeSeed(name: string, mkfs: string[]): Promise<Seed> {
  const src = join(W, `src-${name}`);
  await rm(src, { recursive: true, force: true });
  await mkdir(join(src, 'dir/sub'), { recursive: true });
  await mkdir(join(src, 'many'), { recursive: true });
  await writeFile(join(src, 'tiny'), 'inline me');
  await writeFile(join(src, 'dir/sub/file.txt'), 'x'.repeat(3000));
  // Data chunks separated by holes: more extents than fit in the inode, so an index node.
  const fh = await open(join(src, 'frag'), 'w');
  for (let i = 0; i < 8; i++) await fh.write(Buffer.alloc(1000, i + 1), 0, 1000, i * 20_000);
  await fh.close();
  await writeFile(join(src, 'big'), Buffer.alloc(300_000, 7)); // indirect blocks when block-mapped
  for (let i = 0; i < 120; i++) await writeFile(join(src, 'many', `entry-with-a-long-name-${i}`), `${i}`);
  const image = join(W, `${name}.img`);
  await rm(image, { force: true });
  // A fixed UUID, hash seed and clock: the same seed image (and so the same mutation outcomes)
  // on every run, instead of a count of noticed mutations that varies with mke2fs' randomness.
  const env = { E2FSPROGS_FAKE_TIME: '1', MKE2FS_DETERMINISTIC: '1' };
  const fixed = [
    '-U',
    '6f6d6965-0000-4000-8000-000000000001',
    '-E',
    'hash_seed=6f6d6965-0000-4000-8000-000000000002',
  ];
  await execa('mke2fs', ['-q', '-F', ...mkfs, ...fixed, '-b', '1024', '-N', '200', '-d', src, image, '2M'], {
    env,
  });
  const cmds = ['ea_set /tiny user.a small', `ea_set /dir/sub/file.txt user.b ${'v'.repeat(300)}`];
  await execa('debugfs', ['-w', '-R', cmds[0], image], { env });
  await execa('debugfs', ['-w', '-R', cmds[1], image], { env });
  await execa('e2fsck', ['-fyD', image], { reject: false, env });
  const bs = 1024;
  const regions: Array<[number, number]> = [
    [1024, 2048],
    [2048, 3072],
  ];
  const stats = (await execa('debugfs', ['-R', 'stats', image])).stdout;
  const itable = /Inode table at (\d+)-(\d+)/.exec(stats);
  if (itable) regions.push([Number(itable[1]) * bs, (Number(itable[2]) + 1) * bs]);
  for (const p of ['/', '/many', '/dir', '/dir/sub', '/frag', '/big']) {
    const blocks = (await execa('debugfs', ['-R', `blocks ${p}`, image])).stdout.trim().split(/\s+/);
    for (const b of blocks.slice(0, 4).filter(Boolean)) regions.push([Number(b) * bs, (Number(b) + 1) * bs]);
    const st = (await execa('debugfs', ['-R', `stat ${p}`, image])).stdout;
    // Extent index nodes ("(ETB0):1234") and indirect blocks ("(IND):1234").
    for (const m of st.matchAll(/\((?:ETB\d|IND|DIND|TIND)\):(\d+)/g))
      regions.push([Number(m[1]) * bs, (Number(m[1]) + 1) * bs]);
    const acl = /File ACL: (\d+)/.exec(st);
    if (acl && acl[1] !== '0') regions.push([Number(acl[1]) * bs, (Number(acl[1]) + 1) * bs]);
  }
  return { image: await readFile(image), regions };
}

async function exercise(path: string): Promise<void> {
  const r = new Ext4Reader(path);
  for (const e of await r.list())
    if (e.type === 'file' && e.size <= 4 * 1024 * 1024) await r.readFile(e.path);
}

function mutateIn(seed: Seed, rnd: () => number): Buffer {
  const b = Buffer.from(seed.image);
  if (rnd() < 0.1) return b.subarray(0, Math.floor(rnd() * b.length));
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const [s, e] = seed.regions[Math.floor(rnd() * seed.regions.length)];
    const at = s + Math.floor(rnd() * (e - s));
    const op = Math.floor(rnd() * 3);
    if (op === 0) b[at] ^= 1 << Math.floor(rnd() * 8);
    else if (op === 1) b[at] = Math.floor(rnd() * 256);
    else if (at + 4 <= b.length) b.writeUInt32LE(rnd() < 0.5 ? 0xffffffff : Math.floor(rnd() * 2 ** 32), at);
  }
  return b;
}

describe.each([
  { name: 'extents-inline', mkfs: ['-t', 'ext4', '-I', '256', '-O', 'inline_data,^has_journal'] },
  { name: 'ext2-blockmap', mkfs: ['-t', 'ext2', '-I', '128'] },
])('ext4 reader fuzz: $name', ({ name, mkfs }) => {
  let seed: Seed;
  beforeAll(async () => {
    seed = await makeSeed(name, mkfs);
  }, 60_000);

  it('the unmutated image reads cleanly', async () => {
    const p = join(W, `${name}-clean.img`);
    await writeFile(p, seed.image);
    await exercise(p);
    expect(seed.regions.length).toBeGreaterThan(6);
  });

  it(`${ITERATIONS} mutated images: typed errors or output, no crash, no hang`, async () => {
    const p = join(W, `${name}-fuzz.img`);
    let typed = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const rnd = prng(1000 + i);
      await writeFile(p, mutateIn(seed, rnd));
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`seed ${1000 + i}: hang`)), 10_000);
      });
      try {
        await Promise.race([exercise(p), hang]);
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`seed ${1000 + i}: untyped error: ${e}`, { cause: e });
        typed++;
      } finally {
        clearTimeout(timer);
      }
    }
    // The mutations reach the error paths: a good share is noticed (about 22 % with metadata_csum,
    // 25 % for ext2, where superblock and inode checksums catch flips in fields the reader does not
    // otherwise need), the rest still read without a crash.
    expect(typed).toBeGreaterThan(ITERATIONS / 10);
  }, 300_000);
});
