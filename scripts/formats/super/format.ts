import { createHash } from 'node:crypto';
import { FormatError } from '../../errors.ts';

/**
 * LP (logical partition) metadata of a dynamic-partitions `super` partition, exactly as AOSP
 * system/core/fs_mgr/liblp/include/liblp/metadata_format.h defines it (v10.0–10.2), with the
 * validation rules of liblp's reader.cpp and the serialisation of writer.cpp.
 *
 * Layout of super: 4096 reserved bytes | geometry (4096) | geometry backup (4096) |
 * metadata slot 0..n-1 (metadata_max_size each) | backup slots 0..n-1 | logical partitions.
 * super_empty.img (lpmake without images) is geometry (4096) followed by one metadata copy.
 */

export const LP_METADATA_GEOMETRY_MAGIC = 0x616c4467;
export const LP_METADATA_GEOMETRY_SIZE = 4096;
export const LP_METADATA_HEADER_MAGIC = 0x414c5030;
export const LP_METADATA_MAJOR_VERSION = 10;
export const LP_METADATA_MINOR_VERSION_MAX = 2;
export const LP_METADATA_VERSION_FOR_UPDATED_ATTR = 1;
export const LP_METADATA_VERSION_FOR_EXPANDED_HEADER = 2;
export const LP_SECTOR_SIZE = 512;
export const LP_PARTITION_RESERVED_BYTES = 4096;

export const LP_PARTITION_ATTR_READONLY = 1 << 0;
export const LP_PARTITION_ATTR_SLOT_SUFFIXED = 1 << 1;
export const LP_PARTITION_ATTR_UPDATED = 1 << 2;
export const LP_PARTITION_ATTR_DISABLED = 1 << 3;
const ATTR_MASK_V0 = LP_PARTITION_ATTR_READONLY | LP_PARTITION_ATTR_SLOT_SUFFIXED;
const ATTR_MASK_V1 = LP_PARTITION_ATTR_UPDATED | LP_PARTITION_ATTR_DISABLED;

export const LP_HEADER_FLAG_VIRTUAL_AB_DEVICE = 0x1;
export const LP_TARGET_TYPE_LINEAR = 0;
export const LP_TARGET_TYPE_ZERO = 1;
export const LP_GROUP_SLOT_SUFFIXED = 1 << 0;
export const LP_BLOCK_DEVICE_SLOT_SUFFIXED = 1 << 0;

/** Struct sizes (packed). */
export const GEOMETRY_STRUCT_SIZE = 52;
export const HEADER_V1_0_SIZE = 128;
export const HEADER_V1_2_SIZE = 256;
export const PARTITION_ENTRY_SIZE = 52;
export const EXTENT_ENTRY_SIZE = 24;
export const GROUP_ENTRY_SIZE = 48;
export const BLOCK_DEVICE_ENTRY_SIZE = 64;
const NAME_SIZE = 36;

const FORMAT = 'lp-metadata';

export interface LpGeometry {
  structSize: number;
  /** Maximum bytes of one metadata copy (multiple of 512). */
  metadataMaxSize: number;
  /** Metadata slots (2 on A/B); each has a primary and a backup copy. */
  metadataSlotCount: number;
  logicalBlockSize: number;
}

export interface LpTableDescriptor {
  offset: number;
  numEntries: number;
  entrySize: number;
}

export interface LpHeader {
  majorVersion: number;
  minorVersion: number;
  headerSize: number;
  tablesSize: number;
  partitions: LpTableDescriptor;
  extents: LpTableDescriptor;
  groups: LpTableDescriptor;
  blockDevices: LpTableDescriptor;
  /** v10.2+: LP_HEADER_FLAG_* (0 for smaller headers). */
  flags: number;
}

export interface LpPartition {
  name: string;
  attributes: number;
  firstExtentIndex: number;
  numExtents: number;
  groupIndex: number;
}

export interface LpExtent {
  /** Length in 512-byte sectors. */
  numSectors: number;
  targetType: number;
  /** LINEAR: first physical sector on the block device. */
  targetData: number;
  /** LINEAR: index into the block device table. */
  targetSource: number;
}

export interface LpGroup {
  name: string;
  flags: number;
  /** Bytes; 0 = unlimited. */
  maximumSize: number;
}

export interface LpBlockDevice {
  firstLogicalSector: number;
  alignment: number;
  alignmentOffset: number;
  size: number;
  partitionName: string;
  flags: number;
}

export interface LpMetadata {
  header: LpHeader;
  partitions: LpPartition[];
  extents: LpExtent[];
  groups: LpGroup[];
  blockDevices: LpBlockDevice[];
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

function fail(
  reason: string,
  field: string,
  offset: number,
  expected?: unknown,
  found?: unknown,
  file?: string,
): never {
  throw new FormatError({ format: FORMAT, reason, field, offset, expected, found, file });
}

function u64(buf: Buffer, at: number, field: string, base: number, file?: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    fail('value too large', field, base + at, '<= 2^53', v.toString(), file);
  return Number(v);
}

function cname(buf: Buffer, at: number): string {
  const b = buf.subarray(at, at + NAME_SIZE);
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? NAME_SIZE : end).toString('latin1');
}

/** LP_PARTITION_RESERVED_BYTES + 2 geometries + 2 copies of every slot (GetTotalMetadataSize). */
export function totalMetadataSize(metadataMaxSize: number, slotCount: number): number {
  return LP_PARTITION_RESERVED_BYTES + (LP_METADATA_GEOMETRY_SIZE + metadataMaxSize * slotCount) * 2;
}

export function primaryGeometryOffset(): number {
  return LP_PARTITION_RESERVED_BYTES;
}
export function backupGeometryOffset(): number {
  return LP_PARTITION_RESERVED_BYTES + LP_METADATA_GEOMETRY_SIZE;
}
export function primaryMetadataOffset(g: LpGeometry, slot: number): number {
  return LP_PARTITION_RESERVED_BYTES + LP_METADATA_GEOMETRY_SIZE * 2 + g.metadataMaxSize * slot;
}
export function backupMetadataOffset(g: LpGeometry, slot: number): number {
  return (
    LP_PARTITION_RESERVED_BYTES +
    LP_METADATA_GEOMETRY_SIZE * 2 +
    g.metadataMaxSize * g.metadataSlotCount +
    g.metadataMaxSize * slot
  );
}

/** Parses and validates a geometry block (ParseGeometry in reader.cpp). `buf` holds >= 52 bytes. */
export function parseGeometry(buf: Buffer, base = 0, file?: string): LpGeometry {
  if (buf.length < GEOMETRY_STRUCT_SIZE)
    fail('truncated', 'geometry', base, `${GEOMETRY_STRUCT_SIZE} bytes`, `${buf.length} bytes`, file);
  const magic = buf.readUInt32LE(0);
  if (magic !== LP_METADATA_GEOMETRY_MAGIC)
    fail('bad geometry magic', 'geometry.magic', base, LP_METADATA_GEOMETRY_MAGIC, magic, file);
  const structSize = buf.readUInt32LE(4);
  if (structSize > GEOMETRY_STRUCT_SIZE)
    fail(
      'geometry has unrecognized fields',
      'geometry.struct_size',
      base + 4,
      GEOMETRY_STRUCT_SIZE,
      structSize,
      file,
    );
  const temp = Buffer.from(buf.subarray(0, GEOMETRY_STRUCT_SIZE));
  temp.fill(0, 8, 40);
  const want = sha256(temp);
  const stored = buf.subarray(8, 40);
  if (!want.equals(stored))
    fail('geometry checksum mismatch', 'geometry.checksum', base + 8, want, stored, file);
  if (structSize !== GEOMETRY_STRUCT_SIZE)
    fail(
      'geometry struct size mismatch',
      'geometry.struct_size',
      base + 4,
      GEOMETRY_STRUCT_SIZE,
      structSize,
      file,
    );
  const g: LpGeometry = {
    structSize,
    metadataMaxSize: buf.readUInt32LE(40),
    metadataSlotCount: buf.readUInt32LE(44),
    logicalBlockSize: buf.readUInt32LE(48),
  };
  if (g.metadataSlotCount === 0)
    fail('no metadata slots', 'geometry.metadata_slot_count', base + 44, '>= 1', 0, file);
  if (g.logicalBlockSize % LP_SECTOR_SIZE !== 0 || g.logicalBlockSize === 0)
    fail(
      'logical block size not a multiple of 512',
      'geometry.logical_block_size',
      base + 48,
      'n*512',
      g.logicalBlockSize,
      file,
    );
  if (g.metadataMaxSize % LP_SECTOR_SIZE !== 0 || g.metadataMaxSize < HEADER_V1_0_SIZE)
    fail(
      'metadata max size invalid',
      'geometry.metadata_max_size',
      base + 40,
      'n*512',
      g.metadataMaxSize,
      file,
    );
  // Bound the slot count so offsets stay sane (real devices use 1-3).
  // liblp sets no upper bound; real devices use 64 KiB. Bound it so a corrupt field cannot make
  // readers allocate gigabytes.
  if (g.metadataMaxSize > 64 * 1024 * 1024)
    fail(
      'metadata max size too large',
      'geometry.metadata_max_size',
      base + 40,
      '<= 64 MiB',
      g.metadataMaxSize,
      file,
    );
  if (g.metadataSlotCount > 64)
    fail(
      'too many metadata slots',
      'geometry.metadata_slot_count',
      base + 44,
      '<= 64',
      g.metadataSlotCount,
      file,
    );
  return g;
}

/** The 4096-byte geometry block (SerializeGeometry: struct, checksum, zero padding). */
export function serializeGeometry(g: Omit<LpGeometry, 'structSize'>): Buffer {
  const b = Buffer.alloc(LP_METADATA_GEOMETRY_SIZE);
  b.writeUInt32LE(LP_METADATA_GEOMETRY_MAGIC, 0);
  b.writeUInt32LE(GEOMETRY_STRUCT_SIZE, 4);
  b.writeUInt32LE(g.metadataMaxSize, 40);
  b.writeUInt32LE(g.metadataSlotCount, 44);
  b.writeUInt32LE(g.logicalBlockSize, 48);
  sha256(b.subarray(0, GEOMETRY_STRUCT_SIZE)).copy(b, 8);
  return b;
}

function readDesc(b: Buffer, at: number): LpTableDescriptor {
  return {
    offset: b.readUInt32LE(at),
    numEntries: b.readUInt32LE(at + 4),
    entrySize: b.readUInt32LE(at + 8),
  };
}

/**
 * Validates a metadata header (ReadMetadataHeader + ValidateMetadataHeader). `buf` must hold at
 * least 256 bytes or the whole header. Returns the header; the caller then reads the tables.
 */
export function parseMetadataHeader(buf: Buffer, base = 0, file?: string): LpHeader {
  if (buf.length < HEADER_V1_0_SIZE)
    fail('truncated', 'header', base, `${HEADER_V1_0_SIZE} bytes`, `${buf.length} bytes`, file);
  const magic = buf.readUInt32LE(0);
  if (magic !== LP_METADATA_HEADER_MAGIC)
    fail('bad metadata header magic', 'header.magic', base, LP_METADATA_HEADER_MAGIC, magic, file);
  const majorVersion = buf.readUInt16LE(4);
  const minorVersion = buf.readUInt16LE(6);
  if (majorVersion !== LP_METADATA_MAJOR_VERSION || minorVersion > LP_METADATA_MINOR_VERSION_MAX)
    fail(
      'unsupported metadata version',
      'header.version',
      base + 4,
      `${LP_METADATA_MAJOR_VERSION}.0-${LP_METADATA_MAJOR_VERSION}.${LP_METADATA_MINOR_VERSION_MAX}`,
      `${majorVersion}.${minorVersion}`,
      file,
    );
  const headerSize = buf.readUInt32LE(8);
  const expectSize =
    minorVersion < LP_METADATA_VERSION_FOR_EXPANDED_HEADER ? HEADER_V1_0_SIZE : HEADER_V1_2_SIZE;
  if (headerSize !== expectSize)
    fail('header size does not match version', 'header.header_size', base + 8, expectSize, headerSize, file);
  if (buf.length < headerSize)
    fail('truncated', 'header', base, `${headerSize} bytes`, `${buf.length} bytes`, file);
  const temp = Buffer.from(buf.subarray(0, headerSize));
  temp.fill(0, 12, 44);
  const want = sha256(temp);
  const stored = buf.subarray(12, 44);
  if (!want.equals(stored))
    fail('header checksum mismatch', 'header.header_checksum', base + 12, want, stored, file);
  const h: LpHeader = {
    majorVersion,
    minorVersion,
    headerSize,
    tablesSize: buf.readUInt32LE(44),
    partitions: readDesc(buf, 80),
    extents: readDesc(buf, 92),
    groups: readDesc(buf, 104),
    blockDevices: readDesc(buf, 116),
    flags: headerSize >= HEADER_V1_2_SIZE ? buf.readUInt32LE(128) : 0,
  };
  const tables: Array<[keyof LpHeader, number, number]> = [
    ['partitions', PARTITION_ENTRY_SIZE, 80],
    ['extents', EXTENT_ENTRY_SIZE, 92],
    ['groups', GROUP_ENTRY_SIZE, 104],
    ['blockDevices', BLOCK_DEVICE_ENTRY_SIZE, 116],
  ];
  for (const [name, entrySize, at] of tables) {
    const d = h[name] as LpTableDescriptor;
    // ValidateTableBounds, then liblp's entry size checks (ReadMetadataHeader): exact for
    // partitions, extents and groups; none for block devices, whose entries are read
    // sizeof(LpMetadataBlockDevice) bytes at a time with a stride of entry_size.
    if (d.offset > h.tablesSize || d.numEntries * d.entrySize > h.tablesSize - d.offset)
      fail('table out of bounds', `header.${name}`, base + at, `within tables_size ${h.tablesSize}`, d, file);
    if (name !== 'blockDevices' && d.entrySize !== entrySize)
      fail(
        'table entry size mismatch',
        `header.${name}.entry_size`,
        base + at + 8,
        entrySize,
        d.entrySize,
        file,
      );
  }
  return h;
}

/**
 * Parses one metadata copy: `buf` starts at the header and holds the header and tables (at most
 * metadata_max_size bytes). Checks both checksums and every cross-reference (ParseMetadata).
 */
export function parseMetadata(buf: Buffer, g: LpGeometry, base = 0, file?: string): LpMetadata {
  const header = parseMetadataHeader(buf, base, file);
  if (header.tablesSize > g.metadataMaxSize)
    fail(
      'tables larger than metadata_max_size',
      'header.tables_size',
      base + 44,
      `<= ${g.metadataMaxSize}`,
      header.tablesSize,
      file,
    );
  const tStart = header.headerSize;
  if (buf.length < tStart + header.tablesSize)
    fail(
      'truncated tables',
      'tables',
      base + tStart,
      `${header.tablesSize} bytes`,
      `${Math.max(0, buf.length - tStart)} bytes`,
      file,
    );
  const tables = buf.subarray(tStart, tStart + header.tablesSize);
  const want = sha256(tables);
  const stored = buf.subarray(48, 80);
  if (!want.equals(stored))
    fail('tables checksum mismatch', 'header.tables_checksum', base + 48, want, stored, file);
  const tb = base + tStart;

  let validAttrs = ATTR_MASK_V0;
  if (header.minorVersion >= LP_METADATA_VERSION_FOR_UPDATED_ATTR) validAttrs |= ATTR_MASK_V1;

  const partitions: LpPartition[] = [];
  for (let i = 0; i < header.partitions.numEntries; i++) {
    const at = header.partitions.offset + i * header.partitions.entrySize;
    const p: LpPartition = {
      name: cname(tables, at),
      attributes: tables.readUInt32LE(at + 36),
      firstExtentIndex: tables.readUInt32LE(at + 40),
      numExtents: tables.readUInt32LE(at + 44),
      groupIndex: tables.readUInt32LE(at + 48),
    };
    if (p.attributes & ~validAttrs)
      fail(
        `partition ${p.name}: invalid attributes`,
        'partition.attributes',
        tb + at + 36,
        `mask ${validAttrs}`,
        p.attributes,
        file,
      );
    if (p.firstExtentIndex + p.numExtents > header.extents.numEntries)
      fail(
        `partition ${p.name}: extents out of range`,
        'partition.num_extents',
        tb + at + 44,
        `<= ${header.extents.numEntries}`,
        p.firstExtentIndex + p.numExtents,
        file,
      );
    if (p.groupIndex >= header.groups.numEntries)
      fail(
        `partition ${p.name}: invalid group index`,
        'partition.group_index',
        tb + at + 48,
        `< ${header.groups.numEntries}`,
        p.groupIndex,
        file,
      );
    partitions.push(p);
  }
  const extents: LpExtent[] = [];
  for (let i = 0; i < header.extents.numEntries; i++) {
    const at = header.extents.offset + i * header.extents.entrySize;
    const e: LpExtent = {
      numSectors: u64(tables, at, 'extent.num_sectors', tb, file),
      targetType: tables.readUInt32LE(at + 8),
      targetData: u64(tables, at + 12, 'extent.target_data', tb, file),
      targetSource: tables.readUInt32LE(at + 20),
    };
    if (e.targetType === LP_TARGET_TYPE_LINEAR && e.targetSource >= header.blockDevices.numEntries)
      fail(
        'extent: invalid block device index',
        'extent.target_source',
        tb + at + 20,
        `< ${header.blockDevices.numEntries}`,
        e.targetSource,
        file,
      );
    if (e.targetType !== LP_TARGET_TYPE_LINEAR && e.targetType !== LP_TARGET_TYPE_ZERO)
      fail(
        'extent: unknown target type',
        'extent.target_type',
        tb + at + 8,
        'LINEAR(0) or ZERO(1)',
        e.targetType,
        file,
      );
    extents.push(e);
  }
  const groups: LpGroup[] = [];
  for (let i = 0; i < header.groups.numEntries; i++) {
    const at = header.groups.offset + i * header.groups.entrySize;
    groups.push({
      name: cname(tables, at),
      flags: tables.readUInt32LE(at + 36),
      maximumSize: u64(tables, at + 40, 'group.maximum_size', tb, file),
    });
  }
  const blockDevices: LpBlockDevice[] = [];
  for (let i = 0; i < header.blockDevices.numEntries; i++) {
    const at = header.blockDevices.offset + i * header.blockDevices.entrySize;
    // liblp memcpy()s a whole entry whatever entry_size says; past the tables we read zeros.
    const e = Buffer.alloc(BLOCK_DEVICE_ENTRY_SIZE);
    tables.copy(e, 0, at, Math.min(tables.length, at + BLOCK_DEVICE_ENTRY_SIZE));
    const eb = tb + at;
    blockDevices.push({
      firstLogicalSector: u64(e, 0, 'block_device.first_logical_sector', eb, file),
      alignment: e.readUInt32LE(8),
      alignmentOffset: e.readUInt32LE(12),
      size: u64(e, 16, 'block_device.size', eb, file),
      partitionName: cname(e, 24),
      flags: e.readUInt32LE(60),
    });
  }
  if (blockDevices.length === 0)
    fail('no super block device', 'header.block_devices', base + 116, '>= 1', 0, file);
  const metaRegion = totalMetadataSize(g.metadataMaxSize, g.metadataSlotCount);
  if (metaRegion > blockDevices[0].firstLogicalSector * LP_SECTOR_SIZE)
    fail(
      'metadata region overlaps logical partitions',
      'block_device.first_logical_sector',
      tb + header.blockDevices.offset,
      `>= ${metaRegion / LP_SECTOR_SIZE}`,
      blockDevices[0].firstLogicalSector,
      file,
    );
  return { header, partitions, extents, groups, blockDevices };
}

function putName(b: Buffer, at: number, name: string, what: string): void {
  const n = Buffer.from(name, 'latin1');
  if (n.length === 0 || n.length > NAME_SIZE || !/^[A-Za-z0-9_-]+$/.test(name))
    throw new FormatError({
      format: FORMAT,
      reason: `invalid ${what} name`,
      field: `${what}.name`,
      expected: '1-36 chars [A-Za-z0-9_-]',
      found: name,
    });
  n.copy(b, at);
}

/**
 * Serialises metadata like writer.cpp SerializeMetadata: header (128 bytes for v10.0/10.1, 256
 * for v10.2) then the partition, extent, group and block-device tables, contiguous, with both
 * SHA-256 checksums. Table descriptors and sizes in `m.header` are recomputed; the minor version
 * is raised to 1 when a partition carries UPDATED or DISABLED.
 */
export function serializeMetadata(
  m: Omit<LpMetadata, 'header'> & { header: Pick<LpHeader, 'minorVersion' | 'flags'> },
): Buffer {
  // Like MetadataBuilder::Export: UPDATED/DISABLED attributes need at least v10.1.
  const needsV1 = m.partitions.some((p) => p.attributes & ATTR_MASK_V1);
  const minor = needsV1
    ? Math.max(m.header.minorVersion, LP_METADATA_VERSION_FOR_UPDATED_ATTR)
    : m.header.minorVersion;
  const headerSize = minor >= LP_METADATA_VERSION_FOR_EXPANDED_HEADER ? HEADER_V1_2_SIZE : HEADER_V1_0_SIZE;
  const parts = Buffer.alloc(m.partitions.length * PARTITION_ENTRY_SIZE);
  m.partitions.forEach((p, i) => {
    const at = i * PARTITION_ENTRY_SIZE;
    putName(parts, at, p.name, 'partition');
    parts.writeUInt32LE(p.attributes, at + 36);
    parts.writeUInt32LE(p.firstExtentIndex, at + 40);
    parts.writeUInt32LE(p.numExtents, at + 44);
    parts.writeUInt32LE(p.groupIndex, at + 48);
  });
  const exts = Buffer.alloc(m.extents.length * EXTENT_ENTRY_SIZE);
  m.extents.forEach((e, i) => {
    const at = i * EXTENT_ENTRY_SIZE;
    exts.writeBigUInt64LE(BigInt(e.numSectors), at);
    exts.writeUInt32LE(e.targetType, at + 8);
    exts.writeBigUInt64LE(BigInt(e.targetData), at + 12);
    exts.writeUInt32LE(e.targetSource, at + 20);
  });
  const groups = Buffer.alloc(m.groups.length * GROUP_ENTRY_SIZE);
  m.groups.forEach((g, i) => {
    const at = i * GROUP_ENTRY_SIZE;
    putName(groups, at, g.name, 'group');
    groups.writeUInt32LE(g.flags, at + 36);
    groups.writeBigUInt64LE(BigInt(g.maximumSize), at + 40);
  });
  const devs = Buffer.alloc(m.blockDevices.length * BLOCK_DEVICE_ENTRY_SIZE);
  m.blockDevices.forEach((d, i) => {
    const at = i * BLOCK_DEVICE_ENTRY_SIZE;
    devs.writeBigUInt64LE(BigInt(d.firstLogicalSector), at);
    devs.writeUInt32LE(d.alignment, at + 8);
    devs.writeUInt32LE(d.alignmentOffset, at + 12);
    devs.writeBigUInt64LE(BigInt(d.size), at + 16);
    putName(devs, at + 24, d.partitionName, 'block_device');
    devs.writeUInt32LE(d.flags, at + 60);
  });
  const tables = Buffer.concat([parts, exts, groups, devs]);
  const h = Buffer.alloc(headerSize);
  h.writeUInt32LE(LP_METADATA_HEADER_MAGIC, 0);
  h.writeUInt16LE(LP_METADATA_MAJOR_VERSION, 4);
  h.writeUInt16LE(minor, 6);
  h.writeUInt32LE(headerSize, 8);
  h.writeUInt32LE(tables.length, 44);
  sha256(tables).copy(h, 48);
  let off = 0;
  for (const [at, buf, n, size] of [
    [80, parts, m.partitions.length, PARTITION_ENTRY_SIZE],
    [92, exts, m.extents.length, EXTENT_ENTRY_SIZE],
    [104, groups, m.groups.length, GROUP_ENTRY_SIZE],
    [116, devs, m.blockDevices.length, BLOCK_DEVICE_ENTRY_SIZE],
  ] as Array<[number, Buffer, number, number]>) {
    h.writeUInt32LE(off, at);
    h.writeUInt32LE(n, at + 4);
    h.writeUInt32LE(size, at + 8);
    off += buf.length;
  }
  if (headerSize >= HEADER_V1_2_SIZE) h.writeUInt32LE(m.header.flags >>> 0, 128);
  sha256(h).copy(h, 12);
  return Buffer.concat([h, tables]);
}
