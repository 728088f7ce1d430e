/**
 * The virtual device's settings provider (`settings get/put`, STATE/settings.json over the values a
 * provisioned device has) and what a wipe leaves: a device not yet set up, USB debugging off.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type SettingsNamespace = 'global' | 'secure' | 'system';
export type Settings = Record<SettingsNamespace, Record<string, string>>;

const file = (stateDir: string) => join(stateDir, 'settings.json');

/** Every setting: the defaults of a provisioned device with USB debugging on, then the saved ones. */
export async function readSettings(stateDir: string, serial: string): Promise<Settings> {
  const out: Settings = {
    global: { adb_enabled: '1', device_provisioned: '1', development_settings_enabled: '1' },
    secure: {
      user_setup_complete: '1',
      android_id: createHash('sha256').update(serial).digest('hex').slice(0, 16),
    },
    system: {},
  };
  const saved = await readSaved(stateDir);
  for (const ns of ['global', 'secure', 'system'] as const) Object.assign(out[ns], saved[ns] ?? {});
  return out;
}

async function readSaved(
  stateDir: string,
): Promise<Partial<Record<SettingsNamespace, Record<string, string>>>> {
  try {
    return JSON.parse(await readFile(file(stateDir), 'utf8'));
  } catch {
    return {};
  }
}

/** Sets (or with null, deletes) one setting. */
export async function putSettings(
  stateDir: string,
  ns: SettingsNamespace,
  values: Record<string, string | null>,
): Promise<void> {
  const saved = await readSaved(stateDir);
  const space: Record<string, string> = { ...(saved[ns] ?? {}) };
  for (const [k, v] of Object.entries(values)) {
    if (v === null) delete space[k];
    else space[k] = v;
  }
  saved[ns] = space;
  await writeFile(file(stateDir), `${JSON.stringify(saved, null, 2)}\n`);
}

/** After a wipe: /data/system is new, setup has not run, USB debugging is off (a user build). */
export async function resetSettingsAfterWipe(stateDir: string): Promise<void> {
  await writeFile(
    file(stateDir),
    `${JSON.stringify(
      {
        global: { adb_enabled: '0', device_provisioned: '0', development_settings_enabled: '0' },
        secure: { user_setup_complete: '0' },
      },
      null,
      2,
    )}\n`,
  );
}

/** The owner finishes setup and turns USB debugging on (Settings > System > Developer options). */
export async function ownerEnablesUsbDebugging(stateDir: string): Promise<void> {
  await putSettings(stateDir, 'global', {
    adb_enabled: '1',
    device_provisioned: '1',
    development_settings_enabled: '1',
  });
  await putSettings(stateDir, 'secure', { user_setup_complete: '1' });
}

/** Whether adbd runs in Android (persist.sys.usb.config has adb, i.e. Settings' USB debugging). */
export async function usbDebuggingOn(stateDir: string): Promise<boolean> {
  const saved = await readSaved(stateDir);
  return saved.global?.adb_enabled !== '0';
}
