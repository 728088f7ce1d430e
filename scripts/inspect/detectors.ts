import { avbFooterDetector } from './avb-footer.ts';
import type { Detector } from './detect.ts';
import { vbmetaDetector } from './vbmeta.ts';

/**
 * Every artifact kind `omie inspect` knows, most specific first. Format modules add one line
 * each; the `inspect` command only walks this list.
 */
export const detectors: Detector[] = [
  vbmetaDetector,
  // before ext4/erofs: a filesystem image with an AVB footer is reported as avb-footer
  avbFooterDetector,
];
