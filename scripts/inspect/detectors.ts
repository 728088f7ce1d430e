import { apexDetector } from './apex.ts';
import { apkDetector } from './apk.ts';
import { avbFooterDetector } from './avb-footer.ts';
import { bootImageDetector } from './bootimg.ts';
import type { Detector } from './detect.ts';
import { erofsDetector } from './erofs.ts';
import { ext4Detector } from './ext4.ts';
import { factoryZipDetector } from './factory-zip.ts';
import { otaZipDetector } from './ota-zip.ts';
import { payloadDetector } from './payload.ts';
import { sparseDetector } from './sparse.ts';
import { superDetector } from './super.ts';
import { vbmetaDetector } from './vbmeta.ts';

/**
 * Every artifact kind `omie inspect` knows, most specific first. Format modules add one line
 * each; the `inspect` command only walks this list.
 */
export const detectors: Detector[] = [
  apexDetector, // an APEX container is an APK too
  apkDetector,
  vbmetaDetector,
  // before ext4/erofs: a filesystem image with an AVB footer is reported as avb-footer
  avbFooterDetector,
  superDetector, // raw, sparse-wrapped or super_empty; before sparse
  sparseDetector,
  payloadDetector,
  otaZipDetector, // zip with payload.bin; before factory-zip
  bootImageDetector, // after avb-footer, which reports boot images carrying a footer
  factoryZipDetector, // only zips with android-info.txt / image-*.zip / *.img, never APK or OTA
  ext4Detector,
  erofsDetector,
];
