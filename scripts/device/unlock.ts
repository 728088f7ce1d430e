/**
 * Unlocking a device's bootloader (`omie unlock`): reach the bootloader (from Android through adb
 * when needed), check the device lets itself be unlocked (`flashing get_unlock_ability`: OEM
 * unlocking in Developer options), then send the device profile's unlock commands —
 * `flashing unlock`, and `flashing unlock_critical` where the profile lists it. Unlocking wipes
 * the device; the caller confirms that with the user first.
 */
import { EnvironmentError } from '../errors.ts';
import { FastbootClient } from './fastboot/client.ts';
import { FastbootFailError, TransportError } from './fastboot/protocol.ts';
import { parseYesNoVar } from './fastboot/vars.ts';
import { rebootFromAdb } from './flash.ts';

export interface UnlockTarget {
  /** "tcp:host:port", a USB serial or "usb:<port>". */
  fastboot: string;
  /** adb serial or HOST:PORT, to reboot the device from Android to the bootloader. */
  adb?: string;
}

export interface UnlockIdentity {
  serial?: string;
  product?: string;
  unlocked: boolean;
  /** `flashing get_unlock_ability`: undefined when the bootloader does not answer it. */
  unlockAbility?: boolean;
}

export interface UnlockReport extends UnlockIdentity {
  target: string;
  /** The commands sent (none when it was already unlocked). */
  sent: string[];
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens the device's bootloader (not fastbootd), rebooting it there from Android or fastbootd. */
export async function openBootloader(t: UnlockTarget, timeoutMs = 60_000): Promise<FastbootClient> {
  const tryOpen = async () => {
    const c = await FastbootClient.open(t.fastboot, { connectTimeoutMs: 3000 });
    await c.getvar('product');
    return c;
  };
  let c: FastbootClient | undefined;
  try {
    c = await tryOpen();
  } catch (e) {
    if (!t.adb || !(e instanceof TransportError)) throw e;
    await rebootFromAdb(t.adb, 'bootloader');
  }
  const end = Date.now() + timeoutMs;
  while (!c) {
    try {
      c = await tryOpen();
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      if (Date.now() > end)
        throw new EnvironmentError(`no fastboot device answered at ${t.fastboot} within ${timeoutMs} ms`, {
          code: 'UNLOCK_NO_DEVICE',
          hint: 'is the device in the bootloader? pass --adb SERIAL so omie can reboot it there',
        });
      await delay(200);
    }
  }
  if (await c.isUserspace()) {
    // flashing unlock is the bootloader's; fastbootd does not know it.
    await c.reboot('bootloader');
    await delay(200);
    return openBootloader({ fastboot: t.fastboot }, timeoutMs);
  }
  return c;
}

/** Who the device is and whether it can be unlocked, without changing anything. */
export async function unlockIdentity(c: FastbootClient): Promise<UnlockIdentity> {
  let unlockAbility: boolean | undefined;
  try {
    const r = await c.protocol.command('flashing get_unlock_ability', { timeoutMs: 10_000 });
    const line = [...r.info, r.value].find((l) => /get_unlock_ability:\s*[01]/.test(l));
    if (line) unlockAbility = /:\s*1/.test(line);
  } catch (e) {
    if (!(e instanceof FastbootFailError)) throw e;
  }
  return {
    serial: await c.tryGetvar('serialno'),
    product: await c.tryGetvar('product'),
    unlocked: parseYesNoVar(await c.tryGetvar('unlocked')) === true,
    unlockAbility,
  };
}

/**
 * Sends `commands` (default `flashing unlock`) and checks the bootloader then says unlocked. A
 * device already unlocked gets only the commands beyond `flashing unlock` (unlock_critical).
 */
export async function unlockBootloader(
  c: FastbootClient,
  target: string,
  commands: string[] = ['flashing unlock'],
): Promise<UnlockReport> {
  const id = await unlockIdentity(c);
  if (id.unlockAbility === false)
    throw new EnvironmentError(`${target}: the bootloader refuses to unlock (get_unlock_ability is 0)`, {
      code: 'UNLOCK_NOT_ALLOWED',
      context: { serial: id.serial },
      hint: 'turn on "OEM unlocking" in Settings > System > Developer options, then try again; nothing changed',
    });
  const sent: string[] = [];
  for (const cmd of commands) {
    if (id.unlocked && (cmd === 'flashing unlock' || cmd === 'oem unlock')) continue;
    await c.command(cmd, 120_000);
    sent.push(cmd);
  }
  const unlocked = parseYesNoVar(await c.tryGetvar('unlocked')) === true;
  if (!unlocked)
    throw new EnvironmentError(`${target}: still locked after ${sent.join(', ') || 'nothing'}`, {
      code: 'UNLOCK_FAILED',
      context: { serial: id.serial, sent },
      hint: 'some devices ask for a confirmation on their screen (volume keys, power): answer it and try again',
    });
  return { ...id, unlocked, target, sent };
}
