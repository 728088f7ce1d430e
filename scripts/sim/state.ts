/**
 * The virtual device's persistent state, shared by the sim's adb server and fastboot server.
 *
 * On-disk contract (`--state DIR`):
 *
 * - `DIR/device.json` — a {@link DeviceJson}: identity (serial, product, bootloader version), slots
 *   (`slotCount` 2 or 0, `currentSlot` "a" | "b" | null), lock state (`unlocked`, `secure`), the
 *   current `mode` ("adb" | "bootloader" | "fastbootd" | "recovery" | "sideload" | "off"), adb
 *   authorisation (`adbAuthorized` RSA key fingerprints; with `adbAuthRequired` and an empty list the
 *   device shows as "unauthorized"), the partition table (`partitions[name] = { size, logical,
 *   slotted }`, sizes in bytes). Physical A/B partitions are one entry with `slotted: true`
 *   ("boot" → boot_a.img, boot_b.img). Logical partitions are keyed by their full name in super's
 *   metadata, slot suffix included ("system_a", "system_b", each `logical: true, slotted: false`),
 *   because each slot has its own size there; `partitionPath("system", "a")` still finds
 *   partitions/system_a.img, so callers can use (base name, slot) for both kinds.
 *   Also `superPartition` when the device uses dynamic partitions, per-slot `slotSuccessful` /
 *   `slotUnbootable`, `snapshotUpdateStatus`, and optional `faults` for the fastboot server.
 * - `DIR/partitions/<name>_<slot>.img` for slotted partitions, `DIR/partitions/<name>.img` otherwise,
 *   logical ones included (they are kept as plain files; their layout is recorded in device.json).
 *   Each file is exactly the partition's size (sparse on disk where the host filesystem allows).
 *
 * Writes are atomic: device.json and partition images are written to a temporary file in the same
 * directory and renamed over the old one, so a crash or a dropped transfer never leaves half a file.
 * Several SimState instances may point at the same DIR (e.g. adb and fastboot servers in one
 * process, or a test reading what the sim wrote): `update()` re-reads device.json before mutating.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.ts';

export type Slot = 'a' | 'b';
export type DeviceMode = 'adb' | 'bootloader' | 'fastbootd' | 'recovery' | 'sideload' | 'off';
export type SnapshotUpdateStatus = 'none' | 'snapshotted' | 'merging' | 'cancelled';

export interface PartitionInfo {
  /** Bytes. */
  size: number;
  /** Lives inside super (dynamic partition), flashable only from fastbootd. */
  logical: boolean;
  /** Has an _a and _b copy on A/B devices. */
  slotted: boolean;
}

/** Fault injection for the fastboot server (tests). All optional; absent means a healthy link. */
export interface SimFaults {
  /** Close the connection (FIN) once this many bytes have been received on it. */
  dropAfterBytes?: number;
  /** Reset the connection (RST) once this many bytes have been received on it. */
  resetAfterBytes?: number;
  /** Throttle both directions to this many bytes per second. */
  slowBytesPerSecond?: number;
  /** Commands (matched by prefix, e.g. "flash:system", "erase") answered with FAIL. */
  refuseCommands?: string[];
  /** Apply the drop/reset faults only this many times (then heal). Absent: every connection. */
  times?: number;
}

export interface DeviceJson {
  serial: string;
  product: string;
  variant?: string;
  slotCount: 2 | 0;
  currentSlot: Slot | null;
  unlocked: boolean;
  /** `flashing unlock` is refused when false (OEM unlocking disabled in settings). Absent: allowed. */
  unlockAbility?: boolean;
  secure: boolean;
  versionBootloader: string;
  versionBaseband?: string;
  maxDownloadSize: number;
  mode: DeviceMode;
  adbAuthorized: string[];
  adbAuthRequired: boolean;
  partitions: Record<string, PartitionInfo>;
  superPartition?: { name: 'super'; size: number };
  slotSuccessful?: Record<Slot, boolean>;
  slotUnbootable?: Record<Slot, boolean>;
  snapshotUpdateStatus: SnapshotUpdateStatus;
  faults?: SimFaults;
  /** How the bootloader (not fastbootd) formats its answers; absent: as fastbootd does. */
  bootloaderStyle?: BootloaderStyle;
}

/**
 * Answer formats seen on real bootloaders, so clients are tested against each: Pixel/Qualcomm
 * ABL and LK bootloaders say current-slot "_a", max-download-size in decimal, partition-size in
 * hex without "0x", `getvar all` lines as "name: value", and FAIL has-slot for unknown partitions.
 */
export interface BootloaderStyle {
  /** "underscore": current-slot "_a" (ABL); "letter": "a" (fastbootd). */
  slot?: 'letter' | 'underscore';
  /** "decimal": max-download-size "268435456"; "hex": "0x10000000". */
  downloadSize?: 'hex' | 'decimal';
  /** "bare-hex": partition-size "4000000" (implicit hex, LK); "hex": "0x4000000". */
  partitionSize?: 'hex' | 'bare-hex';
  /** "colon-space": `getvar all` INFO "partition-size:boot_a: 0x…" (LK/ABL); "colon": fastbootd's. */
  getvarAll?: 'colon' | 'colon-space';
}

export interface SimProfile {
  serial: string;
  product: string;
  ab: boolean;
  partitions: Array<{ name: string; size: number; logical: boolean; slotted: boolean }>;
  superSize?: number;
  maxDownloadSize?: number;
  versionBootloader?: string;
  versionBaseband?: string;
  variant?: string;
  unlocked?: boolean;
  adbAuthRequired?: boolean;
}

const MiB = 1024 * 1024;

/** A small A/B tablet with dynamic partitions, enough for the sample build and tests. */
export function defaultSimProfile(overrides: Partial<SimProfile> = {}): SimProfile {
  return {
    serial: 'OMIESIM0001',
    product: 'omie_tablet',
    ab: true,
    partitions: [
      { name: 'boot', size: 16 * MiB, logical: false, slotted: true },
      { name: 'init_boot', size: 8 * MiB, logical: false, slotted: true },
      { name: 'vendor_boot', size: 16 * MiB, logical: false, slotted: true },
      { name: 'dtbo', size: 4 * MiB, logical: false, slotted: true },
      { name: 'vbmeta', size: 64 * 1024, logical: false, slotted: true },
      { name: 'vbmeta_system', size: 64 * 1024, logical: false, slotted: true },
      { name: 'misc', size: 1 * MiB, logical: false, slotted: false },
      { name: 'metadata', size: 16 * MiB, logical: false, slotted: false },
      { name: 'userdata', size: 256 * MiB, logical: false, slotted: false },
      { name: 'system', size: 64 * MiB, logical: true, slotted: true },
      { name: 'system_ext', size: 16 * MiB, logical: true, slotted: true },
      { name: 'product', size: 16 * MiB, logical: true, slotted: true },
      { name: 'vendor', size: 32 * MiB, logical: true, slotted: true },
    ],
    superSize: 2048 * MiB,
    maxDownloadSize: 256 * MiB,
    versionBootloader: 'omie-bl-1.0',
    ...overrides,
  };
}

export class SimState {
  readonly dir: string;
  private cur: DeviceJson;
  /** Serialises update() calls within this instance. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, info: DeviceJson) {
    this.dir = dir;
    this.cur = info;
  }

  /** Creates DIR (or re-initialises it) for `profile`: device.json plus zero-filled partition files. */
  static async create(dir: string, profile: SimProfile): Promise<SimState> {
    const abs = resolve(dir);
    await mkdir(join(abs, 'partitions'), { recursive: true });
    const partitions: Record<string, PartitionInfo> = {};
    for (const p of profile.partitions) {
      if (p.logical && profile.ab && p.slotted) {
        // As in super's metadata: one entry per slot, so each slot has its own size.
        for (const s of ['a', 'b'])
          partitions[`${p.name}_${s}`] = { size: p.size, logical: true, slotted: false };
      } else partitions[p.name] = { size: p.size, logical: p.logical, slotted: profile.ab && p.slotted };
    }
    const info: DeviceJson = {
      serial: profile.serial,
      product: profile.product,
      ...(profile.variant ? { variant: profile.variant } : {}),
      slotCount: profile.ab ? 2 : 0,
      currentSlot: profile.ab ? 'a' : null,
      unlocked: profile.unlocked ?? true,
      secure: true,
      versionBootloader: profile.versionBootloader ?? 'omie-bl-1.0',
      ...(profile.versionBaseband ? { versionBaseband: profile.versionBaseband } : {}),
      maxDownloadSize: profile.maxDownloadSize ?? 256 * MiB,
      mode: 'adb',
      adbAuthorized: [],
      adbAuthRequired: profile.adbAuthRequired ?? false,
      partitions,
      ...(profile.superSize ? { superPartition: { name: 'super' as const, size: profile.superSize } } : {}),
      ...(profile.ab
        ? { slotSuccessful: { a: true, b: false }, slotUnbootable: { a: false, b: false } }
        : {}),
      snapshotUpdateStatus: 'none',
    };
    const st = new SimState(abs, info);
    await st.writeJson(info);
    for (const name of Object.keys(partitions)) {
      for (const slot of st.slotsOf(name)) await st.ensurePartitionFile(name, slot);
    }
    return st;
  }

  /** Opens an existing state directory. */
  static async open(dir: string): Promise<SimState> {
    const abs = resolve(dir);
    const info = await SimState.readJson(abs);
    return new SimState(abs, info);
  }

  /** True when DIR holds a device.json. */
  static exists(dir: string): boolean {
    return existsSync(join(resolve(dir), 'device.json'));
  }

  /** The last read/written device.json (call reload() to see other instances' writes). */
  get info(): DeviceJson {
    return this.cur;
  }

  /** Re-reads device.json from disk. */
  async reload(): Promise<DeviceJson> {
    this.cur = await SimState.readJson(this.dir);
    return this.cur;
  }

  /** Re-reads device.json, applies `mut` to it, and writes it back atomically. */
  update(mut: (d: DeviceJson) => void): Promise<void> {
    const run = this.chain.then(async () => {
      const d = await SimState.readJson(this.dir);
      mut(d);
      await this.writeJson(d);
      this.cur = d;
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Path of a partition's image. `slot` is required for slotted partitions on A/B devices. */
  partitionPath(name: string, slot?: Slot | null): string {
    const p = this.cur.partitions[name];
    // Logical partitions are keyed by their full name in super ("system_a"): accept ("system", "a").
    if (!p && slot && this.cur.partitions[`${name}_${slot}`])
      return join(this.dir, 'partitions', `${name}_${slot}.img`);
    if (p?.slotted) {
      if (!slot)
        throw new InputError(`partition ${name} is slotted: a slot is needed`, { context: { name } });
      return join(this.dir, 'partitions', `${name}_${slot}.img`);
    }
    return join(this.dir, 'partitions', `${name}.img`);
  }

  /** Slots a partition exists in: [a, b] for slotted ones, [null] otherwise. */
  slotsOf(name: string): Array<Slot | null> {
    return this.cur.partitions[name]?.slotted ? ['a', 'b'] : [null];
  }

  /** The slot that is not current (A/B devices only). */
  get otherSlot(): Slot | null {
    const c = this.cur.currentSlot;
    return c === 'a' ? 'b' : c === 'b' ? 'a' : null;
  }

  /**
   * Resolves a fastboot-style partition name: "boot_b" → {boot, b}; "boot" on an A/B device →
   * {boot, currentSlot}; "userdata" → {userdata, null}. Undefined when no such partition exists.
   */
  resolvePartition(arg: string): { name: string; slot: Slot | null } | undefined {
    const parts = this.cur.partitions;
    if (parts[arg]) return { name: arg, slot: parts[arg].slotted ? this.cur.currentSlot : null };
    const cur = this.cur.currentSlot;
    if (cur && parts[`${arg}_${cur}`]?.logical) return { name: `${arg}_${cur}`, slot: null };
    const m = /^(.+)_(a|b)$/.exec(arg);
    if (m && parts[m[1]]?.slotted) return { name: m[1], slot: m[2] as Slot };
    return undefined;
  }

  /** Space used in super by logical partitions (both slots). */
  superUsed(): number {
    let used = 0;
    for (const [name, p] of Object.entries(this.cur.partitions)) {
      if (p.logical) used += p.size * this.slotsOf(name).length;
    }
    return used;
  }

  /**
   * Atomically replaces a partition's image with the file at `src` (renamed, so `src` must be on
   * the same filesystem, e.g. from tempPath()). The file is padded to the partition's size.
   */
  async commitPartition(name: string, slot: Slot | null, src: string): Promise<void> {
    const p = this.cur.partitions[name];
    if (!p) throw new InputError(`no such partition ${name}`, { context: { name } });
    await truncate(src, p.size);
    await rename(src, this.partitionPath(name, slot));
  }

  /** A fresh temporary path next to the partition images (same filesystem, so rename is atomic). */
  tempPath(tag = 'tmp'): string {
    return join(this.dir, 'partitions', `.${tag}-${process.pid}-${randomBytes(6).toString('hex')}.part`);
  }

  /** Makes sure the partition's file exists with exactly its recorded size (zero-filled if new). */
  async ensurePartitionFile(name: string, slot: Slot | null): Promise<void> {
    const p = this.cur.partitions[name];
    if (!p) throw new InputError(`no such partition ${name}`, { context: { name } });
    const path = this.partitionPath(name, slot);
    const fh = await open(path, existsSync(path) ? 'r+' : 'w+');
    try {
      await fh.truncate(p.size);
    } finally {
      await fh.close();
    }
  }

  /** Removes a partition's image files (delete-logical-partition). */
  async removePartitionFiles(name: string): Promise<void> {
    for (const slot of this.slotsOf(name)) await rm(this.partitionPath(name, slot), { force: true });
  }

  private static async readJson(dir: string): Promise<DeviceJson> {
    const file = join(dir, 'device.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new InputError(`no virtual device state in ${dir}`, {
        code: 'SIM_STATE_MISSING',
        context: { file },
        hint: 'create one with `omie sim --state DIR` (it initialises an empty state directory)',
        cause: e,
      });
    }
    try {
      return JSON.parse(text) as DeviceJson;
    } catch (e) {
      throw new InputError(`device.json is not valid JSON`, {
        code: 'SIM_STATE_INVALID',
        context: { file },
        cause: e,
      });
    }
  }

  private async writeJson(d: DeviceJson): Promise<void> {
    const file = join(this.dir, 'device.json');
    const tmp = join(this.dir, `.device.json.${process.pid}.${randomBytes(4).toString('hex')}`);
    await writeFile(tmp, `${JSON.stringify(d, null, 2)}\n`);
    await rename(tmp, file);
  }
}
