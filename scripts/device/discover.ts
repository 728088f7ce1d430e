/**
 * Finds every device the host can reach, in whatever state it is: Android/recovery/sideload/
 * unauthorized through the adb server, bootloader/fastbootd over USB and over TCP fastboot
 * endpoints, and reads identity (product, serial, slot, lock state) from each.
 */
import { OmieError } from '../errors.ts';
import { which } from '../host/tools.ts';
import { AdbHost } from './adb.ts';
import { FastbootClient } from './fastboot/client.ts';
import { parseSlotVar, parseYesNoVar } from './fastboot/vars.ts';

export type DeviceState =
  | 'device'
  | 'unauthorized'
  | 'recovery'
  | 'sideload'
  | 'offline'
  | 'bootloader'
  | 'fastbootd'
  | 'unreachable'
  | 'no permissions'
  | string;

export interface DiscoveredDevice {
  /** How to address it: the adb serial ("127.0.0.1:5555", "R58M…") or "tcp:host:port" / the USB serial for fastboot. */
  id: string;
  protocol: 'adb' | 'fastboot';
  transport: 'usb' | 'tcp';
  state: DeviceState;
  /** USB bus and port path ("1-1.4"), for USB devices: `usb:<port>` selects the device by it. */
  port?: string;
  /** The device's own serial number (ro.serialno / getvar serialno) when readable. */
  serial?: string;
  product?: string;
  /** Current slot without underscore ("a"/"b"), when A/B. */
  slot?: string;
  /** Bootloader lock state; undefined when it cannot be read (e.g. unauthorized). */
  locked?: boolean;
  verifiedBootState?: string;
  /** Why identity could not be read. */
  error?: string;
}

export interface DiscoverOptions {
  /** adb server port (default $ANDROID_ADB_SERVER_PORT or 5037); false skips adb. */
  adbPort?: number | false;
  /** TCP fastboot endpoints ("tcp:host:port"). */
  fastbootTcp?: string[];
  /** Scan USB for fastboot devices (needs the `usb` package); default true. */
  usb?: boolean;
  timeoutMs?: number;
}

export interface DiscoverResult {
  devices: DiscoveredDevice[];
  /** Sources that could not be queried (no adb binary, no libusb, …). */
  warnings: string[];
}

const TCP_ID = /^[^:]+:\d+$/;

export async function discoverDevices(opts: DiscoverOptions = {}): Promise<DiscoverResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const warnings: string[] = [];
  const jobs: Array<Promise<DiscoveredDevice[]>> = [];
  if (opts.adbPort !== false) {
    if (!which('adb')) warnings.push('adb is not installed: Android/recovery devices are not listed');
    else jobs.push(adbDevices(opts.adbPort, timeoutMs).catch((e) => warnAndSkip(warnings, e)));
  }
  for (const addr of opts.fastbootTcp ?? []) jobs.push(fastbootTcp(addr, timeoutMs).then((d) => [d]));
  if (opts.usb !== false) jobs.push(fastbootUsb(timeoutMs).catch((e) => warnAndSkip(warnings, e)));
  const devices = (await Promise.all(jobs)).flat();
  return { devices, warnings };
}

function warnAndSkip(warnings: string[], e: unknown): DiscoveredDevice[] {
  warnings.push(msg(e));
  return [];
}

function msg(e: unknown): string {
  return e instanceof OmieError
    ? e.message + (e.hint ? ` (${e.hint})` : '')
    : String((e as Error)?.message ?? e);
}

async function adbDevices(port: number | undefined, timeoutMs: number): Promise<DiscoveredDevice[]> {
  const host = new AdbHost({ port, timeoutMs });
  const list = await host.devices();
  return Promise.all(
    list.map(async (d): Promise<DiscoveredDevice> => {
      const base: DiscoveredDevice = {
        id: d.serial,
        protocol: 'adb',
        transport: TCP_ID.test(d.serial) ? 'tcp' : 'usb',
        state: d.state,
      };
      if (d.state !== 'device' && d.state !== 'recovery') return base;
      try {
        const p = await host.getprops(d.serial);
        const locked = p['ro.boot.flash.locked'];
        return {
          ...base,
          serial: p['ro.serialno'] || p['ro.boot.serialno'] || undefined,
          product: p['ro.product.name'] || p['ro.product.device'] || undefined,
          slot: p['ro.boot.slot_suffix']?.replace(/^_/, '') || undefined,
          locked: locked === '1' ? true : locked === '0' ? false : undefined,
          verifiedBootState: p['ro.boot.verifiedbootstate'] || undefined,
        };
      } catch (e) {
        return { ...base, error: msg(e) };
      }
    }),
  );
}

async function identifyFastboot(client: FastbootClient): Promise<Partial<DiscoveredDevice>> {
  const [product, serial, slot, unlocked, userspace, vbs] = [
    await client.tryGetvar('product'),
    await client.tryGetvar('serialno'),
    await client.tryGetvar('current-slot'),
    await client.tryGetvar('unlocked'),
    await client.tryGetvar('is-userspace'),
    await client.tryGetvar('verified-boot-state').catch(() => undefined),
  ];
  const slotLetter = parseSlotVar(slot);
  const isUnlocked = parseYesNoVar(unlocked);
  return {
    state: parseYesNoVar(userspace) ? 'fastbootd' : 'bootloader',
    ...(serial ? { serial } : {}),
    ...(product ? { product } : {}),
    ...(slotLetter ? { slot: slotLetter } : {}),
    ...(isUnlocked === undefined ? {} : { locked: !isUnlocked }),
    ...(vbs ? { verifiedBootState: vbs } : {}),
  };
}

async function fastbootTcp(address: string, timeoutMs: number): Promise<DiscoveredDevice> {
  const id = address.startsWith('tcp:') ? address : `tcp:${address}`;
  const base: DiscoveredDevice = { id, protocol: 'fastboot', transport: 'tcp', state: 'unreachable' };
  let client: FastbootClient | undefined;
  try {
    client = await FastbootClient.connectTcp(id, { timeoutMs, connectTimeoutMs: timeoutMs });
    return { ...base, ...(await identifyFastboot(client)) };
  } catch (e) {
    return { ...base, error: msg(e) };
  } finally {
    await client?.close().catch(() => {});
  }
}

async function fastbootUsb(timeoutMs: number): Promise<DiscoveredDevice[]> {
  const { listUsbFastbootDevices, usbAddresses } = await import('./fastboot/usb.ts');
  const found = await listUsbFastbootDevices();
  const ids = usbAddresses(found);
  const out: DiscoveredDevice[] = [];
  for (const [i, dev] of found.entries()) {
    const base: DiscoveredDevice = {
      id: ids[i],
      protocol: 'fastboot',
      transport: 'usb',
      state: 'bootloader',
      port: dev.port,
      ...(dev.serial ? { serial: dev.serial } : {}),
    };
    let client: FastbootClient | undefined;
    try {
      client = new FastbootClient(await dev.open(), { timeoutMs });
      out.push({ ...base, ...(await identifyFastboot(client)) });
    } catch (e) {
      // As adb and fastboot say it: the device is there, its node is not open to this user.
      const denied = e instanceof OmieError && e.code === 'USB_ACCESS';
      out.push({ ...base, state: denied ? 'no permissions' : 'unreachable', error: msg(e) });
    } finally {
      await client?.close().catch(() => {});
    }
  }
  return out;
}

/** TCP fastboot endpoints from $OMIE_FASTBOOT_TCP ("tcp:h:p,tcp:h2:p2"). */
export function fastbootTcpFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.OMIE_FASTBOOT_TCP ?? '')
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}
