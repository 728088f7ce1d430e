/**
 * The virtual device's recovery and update_engine: what an A/B device does with a package sideloaded
 * through minadbd (`adb sideload`), read block by block from the host (host-blocks.ts).
 *
 * As recovery's install_package (bootable/recovery/install/install.cpp) and update_engine_sideload:
 *
 * 1. verify_package: the whole-file signature (signapk -w) against the keys of the RUNNING system's
 *    /system/etc/security/otacerts.zip (read from the current slot's image); in the same pass over
 *    the package, the payload's digests are taken for step 3;
 * 2. CheckPackageMetadata over META-INF/com/android/metadata and the running build's properties
 *    (ota-type AB, pre-device, serialno, pre-build, no downgrade unless ota-downgrade);
 * 3. update_engine: metadata and payload signatures against the same keys, payload_properties.txt,
 *    max_timestamp, the target (inactive) slot's partitions and the super layout, and for an
 *    incremental the source partitions (active slot) against old_partition_info;
 * 4. every partition applied with the kit's payload applier to a staging file, each checked against
 *    new_partition_info; only when all are, they replace the inactive slot's images, the logical
 *    partitions take their new sizes, and the inactive slot becomes the active one with boot
 *    control's full retry count (it has not booted yet: the bootloader decides, boot.ts).
 *
 * A package refused at any step leaves both slots, the active slot and the properties as they were.
 * The log recovery keeps goes to /data/misc/recovery/last_log and last_install (where
 * recovery-persist puts them; /tmp/recovery.log while the device is in recovery), in AOSP's words,
 * so that a host can tell why a package was refused (formats/ota/install-checks.ts refusalFromLog).
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { OmieError } from '../errors.ts';
import { type ByteSource, ZipArchive } from '../formats/apk/zip.ts';
import {
  checkPackageMetadata,
  checkPayloadTimestamp,
  type PackageRefusal,
  runningBuild,
} from '../formats/ota/install-checks.ts';
import {
  SYSTEM_OTACERTS as OTACERTS,
  type OtaCertificate,
  readOtaCertificates,
} from '../formats/ota/otacerts.ts';
import { readWholeFileSignature } from '../formats/ota/whole-file.ts';
import { applyPartition } from '../formats/payload/apply.ts';
import {
  locateInArchive,
  type Payload,
  type PayloadLocation,
  type PayloadPartition,
  readPayloadFrom,
} from '../formats/payload/reader.ts';
import { type PayloadDigester, payloadDigester } from '../formats/payload/signature.ts';
import { MAX_RETRIES, type PartitionInfo, type SimState, type Slot } from './state.ts';
import { superLayoutProblem } from './super-layout.ts';
import { DeviceView } from './view.ts';

const PACKAGE = '/sideload/package.zip';

/** recovery's ErrorCode values written to last_install (install/include/install/error_code.h). */
const kZipVerificationFailure = 21;
const kZipOpenFailure = 22;
const kUpdateBinaryCommandFailure = 28;

/** update_engine's ErrorCode (common/error_code.h) names and values it logs on failure. */
const UE = {
  kDownloadTransferError: 9,
  kPayloadHashMismatchError: 10,
  kPayloadSizeMismatchError: 11,
  kInstallDeviceOpenError: 7,
  kNewRootfsVerificationError: 15,
  kDownloadPayloadPubKeyVerificationError: 18,
  kDownloadStateInitializationError: 20,
  kDownloadSignatureMissingInManifest: 22,
  kDownloadManifestParseError: 23,
  kDownloadMetadataSignatureMismatch: 26,
  kDownloadOperationExecutionError: 28,
  kDownloadOperationHashMismatch: 29,
  kDownloadInvalidMetadataSize: 32,
  kPayloadTimestampError: 51,
  kNotEnoughSpace: 60,
} as const;
type UeError = keyof typeof UE;

/** update_engine failed: its error code and why. */
class UpdateEngineError extends Error {
  constructor(
    readonly code: UeError,
    message: string,
  ) {
    super(message);
  }
}

export interface SideloadOutcome {
  ok: boolean;
  /** The slot the package was written to (now the active one) when ok. */
  slot?: Slot;
  /** The package asked for a data wipe (ota-wipe=yes), done after the install. */
  wiped?: boolean;
  /** recovery's log of this install (also in /data/misc/recovery/last_log). */
  log: string[];
}

export interface SideloadInstallOptions {
  /** One line per log line, as recovery prints them (for the sim's own log). */
  log?: (line: string) => void;
}

/** Installs a sideloaded package on the virtual device; never throws for a bad package. */
export async function installSideloaded(
  st: SimState,
  pkg: ByteSource,
  opts: SideloadInstallOptions = {},
): Promise<SideloadOutcome> {
  const started = Date.now();
  const lines: string[] = [];
  const say = (l: string) => {
    lines.push(l);
    opts.log?.(`recovery: ${l}`);
  };
  const error = (l: string) => say(`E:${l}`);
  const buffer: string[] = [];
  let result: SideloadOutcome;
  try {
    result = await install(st, pkg, say, error, buffer);
  } catch (e) {
    // Anything unforeseen (a host gone mid-transfer included) fails the install, nothing applied.
    error(e instanceof Error ? e.message : String(e));
    result = { ok: false, log: [] };
  }
  say(`Install from ADB complete (status: ${result.ok ? 0 : 1}).`);
  const lastInstall = [
    PACKAGE,
    result.ok ? '1' : '0',
    `time_total: ${Math.round((Date.now() - started) / 1000)}`,
    'retry: 0',
    ...buffer,
  ];
  await writeRecoveryLogs(st, lines, lastInstall);
  return { ...result, log: lines };
}

async function install(
  st: SimState,
  pkg: ByteSource,
  say: (l: string) => void,
  error: (l: string) => void,
  buffer: string[],
): Promise<SideloadOutcome> {
  await st.reload();
  const view = new DeviceView(st);
  const fail = (code?: number): SideloadOutcome => {
    if (code !== undefined) buffer.push(`error: ${code}`);
    return { ok: false, log: [] };
  };
  say('Finding update package...');
  say('Opening update package...');
  const otacerts = await view.readFile(OTACERTS);
  const keys: OtaCertificate[] = otacerts
    ? await readOtaCertificates(otacerts, OTACERTS).catch(() => [])
    : [];
  if (!keys.length) {
    error('Failed to load keys');
    error('Signature verification failed');
    return fail(kZipVerificationFailure);
  }
  say(`${keys.length} key(s) loaded from ${OTACERTS}`);

  // The zip's directory and the payload's metadata are read first (a few blocks), so the one pass
  // over the package that checks its signature also digests the payload.
  let zip: ZipArchive | undefined;
  let loc: PayloadLocation | undefined;
  let payload: Payload | undefined;
  let parseError: unknown;
  try {
    zip = await ZipArchive.open(pkg);
    loc = await locateInArchive(zip);
    payload = await readPayloadFrom(pkg, loc);
  } catch (e) {
    if (!(e instanceof OmieError)) throw e;
    parseError = e;
  }
  const publicKeys = keys.map((k) => k.certificate.publicKey);
  const digester: PayloadDigester | undefined = payload
    ? payloadDigester(payload, { keys: publicKeys })
    : undefined;
  say('Verifying update package...');
  const t0 = Date.now();
  let signer: string | undefined;
  let verified = false;
  try {
    const sig = await readWholeFileSignature(pkg, {
      onSignedData: digester && loc ? payloadTee(digester, loc) : undefined,
    });
    const signerKey = spki(new X509Certificate(sig.certificate).publicKey);
    signer = sig.certificateSha256;
    verified = sig.valid && keys.some((k) => spki(k.certificate.publicKey).equals(signerKey));
    if (sig.valid && !verified)
      error(`the package is signed by certificate sha256 ${signer}, whose key ${OTACERTS} does not hold`);
    if (!sig.valid) error('the whole-file signature does not verify with the certificate it carries');
  } catch (e) {
    if (!(e instanceof OmieError)) throw e;
    error(e.message);
  }
  say(
    `Update package verification took ${((Date.now() - t0) / 1000).toFixed(1)} s (result ${verified ? 0 : 1}).`,
  );
  if (!verified) {
    error('Signature verification failed');
    error(`error: ${kZipVerificationFailure}`);
    return fail(kZipVerificationFailure);
  }
  if (!zip || !loc || !payload || !digester) {
    error(`Failed to open ${PACKAGE}: ${parseError instanceof Error ? parseError.message : parseError}`);
    return fail(kZipOpenFailure);
  }

  say('Installing update...');
  const meta = loc.otaMetadata;
  if (!meta) {
    error('Failed to parse metadata in the zip file');
    return fail();
  }
  const running = runningBuild(Object.fromEntries(await view.props()));
  const refused = checkPackageMetadata(meta, running);
  if (refused) {
    error(refused.log);
    return fail(kUpdateBinaryCommandFailure);
  }
  if (meta['post-build'])
    buffer.push(`target_build: ${meta['post-build-incremental'] ?? meta['post-build']}`);
  if (meta['pre-build']) buffer.push(`source_build: ${meta['pre-build-incremental'] ?? meta['pre-build']}`);

  try {
    const slot = await updateEngine(st, pkg, payload, digester, running, say);
    say('Update successfully applied, waiting to reboot.');
    let wiped = false;
    if (meta['ota-wipe'] === 'yes') {
      say('-- Wiping data...');
      await st.wipeData();
      say('Data wipe complete.');
      wiped = true;
    }
    return { ok: true, slot, wiped, log: [] };
  } catch (e) {
    if (e instanceof UpdateEngineError) {
      error(`update_engine_sideload: ErrorCode::${e.code} (${UE[e.code]}): ${e.message}`);
      error(`Error in ${PACKAGE} (status 1)`);
      return fail();
    }
    throw e;
  }
}

/** Feeds the payload's bytes, as the whole-file pass reads them, to the payload digester. */
function payloadTee(d: PayloadDigester, loc: PayloadLocation) {
  return (chunk: Buffer, at: number) => {
    const from = Math.max(at, loc.offset);
    const to = Math.min(at + chunk.length, loc.offset + loc.size);
    if (from < to) d.feed(chunk.subarray(from - at, to - at), from - loc.offset);
  };
}

const spki = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });

interface Target {
  part: PayloadPartition;
  /** device.json key and slot of the partition written (logical ones: "system_b", null). */
  key: string;
  keySlot: Slot | null;
  logical: boolean;
  /** The active slot's image, for an incremental. */
  source: string;
  staged: string;
}

/** update_engine_sideload: checks, then applies the payload to the inactive slot; the new active slot. */
async function updateEngine(
  st: SimState,
  pkg: ByteSource,
  payload: Payload,
  digester: PayloadDigester,
  running: ReturnType<typeof runningBuild>,
  say: (l: string) => void,
): Promise<Slot> {
  const r = digester.finish();
  if (r.metadataSignature.status === 'absent' || r.payloadSignature.status === 'absent')
    throw new UpdateEngineError('kDownloadSignatureMissingInManifest', 'the payload is not signed');
  if (r.metadataSignature.status !== 'valid')
    throw new UpdateEngineError(
      'kDownloadMetadataSignatureMismatch',
      `no metadata signature verifies with a key of ${OTACERTS}`,
    );
  if (r.payloadSignature.status !== 'valid')
    throw new UpdateEngineError(
      'kDownloadPayloadPubKeyVerificationError',
      `no payload signature verifies with a key of ${OTACERTS}`,
    );
  for (const [k, v] of Object.entries(r.properties))
    if (v === 'mismatch')
      throw new UpdateEngineError(
        k === 'FILE_HASH'
          ? 'kPayloadHashMismatchError'
          : k === 'FILE_SIZE'
            ? 'kPayloadSizeMismatchError'
            : 'kDownloadInvalidMetadataSize',
        `payload_properties.txt ${k} does not match the payload`,
      );
  const stale: PackageRefusal | undefined = checkPayloadTimestamp(payload.manifest.maxTimestamp, running);
  if (stale) throw new UpdateEngineError('kPayloadTimestampError', stale.log);

  const d = st.info;
  const current = d.currentSlot;
  const target = st.otherSlot;
  if (!current || !target)
    throw new UpdateEngineError('kInstallDeviceOpenError', 'the device has no A/B slots');
  say(
    `Target slot ${target} (booted from ${current}); payload minor version ${payload.manifest.minorVersion}`,
  );

  // Where each partition goes, and whether it fits, before anything is written.
  const targets: Target[] = [];
  const sizes: Record<string, PartitionInfo> = { ...d.partitions };
  for (const part of payload.manifest.partitions) {
    const physical = d.partitions[part.name];
    const logical = d.partitions[`${part.name}_${target}`];
    if (physical && !physical.slotted)
      throw new UpdateEngineError('kInstallDeviceOpenError', `partition ${part.name} has no slots`);
    if (!physical && !logical?.logical)
      throw new UpdateEngineError(
        'kInstallDeviceOpenError',
        `the device has no partition ${part.name}_${target}`,
      );
    if (physical && part.size > physical.size)
      throw new UpdateEngineError(
        'kNotEnoughSpace',
        `partition ${part.name} is ${physical.size} bytes, the new image ${part.size}`,
      );
    if (!physical) sizes[`${part.name}_${target}`] = { ...logical, size: part.size };
    targets.push({
      part,
      key: physical ? part.name : `${part.name}_${target}`,
      keySlot: physical ? target : null,
      logical: !physical,
      source: physical ? st.partitionPath(part.name, current) : st.partitionPath(`${part.name}_${current}`),
      staged: st.tempPath(`ota-${part.name}`),
    });
  }
  if (d.superPartition) {
    const problem = await superLayoutProblem(d, sizes, d.superPartition);
    if (problem) throw new UpdateEngineError('kNotEnoughSpace', `super: ${problem}`);
  }
  // An incremental applies only over the build it was made from: every source first.
  for (const t of targets) {
    if (t.part.oldSize === undefined) continue;
    const found = await sha256Prefix(t.source, t.part.oldSize);
    if (found !== t.part.oldSha256)
      throw new UpdateEngineError(
        'kDownloadStateInitializationError',
        `partition ${t.part.name}: slot ${current} is not the build this incremental OTA was made from (sha256 ${found ?? 'unreadable'}, expected ${t.part.oldSha256})`,
      );
  }
  try {
    for (const t of targets) {
      say(`Applying ${t.part.operations.length} operations to partition ${t.part.name}_${target}`);
      try {
        await applyPartition(
          {
            file: pkg.name,
            blobsOffset: payload.blobsOffset,
            blockSize: payload.manifest.blockSize,
            partition: t.part,
            outPath: t.staged,
            sourcePath: t.part.oldSize !== undefined ? t.source : undefined,
          },
          undefined,
          pkg,
        );
      } catch (e) {
        throw applyError(e, t.part.name);
      }
    }
    // All verified: the inactive slot takes them, then becomes the one to boot.
    await st.update((x) => {
      for (const t of targets)
        if (t.logical) x.partitions[t.key] = { ...x.partitions[t.key], size: t.part.size };
    });
    await st.reload();
    for (const t of targets) await st.commitPartition(t.key, t.keySlot, t.staged);
    await st.update((x) => {
      x.currentSlot = target;
      x.slotUnbootable = { a: false, b: false, ...x.slotUnbootable, [target]: false };
      x.slotSuccessful = { a: false, b: false, ...x.slotSuccessful, [target]: false };
      x.slotRetryCount = { a: 0, b: 0, ...x.slotRetryCount, [target]: MAX_RETRIES };
    });
    say(`Slot ${target} is now active (${MAX_RETRIES} tries to boot)`);
    return target;
  } finally {
    for (const t of targets) await rm(t.staged, { force: true });
  }
}

function applyError(e: unknown, partition: string): unknown {
  if (!(e instanceof OmieError)) return e;
  const code: UeError =
    e.code === 'PAYLOAD_SOURCE_HASH_MISMATCH'
      ? 'kDownloadStateInitializationError'
      : e.code === 'PAYLOAD_OPERATION_HASH_MISMATCH'
        ? 'kDownloadOperationHashMismatch'
        : e.code === 'PAYLOAD_PARTITION_HASH_MISMATCH'
          ? 'kNewRootfsVerificationError'
          : e.code === 'SIDELOAD_TRANSFER' || e.code === 'SIDELOAD_BLOCK_CHANGED'
            ? 'kDownloadTransferError'
            : 'kDownloadOperationExecutionError';
  return new UpdateEngineError(code, `partition ${partition}: ${e.message}`);
}

async function sha256Prefix(path: string, size: number): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st || st.size < size) return undefined;
  const h = createHash('sha256');
  if (size > 0) await pipeline(createReadStream(path, { start: 0, end: size - 1 }), h);
  return h.digest('hex');
}

/** last_log and last_install, where recovery-persist keeps them on an A/B device. */
async function writeRecoveryLogs(st: SimState, log: string[], lastInstall: string[]): Promise<void> {
  const dir = join(st.dir, 'data', 'misc', 'recovery');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'last_log'), `${log.join('\n')}\n`);
  await writeFile(join(dir, 'last_install'), `${lastInstall.join('\n')}\n`);
}
