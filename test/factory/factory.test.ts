import { createWriteStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { openInput } from '../../scripts/conformance/open-input.ts';
import { FormatError, OmieError } from '../../scripts/errors.ts';
import {
  checkAndroidInfo,
  extractFactoryImage,
  formatAndroidInfo,
  openFactoryZip,
  parseAndroidInfo,
  readFactoryZip,
  writeFastbootZip,
} from '../../scripts/formats/factory-zip.ts';
import { parseErofs, parseExt4 } from '../../scripts/formats/fsdetect.ts';
import { buildSuperEmpty, expandAbLayout } from '../../scripts/formats/super/index.ts';
import { sniff } from '../../scripts/inspect/detect.ts';
import { factoryZipDetector } from '../../scripts/inspect/factory-zip.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';
import { randomBytes } from '../sparse/fixtures.ts';

const dir = workDir('factory');
const ANDROID_INFO = formatAndroidInfo({
  board: ['omie10', 'omie10pro'],
  bootloaderVersion: 'obl-1.2.3',
  basebandVersion: 'g5123b-1',
  extra: [{ name: 'version-bootloader', values: ['obl-9'], forProduct: 'omie10pro' }],
});
let bootImg: string;
let systemImg: string;
let erofsImg: string;

async function zipOf(
  out: string,
  entries: Array<{ name: string; data?: Buffer; file?: string; compress?: boolean }>,
) {
  const z = new yazl.ZipFile();
  for (const e of entries) {
    const o = { mtime: new Date(2010, 0, 1), compress: e.compress ?? true };
    if (e.file) z.addFile(e.file, e.name, o);
    else z.addBuffer(e.data ?? Buffer.alloc(0), e.name, o);
  }
  z.end();
  await pipeline(z.outputStream, createWriteStream(out));
}

beforeAll(async () => {
  bootImg = join(dir, 'boot.img');
  writeFileSync(bootImg, randomBytes(1, 300_000));
  const src = join(dir, 'src');
  await execa('mkdir', ['-p', src]);
  writeFileSync(join(src, 'hello.txt'), 'hello');
  systemImg = join(dir, 'system.img');
  await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'system', '-b', '4096', '-d', src, systemImg, '4M']);
  erofsImg = join(dir, 'product.img');
  await execa('mkfs.erofs', [
    '--quiet',
    '-T',
    '1234567890',
    '-U',
    '01234567-89ab-cdef-0123-456789abcdef',
    erofsImg,
    src,
  ]);
});

describe('android-info.txt', () => {
  it('parses require/reject/require-for-product lines as fastboot does', () => {
    const a = parseAndroidInfo(
      'require board=alpha|beta\nrequire version-bootloader = 1.0 | 1.1\n\nrequire-for-product:beta version-baseband=b2\nreject partition-exists=vendor_dlkm\nrequire version-baseband=r1\nproduct=gamma\nrequire partition-exists=vendor_kernel_boot\n',
    );
    expect(a.boards).toEqual(['alpha', 'beta', 'gamma']); // a bare "name=value" is a require
    expect(a.bootloaderVersions).toEqual(['1.0', '1.1']);
    expect(a.basebandVersions).toEqual(['r1']);
    expect(a.requirements.find((r) => r.forProduct)).toMatchObject({
      forProduct: 'beta',
      name: 'version-baseband',
      values: ['b2'],
    });
    expect(a.requirements.find((r) => r.reject)).toMatchObject({
      name: 'partition-exists',
      values: ['vendor_dlkm'],
    });
    expect(a.partitionsRequired).toEqual(['vendor_dlkm', 'vendor_kernel_boot']);
    expect(a.requirements[0].name).toBe('product'); // "board" is fastboot's alias of product
    expect(a.syntaxErrors).toEqual([]);
  });

  it('skips lines fastboot cannot parse (CRLF, indented, no "="), and strict mode names them', () => {
    const a = parseAndroidInfo('require board=a\nthis is not valid\n  require board=b\nrequire board=c\r\n');
    expect(a.boards).toEqual(['a']);
    expect(a.syntaxErrors.map((e) => e.line)).toEqual([2, 3, 4]);
    const err = (() => {
      try {
        parseAndroidInfo('require board=a\nthis is not valid\n', undefined, { strict: true });
      } catch (e) {
        return e as FormatError;
      }
    })();
    expect(err).toBeInstanceOf(FormatError);
    expect(err!.message).toMatch(/line 2/);
  });

  it('checks a device like fastboot CheckRequirement (wildcards, reject, per-product, failed getvar)', async () => {
    const a = parseAndroidInfo(
      [
        'require board=oriole|raven',
        'require version-bootloader=slider-1.2-*',
        'require-for-product:raven version-baseband=g5123b-*',
        'reject version-baseband=g5123b-bad',
        'require partition-exists=vendor_dlkm',
        'require secure=yes',
      ].join('\n'),
    );
    const device = (vars: Record<string, string>) => (n: string) => vars[n];
    const ok = {
      product: 'oriole',
      'version-bootloader': 'slider-1.2-9152140',
      'version-baseband': 'x',
      secure: 'yes',
    };
    expect(await checkAndroidInfo(a, device(ok))).toEqual([]);
    const bad = await checkAndroidInfo(
      a,
      device({ product: 'raven', 'version-bootloader': 'slider-1.3-1', 'version-baseband': 'g5123b-bad' }),
    );
    expect(bad.map((f) => [f.requirement.name, f.device])).toEqual([
      ['version-bootloader', 'slider-1.3-1'],
      ['version-baseband', 'g5123b-bad'], // rejected value (the raven-only line matches)
      ['secure', undefined], // getvar failed
    ]);
    expect((await checkAndroidInfo(a, device({ ...ok, product: 'husky' })))[0].requirement.name).toBe(
      'product',
    );
  });

  it('formats what it parses', () => {
    const a = parseAndroidInfo(ANDROID_INFO);
    expect(a.boards).toEqual(['omie10', 'omie10pro']);
    expect(a.bootloaderVersions).toEqual(['obl-1.2.3']);
    expect(a.basebandVersions).toEqual(['g5123b-1']);
    expect(a.requirements.at(-1)).toMatchObject({ forProduct: 'omie10pro', values: ['obl-9'] });
  });
});

describe('fastboot zip', () => {
  it('is deterministic, valid for unzip, and lists/extracts its images', async () => {
    const a = join(dir, 'update-a.zip');
    const b = join(dir, 'update-b.zip');
    const spec = {
      androidInfo: ANDROID_INFO,
      images: [
        { name: 'boot', path: bootImg },
        { name: 'system.img', path: systemImg },
      ],
    };
    await writeFastbootZip(a, spec);
    await new Promise((r) => setTimeout(r, 1100)); // a different wall clock must not matter
    await writeFastbootZip(b, spec);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const t = await execa('unzip', ['-t', a]);
    expect(t.stdout).toMatch(/No errors detected/);
    const l = await execa('unzip', ['-Z1', a]);
    expect(l.stdout.trim().split('\n')).toEqual(['android-info.txt', 'boot.img', 'system.img']);
    const info = await readFactoryZip(a);
    expect(info.kind).toBe('fastboot');
    expect(info.androidInfo?.boards).toEqual(['omie10', 'omie10pro']);
    expect(info.images.map((i) => [i.partition, i.entry, i.size])).toEqual([
      ['boot', 'boot.img', 300_000],
      ['system', 'system.img', readFileSync(systemImg).length],
    ]);
    const x = join(dir, 'boot.out');
    await extractFactoryImage(a, 'boot.img', x);
    expect(readFileSync(x).equals(readFileSync(bootImg))).toBe(true);
  });

  it('refuses an invalid android-info.txt and duplicate image names', async () => {
    await expect(
      writeFastbootZip(join(dir, 'x.zip'), { androidInfo: 'garbage line', images: [] }),
    ).rejects.toBeInstanceOf(FormatError);
    await expect(
      writeFastbootZip(join(dir, 'x.zip'), {
        androidInfo: ANDROID_INFO,
        images: [
          { name: 'boot', path: bootImg },
          { name: 'boot.img', path: bootImg },
        ],
      }),
    ).rejects.toBeInstanceOf(OmieError);
  });
});

describe('extraction checks the data against the central directory', () => {
  for (const compress of [false, true]) {
    it(`a changed byte in a ${compress ? 'deflated' : 'stored'} image is a CRC-32 error, never a silently wrong image`, async () => {
      const zip = join(dir, `crc.${compress}.zip`);
      // Incompressible: deflate stores it, so a changed byte keeps the stream valid.
      const data = randomBytes(7, 3 << 20);
      await zipOf(zip, [
        { name: 'android-info.txt', data: Buffer.from(ANDROID_INFO) },
        { name: 'boot.img', data, compress },
      ]);
      const good = join(dir, `crc.${compress}.good`);
      await extractFactoryImage(zip, 'boot.img', good);
      expect(readFileSync(good).equals(data)).toBe(true);
      const bytes = readFileSync(zip);
      bytes[bytes.length >> 1] ^= 0x01; // inside boot.img's data

      const bad = join(dir, `crc.${compress}.bad.zip`);
      writeFileSync(bad, bytes);
      const err = await extractFactoryImage(bad, 'boot.img', join(dir, `crc.${compress}.out`)).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(FormatError);
      expect((err as FormatError).context).toMatchObject({ field: 'crc32' });
    });
  }
});

describe('Pixel-style factory zip (nested image-*.zip)', () => {
  for (const stored of [true, false]) {
    it(`lists and extracts images of a ${stored ? 'stored' : 'deflated'} nested zip`, async () => {
      const inner = join(dir, `image-omie10-ab1.${stored}.zip`);
      await writeFastbootZip(inner, {
        androidInfo: ANDROID_INFO,
        images: [
          { name: 'boot', path: bootImg },
          { name: 'system', path: systemImg },
        ],
      });
      const outer = join(dir, `omie10-ab1-factory.${stored}.zip`);
      await zipOf(outer, [
        { name: 'omie10-ab1/bootloader-omie10-obl-1.2.3.img', data: randomBytes(2, 5000) },
        { name: 'omie10-ab1/radio-omie10-g5123b-1.img', data: randomBytes(3, 7000) },
        { name: 'omie10-ab1/flash-all.sh', data: Buffer.from('#!/bin/sh\n') },
        { name: 'omie10-ab1/image-omie10-ab1.zip', file: inner, compress: !stored },
      ]);
      const info = await readFactoryZip(outer);
      expect(info.kind).toBe('factory');
      expect(info.nestedZips).toEqual(['omie10-ab1/image-omie10-ab1.zip']);
      expect(info.androidInfoEntry).toBe('omie10-ab1/image-omie10-ab1.zip!android-info.txt');
      expect(info.androidInfo?.bootloaderVersions).toEqual(['obl-1.2.3']);
      expect(info.images.map((i) => i.partition)).toEqual(['bootloader', 'radio', 'boot', 'system']);
      expect(info.others).toEqual(['omie10-ab1/flash-all.sh']);
      const x = join(dir, `system.nested.${stored}`);
      await extractFactoryImage(outer, 'omie10-ab1/image-omie10-ab1.zip!system.img', x);
      expect(readFileSync(x).equals(readFileSync(systemImg))).toBe(true);
      const y = join(dir, `radio.${stored}`);
      await extractFactoryImage(outer, 'omie10-ab1/radio-omie10-g5123b-1.img', y);
      expect(readFileSync(y).equals(randomBytes(3, 7000))).toBe(true);
    });
  }

  it('the detector matches factory/fastboot zips only, never APKs or OTA zips', async () => {
    const apk = join(dir, 'app.apk');
    await zipOf(apk, [
      { name: 'AndroidManifest.xml', data: Buffer.from([3, 0, 8, 0]) },
      { name: 'res/raw/x.img', data: Buffer.alloc(10) },
    ]);
    const ota = join(dir, 'ota.zip');
    await zipOf(ota, [
      { name: 'payload.bin', data: Buffer.from('CrAU'), compress: false },
      { name: 'payload_properties.txt', data: Buffer.from('FILE_HASH=x\n') },
      { name: 'META-INF/com/android/metadata', data: Buffer.from('ota-type=AB\n') },
    ]);
    const plain = join(dir, 'plain.zip');
    await zipOf(plain, [{ name: 'readme.txt', data: Buffer.from('hi') }]);
    expect(await factoryZipDetector.detect(await sniff(apk))).toBe(false);
    expect(await factoryZipDetector.detect(await sniff(ota))).toBe(false);
    expect(await factoryZipDetector.detect(await sniff(plain))).toBe(false);
    expect(await factoryZipDetector.detect(await sniff(join(dir, 'update-a.zip')))).toBe(true);
    expect(await factoryZipDetector.detect(await sniff(join(dir, 'omie10-ab1-factory.true.zip')))).toBe(true);
    const r = await omie(['inspect', '--json', join(dir, 'omie10-ab1-factory.false.zip')]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('factory-zip');
    expect(j.result.images.length).toBe(4);
  });
});

describe('openInput on a Pixel factory zip', () => {
  for (const stored of [false, true]) {
    it(`yields the logical partitions from separate (sparse) images, super_empty.img as layout only (${stored ? 'stored' : 'deflated'} image zip)`, async () => {
      const d = join(dir, `pixel-${stored}`);
      await rm(d, { recursive: true, force: true });
      await mkdir(join(d, 'work'), { recursive: true });
      // The logical partitions as AOSP ships them: ext4/erofs, sparse (img2simg is the oracle writer).
      const systemSparse = join(d, 'system.img');
      await execa('img2simg', [systemImg, systemSparse]);
      const vendorRaw = join(d, 'vendor.raw');
      writeFileSync(vendorRaw, Buffer.concat([randomBytes(7, 40_000), Buffer.alloc(200_000)]));
      const vendorSparse = join(d, 'vendor.img');
      await execa('img2simg', [vendorRaw, vendorSparse]);
      const superEmpty = join(d, 'super_empty.img');
      await buildSuperEmpty(
        expandAbLayout({
          blockDevices: [{ name: 'super', size: 64 * 1024 * 1024 }],
          groups: [{ name: 'google_dynamic_partitions', maxSize: 30 * 1024 * 1024 }],
          partitions: ['system', 'product', 'vendor'].map((n) => ({
            name: n,
            group: 'google_dynamic_partitions',
            size: 8 * 1024 * 1024,
            readonly: true,
          })),
          metadataSlots: 3,
          metadataMaxSize: 65536,
          virtualAB: true,
        }),
        superEmpty,
        { keepSizes: true }, // sizes in the table must not make it look like a full super
      );
      const inner = join(d, 'image-oriole-ab1.zip');
      const info = formatAndroidInfo({
        board: 'oriole',
        bootloaderVersion: 'slider-1.2-1',
        basebandVersion: 'g5123b-1',
      });
      await zipOf(inner, [
        { name: 'android-info.txt', data: Buffer.from(info) },
        { name: 'boot.img', file: bootImg },
        { name: 'vbmeta.img', data: randomBytes(9, 4096) },
        { name: 'super_empty.img', file: superEmpty },
        { name: 'system.img', file: systemSparse },
        { name: 'product.img', file: erofsImg },
        { name: 'vendor.img', file: vendorSparse },
      ]);
      const outer = join(d, 'oriole-ab1-factory.zip');
      await zipOf(outer, [
        { name: 'oriole-ab1/bootloader-oriole-slider-1.2-1.img', data: randomBytes(2, 5000) },
        { name: 'oriole-ab1/radio-oriole-g5123b-1.img', data: randomBytes(3, 7000) },
        { name: 'oriole-ab1/flash-all.sh', data: Buffer.from('#!/bin/sh\n') },
        { name: 'oriole-ab1/flash-base.sh', data: Buffer.from('#!/bin/sh\n') },
        { name: 'oriole-ab1/image-oriole-ab1.zip', file: inner, compress: !stored },
      ]);
      const opened = await openInput(outer, join(d, 'work'));
      expect(opened.kind).toBe('fastboot-zip');
      expect(opened.androidInfo?.boards).toEqual(['oriole']);
      expect(Object.keys(opened.images).sort()).toEqual(
        ['boot', 'bootloader', 'product', 'radio', 'system', 'vbmeta', 'vendor'].sort(),
      );
      // simg2img is the oracle for the expanded sparse images.
      for (const [name, sparse] of [
        ['system', systemSparse],
        ['vendor', vendorSparse],
      ]) {
        const want = join(d, `${name}.simg2img`);
        await execa('simg2img', [sparse, want]);
        expect(readFileSync(opened.images[name]).equals(readFileSync(want))).toBe(true);
      }
      expect(readFileSync(opened.images.product).equals(readFileSync(erofsImg))).toBe(true);
      expect(readFileSync(opened.images.boot).equals(readFileSync(bootImg))).toBe(true);
      // The inflated image zip lived in the work folder and is gone; nothing is left behind for
      // the consumed super_empty.img or the sparse copies.
      expect(readdirSync(join(d, 'work')).filter((f) => f.startsWith('omie-factory-'))).toEqual([]);
      expect(readdirSync(join(d, 'work', 'zip')).sort()).toEqual(
        ['boot.img', 'bootloader.img', 'product.img', 'radio.img', 'vbmeta.img'].sort(),
      );
      // The same factory image unzipped into a folder: the partitions come from its image-*.zip.
      const unzipped = join(d, 'unzipped');
      await mkdir(join(d, 'work2'), { recursive: true });
      await execa('unzip', ['-q', '-o', outer, '-d', unzipped]);
      const fromDir = await openInput(join(unzipped, 'oriole-ab1'), join(d, 'work2'));
      expect(fromDir.kind).toBe('images');
      expect(fromDir.androidInfo?.boards).toEqual(['oriole']);
      expect(Object.keys(fromDir.images).sort()).toEqual(
        ['boot', 'bootloader', 'product', 'radio', 'system', 'vbmeta', 'vendor'].sort(),
      );
      expect(readFileSync(fromDir.images.system).equals(readFileSync(opened.images.system))).toBe(true);
    });
  }
});

describe('filesystem detection', () => {
  it('ext4 superblock fields agree with dumpe2fs -h', async () => {
    const info = parseExt4(readFileSync(systemImg).subarray(0, 4096));
    const { stdout } = await execa('dumpe2fs', ['-h', systemImg]);
    const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(stdout)?.[1].trim();
    expect(info.blockSize).toBe(Number(field('Block size')));
    expect(info.blocksCount).toBe(Number(field('Block count')));
    expect(info.freeBlocks).toBe(Number(field('Free blocks')));
    expect(info.inodesCount).toBe(Number(field('Inode count')));
    expect(info.inodeSize).toBe(Number(field('Inode size')));
    expect(info.volumeName).toBe(field('Filesystem volume name'));
    expect(info.uuid).toBe(field('Filesystem UUID'));
    expect(info.features.sort()).toEqual(field('Filesystem features')!.split(/\s+/).sort());
  });

  it('erofs superblock fields agree with dump.erofs', async () => {
    const info = parseErofs(readFileSync(erofsImg).subarray(0, 4096));
    const { stdout } = await execa('dump.erofs', [erofsImg]);
    const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(stdout)?.[1].trim();
    expect(info.blocks).toBe(Number(field('Filesystem blocks')));
    expect(info.inodes).toBe(Number(field('Filesystem inode count')));
    expect(info.uuid).toBe(field('Filesystem UUID'));
    expect(info.buildTime).toBe(1234567890);
    expect(info.features.sort()).toEqual(field('Filesystem features')!.split(/\s+/).sort());
  });

  it('inspect reports ext4 and erofs images', async () => {
    for (const [f, kind] of [
      [systemImg, 'ext4'],
      [erofsImg, 'erofs'],
    ]) {
      const r = await omie(['inspect', '--json', f]);
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout).kind).toBe(kind);
    }
  });

  it('bad superblocks are typed errors', () => {
    const b = Buffer.from(readFileSync(systemImg).subarray(0, 4096));
    b.writeUInt32LE(40, 1024 + 24);
    expect(() => parseExt4(b)).toThrow(FormatError);
    const e = Buffer.from(readFileSync(erofsImg).subarray(0, 4096));
    e[1024 + 12] = 40;
    expect(() => parseErofs(e)).toThrow(FormatError);
  });
});

describe('fuzz', () => {
  it('only typed errors for mutated zips and android-info.txt', async () => {
    const base = readFileSync(join(dir, 'update-a.zip'));
    const r = prng(4242);
    const p = join(dir, 'fuzz.zip');
    let rejected = 0;
    const started = Date.now();
    for (let i = 0; i < 1500; i++) {
      writeFileSync(p, mutate(base, r));
      try {
        await readFactoryZip(p);
      } catch (e) {
        rejected++;
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped ${String(e)}`);
      }
      try {
        parseAndroidInfo(mutate(Buffer.from(ANDROID_INFO), r).toString('latin1'));
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped ${String(e)}`);
      }
    }
    expect(rejected).toBeGreaterThan(50);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('only typed errors for a factory zip whose stored image zip is corrupted (listing and extracting)', async () => {
    const outer = join(dir, 'omie10-ab1-factory.true.zip'); // stored nested zip, from the test above
    const base = readFileSync(outer);
    // Mutate only inside the nested zip's bytes: the outer zip stays valid, the inner one is not.
    const innerAt = base.indexOf(
      Buffer.from('PK\x03\x04', 'latin1'),
      base.indexOf('image-omie10-ab1.zip') + 20,
    );
    expect(innerAt).toBeGreaterThan(0);
    const r = prng(777);
    const p = join(dir, 'fuzz-factory.zip');
    let rejected = 0;
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(base);
      const region = b.subarray(innerAt, Math.min(b.length, innerAt + 400_000));
      mutate(region, r).copy(region, 0, 0, region.length);
      // also hit the inner central directory, near the end of the inner zip
      const tail = b.length - 600 - Math.floor(r() * 400);
      b[tail] = Math.floor(r() * 256);
      writeFileSync(p, b);
      try {
        const f = await openFactoryZip(p);
        try {
          for (const img of f.info.images) await f.extract(img.entry, join(dir, 'fuzz-out.img'));
        } finally {
          await f.close();
        }
      } catch (e) {
        rejected++;
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped ${String(e)}`);
      }
    }
    expect(rejected).toBeGreaterThan(20);
  });
});
