import yauzl from 'yauzl';
import { type FactoryZipInfo, readFactoryZip } from '../formats/factory-zip.ts';
import type { Detector } from './detect.ts';

/** Entry names of a zip (central directory only), or undefined when it is not a readable zip. */
async function zipNames(path: string): Promise<string[] | undefined> {
  return new Promise((res) => {
    yauzl.open(path, { lazyEntries: true, autoClose: true, strictFileNames: false }, (err, z) => {
      if (err || !z) return res(undefined);
      const names: string[] = [];
      z.on('entry', (e: yauzl.Entry) => {
        names.push(e.fileName);
        if (names.length > 100_000) {
          z.close();
          return res(names);
        }
        z.readEntry();
      });
      z.on('end', () => res(names));
      z.on('error', () => res(undefined));
      z.readEntry();
    });
  });
}

/**
 * A factory image zip (Pixel style, nested image-*.zip) or a fastboot update zip
 * (android-info.txt / *.img at the root). APKs (AndroidManifest.xml) and A/B OTA zips
 * (payload.bin) are other kinds and never match here.
 */
export const factoryZipDetector: Detector<FactoryZipInfo> = {
  kind: 'factory-zip',
  async detect(s) {
    const zipMagic = s.head.length >= 4 && s.head.readUInt32LE(0) === 0x04034b50;
    const eocd = s.tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])) >= 0;
    if (!zipMagic && !eocd) return false;
    const names = await zipNames(s.path);
    if (!names) return false;
    const leaf = (n: string) => n.slice(n.lastIndexOf('/') + 1);
    if (names.some((n) => n === 'AndroidManifest.xml' || n === 'payload.bin')) return false;
    return names.some(
      (n) => leaf(n) === 'android-info.txt' || /(^|\/)image-[^/]*\.zip$/i.test(n) || /\.img$/i.test(n),
    );
  },
  inspect: (path) => readFactoryZip(path),
  human(r) {
    const a = r.androidInfo;
    return [
      r.kind === 'factory' ? `factory image zip (nested: ${r.nestedZips.join(', ')})` : 'fastboot update zip',
      a
        ? `Requires:       board ${a.boards.join('|') || '(any)'}${a.bootloaderVersions.length ? `; bootloader ${a.bootloaderVersions.join('|')}` : ''}${a.basebandVersions.length ? `; baseband ${a.basebandVersions.join('|')}` : ''}`
        : 'Requires:       (no android-info.txt)',
      ...(a?.requirements
        .filter(
          (q) =>
            q.forProduct ||
            q.reject ||
            !['product', 'version-bootloader', 'version-baseband'].includes(q.name),
        )
        .map(
          (q) =>
            `                ${q.reject ? 'reject' : 'require'} ${q.name}=${q.values.join('|')}${q.forProduct ? ` (for ${q.forProduct})` : ''}`,
        ) ?? []),
      ...(a?.syntaxErrors.map(
        (e) =>
          `  android-info.txt line ${e.line} ignored (fastboot cannot parse it): ${JSON.stringify(e.text)}`,
      ) ?? []),
      'Images:',
      ...r.images.map((i) => `  ${i.partition.padEnd(20)} ${String(i.size).padStart(12)} bytes  ${i.entry}`),
    ].join('\n');
  },
};
