/**
 * A/B OTA payloads (payload.bin, alone or inside an OTA zip). The public API:
 *
 *   const info = await readPayload('ota.zip');              // header, manifest, signatures
 *   assertFullPayload(info);                                 // DeltaPayloadError for incremental OTAs
 *   const parts = await extractPayload('ota.zip', 'out/');   // out/<name>.img, hashes verified
 *   await writePayload('payload.bin', { partitions: [{ name: 'system', imagePath: 'system.img', ops: 'xz' }] });
 *   await writeOtaZip('ota.zip', 'payload.bin');
 */
export { type ExtractOptions, extractPartitions, extractPayload, type PartitionResult } from './extract.ts';
export {
  assertFullPayload,
  DeltaPayloadError,
  deltaReason,
  isOtaZip,
  listPayload,
  locatePayload,
  type OtaDeviceState,
  type OtaMetadata,
  type Payload,
  type PayloadListing,
  type PayloadLocation,
  type PayloadManifest,
  type PayloadOperation,
  type PayloadPartition,
  parseOtaMetadata,
  parsePayloadBuffer,
  readPayload,
  summarizePayload,
} from './reader.ts';
export {
  assertPayloadSigned,
  checkPayloadSignatures,
  loadPayloadKey,
  type PayloadSignatureReport,
} from './signature.ts';
export {
  type PayloadOpsMode,
  type PayloadPartitionInput,
  type WritePayloadOptions,
  type WrittenPayload,
  writeOtaZip,
  writePayload,
} from './writer.ts';
