import { open, rm } from 'node:fs/promises';
import { InputError } from '../../errors.ts';
import type { ProgressEvent, ProgressFn } from '../../progress.ts';
import { writeAll } from '../io.ts';
import { openImage, type SparsePlan, SparseStreamWriter } from '../sparse.ts';
import { type UniformBlocks, visitUniformBlocks } from '../uniform-blocks.ts';
import {
  backupGeometryOffset,
  backupMetadataOffset,
  LP_HEADER_FLAG_VIRTUAL_AB_DEVICE,
  LP_METADATA_VERSION_FOR_EXPANDED_HEADER,
  LP_PARTITION_ATTR_READONLY,
  LP_SECTOR_SIZE,
  LP_TARGET_TYPE_LINEAR,
  type LpBlockDevice,
  type LpExtent,
  type LpGeometry,
  type LpGroup,
  type LpMetadata,
  type LpPartition,
  parseMetadata,
  primaryGeometryOffset,
  primaryMetadataOffset,
  serializeGeometry,
  serializeMetadata,
  totalMetadataSize,
} from './format.ts';

/**
 * Builds super.img / super_empty.img the way lpmake (liblp MetadataBuilder + ImageBuilder) lays
 * them out: the first logical sector is the metadata region rounded up to the alignment (1 MiB
 * by default), each partition takes the next aligned free sectors, sizes are rounded up to the
 * logical block size (4096), a "default" group of unlimited size is always group 0, and every
 * metadata copy (all slots, primary and backup) holds the same metadata.
 */

export interface SuperBlockDeviceSpec {
  /** GPT partition name; the first device is the one holding metadata (usually "super"). */
  name: string;
  size: number;
  /** Default 1 MiB (lpmake's default). */
  alignment?: number;
  alignmentOffset?: number;
}

export interface SuperPartitionSpec {
  name: string;
  group: string;
  /** Raw or sparse image to place in the partition. */
  imagePath?: string;
  /** Partition size in bytes (default: the image's expanded size, or 0). Rounded up to the block size. */
  size?: number;
  readonly?: boolean;
}

export interface SuperLayout {
  blockDevices: SuperBlockDeviceSpec[];
  groups: Array<{ name: string; maxSize: number }>;
  partitions: SuperPartitionSpec[];
  /** 1 non-A/B, 2 A/B, 3 Virtual A/B (lpmake --metadata-slots). */
  metadataSlots: number;
  /** Bytes reserved per metadata copy (lpmake --metadata-size, e.g. 65536). */
  metadataMaxSize: number;
  /** Sets LP_HEADER_FLAG_VIRTUAL_AB_DEVICE (needs the v10.2 header). */
  virtualAB?: boolean;
  /** Logical block size (default 4096). */
  blockSize?: number;
}

/** Metadata plus where each partition's image goes, without writing anything. */
export interface SuperPlan {
  geometry: LpGeometry;
  metadata: LpMetadata;
  /** Serialised metadata (one copy, unpadded). */
  metadataBlob: Buffer;
  placements: Array<{
    name: string;
    imagePath?: string;
    imageSize: number;
    extents: Array<{ offset: number; size: number }>;
  }>;
}

const DEFAULT_ALIGNMENT = 1024 * 1024;

function alignUp(v: number, a: number): number {
  return a > 0 ? Math.ceil(v / a) * a : v;
}

/** liblp utility.h AlignTo(base, alignment, alignment_offset). */
function alignTo(base: number, alignment: number, offset: number): number {
  const aligned = alignUp(base, alignment) + offset;
  // Overaligned (base < alignment_offset): step back one alignment.
  return aligned - alignment >= base ? aligned - alignment : aligned;
}

function bad(message: string, context: Record<string, unknown> = {}): never {
  throw new InputError(`super layout: ${message}`, { code: 'SUPER_LAYOUT', context });
}

/**
 * Computes LP metadata for a layout (MetadataBuilder::Init + AddGroup + AddPartition +
 * ResizePartition + Export). Image sizes are read from the files (sparse images by their
 * expanded size).
 */
export async function planSuper(layout: SuperLayout, opts: { sizesOnly?: boolean } = {}): Promise<SuperPlan> {
  const bs = layout.blockSize ?? 4096;
  if (bs <= 0 || bs % LP_SECTOR_SIZE !== 0) bad(`block size ${bs} must be a multiple of 512`);
  if (!Number.isInteger(layout.metadataSlots) || layout.metadataSlots < 1 || layout.metadataSlots > 64)
    bad(`metadataSlots ${layout.metadataSlots} must be 1..64`);
  const maxSize = alignUp(layout.metadataMaxSize, LP_SECTOR_SIZE);
  if (!Number.isInteger(maxSize) || maxSize < 256 || maxSize > 0xffffffff)
    bad(`metadataMaxSize ${layout.metadataMaxSize} out of range`);
  if (layout.blockDevices.length === 0) bad('at least one block device (super) is required');

  const devices: LpBlockDevice[] = layout.blockDevices.map((d, i) => {
    const alignment = d.alignment ?? DEFAULT_ALIGNMENT;
    const alignmentOffset = d.alignmentOffset ?? 0;
    if (alignment % LP_SECTOR_SIZE !== 0 && alignment !== 0)
      bad(`block device ${d.name}: alignment must be a multiple of 512`);
    // VerifyDeviceProperties in builder.cpp.
    if (alignmentOffset % LP_SECTOR_SIZE !== 0 || alignmentOffset > alignment)
      bad(`block device ${d.name}: alignment offset must be a multiple of 512 and <= the alignment`);
    // Every device keeps its first sector untouched; super also skips the metadata region
    // (MetadataBuilder::Init: AlignTo(start, alignment, alignment_offset), else the block size).
    const start = i === 0 ? totalMetadataSize(maxSize, layout.metadataSlots) : LP_SECTOR_SIZE;
    const first =
      alignment || alignmentOffset ? alignTo(start, alignment, alignmentOffset) : alignUp(start, bs);
    if (d.size < first + bs)
      bad(`block device ${d.name} (${d.size} bytes) too small: needs >= ${first + bs}`, { device: d.name });
    if (d.size % bs !== 0)
      bad(`block device ${d.name} size ${d.size} is not a multiple of the block size ${bs}`);
    return {
      firstLogicalSector: first / LP_SECTOR_SIZE,
      alignment,
      alignmentOffset,
      size: d.size,
      partitionName: d.name,
      flags: 0,
    };
  });

  const groups: LpGroup[] = [{ name: 'default', flags: 0, maximumSize: 0 }];
  for (const g of layout.groups) {
    if (g.name === 'default') {
      if (g.maxSize !== 0) bad('group "default" must have maxSize 0');
      continue;
    }
    if (groups.some((x) => x.name === g.name)) bad(`duplicate group ${g.name}`);
    groups.push({ name: g.name, flags: 0, maximumSize: g.maxSize });
  }

  // Free space cursor per device, in bytes, aligned as liblp's AlignSector does.
  const cursor = devices.map((d) => d.firstLogicalSector * LP_SECTOR_SIZE);
  // AlignSector: the next free byte on a device, aligned past its alignment_offset.
  const alignFor = (d: LpBlockDevice, byteOff: number) =>
    alignUp(alignTo(byteOff, d.alignment, d.alignmentOffset), LP_SECTOR_SIZE);
  const partitions: LpPartition[] = [];
  const extents: LpExtent[] = [];
  const placements: SuperPlan['placements'] = [];
  const groupUse = new Map<string, number>();
  const names = new Set<string>();
  for (const p of layout.partitions) {
    if (names.has(p.name)) bad(`duplicate partition ${p.name}`);
    names.add(p.name);
    const gi = groups.findIndex((g) => g.name === p.group);
    if (gi < 0) bad(`partition ${p.name}: unknown group ${p.group}`, { partition: p.name, group: p.group });
    let imageSize = 0;
    if (p.imagePath && !opts.sizesOnly) {
      const img = await openImage(p.imagePath);
      imageSize = img.size;
      await img.close();
    }
    const size = alignUp(p.size ?? imageSize, bs);
    if (imageSize > size)
      bad(`partition ${p.name}: image (${imageSize} bytes) larger than the partition (${size})`, {
        partition: p.name,
      });
    const used = (groupUse.get(p.group) ?? 0) + size;
    const gmax = groups[gi].maximumSize;
    if (gmax > 0 && used > gmax)
      bad(`group ${p.group} exceeds its maximum size ${gmax} with partition ${p.name} (${used} bytes)`, {
        group: p.group,
      });
    groupUse.set(p.group, used);
    const first = extents.length;
    const ext: Array<{ offset: number; size: number }> = [];
    let left = size;
    for (let d = 0; d < devices.length && left > 0; d++) {
      const start = alignFor(devices[d], cursor[d]);
      const avail = Math.floor((devices[d].size - start) / bs) * bs;
      if (avail <= 0) continue;
      const n = Math.min(left, avail);
      extents.push({
        numSectors: n / LP_SECTOR_SIZE,
        targetType: LP_TARGET_TYPE_LINEAR,
        targetData: start / LP_SECTOR_SIZE,
        targetSource: d,
      });
      if (d === 0) ext.push({ offset: start, size: n });
      else if (p.imagePath)
        bad(
          `partition ${p.name} spills onto block device ${devices[d].partitionName}: writing multi-device super images is not supported`,
        );
      cursor[d] = start + n;
      left -= n;
    }
    if (left > 0)
      bad(`not enough space in super for partition ${p.name} (${size} bytes)`, { partition: p.name });
    partitions.push({
      name: p.name,
      attributes: p.readonly ? LP_PARTITION_ATTR_READONLY : 0,
      firstExtentIndex: first,
      numExtents: extents.length - first,
      groupIndex: gi,
    });
    placements.push({ name: p.name, imagePath: p.imagePath, imageSize, extents: ext });
  }
  const minor = layout.virtualAB ? LP_METADATA_VERSION_FOR_EXPANDED_HEADER : 0;
  const flags = layout.virtualAB ? LP_HEADER_FLAG_VIRTUAL_AB_DEVICE : 0;
  const blob = serializeMetadata({
    header: { minorVersion: minor, flags },
    partitions,
    extents,
    groups,
    blockDevices: devices,
  });
  if (blob.length > maxSize) bad(`metadata (${blob.length} bytes) does not fit metadataMaxSize ${maxSize}`);
  const geometry: LpGeometry = {
    structSize: 52,
    metadataMaxSize: maxSize,
    metadataSlotCount: layout.metadataSlots,
    logicalBlockSize: bs,
  };
  // Round-trip through the parser so what we return is exactly what readers see.
  const metadata = parseMetadata(blob, geometry);
  return { geometry, metadata, metadataBlob: blob, placements };
}

export interface SuperBuildResult {
  path: string;
  sparse: boolean;
  size: number;
  plan: SuperPlan;
  /** SHA-256 of the file written, when asked (`sha256`, sparse only). */
  sha256?: string;
}

/**
 * Writes a full super image (block device 0): geometry twice, every metadata copy, and each
 * partition image streamed to its extents. `sparse: true` writes an Android sparse image
 * where space outside partitions is DONT_CARE (as `lpmake --sparse`); with `direct` too, it
 * bypasses the page cache (see SequentialWriter), and with `sha256` its digest is taken as it
 * is written (after a pass that only classifies the images' blocks; `uniformBlocks`, by image
 * path, spares that pass the reading of the blocks they cover).
 */
export async function buildSuper(
  layout: SuperLayout,
  outPath: string,
  opts: {
    sparse?: boolean;
    direct?: boolean;
    sha256?: boolean;
    uniformBlocks?: ReadonlyMap<string, UniformBlocks>;
    onProgress?: ProgressFn;
  } = {},
): Promise<SuperBuildResult> {
  const plan = await planSuper(layout);
  const size = layout.blockDevices[0].size;
  if (opts.sparse) {
    const r = await writeSparseSuper(plan, size, outPath, {
      onProgress: opts.onProgress,
      direct: opts.direct,
      sha256: opts.sha256,
      uniformBlocks: opts.uniformBlocks,
    });
    return { path: outPath, sparse: true, size: r.size, plan, sha256: r.sha256 };
  }
  const out = await open(outPath, 'w');
  try {
    await out.truncate(size);
    const geo = serializeGeometry(plan.geometry);
    await out.write(geo, 0, geo.length, primaryGeometryOffset());
    await out.write(geo, 0, geo.length, backupGeometryOffset());
    const meta = Buffer.alloc(plan.geometry.metadataMaxSize);
    plan.metadataBlob.copy(meta);
    for (let s = 0; s < plan.geometry.metadataSlotCount; s++) {
      await out.write(meta, 0, meta.length, primaryMetadataOffset(plan.geometry, s));
      await out.write(meta, 0, meta.length, backupMetadataOffset(plan.geometry, s));
    }
    const total = plan.placements.reduce((a, p) => a + p.imageSize, 0);
    let done = 0;
    const buf = Buffer.allocUnsafeSlow(4 * 1024 * 1024);
    for (const p of plan.placements) {
      if (!p.imagePath) continue;
      const img = await openImage(p.imagePath);
      try {
        let src = 0;
        for (const e of p.extents) {
          for (let o = 0; o < e.size && src < img.size; ) {
            const n = Math.min(buf.length, e.size - o, img.size - src);
            const got = await img.read(buf.subarray(0, n), src);
            if (got < n) bad(`image ${p.imagePath} shrank while reading`);
            await writeAll(out, buf.subarray(0, n), e.offset + o);
            o += n;
            src += n;
            done += n;
            opts.onProgress?.({ stage: 'build super', done, total, unit: 'bytes' });
          }
        }
      } finally {
        await img.close();
      }
    }
  } finally {
    await out.close();
  }
  return { path: outPath, sparse: false, size, plan };
}

/** One stretch of a partition on block device 0 and where its image bytes start. */
interface SuperSpan {
  offset: number;
  size: number;
  placement: SuperPlan['placements'][number];
  /** Offset in the partition image of the span's first byte. */
  imageOffset: number;
}

/**
 * Writes the sparse super straight from the plan, in one pass in device order, never
 * materialising the raw device: the metadata region (geometry x2, every metadata copy) and each
 * partition's image as classified blocks, partition space past its image as FILL 0 (the
 * filesystem may rely on those zeros), and everything outside partitions and metadata (the
 * reserved first 4 KiB, the padding up to the first logical sector, gaps, the unused tail) as
 * DONT_CARE. Expands to exactly the raw super the raw path writes, with total_blks = device
 * size / block size. With `sha256`, a first pass only classifies (reads every image, writes
 * nothing) so that the second writes each header final and hashes the file as it goes: no
 * second read of a GiB image for its digest.
 */
async function writeSparseSuper(
  plan: SuperPlan,
  deviceSize: number,
  outPath: string,
  opts: {
    onProgress?: ProgressFn;
    direct?: boolean;
    sha256?: boolean;
    uniformBlocks?: ReadonlyMap<string, UniformBlocks>;
  },
): Promise<{ size: number; sha256?: string }> {
  const g = plan.geometry;
  const bs = g.logicalBlockSize;
  const metaEnd = backupMetadataOffset(g, g.metadataSlotCount);
  // total_blks is a u32: refuse before writing anything rather than after.
  if (deviceSize / bs > 0xffffffff)
    bad(
      `block device of ${deviceSize} bytes has more than 2^32 ${bs}-byte blocks: too large for a sparse image`,
      {
        size: deviceSize,
        blockSize: bs,
      },
    );
  const spans: SuperSpan[] = [];
  for (const p of plan.placements) {
    let imageOffset = 0;
    for (const e of p.extents) {
      spans.push({ offset: e.offset, size: e.size, placement: p, imageOffset });
      imageOffset += e.size;
    }
  }
  spans.sort((a, b) => a.offset - b.offset);
  // Sparse chunks cover whole blocks (lpmake's sparse builder has the same requirement).
  for (const s of spans)
    if (s.offset % bs !== 0 || s.size % bs !== 0)
      bad(
        `partition ${s.placement.name}: extent at ${s.offset} is not aligned to the ${bs}-byte block size`,
        {
          partition: s.placement.name,
          offset: s.offset,
          blockSize: bs,
        },
      );

  let replay: SparsePlan | undefined;
  if (opts.sha256) {
    const planner = SparseStreamWriter.plan(bs);
    // Named apart from the writing pass, so that progress never runs backwards within a stage.
    const scan = opts.onProgress && ((e: ProgressEvent) => opts.onProgress?.({ ...e, stage: 'scan super' }));
    await emitSparseSuper(planner, plan, spans, deviceSize, metaEnd, scan, opts.uniformBlocks);
    replay = (await planner.finish()).plan;
  }
  const w = await SparseStreamWriter.create(outPath, bs, {
    direct: opts.direct,
    replay,
    sha256: opts.sha256,
  });
  try {
    await emitSparseSuper(w, plan, spans, deviceSize, metaEnd, opts.onProgress);
    return await w.finish();
  } catch (e) {
    await w.abort();
    await rm(outPath, { force: true });
    throw e;
  }
}

/**
 * Feeds the expanded super device, in order, to a sparse writer (see writeSparseSuper). A
 * planning writer takes the blocks `known` maps (by image path) as classified, unread.
 */
async function emitSparseSuper(
  w: SparseStreamWriter,
  plan: SuperPlan,
  spans: SuperSpan[],
  deviceSize: number,
  metaEnd: number,
  onProgress?: ProgressFn,
  known?: ReadonlyMap<string, UniformBlocks>,
): Promise<void> {
  const bs = plan.geometry.logicalBlockSize;
  const ioSize = Math.max(bs, Math.floor((4 * 1024 * 1024) / bs) * bs);
  // Two buffers: the next image read is in flight while this one is classified and written.
  const bufs = [Buffer.allocUnsafeSlow(ioSize), Buffer.allocUnsafeSlow(ioSize)];
  const buf = bufs[0];
  // The reserved first 4 KiB are zeros nothing reads: DONT_CARE (whole blocks of it).
  const regionStart = Math.floor(primaryGeometryOffset() / bs) * bs;
  await w.skip(regionStart / bs);
  // The metadata region, rebuilt piecewise so a large metadataMaxSize costs no memory.
  const regionEnd = Math.ceil(metaEnd / bs) * bs;
  for (let pos = regionStart; pos < regionEnd; ) {
    const n = Math.min(buf.length, regionEnd - pos);
    metadataRegionBytes(plan, buf.subarray(0, n), pos);
    await w.append(buf.subarray(0, n));
    pos += n;
  }
  const total = plan.placements.reduce((a, p) => a + p.imageSize, 0);
  let done = 0;
  for (const s of spans) {
    if (s.offset < w.rawOffset)
      bad(`partition ${s.placement.name} overlaps the metadata region or another partition`, {
        partition: s.placement.name,
      });
    await w.skip((s.offset - w.rawOffset) / bs);
    const p = s.placement;
    // Image bytes that land in this span; the rest of the span is zeros.
    const dataLen = Math.max(0, Math.min(s.size, p.imageSize - s.imageOffset));
    // Leading whole blocks of the span that a map classifies: planned without reading them.
    const map = p.imagePath ? known?.get(p.imagePath) : undefined;
    let mapped = 0;
    if (map && map.blockSize === bs && s.imageOffset % bs === 0) {
      const first = s.imageOffset / bs;
      const last = Math.min(map.blocks, first + Math.floor(dataLen / bs));
      if (last > first) {
        await visitUniformBlocks(map, first, last, (count, value) => w.appendClassified(count, value));
        mapped = (last - first) * bs;
        done += mapped;
        onProgress?.({ stage: 'build super', done, total, unit: 'bytes' });
      }
    }
    if (dataLen > mapped && p.imagePath) {
      const img = await openImage(p.imagePath);
      let which = 0;
      const readAt = (o: number) => {
        const n = Math.min(ioSize, dataLen - o);
        return img.read(bufs[which].subarray(0, n), s.imageOffset + o).then((got) => ({ n, got }));
      };
      let pending = readAt(mapped);
      try {
        for (let o = mapped; o < dataLen; ) {
          const { n, got } = await pending;
          if (got < n) bad(`image ${p.imagePath} shrank while reading`, { partition: p.name });
          const cur = bufs[which];
          which = 1 - which;
          if (o + n < dataLen) pending = readAt(o + n);
          // A last partial block is padded with the zeros the raw device holds there.
          const padded = Math.ceil(n / bs) * bs;
          cur.fill(0, n, padded);
          await w.append(cur.subarray(0, padded));
          o += n;
          done += n;
          onProgress?.({ stage: 'build super', done, total, unit: 'bytes' });
        }
      } finally {
        // A read still in flight (after an error) must land before the image is closed.
        await pending.catch(() => {});
        await img.close();
      }
    }
    const end = s.offset + s.size;
    if (end > w.rawOffset) await w.fill((end - w.rawOffset) / bs, 0);
  }
  if (deviceSize > w.rawOffset) await w.skip((deviceSize - w.rawOffset) / bs);
}

/**
 * Fills `dst` with the metadata region's bytes from device offset `pos`: geometry x2, every
 * metadata copy (zero-padded to metadataMaxSize), zeros elsewhere.
 */
function metadataRegionBytes(plan: SuperPlan, dst: Buffer, pos: number): void {
  const g = plan.geometry;
  dst.fill(0);
  const place = (src: Buffer, at: number) => {
    const from = Math.max(at, pos);
    const to = Math.min(at + src.length, pos + dst.length);
    if (from < to) src.copy(dst, from - pos, from - at, to - at);
  };
  const geo = serializeGeometry(g);
  place(geo, primaryGeometryOffset());
  place(geo, backupGeometryOffset());
  for (let s = 0; s < g.metadataSlotCount; s++) {
    place(plan.metadataBlob, primaryMetadataOffset(g, s));
    place(plan.metadataBlob, backupMetadataOffset(g, s));
  }
}

/**
 * Writes super_empty.img (lpmake without images): one geometry block then one metadata copy.
 * fastbootd's `update-super` reads it to recreate the partition table; partitions are sized 0
 * unless `keepSizes` (as the Android build does), and images are ignored.
 */
export async function buildSuperEmpty(
  layout: SuperLayout,
  outPath: string,
  opts: { keepSizes?: boolean } = {},
): Promise<{ path: string; size: number; plan: SuperPlan }> {
  const plan = await planSuper(
    {
      ...layout,
      partitions: layout.partitions.map((p) => ({
        ...p,
        imagePath: undefined,
        size: opts.keepSizes ? p.size : 0,
      })),
    },
    { sizesOnly: true },
  );
  const blob = Buffer.concat([serializeGeometry(plan.geometry), plan.metadataBlob]);
  const out = await open(outPath, 'w');
  try {
    await out.write(blob, 0, blob.length, 0);
    await out.truncate(blob.length);
  } finally {
    await out.close();
  }
  return { path: outPath, size: blob.length, plan };
}

/**
 * Expands a slot-less layout for A/B the way the Android build feeds lpmake: every group G
 * becomes G_a and G_b with the same maximum size, every partition P becomes P_a (with its
 * image and size) in G_a and an empty P_b in G_b.
 */
export function expandAbLayout(layout: SuperLayout): SuperLayout {
  return {
    ...layout,
    groups: ['_a', '_b'].flatMap((s) =>
      layout.groups.map((g) => ({ name: `${g.name}${s}`, maxSize: g.maxSize })),
    ),
    partitions: [
      ...layout.partitions.map((p) => ({ ...p, name: `${p.name}_a`, group: `${p.group}_a` })),
      ...layout.partitions.map((p) => ({
        name: `${p.name}_b`,
        group: `${p.group}_b`,
        size: 0,
        readonly: p.readonly,
      })),
    ],
  };
}
