import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * The protobuf schemas of payload.bin (update_metadata.proto) and of an OTA zip's metadata.pb
 * (ota_metadata.proto), loaded once with protobufjs. Only reader.ts and writer.ts use it; everyone else sees the plain types of reader.ts.
 */
const root = protobuf.loadSync(fileURLToPath(new URL('./update_metadata.proto', import.meta.url)));

export const ManifestMessage = root.lookupType('chromeos_update_engine.DeltaArchiveManifest');
export const SignaturesMessage = root.lookupType('chromeos_update_engine.Signatures');
/** META-INF/com/android/metadata.pb of an OTA zip (ota_metadata.proto next to this file). */
export const OtaMetadataMessage = protobuf
  .loadSync(fileURLToPath(new URL('./ota_metadata.proto', import.meta.url)))
  .lookupType('build.tools.releasetools.OtaMetadata');
export const OperationTypeEnum = root.lookupEnum('chromeos_update_engine.InstallOperation.Type');

/** InstallOperation.Type names by value, exactly as in AOSP. */
export const OPERATION_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(OperationTypeEnum.values).map(([name, value]) => [value, name]),
);
