import { isOtaZip, listPayload, type PayloadListing } from '../formats/payload/reader.ts';
import type { Detector } from './detect.ts';
import { humanPayload } from './payload.ts';

/**
 * An A/B OTA zip: a zip whose central directory has payload.bin. Must come before the generic
 * zip / factory-zip detectors.
 */
export const otaZipDetector: Detector<PayloadListing> = {
  kind: 'ota-zip',
  async detect(s) {
    const zipMagic = s.head.length >= 4 && s.head.readUInt32LE(0) === 0x04034b50;
    return zipMagic && (await isOtaZip(s.path));
  },
  inspect: (path) => listPayload(path),
  human(r) {
    const m = r.otaMetadata ?? {};
    const lines = [
      ...(m['ota-type'] ? [`OTA type:       ${m['ota-type']}`] : []),
      ...(m['pre-device'] ? [`Device:         ${m['pre-device']}`] : []),
      ...(m['post-build'] ? [`Build:          ${m['post-build']}`] : []),
      ...(m['post-security-patch-level'] ? [`Security patch: ${m['post-security-patch-level']}`] : []),
    ];
    return [...lines, humanPayload(r)].join('\n');
  },
};
