import { type ApkReport, formatApkReport, inspectApk } from '../formats/apk/inspect.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import type { Detector } from './detect.ts';

/**
 * APK: a zip (local header magic at 0 or an EOCD in the tail) whose central directory lists
 * AndroidManifest.xml. Must come before any generic zip detector.
 */
export const apkDetector: Detector<ApkReport> = {
  kind: 'apk',
  async detect(s) {
    const looksZip =
      s.head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1')) ||
      s.tail.includes(Buffer.from('PK\x05\x06', 'latin1'));
    if (!looksZip) return false;
    try {
      const z = await ZipArchive.openFile(s.path);
      try {
        return z.entry('AndroidManifest.xml') !== undefined;
      } finally {
        await z.close();
      }
    } catch {
      return false;
    }
  },
  inspect: (path) => inspectApk(path),
  human: formatApkReport,
};
