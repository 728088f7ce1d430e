import type { Command } from 'commander';
import { type FlashTarget, flashDevices, openBuild } from '../../device/flash.ts';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';
import { makeProgress } from '../progress.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerFlash(program: Command): void {
  program
    .command('flash')
    .description(
      'flash a build (output directory or fastboot zip) safely: identity check first, inactive slot, fastbootd for logical partitions, verify, then switch slot',
    )
    .argument(
      '<build>',
      'build output directory or fastboot zip (android-info.txt + <partition>.img, optional super_empty.img)',
    )
    .option(
      '-s, --serial <serial>',
      'device to flash: USB fastboot serial or tcp:HOST:PORT (repeatable, flashed in parallel)',
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
    .option('--retries <n>', 'retries per partition after a dropped connection', '3')
    .option('--no-wait-adb', 'do not wait for Android to come back after the final reboot')
    .option(
      '--dry-run',
      'print the fastboot command sequence without writing anything (the device must be in fastboot)',
    )
    .addHelpText(
      'after',
      `
Nothing is written unless the device's product matches android-info.txt ("require board=") and its
bootloader is unlocked. Physical partitions are written to the inactive slot, logical ones from
fastbootd; the slot is switched only after every write has been read back (or size-checked where the
device cannot read back). A dropped connection is retried per partition; re-running completes an
interrupted flash. With --json, prints {"ok": true, "devices": [report…]}.`,
    )
    .action(async (buildPath: string, o, cmd: Command) => {
      const json = globalOpts(cmd).json;
      const out = makeOutput(json);
      if (!['inactive', 'a', 'b'].includes(o.slot))
        throw new InputError(`--slot must be inactive, a or b (got ${o.slot})`, { code: 'USAGE' });
      const addresses: string[] = [...o.fastboot, ...o.serial];
      if (o.all) {
        const { listUsbFastbootDevices } = await import('../../device/fastboot/usb.ts');
        for (const d of await listUsbFastbootDevices())
          if (d.serial && !addresses.includes(d.serial)) addresses.push(d.serial);
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
      const build = await openBuild(buildPath);
      const progress = makeProgress(json);
      try {
        const reports = await flashDevices(build, targets, {
          slot: o.slot,
          wipe: !!o.wipe,
          lock: !!o.lock,
          dryRun: !!o.dryRun,
          retries: Number(o.retries),
          noWaitAdb: o.waitAdb === false,
          onProgress: o.dryRun ? undefined : progress,
          log: json ? undefined : (l) => process.stderr.write(`${l}\n`),
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
