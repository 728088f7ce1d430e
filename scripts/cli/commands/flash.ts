import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { FlashTarget } from '../../device/flash.ts';
import { EnvironmentError, ExitCode, InputError, OmieError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';
import { makeProgress } from '../progress.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerFlash(program: Command): void {
  program
    .command('flash')
    .description(
      'flash a build (output directory or fastboot zip) safely, in fastboot update order: identity check first, never the slot that last booted, fastbootd for logical partitions, every write verified',
    )
    .argument(
      '[build]',
      'build output directory or fastboot zip (android-info.txt + <partition>.img, optional super_empty.img)',
    )
    .option(
      '--sideload <ota.zip>',
      'instead of a build: install a signed A/B OTA package (omie ota) through adb, as `adb sideload` does, and see the device boot it',
    )
    .option(
      '-s, --serial <serial>',
      'device to flash: USB fastboot serial, usb:PORT (as `omie devices` lists it) or tcp:HOST:PORT (repeatable, flashed in parallel)',
      collect,
      [],
    )
    .option(
      '--fastboot <address>',
      'fastboot over TCP address, e.g. tcp:127.0.0.1:5554 (repeatable)',
      collect,
      [],
    )
    .option(
      '--adb <serial>',
      'adb serial or HOST:PORT of a device, to reboot it from Android to the bootloader and check it after (repeatable; paired with its fastboot address by serial number)',
      collect,
      [],
    )
    .option('--all', 'flash every USB device currently in fastboot')
    .option('--slot <slot>', 'slot to write: inactive (default), a, or b', 'inactive')
    .option(
      '--wipe',
      'as fastboot -w: erase and format userdata, cache and metadata (those the device has) after flashing',
    )
    .option(
      '--lock',
      "lock the bootloader after flashing; a build not signed by the device's OEM key has its key enrolled in avb_custom_key first",
    )
    .option(
      '--avb-oem-key <file>',
      "the AVB key the device's bootloader trusts (PEM or avb_pkmd.bin): a build signed with it needs no custom key to lock",
    )
    .option(
      '--owner-enables-adb',
      'after a wipe (--wipe, --lock) the owner or lab turns USB debugging back on: wait for adb (and --check)',
    )
    .option('--jobs <n>', 'devices flashed at once (default: all)')
    .option(
      '--disable-verity',
      'set the hashtree-disabled flag in vbmeta images as they are flashed (as fastboot)',
    )
    .option(
      '--disable-verification',
      'set the verification-disabled flag in vbmeta images as they are flashed (as fastboot)',
    )
    .option('--retries <n>', 'retries per partition after a dropped connection', '3')
    .option('--no-wait-adb', 'do not wait for Android to come back after the final reboot')
    .option('--check', 'after the device is back in Android, run `omie check --device` on it (needs --adb)')
    .option('--product <product.yaml>', 'product to check the flashed device against (with --check)')
    .option('--report-dir <dir>', 'where --check writes its reports (one sub-folder per device)')
    .option(
      '--dry-run',
      'print the fastboot command sequence without writing anything (the device must be in fastboot); with --sideload, check the package against the device and stop',
    )
    .addHelpText(
      'after',
      `
Nothing is written unless the device's product matches android-info.txt ("require board=") and its
bootloader is unlocked. The order is fastboot update's: firmware, boot-critical and other physical
images to the target slot (default: the one that did not boot last), then - when the build has
logical partitions - set_active, fastbootd, update-super and the logical images; otherwise the slot
is switched after every write has been read back (or size-checked where the device cannot read
back). A dropped connection is retried per partition; re-running completes an interrupted flash. With --json, prints {"ok": true, "devices": [report…]}.

With --sideload <ota.zip> (one device: --serial or --adb, or the only one adb lists) the package's
whole-file signature is checked first; a device in Android is checked before it is rebooted (its
otacerts.zip must hold the signer, and the package must be for its device, not older than its build,
and - for an incremental - made from the build it runs), then rebooted with
\`adb reboot sideload-auto-reboot\`; the package is served as the device reads it (about twice its
size: signature, then install) and the device is waited for back in Android, on its new slot. A device
already in sideload mode is served at once. A refusal (here or by the device, read from its recovery
log) is an error naming the reason: OTA_SIGNER_UNTRUSTED (exit 1), OTA_WRONG_DEVICE, OTA_DOWNGRADE,
OTA_WRONG_SOURCE_BUILD, PAYLOAD_SOURCE_HASH_MISMATCH (exit 2); SIDELOAD_FELL_BACK (exit 1) when the new
slot did not pass verified boot and the device booted its old one. With --json, prints
{"ok": true, "serial", "package", "before", "after", "served"}.`,
    )
    .action(async (buildPath: string | undefined, o, cmd: Command) => {
      const json = globalOpts(cmd).json;
      const out = makeOutput(json);
      if (o.sideload) return sideload(o, buildPath, json);
      if (!buildPath)
        throw new InputError('omie flash needs a build (or --sideload <ota.zip>)', {
          code: 'USAGE',
          hint: 'omie flash <build-dir> --serial SERIAL, or omie flash --sideload ota.zip',
        });
      if (!['inactive', 'a', 'b'].includes(o.slot))
        throw new InputError(`--slot must be inactive, a or b (got ${o.slot})`, { code: 'USAGE' });
      const addresses: string[] = [...o.fastboot, ...o.serial];
      if (o.all) {
        const { listUsbFastbootDevices, usbAddresses } = await import('../../device/fastboot/usb.ts');
        const found = await listUsbFastbootDevices();
        for (const id of usbAddresses(found)) if (!addresses.includes(id)) addresses.push(id);
        if (!found.length)
          throw new EnvironmentError('--all: no USB device is in fastboot', {
            code: 'FLASH_NO_DEVICE',
            hint: 'reboot the device to the bootloader (adb reboot bootloader, or its key combination) and check `omie devices`',
          });
      }
      if (!addresses.length)
        throw new InputError('no device given', {
          code: 'USAGE',
          hint: 'pass --serial SERIAL, --fastboot tcp:HOST:PORT, or --all',
        });
      const jobs = o.jobs === undefined ? undefined : Number(o.jobs);
      if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1))
        throw new InputError(`--jobs must be a whole number of devices, 1 or more (got ${o.jobs})`, {
          code: 'USAGE',
        });
      if (o.check && (o.waitAdb === false || o.dryRun || o.adb.length < addresses.length))
        throw new InputError(
          '--check runs over adb once the device is back: give --adb for every device, without --no-wait-adb or --dry-run',
          { code: 'USAGE' },
        );
      const fastbootAddresses = addresses.map((a) =>
        /^\d+\.\d+\.\d+\.\d+:\d+$|^localhost:\d+$/.test(a) ? `tcp:${a}` : a,
      );
      const log = json ? undefined : (l: string) => process.stderr.write(`${l}\n`);
      const { flashAll, openBuild, verifyBuild } = await import('../../device/flash.ts');
      const { avbPublicKeyFromBytes } = await import('../../formats/avb/keys.ts');
      const avbOemKey = o.avbOemKey
        ? avbPublicKeyFromBytes(await readFile(o.avbOemKey), o.avbOemKey)
        : undefined;
      const afterFlash = o.check
        ? async (serial: string) => {
            const { runCheckWithFiles } = await import('../../conformance/run.ts');
            const { join } = await import('node:path');
            const { report } = await runCheckWithFiles({
              device: serial,
              // The device must now run this very build (6.4/C-1-3: its vbmeta digest).
              build: buildPath,
              product: o.product,
              reportDir: o.reportDir ? join(o.reportDir, serial.replace(/[^A-Za-z0-9._-]/g, '_')) : undefined,
            });
            if (!report.summary.conforms) {
              const failed = report.results.filter(
                (r) => r.level === 'MUST' && (r.status === 'fail' || r.status === 'error'),
              );
              throw new OmieError(
                `${serial} was flashed but does not conform: ${failed.map((r) => r.id).join(', ')}`,
                {
                  code: 'FLASH_CHECK_FAILED',
                  exitCode: ExitCode.checkFailed,
                  context: { serial, failed: failed.map((r) => ({ id: r.id, message: r.message })) },
                },
              );
            }
            if (!json)
              process.stderr.write(
                `${serial}: conforms to the Omie spec (${report.summary.pass} requirements pass)\n`,
              );
          }
        : undefined;
      const build = await openBuild(buildPath);
      const progress = makeProgress(json);
      try {
        // The build first (nothing is touched when it does not verify), then the devices.
        await verifyBuild(build, o.dryRun ? undefined : progress);
        const { pairTargets } = await import('../../device/pair.ts');
        const targets: FlashTarget[] = o.dryRun
          ? fastbootAddresses.map((a) => ({ fastboot: a }))
          : await pairTargets(fastbootAddresses, o.adb, { log });
        const outcomes = await flashAll(build, targets, {
          slot: o.slot,
          wipe: !!o.wipe,
          lock: !!o.lock,
          disableVerity: !!o.disableVerity,
          disableVerification: !!o.disableVerification,
          dryRun: !!o.dryRun,
          retries: Number(o.retries),
          noWaitAdb: o.waitAdb === false,
          onProgress: o.dryRun ? undefined : progress,
          log,
          afterFlash,
          avbOemKey,
          ownerEnablesAdb: !!o.ownerEnablesAdb,
          jobs,
        });
        progress.stop();
        const failed = outcomes.filter((x) => x.error);
        const devices = outcomes.map((x) => ({
          ...x.report,
          ...(x.error ? { error: x.error.toJSON() } : {}),
        }));
        // `error` as every command reports a failure: the first device's, whose exit code is used.
        const error = failed[0]?.error?.toJSON();
        out.result({ ok: failed.length === 0, ...(error ? { error } : {}), devices }, () =>
          outcomes
            .map(({ report: r, error }) => {
              if (error)
                return `${r.target}: FAILED: ${error.message}${error.hint ? ` (${error.hint})` : ''}`;
              if (r.dryRun)
                return [
                  `# ${r.target} (${r.product ?? '?'}): slot ${r.previousSlot ?? '-'} → ${r.slot ?? '-'}`,
                  ...r.steps.map((s) => (s.why ? `${s.command}    # ${s.why}` : s.command)),
                ].join('\n');
              const extra = [
                r.avb?.customKey === 'enrolled' ? 'custom AVB key enrolled' : undefined,
                r.locked ? 'locked' : undefined,
                r.adbAfter === 'off-after-wipe'
                  ? 'wiped: USB debugging is off until the owner turns it on'
                  : undefined,
              ].filter(Boolean);
              return `${r.target}${r.serial ? ` (${r.serial})` : ''}: flashed ${r.flashed.length} partitions to slot ${r.slot ?? '-'} (was ${r.previousSlot ?? '-'}), all verified${extra.length ? `; ${extra.join('; ')}` : ''}`;
            })
            .join('\n'),
        );
        if (failed.length) {
          const first = failed[0].error as OmieError;
          process.exitCode = first.exitCode;
          if (json) return;
          throw new OmieError(
            failed.length === 1 && outcomes.length === 1
              ? first.message
              : `flash failed on ${failed.length} of ${outcomes.length} devices`,
            {
              code: first.code,
              exitCode: first.exitCode,
              context: first.context,
              hint: failed.length === 1 ? first.hint : undefined,
            },
          );
        }
      } finally {
        progress.stop();
        await build.close();
      }
    });
}

/** `omie flash --sideload <ota.zip>`: one device, through adb (scripts/device/sideload.ts). */
async function sideload(
  o: Record<string, unknown>,
  buildPath: string | undefined,
  json: boolean,
): Promise<void> {
  const out = makeOutput(json);
  const serials = [...(o.serial as string[]), ...(o.adb as string[])];
  const conflicting = [
    buildPath !== undefined && '<build>',
    (o.fastboot as string[]).length && '--fastboot',
    o.all && '--all',
    o.wipe && '--wipe',
    o.lock && '--lock',
    o.check && '--check',
    o.disableVerity && '--disable-verity',
    o.disableVerification && '--disable-verification',
    o.slot !== 'inactive' && '--slot',
  ].filter(Boolean);
  if (conflicting.length)
    throw new InputError(`--sideload installs an OTA package alone: drop ${conflicting.join(', ')}`, {
      code: 'USAGE',
      hint: 'an OTA goes to the inactive slot and the device switches to it by itself',
    });
  if (serials.length > 1)
    throw new InputError('--sideload takes one device', {
      code: 'USAGE',
      context: { serials },
      hint: 'run it once per device',
    });
  const { sideloadOta } = await import('../../device/sideload.ts');
  const progress = makeProgress(json);
  try {
    const r = await sideloadOta(o.sideload as string, {
      serial: serials[0],
      dryRun: Boolean(o.dryRun),
      log: json ? undefined : (l) => process.stderr.write(`${l}\n`),
      onProgress: progress,
    });
    progress.stop();
    out.result({ ok: true, ...r }, (v) =>
      v.dryRun
        ? `${v.serial}: would take ${v.package.kind} OTA ${v.package.version ?? v.package.postBuild} (checked against the build it runs)`
        : `${v.serial}: installed ${v.package.kind} OTA ${v.package.version ?? v.package.postBuild}: slot ${v.before?.slot ?? '?'} → ${v.after?.slot ?? '?'}, ${v.after?.verifiedBootState ?? '?'}, vbmeta digest ${v.after?.vbmetaDigest ?? '?'}`,
    );
  } finally {
    progress.stop();
  }
}
