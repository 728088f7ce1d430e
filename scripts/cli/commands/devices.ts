import type { Command } from 'commander';
import type { DiscoveredDevice } from '../../device/discover.ts';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';

interface DevicesOpts {
  fastboot: string[];
  usb: boolean;
  adb: boolean;
  adbPort?: string;
  timeout: string;
}

export function registerDevices(program: Command): void {
  program
    .command('devices')
    .description(
      'list devices in every state (adb, unauthorized, recovery, sideload, bootloader, fastbootd) over USB and TCP',
    )
    .option(
      '--fastboot <tcp:host:port>',
      'also query a TCP fastboot endpoint (repeatable; also $OMIE_FASTBOOT_TCP, comma-separated)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--no-usb', 'do not scan USB for fastboot devices')
    .option('--no-adb', 'do not ask the adb server')
    .option('--adb-port <port>', 'adb server port (default $ANDROID_ADB_SERVER_PORT or 5037)')
    .option('--timeout <ms>', 'per-device timeout', '5000')
    .addHelpText(
      'after',
      `
adb devices come from the adb server (started if needed); "adb connect HOST:PORT" first for TCP ones.
Columns: id (what --serial takes), protocol, transport, state, serial, product, slot, lock state.
--json prints { devices: [...], warnings: [...] }.`,
    )
    .action(async (opts: DevicesOpts, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const timeoutMs = Number(opts.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
        throw new InputError(`--timeout must be milliseconds, not ${opts.timeout}`);
      let adbPort: number | false | undefined = opts.adb ? undefined : false;
      if (opts.adb && opts.adbPort !== undefined) {
        adbPort = Number(opts.adbPort);
        if (!Number.isInteger(adbPort) || adbPort <= 0 || adbPort > 65535)
          throw new InputError(`--adb-port must be a TCP port, not ${opts.adbPort}`);
      }
      for (const f of opts.fastboot)
        if (!/^(tcp:)?[^:]+:\d+$/.test(f)) throw new InputError(`--fastboot takes tcp:host:port, not ${f}`);
      const { discoverDevices, fastbootTcpFromEnv } = await import('../../device/discover.ts');
      const result = await discoverDevices({
        adbPort,
        fastbootTcp: [...new Set([...opts.fastboot, ...fastbootTcpFromEnv()])],
        usb: opts.usb,
        timeoutMs,
      });
      for (const w of result.warnings) if (!out.json) out.warn(w);
      out.result(result, (r) => human(r.devices));
    });
}

function human(devices: DiscoveredDevice[]): string {
  if (devices.length === 0) return 'no devices found';
  return table(
    devices.map((d) => [
      d.id,
      d.protocol,
      d.transport,
      d.state,
      d.serial ?? '',
      d.product ?? '',
      d.slot ?? '',
      d.locked === undefined ? '' : d.locked ? 'locked' : 'unlocked',
      d.error ?? '',
    ]),
    ['id', 'protocol', 'via', 'state', 'serial', 'product', 'slot', 'bootloader', 'note'],
  );
}
