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
  if (!baseImages.vbmeta) return out;
  const footered = new Set(device.avb.footers.map((f) => f.partition));
  const seen = new Set<string>();
  const queue = ['vbmeta'];
  const found: AvbDescriptor[] = [];
  for (let name = queue.shift(); name; name = queue.shift()) {
    if (seen.has(name) || !baseImages[name]) continue;
    seen.add(name);
    const img = await readAvbImage(baseImages[name]);
    for (const d of img.vbmeta.descriptors) {
      if (d.kind === 'chain_partition') queue.push(d.partitionName);
      else if (d.kind === 'hash' || d.kind === 'hashtree') found.push(d);
    }
  }
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
