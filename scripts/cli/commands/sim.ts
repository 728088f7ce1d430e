import { resolve } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import type { SimProfile } from '../../sim/index.ts';
import type { BootRecord } from '../../sim/state.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

interface SimOpts {
  serial?: string;
  adbPort: string;
  fastbootPort: string;
  state: string;
  device?: string;
  product?: string;
  locked?: boolean;
  unlocked?: boolean;
  auth?: string;
  host: string;
  verbose?: boolean;
  avbOemKey?: string;
  avbCustomKey: boolean;
  ownerEnablesAdb?: boolean;
}

export function registerSim(program: Command): void {
  program
    .command('sim')
    .description('run a virtual Omie device that the real adb and fastboot clients talk to over TCP')
    .option('--serial <S>', 'device serial number')
    .option('--adb-port <P>', 'TCP port for adb (0: any free port)', '5555')
    .option('--fastboot-port <Q>', 'TCP port for fastboot (0: any free port)', '5554')
    .option('--state <DIR>', 'state directory (partitions, device.json); created when missing', '.omie/sim')
    .option('--device <device.yaml>', 'device profile used when the state directory is created')
    .option('--product <NAME>', 'fastboot product name (default: from --device, else omie_tablet)')
    .option('--locked', 'start with the bootloader locked')
    .option('--unlocked', 'start with the bootloader unlocked')
    .option(
      '--auth <mode>',
      'adb authorisation: auto (no AUTH, like ro.adb.secure=0) or require (only keys whose fingerprint is in device.json adbAuthorized)',
    )
    .option(
      '--avb-oem-key <pem>',
      "the AVB key the bootloader trusts (green); private PEM: the factory vbmeta is signed with it (default: a key of the sim's own, never the partner's)",
    )
    .option(
      '--no-avb-custom-key',
      'a bootloader that cannot enroll a custom AVB key (no avb_custom_key partition)',
    )
    .option(
      '--owner-enables-adb',
      'after a wipe (or lock/unlock), the owner sets the device up and turns USB debugging back on',
    )
    .option('--host <ADDR>', 'address to listen on', '127.0.0.1')
    .option('--verbose', 'log protocol events on stderr')
    .addHelpText(
      'after',
      `
Connect with:  adb connect 127.0.0.1:<adb-port>     fastboot -s tcp:127.0.0.1:<fastboot-port> getvar product
adb answers while the device is in Android, recovery or sideload; fastboot while it is in the bootloader
or fastbootd ("adb reboot bootloader" switches). Runs until SIGINT/SIGTERM.
Every boot verifies the slot as a bootloader does (AVB): locked + OEM key is green, locked + the key
enrolled in avb_custom_key is yellow, unlocked is orange; a locked slot that does not verify is red:
it is marked unbootable and the other slot boots. After a wipe, adb is off until the owner enables it.
With --json, one line {"serial","adbPort","fastbootPort","state","mode","verifiedBootState"} is printed once both ports listen.`,
    )
    .action(async (opts: SimOpts, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      if (opts.locked && opts.unlocked) throw new InputError('--locked and --unlocked exclude each other');
      if (opts.auth !== undefined && opts.auth !== 'auto' && opts.auth !== 'require')
        throw new InputError(`--auth must be auto or require, not ${JSON.stringify(opts.auth)}`);
      const adbPort = port(opts.adbPort, '--adb-port');
      const fastbootPort = port(opts.fastbootPort, '--fastboot-port');
      const stateDir = resolve(opts.state);
      const { loadDevice } = await import('../../model/index.ts');
      const { defaultSimProfile, SimState, simProfileFromDevice, simPropsFromDevice, startSim } =
        await import('../../sim/index.ts');
      let profile: SimProfile | undefined;
      let props: Record<string, string> | undefined;
      const creating = !SimState.exists(stateDir);
      const avb = {
        ...(opts.avbOemKey ? { oemKey: resolve(opts.avbOemKey) } : {}),
        customKey: opts.avbCustomKey,
      };
      if (!creating && (opts.avbOemKey || !opts.avbCustomKey))
        throw new InputError(
          `${stateDir} already holds a device: --avb-oem-key and --no-avb-custom-key apply when it is created`,
          { hint: 'choose a new --state directory (or delete this one)' },
        );
      if (opts.device) {
        const device = await loadDevice(resolve(opts.device));
        profile = simProfileFromDevice(device, { serial: opts.serial, product: opts.product, avb });
        props = simPropsFromDevice(device);
        if (opts.product) props['ro.product.name'] = opts.product;
      } else if (creating) {
        profile = defaultSimProfile({
          ...(opts.serial ? { serial: opts.serial } : {}),
          ...(opts.product ? { product: opts.product } : {}),
          avb,
        });
      }
      const sim = await startSim({
        stateDir,
        adbPort,
        fastbootPort,
        host: opts.host,
        profile,
        props: creating ? props : undefined,
        overrides: {
          ...(opts.locked ? { unlocked: false } : opts.unlocked ? { unlocked: true } : {}),
          ...(opts.auth ? { adbAuthRequired: opts.auth === 'require' } : {}),
          ...(opts.serial && !creating ? { serial: opts.serial } : {}),
          ...(opts.ownerEnablesAdb ? { ownerEnablesAdb: true } : {}),
        },
        log: opts.verbose ? (l) => process.stderr.write(`${l}\n`) : undefined,
      });
      const ready = {
        serial: sim.serial,
        adbPort: sim.adbPort,
        fastbootPort: sim.fastbootPort,
        state: sim.stateDir,
        mode: sim.state.info.mode,
        verifiedBootState: sim.state.info.boot?.verifiedBootState ?? null,
      };
      if (out.json) process.stdout.write(`${JSON.stringify(ready)}\n`);
      else
        out.info(
          [
            `virtual device ${sim.serial} (${sim.state.info.product}) from ${sim.stateDir}${creating ? ' (new)' : ''}`,
            `  adb:      adb connect ${opts.host}:${sim.adbPort}`,
            `  fastboot: fastboot -s tcp:${opts.host}:${sim.fastbootPort} getvar product`,
            `  mode: ${sim.state.info.mode}, bootloader ${sim.state.info.unlocked ? 'unlocked' : 'locked'}, adb auth ${sim.state.info.adbAuthRequired ? 'required' : 'auto-accept'}`,
            `  verified boot: ${describeBoot(sim.state.info.boot)}; OEM key sha256 ${sim.state.info.avb?.oemKeySha256 ?? '-'}`,
            'Ctrl-C stops it.',
          ].join('\n'),
        );
      await new Promise<void>((res) => {
        process.once('SIGINT', res);
        process.once('SIGTERM', res);
      });
      await sim.close();
    });
}

function describeBoot(b: BootRecord | undefined): string {
  if (!b) return 'not booted';
  const failed = b.failures.map((f) => `slot ${f.slot ?? '-'} red (${f.result})`);
  const booted = b.booted
    ? `slot ${b.slot ?? '-'} ${b.verifiedBootState}`
    : 'no bootable slot: stays in the bootloader';
  return [...failed, booted].join(', ');
}

function port(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InputError(`${flag} must be a TCP port (0-65535), not ${v}`);
  return n;
}
