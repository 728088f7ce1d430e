/**
 * Pairs adb and fastboot addresses by the device's serial number (ro.serialno over adb, getvar
 * serialno over fastboot), never by the order they were given in: `--adb A --adb B --fastboot X
 * --fastboot Y` flashes the device at A through whichever of X and Y answers with A's serial.
 *
 * Devices running Android cannot answer over fastboot, so those whose fastboot side is not found
 * among the addresses that answer now are rebooted to the bootloader first; the addresses that did
 * not answer are then asked again. A USB fastboot address given as a serial number is that serial;
 * `usb:<port>` and `tcp:` addresses are asked (getvar serialno).
 */
import { EnvironmentError, InputError } from '../errors.ts';
import { FastbootClient } from './fastboot/client.ts';
import { USB_PORT_PREFIX } from './fastboot/usb.ts';
import type { FlashTarget } from './flash.ts';

export interface PairOptions {
  /** How long to wait for rebooted devices to answer over fastboot (ms, default 60 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** A USB serial number addresses the device by its serial; tcp: and usb:<port> must be asked. */
const isSerial = (a: string) => !a.startsWith('tcp:') && !a.startsWith(USB_PORT_PREFIX);

/** The serial number a fastboot address answers with, or undefined when it does not answer now. */
async function fastbootSerial(address: string, timeoutMs: number): Promise<string | undefined> {
  if (isSerial(address)) return address;
  let c: FastbootClient | undefined;
  try {
    c = await FastbootClient.open(address, { connectTimeoutMs: timeoutMs, timeoutMs });
    return await c.tryGetvar('serialno');
  } catch {
    return undefined;
  } finally {
    await c?.close().catch(() => {});
  }
}

/**
 * Flash targets for every fastboot address, each with its adb address when one of `adb` is the
 * same device (and that device's serial). An adb device that matches no fastboot address is an
 * error, before anything is written.
 */
export async function pairTargets(
  fastboot: string[],
  adb: string[],
  opts: PairOptions = {},
): Promise<FlashTarget[]> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const serials = new Map<string, string | undefined>();
  for (const a of fastboot) serials.set(a, await fastbootSerial(a, 2000));
  if (!adb.length)
    return fastboot.map((a) => ({ fastboot: a, ...(serials.get(a) ? { serial: serials.get(a) } : {}) }));

  const { AdbHost } = await import('./adb.ts');
  const host = new AdbHost();
  const adbSerial = new Map<string, string>();
  for (const id of adb) {
    const m = /^(.+):(\d+)$/.exec(id);
    if (m) await host.connect(m[1], Number(m[2])).catch(() => {});
    const state = await host.state(id).catch(() => null);
    if (state !== 'device' && state !== 'recovery')
      throw new EnvironmentError(
        `adb device ${id} is ${state ?? 'not connected'}: its serial cannot be read`,
        {
          code: 'FLASH_ADB_UNREACHABLE',
          context: { adb: id, state },
          hint:
            state === 'unauthorized'
              ? 'accept the RSA key prompt on the device; nothing was written'
              : 'is it running Android with USB debugging on? nothing was written',
        },
      );
    const props = await host.getprops(id);
    const serial = props['ro.serialno'] || props['ro.boot.serialno'];
    if (!serial)
      throw new EnvironmentError(`adb device ${id} has no ro.serialno`, { code: 'FLASH_ADB_NO_SERIAL' });
    adbSerial.set(id, serial);
  }
  const known = () => new Set([...serials.values()].filter(Boolean));
  const waiting = adb.filter((id) => !known().has(adbSerial.get(id)));
  for (const id of waiting) {
    opts.log?.(`${id} (${adbSerial.get(id)}): rebooting to the bootloader to find its fastboot address`);
    await host.rebootTo(id, 'bootloader');
  }
  const end = Date.now() + timeoutMs;
  while (waiting.some((id) => !known().has(adbSerial.get(id))) && Date.now() < end) {
    for (const a of fastboot) if (!serials.get(a)) serials.set(a, await fastbootSerial(a, 1000));
    if (waiting.every((id) => known().has(adbSerial.get(id)))) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const unmatched = adb.filter((id) => !known().has(adbSerial.get(id)));
  if (unmatched.length)
    throw new InputError(
      `no fastboot address answers as ${unmatched.map((id) => `${adbSerial.get(id)} (adb ${id})`).join(', ')}`,
      {
        code: 'FLASH_UNPAIRED',
        context: { fastboot: Object.fromEntries(serials), adb: Object.fromEntries(adbSerial) },
        hint: 'give each device its fastboot address (--fastboot tcp:HOST:PORT, or its USB serial); nothing was written',
      },
    );
  // Devices sharing a serial (cheap boards, addressed by USB port) cannot be told apart by it.
  for (const id of adb) {
    const same = fastboot.filter((a) => serials.get(a) === adbSerial.get(id));
    if (same.length > 1)
      throw new InputError(`${same.join(' and ')} all answer as ${adbSerial.get(id)} (adb ${id})`, {
        code: 'FLASH_UNPAIRED',
        context: { fastboot: Object.fromEntries(serials), adb: Object.fromEntries(adbSerial) },
        hint: 'devices sharing a serial number cannot be paired with adb: flash them one at a time, without --adb; nothing was written',
      });
  }
  return fastboot.map((a) => {
    const serial = serials.get(a);
    const id = adb.find((x) => adbSerial.get(x) === serial);
    return { fastboot: a, ...(serial ? { serial } : {}), ...(id ? { adb: id } : {}) };
  });
}
