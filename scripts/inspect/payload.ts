import { listPayload, PAYLOAD_MAGIC, type PayloadListing } from '../formats/payload/reader.ts';
import type { Detector } from './detect.ts';

const size = (n: number) =>
  n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(2)} GiB`
    : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : `${n} B`;

/** Human summary shared by the payload.bin and OTA zip detectors. */
export function humanPayload(r: PayloadListing): string {
  const lines = [
    `Payload:        major version ${r.majorVersion}, minor version ${r.minorVersion} (${r.full ? 'full OTA' : `incremental: ${r.deltaReason}`})`,
    `Payload at:     offset ${r.payloadOffset}, ${size(r.payloadSize)}`,
    `Block size:     ${r.blockSize}`,
  ];
  if (r.securityPatchLevel) lines.push(`Security patch: ${r.securityPatchLevel}`);
  if (r.maxTimestamp)
    lines.push(`Max timestamp:  ${r.maxTimestamp} (${new Date(r.maxTimestamp * 1000).toISOString()})`);
  if (r.partialUpdate) lines.push('Partial update: yes');
  lines.push(`Signatures:     metadata ${r.metadataSignatures}, payload ${r.payloadSignatures}`);
  for (const g of r.dynamicPartitions?.groups ?? [])
    lines.push(
      `Group ${g.name}: ${g.size !== undefined ? size(g.size) : '?'} [${g.partitionNames.join(', ')}]`,
    );
  lines.push(`Partitions (${r.partitions.length}):`);
  for (const p of r.partitions) {
    const ops = Object.entries(p.operationTypes)
      .map(([t, n]) => `${t}×${n}`)
      .join(' ');
    lines.push(
      `  ${p.name.padEnd(16)} ${size(p.size).padStart(10)}  ${p.operations} ops (${ops})  sha256 ${p.sha256 ?? '-'}`,
    );
  }
  return lines.join('\n');
}

/** A bare A/B OTA payload ("CrAU", update_metadata.proto manifest). */
export const payloadDetector: Detector<PayloadListing> = {
  kind: 'payload',
  detect: (s) => s.head.length >= 4 && s.head.toString('latin1', 0, 4) === PAYLOAD_MAGIC,
  inspect: (path) => listPayload(path),
  human: humanPayload,
};
