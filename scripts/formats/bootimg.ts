import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { FormatError, InputError } from '../errors.ts';
import { BinaryReader, checkBound } from './binary.ts';

/**
 * Android boot images for inspection: boot / recovery / init_boot ("ANDROID!", header v0–v4)
 * and vendor_boot ("VNDRBOOT", v3–v4). Layout follows AOSP
 * system/tools/mkbootimg/include/bootimg/bootimg.h; every section starts on a page boundary and
 * is zero-padded to a whole page. Only headers are read here; section bytes stay on disk.
 */

export const BOOT_MAGIC = 'ANDROID!';
export const VENDOR_BOOT_MAGIC = 'VNDRBOOT';

/** sizeof(boot_img_hdr_vN) and sizeof(vendor_boot_img_hdr_vN). */
export const BOOT_HEADER_SIZES = [1632, 1648, 1660, 1580, 1584] as const;
export const VENDOR_BOOT_HEADER_SIZES: Record<number, number> = { 3: 2112, 4: 2128 };
/** Boot images v3+ have a fixed 4096-byte page. */
export const BOOT_V3_PAGE_SIZE = 4096;
export const VENDOR_RAMDISK_TABLE_ENTRY_V4_SIZE = 108;

const BOOT_NAME_SIZE = 16;
const BOOT_ARGS_SIZE = 512;
const BOOT_EXTRA_ARGS_SIZE = 1024;
const BOOT_V3_ARGS_SIZE = BOOT_ARGS_SIZE + BOOT_EXTRA_ARGS_SIZE;
const VENDOR_BOOT_ARGS_SIZE = 2048;
const VENDOR_RAMDISK_NAME_SIZE = 32;
const VENDOR_RAMDISK_TABLE_ENTRY_BOARD_ID_SIZE = 16;
const MAX_RAMDISK_TABLE_ENTRIES = 1024;
const MAX_BOOTCONFIG = 1024 * 1024;

export const VENDOR_RAMDISK_TYPES = ['none', 'platform', 'recovery', 'dlkm'] as const;

export type BootSectionName =
  | 'kernel'
  | 'ramdisk'
  | 'second'
  | 'recovery_dtbo'
  | 'dtb'
  | 'signature'
  | 'vendor_ramdisk'
  | 'vendor_ramdisk_table'
  | 'bootconfig'
  /** Pre-v1 Qualcomm device-tree table (dt_size in place of header_version). */
  | 'qcdt';

export interface BootImageSection {
  name: BootSectionName;
  offset: number;
  size: number;
}

export interface VendorRamdiskFragment {
  name: string;
  /** VENDOR_RAMDISK_TYPE_*: none, platform, recovery, dlkm (or the raw number if unknown). */
  type: (typeof VENDOR_RAMDISK_TYPES)[number] | number;
  /** Offset inside the vendor ramdisk section, and size. */
  offset: number;
  size: number;
  boardId: number[];
}

export interface BootImageInfo {
  /** "boot" (ANDROID!), "init_boot" (ANDROID! v4 with only a ramdisk), or "vendor_boot" (VNDRBOOT). */
  kind: 'boot' | 'init_boot' | 'vendor_boot';
  magic: string;
  headerVersion: number;
  pageSize: number;
  /** header_size field (v1+), else sizeof the header struct. */
  headerSize: number;
  kernelSize: number;
  ramdiskSize: number;
  secondSize: number;
  /** Load addresses (v0–v2 boot, vendor_boot). */
  kernelAddr?: number;
  ramdiskAddr?: number;
  secondAddr?: number;
  tagsAddr?: number;
  dtbSize: number;
  dtbAddr?: number;
  recoveryDtboSize: number;
  recoveryDtboOffset?: number;
  /** os_version decoded as "A.B.C" and os_patch_level as "YYYY-MM" (boot images only). */
  osVersion?: string;
  osPatchLevel?: string;
  /** Raw os_version field (version << 11 | patch level). */
  osVersionRaw?: number;
  /** Product / board name (v0–v2 boot, vendor_boot). */
  name?: string;
  /** Kernel command line as the bootloader sees it (cmdline followed by extra_cmdline in v0–v2). */
  cmdline: string;
  /** v0–v2: the two header fields separately. */
  cmdlineField?: string;
  extraCmdline?: string;
  /** v0–v2: SHA-1 id mkbootimg stores (hex of the 32-byte field). */
  id?: string;
  /** Legacy Qualcomm v0 image: size of the QCDT section (the header_version field held it). */
  legacyDtSize?: number;
  /** v4 boot: size of the boot signature section. */
  signatureSize?: number;
  /** vendor_boot v4 */
  vendorRamdiskTableSize?: number;
  vendorRamdiskTableEntryNum?: number;
  vendorRamdiskTableEntrySize?: number;
  /** Fragments of the vendor ramdisk table (filled by readBootImage). */
  vendorRamdisks?: VendorRamdiskFragment[];
  bootconfigSize?: number;
  bootconfig?: string;
  sections: BootImageSection[];
  /** End of the last section (page-aligned); the rest of the file is padding or an AVB footer. */
  imageEnd: number;
  fileSize: number;
}

const pages = (size: number, page: number) => Math.ceil(size / page);

/** Decodes os_version: bits 31..11 version (A:7,B:7,C:7), bits 10..0 patch level (Y-2000:7, M:4). */
export function decodeOsVersion(raw: number): { osVersion?: string; osPatchLevel?: string } {
  const v = raw >>> 11;
  const p = raw & 0x7ff;
  // unpack_bootimg decodes each half only when it is non-zero (a GKI boot image often carries
  // a patch level with version 0.0.0, or nothing at all).
  return {
    ...(v ? { osVersion: `${(v >>> 14) & 0x7f}.${(v >>> 7) & 0x7f}.${v & 0x7f}` } : {}),
    ...(p
      ? { osPatchLevel: `${String((p >>> 4) + 2000).padStart(4, '0')}-${String(p & 0xf).padStart(2, '0')}` }
      : {}),
  };
}

function checkPageSize(r: BinaryReader, page: number, at: number) {
  if (page < 512 || page > 65536 || (page & (page - 1)) !== 0)
    r.fail('page size must be a power of two in [512, 65536]', { field: 'page_size', found: page, at });
}

/**
 * Parses a header from the first bytes of an image (at least one page, or the whole header).
 * `fileSize` bounds every section so nothing points outside the file.
 */
export function parseBootImageHeader(head: Buffer, fileSize: number, file?: string): BootImageInfo {
  const r = new BinaryReader(head, 'bootimg', 0, file);
  const magic = head.subarray(0, 8).toString('latin1');
  if (magic === BOOT_MAGIC) return parseBoot(r, fileSize);
  if (magic === VENDOR_BOOT_MAGIC) return parseVendorBoot(r, fileSize);
  return r.fail('bad magic', {
    field: 'magic',
    at: 0,
    expected: `${BOOT_MAGIC} or ${VENDOR_BOOT_MAGIC}`,
    found: magic,
  });
}

function parseBoot(r: BinaryReader, fileSize: number): BootImageInfo {
  r.seek(40);
  const field40 = r.u32le('header_version');
  // Pre-v1 Qualcomm (CAF) boot images keep dt_size at offset 40 (today's header_version) and a
  // QCDT device-tree table after `second`. A value that cannot be a header version but sizes a
  // section that, page-padded after the others, ends inside the file is read that way.
  const legacyDtSize = field40 > 4 && fitsAsQcdt(r.buf, field40, fileSize) ? field40 : 0;
  const headerVersion = legacyDtSize ? 0 : field40;
  if (headerVersion > 4)
    r.fail('unsupported boot image header version', {
      field: 'header_version',
      at: 40,
      expected: '0..4',
      found: headerVersion,
    });
  r.seek(8);
  let info: BootImageInfo;
  if (headerVersion < 3) {
    const kernelSize = r.u32le('kernel_size');
    const kernelAddr = r.u32le('kernel_addr');
    const ramdiskSize = r.u32le('ramdisk_size');
    const ramdiskAddr = r.u32le('ramdisk_addr');
    const secondSize = r.u32le('second_size');
    const secondAddr = r.u32le('second_addr');
    const tagsAddr = r.u32le('tags_addr');
    const pageSize = r.u32le('page_size');
    checkPageSize(r, pageSize, 36);
    r.u32le('header_version');
    const osVersionRaw = r.u32le('os_version');
    const name = r.cstring(BOOT_NAME_SIZE, 'name');
    const cmdlineField = r.cstring(BOOT_ARGS_SIZE, 'cmdline');
    const id = r.bytes(32, 'id').toString('hex');
    const extraCmdline = r.cstring(BOOT_EXTRA_ARGS_SIZE, 'extra_cmdline');
    let recoveryDtboSize = 0;
    let recoveryDtboOffset: number | undefined;
    let headerSize: number = BOOT_HEADER_SIZES[0];
    let dtbSize = 0;
    let dtbAddr: number | undefined;
    if (headerVersion >= 1) {
      recoveryDtboSize = r.u32le('recovery_dtbo_size');
      recoveryDtboOffset = r.u64leNum('recovery_dtbo_offset');
      headerSize = r.u32le('header_size');
    }
    if (headerVersion >= 2) {
      dtbSize = r.u32le('dtb_size');
      dtbAddr = r.u64leNum('dtb_addr');
    }
    info = {
      kind: 'boot',
      magic: BOOT_MAGIC,
      headerVersion,
      pageSize,
      headerSize,
      kernelSize,
      ramdiskSize,
      secondSize,
      kernelAddr,
      ramdiskAddr,
      secondAddr,
      tagsAddr,
      dtbSize,
      dtbAddr,
      recoveryDtboSize,
      recoveryDtboOffset,
      ...decodeOsVersion(osVersionRaw),
      osVersionRaw,
      name,
      cmdline: cmdlineField + extraCmdline,
      cmdlineField,
      extraCmdline,
      id,
      sections: [],
      imageEnd: 0,
      fileSize,
    };
    let at = pageSize; // the header occupies the first page
    const add = (name: BootSectionName, size: number) => {
      info.sections.push({ name, offset: at, size });
      at += pages(size, pageSize) * pageSize;
    };
    add('kernel', kernelSize);
    add('ramdisk', ramdiskSize);
    add('second', secondSize);
    if (legacyDtSize) {
      info.legacyDtSize = legacyDtSize;
      add('qcdt', legacyDtSize);
    }
    if (headerVersion >= 1 && recoveryDtboSize > 0) {
      // recovery_dtbo is read where the header says (mkbootimg puts it right after second), but
      // the dtb that follows is found by counting pages, as unpack_bootimg and bootloaders do.
      info.sections.push({ name: 'recovery_dtbo', offset: recoveryDtboOffset!, size: recoveryDtboSize });
      at += pages(recoveryDtboSize, pageSize) * pageSize;
      info.imageEnd = Math.max(
        info.imageEnd,
        recoveryDtboOffset! + pages(recoveryDtboSize, pageSize) * pageSize,
      );
    }
    if (headerVersion >= 2) add('dtb', dtbSize);
    info.imageEnd = Math.max(info.imageEnd, at);
  } else {
    const kernelSize = r.u32le('kernel_size');
    const ramdiskSize = r.u32le('ramdisk_size');
    const osVersionRaw = r.u32le('os_version');
    const headerSize = r.u32le('header_size');
    r.skip(16, 'reserved');
    r.u32le('header_version');
    const cmdline = r.cstring(BOOT_V3_ARGS_SIZE, 'cmdline');
    const signatureSize = headerVersion >= 4 ? r.u32le('signature_size') : undefined;
    const pageSize = BOOT_V3_PAGE_SIZE;
    info = {
      kind: kernelSize === 0 && ramdiskSize > 0 && headerVersion >= 4 ? 'init_boot' : 'boot',
      magic: BOOT_MAGIC,
      headerVersion,
      pageSize,
      headerSize,
      kernelSize,
      ramdiskSize,
      secondSize: 0,
      dtbSize: 0,
      recoveryDtboSize: 0,
      ...decodeOsVersion(osVersionRaw),
      osVersionRaw,
      cmdline,
      signatureSize,
      sections: [],
      imageEnd: 0,
      fileSize,
    };
    let at = pageSize;
    const add = (name: BootSectionName, size: number) => {
      info.sections.push({ name, offset: at, size });
      at += pages(size, pageSize) * pageSize;
    };
    add('kernel', kernelSize);
    add('ramdisk', ramdiskSize);
    if (signatureSize !== undefined) add('signature', signatureSize);
    info.imageEnd = at;
  }
  checkSections(r, info);
  return info;
}

/** A v0 layout with a `dt_size`-byte QCDT section after second fits in the file. */
function fitsAsQcdt(head: Buffer, dtSize: number, fileSize: number): boolean {
  if (head.length < 48) return false;
  const page = head.readUInt32LE(36);
  if (page < 2048 || page > 16384 || (page & (page - 1)) !== 0) return false;
  const sizes = [head.readUInt32LE(8), head.readUInt32LE(16), head.readUInt32LE(24), dtSize];
  const end = page * (1 + sizes.reduce((a, n) => a + pages(n, page), 0));
  return sizes[0] > 0 && end <= fileSize;
}

function parseVendorBoot(r: BinaryReader, fileSize: number): BootImageInfo {
  r.seek(8);
  const headerVersion = r.u32le('header_version');
  if (headerVersion < 3 || headerVersion > 4)
    r.fail('unsupported vendor boot header version', {
      field: 'header_version',
      at: 8,
      expected: '3..4',
      found: headerVersion,
    });
  const pageSize = r.u32le('page_size');
  checkPageSize(r, pageSize, 12);
  const kernelAddr = r.u32le('kernel_addr');
  const ramdiskAddr = r.u32le('ramdisk_addr');
  const vendorRamdiskSize = r.u32le('vendor_ramdisk_size');
  const cmdline = r.cstring(VENDOR_BOOT_ARGS_SIZE, 'cmdline');
  const tagsAddr = r.u32le('tags_addr');
  const name = r.cstring(BOOT_NAME_SIZE, 'name');
  const headerSize = r.u32le('header_size');
  const dtbSize = r.u32le('dtb_size');
  const dtbAddr = r.u64leNum('dtb_addr');
  const info: BootImageInfo = {
    kind: 'vendor_boot',
    magic: VENDOR_BOOT_MAGIC,
    headerVersion,
    pageSize,
    headerSize,
    kernelSize: 0,
    ramdiskSize: vendorRamdiskSize,
    secondSize: 0,
    kernelAddr,
    ramdiskAddr,
    tagsAddr,
    dtbSize,
    dtbAddr,
    recoveryDtboSize: 0,
    name,
    cmdline,
    sections: [],
    imageEnd: 0,
    fileSize,
  };
  if (headerVersion >= 4) {
    info.vendorRamdiskTableSize = r.u32le('vendor_ramdisk_table_size');
    const tableEntryNum = r.u32le('vendor_ramdisk_table_entry_num');
    const tableEntrySize = r.u32le('vendor_ramdisk_table_entry_size');
    info.vendorRamdiskTableEntryNum = tableEntryNum;
    info.vendorRamdiskTableEntrySize = tableEntrySize;
    info.bootconfigSize = r.u32le('bootconfig_size');
    checkBound(
      'bootimg',
      'vendor_ramdisk_table_entry_num',
      tableEntryNum,
      MAX_RAMDISK_TABLE_ENTRIES,
      2116,
      r.file,
    );
    if (tableEntrySize < VENDOR_RAMDISK_TABLE_ENTRY_V4_SIZE && tableEntryNum > 0)
      r.fail('vendor ramdisk table entry too small', {
        field: 'vendor_ramdisk_table_entry_size',
        at: 2120,
        expected: `>= ${VENDOR_RAMDISK_TABLE_ENTRY_V4_SIZE}`,
        found: tableEntrySize,
      });
    if (tableEntryNum * tableEntrySize > info.vendorRamdiskTableSize)
      r.fail('vendor ramdisk table entries exceed the table size', {
        field: 'vendor_ramdisk_table_size',
        at: 2112,
        expected: `>= ${tableEntryNum * tableEntrySize}`,
        found: info.vendorRamdiskTableSize,
      });
  }
  // The header takes header_size bytes padded to whole pages; AOSP unpack_bootimg counts pages
  // from the field, not from the struct size. Not checked against the struct size: mkbootimg
  // releases of the Android 11 era wrote 2108 for the 2112-byte v3 header.
  let at = pages(headerSize, pageSize) * pageSize;
  const add = (n: BootSectionName, size: number) => {
    info.sections.push({ name: n, offset: at, size });
    at += pages(size, pageSize) * pageSize;
  };
  add('vendor_ramdisk', vendorRamdiskSize);
  add('dtb', dtbSize);
  if (headerVersion >= 4) {
    add('vendor_ramdisk_table', info.vendorRamdiskTableSize!);
    add('bootconfig', info.bootconfigSize!);
  }
  info.imageEnd = at;
  checkSections(r, info);
  return info;
}

function checkSections(r: BinaryReader, info: BootImageInfo) {
  for (const s of info.sections) {
    if (s.offset + s.size > info.fileSize)
      r.fail(`${s.name} section extends past the end of the image`, {
        field: `${s.name}_size`,
        expected: `<= ${info.fileSize}`,
        found: s.offset + s.size,
      });
  }
}

async function readAt(
  fh: FileHandle,
  pos: number,
  len: number,
  file: string,
  field: string,
): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  if (got !== len)
    throw new FormatError({
      format: 'bootimg',
      reason: 'truncated',
      field,
      offset: pos,
      expected: len,
      found: got,
      file,
    });
  return buf;
}

/**
 * Reads a boot / init_boot / vendor_boot image's header, and for vendor_boot v4 its ramdisk table
 * and bootconfig. For v0–v2, `idMatches` tells whether the stored SHA-1 id matches the sections.
 */
export async function readBootImage(path: string): Promise<BootImageInfo & { idMatches?: boolean }> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
  try {
    const fileSize = (await fh.stat()).size;
    const head = await readAt(fh, 0, Math.min(fileSize, 4096), path, 'header');
    const info: BootImageInfo & { idMatches?: boolean } = parseBootImageHeader(head, fileSize, path);
    if (info.kind === 'vendor_boot' && info.headerVersion >= 4) {
      const entries = { num: info.vendorRamdiskTableEntryNum!, size: info.vendorRamdiskTableEntrySize! };
      const table = info.sections.find((s) => s.name === 'vendor_ramdisk_table')!;
      const buf = await readAt(fh, table.offset, entries.num * entries.size, path, 'vendor_ramdisk_table');
      const r = new BinaryReader(buf, 'bootimg', table.offset, path);
      info.vendorRamdisks = [];
      for (let i = 0; i < entries.num; i++) {
        r.seek(i * entries.size);
        const size = r.u32le(`vendor_ramdisk_table[${i}].ramdisk_size`);
        const offset = r.u32le(`vendor_ramdisk_table[${i}].ramdisk_offset`);
        const t = r.u32le(`vendor_ramdisk_table[${i}].ramdisk_type`);
        const name = r.cstring(VENDOR_RAMDISK_NAME_SIZE, `vendor_ramdisk_table[${i}].ramdisk_name`);
        const boardId = Array.from({ length: VENDOR_RAMDISK_TABLE_ENTRY_BOARD_ID_SIZE }, (_, j) =>
          r.u32le(`vendor_ramdisk_table[${i}].board_id[${j}]`),
        );
        if (offset + size > info.ramdiskSize)
          r.fail('ramdisk fragment lies outside the vendor ramdisk section', {
            field: `vendor_ramdisk_table[${i}]`,
            at: i * entries.size,
            expected: `<= ${info.ramdiskSize}`,
            found: offset + size,
          });
        info.vendorRamdisks.push({ name, type: VENDOR_RAMDISK_TYPES[t] ?? t, offset, size, boardId });
      }
      const bc = info.sections.find((s) => s.name === 'bootconfig')!;
      checkBound('bootimg', 'bootconfig_size', bc.size, MAX_BOOTCONFIG, 2124, path);
      info.bootconfig = (await readAt(fh, bc.offset, bc.size, path, 'bootconfig')).toString('utf8');
    }
    if (info.headerVersion < 3 && info.kind === 'boot')
      info.idMatches = (await bootImageId(fh, info)) === info.id;
    return info;
  } finally {
    await fh.close();
  }
}

/** mkbootimg's id: SHA-1 over each section followed by its u32 size (recovery_dtbo from v1, dtb from v2). */
async function bootImageId(fh: FileHandle, info: BootImageInfo): Promise<string> {
  const h = createHash('sha1');
  const names: BootSectionName[] = ['kernel', 'ramdisk', 'second'];
  if (info.headerVersion >= 1) names.push('recovery_dtbo');
  if (info.headerVersion >= 2) names.push('dtb');
  // CAF mkbootimg hashes the QCDT table and its size too.
  if (info.legacyDtSize) names.push('qcdt');
  const buf = Buffer.alloc(1024 * 1024);
  for (const n of names) {
    const s = info.sections.find((x) => x.name === n) ?? { offset: 0, size: 0 };
    for (let done = 0; done < s.size; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, s.size - done), s.offset + done);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    const size = Buffer.alloc(4);
    size.writeUInt32LE(s.size);
    h.update(size);
  }
  return Buffer.concat([h.digest(), Buffer.alloc(12)]).toString('hex');
}

/** Reads one section's bytes (sections of boot images are small: kernels, ramdisks, dtbs). */
export async function readBootImageSection(path: string, section: BootImageSection): Promise<Buffer> {
  checkBound('bootimg', `${section.name}_size`, section.size, 512 * 1024 * 1024, undefined, path);
  const fh = await open(path, 'r');
  try {
    return await readAt(fh, section.offset, section.size, path, section.name);
  } finally {
    await fh.close();
  }
}
