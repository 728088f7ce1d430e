import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Type } from 'protobufjs';

/**
 * The protobuf schemas of payload.bin (update_metadata.proto) and of an OTA zip's metadata.pb
 * (ota_metadata.proto) and care_map.pb (care_map.proto), loaded with protobufjs on first use: only OTA bases need them, and
 * protobufjs is ~50 modules that every build and check would otherwise load at start-up. (A
 * synchronous require keeps the readers' synchronous parsers as they are.) Only reader.ts and
 * writer.ts use it; everyone else sees the plain types of reader.ts.
 */
export interface PayloadProtos {
  ManifestMessage: Type;
  SignaturesMessage: Type;
  /** META-INF/com/android/metadata.pb of an OTA zip (ota_metadata.proto next to this file). */
  OtaMetadataMessage: Type;
  /** care_map.pb of an OTA zip (care_map.proto next to this file). */
  CareMapMessage: Type;
  /** InstallOperation.Type names by value, exactly as in AOSP. */
  OPERATION_TYPE_NAMES: Readonly<Record<number, string>>;
}

let loaded: PayloadProtos | undefined;

export function payloadProtos(): PayloadProtos {
  if (loaded) return loaded;
  const protobuf = createRequire(import.meta.url)('protobufjs') as typeof import('protobufjs');
  const root = protobuf.loadSync(fileURLToPath(new URL('./update_metadata.proto', import.meta.url)));
  const OperationTypeEnum = root.lookupEnum('chromeos_update_engine.InstallOperation.Type');
  loaded = {
    ManifestMessage: root.lookupType('chromeos_update_engine.DeltaArchiveManifest'),
    SignaturesMessage: root.lookupType('chromeos_update_engine.Signatures'),
    OtaMetadataMessage: protobuf
      .loadSync(fileURLToPath(new URL('./ota_metadata.proto', import.meta.url)))
      .lookupType('build.tools.releasetools.OtaMetadata'),
    CareMapMessage: protobuf
      .loadSync(fileURLToPath(new URL('./care_map.proto', import.meta.url)))
      .lookupType('UpdateVerifier.CareMap'),
    OPERATION_TYPE_NAMES: Object.fromEntries(
      Object.entries(OperationTypeEnum.values).map(([name, value]) => [value, name]),
    ),
  };
  return loaded;
}
