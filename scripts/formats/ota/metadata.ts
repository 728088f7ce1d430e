import { payloadProtos } from '../payload/proto.ts';

/**
 * META-INF/com/android/metadata(.pb) of an A/B OTA package, as AOSP's ota_utils.py writes them
 * (GetPackageMetadata, UpdateDeviceState, BuildLegacyOtaMetadata, PropertyFiles).
 */

/**
 * What the package says of itself for Omie's own tools (`omie ota publish`): the product, its
 * version (the update feeds' "version"), and where the product file was when it was made.
 */
export const RELEASE_ENTRY = 'META-INF/com/omie/release.json';

export interface ReleaseInfo {
  schema: 'omie.ota-release/1';
  product: string;
  version: string;
  kind: 'full' | 'incremental';
  /** The build an incremental applies to. */
  from?: { version: string; fingerprint: string };
  productFile: string;
}

/** What the package says of one build (ota_metadata.proto DeviceState). */
export interface BuildState {
  /** ro.product.device values. */
  device: string[];
  /** Build fingerprints. */
  build: string[];
  buildIncremental: string;
  /** ro.build.date.utc. */
  timestamp: number;
  sdkLevel: string;
  securityPatchLevel: string;
  partitionState: { partitionName: string; device: string[]; build: string[]; version: string }[];
}

export interface OtaPackageMetadata {
  post: BuildState;
  /** The source build, for an incremental package. */
  pre?: BuildState;
  wipe?: boolean;
  downgrade?: boolean;
}

/** The OtaMetadata message (protobufjs object form) with the given property-file strings. */
export function otaMetadataObject(
  m: OtaPackageMetadata,
  propertyFiles: Record<string, string>,
): Record<string, unknown> {
  const state = (s: BuildState, post: boolean) => ({
    device: s.device,
    build: s.build,
    buildIncremental: s.buildIncremental,
    partitionState: s.partitionState,
    // The precondition of an incremental names the source build only (is_post_build false).
    ...(post
      ? { timestamp: s.timestamp, sdkLevel: s.sdkLevel, securityPatchLevel: s.securityPatchLevel }
      : {}),
  });
  return {
    type: 'AB',
    wipe: Boolean(m.wipe),
    downgrade: Boolean(m.downgrade),
    propertyFiles,
    // A full package's precondition is the device alone.
    precondition: m.pre ? state(m.pre, false) : { device: m.post.device },
    postcondition: state(m.post, true),
    requiredCache: 0,
  };
}

export function encodeOtaMetadata(m: OtaPackageMetadata, propertyFiles: Record<string, string>): Buffer {
  const { OtaMetadataMessage } = payloadProtos();
  return Buffer.from(
    OtaMetadataMessage.encode(OtaMetadataMessage.fromObject(otaMetadataObject(m, propertyFiles))).finish(),
  );
}

/** The legacy text metadata: BuildLegacyOtaMetadata's keys, sorted, one `key=value` a line. */
export function legacyOtaMetadata(m: OtaPackageMetadata, propertyFiles: Record<string, string>): Buffer {
  const sep = '|';
  const d: Record<string, string> = { 'ota-type': 'AB' };
  if (m.wipe) d['ota-wipe'] = 'yes';
  if (m.downgrade) d['ota-downgrade'] = 'yes';
  d['ota-required-cache'] = '0';
  d['post-build'] = m.post.build.join(sep);
  d['post-build-incremental'] = m.post.buildIncremental;
  d['post-sdk-level'] = m.post.sdkLevel;
  d['post-security-patch-level'] = m.post.securityPatchLevel;
  d['post-timestamp'] = String(m.post.timestamp);
  d['pre-device'] = (m.pre ?? m.post).device.join(sep);
  if (m.pre) {
    d['pre-build'] = m.pre.build.join(sep);
    d['pre-build-incremental'] = m.pre.buildIncremental;
  }
  Object.assign(d, propertyFiles);
  return Buffer.from(
    Object.keys(d)
      .sort()
      .map((k) => `${k}=${d[k]}\n`)
      .join(''),
  );
}

/** One zip entry's data position, as GetZipEntryOffset computes it. */
export interface EntrySpan {
  offset: number;
  size: number;
}

/**
 * The two property-file strings update_engine and OTA servers stream from (AbOtaPropertyFiles
 * "ota-property-files", StreamingPropertyFiles "ota-streaming-property-files"):
 * `name:offset:size` tokens, the metadata entries' own spans last. With `reserve`, the metadata
 * tokens are placeholders of 15 spaces (ota_utils.py Compute); otherwise the final values,
 * space-padded to `reservedLength` (Finalize), so the metadata entries keep their size.
 */
export function propertyFiles(
  spans: Record<string, EntrySpan>,
  payloadMetadataSize: number,
  opts: { reserve: true } | { reserve: false; reservedLength: Record<string, number> },
): Record<string, string> {
  const tok = (name: string, s: EntrySpan) => `${name}:${s.offset}:${s.size}`;
  const common = ['payload.bin', 'payload_properties.txt', 'care_map.pb']
    .filter((n) => spans[n])
    .map((n) => tok(n, spans[n]));
  const meta = opts.reserve
    ? [`metadata:${' '.repeat(15)}`, `metadata.pb:${' '.repeat(15)}`]
    : [
        tok('metadata', spans['META-INF/com/android/metadata']),
        tok('metadata.pb', spans['META-INF/com/android/metadata.pb']),
      ];
  const out: Record<string, string> = {
    'ota-property-files': [
      tok('payload_metadata.bin', { offset: spans['payload.bin'].offset, size: payloadMetadataSize }),
      ...common,
      ...meta,
    ].join(','),
    'ota-streaming-property-files': [...common, ...meta].join(','),
  };
  if (!opts.reserve)
    for (const k of Object.keys(out)) {
      const room = opts.reservedLength[k];
      if (out[k].length > room)
        throw new Error(`property files ${k} need ${out[k].length} bytes, ${room} were reserved`);
      out[k] = out[k].padEnd(room, ' ');
    }
  return out;
}

/**
 * care_map.pb (AddCareMapForAbOta): for each partition dm-verity protects, the blocks of the
 * filesystem image (everything before the hash tree), and the fingerprint property that names it.
 */
export function encodeCareMap(
  partitions: { name: string; imageSize: number; fingerprintProperty?: string; fingerprint?: string }[],
): Buffer {
  const { CareMapMessage } = payloadProtos();
  return Buffer.from(
    CareMapMessage.encode(
      CareMapMessage.fromObject({
        partitions: partitions.map((p) => ({
          name: p.name,
          // RangeSet("0-<last block>").to_string_raw(): one half-open range.
          ranges: `2,0,${Math.floor(p.imageSize / 4096)}`,
          id: p.fingerprintProperty ?? 'unknown',
          fingerprint: p.fingerprint ?? 'unknown',
        })),
      }),
    ).finish(),
  );
}
