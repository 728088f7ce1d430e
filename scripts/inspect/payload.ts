import {
  PAYLOAD_MAGIC,
  type PayloadListing,
  readPayload,
  summarizePayload,
} from '../formats/payload/reader.ts';
import { checkPayloadSignatures, type PayloadSignatureReport } from '../formats/payload/signature.ts';
import type { Detector } from './detect.ts';

/** What `omie inspect` shows of a payload: the listing plus signature sizes and property checks. */
export interface PayloadSummary extends PayloadListing {
  /** Without a key: presence and sizes; payload_properties.txt METADATA_* / FILE_SIZE compared. */
  signatures: Pick<PayloadSignatureReport, 'metadataSignature' | 'payloadSignature' | 'properties'>;
}

/** Reads only metadata (no whole-payload hash: payloads are GiBs; `extract-ota --cert` does that). */
export async function inspectPayload(path: string): Promise<PayloadSummary> {
  const p = await readPayload(path);
  const { metadataSignature, payloadSignature, properties } = await checkPayloadSignatures(p, {
    fileHash: false,
  });
  return { ...summarizePayload(p, path), signatures: { metadataSignature, payloadSignature, properties } };
}

const size = (n: number) =>
  n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(2)} GiB`
    : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : `${n} B`;

const sigText = (s: PayloadSignatureReport['metadataSignature']) =>
  s.count ? `${s.count} (${s.sizes.map((n) => `${n} B`).join(', ')})` : 'none';

/** Human summary shared by the payload.bin and OTA zip detectors. */
export function humanPayload(r: PayloadSummary): string {
  const lines = [
    `Payload:        major version ${r.majorVersion}, minor version ${r.minorVersion} (${r.full ? 'full OTA' : `incremental: ${r.deltaReason}`})`,
    `Payload at:     offset ${r.payloadOffset}, ${size(r.payloadSize)}`,
    `Block size:     ${r.blockSize}`,
  ];
  if (r.securityPatchLevel) lines.push(`Security patch: ${r.securityPatchLevel}`);
  if (r.maxTimestamp)
    lines.push(`Max timestamp:  ${r.maxTimestamp} (${new Date(r.maxTimestamp * 1000).toISOString()})`);
  if (r.partialUpdate) lines.push('Partial update: yes');
  lines.push(
    `Signatures:     metadata ${sigText(r.signatures.metadataSignature)}, payload ${sigText(r.signatures.payloadSignature)} (not verified: extract-ota --cert)`,
  );
  const props = Object.entries(r.signatures.properties);
  if (props.length) lines.push(`Properties:     ${props.map(([k, v]) => `${k} ${v}`).join(', ')}`);
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
export const payloadDetector: Detector<PayloadSummary> = {
  kind: 'payload',
  detect: (s) => s.head.length >= 4 && s.head.toString('latin1', 0, 4) === PAYLOAD_MAGIC,
  inspect: inspectPayload,
  human: humanPayload,
};
