import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerUnlock(program: Command): void {
  program
    .command('unlock')
    .description(
      "unlock a device's bootloader (flashing unlock, and unlock_critical where the device profile says so): this wipes the device",
    )
    .argument('<serial>', 'the device: its USB serial (fastboot), usb:<port>, or tcp:HOST:PORT')
    .option('--adb <serial>', 'adb serial or HOST:PORT, to reboot the device from Android to the bootloader')
    .option(
      '--device <device.yaml>',
      'device profile whose bootloader.unlock commands to send (default: flashing unlock)',
    )
    .option('-y, --yes', 'do not ask: the device is wiped (for scripts)')
    .addHelpText(
      'after',
      `
Unlocking erases all user data on the device. omie asks first (type "yes"), unless --yes is given;
without a terminal to ask on, --yes is required. The device must allow it: "OEM unlocking" on in
Settings > System > Developer options (fastboot flashing get_unlock_ability). Some devices also ask
on their own screen. With --json, prints {"ok": true, "device": {serial, product, unlocked, sent}}.`,
    )
    .action(async (serial: string, o: { adb?: string; device?: string; yes?: boolean }, cmd: Command) => {
      const json = globalOpts(cmd).json;
      const out = makeOutput(json);
      const fastboot = /^[^:]+:\d+$/.test(serial) && !/^(tcp|usb):/.test(serial) ? `tcp:${serial}` : serial;
      let commands = ['flashing unlock'];
      if (o.device) {
        const { loadDevice } = await import('../../model/index.ts');
        commands = (await loadDevice(resolve(o.device))).bootloader.unlock;
      }
      if (!o.yes && !process.stdin.isTTY)
        throw new InputError(
          'unlocking wipes the device: confirm with --yes when there is no terminal to ask on',
          {
            code: 'USAGE',
          },
        );
      const { openBootloader, unlockBootloader, unlockIdentity } = await import('../../device/unlock.ts');
      const c = await openBootloader({ fastboot, adb: o.adb });
      try {
        const id = await unlockIdentity(c);
        if (!o.yes && !(id.unlocked && commands.every((x) => x === 'flashing unlock'))) {
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          const answer = await rl.question(
            `Unlocking ${id.serial ?? fastboot} (${id.product ?? '?'}) ERASES ALL USER DATA on it. Type "yes" to go on: `,
          );
          rl.close();
          if (answer.trim().toLowerCase() !== 'yes')
            throw new InputError('not unlocked: not confirmed', { code: 'UNLOCK_NOT_CONFIRMED' });
        }
        const r = await unlockBootloader(c, fastboot, commands);
        out.result({ ok: true, device: r }, (v) =>
          v.device.sent.length
            ? `${v.device.serial ?? fastboot}: unlocked (${v.device.sent.join(', ')}); user data was wiped`
            : `${v.device.serial ?? fastboot}: already unlocked`,
        );
      } finally {
        await c.close().catch(() => {});
      }
    });
}
