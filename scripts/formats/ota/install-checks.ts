/**
 * What a device checks before it installs an A/B OTA package, beyond its signatures: recovery's
 * CheckPackageMetadata and CheckAbSpecificMetadata (bootable/recovery/install/install.cpp) over
 * META-INF/com/android/metadata and the running build's properties, and update_engine's timestamp
 * rule (DeltaPerformer::ValidateManifest: max_timestamp older than the running build is
 * kPayloadTimestampError). Each refusal carries the line AOSP logs for it, so a host reading a
 * device's recovery log (last_log) can tell which one it was: {@link refusalFromLog}.
 */

/** The running build, as recovery reads it from its properties. */
export interface RunningBuild {
  /** ro.product.device */
  device: string;
  /** ro.build.fingerprint */
  fingerprint: string;
  /** ro.build.version.incremental */
  incremental: string;
  /** ro.build.date.utc; absent counts as the largest timestamp (GetIntProperty's default there). */
  timestamp?: number;
  /** ro.serialno */
  serialno?: string;
}

export function runningBuild(props: Record<string, string>): RunningBuild {
  const t = Number(props['ro.build.date.utc']);
  return {
    device: props['ro.product.device'] ?? '',
    fingerprint: props['ro.build.fingerprint'] ?? '',
    incremental: props['ro.build.version.incremental'] ?? '',
    ...(props['ro.build.date.utc'] && Number.isSafeInteger(t) ? { timestamp: t } : {}),
    ...(props['ro.serialno'] ? { serialno: props['ro.serialno'] } : {}),
  };
}

export type RefusalCode =
  | 'OTA_NOT_AB'
  | 'OTA_WRONG_DEVICE'
  | 'OTA_WRONG_SERIAL'
  | 'OTA_WRONG_SOURCE_BUILD'
  | 'OTA_DOWNGRADE';

export interface PackageRefusal {
  code: RefusalCode;
  /** What recovery logs (as LOG(ERROR) does, without its "E:"). */
  log: string;
  field: string;
  expected: unknown;
  found: unknown;
}

/** recovery's checks of the package metadata (the legacy key=value file), in its order. */
export function checkPackageMetadata(
  meta: Record<string, string>,
  running: RunningBuild,
): PackageRefusal | undefined {
  const type = meta['ota-type'] ?? '';
  if (type !== 'AB')
    return {
      code: 'OTA_NOT_AB',
      log: `Unexpected ota package type, expects AB, actual ${type}`,
      field: 'ota-type',
      expected: 'AB',
      found: type,
    };
  const device = meta['pre-device'] ?? '';
  if (device !== running.device || !device)
    return {
      code: 'OTA_WRONG_DEVICE',
      log: `Package is for product ${device} but expected ${running.device}`,
      field: 'pre-device',
      expected: running.device,
      found: device,
    };
  const serials = meta.serialno;
  if (serials && !serials.split('|').some((s) => s.trim() === running.serialno))
    return {
      code: 'OTA_WRONG_SERIAL',
      log: `Package is for serial ${serials}`,
      field: 'serialno',
      expected: running.serialno,
      found: serials,
    };
  const preIncremental = meta['pre-build-incremental'];
  if (preIncremental && preIncremental !== running.incremental)
    return {
      code: 'OTA_WRONG_SOURCE_BUILD',
      log: `Package is for source build ${preIncremental} but expected ${running.incremental}`,
      field: 'pre-build-incremental',
      expected: running.incremental,
      found: preIncremental,
    };
  const preBuild = meta['pre-build'];
  if (preBuild && preBuild !== running.fingerprint)
    return {
      code: 'OTA_WRONG_SOURCE_BUILD',
      log: `Package is for source build ${preBuild} but expected ${running.fingerprint}`,
      field: 'pre-build',
      expected: running.fingerprint,
      found: preBuild,
    };
  // A full update to the build the device runs is allowed (to repair its copy).
  const post = /^\d+$/.test(meta['post-timestamp'] ?? '') ? Number(meta['post-timestamp']) : 0;
  const current = running.timestamp ?? Number.MAX_SAFE_INTEGER;
  if (post < current) {
    if (meta['ota-downgrade'] !== 'yes')
      return {
        code: 'OTA_DOWNGRADE',
        log: `Update package is older than the current build, expected a build newer than timestamp ${current} but package has timestamp ${post} and downgrade not allowed.`,
        field: 'post-timestamp',
        expected: `>= ${current}`,
        found: post,
      };
    if (!preBuild)
      return {
        code: 'OTA_DOWNGRADE',
        log: 'Downgrade package must have a pre-build version set, not allowed.',
        field: 'pre-build',
        expected: 'the fingerprint of the build it downgrades',
        found: undefined,
      };
  }
  return undefined;
}

/**
 * update_engine's own downgrade rule: a payload whose max_timestamp is older than the running
 * build is refused (user builds do not allow downgrades: ro.ota.allow_downgrade is for debuggable
 * ones).
 */
export function checkPayloadTimestamp(
  maxTimestamp: number | undefined,
  running: RunningBuild,
): PackageRefusal | undefined {
  const current = running.timestamp;
  if (maxTimestamp === undefined || current === undefined || maxTimestamp >= current) return undefined;
  return {
    code: 'OTA_DOWNGRADE',
    log: `The current OS build timestamp (${current}) is newer than the maximum timestamp in the manifest (${maxTimestamp})`,
    field: 'max_timestamp',
    expected: `>= ${current}`,
    found: maxTimestamp,
  };
}

/** Why a device refused a package, from the error lines of its recovery log. */
export interface LoggedRefusal {
  code: string;
  /** The line that says so. */
  line: string;
}

const LOG_PATTERNS: Array<[RegExp, string]> = [
  [/Signature verification failed/, 'OTA_SIGNER_UNTRUSTED'],
  [/^Unexpected ota package type/, 'OTA_NOT_AB'],
  [/^Package is for product /, 'OTA_WRONG_DEVICE'],
  [/^Package is for serial /, 'OTA_WRONG_SERIAL'],
  [/^Package is for source build /, 'OTA_WRONG_SOURCE_BUILD'],
  [
    /^Update package is older than the current build|^Downgrade package must have a pre-build/,
    'OTA_DOWNGRADE',
  ],
  [/ErrorCode::kPayloadTimestampError\b/, 'OTA_DOWNGRADE'],
  [/ErrorCode::kDownloadStateInitializationError\b/, 'PAYLOAD_SOURCE_HASH_MISMATCH'],
  [
    /ErrorCode::k(DownloadPayloadPubKeyVerificationError|DownloadPayloadVerificationError|DownloadMetadataSignature\w*|DownloadSignatureMissingInManifest|PayloadHashMismatchError|PayloadSizeMismatchError)\b/,
    'PAYLOAD_SIGNATURE_INVALID',
  ],
  [
    /ErrorCode::k(NewRootfsVerificationError|DownloadOperationHash\w*|DownloadNewPartitionInfoError)\b/,
    'PAYLOAD_PARTITION_HASH_MISMATCH',
  ],
  [/ErrorCode::kNotEnoughSpace\b/, 'OTA_NO_SPACE'],
];

/** The first error line of a recovery log that names a known refusal (lines with or without "E:"). */
export function refusalFromLog(log: string): LoggedRefusal | undefined {
  for (const raw of log.split('\n')) {
    const line = raw.replace(/^(?:\[[^\]]*\]\s*)?E:/, '').trim();
    if (!line) continue;
    for (const [re, code] of LOG_PATTERNS) if (re.test(line)) return { code, line };
  }
  return undefined;
}
