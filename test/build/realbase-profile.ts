/**
 * Device profile and product for the realistic (Pixel/GSI-shaped) base of
 * scripts/sample/realistic-base.ts, written into a copy of the sample tree.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const REALBASE_DEVICE = `# Pixel-shaped tablet: A/B, two super groups, boot/init_boot/vendor_boot/dtbo hash footers in
# vbmeta, system/system_ext/product hashtrees in the chained vbmeta_system.
vendor: omie
codename: realtab
name: Omie realistic tablet
fastboot:
  products: [omie_tablet]
  bootloaderVersions: []
  maxDownloadSize: 256MiB
ab: true
partitions:
  - { name: boot, fs: raw, location: physical, size: 8MiB }
  - { name: init_boot, fs: raw, location: physical, size: 8MiB }
  - { name: vendor_boot, fs: raw, location: physical, size: 8MiB }
  - { name: dtbo, fs: raw, location: physical, size: 1MiB }
  - { name: vbmeta, fs: raw, location: physical, size: 64KiB }
  - { name: vbmeta_system, fs: raw, location: physical, size: 64KiB }
  - { name: userdata, fs: raw, location: physical, size: 256MiB }
  - { name: system, fs: ext4, location: super, size: 1GiB }
  - { name: system_ext, fs: ext4, location: super, size: 256MiB }
  - { name: product, fs: erofs, location: super, size: 384MiB }
  - { name: vendor, fs: ext4, location: super, size: 128MiB }
  - { name: odm, fs: ext4, location: super, size: 32MiB }
  - { name: vendor_dlkm, fs: erofs, location: super, size: 32MiB }
super:
  name: super
  blockDevices:
    - { name: super, size: 3GiB, alignment: 1MiB }
  metadataSlots: 3
  metadataMaxSize: 65536
  groups:
    - { name: google_system_dynamic_partitions, maxSize: 1400MiB, partitions: [system, system_ext, product] }
    - { name: google_vendor_dynamic_partitions, maxSize: 100MiB, partitions: [vendor, odm, vendor_dlkm] }
avb:
  algorithm: SHA256_RSA4096
  # Not below the base's (vbmeta_system carries the security patch date, as on Pixels).
  rollbackIndex: 1709251200
  footers:
    - { partition: boot, type: hash, hashAlgorithm: sha256 }
    - { partition: init_boot, type: hash, hashAlgorithm: sha256 }
    - { partition: vendor_boot, type: hash, hashAlgorithm: sha256 }
    - { partition: dtbo, type: hash, hashAlgorithm: sha256 }
    - { partition: system, type: hashtree, hashAlgorithm: sha256 }
    - { partition: system_ext, type: hashtree, hashAlgorithm: sha256 }
    - { partition: product, type: hashtree, hashAlgorithm: sha256 }
    - { partition: vendor, type: hashtree, hashAlgorithm: sha256 }
    - { partition: odm, type: hashtree, hashAlgorithm: sha256 }
    - { partition: vendor_dlkm, type: hashtree, hashAlgorithm: sha256 }
  chained:
    - { partition: vbmeta_system, rollbackIndexLocation: 1, partitions: [system, system_ext, product] }
bootloader:
  unlock: ["flashing unlock"]
  lock: ["flashing lock"]
`;

/**
 * Copies the sample tree to `dest` and adds device/omie/realtab with a product that is the sample
 * product on the realistic device. Returns the product YAML path. `edit` may rewrite the device
 * profile (tests of profiles that omit partitions).
 */
export function writeRealbaseTree(
  sampleTree: string,
  dest: string,
  edit: (d: string) => string = (d) => d,
): string {
  cpSync(sampleTree, dest, { recursive: true });
  const dir = join(dest, 'device/omie/realtab');
  mkdirSync(join(dir, 'products'), { recursive: true });
  writeFileSync(join(dir, 'device.yaml'), edit(REALBASE_DEVICE));
  const sample = readFileSync(join(dest, 'device/omie/tablet/products/omie-tablet.yaml'), 'utf8');
  const product = join(dir, 'products/realtab.yaml');
  writeFileSync(
    product,
    sample
      .replace(/^name: omie-tablet$/m, 'name: omie-realtab')
      .replace(/^base:\n( {2}.*\n)+/m, '')
      // The realistic base ships AOSP's own modules (no Google build of them to replace).
      .replace(', ModuleMetadata, Tzdata]', ']'),
  );
  return product;
}
