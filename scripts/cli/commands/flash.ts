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
      '<build>',
      'build output directory or fastboot zip (android-info.txt + <partition>.img, optional super_empty.img)',
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
      'adb serial or HOST:PORT of the device, to reboot it from Android to the bootloader (repeatable, paired in order)',
      collect,
      [],
    )
    .option('--all', 'flash every USB device currently in fastboot')
    .option('--slot <slot>', 'slot to write: inactive (default), a, or b', 'inactive')
    .option('--wipe', 'erase userdata and metadata after flashing')
    .option('--lock', 'lock the bootloader after flashing')
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
      'print the fastboot command sequence without writing anything (the device must be in fastboot)',
    )
    .addHelpText(
      'after',
      `
Nothing is written unless the device's product matches android-info.txt ("require board=") and its
bootloader is unlocked. The order is fastboot update's: firmware, boot-critical and other physical
images to the target slot (default: the one that did not boot last), then - when the build has
logical partitions - set_active, fastbootd, update-super and the logical images; otherwise the slot
is switched after every write has been read back (or size-checked where the device cannot read
back). A dropped connection is retried per partition; re-running completes an interrupted flash. With --json, prints {"ok": true, "devices": [report…]}.`,
    )
    .action(async (buildPath: string, o, cmd: Command) => {
      const json = globalOpts(cmd).json;
      const out = makeOutput(json);
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
      const targets: FlashTarget[] = addresses.map((a, i) => ({
        fastboot: /^\d+\.\d+\.\d+\.\d+:\d+$|^localhost:\d+$/.test(a) ? `tcp:${a}` : a,
        adb: o.adb[i],
      }));
      if (o.check && (o.waitAdb === false || o.dryRun || targets.some((t) => !t.adb)))
        throw new InputError(
          '--check runs over adb once the device is back: give --adb for every device, without --no-wait-adb or --dry-run',
          { code: 'USAGE' },
        );
      const { flashDevices, openBuild } = await import('../../device/flash.ts');
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
        const reports = await flashDevices(build, targets, {
          slot: o.slot,
          wipe: !!o.wipe,
          lock: !!o.lock,
          disableVerity: !!o.disableVerity,
          disableVerification: !!o.disableVerification,
          dryRun: !!o.dryRun,
          retries: Number(o.retries),
          noWaitAdb: o.waitAdb === false,
          onProgress: o.dryRun ? undefined : progress,
          log: json ? undefined : (l) => process.stderr.write(`${l}\n`),
          afterFlash,
        });
        progress.stop();
        out.result({ ok: true, devices: reports }, (v) =>
          v.devices
            .map((r) =>
              r.dryRun
                ? [
                    `# ${r.target} (${r.product ?? '?'}): slot ${r.previousSlot ?? '-'} → ${r.slot ?? '-'}`,
                    ...r.steps.map((s) => (s.why ? `${s.command}    # ${s.why}` : s.command)),
                  ].join('\n')
                : `${r.target}: flashed ${r.flashed.length} partitions to slot ${r.slot ?? '-'} (was ${r.previousSlot ?? '-'}), all verified`,
            )
            .join('\n'),
        );
      } finally {
        progress.stop();
        await build.close();
      }
    });
}
