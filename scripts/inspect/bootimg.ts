import { BOOT_MAGIC, type BootImageInfo, readBootImage, VENDOR_BOOT_MAGIC } from '../formats/bootimg.ts';
import type { Detector } from './detect.ts';

type BootSummary = BootImageInfo & { idMatches?: boolean };

/** boot / recovery / init_boot ("ANDROID!") and vendor_boot ("VNDRBOOT") images, header v0–v4. */
export const bootImageDetector: Detector<BootSummary> = {
  kind: 'boot-image',
  detect(s) {
    const m = s.head.length >= 8 ? s.head.toString('latin1', 0, 8) : '';
    return m === BOOT_MAGIC || m === VENDOR_BOOT_MAGIC;
  },
  inspect: (path) => readBootImage(path),
  human(r) {
    const lines = [
      `Kind:           ${r.kind} (header v${r.headerVersion}, page ${r.pageSize})`,
      ...(r.osVersion || r.osPatchLevel
        ? [`OS version:     ${r.osVersion ?? '(not set)'}, patch level ${r.osPatchLevel ?? '(not set)'}`]
        : []),
      ...(r.name ? [`Name:           ${r.name}`] : []),
      `Cmdline:        ${r.cmdline || '(empty)'}`,
    ];
    for (const s of r.sections)
      if (s.size > 0)
        lines.push(`  ${s.name.padEnd(22)} ${String(s.size).padStart(10)} bytes at ${s.offset}`);
    for (const f of r.vendorRamdisks ?? [])
      lines.push(`  ramdisk fragment ${JSON.stringify(f.name)} (${f.type}) ${f.size} bytes at +${f.offset}`);
    if (r.bootconfig) lines.push(`Bootconfig:\n${r.bootconfig.trimEnd().replace(/^/gm, '  ')}`);
    if (r.idMatches !== undefined)
      lines.push(`mkbootimg id:   ${r.idMatches ? 'matches sections' : 'does not match'}`);
    if (r.fileSize > r.imageEnd)
      lines.push(`Trailing bytes: ${r.fileSize - r.imageEnd} (padding or AVB footer)`);
    return lines.join('\n');
  },
};
