/**
 * `omie flash --sideload`: installs a signed A/B OTA package on a device through the adb server, as
 * `adb sideload` does, and sees it boot the new slot.
 *
 * 1. The package is read here first: its whole-file signature must verify (a damaged package is
 *    never sent), and its metadata says which device, build and date it is for.
 * 2. A device in Android is checked before it is rebooted: the certificates of its running
 *    system's otacerts.zip (pulled) must hold the package's signer, and recovery's own rules
 *    (formats/ota/install-checks.ts: device, source build, no downgrade) must pass against its
 *    properties. A package the device would refuse is refused here, the device untouched.
 * 3. It is rebooted with `adb reboot sideload-auto-reboot`, the package served over
 *    `sideload-host` (block by block, as the device asks: AdbHost.sideload), and the device,
 *    which installs it to its inactive slot and reboots, is waited for back in Android.
 * 4. The outcome is read from the device itself: the slot it booted, its build, version and vbmeta
 *    digest, and, when it refused the package (FAILFAIL), why, from recovery's last_log.
 *
 * A device already in sideload mode (its owner chose "Apply update from ADB") is served at once:
 * it checks everything itself. One in recovery is moved to sideload mode.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EnvironmentError,
  type ErrorContext,
  ExitCode,
  FormatError,
  InputError,
  OmieError,
  VerificationError,
} from '../errors.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import {
  checkPackageMetadata,
  checkPayloadTimestamp,
  refusalFromLog,
  runningBuild,
} from '../formats/ota/install-checks.ts';
import { RELEASE_ENTRY } from '../formats/ota/metadata.ts';
import { SYSTEM_OTACERTS as OTACERTS, readOtaCertificates } from '../formats/ota/otacerts.ts';
import { readWholeFileSignature } from '../formats/ota/whole-file.ts';
import { locatePayload, readPayloadAt } from '../formats/payload/reader.ts';
import type { ProgressFn } from '../progress.ts';
import { type AdbDeviceState, AdbError, type AdbHost } from './adb.ts';

export interface SideloadOptions {
  /** adb serial or HOST:PORT; default: the one device the adb server lists. */
  serial?: string;
  /** How long each reboot may take (ms, default 180 s). */
  rebootTimeoutMs?: number;
  /** Check the package against the device and stop there. */
  dryRun?: boolean;
  log?: (line: string) => void;
  onProgress?: ProgressFn;
  /** The adb layer (tests give their own server's). */
  host?: AdbHost;
}

export interface OtaPackageSummary {
  path: string;
  size: number;
  kind: 'full' | 'incremental';
  /** pre-device: the device it is for. */
  device: string;
  postBuild: string;
  postTimestamp: number;
  /** The build an incremental applies to. */
  preBuild?: string;
  /** The Omie version it installs (from META-INF/com/omie/release.json, when `omie ota` made it). */
  version?: string;
  /** SHA-256 of the certificate that signed the package. */
  signer: string;
}

/** What a device in Android says it runs. */
export interface DeviceBuild {
  slot?: string;
  fingerprint?: string;
  version?: string;
  timestamp?: number;
  vbmetaDigest?: string;
  verifiedBootState?: string;
}

export interface SideloadReport {
  serial: string;
  package: OtaPackageSummary;
  /** "passed": checked against the running system before the reboot; "device": only the device checked. */
  preflight: 'passed' | 'device';
  dryRun?: boolean;
  before?: DeviceBuild;
  after?: DeviceBuild;
  /** Bytes served to the device (it reads the package about twice: signature, then install). */
  served?: number;
}

/** Reads what the package says of itself; its whole-file signature must verify. */
export async function readOtaPackage(
  path: string,
): Promise<OtaPackageSummary & { maxTimestamp?: number; metadata: Record<string, string> }> {
  const sig = await readWholeFileSignature(path);
  if (!sig.valid)
    throw new VerificationError(
      'ota-zip',
      `${path}: the whole-file signature does not verify: the package is damaged`,
      {
        code: 'OTA_SIGNATURE_INVALID',
        context: { file: path },
        hint: 'download or copy the package again',
      },
    );
  const loc = await locatePayload(path);
  if (loc.container !== 'ota-zip' || !loc.otaMetadata)
    throw new FormatError({
      format: 'ota-zip',
      reason: 'no META-INF/com/android/metadata: not an OTA package a device can sideload',
      file: path,
    });
  const payload = await readPayloadAt(loc);
  const meta = loc.otaMetadata;
  let version: string | undefined;
  const zip = await ZipArchive.openFile(path);
  try {
    const e = zip.entry(RELEASE_ENTRY);
    const v: unknown = e && JSON.parse((await zip.read(e, 65536)).toString('utf8')).version;
    if (typeof v === 'string') version = v;
  } catch {
    // not made by omie ota, or an unreadable release entry: the version stays unknown
  } finally {
    await zip.close();
  }
  return {
    path,
    size: zip.layout.size,
    kind: payload.manifest.partitions.some((p) => p.oldSize !== undefined) ? 'incremental' : 'full',
    device: meta['pre-device'] ?? '',
    postBuild: meta['post-build'] ?? '',
    postTimestamp: Number(meta['post-timestamp'] ?? 0),
    ...(meta['pre-build'] ? { preBuild: meta['pre-build'] } : {}),
    ...(version ? { version } : {}),
    signer: sig.certificateSha256,
    maxTimestamp: payload.manifest.maxTimestamp,
    metadata: meta,
  };
}

/** The typed error for a refusal, by its code (formats/ota/install-checks.ts and recovery's log). */
export function refusalError(code: string, message: string, context: ErrorContext = {}): OmieError {
  const hints: Record<string, string> = {
    OTA_SIGNER_UNTRUSTED:
      "the device installs only packages signed by a key its system's otacerts.zip holds (the product's signing.otaKey): sign with that key",
    OTA_WRONG_DEVICE: "use the package made for this device's product",
    OTA_WRONG_SERIAL: 'the package is for other devices (its serialno list)',
    OTA_WRONG_SOURCE_BUILD:
      'an incremental OTA applies only over the build it was made from: use a full OTA, or the incremental from the build the device runs',
    PAYLOAD_SOURCE_HASH_MISMATCH:
      'an incremental OTA applies only over the build it was made from: use a full OTA, or the incremental from the build the device runs',
    OTA_DOWNGRADE: 'a device moves only to builds at least as new as the one it runs: install a newer build',
    OTA_NOT_AB: 'the device takes A/B packages (omie ota makes them)',
    OTA_NO_SPACE: "the package's partitions do not fit the device's",
    PAYLOAD_SIGNATURE_INVALID: "sign the package with a key the device's otacerts.zip holds",
    PAYLOAD_PARTITION_HASH_MISMATCH: 'the package is damaged: make or copy it again',
  };
  const opts = { code, context, hint: hints[code] };
  if (['OTA_SIGNER_UNTRUSTED', 'PAYLOAD_SIGNATURE_INVALID', 'PAYLOAD_PARTITION_HASH_MISMATCH'].includes(code))
    return new VerificationError('sideload', message, opts);
  if (code in hints) return new InputError(message, opts);
  return new OmieError(message, { ...opts, exitCode: ExitCode.checkFailed });
}

/** The device's properties as a DeviceBuild. */
function buildOf(props: Record<string, string>): DeviceBuild {
  const t = Number(props['ro.build.date.utc']);
  const out: DeviceBuild = {
    slot: props['ro.boot.slot_suffix']?.replace(/^_/, ''),
    fingerprint: props['ro.build.fingerprint'],
    version: props['ro.omie.version'],
    timestamp: Number.isSafeInteger(t) && props['ro.build.date.utc'] ? t : undefined,
    vbmetaDigest: props['ro.boot.vbmeta.digest']?.toLowerCase(),
    verifiedBootState: props['ro.boot.verifiedbootstate'],
  };
  return Object.fromEntries(
    Object.entries(out).filter(([, v]) => v !== undefined && v !== ''),
  ) as DeviceBuild;
}

/** The device the adb server lists under `serial`, or the only one it lists. */
async function findDevice(
  host: AdbHost,
  serial?: string,
): Promise<{ serial: string; state: AdbDeviceState }> {
  if (serial) {
    const tcp = /^(.+):(\d+)$/.exec(serial);
    if (tcp) await host.connect(tcp[1], Number(tcp[2])).catch(() => {});
    const state = await host.state(serial);
    if (!state)
      throw new EnvironmentError(`adb does not see ${serial}`, {
        code: 'SIDELOAD_NO_DEVICE',
        context: { serial, devices: await host.devices().catch(() => []) },
        hint: 'is USB debugging on (or the device in sideload mode)? `omie devices` lists what is reachable',
      });
    return { serial, state };
  }
  const usable = (await host.devices()).filter((d) => ['device', 'recovery', 'sideload'].includes(d.state));
  if (!usable.length)
    throw new EnvironmentError('no device in Android, recovery or sideload mode', {
      code: 'SIDELOAD_NO_DEVICE',
      context: { devices: await host.devices().catch(() => []) },
      hint: 'connect the device with USB debugging on, or put it in sideload mode',
    });
  if (usable.length > 1)
    throw new InputError(`${usable.length} devices are connected: say which one`, {
      code: 'USAGE',
      context: { devices: usable },
      hint: 'pass --serial SERIAL',
    });
  return usable[0];
}

/** Before any reboot: would the running system take this package? Throws the refusal it would give. */
async function preflight(
  host: AdbHost,
  serial: string,
  pkg: Awaited<ReturnType<typeof readOtaPackage>>,
  props: Record<string, string>,
  log: (l: string) => void,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'omie-otacerts-'));
  try {
    const file = join(dir, 'otacerts.zip');
    let certs: Awaited<ReturnType<typeof readOtaCertificates>> | undefined;
    try {
      await host.pull(serial, OTACERTS, file);
      certs = await readOtaCertificates(await readFile(file), OTACERTS);
    } catch (e) {
      log(
        `${serial}: cannot read ${OTACERTS} (${(e as Error).message}): the device will check the signer itself`,
      );
    }
    if (certs && !certs.some((c) => c.sha256 === pkg.signer))
      throw refusalError(
        'OTA_SIGNER_UNTRUSTED',
        `${serial} does not trust the package's signer: its ${OTACERTS} holds ${certs.map((c) => c.sha256).join(', ') || 'no certificate'}, the package is signed by ${pkg.signer}`,
        { serial, file: pkg.path, signer: pkg.signer, trusted: certs.map((c) => c.sha256) },
      );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const running = runningBuild(props);
  const refused =
    checkPackageMetadata(pkg.metadata, running) ?? checkPayloadTimestamp(pkg.maxTimestamp, running);
  if (refused)
    throw refusalError(refused.code, `${serial} would refuse the package: ${refused.log}`, {
      serial,
      file: pkg.path,
      field: refused.field,
      expected: refused.expected,
      found: refused.found,
    });
}

/** Why the device refused the package: its recovery log, kept for after the reboot. */
async function refusal(host: AdbHost, serial: string, pkg: OtaPackageSummary): Promise<OmieError> {
  const log = await host
    .shell(serial, 'cat /data/misc/recovery/last_log')
    .then((r) => (r.exitCode === 0 ? r.stdout : ''))
    .catch(() => '');
  const errors = log
    .split('\n')
    .filter((l) => l.startsWith('E:'))
    .map((l) => l.slice(2));
  const known = refusalFromLog(log);
  const context = { serial, file: pkg.path, recoveryLog: errors };
  if (known) return refusalError(known.code, `${serial} refused the package: ${known.line}`, context);
  return new OmieError(
    `${serial} refused the package${errors.length ? `: ${errors[errors.length - 1]}` : ''}`,
    {
      code: 'SIDELOAD_REFUSED',
      exitCode: ExitCode.checkFailed,
      context,
      hint: errors.length
        ? undefined
        : "the reason is on the device's screen (recovery), or in its /data/misc/recovery/last_log",
    },
  );
}

export async function sideloadOta(path: string, opts: SideloadOptions = {}): Promise<SideloadReport> {
  const log = opts.log ?? (() => {});
  const timeout = opts.rebootTimeoutMs ?? 180_000;
  const pkg = await readOtaPackage(path);
  const { metadata: _m, maxTimestamp: _t, ...summary } = pkg;
  const host = opts.host ?? new (await import('./adb.ts')).AdbHost();
  const { serial, state } = await findDevice(host, opts.serial);
  const report: SideloadReport = { serial, package: summary, preflight: 'device' };
  if (state === 'device') {
    const props = await host.getprops(serial);
    report.before = buildOf(props);
    await preflight(host, serial, pkg, props, log);
    report.preflight = 'passed';
    log(
      `${serial}: runs ${report.before.version ?? report.before.fingerprint ?? 'an unknown build'} from slot ${report.before.slot ?? '-'}; the package passes its checks`,
    );
  } else if (state !== 'sideload' && state !== 'recovery')
    throw new EnvironmentError(`${serial} is ${state}: it cannot take a package`, {
      code: state === 'unauthorized' ? 'ADB_UNAUTHORIZED' : 'SIDELOAD_NO_DEVICE',
      context: { serial, state },
      hint:
        state === 'unauthorized'
          ? 'accept the "Allow USB debugging?" prompt on the device'
          : 'boot it to Android with USB debugging on, or to recovery\'s "Apply update from ADB"',
    });
  if (opts.dryRun) return { ...report, dryRun: true };

  if (state !== 'sideload') {
    log(`${serial}: rebooting to sideload mode`);
    await host.rebootTo(serial, 'sideload-auto-reboot');
    await host.waitForStates(serial, ['sideload'], timeout);
  }
  log(`${serial}: sending ${pkg.kind} OTA ${path}`);
  let sent: Awaited<ReturnType<AdbHost['sideload']>>;
  try {
    sent = await host.sideload(serial, path, {
      onServed: (n, size) =>
        opts.onProgress?.({
          stage: `sideload ${serial}`,
          done: Math.min(n, 2 * size),
          total: 2 * size,
          unit: 'bytes',
        }),
    });
  } catch (e) {
    if (e instanceof AdbError && e.code !== 'SIDELOAD_PROTOCOL')
      throw new EnvironmentError(`${serial}: the transfer broke off: ${e.message}`, {
        code: 'SIDELOAD_TRANSFER',
        context: { serial, file: path },
        hint: 'the device refuses a package it did not read whole; sideload it again',
        cause: e,
      });
    throw e;
  }
  report.served = sent.served;
  log(
    `${serial}: the device ${sent.installed ? 'installed' : 'refused'} the package (read ${(sent.served / sent.size).toFixed(2)}× its size); waiting for Android`,
  );
  // sideload-auto-reboot boots Android; a device put in sideload mode by hand stays in recovery.
  const back = await host.waitForStates(serial, ['device', 'recovery'], timeout);
  if (back === 'recovery') {
    await host.rebootTo(serial, 'system');
    await host.waitForStates(serial, ['device'], timeout);
  }
  report.after = buildOf(await host.getprops(serial));
  if (!sent.installed) throw await refusal(host, serial, summary);
  const before = report.before;
  const fellBack =
    (before?.slot !== undefined && report.after.slot === before.slot) ||
    (summary.version !== undefined &&
      report.after.version !== undefined &&
      report.after.version !== summary.version);
  if (fellBack)
    throw new OmieError(
      `${serial} installed the package${before?.slot ? ` to slot ${before.slot === 'a' ? 'b' : 'a'}` : ''} but booted slot ${report.after.slot ?? '?'} (${report.after.version ?? report.after.fingerprint ?? 'its old build'}) again: the new slot did not pass verified boot`,
      {
        code: 'SIDELOAD_FELL_BACK',
        exitCode: ExitCode.checkFailed,
        context: { serial, before, after: report.after, package: summary },
        hint: "the build's vbmeta must be signed by a key the bootloader trusts (its OEM key, or the custom key enrolled with `omie flash --lock`), with rollback indexes at least the device's",
      },
    );
  log(
    `${serial}: booted slot ${report.after.slot ?? '-'} (${report.after.verifiedBootState ?? '?'}), ${report.after.version ?? report.after.fingerprint ?? ''}`,
  );
  return report;
}
