import { open } from 'node:fs/promises';
import { FormatError, InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { isAllZero, writeAll } from '../io.ts';
import { type ImageReader, openImage } from '../sparse.ts';
import {
  backupGeometryOffset,
  backupMetadataOffset,
  HEADER_V1_2_SIZE,
  LP_HEADER_FLAG_VIRTUAL_AB_DEVICE,
  LP_METADATA_GEOMETRY_MAGIC,
  LP_METADATA_GEOMETRY_SIZE,
  LP_PARTITION_ATTR_READONLY,
  LP_PARTITION_ATTR_SLOT_SUFFIXED,
  LP_SECTOR_SIZE,
  LP_TARGET_TYPE_LINEAR,
  LP_TARGET_TYPE_ZERO,
  type LpBlockDevice,
  type LpGeometry,
  type LpGroup,
  type LpMetadata,
  parseGeometry,
  parseMetadata,
  primaryGeometryOffset,
  primaryMetadataOffset,
} from './format.ts';

/** Where each copy of a metadata slot stands. */
export interface SuperSlot {
  slot: number;
  /** 'ok' or the reason the primary copy was rejected. */
  primary: string;
  /** 'ok' or the reason the backup copy was rejected ('absent' in super_empty.img). */
  backup: string;
  /** The copy liblp would use (primary first, then backup), if any is valid. */
  metadata?: LpMetadata;
}

export interface SuperExtentInfo {
  /** Byte offset in the block device (LINEAR) — in this image when blockDevice is 0. */
  offset: number;
  size: number;
  type: 'linear' | 'zero';
  blockDevice: number;
}

export interface SuperPartitionInfo {
  /** Name as stored in the metadata. */
  name: string;
  /**
   * Name the device gives it on the slot read (liblp AdjustMetadataForSlot): `name` plus `_a`,
   * `_b`, ... when the partition is SLOT_SUFFIXED (retrofit devices), else `name`.
   */
  slotName: string;
  group: string;
  attributes: number;
  readonly: boolean;
  /** Bytes (sum of extents). */
  size: number;
  extents: SuperExtentInfo[];
}

export interface SuperInfo {
  path: string;
  /** 'super': a whole super partition image; 'super_empty': lpmake's metadata-only image. */
  layout: 'super' | 'super_empty';
  /** Read through Android sparse without expanding it. */
  sparse: boolean;
  /** Expanded size of the image file. */
  size: number;
  geometry: LpGeometry;
  /** Which geometry copy was valid first ('primary' at 4096, 'backup' at 8192). */
  geometrySource: 'primary' | 'backup';
  /** Why the primary geometry was rejected, when the backup was used. */
  geometryError?: string;
  slots: SuperSlot[];
  /** Metadata of the slot asked for (default 0). */
  metadata: LpMetadata;
  slot: number;
  virtualAB: boolean;
  groups: LpGroup[];
  blockDevices: LpBlockDevice[];
  partitions: SuperPartitionInfo[];
}

async function readAt(img: ImageReader, pos: number, len: number): Promise<Buffer> {
  // Never allocate more than the image holds, whatever a length field claims.
  const b = Buffer.alloc(Math.max(0, Math.min(len, img.size - pos)));
  const n = await img.read(b, pos);
  return b.subarray(0, n);
}

/**
 * Bytes to read for one metadata copy: liblp reads the header, then tables_size bytes (checked
 * only against metadata_max_size), so a copy may run up to a header's length past its slot.
 */
function copyReadSize(g: LpGeometry): number {
  return g.metadataMaxSize + HEADER_V1_2_SIZE;
}

function why(e: unknown): string {
  if (e instanceof FormatError) return e.message;
  throw e;
}

/** Reads geometry (primary, else backup) and every metadata slot (primary, else backup). */
export async function readSuperFrom(img: ImageReader, opts: { slot?: number } = {}): Promise<SuperInfo> {
  const file = img.path;
  const head = await readAt(img, 0, 4);
  const emptyLayout = head.length === 4 && head.readUInt32LE(0) === LP_METADATA_GEOMETRY_MAGIC;
  let geometry: LpGeometry;
  let geometrySource: 'primary' | 'backup' = 'primary';
  let geometryError: string | undefined;
  const slots: SuperSlot[] = [];
  if (emptyLayout) {
    geometry = parseGeometry(await readAt(img, 0, LP_METADATA_GEOMETRY_SIZE), 0, file);
    const m = parseMetadata(
      await readAt(img, LP_METADATA_GEOMETRY_SIZE, copyReadSize(geometry)),
      geometry,
      LP_METADATA_GEOMETRY_SIZE,
      file,
    );
    // super_empty.img carries one copy, used for every slot.
    for (let s = 0; s < geometry.metadataSlotCount; s++)
      slots.push({ slot: s, primary: 'ok', backup: 'absent', metadata: m });
  } else {
    try {
      geometry = parseGeometry(
        await readAt(img, primaryGeometryOffset(), LP_METADATA_GEOMETRY_SIZE),
        primaryGeometryOffset(),
        file,
      );
    } catch (e) {
      geometryError = why(e);
      try {
        geometry = parseGeometry(
          await readAt(img, backupGeometryOffset(), LP_METADATA_GEOMETRY_SIZE),
          backupGeometryOffset(),
          file,
        );
        geometrySource = 'backup';
      } catch (e2) {
        throw new FormatError({
          format: 'lp-metadata',
          reason: `no valid geometry (primary: ${geometryError}; backup: ${why(e2)})`,
          field: 'geometry',
          offset: primaryGeometryOffset(),
          file,
        });
      }
    }
    // No check that the whole metadata region is present: like liblp, each copy is read on its
    // own, so a dump of only the first megabytes of super still yields its primary metadata.
    for (let s = 0; s < geometry.metadataSlotCount; s++) {
      const slot: SuperSlot = { slot: s, primary: 'ok', backup: 'ok' };
      for (const which of ['primary', 'backup'] as const) {
        const off =
          which === 'primary' ? primaryMetadataOffset(geometry, s) : backupMetadataOffset(geometry, s);
        try {
          const m = parseMetadata(await readAt(img, off, copyReadSize(geometry)), geometry, off, file);
          slot.metadata ??= m;
        } catch (e) {
          slot[which] = why(e);
        }
      }
      slots.push(slot);
    }
  }
  const slotNo = opts.slot ?? 0;
  if (slotNo < 0 || slotNo >= slots.length)
    throw new InputError(`metadata slot ${slotNo} does not exist (slots: ${slots.length})`, {
      code: 'SUPER_SLOT',
      context: { file, slot: slotNo },
    });
  const chosen = slots[slotNo];
  if (!chosen.metadata)
    throw new FormatError({
      format: 'lp-metadata',
      reason: `slot ${slotNo}: no valid metadata copy (primary: ${chosen.primary}; backup: ${chosen.backup})`,
      field: 'metadata',
      offset: primaryMetadataOffset(geometry, slotNo),
      file,
    });
  const m = chosen.metadata;
  const partitions = m.partitions.map((p) => {
    const extents = m.extents.slice(p.firstExtentIndex, p.firstExtentIndex + p.numExtents).map(
      (e): SuperExtentInfo => ({
        offset: e.targetType === LP_TARGET_TYPE_LINEAR ? e.targetData * LP_SECTOR_SIZE : 0,
        size: e.numSectors * LP_SECTOR_SIZE,
        type: e.targetType === LP_TARGET_TYPE_ZERO ? 'zero' : 'linear',
        blockDevice: e.targetSource,
      }),
    );
    return {
      name: p.name,
      slotName:
        p.attributes & LP_PARTITION_ATTR_SLOT_SUFFIXED
          ? `${p.name}_${String.fromCharCode(97 + slotNo)}`
          : p.name,
      group: m.groups[p.groupIndex].name,
      attributes: p.attributes,
      readonly: (p.attributes & LP_PARTITION_ATTR_READONLY) !== 0,
      size: extents.reduce((a, e) => a + e.size, 0),
      extents,
    };
  });
  return {
    path: file,
    layout: emptyLayout ? 'super_empty' : 'super',
    sparse: img.sparse,
    size: img.size,
    geometry,
    geometrySource,
    geometryError,
    slots,
    metadata: m,
    slot: slotNo,
    virtualAB: (m.header.flags & LP_HEADER_FLAG_VIRTUAL_AB_DEVICE) !== 0,
    groups: m.groups,
    blockDevices: m.blockDevices,
    partitions,
  };
}

/**
 * Parses a super image — raw, Android-sparse (read in place, never expanded to disk) or
 * lpmake's super_empty.img — validating both geometry copies and every metadata slot.
 */
export async function readSuper(path: string, opts: { slot?: number } = {}): Promise<SuperInfo> {
  const img = await openImage(path);
  try {
    return await readSuperFrom(img, opts);
  } finally {
    await img.close();
  }
}

/** True when these bytes (from offset 0) look like a super image or super_empty.img. */
export function looksLikeSuper(head: Buffer): boolean {
  const at = (o: number) => head.length >= o + 4 && head.readUInt32LE(o) === LP_METADATA_GEOMETRY_MAGIC;
  return at(0) || at(primaryGeometryOffset()) || at(backupGeometryOffset());
}

/**
 * Copies logical partition `name` out of a super image (raw or sparse) into `outPath`,
 * streaming extent by extent in 4 MiB buffers. All-zero buffers and ZERO extents become holes.
 * Extents on other block devices (retrofit or multi-device super: target_source > 0) are read
 * from `devices`, images named by the block device's partition name (e.g. `{ system_b: path }`).
 */
export async function extractPartition(
  superPath: string,
  name: string,
  outPath: string,
  opts: { slot?: number; onProgress?: ProgressFn; devices?: Record<string, string> } = {},
): Promise<{ size: number }> {
  const img = await openImage(superPath);
  const others = new Map<number, ImageReader>();
  try {
    const info = await readSuperFrom(img, opts);
    const p = info.partitions.find((x) => x.name === name);
    if (!p)
      throw new InputError(`no logical partition named ${name} in ${superPath}`, {
        code: 'SUPER_NO_PARTITION',
        context: { file: superPath, name, available: info.partitions.map((x) => x.name) },
      });
    if (info.layout === 'super_empty' && p.size > 0)
      throw new InputError(`${superPath} is a super_empty.img: it holds metadata only, no partition data`, {
        code: 'SUPER_EMPTY',
        context: { file: superPath },
      });
    const deviceImage = async (index: number): Promise<ImageReader> => {
      if (index === 0) return img;
      const known = others.get(index);
      if (known) return known;
      const devName = info.blockDevices[index]?.partitionName ?? String(index);
      const path = opts.devices?.[devName];
      if (!path)
        throw new InputError(
          `partition ${name} has an extent on block device ${devName}, which is not in this image`,
          {
            code: 'SUPER_OTHER_DEVICE',
            context: { file: superPath, name, device: devName },
            hint: `pass the ${devName} image too`,
          },
        );
      const r = await openImage(path);
      others.set(index, r);
      return r;
    };
    const out = await open(outPath, 'w');
    try {
      // Two buffers: the next read is in flight while this chunk is written (this copy is on
      // the critical path of a build that starts from a super image).
      const bufs = [Buffer.allocUnsafeSlow(4 * 1024 * 1024), Buffer.allocUnsafeSlow(4 * 1024 * 1024)];
      let outPos = 0;
      for (const e of p.extents) {
        const src = e.type === 'linear' ? await deviceImage(e.blockDevice) : undefined;
        if (src && e.offset + e.size > src.size)
          throw new FormatError({
            format: 'lp-metadata',
            reason: `partition ${name}: extent runs past the end of block device ${e.blockDevice}`,
            field: 'extent.target_data',
            expected: `<= ${src.size}`,
            found: e.offset + e.size,
            file: src.path,
          });
        let which = 0;
        const readAt = (o: number): Promise<Buffer> | undefined => {
          if (!src || o >= e.size) return undefined;
          const chunk = bufs[which].subarray(0, Math.min(bufs[which].length, e.size - o));
          return src
            .read(chunk, e.offset + o)
            .then((got) => (got < chunk.length ? chunk.fill(0, got) : chunk));
        };
        let pending = readAt(0);
        try {
          for (let o = 0; o < e.size; ) {
            const n = Math.min(bufs[0].length, e.size - o);
            const chunk = await pending;
            which = 1 - which;
            pending = readAt(o + n);
            if (chunk && !isAllZero(chunk)) await writeAll(out, chunk, outPos);
            o += n;
            outPos += n;
            opts.onProgress?.({ stage: `extract ${name}`, done: outPos, total: p.size, unit: 'bytes' });
          }
        } finally {
          // A read still in flight (after an error) must land before its image is closed.
          await pending?.catch(() => {});
        }
      }
      await out.truncate(outPos);
      return { size: outPos };
    } finally {
      await out.close();
    }
  } finally {
    for (const r of others.values()) await r.close();
    await img.close();
  }
}
