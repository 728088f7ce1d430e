import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError, InputError, OmieError } from '../../scripts/errors.ts';
import { generateHashtree } from '../../scripts/formats/avb/hashtree.ts';
import { rawToSparse } from '../../scripts/formats/sparse.ts';
import {
  buildSuper,
  buildSuperEmpty,
  expandAbLayout,
  extractPartition,
  LP_METADATA_GEOMETRY_MAGIC,
  LP_METADATA_HEADER_MAGIC,
  parseGeometry,
  parseMetadata,
  planSuper,
  readSuper,
  type SuperLayout,
  serializeGeometry,
  serializeMetadata,
} from '../../scripts/formats/super/index.ts';
import type { UniformBlocks } from '../../scripts/formats/uniform-blocks.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';
import { randomBytes, sha256File } from '../sparse/fixtures.ts';

const dir = workDir('super');
const MiB = 1024 * 1024;
let systemImg: string; // ext4, raw
let systemSparse: string; // same, img2simg'd
let vendorImg: string; // random data
let productImg: string; // erofs

function layout(over: Partial<SuperLayout> = {}): SuperLayout {
  return {
    blockDevices: [{ name: 'super', size: 64 * MiB }],
    groups: [{ name: 'omie_dynamic_partitions', maxSize: 40 * MiB }],
    partitions: [
      { name: 'system', group: 'omie_dynamic_partitions', imagePath: systemSparse, readonly: true },
      { name: 'vendor', group: 'omie_dynamic_partitions', imagePath: vendorImg, readonly: true },
      { name: 'product', group: 'omie_dynamic_partitions', imagePath: productImg, readonly: true },
    ],
    metadataSlots: 3,
    metadataMaxSize: 65536,
    virtualAB: true,
    ...over,
  };
}

beforeAll(async () => {
  const src = join(dir, 'src');
  await execa('mkdir', ['-p', src]);
  for (let i = 0; i < 5; i++) writeFileSync(join(src, `f${i}`), randomBytes(40 + i, 50_000 * (i + 1)));
  systemImg = join(dir, 'system.img');
  await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', src, systemImg, '8M']);
  systemSparse = join(dir, 'system.simg');
  await execa('img2simg', [systemImg, systemSparse]);
  vendorImg = join(dir, 'vendor.img');
  writeFileSync(vendorImg, randomBytes(9, 3 * MiB + 4096 * 3));
  productImg = join(dir, 'product.img');
  await execa('mkfs.erofs', ['--quiet', '-T', '1700000000', productImg, src]);
});

async function readAt(path: string, pos: number, len: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, pos);
    return b;
  } finally {
    await fh.close();
  }
}

describe('buildSuper → readSuper → extractPartition', () => {
  it('round-trips A/B partition images byte for byte (raw super, sparse input image)', async () => {
    const out = join(dir, 'super.img');
    const ab = expandAbLayout(layout());
    await buildSuper(ab, out);
    expect((await stat(out)).size).toBe(64 * MiB);
    const info = await readSuper(out);
    expect(info.layout).toBe('super');
    expect(info.virtualAB).toBe(true);
    expect(info.partitions.map((p) => p.name)).toEqual([
      'system_a',
      'vendor_a',
      'product_a',
      'system_b',
      'vendor_b',
      'product_b',
    ]);
    expect(
      info.partitions
        .filter((p) => p.name.endsWith('_b'))
        .every((p) => p.size === 0 && p.extents.length === 0),
    ).toBe(true);
    expect(info.groups.map((g) => g.name)).toEqual([
      'default',
      'omie_dynamic_partitions_a',
      'omie_dynamic_partitions_b',
    ]);
    for (const [name, img] of [
      ['system_a', systemImg],
      ['vendor_a', vendorImg],
      ['product_a', productImg],
    ]) {
      const x = join(dir, `${name}.out`);
      await extractPartition(out, name, x);
      expect(await sha256File(x), name).toBe(await sha256File(img));
    }
  });

  it('writes a sparse super that simg2img expands to the raw one, and reads it in place', async () => {
    const rawOut = join(dir, 'super.img');
    const sparseOut = join(dir, 'super.simg');
    const ab = expandAbLayout(layout());
    await buildSuper(ab, sparseOut, { sparse: true });
    expect((await stat(sparseOut)).size).toBeLessThan(32 * MiB);
    const back = join(dir, 'super.simg.raw');
    await execa('simg2img', [sparseOut, back]);
    expect(await sha256File(back)).toBe(await sha256File(rawOut));
    const info = await readSuper(sparseOut);
    expect(info.sparse).toBe(true);
    const x = join(dir, 'system_a.from-sparse');
    await extractPartition(sparseOut, 'system_a', x);
    expect(await sha256File(x)).toBe(await sha256File(systemImg));
  });

  it('lays out like lpmake: 1 MiB-aligned first sector and extents, sizes in 4096-byte blocks', async () => {
    const info = await readSuper(join(dir, 'super.img'));
    const dev = info.blockDevices[0];
    // 4096 reserved + 2 geometries + 2 x 3 slots x 64 KiB = 405504 bytes -> next MiB.
    expect(dev.firstLogicalSector).toBe(2048);
    expect(dev.alignment).toBe(MiB);
    expect(dev.size).toBe(64 * MiB);
    const starts = info.partitions.flatMap((p) => p.extents.map((e) => e.offset));
    expect(starts[0]).toBe(MiB);
    for (const s of starts) expect(s % MiB).toBe(0);
    const vendor = info.partitions.find((p) => p.name === 'vendor_a')!;
    expect(vendor.size).toBe((await stat(vendorImg)).size);
    expect(vendor.readonly).toBe(true);
    // extents never overlap
    const ext = info.partitions.flatMap((p) => p.extents).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < ext.length; i++)
      expect(ext[i].offset).toBeGreaterThanOrEqual(ext[i - 1].offset + ext[i - 1].size);
  });

  it('honours alignment_offset and lays out a second block device like MetadataBuilder', async () => {
    const plan = await planSuper(
      layout({
        blockDevices: [
          { name: 'super', size: 8 * MiB, alignmentOffset: 4096 },
          { name: 'super_ext', size: 16 * MiB },
        ],
        partitions: [
          { name: 'system', group: 'omie_dynamic_partitions', size: 6 * MiB },
          { name: 'vendor', group: 'omie_dynamic_partitions', size: 4 * MiB },
        ],
      }),
    );
    const [sup, ext] = plan.metadata.blockDevices;
    // AlignTo(405504, 1 MiB, 4096) = 1 MiB + 4096; other devices start at AlignTo(512, 1 MiB).
    expect(sup.firstLogicalSector).toBe((MiB + 4096) / 512);
    expect(ext.firstLogicalSector).toBe(MiB / 512);
    const e = plan.metadata.extents.map((x) => [x.targetSource, x.targetData * 512, x.numSectors * 512]);
    // GrowPartition takes free regions device by device: vendor fills the rest of super (next
    // sector aligned past the offset) and continues on super_ext.
    expect(e).toEqual([
      [0, MiB + 4096, 6 * MiB],
      [0, 7 * MiB + 4096, MiB - 4096],
      [1, MiB, 3 * MiB + 4096],
    ]);
  });

  it('extracts a partition spanning two block devices when given the second device image', async () => {
    const l = layout({
      blockDevices: [
        { name: 'super', size: 4 * MiB },
        { name: 'super_ext', size: 8 * MiB },
      ],
      partitions: [{ name: 'system', group: 'omie_dynamic_partitions', size: 5 * MiB }],
    });
    const sup = join(dir, 'two-dev-super.img');
    const r = await buildSuper(l, sup);
    const [a, b] = r.plan.metadata.extents;
    expect([a.targetSource, b.targetSource]).toEqual([0, 1]);
    const data = randomBytes(77, 5 * MiB);
    const supBytes = readFileSync(sup);
    data.copy(supBytes, a.targetData * 512, 0, a.numSectors * 512);
    writeFileSync(sup, supBytes);
    const ext = Buffer.alloc(8 * MiB);
    data.copy(ext, b.targetData * 512, a.numSectors * 512);
    const extPath = join(dir, 'two-dev-ext.img');
    writeFileSync(extPath, ext);
    const out = join(dir, 'two-dev-system.img');
    const err = await extractPartition(sup, 'system', out).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('SUPER_OTHER_DEVICE');
    await extractPartition(sup, 'system', out, { devices: { super_ext: extPath } });
    expect(readFileSync(out).equals(data)).toBe(true);
  });

  it('has the AOSP metadata_format.h field layout, both geometry copies and every slot copy valid', async () => {
    const path = join(dir, 'super.img');
    const geo = await readAt(path, 4096, 4096);
    const geoBackup = await readAt(path, 8192, 4096);
    expect(geo.equals(geoBackup)).toBe(true);
    // LpMetadataGeometry: magic@0 struct_size@4 checksum@8 metadata_max_size@40 slot_count@44 logical_block_size@48
    expect(geo.readUInt32LE(0)).toBe(0x616c4467);
    expect(geo.readUInt32LE(4)).toBe(52);
    expect(geo.readUInt32LE(40)).toBe(65536);
    expect(geo.readUInt32LE(44)).toBe(3);
    expect(geo.readUInt32LE(48)).toBe(4096);
    const g0 = Buffer.from(geo.subarray(0, 52));
    g0.fill(0, 8, 40);
    expect(createHash('sha256').update(g0).digest().equals(geo.subarray(8, 40))).toBe(true);
    expect(geo.subarray(52).every((b) => b === 0)).toBe(true);
    // 6 metadata copies: primary slots at 12288 + i*64K, backups after them; all identical here.
    const copies: Buffer[] = [];
    for (let i = 0; i < 6; i++) copies.push(await readAt(path, 12288 + i * 65536, 65536));
    for (const c of copies) expect(c.equals(copies[0])).toBe(true);
    const h = copies[0];
    // LpMetadataHeader v10.2: magic@0 major@4 minor@6 header_size@8 header_checksum@12 tables_size@44
    // tables_checksum@48 partitions@80 extents@92 groups@104 block_devices@116 flags@128 reserved[124]@132
    expect(h.readUInt32LE(0)).toBe(0x414c5030);
    expect(h.readUInt16LE(4)).toBe(10);
    expect(h.readUInt16LE(6)).toBe(2);
    expect(h.readUInt32LE(8)).toBe(256);
    expect(h.readUInt32LE(128)).toBe(1); // LP_HEADER_FLAG_VIRTUAL_AB_DEVICE
    const tablesSize = h.readUInt32LE(44);
    const tables = h.subarray(256, 256 + tablesSize);
    expect(createHash('sha256').update(tables).digest().equals(h.subarray(48, 80))).toBe(true);
    const hh = Buffer.from(h.subarray(0, 256));
    hh.fill(0, 12, 44);
    expect(createHash('sha256').update(hh).digest().equals(h.subarray(12, 44))).toBe(true);
    const desc = (at: number) => [h.readUInt32LE(at), h.readUInt32LE(at + 4), h.readUInt32LE(at + 8)];
    expect(desc(80)).toEqual([0, 6, 52]); // LpMetadataPartition: 52 bytes
    expect(desc(92)).toEqual([6 * 52, 3, 24]); // LpMetadataExtent: 24 bytes
    expect(desc(104)).toEqual([6 * 52 + 3 * 24, 3, 48]); // LpMetadataPartitionGroup: 48 bytes
    expect(desc(116)).toEqual([6 * 52 + 3 * 24 + 3 * 48, 1, 64]); // LpMetadataBlockDevice: 64 bytes
    // partition 0: name[36] attributes@36 first_extent_index@40 num_extents@44 group_index@48
    expect(tables.toString('latin1', 0, 8)).toBe('system_a');
    expect(tables.readUInt32LE(36)).toBe(1);
    expect(tables.readUInt32LE(44)).toBe(1);
    expect(tables.readUInt32LE(48)).toBe(1);
    // extent 0: num_sectors@0 target_type@8 target_data@12 target_source@20
    const e0 = 6 * 52;
    expect(Number(tables.readBigUInt64LE(e0 + 12))).toBe(2048);
    expect(tables.readUInt32LE(e0 + 8)).toBe(0);
    // block device: first_logical_sector@0 alignment@8 alignment_offset@12 size@16 partition_name@24 flags@60
    const b0 = 6 * 52 + 3 * 24 + 3 * 48;
    expect(Number(tables.readBigUInt64LE(b0))).toBe(2048);
    expect(tables.readUInt32LE(b0 + 8)).toBe(MiB);
    expect(Number(tables.readBigUInt64LE(b0 + 16))).toBe(64 * MiB);
    expect(tables.toString('latin1', b0 + 24, b0 + 29)).toBe('super');
    const info = await readSuper(path);
    expect(info.slots.map((s) => [s.primary, s.backup])).toEqual([
      ['ok', 'ok'],
      ['ok', 'ok'],
      ['ok', 'ok'],
    ]);
  });

  it('writes a v10.0 header (128 bytes, no flags) without virtual A/B', async () => {
    const out = join(dir, 'super-v0.img');
    await buildSuper(layout({ virtualAB: false, metadataSlots: 2 }), out);
    const h = await readAt(out, 12288, 256);
    expect(h.readUInt16LE(6)).toBe(0);
    expect(h.readUInt32LE(8)).toBe(128);
    const info = await readSuper(out, { slot: 1 });
    expect(info.metadata.header.headerSize).toBe(128);
    expect(info.virtualAB).toBe(false);
    expect(info.slot).toBe(1);
  });
});

/**
 * What the sparse path did before it wrote sparse directly: the raw super, then rawToSparse with
 * zeros inside the metadata region and partitions kept as FILL, DONT_CARE elsewhere.
 */
async function sparseViaRaw(l: SuperLayout, raw: string, out: string): Promise<void> {
  const { plan } = await buildSuper(l, raw);
  const ranges = plan.placements.flatMap((p) => p.extents);
  const metaEnd = 4096 + (4096 + plan.geometry.metadataMaxSize * plan.geometry.metadataSlotCount) * 2;
  await rawToSparse(raw, out, {
    blockSize: plan.geometry.logicalBlockSize,
    zeroAsDontCare: (o) =>
      !(o < metaEnd ? o >= 4096 : ranges.some((r) => o >= r.offset && o < r.offset + r.size)),
  });
}

describe('sparse super written directly from the layout', () => {
  const sd = workDir('super-sparse');
  let oddImg: string;
  // A/B, two groups, 256 KiB alignment with an offset, a metadata size that is not a whole
  // number of blocks, a partition larger than its image, one with an image of a partial last
  // block, one with no image at all.
  const twoGroups = (): SuperLayout =>
    expandAbLayout({
      blockDevices: [{ name: 'super', size: 40 * MiB, alignment: 256 * 1024, alignmentOffset: 8192 }],
      groups: [
        { name: 'main', maxSize: 16 * MiB },
        { name: 'extra', maxSize: 4 * MiB },
      ],
      partitions: [
        { name: 'system', group: 'main', imagePath: systemSparse, readonly: true },
        { name: 'vendor', group: 'main', imagePath: vendorImg, size: 4 * MiB, readonly: true },
        { name: 'odm', group: 'extra', imagePath: oddImg, size: 64 * 1024, readonly: true },
        { name: 'product', group: 'extra', imagePath: productImg, readonly: true },
        { name: 'cache', group: 'extra', size: MiB },
      ],
      // 3 x 5120-byte copies: the region ends mid-block (4096 + 2 x (4096 + 15360) = 43008).
      metadataSlots: 3,
      metadataMaxSize: 5000,
    });

  beforeAll(() => {
    oddImg = join(sd, 'odm.img');
    writeFileSync(oddImg, randomBytes(77, 10_000));
  });

  for (const [name, make] of [
    ['sample A/B layout (virtual A/B, 3 slots)', () => expandAbLayout(layout())],
    ['A/B two-group layout with alignment offset and odd metadata size', twoGroups],
  ] as const) {
    it(`${name}: simg2img gives the raw super byte for byte, our reader reads it in place`, async () => {
      const l = make();
      const tag = name.startsWith('sample') ? 'sample' : 'two-groups';
      const raw = join(sd, `${tag}.raw`);
      const sparse = join(sd, `${tag}.simg`);
      const r = await buildSuper(l, sparse, { sparse: true });
      await buildSuper(l, raw);
      const back = join(sd, `${tag}.back`);
      await execa('simg2img', [sparse, back]);
      expect((await stat(back)).size).toBe(l.blockDevices[0].size);
      expect(await sha256File(back)).toBe(await sha256File(raw));
      expect(r.size).toBe((await stat(sparse)).size);
      // total_blks covers the whole device; only images and metadata cost space.
      const head = await readAt(sparse, 0, 28);
      expect(head.readUInt32LE(16)).toBe(l.blockDevices[0].size / 4096);
      expect(r.size).toBeLessThan(12 * MiB);
      const info = await readSuper(sparse);
      expect(info.sparse).toBe(true);
      for (const [part, img] of [
        ['system_a', systemImg],
        ['product_a', productImg],
      ]) {
        const x = join(sd, `${tag}.${part}`);
        await extractPartition(sparse, part, x);
        const want = await sha256File(img);
        // extractPartition yields the whole partition: compare the image's length of it.
        const got = createHash('sha256')
          .update(readFileSync(x).subarray(0, (await stat(img)).size))
          .digest('hex');
        expect(got, part).toBe(want);
      }
    });

    it(`${name}: same bytes as the raw-then-convert path, deterministic, direct or not`, async () => {
      const l = make();
      const tag = name.startsWith('sample') ? 'sample' : 'two-groups';
      const a = join(sd, `${tag}.det1.simg`);
      const b = join(sd, `${tag}.det2.simg`);
      await buildSuper(l, a, { sparse: true });
      // Written with O_DIRECT and hashed while written (as the build writes super.img): the same
      // bytes, and the digest of what is on disk.
      const hashed = await buildSuper(l, b, { sparse: true, direct: true, sha256: true });
      expect(hashed.sha256).toBe(await sha256File(b));
      const ref = join(sd, `${tag}.ref.simg`);
      await sparseViaRaw(l, join(sd, `${tag}.ref.raw`), ref);
      const da = await sha256File(a);
      expect(await sha256File(b)).toBe(da);
      expect(await sha256File(ref)).toBe(da);
    });
  }

  it('uses DONT_CARE outside partitions and FILL 0 for partition space past an image (simg_dump)', async () => {
    const l = twoGroups();
    const sparse = join(sd, 'chunks.simg');
    const { plan } = await buildSuper(l, sparse, { sparse: true });
    const { stdout } = await execa('simg_dump', ['-v', sparse]);
    // simg_dump -v rows: chunk, input offset, input bytes, output block, output blocks, type.
    const rows = stdout
      .split('\n')
      .map((line) => /^\s*\d+\s+\d+\s+\d+\s+(\d+)\s+(\d+)\s+(\S.*)$/.exec(line))
      .filter((m) => m !== null)
      .map((m) => ({
        type: m[3].startsWith('Raw')
          ? 'raw'
          : m[3].startsWith('Fill')
            ? 'fill'
            : m[3].startsWith("Don't")
              ? 'skip'
              : m[3],
        start: Number(m[1]),
        blocks: Number(m[2]),
      }));
    expect(rows.length).toBeGreaterThan(5);
    expect(rows[0]).toMatchObject({ type: 'skip', start: 0, blocks: 1 });
    const last = rows[rows.length - 1];
    expect(last.type).toBe('skip');
    expect(rows.every((r) => ['raw', 'fill', 'skip'].includes(r.type))).toBe(true);
    expect(last.start + last.blocks).toBe(l.blockDevices[0].size / 4096);
    // The 1 MiB cache partition has no image: one FILL 0 chunk exactly over its extent.
    const cache = plan.placements.find((p) => p.name === 'cache_a')!.extents[0];
    const cacheStart = cache.offset / 4096;
    const inCache = rows.filter(
      (r) => r.start < cacheStart + cache.size / 4096 && r.start + r.blocks > cacheStart,
    );
    expect(inCache.length).toBeGreaterThan(0);
    expect(inCache.every((r) => r.type === 'fill')).toBe(true);
  });

  it('plans from the hashing pass maps without reading them: same bytes; a wrong map fails typed, no file', async () => {
    // Raw images (as the build has them), one with fills and zeros across 4 MiB reads.
    const patterned = randomBytes(12, 6 * MiB);
    for (let o = MiB; o < 3 * MiB; o += 4) patterned.writeUInt32LE(o < 2 * MiB ? 0 : 0xdeadbeef, o);
    const patternedImg = join(sd, 'patterned.img');
    writeFileSync(patternedImg, patterned);
    const l = expandAbLayout({
      ...twoGroups(),
      groups: [{ name: 'main', maxSize: 30 * MiB }],
      partitions: [
        { name: 'system', group: 'main', imagePath: systemImg, readonly: true },
        { name: 'vendor', group: 'main', imagePath: patternedImg, size: 8 * MiB, readonly: true },
        // 10,000 bytes: the map covers two blocks, the partial third is read.
        { name: 'odm', group: 'main', imagePath: oddImg, readonly: true },
        { name: 'product', group: 'main', imagePath: productImg, readonly: true },
      ],
    });
    const maps = new Map<string, UniformBlocks>();
    for (const p of [systemImg, patternedImg, oddImg, productImg]) {
      const ht = await generateHashtree(p, {
        imageSize: (await stat(p)).size,
        blockSize: 4096,
        hashAlgorithm: 'sha256',
        salt: Buffer.alloc(32, 1),
        workers: 2,
        uniformBlocks: true,
      });
      maps.set(p, ht.uniformBlocks!);
    }
    expect(maps.get(oddImg)!.blocks).toBe(2);
    const stages = new Set<string>();
    const plain = await buildSuper(l, join(sd, 'mapped.ref.simg'), { sparse: true, sha256: true });
    const mapped = await buildSuper(l, join(sd, 'mapped.simg'), {
      sparse: true,
      sha256: true,
      direct: true,
      uniformBlocks: maps,
      onProgress: (e) => stages.add(e.stage),
    });
    expect(mapped.sha256).toBe(plain.sha256);
    expect(await sha256File(join(sd, 'mapped.simg'))).toBe(plain.sha256);
    expect(stages).toContain('scan super');

    // A map that calls the first block of the patterned image zeros: the writing pass, which
    // reads every block, finds otherwise and fails before a wrong image is finished.
    const m = maps.get(patternedImg)!;
    const wrong = new Map(maps).set(patternedImg, { ...m, runs: [0, 1, 0, ...m.runs] });
    const out = join(sd, 'mapped.wrong.simg');
    const e = await buildSuper(l, out, { sparse: true, sha256: true, uniformBlocks: wrong }).catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(e.code).toBe('SPARSE_INPUT_CHANGED');
    await expect(stat(out)).rejects.toThrow();
  });

  it('refuses a device of more than 2^32 blocks before writing anything', async () => {
    const huge = (0xffffffff + 1) * 4096;
    const l = layout({
      blockDevices: [{ name: 'super', size: huge }],
      partitions: [{ name: 'system', group: 'omie_dynamic_partitions', size: MiB }],
    });
    const out = join(sd, 'huge.simg');
    const e = await buildSuper(l, out, { sparse: true }).catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(String(e.message)).toMatch(/more than 2\^32/);
    await expect(stat(out)).rejects.toThrow();
  });

  it('refuses an extent not aligned to the block size with a typed error and leaves no file', async () => {
    const l = layout({ blockDevices: [{ name: 'super', size: 64 * MiB, alignmentOffset: 512 }] });
    const out = join(sd, 'unaligned.simg');
    const e = await buildSuper(l, out, { sparse: true }).catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(String(e.message)).toMatch(/not aligned to the 4096-byte block size/);
    await expect(stat(out)).rejects.toThrow();
  });
});

describe('backups and corruption', () => {
  async function corruptCopy(from: string, to: string, at: number): Promise<void> {
    const b = readFileSync(from);
    b[at] ^= 0xff;
    writeFileSync(to, b);
  }

  it('falls back to the backup geometry when the primary is corrupt, and fails typed when both are', async () => {
    const p = join(dir, 'bad-geo.img');
    await corruptCopy(join(dir, 'super-v0.img'), p, 4096 + 44);
    const info = await readSuper(p);
    expect(info.geometrySource).toBe('backup');
    expect(info.geometryError).toMatch(/checksum/);
    const b = readFileSync(p);
    b[8192 + 44] ^= 0xff;
    writeFileSync(p, b);
    const err = await readSuper(p).catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.field).toBe('geometry');
  });

  it('reads the primary metadata of a super dump cut short (only its first blocks), as liblp would', async () => {
    const full = readFileSync(join(dir, 'super-v0.img'));
    const geo = parseGeometry(full.subarray(4096), 4096);
    const p = join(dir, 'super-head-only.img');
    writeFileSync(p, full.subarray(0, 12288 + geo.metadataMaxSize));
    const info = await readSuper(p);
    expect(info.slots[0].primary).toBe('ok');
    expect(info.slots[0].backup).toMatch(/truncated/);
    expect(info.partitions.map((x) => x.name)).toEqual(['system', 'vendor', 'product']);
  });

  it('uses the backup metadata copy of a slot whose primary is corrupt', async () => {
    const p = join(dir, 'bad-meta.img');
    await corruptCopy(join(dir, 'super-v0.img'), p, 12288 + 300); // inside slot 0 tables
    const info = await readSuper(p);
    expect(info.slots[0].primary).toMatch(/tables checksum/);
    expect(info.slots[0].backup).toBe('ok');
    expect(info.partitions.map((x) => x.name)).toEqual(['system', 'vendor', 'product']);
    const x = join(dir, 'vendor.from-backup');
    await extractPartition(p, 'vendor', x);
    expect(await sha256File(x)).toBe(await sha256File(vendorImg));
  });

  it('rejects with typed errors naming the field', async () => {
    const base = readFileSync(join(dir, 'super-v0.img')).subarray(0, 2 * MiB);
    const geo = parseGeometry(base.subarray(4096), 4096);
    const meta = base.subarray(12288, 12288 + 65536);
    const cases: Array<[number, number, string]> = [
      [0, 0x00, 'header.magic'],
      [4, 0x0b, 'header.version'],
      [12, 0x01, 'header.header_checksum'],
    ];
    for (const [at, v, field] of cases) {
      const m = Buffer.from(meta);
      m[at] = v;
      const err = (() => {
        try {
          parseMetadata(m, geo, 12288);
        } catch (e) {
          return e as FormatError;
        }
      })();
      expect(err, field).toBeInstanceOf(FormatError);
      expect(err!.field).toBe(field);
      expect(err!.offset).toBe(12288 + at);
    }
  });
});

describe('super_empty.img and layout errors', () => {
  it('writes geometry + one metadata copy with zero-size partitions, as lpmake does for fastbootd', async () => {
    const out = join(dir, 'super_empty.img');
    const r = await buildSuperEmpty(expandAbLayout(layout()), out);
    const b = readFileSync(out);
    expect(b.length).toBe(r.size);
    expect(b.readUInt32LE(0)).toBe(LP_METADATA_GEOMETRY_MAGIC);
    expect(b.readUInt32LE(4096)).toBe(LP_METADATA_HEADER_MAGIC);
    const info = await readSuper(out);
    expect(info.layout).toBe('super_empty');
    expect(info.partitions.every((p) => p.size === 0)).toBe(true);
    expect(info.groups.find((g) => g.name === 'omie_dynamic_partitions_a')?.maximumSize).toBe(40 * MiB);
    expect(info.blockDevices[0].size).toBe(64 * MiB);
  });

  it('refuses layouts that do not fit', async () => {
    await expect(
      buildSuper(layout({ groups: [{ name: 'omie_dynamic_partitions', maxSize: MiB }] }), join(dir, 'x.img')),
    ).rejects.toBeInstanceOf(InputError);
    await expect(
      buildSuper(layout({ blockDevices: [{ name: 'super', size: 8 * MiB }] }), join(dir, 'x.img')),
    ).rejects.toThrow(/not enough space/);
    await expect(buildSuper(layout({ metadataMaxSize: 512 }), join(dir, 'x.img'))).rejects.toThrow(
      /metadataMaxSize/,
    );
    await expect(
      buildSuper(layout({ partitions: [{ name: 'system', group: 'nope', size: 4096 }] }), join(dir, 'x.img')),
    ).rejects.toThrow(/unknown group/);
  });
});

describe('liblp reader rules beyond our own writer', () => {
  /** Recomputes both SHA-256 checksums of a metadata copy (header_size and tables_size from it). */
  function rechecksum(m: Buffer): Buffer {
    const hsize = m.readUInt32LE(8);
    const tsize = m.readUInt32LE(44);
    createHash('sha256')
      .update(m.subarray(hsize, hsize + tsize))
      .digest()
      .copy(m, 48);
    m.fill(0, 12, 44);
    createHash('sha256').update(m.subarray(0, hsize)).digest().copy(m, 12);
    return m;
  }
  const geo = { structSize: 52, metadataMaxSize: 65536, metadataSlotCount: 2, logicalBlockSize: 4096 };
  function metadata(attributes = 1, count = 1) {
    const names = ['system', 'vendor', 'product'].slice(0, count);
    return serializeMetadata({
      header: { minorVersion: 2, flags: 1 },
      partitions: names.map((name, i) => ({
        name,
        attributes,
        firstExtentIndex: i,
        numExtents: 1,
        groupIndex: 1,
      })),
      extents: names.map((_, i) => ({
        numSectors: 2048,
        targetType: 0,
        targetData: 2048 * (i + 1),
        targetSource: 0,
      })),
      groups: [
        { name: 'default', flags: 0, maximumSize: 0 },
        { name: 'main', flags: 0, maximumSize: 0 },
      ],
      blockDevices: [
        {
          firstLogicalSector: 2048,
          alignment: 1048576,
          alignmentOffset: 0,
          size: 64 * MiB,
          partitionName: 'super',
          flags: 0,
        },
      ],
    });
  }

  it('reads block-device entries with the entry_size stride (liblp does not check it)', () => {
    const m = metadata();
    const h = 256;
    const devAt = m.readUInt32LE(116);
    // Same table with 80-byte entries: 64 bytes of LpMetadataBlockDevice, 16 of future fields.
    const dev = Buffer.concat([m.subarray(h + devAt, h + devAt + 64), Buffer.alloc(16, 0xee)]);
    const grown = Buffer.concat([m.subarray(0, h + devAt), dev]);
    grown.writeUInt32LE(80, 116 + 8);
    grown.writeUInt32LE(devAt + 80, 44);
    const md = parseMetadata(rechecksum(grown), geo);
    expect(md.header.blockDevices.entrySize).toBe(80);
    expect(md.blockDevices[0]).toMatchObject({
      partitionName: 'super',
      size: 64 * MiB,
      firstLogicalSector: 2048,
    });
    // Partitions, extents and groups must have exactly their struct size, as in liblp.
    const bad = Buffer.from(m);
    bad.writeUInt32LE(56, 80 + 8);
    bad.writeUInt32LE(1, 80 + 4); // 1 * 56 still within tables_size
    const err = (() => {
      try {
        parseMetadata(rechecksum(bad), geo);
      } catch (e) {
        return e as FormatError;
      }
    })();
    expect(err).toBeInstanceOf(FormatError);
    expect(err!.field).toBe('header.partitions.entry_size');
  });

  it('raises the metadata to v10.1 for UPDATED/DISABLED attributes, which v10.0 readers reject', () => {
    const m = serializeMetadata({
      header: { minorVersion: 0, flags: 0 },
      partitions: [
        { name: 'system', attributes: 1 | 4 | 8, firstExtentIndex: 0, numExtents: 0, groupIndex: 0 },
      ],
      extents: [],
      groups: [{ name: 'default', flags: 0, maximumSize: 0 }],
      blockDevices: [
        {
          firstLogicalSector: 2048,
          alignment: 0,
          alignmentOffset: 0,
          size: 8 * MiB,
          partitionName: 'super',
          flags: 0,
        },
      ],
    });
    const md = parseMetadata(m, geo);
    expect([md.header.minorVersion, md.header.headerSize, md.partitions[0].attributes]).toEqual([1, 128, 13]);
    const v0 = Buffer.from(m);
    v0.writeUInt16LE(0, 6);
    expect(() => parseMetadata(rechecksum(v0), geo)).toThrow(/invalid attributes/);
  });

  it('names SLOT_SUFFIXED partitions per slot like AdjustMetadataForSlot (retrofit)', async () => {
    const p = join(dir, 'retrofit_empty.img');
    writeFileSync(p, Buffer.concat([serializeGeometry(geo), metadata(1 | 2)]));
    const a = await readSuper(p, { slot: 0 });
    const b = await readSuper(p, { slot: 1 });
    expect([a.partitions[0].name, a.partitions[0].slotName]).toEqual(['system', 'system_a']);
    expect(b.partitions[0].slotName).toBe('system_b');
    writeFileSync(p, Buffer.concat([serializeGeometry(geo), metadata(1)]));
    expect((await readSuper(p, { slot: 1 })).partitions[0].slotName).toBe('system');
  });

  it('reads a metadata copy whose tables run past metadata_max_size by up to a header, as liblp does', async () => {
    const m = metadata(1, 2);
    // metadata_max_size bounds tables_size only: 512 >= tables_size, but header + tables > 512.
    const small = { ...geo, metadataMaxSize: 512, metadataSlotCount: 1 };
    expect(m.length).toBeGreaterThan(512);
    expect(m.readUInt32LE(44)).toBeLessThanOrEqual(512);
    const img = Buffer.alloc(2 * MiB);
    serializeGeometry(small).copy(img, 4096);
    serializeGeometry(small).copy(img, 8192);
    m.copy(img, 12288); // primary of slot 0; its tail spills into the backup slot's bytes
    const p = join(dir, 'spill.img');
    writeFileSync(p, img);
    const info = await readSuper(p);
    expect(info.slots[0].primary).toBe('ok');
    expect(info.partitions[0].name).toBe('system');
  });
});

describe('fuzz', () => {
  it('only typed errors for thousands of mutated super_empty images', async () => {
    const base = readFileSync(join(dir, 'super_empty.img'));
    const r = prng(77);
    const p = join(dir, 'fuzz.img');
    let rejected = 0;
    const started = Date.now();
    for (let i = 0; i < 2000; i++) {
      // Mutate only the interesting part (geometry struct and metadata) most of the time.
      const m =
        r() < 0.5
          ? Buffer.concat([mutate(base.subarray(0, 64), r), base.subarray(64)])
          : Buffer.concat([base.subarray(0, 4096), mutate(base.subarray(4096), r)]);
      writeFileSync(p, m);
      try {
        await readSuper(p);
      } catch (e) {
        rejected++;
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped ${String(e)}`);
      }
    }
    expect(rejected).toBeGreaterThan(1000);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('parseMetadata with recomputed checksums still only throws typed errors', () => {
    // Mutations behind valid checksums exercise the table cross-checks, not just the SHA-256.
    const base = readFileSync(join(dir, 'super_empty.img'));
    const geo = parseGeometry(base);
    const r = prng(99);
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      const m = Buffer.from(base.subarray(4096));
      const hsize = m.readUInt32LE(8) === 256 ? 256 : 128;
      for (let k = 0; k < 3; k++) {
        const at = 80 + Math.floor(r() * (m.length - 80));
        if (at >= 128 && at < hsize) continue;
        m[at] = r() < 0.3 ? 0xff : Math.floor(r() * 256);
      }
      const tsize = Math.min(m.readUInt32LE(44), m.length - hsize);
      createHash('sha256')
        .update(m.subarray(hsize, hsize + tsize))
        .digest()
        .copy(m, 48);
      m.fill(0, 12, 44);
      createHash('sha256').update(m.subarray(0, hsize)).digest().copy(m, 12);
      try {
        parseMetadata(m, geo);
      } catch (e) {
        rejected++;
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped ${String(e)}`);
      }
    }
    expect(rejected).toBeGreaterThan(300);
  });
});

describe('omie inspect', () => {
  it('reports super, sparse super and super_empty as kind super', async () => {
    for (const f of ['super.img', 'super.simg', 'super_empty.img']) {
      const r = await omie(['inspect', '--json', join(dir, f)]);
      expect(r.exitCode, f).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.kind, f).toBe('super');
      expect(j.result.partitions.length).toBe(6);
    }
  });
});
