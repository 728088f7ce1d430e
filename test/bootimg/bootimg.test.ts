import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  type BootImageInfo,
  decodeOsVersion,
  parseBootImageHeader,
  readBootImage,
  readBootImageSection,
} from '../../scripts/formats/bootimg.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';

const W = workDir('bootimg');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function blob(seed: number, size: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

const files: Record<string, Buffer> = {};
function input(name: string, seed: number, size: number): string {
  const p = join(W, name);
  files[name] = blob(seed, size);
  writeFileSync(p, files[name]);
  return p;
}

/** Debian's unpack_bootimg: its printed fields and the sections it extracted. */
async function unpack(img: string) {
  const out = join(W, `unpacked-${img.split('/').at(-1)}`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const r = await execa('unpack_bootimg', ['--boot_img', img, '--out', out]);
  const fields: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 2);
  }
  const section = (n: string) => (existsSync(join(out, n)) ? readFileSync(join(out, n)) : undefined);
  return { fields, section };
}

const LONG_CMDLINE = `console=ttyMSM0,115200n8 androidboot.hardware=omie ${'quiet loglevel=3 '.repeat(40)}end=1`;
const hex = (n: number | undefined) => `0x${(n ?? 0).toString(16)}`;

async function mkbootimg(args: string[]) {
  await execa('mkbootimg', args);
}

/** Compares our parse with unpack_bootimg's printout and extracted sections, field by field. */
async function compareWithUnpack(img: string, info: BootImageInfo) {
  const { fields, section } = await unpack(img);
  if (info.kind === 'vendor_boot') {
    expect(fields.boot_magic).toBe('VNDRBOOT');
    expect(Number(fields['vendor boot image header version'])).toBe(info.headerVersion);
    expect(fields['kernel load address']).toBe(hex(info.kernelAddr));
    expect(fields['ramdisk load address']).toBe(hex(info.ramdiskAddr));
    expect(Number(fields['vendor ramdisk size'])).toBe(info.ramdiskSize);
    expect(fields['vendor command line args']).toBe(info.cmdline);
    expect(fields['kernel tags load address']).toBe(hex(info.tagsAddr));
    expect(fields['product name']).toBe(info.name);
    expect(Number(fields['dtb size'])).toBe(info.dtbSize);
    expect(fields['dtb address']).toBe(hex(info.dtbAddr));
    const names: [string, string][] = [
      ['vendor_ramdisk', 'vendor_ramdisk'],
      ['dtb', 'dtb'],
    ];
    for (const [ours, theirs] of names) {
      const s = info.sections.find((x) => x.name === ours)!;
      expect(sha(await readBootImageSection(img, s)), ours).toBe(sha(section(theirs)!));
    }
    return;
  }
  expect(fields.boot_magic).toBe('ANDROID!');
  expect(Number(fields['boot image header version'])).toBe(info.headerVersion);
  expect(Number(fields.kernel_size)).toBe(info.kernelSize);
  expect(Number(fields['ramdisk size'])).toBe(info.ramdiskSize);
  expect(fields['os version']).toBe(info.osVersion);
  expect(fields['os patch level']).toBe(info.osPatchLevel);
  if (info.headerVersion < 3) {
    expect(fields['kernel load address']).toBe(hex(info.kernelAddr));
    expect(fields['ramdisk load address']).toBe(hex(info.ramdiskAddr));
    expect(Number(fields['second bootloader size'])).toBe(info.secondSize);
    expect(fields['second bootloader load address']).toBe(hex(info.secondAddr));
    expect(fields['kernel tags load address']).toBe(hex(info.tagsAddr));
    expect(Number(fields['page size'])).toBe(info.pageSize);
    expect(fields['product name']).toBe(info.name);
    expect(fields['command line args']).toBe(info.cmdlineField);
    expect(fields['additional command line args']).toBe(info.extraCmdline);
  } else {
    expect(fields['command line args']).toBe(info.cmdline);
  }
  if (info.headerVersion === 1 || info.headerVersion === 2) {
    expect(Number(fields['recovery dtbo size'])).toBe(info.recoveryDtboSize);
    expect(fields['recovery dtbo offset']).toBe(hex(info.recoveryDtboOffset));
    expect(Number(fields['boot header size'])).toBe(info.headerSize);
  }
  if (info.headerVersion === 2) {
    expect(Number(fields['dtb size'])).toBe(info.dtbSize);
    expect(fields['dtb address']).toBe(hex(info.dtbAddr));
  }
  for (const s of info.sections) {
    if (s.size === 0 || s.name === 'signature') continue;
    const theirs = section(s.name);
    expect(theirs, `unpack_bootimg extracted ${s.name}`).toBeDefined();
    expect(sha(await readBootImageSection(img, s)), s.name).toBe(sha(theirs!));
  }
}

let kernel: string;
let ramdisk: string;
let second: string;
let dtb: string;

let vramdisk: string;

beforeAll(() => {
  kernel = input('kernel', 1, 50_001);
  ramdisk = input('ramdisk', 2, 20_000);
  second = input('second', 3, 3000);
  dtb = input('dtb', 4, 7000);
  input('dtbo', 5, 5000); // recovery_dtbo for the hand-built v2
  vramdisk = input('vendor_ramdisk', 6, 12_345);
});

describe('boot images built by mkbootimg, checked against unpack_bootimg', () => {
  it('v0 (second bootloader, 2048-byte pages, long cmdline split into extra_cmdline)', async () => {
    const img = join(W, 'boot-v0.img');
    await mkbootimg([
      ...['--kernel', kernel, '--ramdisk', ramdisk, '--second', second],
      ...['--cmdline', LONG_CMDLINE, '--board', 'omie-v0', '--pagesize', '2048'],
      ...['--os_version', '11.0.0', '--os_patch_level', '2023-05', '--header_version', '0', '-o', img],
    ]);
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      kind: 'boot',
      headerVersion: 0,
      pageSize: 2048,
      kernelSize: files.kernel.length,
      ramdiskSize: files.ramdisk.length,
      secondSize: files.second.length,
      osVersion: '11.0.0',
      osPatchLevel: '2023-05',
      name: 'omie-v0',
      cmdline: LONG_CMDLINE,
      idMatches: true,
    });
    expect(info.extraCmdline!.length).toBeGreaterThan(0);
    await compareWithUnpack(img, info);
  });

  it('legacy Qualcomm v0 with a QCDT table (dt_size where header_version is now)', async () => {
    const v0 = readFileSync(join(W, 'boot-v0.img')); // from the test above
    const page = 2048;
    const qcdt = Buffer.concat([Buffer.from('QCDT', 'latin1'), blob(8, 9000)]);
    const img = Buffer.concat([v0, pad(qcdt, page)]);
    img.writeUInt32LE(qcdt.length, 40); // dt_size
    img.writeUInt32LE(0, 44); // "unused" in CAF's header
    // CAF mkbootimg's id: SHA-1 over each section and its u32 size, the QCDT table included.
    const h = createHash('sha1');
    for (const b of [files.kernel, files.ramdisk, files.second, qcdt]) {
      const n = Buffer.alloc(4);
      n.writeUInt32LE(b.length);
      h.update(b).update(n);
    }
    Buffer.concat([h.digest(), Buffer.alloc(12)]).copy(img, 576);
    const p = join(W, 'boot-v0-qcdt.img');
    writeFileSync(p, img);
    const info = await readBootImage(p);
    expect(info).toMatchObject({ headerVersion: 0, legacyDtSize: qcdt.length, idMatches: true });
    const dt = info.sections.find((x) => x.name === 'qcdt')!;
    expect(dt.offset).toBe(v0.length);
    expect((await readBootImageSection(p, dt)).equals(qcdt)).toBe(true);
    expect(info.imageEnd).toBe(img.length);
    // A value at offset 40 that cannot be a dt_size (the section would end past the file) stays
    // an unsupported header version.
    const bad = Buffer.from(img);
    bad.writeUInt32LE(img.length, 40);
    expect(() => parseBootImageHeader(bad, bad.length)).toThrow(/unsupported boot image header version/);
  });

  // Debian's mkbootimg 29.0.6 crashes computing recovery_dtbo_offset (a float under Python 3), so
  // mkbootimg builds v1/v2 without it and a hand-built v2 below covers recovery_dtbo.
  it('v1', async () => {
    const img = join(W, 'boot-v1.img');
    await mkbootimg([
      ...['--kernel', kernel, '--ramdisk', ramdisk, '--cmdline', 'console=ttyS0'],
      ...['--os_version', '10.0.1', '--os_patch_level', '2020-12', '--header_version', '1', '-o', img],
    ]);
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      headerVersion: 1,
      headerSize: 1648,
      recoveryDtboSize: 0,
      cmdline: 'console=ttyS0',
      osVersion: '10.0.1',
      osPatchLevel: '2020-12',
      idMatches: true,
    });
    await compareWithUnpack(img, info);
  });

  it('v2 (dtb, 8192-byte pages, custom base)', async () => {
    const img = join(W, 'boot-v2.img');
    await mkbootimg([
      ...['--kernel', kernel, '--ramdisk', ramdisk, '--second', second, '--dtb', dtb],
      ...['--base', '0x80000000', '--pagesize', '8192', '--cmdline', LONG_CMDLINE, '--board', 'omie'],
      ...['--os_version', '12.1.0', '--os_patch_level', '2022-07', '--header_version', '2', '-o', img],
    ]);
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      headerVersion: 2,
      headerSize: 1660,
      pageSize: 8192,
      dtbSize: files.dtb.length,
      kernelAddr: 0x80008000,
      osVersion: '12.1.0',
      osPatchLevel: '2022-07',
      idMatches: true,
    });
    expect(info.sections.map((s) => s.name)).toEqual(['kernel', 'ramdisk', 'second', 'dtb']);
    await compareWithUnpack(img, info);
  });

  it('v2 with recovery dtbo (hand-built like AOSP mkbootimg; unpack_bootimg reads it)', async () => {
    const page = 4096;
    const h = Buffer.alloc(1660);
    h.write('ANDROID!', 0, 'latin1');
    const sizes = [files.kernel.length, files.ramdisk.length, files.second.length];
    h.writeUInt32LE(sizes[0], 8);
    h.writeUInt32LE(0x10008000, 12);
    h.writeUInt32LE(sizes[1], 16);
    h.writeUInt32LE(0x11000000, 20);
    h.writeUInt32LE(sizes[2], 24);
    h.writeUInt32LE(0x10f00000, 28);
    h.writeUInt32LE(0x10000100, 32);
    h.writeUInt32LE(page, 36);
    h.writeUInt32LE(2, 40);
    h.writeUInt32LE(osVersionField([9, 0, 0], 2019, 1), 44);
    h.write('hand', 48, 'latin1');
    h.write('console=ttyS2', 64, 'latin1');
    const dtboOffset = page * (1 + sizes.reduce((a, s) => a + Math.ceil(s / page), 0));
    h.writeUInt32LE(files.dtbo.length, 1632);
    h.writeBigUInt64LE(BigInt(dtboOffset), 1636);
    h.writeUInt32LE(1660, 1644);
    h.writeUInt32LE(files.dtb.length, 1648);
    h.writeBigUInt64LE(0x11f00000n, 1652);
    const img = join(W, 'boot-v2-dtbo.img');
    const parts = [files.kernel, files.ramdisk, files.second, files.dtbo, files.dtb].map((b) => pad(b, page));
    writeFileSync(img, Buffer.concat([pad(h, page), ...parts]));
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      headerVersion: 2,
      recoveryDtboSize: files.dtbo.length,
      recoveryDtboOffset: dtboOffset,
      osVersion: '9.0.0',
      osPatchLevel: '2019-01',
      cmdline: 'console=ttyS2',
      idMatches: false, // no id written
    });
    expect(info.sections.map((s) => s.name)).toEqual(['kernel', 'ramdisk', 'second', 'recovery_dtbo', 'dtb']);
    await compareWithUnpack(img, info);

    // recovery_dtbo_offset is honoured for recovery_dtbo only: the dtb is still found by counting
    // pages (unpack_bootimg, bootloaders), even when recovery_dtbo is stored elsewhere.
    const moved = Buffer.concat([pad(h, page), ...parts, parts[3]]);
    const movedAt = moved.length - parts[3].length;
    moved.writeBigUInt64LE(BigInt(movedAt), 1636);
    const img2 = join(W, 'boot-v2-dtbo-moved.img');
    writeFileSync(img2, moved);
    const info2 = await readBootImage(img2);
    expect(info2.sections.find((s) => s.name === 'recovery_dtbo')!.offset).toBe(movedAt);
    expect(info2.sections.find((s) => s.name === 'dtb')!.offset).toBe(info.sections.at(-1)!.offset);
    expect(info2.imageEnd).toBe(moved.length);
    await compareWithUnpack(img2, info2);
  });

  it('v3 boot + v3 vendor_boot', async () => {
    const img = join(W, 'boot-v3.img');
    const vimg = join(W, 'vendor_boot-v3.img');
    const build = (out: string, vout: string, page: string) =>
      mkbootimg([
        ...['--kernel', kernel, '--ramdisk', ramdisk, '--cmdline', LONG_CMDLINE],
        ...['--os_version', '13.0.0', '--os_patch_level', '2024-02', '--header_version', '3', '-o', out],
        ...['--vendor_boot', vout, '--vendor_ramdisk', vramdisk, '--dtb', dtb],
        ...['--vendor_cmdline', 'androidboot.vendor=1', '--board', 'omie-vendor', '--pagesize', page],
      ]);
    await build(img, vimg, '4096');
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      kind: 'boot',
      headerVersion: 3,
      pageSize: 4096,
      cmdline: LONG_CMDLINE,
      osVersion: '13.0.0',
      osPatchLevel: '2024-02',
    });
    await compareWithUnpack(img, info);
    const v = await readBootImage(vimg);
    expect(v).toMatchObject({
      kind: 'vendor_boot',
      headerVersion: 3,
      pageSize: 4096,
      ramdiskSize: files.vendor_ramdisk.length,
      dtbSize: files.dtb.length,
      cmdline: 'androidboot.vendor=1',
      name: 'omie-vendor',
    });
    await compareWithUnpack(vimg, v);
    // With 2048-byte pages the 2112-byte header spans two pages: mkbootimg pads it so, AOSP's
    // unpack_bootimg counts pages the same way (Debian's older unpack_bootimg assumes one page).
    const vimg2k = join(W, 'vendor_boot-v3-2k.img');
    await build(join(W, 'boot-v3-unused.img'), vimg2k, '2048');
    const v2k = await readBootImage(vimg2k);
    expect(v2k.pageSize).toBe(2048);
    expect(v2k.sections[0].offset).toBe(4096);
    expect(sha(await readBootImageSection(vimg2k, v2k.sections[0]))).toBe(sha(files.vendor_ramdisk));
    expect(sha(await readBootImageSection(vimg2k, v2k.sections[1]))).toBe(sha(files.dtb));
    // AOSP unpack_bootimg counts header pages from header_size, not from the struct size: a
    // larger header_size moves every section by whole pages. (This mkbootimg writes 2108.)
    expect(v2k.headerSize).toBe(2108);
    const raw = readFileSync(vimg2k);
    const bigger = Buffer.concat([raw.subarray(0, 4096), Buffer.alloc(2048), raw.subarray(4096)]);
    bigger.writeUInt32LE(4200, 2096);
    const vbig = join(W, 'vendor_boot-v3-bigheader.img');
    writeFileSync(vbig, bigger);
    const vb = await readBootImage(vbig);
    expect(vb.sections.map((x) => x.offset)).toEqual(v2k.sections.map((x) => x.offset + 2048));
    expect(sha(await readBootImageSection(vbig, vb.sections[0]))).toBe(sha(files.vendor_ramdisk));
    expect(sha(await readBootImageSection(vbig, vb.sections[1]))).toBe(sha(files.dtb));
  });
});

/**
 * Debian's mkbootimg stops at v3, so v4 images (boot with signature, init_boot, vendor_boot with
 * ramdisk table and bootconfig) are built here byte by byte per bootimg.h.
 */
function pad(b: Buffer, page: number): Buffer {
  const n = Math.ceil(b.length / page) * page;
  return Buffer.concat([b, Buffer.alloc(n - b.length)]);
}
function osVersionField(v: [number, number, number], y: number, m: number) {
  return ((((v[0] << 14) | (v[1] << 7) | v[2]) << 11) | (((y - 2000) << 4) | m)) >>> 0;
}
function bootV4(k: Buffer, r: Buffer, sig: Buffer, cmdline: string): Buffer {
  const h = Buffer.alloc(1584);
  h.write('ANDROID!', 0, 'latin1');
  h.writeUInt32LE(k.length, 8);
  h.writeUInt32LE(r.length, 12);
  h.writeUInt32LE(osVersionField([14, 0, 0], 2025, 3), 16);
  h.writeUInt32LE(1584, 20);
  h.writeUInt32LE(4, 40);
  h.write(cmdline, 44, 'latin1');
  h.writeUInt32LE(sig.length, 1580);
  return Buffer.concat([pad(h, 4096), pad(k, 4096), pad(r, 4096), pad(sig, 4096)]);
}
function vendorBootV4(
  frags: { name: string; type: number; data: Buffer; board: number }[],
  d: Buffer,
  bootconfig: string,
) {
  const page = 4096;
  const ramdisk = Buffer.concat(frags.map((f) => f.data));
  const table = Buffer.alloc(108 * frags.length);
  let off = 0;
  frags.forEach((f, i) => {
    const e = i * 108;
    table.writeUInt32LE(f.data.length, e);
    table.writeUInt32LE(off, e + 4);
    table.writeUInt32LE(f.type, e + 8);
    table.write(f.name, e + 12, 'latin1');
    table.writeUInt32LE(f.board, e + 44);
    off += f.data.length;
  });
  const bc = Buffer.from(bootconfig);
  const h = Buffer.alloc(2128);
  h.write('VNDRBOOT', 0, 'latin1');
  h.writeUInt32LE(4, 8);
  h.writeUInt32LE(page, 12);
  h.writeUInt32LE(0x10008000, 16);
  h.writeUInt32LE(0x11000000, 20);
  h.writeUInt32LE(ramdisk.length, 24);
  h.write('androidboot.console=ttyS1', 28, 'latin1');
  h.writeUInt32LE(0x10000100, 2076);
  h.write('omie-v4', 2080, 'latin1');
  h.writeUInt32LE(2128, 2096);
  h.writeUInt32LE(d.length, 2100);
  h.writeBigUInt64LE(0x11f00000n, 2104);
  h.writeUInt32LE(table.length, 2112);
  h.writeUInt32LE(frags.length, 2116);
  h.writeUInt32LE(108, 2120);
  h.writeUInt32LE(bc.length, 2124);
  return Buffer.concat([pad(h, page), pad(ramdisk, page), pad(d, page), pad(table, page), pad(bc, page)]);
}

describe('v4 images (built per bootimg.h; unpack_bootimg checks the v3-compatible part)', () => {
  it('boot v4 with a boot signature section', async () => {
    const img = join(W, 'boot-v4.img');
    const sig = blob(9, 4096);
    writeFileSync(img, bootV4(files.kernel, files.ramdisk, sig, 'androidboot.gki=1'));
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      kind: 'boot',
      headerVersion: 4,
      headerSize: 1584,
      signatureSize: 4096,
      osVersion: '14.0.0',
      osPatchLevel: '2025-03',
      cmdline: 'androidboot.gki=1',
    });
    const s = info.sections.find((x) => x.name === 'signature')!;
    expect((await readBootImageSection(img, s)).equals(sig)).toBe(true);
    await compareWithUnpack(img, info);
  });

  it('init_boot (v4, ramdisk only)', async () => {
    const img = join(W, 'init_boot.img');
    writeFileSync(img, bootV4(Buffer.alloc(0), files.ramdisk, Buffer.alloc(0), ''));
    const info = await readBootImage(img);
    expect(info.kind).toBe('init_boot');
    expect(info.kernelSize).toBe(0);
    expect(sha(await readBootImageSection(img, info.sections[1]))).toBe(sha(files.ramdisk));
    await compareWithUnpack(img, info);
  });

  it('vendor_boot v4: ramdisk fragments and bootconfig', async () => {
    const img = join(W, 'vendor_boot-v4.img');
    const a = blob(11, 9000);
    const b = blob(12, 4500);
    const bootconfig = 'androidboot.hardware=omie\nandroidboot.selinux=enforcing\n';
    writeFileSync(
      img,
      vendorBootV4(
        [
          { name: 'platform', type: 1, data: a, board: 0x1234 },
          { name: 'dlkm', type: 3, data: b, board: 0 },
        ],
        files.dtb,
        bootconfig,
      ),
    );
    const info = await readBootImage(img);
    expect(info).toMatchObject({
      kind: 'vendor_boot',
      headerVersion: 4,
      headerSize: 2128,
      ramdiskSize: a.length + b.length,
      bootconfigSize: bootconfig.length,
      bootconfig,
      name: 'omie-v4',
      cmdline: 'androidboot.console=ttyS1',
      dtbAddr: 0x11f00000,
    });
    expect(info.vendorRamdisks).toEqual([
      {
        name: 'platform',
        type: 'platform',
        offset: 0,
        size: a.length,
        boardId: [0x1234, ...Array(15).fill(0)],
      },
      { name: 'dlkm', type: 'dlkm', offset: a.length, size: b.length, boardId: Array(16).fill(0) },
    ]);
    expect(info.sections.map((s) => s.name)).toEqual([
      'vendor_ramdisk',
      'dtb',
      'vendor_ramdisk_table',
      'bootconfig',
    ]);
    await compareWithUnpack(img, info);
  });
});

describe('errors and fuzz', () => {
  it('decodes os_version like unpack_bootimg', () => {
    expect(decodeOsVersion(osVersionField([11, 2, 3], 2021, 12))).toEqual({
      osVersion: '11.2.3',
      osPatchLevel: '2021-12',
    });
    // Each half is decoded only when non-zero (GKI images: patch level without a version).
    expect(decodeOsVersion(osVersionField([0, 0, 0], 2023, 5))).toEqual({ osPatchLevel: '2023-05' });
    expect(decodeOsVersion(osVersionField([14, 0, 0], 2000, 0))).toEqual({ osVersion: '14.0.0' });
    expect(decodeOsVersion(0)).toEqual({});
  });

  it('rejects bad magic, unknown header versions and sections past the end', () => {
    expect(() => parseBootImageHeader(Buffer.alloc(4096), 4096)).toThrow(/bad magic/);
    const v5 = bootV4(files.kernel, files.ramdisk, Buffer.alloc(0), '');
    v5.writeUInt32LE(5, 40);
    expect(() => parseBootImageHeader(v5, v5.length)).toThrow(/unsupported boot image header version/);
    const big = bootV4(files.kernel, files.ramdisk, Buffer.alloc(0), '');
    big.writeUInt32LE(0xfffffff0, 8);
    expect(() => parseBootImageHeader(big, big.length)).toThrow(/kernel section extends past the end/);
  });

  it('2000 mutated headers → typed errors only', async () => {
    const v2 = join(W, 'boot-v2.img');
    if (!existsSync(v2))
      await mkbootimg([
        '--kernel',
        kernel,
        '--ramdisk',
        ramdisk,
        '--dtb',
        dtb,
        '--header_version',
        '2',
        '-o',
        v2,
      ]);
    const seeds = [
      readFileSync(v2).subarray(0, 8192),
      vendorBootV4([{ name: 'a', type: 1, data: blob(1, 100), board: 1 }], blob(2, 100), 'a=b\n'),
      bootV4(blob(3, 100), blob(4, 100), blob(5, 64), 'x=y'),
    ];
    const rnd = prng(42);
    const t0 = Date.now();
    let ok = 0;
    for (let i = 0; i < 2000; i++) {
      const seed = seeds[i % seeds.length];
      // mutate inside the header where the parser looks
      const m = mutate(seed.subarray(0, 2200), rnd);
      const buf = Buffer.concat([m, seed.subarray(2200)]);
      try {
        parseBootImageHeader(buf, buf.length, `case ${i}`);
        ok++;
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${String(e)}`);
      }
      if (i % 10 === 0) {
        const p = join(W, 'fuzz.img');
        writeFileSync(p, buf);
        await readBootImage(p).catch((e) => {
          if (!(e instanceof OmieError)) throw new Error(`file case ${i}: ${String(e)}`);
        });
      }
    }
    expect(ok).toBeGreaterThan(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('omie inspect', () => {
  it('detects boot and vendor_boot images and prints --json summaries', async () => {
    const img = join(W, 'inspect-boot.img');
    await mkbootimg([
      ...['--kernel', kernel, '--ramdisk', ramdisk, '--cmdline', 'console=ttyS0 quiet'],
      ...[
        '--os_version',
        '14.0.0',
        '--os_patch_level',
        '2024-10',
        '--header_version',
        '2',
        '--dtb',
        dtb,
        '-o',
        img,
      ],
    ]);
    const r = await omie(['--json', 'inspect', img]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('boot-image');
    expect(j.result).toMatchObject({
      kind: 'boot',
      headerVersion: 2,
      osVersion: '14.0.0',
      osPatchLevel: '2024-10',
      cmdline: 'console=ttyS0 quiet',
      kernelSize: files.kernel.length,
      idMatches: true,
    });
    const h = await omie(['inspect', img]);
    expect(h.stdout).toMatch(/OS version:\s+14\.0\.0, patch level 2024-10/);
  });
});
