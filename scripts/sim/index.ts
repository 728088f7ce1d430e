/**
 * The virtual Omie device: one state directory served over adb (TCP) and fastboot (TCP) at once.
 * Both listeners are always up; each one only talks while the device is in a mode where that
 * protocol exists (adb: adb/recovery/sideload; fastboot: bootloader/fastbootd), like a real
 * device that reboots between Android, recovery, the bootloader and fastbootd.
 */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DeviceProfile } from '../model/index.ts';
import { type AdbServerHandle, startAdbServer } from './adb-server.ts';
import { bootAndroid } from './boot.ts';
import { type FastbootServer, startFastbootServer } from './fastboot-server.ts';
import { defaultSimProfile, type SimFaults, type SimProfile, SimState } from './state.ts';
import { ensureAvb } from './verified-boot.ts';

export interface StartSimOptions {
  stateDir: string;
  /** 0 (default): any free port. */
  adbPort?: number;
  fastbootPort?: number;
  host?: string;
  /** Used only when the state directory does not exist yet. */
  profile?: SimProfile;
  /** Extra system properties (ro.product.model, …) for a device with no flashed system yet. */
  props?: Record<string, string>;
  /** Overrides applied to an existing or new state (e.g. --locked, --auth require). */
  overrides?: { unlocked?: boolean; adbAuthRequired?: boolean; serial?: string; ownerEnablesAdb?: boolean };
  /** Fault injection for the fastboot link (tests). */
  faults?: SimFaults;
  log?: (line: string) => void;
}

export interface SimHandle {
  serial: string;
  adbPort: number;
  fastbootPort: number;
  stateDir: string;
  state: SimState;
  /** The fastboot server (setFaults for tests). */
  fastboot: FastbootServer;
  close(): Promise<void>;
}

export async function startSim(opts: StartSimOptions): Promise<SimHandle> {
  const dir = resolve(opts.stateDir);
  const state = SimState.exists(dir)
    ? await SimState.open(dir)
    : await SimState.create(dir, opts.profile ?? defaultSimProfile());
  const o = opts.overrides ?? {};
  if (
    o.unlocked !== undefined ||
    o.adbAuthRequired !== undefined ||
    o.serial !== undefined ||
    o.ownerEnablesAdb !== undefined
  )
    await state.update((d) => {
      if (o.unlocked !== undefined) d.unlocked = o.unlocked;
      if (o.adbAuthRequired !== undefined) d.adbAuthRequired = o.adbAuthRequired;
      if (o.serial !== undefined) d.serial = o.serial;
      if (o.ownerEnablesAdb !== undefined) d.ownerEnablesAdb = o.ownerEnablesAdb;
    });
  if (opts.props) await writeFile(join(dir, 'sim-props.json'), `${JSON.stringify(opts.props, null, 2)}\n`);
  await ensureAvb(state);
  // Powering on: a device that was off or running Android boots (verified boot); one left in the
  // bootloader, fastbootd or recovery stays there.
  const log = opts.log;
  if (state.info.mode === 'adb' || state.info.mode === 'off')
    await bootAndroid(state, { log: log && ((l) => log(`boot: ${l}`)) });

  const host = opts.host ?? '127.0.0.1';
  const adb: AdbServerHandle = await startAdbServer({
    state,
    port: opts.adbPort ?? 0,
    host,
    log: opts.log,
    boot: () => bootAndroid(state, { log: log && ((l) => log(`boot: ${l}`)) }),
  });
  let fastboot: FastbootServer;
  try {
    fastboot = await startFastbootServer({
      state,
      port: opts.fastbootPort ?? 0,
      host,
      faults: opts.faults,
      onCommand: opts.log ? (cmd, mode) => opts.log?.(`fastboot(${mode}): ${cmd}`) : undefined,
    });
  } catch (e) {
    await adb.close();
    throw e;
  }
  return {
    serial: state.info.serial,
    adbPort: adb.port,
    fastbootPort: fastboot.port,
    stateDir: dir,
    state,
    fastboot,
    async close() {
      await Promise.all([adb.close(), fastboot.close()]);
    },
  };
}

const UNSLOTTED = new Set(['userdata', 'metadata', 'misc', 'persist', 'frp', 'cache', 'super']);

/** A sim profile from a device.yaml profile (scripts/model). */
export function simProfileFromDevice(
  device: DeviceProfile,
  opts: { serial?: string; product?: string; avb?: SimProfile['avb'] } = {},
): SimProfile {
  const sup = device.super;
  const superSize = sup?.blockDevices.reduce((a, b) => a + Number(b.size), 0);
  // Groups and their partitions per slot, as the build's super_empty.img names them.
  const suffixes = device.ab ? ['_a', '_b'] : [''];
  const superLayout = sup && {
    metadataMaxSize: Number(sup.metadataMaxSize),
    metadataSlots: sup.metadataSlots,
    alignment: Number(sup.blockDevices[0].alignment),
    groups: Object.fromEntries(
      sup.groups.flatMap((g) => suffixes.map((x) => [`${g.name}${x}`, Number(g.maxSize)])),
    ),
    partitionGroups: Object.fromEntries(
      sup.groups.flatMap((g) =>
        g.partitions.flatMap((p) => suffixes.map((x) => [`${p}${x}`, `${g.name}${x}`])),
      ),
    ),
  };
  return {
    serial: opts.serial ?? 'OMIESIM0001',
    product: opts.product ?? device.fastboot.products[0],
    ab: device.ab,
    partitions: [
      ...device.partitions.map((p) => ({
        name: p.name,
        size: Number(p.size),
        logical: p.location === 'super',
        slotted: device.ab && !UNSLOTTED.has(p.name),
      })),
      ...(device.ab && !device.partitions.some((p) => p.name === 'misc')
        ? [{ name: 'misc', size: 1024 * 1024, logical: false, slotted: false }]
        : []),
    ],
    ...(superSize ? { superSize } : {}),
    ...(superLayout ? { superLayout } : {}),
    ...(device.fastboot.maxDownloadSize ? { maxDownloadSize: Number(device.fastboot.maxDownloadSize) } : {}),
    ...(device.fastboot.bootloaderVersions[0]
      ? { versionBootloader: device.fastboot.bootloaderVersions[0] }
      : {}),
    ...(opts.avb ? { avb: opts.avb } : {}),
  };
}

/** Properties a device profile implies (model name, manufacturer) for a sim with nothing flashed yet. */
export function simPropsFromDevice(device: DeviceProfile): Record<string, string> {
  return {
    'ro.product.model': device.name,
    'ro.product.manufacturer': device.vendor,
    'ro.product.brand': device.vendor,
    'ro.product.device': device.codename,
    'ro.product.name': device.fastboot.products[0],
  };
}

export type { SimProfile };
export { defaultSimProfile, SimState };
