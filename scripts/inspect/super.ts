import { isSparse, SparseImage } from '../formats/sparse.ts';
import {
  LP_PARTITION_ATTR_DISABLED,
  LP_PARTITION_ATTR_READONLY,
  LP_PARTITION_ATTR_SLOT_SUFFIXED,
  LP_PARTITION_ATTR_UPDATED,
} from '../formats/super/format.ts';
import { looksLikeSuper, readSuper, type SuperInfo } from '../formats/super/read.ts';
import type { Detector } from './detect.ts';

export type SuperSummary = Omit<SuperInfo, 'slots'> & {
  slots: Array<{ slot: number; primary: string; backup: string }>;
};

const ATTRIBUTES: Array<[number, string]> = [
  [LP_PARTITION_ATTR_READONLY, 'readonly'],
  [LP_PARTITION_ATTR_SLOT_SUFFIXED, 'slot-suffixed'],
  [LP_PARTITION_ATTR_UPDATED, 'updated'],
  [LP_PARTITION_ATTR_DISABLED, 'disabled'],
];

function attributeNames(attributes: number): string {
  return ATTRIBUTES.filter(([bit]) => attributes & bit)
    .map(([, n]) => ` ${n}`)
    .join('');
}

/** super.img (raw or sparse) or super_empty.img: LP geometry magic at 0, 4096 or 8192. */
export const superDetector: Detector<SuperSummary> = {
  kind: 'super',
  async detect(s) {
    if (looksLikeSuper(s.head)) return true;
    if (!isSparse(s.head)) return false;
    try {
      const img = await SparseImage.open(s.path);
      try {
        const head = Buffer.alloc(Math.min(12288, img.size));
        await img.read(head, 0);
        return looksLikeSuper(head);
      } finally {
        await img.close();
      }
    } catch {
      return false; // a broken sparse file is reported by the sparse detector
    }
  },
  async inspect(path) {
    const info = await readSuper(path);
    return { ...info, slots: info.slots.map(({ slot, primary, backup }) => ({ slot, primary, backup })) };
  },
  human(r) {
    const g = r.geometry;
    const h = r.metadata.header;
    const lines = [
      `${r.layout === 'super_empty' ? 'super_empty.img (metadata only)' : 'super partition image'}${r.sparse ? ' (Android sparse)' : ''}`,
      `Metadata:       v${h.majorVersion}.${h.minorVersion}, max ${g.metadataMaxSize} bytes, ${g.metadataSlotCount} slot(s), block ${g.logicalBlockSize}${r.virtualAB ? ', virtual A/B' : ''}`,
      `Geometry:       ${r.geometrySource}${r.geometryError ? ` (primary invalid: ${r.geometryError})` : ''}`,
      ...r.slots.map((s) => `Slot ${s.slot}:         primary ${s.primary}; backup ${s.backup}`),
      ...r.blockDevices.map(
        (d) =>
          `Block device:   ${d.partitionName} ${d.size} bytes, first sector ${d.firstLogicalSector}, alignment ${d.alignment}`,
      ),
      'Groups:',
      ...r.groups.map((g2) => `  ${g2.name.padEnd(28)} max ${g2.maximumSize || 'unlimited'}`),
      'Partitions:',
      ...r.partitions.map(
        (p) =>
          `  ${p.name.padEnd(28)} ${String(p.size).padStart(12)} bytes  ${p.group}${attributeNames(p.attributes)}  ${p.extents
            .map((e) =>
              e.type === 'zero'
                ? `zero:${e.size}`
                : `${e.blockDevice ? `${r.blockDevices[e.blockDevice]?.partitionName ?? e.blockDevice}:` : ''}${e.offset}+${e.size}`,
            )
            .join(', ')}`,
      ),
    ];
    return lines.join('\n');
  },
};
