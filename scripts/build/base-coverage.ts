/**
 * Does the device profile account for every partition of the base, and does the base carry every
 * partition the profile verifies? A partner base (Pixel factory zip, GSI + vendor dump) often has
 * partitions a hand-written profile forgets (odm, vendor_dlkm, init_boot, dtbo…). Dropping one
 * from the output is not harmless: with AVB, the new vbmeta would carry no descriptor for it and
 * the bootloader or fs_mgr would refuse to boot. So the build refuses, naming what is missing.
 */
import { InputError } from '../errors.ts';
import { FIRMWARE_IMAGES } from '../formats/factory-zip.ts';
import type { DeviceProfile } from '../model/index.ts';

/**
 * Names the build writes itself, whatever the base holds, and firmware it leaves to the device
 * (a Pixel factory zip's bootloader/radio images are not part of the Android build).
 */
function notPassedThrough(device: DeviceProfile): Set<string> {
  return new Set(['vbmeta', ...device.avb.chained.map((c) => c.partition), ...FIRMWARE_IMAGES]);
}

/**
 * Throws InputError BASE_PARTITION_NOT_IN_PROFILE when the base has partition images the profile
 * does not list (they would be silently left out of the output), and BASE_PARTITION_MISSING when
 * the profile signs a partition the base does not carry: a physical one (boot, dtbo…) would keep
 * the device's old image, whose descriptor is no longer in vbmeta; a logical one (a GSI without
 * vendor) would be missing from super altogether. Both are refused before any work.
 */
export function checkBaseCoverage(device: DeviceProfile, baseImages: Record<string, string>): void {
  const listed = new Set(device.partitions.map((p) => p.name));
  const own = notPassedThrough(device);
  const unlisted = Object.keys(baseImages)
    .filter((name) => !listed.has(name) && !own.has(name))
    .sort();
  if (unlisted.length) {
    throw new InputError(
      `the base has partition(s) the device profile does not list: ${unlisted.join(', ')}`,
      {
        code: 'BASE_PARTITION_NOT_IN_PROFILE',
        context: { device: device.file, unlisted, base: Object.keys(baseImages).sort() },
        hint: `add ${unlisted.join(', ')} to the profile's partitions (location, fs, size) and, when the device verifies them, to avb.footers or a chained vbmeta; they are then passed through and re-signed`,
      },
    );
  }
  const signed = new Set([
    ...device.avb.footers.map((f) => f.partition),
    ...device.avb.chained.flatMap((c) => c.partitions),
  ]);
  const missing = [...signed].filter((name) => !baseImages[name]).sort();
  if (missing.length) {
    const where = (name: string) =>
      device.partitions.find((p) => p.name === name)?.location === 'super' ? 'logical' : 'physical';
    throw new InputError(
      `the device profile signs ${missing.map((n) => `${n} (${where(n)})`).join(', ')}, but the base has no such image: the new vbmeta would describe no ${missing.join(', ')}, and the device would not boot`,
      {
        code: 'BASE_PARTITION_MISSING',
        context: { device: device.file, missing, base: Object.keys(baseImages).sort() },
        hint: `either add the device's ${missing.map((n) => `${n}.img`).join(', ')} to the base folder (a GSI carries no vendor: take it from the device's factory image), or drop ${missing.join(', ')} from ${device.file} (partitions, super groups, avb.footers, avb.chained) if this device has no such partition`,
      },
    );
  }
}
