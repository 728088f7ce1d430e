/**
 * Descriptors the new vbmeta must carry over from the base's: a partner base's vbmeta.img (and the
 * vbmeta_system.img/vbmeta_vendor.img it chains to) describes partitions the device profile may
 * not re-sign — a dtbo or vendor_boot the build never touches. Leaving them out would make
 * avb_slot_verify fail on the device (no descriptor for a requested partition), so the base's
 * hash/hashtree descriptor of every such untouched partition is copied as it is: the bytes it
 * describes are unchanged, so its digest still holds.
 */
import { InputError } from '../errors.ts';
import { type AvbDescriptor, readAvbImage } from '../formats/avb/index.ts';
import type { DeviceProfile } from '../model/index.ts';

/** Where a carried descriptor goes: "vbmeta", or the chained vbmeta partition that lists it. */
export type CarriedDescriptors = Map<string, AvbDescriptor[]>;

/**
 * Reads the base's vbmeta and the chained vbmeta images it names (when the base has them), and
 * returns, per target vbmeta of the device profile, the hash/hashtree descriptors of partitions the
 * profile does not footer. Throws AVB_DESCRIPTOR_STALE when such a partition is one the build
 * edits (its old descriptor would no longer match).
 */
export async function carriedDescriptors(
  device: DeviceProfile,
  baseImages: Record<string, string>,
  edited: ReadonlySet<string>,
): Promise<CarriedDescriptors> {
  const out: CarriedDescriptors = new Map();
  const footered = new Set(device.avb.footers.map((f) => f.partition));
  const found = (await readBaseVbmetas(baseImages)).flatMap((v) => v.descriptors);
  for (const d of found) {
    if (d.kind !== 'hash' && d.kind !== 'hashtree') continue;
    const part = d.partitionName;
    if (footered.has(part)) continue;
    if (edited.has(part)) {
      throw new InputError(
        `the build edits ${part}, but the device profile has no avb footer for it: the base's ${d.kind} descriptor would no longer match`,
        {
          code: 'AVB_DESCRIPTOR_STALE',
          context: { partition: part, device: device.file },
          hint: `add { partition: ${part}, type: ${d.kind}, hashAlgorithm: ${d.hashAlgorithm} } to avb.footers in the device profile`,
        },
      );
    }
    const target = device.avb.chained.find((c) => c.partitions.includes(part))?.partition ?? 'vbmeta';
    const list = out.get(target) ?? [];
    if (!list.some((x) => (x.kind === 'hash' || x.kind === 'hashtree') && x.partitionName === part))
      list.push(d);
    out.set(target, list);
  }
  return out;
}

interface BaseVbmeta {
  /** vbmeta, or the partition a chain descriptor names. */
  name: string;
  /** Rollback index location the device checks this vbmeta's index against (0 for vbmeta). */
  location: number;
  rollbackIndex: bigint;
  descriptors: AvbDescriptor[];
}

/** The base's vbmeta.img and every vbmeta it chains to that the base carries, in chain order. */
async function readBaseVbmetas(baseImages: Record<string, string>): Promise<BaseVbmeta[]> {
  const out: BaseVbmeta[] = [];
  const seen = new Set<string>();
  const queue: Array<{ name: string; location: number }> = [{ name: 'vbmeta', location: 0 }];
  for (let q = queue.shift(); q; q = queue.shift()) {
    if (seen.has(q.name) || !baseImages[q.name]) continue;
    seen.add(q.name);
    const img = await readAvbImage(baseImages[q.name]);
    out.push({ ...q, rollbackIndex: img.vbmeta.header.rollbackIndex, descriptors: img.vbmeta.descriptors });
    for (const d of img.vbmeta.descriptors)
      if (d.kind === 'chain_partition')
        queue.push({ name: d.partitionName, location: d.rollbackIndexLocation });
  }
  return out;
}

/**
 * The rollback indexes the base's vbmetas carry, per rollback index location. A locked device
 * stores the highest index it booted per location and refuses a vbmeta with a lower one
 * (avb_slot_verify: AVB_SLOT_VERIFY_RESULT_ERROR_ROLLBACK_INDEX), and Pixel builds use the
 * security patch date as index: the remastered image must not go below them.
 */
export async function baseRollbackFloors(baseImages: Record<string, string>): Promise<Map<number, bigint>> {
  const floors = new Map<number, bigint>();
  for (const v of await readBaseVbmetas(baseImages))
    if (v.rollbackIndex > (floors.get(v.location) ?? 0n)) floors.set(v.location, v.rollbackIndex);
  return floors;
}

/**
 * Refuses a profile whose rollback index is below one of the base's (AVB_ROLLBACK_BELOW_BASE): a
 * device that booted the base would refuse the remaster once locked. The profile states the index
 * (the checker compares vbmeta with it), so it is raised there, not behind the partner's back.
 */
export function checkRollbackFloors(device: DeviceProfile, floors: ReadonlyMap<number, bigint>): void {
  const own = BigInt(device.avb.rollbackIndex);
  const above = [...floors].filter(([, floor]) => floor > own).sort((a, b) => a[0] - b[0]);
  if (!above.length) return;
  const highest = above.map(([, f]) => f).sort((a, b) => (a < b ? 1 : -1))[0]; // bigints: no Math.max
  throw new InputError(
    `the device profile's avb.rollbackIndex ${own} is below the base's (${above.map(([l, f]) => `${f} at location ${l}`).join(', ')})`,
    {
      code: 'AVB_ROLLBACK_BELOW_BASE',
      context: {
        device: device.file,
        profile: String(own),
        base: Object.fromEntries(above.map(([l, f]) => [String(l), String(f)])),
      },
      hint: `set avb.rollbackIndex to ${highest} or more in the device profile: a locked device that booted the base refuses a lower index`,
    },
  );
}
