/**
 * The super partition's layout as fastbootd enforces it (liblp's MetadataBuilder, reused from
 * scripts/formats/super planSuper): every logical partition in a group whose maximum size it may
 * not push past, extents aligned to the block device's alignment after the metadata area (geometry
 * plus metadata slots × max size, primary and backup), and the metadata itself within its maximum
 * size. A change that does not fit is refused before anything is recorded.
 */
import { InputError } from '../errors.ts';
import { planSuper, type SuperLayout } from '../formats/super/index.ts';
import type { DeviceJson, PartitionInfo, SuperInfo } from './state.ts';

const MiB = 1024 * 1024;

/** The layout `partitions` (logical ones) would have on this device's super. */
export function layoutOf(
  d: DeviceJson,
  partitions: Record<string, PartitionInfo>,
  sp: SuperInfo,
): SuperLayout {
  const groups = Object.entries(sp.groups ?? {}).map(([name, maxSize]) => ({ name, maxSize }));
  return {
    blockDevices: [{ name: sp.name, size: sp.size, alignment: sp.alignment ?? MiB }],
    groups,
    partitions: Object.entries(partitions)
      .filter(([, p]) => p.logical)
      .map(([name, p]) => ({ name, group: sp.partitionGroups?.[name] ?? 'default', size: p.size })),
    metadataSlots: sp.metadataSlots ?? (d.slotCount === 2 ? 2 : 1),
    metadataMaxSize: sp.metadataMaxSize ?? 65536,
  };
}

/**
 * Undefined when `partitions` fit the super layout `sp`; otherwise why not (liblp's reason: a group
 * over its maximum size, not enough space in super, metadata too large).
 */
export async function superLayoutProblem(
  d: DeviceJson,
  partitions: Record<string, PartitionInfo>,
  sp: SuperInfo,
): Promise<string | undefined> {
  try {
    await planSuper(layoutOf(d, partitions, sp), { sizesOnly: true });
    return undefined;
  } catch (e) {
    if (e instanceof InputError && e.code === 'SUPER_LAYOUT') return e.message.replace(/^super layout: /, '');
    throw e;
  }
}
