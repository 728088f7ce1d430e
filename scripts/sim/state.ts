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
 *   Also `superPartition` when the device uses dynamic partitions (with the layout fastbootd
 *   enforces: groups, metadata size and slots, alignment), per-slot `slotSuccessful` /
 *   `slotUnbootable` / `slotRetryCount` (the A/B boot control), `snapshotUpdateStatus`, `avb` (the
 *   bootloader's verified boot state: its OEM key and stored rollback indexes), `boot` (what the
 *   last boot verified and booted), `ownerEnablesAdb`, and optional `faults` for the fastboot server.
 * - `DIR/avb/oem_key.avbpubkey` — the AVB public key the bootloader trusts (green), and
 *   `DIR/avb/oem_key.pem` when the sim holds its private half (it signs the factory vbmeta).
 * - `DIR/settings.json` — `settings put` values; a wipe resets it to a device not yet set up, with
 *   USB debugging off.
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
import { resetSettingsAfterWipe } from './settings.ts';
import { provisionAvb } from './verified-boot.ts';

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

/** The bootloader's AVB state (what a real one keeps in fuses and RPMB). */
export interface AvbBootloaderState {
  /** SHA-256 of the OEM key's AVB public key blob (DIR/avb/oem_key.avbpubkey). */
  oemKeySha256: string;
  /** Stored rollback indexes by location, as decimal strings; an absent location holds 0. */
  rollbackIndexes?: Record<string, string>;
}

export type VerifiedBootState = 'green' | 'yellow' | 'orange';

/** What the last boot did: the slot it booted and how it verified, and the slots that failed first. */
export interface BootRecord {
  /** False when no slot could boot: the device stayed in the bootloader. */
  booted: boolean;
  slot: Slot | null;
  verifiedBootState?: VerifiedBootState;
  /** androidboot.vbmeta.digest (sha256 over every vbmeta struct) and .size. */
  vbmetaDigest?: string;
  vbmetaSize?: number;
  /** androidboot.vbmeta.public_key_digest: SHA-256 of the top-level vbmeta's AVB public key. */
  publicKeyDigest?: string;
  /**
   * androidboot.veritymode as libavb's avb_append_options sets it from the top-level vbmeta's
   * flags: disabled with HASHTREE_DISABLED, else enforcing (restart_on_corruption, Android's
   * default error mode); absent with VERIFICATION_DISABLED (libavb then appends no options).
   */
  verityMode?: 'enforcing' | 'disabled';
  /** Slots that did not verify on the way (red), with libavb's result and the first problem. */
  failures: Array<{ slot: Slot | null; result: string; message: string }>;
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
  /** `flashing unlock_critical` was given: the bootloader's own partitions may be flashed too. */
  criticalUnlocked?: boolean;
  secure: boolean;
  versionBootloader: string;
  versionBaseband?: string;
  maxDownloadSize: number;
  mode: DeviceMode;
  adbAuthorized: string[];
  adbAuthRequired: boolean;
  partitions: Record<string, PartitionInfo>;
  superPartition?: SuperInfo;
  slotSuccessful?: Record<Slot, boolean>;
  slotUnbootable?: Record<Slot, boolean>;
  /** Boot attempts left for a slot that has not booted successfully (boot_control tries_remaining). */
  slotRetryCount?: Record<Slot, number>;
  snapshotUpdateStatus: SnapshotUpdateStatus;
  avb?: AvbBootloaderState;
  boot?: BootRecord;
  /** The owner (or lab) turns USB debugging back on after a wipe, once the device is set up again. */
  ownerEnablesAdb?: boolean;
  /** In sideload mode: reached with `adb reboot sideload-auto-reboot`, so Android boots after the install. */
  sideloadAutoReboot?: boolean;
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

/**
 * The super partition and the layout fastbootd enforces on it (liblp's MetadataBuilder): groups
 * with their maximum sizes, the metadata area (slots × max size, primary and backup) and the
 * alignment of partition extents. Partitions in no group live in the unlimited "default" group.
 */
export interface SuperInfo {
  name: 'super';
  size: number;
  /** Bytes reserved for one copy of the metadata (lpmake --metadata-size). Default 65536. */
  metadataMaxSize?: number;
  /** Metadata slots (2 for A/B, 3 for virtual A/B). Default 2 on A/B devices. */
  metadataSlots?: number;
  /** Extent alignment (block device alignment). Default 1 MiB. */
  alignment?: number;
  /** Group name → maximum size in bytes (0: unlimited). */
  groups?: Record<string, number>;
  /** Logical partition name → its group ("default" when absent). */
  partitionGroups?: Record<string, string>;
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
  /** The super layout beyond its size (groups, metadata, alignment), from a device profile. */
  superLayout?: Omit<SuperInfo, 'name' | 'size'>;
  /** Verified boot: the OEM key the bootloader trusts and whether it can enroll a custom key. */
  avb?: SimAvbProfile;
  ownerEnablesAdb?: boolean;
}

export interface SimAvbProfile {
  /**
   * PEM file of the key the bootloader trusts (private: the factory vbmeta is signed with it;
   * public: the device ships without a bootable OS). Absent: the sim makes a key of its own.
   */
  oemKey?: string;
  /** An `avb_custom_key` partition the owner can enroll a key into (default true). */
  customKey?: boolean;
}

const MiB = 1024 * 1024;

/** The partition an owner enrolls a custom AVB key into (Pixel's avb_custom_key). */
export const AVB_CUSTOM_KEY = 'avb_custom_key';
/** boot_control's tries for a slot that was just made active (libavb_ab AVB_AB_MAX_TRIES_REMAINING). */
export const MAX_RETRIES = 7;

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
      // A device profile's super comes as its factory super_empty.img leaves it: the layout, with
      // every logical partition empty (their sizes there are maxima that need not fit together).
      const size = p.logical && profile.superLayout ? 0 : p.size;
      if (p.logical && profile.ab && p.slotted) {
        // As in super's metadata: one entry per slot, so each slot has its own size.
        for (const s of ['a', 'b']) partitions[`${p.name}_${s}`] = { size, logical: true, slotted: false };
      } else if (p.logical) partitions[p.name] = { size, logical: true, slotted: false };
      else partitions[p.name] = { size: p.size, logical: p.logical, slotted: profile.ab && p.slotted };
    }
    // Pixel-style bootloaders let the owner enroll their own AVB key here (yellow boot state).
    if (profile.avb?.customKey === false) delete partitions[AVB_CUSTOM_KEY];
    else partitions[AVB_CUSTOM_KEY] ??= { size: 4096, logical: false, slotted: false };
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
      ...(profile.superSize
        ? { superPartition: { name: 'super' as const, size: profile.superSize, ...profile.superLayout } }
        : {}),
      ...(profile.ab
        ? {
            slotSuccessful: { a: true, b: false },
            slotUnbootable: { a: false, b: false },
            slotRetryCount: { a: MAX_RETRIES, b: MAX_RETRIES },
          }
        : {}),
      snapshotUpdateStatus: 'none',
      ...(profile.ownerEnablesAdb ? { ownerEnablesAdb: true } : {}),
    };
    const st = new SimState(abs, info);
    await st.writeJson(info);
    for (const name of Object.keys(partitions)) {
      for (const slot of st.slotsOf(name)) await st.ensurePartitionFile(name, slot);
    }
    await provisionAvb(st, profile.avb);
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

  /**
   * What erasing or formatting userdata does to a device (and locking or unlocking, which wipe):
   * /data is gone with everything on it — installed apps, pushed files, the adb keys the owner
   * allowed — and the settings are those of a device not yet set up, with USB debugging off (a
   * user build turns it on only when the owner does, after setup).
   */
  async wipeData(): Promise<void> {
    await rm(join(this.dir, 'data'), { recursive: true, force: true });
    await rm(join(this.dir, 'adb_keys'), { force: true });
    await resetSettingsAfterWipe(this.dir);
    await this.update((d) => {
      d.adbAuthorized = [];
    });
  }

  /** Zero-fills a partition (fastboot erase), atomically. */
  async erasePartition(name: string, slot: Slot | null): Promise<void> {
    const tmp = this.tempPath('erase');
    await (await open(tmp, 'w')).close();
    await this.commitPartition(name, slot, tmp);
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
