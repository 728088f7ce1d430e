/**
 * Safe flashing of a build (a `fastboot update`-style directory or zip — android-info.txt plus
 * <partition>.img files, optional super_empty.img — or a Pixel-style factory zip) onto devices.
 *
 * Order of operations, per device:
 *  1. reach fastboot (reboot from adb when needed) and check identity: product must satisfy
 *     android-info's `require board=`/`require product=`, the bootloader version its
 *     `require version-bootloader=`, and the bootloader must be unlocked — all before any write;
 *  2. flash physical partitions to the target (by default the INACTIVE) slot;
 *  3. reboot to fastbootd for logical partitions: update-super with super_empty.img (merge, never
 *     wipe: the active slot's partitions stay), create/resize, flash;
 *  4. verify every write: partition-size, and a byte-for-byte read-back with `fetch:` where the
 *     device supports it;
 *  0. before any device is touched, the build is verified against its own vbmeta (signature,
 *     chained vbmeta, every hash and hashtree descriptor): a tampered build is refused;
 *  1b. with --lock, a build not signed by the device's OEM key needs the owner's key enrolled in
 *     avb_custom_key (erased, flashed, read back) first; a device without one is refused here;
 *  5. only then set_active to the target slot; optional wipe (as `fastboot -w`: erase and format
 *     userdata, cache and metadata where the device has them) and lock;
 *  6. reboot and wait for adb — unless the flash wiped the device: a user build then has USB
 *     debugging off until its owner turns it on after setup (`ownerEnablesAdb` waits for that).
 * A dropped connection is retried at the partition level (reconnect, re-send that partition);
 * since only the inactive slot is written before set_active, the device always keeps a bootable
 * slot, and a re-run completes an interrupted flash.
 */
import { copyFile, mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { asOmieError, EnvironmentError, InputError, OmieError, VerificationError } from '../errors.ts';
import { FOOTER_SIZE, hasFooterMagic } from '../formats/avb/footer.ts';
import { verifyImageSet } from '../formats/avb/image-set.ts';
import { avbPublicKeySha256 } from '../formats/avb/keys.ts';
import { type AndroidInfo, openFactoryZip, parseAndroidInfo } from '../formats/factory-zip.ts';
import { rawToSparse } from '../formats/sparse.ts';
import { readSuper } from '../formats/super/index.ts';
import { runTool } from '../host/tools.ts';
import type { ProgressFn } from '../progress.ts';
import { FastbootClient } from './fastboot/client.ts';
import { FastbootFailError, TransportError } from './fastboot/protocol.ts';
import { type BackedBlock, importLayout, ReadWindow } from './fastboot/sparse.ts';
import { parseUintVar, parseYesNoVar } from './fastboot/vars.ts';

// ---- build input ------------------------------------------------------------------------------

export interface BuildInput {
  /** Where the images are (the directory, or a temp dir the zip was extracted to). */
  dir: string;
  info: AndroidInfo;
  /** partition name → image path (super_empty.img excluded). */
  images: Map<string, string>;
  superEmpty?: string;
  /** avb_pkmd.bin beside the images (`omie build` writes it), when present. */
  pkmd?: string;
  close(): Promise<void>;
}

/** Opens a build output directory, a fastboot zip, or a factory zip (nested image-*.zip). */
export async function openBuild(path: string): Promise<BuildInput> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new InputError(`no such build: ${path}`, { code: 'FLASH_INPUT' });
  let dir = path;
  let cleanup = async () => {};
  if (st.isFile()) {
    dir = await mkdtemp(join(tmpdir(), 'omie-flash-'));
    cleanup = () => rm(dir, { recursive: true, force: true });
    try {
      // Fastboot zips and Pixel-style factory zips (nested image-*.zip, inflated once) alike.
      const z = await openFactoryZip(path, { tmpDir: dir });
      try {
        if (!z.info.androidInfo)
          throw new InputError(`${path} has no android-info.txt`, { code: 'FLASH_INPUT' });
        await writeFile(join(dir, 'android-info.txt'), formatRequirements(z.info.androidInfo));
        for (const img of z.info.images) await z.extract(img.entry, join(dir, `${img.partition}.img`));
      } finally {
        await z.close();
      }
    } catch (e) {
      await cleanup();
      throw e;
    }
  }
  const infoPath = join(dir, 'android-info.txt');
  const text = await readFile(infoPath, 'utf8').catch(() => undefined);
  if (text === undefined) {
    await cleanup();
    throw new InputError(`${path} has no android-info.txt`, {
      code: 'FLASH_INPUT',
      hint: 'a flashable build holds android-info.txt (require board=…) next to its images',
    });
  }
  let info: AndroidInfo;
  try {
    info = parseAndroidInfo(text, infoPath);
    if (!info.boards.length)
      throw new InputError(`${infoPath} has no "require board=" (or product=) line`, {
        code: 'ANDROID_INFO',
        hint: 'without it nothing stops this build from being flashed onto another device',
      });
  } catch (e) {
    await cleanup();
    throw e;
  }
  const images = new Map<string, string>();
  let superEmpty: string | undefined;
  for (const f of (await readdir(dir)).sort()) {
    if (!f.endsWith('.img')) continue;
    if (f === 'super_empty.img') superEmpty = join(dir, f);
    else if (f !== 'super.img') images.set(f.slice(0, -4), join(dir, f));
  }
  if (images.size === 0) {
    await cleanup();
    throw new InputError(`${path} has no partition images (*.img)`, { code: 'FLASH_INPUT' });
  }
  const pkmdPath = join(dir, 'avb_pkmd.bin');
  const pkmd = (await stat(pkmdPath).catch(() => undefined)) ? pkmdPath : undefined;
  return { dir, info, images, superEmpty, pkmd, close: cleanup };
}

/** Re-serialises parsed requirements (zip input: android-info.txt is re-read from the temp dir). */
function formatRequirements(info: AndroidInfo): string {
  return `${info.requirements
    .map((r) => {
      const head = r.forProduct ? `require-for-product:${r.forProduct}` : r.reject ? 'reject' : 'require';
      return `${head} ${r.name}=${r.values.join('|')}`;
    })
    .join('\n')}\n`;
}

// ---- verification -----------------------------------------------------------------------------

export interface BuildVerification {
  /** androidboot.vbmeta.digest the device will report once it boots this build. */
  vbmetaDigest: string;
  /** The AVB public key vbmeta.img is signed with (avbtool extract_public_key's bytes). */
  publicKey: Buffer;
  publicKeySha256: string;
}

const verified = new WeakMap<BuildInput, Promise<BuildVerification | undefined>>();

/**
 * Verifies a build against its own vbmeta.img before anything is written: the signature, chained
 * vbmeta images, every hash and hashtree descriptor against the build's images (as the device's
 * bootloader and dm-verity will). A build without vbmeta.img has nothing to verify (undefined).
 * Throws a VerificationError (exit 1) naming the first problem. Done once per build.
 */
export function verifyBuild(
  build: BuildInput,
  onProgress?: ProgressFn,
): Promise<BuildVerification | undefined> {
  let job = verified.get(build);
  if (!job) {
    job = verifyBuildOnce(build, onProgress);
    verified.set(build, job);
  }
  return job;
}

async function verifyBuildOnce(
  build: BuildInput,
  onProgress?: ProgressFn,
): Promise<BuildVerification | undefined> {
  if (!build.images.has('vbmeta')) return undefined;
  const r = await verifyImageSet({ partition: (name) => build.images.get(name), onProgress });
  const first = r.problems[0];
  if (first || !r.vbmetaDigest || !r.publicKey) {
    const { message, context, ...where } = first ?? { message: 'no vbmeta' };
    throw new VerificationError(
      'flash',
      `the build does not verify against its own vbmeta.img (${r.result}): ${message}`,
      {
        code: 'FLASH_BUILD_UNVERIFIED',
        context: { build: build.dir, ...where, ...context, result: r.result },
        hint: 'a tampered or damaged build: nothing was written; rebuild it or fetch it again',
      },
    );
  }
  return {
    vbmetaDigest: r.vbmetaDigest,
    publicKey: r.publicKey,
    publicKeySha256: avbPublicKeySha256(r.publicKey),
  };
}

// ---- plan -------------------------------------------------------------------------------------

/**
 * Images `fastboot update` flashes first, in this order, from the bootloader or fastbootd
 * (fastboot.cpp's image table, ImageType::BootCritical).
 */
const BOOT_CRITICAL = [
  'boot',
  'init_boot',
  'dtbo',
  'dts',
  'pvmfw',
  'recovery',
  'vbmeta',
  'vbmeta_system',
  'vbmeta_vendor',
  'vendor_boot',
  'vendor_kernel_boot',
];
/** Images `fastboot update` never flashes (ImageType::Extra): userdata comes from --wipe. */
const EXTRA = new Set(['cache', 'userdata', 'super']);
/** Firmware a Pixel flash-all.sh writes before `update`, each followed by reboot-bootloader. */
const FIRMWARE = ['bootloader', 'radio'];

/** Splits a build's images into firmware, boot-critical (table order), OS images and skipped ones. */
export function classifyImages(images: Map<string, string>): {
  firmware: string[];
  bootCritical: string[];
  os: string[];
  skipped: string[];
} {
  const names = [...images.keys()];
  return {
    firmware: FIRMWARE.filter((n) => images.has(n)),
    bootCritical: BOOT_CRITICAL.filter((n) => images.has(n)),
    os: names.filter((n) => !FIRMWARE.includes(n) && !BOOT_CRITICAL.includes(n) && !EXTRA.has(n)).sort(),
    skipped: names.filter((n) => EXTRA.has(n)).sort(),
  };
}

/** fastboot's ParseRequirementLine aliases: board → product, bootloader/baseband → version-*. */
function requirementVariable(name: string): string {
  if (name === 'board') return 'product';
  if (name === 'bootloader') return 'version-bootloader';
  if (name === 'baseband') return 'version-baseband';
  return name;
}

/** Partitions only the bootloader can write (fastbootd refuses them). */
const BOOTLOADER_ONLY = new Set(['bootloader', 'radio', 'modem', 'abl', 'xbl', 'tz']);
/** Names that are logical on dynamic-partition devices when neither super_empty nor the device says. */
const USUALLY_LOGICAL = new Set([
  'system',
  'system_ext',
  'product',
  'vendor',
  'odm',
  'vendor_dlkm',
  'odm_dlkm',
  'system_dlkm',
]);

export interface FlashTarget {
  /** Fastboot address: "tcp:host:port" or a USB serial. */
  fastboot: string;
  /** adb serial or "host:port", used to reboot to the bootloader when the device runs Android. */
  adb?: string;
  /**
   * The device's serial number (getvar serialno / ro.serialno) the two addresses were paired by:
   * the device must answer it before anything is written.
   */
  serial?: string;
  /** Label for progress and reports (default: the fastboot address). */
  label?: string;
}

export interface FlashOptions {
  /** "inactive" (default), or a fixed slot. */
  slot?: 'inactive' | 'a' | 'b';
  wipe?: boolean;
  lock?: boolean;
  /** Set AVB_VBMETA_IMAGE_FLAGS_HASHTREE_DISABLED in vbmeta images as they are flashed. */
  disableVerity?: boolean;
  /** Set AVB_VBMETA_IMAGE_FLAGS_VERIFICATION_DISABLED in vbmeta images as they are flashed. */
  disableVerification?: boolean;
  dryRun?: boolean;
  /** Transfer retries per partition after a dropped connection (default 3). */
  retries?: number;
  /** How long to wait for the device to come back after a reboot (ms, default 60 s). */
  rebootTimeoutMs?: number;
  /** Skip waiting for adb after the final reboot. */
  noWaitAdb?: boolean;
  onProgress?: ProgressFn;
  /** Human log lines ("flash boot_b (ok)"). */
  log?: (line: string) => void;
  /** Runs after the device is back in Android (e.g. `omie check --device`). */
  afterFlash?: (serial: string) => Promise<void>;
  /**
   * The AVB public key (blob) the device's bootloader trusts, when known: a build signed with it
   * boots green locked, and --lock needs no custom key. Unknown: --lock enrolls the build's key.
   */
  avbOemKey?: Buffer;
  /**
   * After a wipe (--wipe, or the one --lock does) the owner (or lab) sets the device up and turns
   * USB debugging back on: wait for adb then (and run afterFlash). Without it a wiped device is
   * not waited for, and afterFlash cannot run.
   */
  ownerEnablesAdb?: boolean;
  /** Devices flashed at once (default: all). */
  jobs?: number;
}

export interface FlashStep {
  /** The equivalent fastboot/adb command line, e.g. "fastboot flash boot_b boot.img". */
  command: string;
  why?: string;
}

export interface FlashReport {
  target: string;
  /** The device's serial number (getvar serialno). */
  serial?: string;
  adb?: string;
  product?: string;
  slot: string | null;
  previousSlot: string | null;
  steps: FlashStep[];
  flashed: Array<{
    partition: string;
    bytes: number;
    verified: 'read-back' | 'size';
    /** A partition without slots: both slots use it. */
    shared?: boolean;
  }>;
  /** What the build's vbmeta says and what --lock needed. */
  avb?: {
    vbmetaDigest: string;
    publicKeySha256: string;
    customKey?: 'enrolled' | 'not-needed';
  };
  /** User data was wiped (--wipe, or locking). */
  wiped: boolean;
  locked: boolean;
  /** After the final reboot: adb back, off after a wipe, or not waited for. */
  adbAfter?: 'back' | 'off-after-wipe' | 'not-waited';
  dryRun: boolean;
}

/** One device's outcome: its report (as far as it got) and, when it failed, why. */
export interface FlashOutcome {
  target: FlashTarget;
  report: FlashReport;
  error?: OmieError;
}

const AVB_CUSTOM_KEY = 'avb_custom_key';
const other = (s: 'a' | 'b'): 'a' | 'b' => (s === 'a' ? 'b' : 'a');

/** Sleeps. */
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The adb layer, imported lazily: TCP/USB fastboot-only flashing never needs an adb server. */
async function adbHost() {
  const { AdbHost } = await import('./adb.ts');
  return new AdbHost();
}

/** For "host:port" serials (network adb, the virtual device) make sure the adb server is connected. */
async function adbConnect(host: Awaited<ReturnType<typeof adbHost>>, serial: string): Promise<void> {
  const m = /^(.+):(\d+)$/.exec(serial);
  if (m) await host.connect(m[1], Number(m[2])).catch(() => {});
}

export async function rebootFromAdb(adb: string, target: 'bootloader'): Promise<void> {
  const host = await adbHost();
  await adbConnect(host, adb);
  const state = await host.state(adb);
  if (state === 'unauthorized')
    throw new EnvironmentError(`${adb}: adb is not authorised on the device`, {
      code: 'FLASH_ADB_UNAUTHORIZED',
      hint: 'accept the RSA key prompt on the device (or reboot it to the bootloader by hand); nothing was written',
    });
  await host.rebootTo(adb, target);
}

async function waitForAdb(adb: string, timeoutMs: number): Promise<void> {
  await (await adbHost()).waitForStates(adb, ['device'], timeoutMs);
}

/**
 * Flashes one build onto several devices, at most `jobs` at once; every device gets its outcome
 * (report, and error when it failed), whatever happens to the others. The build is verified once,
 * before any device is touched: when it does not verify, that error is thrown and nothing is written.
 */
export async function flashAll(
  build: BuildInput,
  targets: FlashTarget[],
  opts: FlashOptions = {},
): Promise<FlashOutcome[]> {
  await verifyBuild(build, opts.onProgress);
  const outcomes: FlashOutcome[] = new Array(targets.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < targets.length; i = next++) {
      const session = new FlashSession(build, targets[i], opts);
      try {
        outcomes[i] = { target: targets[i], report: await session.run() };
      } catch (e) {
        outcomes[i] = { target: targets[i], report: session.partialReport(), error: asOmieError(e) };
      }
    }
  };
  const jobs = Math.max(1, Math.min(opts.jobs ?? targets.length, targets.length));
  await Promise.all(Array.from({ length: jobs }, worker));
  return outcomes;
}

/** flashAll, throwing when any device failed (one device: its own error). */
export async function flashDevices(
  build: BuildInput,
  targets: FlashTarget[],
  opts: FlashOptions = {},
): Promise<FlashReport[]> {
  const outcomes = await flashAll(build, targets, opts);
  const failed = outcomes.filter((o) => o.error);
  if (failed.length && targets.length === 1) throw failed[0].error;
  if (failed.length) {
    const errs = failed.map((o) => `${o.target.label ?? o.target.fastboot}: ${o.error?.message}`);
    throw new OmieError(`flash failed on ${failed.length} of ${targets.length} devices`, {
      code: failed[0].error?.code ?? 'FLASH_FAILED',
      exitCode: failed[0].error?.exitCode ?? 3,
      context: { errors: errs },
    });
  }
  return outcomes.map((o) => o.report);
}

/** Flashes `build` onto one device. */
export async function flashDevice(
  build: BuildInput,
  target: FlashTarget,
  opts: FlashOptions = {},
): Promise<FlashReport> {
  await verifyBuild(build, opts.onProgress);
  return new FlashSession(build, target, opts).run();
}

class FlashSession {
  private client?: FastbootClient;
  private readonly report: FlashReport;
  private readonly label: string;
  private readonly retries: number;
  private readonly rebootTimeout: number;

  constructor(
    private readonly build: BuildInput,
    private readonly target: FlashTarget,
    private readonly opts: FlashOptions,
  ) {
    this.label = target.label ?? target.fastboot;
    this.retries = opts.retries ?? 3;
    this.rebootTimeout = opts.rebootTimeoutMs ?? 60_000;
    this.report = {
      target: this.label,
      ...(target.adb ? { adb: target.adb } : {}),
      slot: null,
      previousSlot: null,
      steps: [],
      flashed: [],
      wiped: false,
      locked: false,
      dryRun: !!opts.dryRun,
    };
  }

  /** The report as far as the session got (for a device that failed). */
  partialReport(): FlashReport {
    return this.report;
  }

  private log(line: string) {
    this.opts.log?.(`${this.label}: ${line}`);
  }

  private step(command: string, why?: string) {
    this.report.steps.push({ command: `fastboot -s ${this.target.fastboot} ${command}`, why });
  }

  /** Connects, retrying until the device answers (it may be rebooting). */
  private async connect(timeoutMs = this.rebootTimeout): Promise<FastbootClient> {
    const until = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const c = await FastbootClient.open(this.target.fastboot, { connectTimeoutMs: 3000 });
        await c.getvar('product');
        this.client = c;
        return c;
      } catch (e) {
        last = e;
        // Only a link that is not there yet is worth waiting for; anything else is final.
        if (!(e instanceof TransportError)) throw e;
        if (Date.now() > until)
          throw new EnvironmentError(`${this.label}: no fastboot device answered within ${timeoutMs} ms`, {
            code: 'FLASH_NO_DEVICE',
            context: { target: this.target.fastboot, last: (last as Error)?.message },
            hint: 'is the device in the bootloader? pass --adb SERIAL so omie can reboot it there',
          });
        await delay(100);
      }
    }
  }

  private async reconnect(): Promise<FastbootClient> {
    await this.client?.close().catch(() => {});
    this.client = undefined;
    return this.connect();
  }

  private async rebootTo(t: 'bootloader' | 'fastboot'): Promise<FastbootClient> {
    const c = this.client ?? (await this.connect());
    this.step(t === 'fastboot' ? 'reboot fastboot' : 'reboot bootloader');
    if (this.opts.dryRun) return c;
    this.log(`rebooting to ${t === 'fastboot' ? 'fastbootd' : 'the bootloader'}`);
    await c.reboot(t);
    this.client = undefined;
    await delay(100);
    const next = await this.connect();
    const userspace = await next.isUserspace();
    if (userspace !== (t === 'fastboot'))
      throw new EnvironmentError(
        `${this.label}: asked for ${t}, device came back ${userspace ? 'in fastbootd' : 'in the bootloader'}`,
        {
          code: 'FLASH_MODE',
        },
      );
    return next;
  }

  async run(): Promise<FlashReport> {
    try {
      return await this.runInner();
    } finally {
      await this.client?.close().catch(() => {});
    }
  }

  private async reachFastboot(): Promise<FastbootClient> {
    try {
      return await this.connect(this.target.adb ? 3000 : Math.min(10_000, this.rebootTimeout));
    } catch (e) {
      if (!this.target.adb || e instanceof FastbootFailError) throw e;
    }
    this.report.steps.push({
      command: `adb -s ${this.target.adb} reboot bootloader`,
      why: 'device is running Android',
    });
    if (this.opts.dryRun)
      throw new EnvironmentError(`${this.label}: --dry-run needs the device in fastboot to plan against it`, {
        code: 'FLASH_DRY_RUN_ADB',
        hint: 'reboot it to the bootloader first (adb reboot bootloader)',
      });
    this.log('rebooting from Android to the bootloader');
    await rebootFromAdb(this.target.adb, 'bootloader');
    return this.connect();
  }

  /**
   * android-info.txt requirements as fastboot's CheckRequirements: `board` is `product`,
   * `bootloader`/`baseband` are the `version-` variables, `require-for-product:P` applies only to P,
   * a trailing `*` is a prefix match, a variable the device does not answer fails (even for
   * `reject`), and `partition-exists=P` needs the device to know P (has-slot answers yes/no) and
   * the build to carry P.img. `only` limits the check to some variables.
   */
  private async checkRequirements(c: FastbootClient, only?: (name: string) => boolean): Promise<void> {
    const product = await c.tryGetvar('product');
    this.report.product = product;
    for (const r of this.build.info.requirements) {
      const name = requirementVariable(r.name);
      if (only && !only(name)) continue;
      if (r.forProduct && r.forProduct !== product) continue;
      const values = r.values.filter(Boolean);
      const refuse = (message: string, context: Record<string, unknown>) =>
        new InputError(`${this.label}: ${message}`, {
          code: name === 'product' ? 'FLASH_WRONG_PRODUCT' : 'FLASH_REQUIREMENT',
          context: { variable: name, line: r.line, ...context },
          hint:
            name === 'product'
              ? 'this build is for another device: nothing was written'
              : 'nothing was written',
        });
      if (name === 'partition-exists') {
        this.step(`getvar has-slot:${values[0]}`, 'android-info.txt requires the partition');
        const hs = await c.tryGetvar(`has-slot:${values[0]}`);
        if (hs !== 'yes' && hs !== 'no')
          throw refuse(`device has no ${values[0]} partition, which this build requires`, {
            device: hs ?? '(no answer)',
          });
        if (!this.build.images.has(values[0]))
          throw refuse(`the device requires ${values[0]}.img, which this build lacks`, {
            partition: values[0],
          });
        continue;
      }
      this.step(
        `getvar ${name}`,
        name === 'product' ? 'identity check against android-info.txt' : 'android-info.txt requirement',
      );
      const have = await c.tryGetvar(name);
      if (have === undefined)
        throw refuse(`device does not answer getvar ${name}, which android-info.txt requires`, {
          device: undefined,
          required: values,
        });
      const match = values.some((v) => v === have || (v.endsWith('*') && have.startsWith(v.slice(0, -1))));
      if (match === r.reject)
        throw refuse(
          `device ${name} is ${JSON.stringify(have)}, build ${r.reject ? 'rejects' : 'requires'} ${values.join(' or ')}`,
          { device: have, required: values, reject: r.reject },
        );
    }
  }

  private async runInner(): Promise<FlashReport> {
    const dry = !!this.opts.dryRun;
    let c = await this.reachFastboot();
    const images = classifyImages(this.build.images);

    // 1. identity before anything is written. With bootloader/radio images in the build (a Pixel
    //    factory zip), flash-all.sh checks version-bootloader/baseband only after flashing them and
    //    rebooting into the new bootloader: the product is still checked first.
    const deferVersions = images.firmware.length > 0;
    const isVersion = (n: string) => n === 'version-bootloader' || n === 'version-baseband';
    const serialno = await c.tryGetvar('serialno');
    this.report.serial = serialno;
    if (this.target.serial) {
      this.step('getvar serialno', `the device ${this.target.serial} was paired by its serial number`);
      if (serialno !== this.target.serial)
        throw new InputError(
          `${this.label}: this is device ${serialno ?? '(no serial)'}, not ${this.target.serial}`,
          {
            code: 'FLASH_WRONG_DEVICE',
            context: { expected: this.target.serial, found: serialno },
            hint: 'nothing was written: check which device is at that address',
          },
        );
    }
    await this.checkRequirements(c, deferVersions ? (n) => !isVersion(n) : undefined);
    const unlocked = await c.tryGetvar('unlocked');
    this.step('getvar unlocked', 'flashing needs an unlocked bootloader');
    if (parseYesNoVar(unlocked) === false)
      throw new EnvironmentError(
        `${this.label}: the bootloader is locked; flashing is refused by the device`,
        {
          code: 'FLASH_LOCKED',
          hint: 'unlock it first (fastboot flashing unlock — this wipes user data); nothing was written',
        },
      );

    // 1b. locking: the build must boot on this device locked (its OEM key, or the custom key
    //     enrolled now); a device that can take neither is refused before anything is written.
    const avb = await verifyBuild(this.build);
    if (avb) this.report.avb = { vbmetaDigest: avb.vbmetaDigest, publicKeySha256: avb.publicKeySha256 };
    const enroll = this.opts.lock ? await this.customKeyNeeded(c, avb) : false;

    // 2. slots.
    const slot = await this.chooseSlot(c);

    // 3. classify OS images: logical if super_empty lists them, or the device says so.
    const superNames = this.build.superEmpty ? await superEmptyNames(this.build.superEmpty) : undefined;
    const physical: string[] = [...images.bootCritical];
    const logical: string[] = [];
    // fastboot update's secondary image: system_other.img goes to the *other* slot's system.
    const secondary = images.os.includes('system_other') && slot ? other(slot) : undefined;
    if (images.os.includes('system_other') && !slot)
      this.log('system_other.img is for A/B devices: skipped (fastboot skips it too)');
    for (const name of images.os) {
      if (name === 'system_other') continue;
      const slotted = slot ? `${name}_${slot}` : name;
      let isLogical: boolean;
      if (superNames) isLogical = superNames.has(slotted) || superNames.has(name);
      else {
        const v = parseYesNoVar(await c.tryGetvar(`is-logical:${slotted}`));
        isLogical = v === undefined ? USUALLY_LOGICAL.has(name) : v;
      }
      (isLogical ? logical : physical).push(name);
    }
    for (const name of images.skipped)
      this.log(`${name}.img is not flashed by an update (fastboot skips it too)`);

    // 4. a virtual A/B update in flight: cancel it first, as fastboot's CancelSnapshotIfNeeded
    //    (fastbootd refuses to flash logical partitions of a snapshotted/merging update).
    c = await this.cancelSnapshotIfNeeded(c);

    if (enroll) await this.enrollCustomKey(enroll);

    // 5. firmware (bootloader, radio) then boot-critical and other physical images, from the
    //    bootloader. New firmware must run before its version is checked.
    if ((images.firmware.length || physical.some((p) => BOOTLOADER_ONLY.has(p))) && (await c.isUserspace()))
      c = await this.rebootTo('bootloader');
    for (const name of images.firmware) await this.flashOne(name, slot, false);
    let activated = false;
    if (deferVersions) {
      if (slot && slot !== this.report.previousSlot) {
        await this.activate(slot, 'boot the new firmware before checking its version');
        activated = true;
      }
      c = await this.rebootTo('bootloader');
      await this.checkRequirements(c, isVersion);
    }
    for (const name of physical) await this.flashOne(name, slot, false);

    // 6. logical partitions from fastbootd. As fastboot's FlashAllTool, the target slot becomes
    //    active first: fastbootd boots from it, and update-super (no wipe) keeps only the partitions
    //    of the *other* slot — with the old slot current, it would drop the running system.
    if (logical.length) {
      c = this.client ?? (await this.connect());
      if (slot && !activated && slot !== (await c.currentSlot())) {
        await this.activate(
          slot,
          'fastbootd runs from, and update-super keeps the other slot of, the active slot',
        );
        activated = true;
      }
      c = this.client ?? (await this.connect());
      if (!(await c.isUserspace()) || dry) c = await this.rebootTo('fastboot');
      c = await this.cancelSnapshotIfNeeded(c);
      if (this.build.superEmpty) {
        const superName = dry ? 'super' : ((await c.tryGetvar('super-partition-name')) ?? 'super');
        this.step(
          `update-super ${superName} ${basename(this.build.superEmpty)}`,
          'the partition table of this slot (no wipe: the other slot stays)',
        );
        if (!dry)
          await this.withRetry('update-super', (cl) =>
            cl.updateSuper(this.build.superEmpty as string, { superName }),
          );
      }
      // As FlashAllTool: every target logical partition back to 0 extents first, so that one
      // growing while another shrinks does not run out of space in super, and allocation is optimal.
      for (const name of logical) {
        const part = slot ? `${name}_${slot}` : name;
        if (!dry && !(await (this.client ?? (await this.connect())).isLogical(part))) continue;
        this.step(`resize-logical-partition ${part} 0`, 'free its extents before the images are written');
        if (!dry) await this.withRetry(`resize ${part}`, (cl) => cl.resizeLogicalPartition(part, 0));
      }
      for (const name of logical) await this.flashOne(name, slot, true);
    }
    if (secondary) {
      if (!this.client || !(await this.client.isUserspace()) || dry) await this.rebootTo('fastboot');
      await this.flashOne('system_other', secondary, true, 'system');
    }

    // 7. switch slot only after every write is verified (when fastbootd did not need it earlier).
    if (slot && !activated) await this.activate(slot, 'every write verified');
    if (this.opts.wipe) await this.wipe();
    if (this.opts.lock) {
      c = this.client ?? (await this.connect());
      if ((await c.isUserspace()) || dry) c = await this.rebootTo('bootloader');
      this.step('flashing lock', '--lock (locking wipes user data)');
      if (!dry) await c.flashingLock();
      this.report.locked = true;
      this.report.wiped = true;
    }
    this.step('reboot');
    if (!dry) {
      c = this.client ?? (await this.connect());
      await c.reboot('system');
      this.client = undefined;
      await this.afterReboot();
    }
    return this.report;
  }

  /**
   * Back in Android: wait for adb and run afterFlash. A wiped user build has USB debugging off
   * until its owner turns it on after setup: without `ownerEnablesAdb` there is nothing to wait
   * for, and a requested check cannot run — it says so at once.
   */
  private async afterReboot(): Promise<void> {
    const adb = this.target.adb;
    if (this.report.wiped && !this.opts.ownerEnablesAdb) {
      this.report.adbAfter = 'off-after-wipe';
      this.log('the device was wiped: USB debugging stays off until its owner turns it on after setup');
      if (this.opts.afterFlash)
        throw new EnvironmentError(
          `${this.label}: flashed, but cannot be checked: the flash wiped it (${this.opts.wipe ? '--wipe' : '--lock wipes'}), and a user build starts with USB debugging off until its owner sets it up and turns it on`,
          {
            code: 'FLASH_CHECK_ADB_OFF',
            context: { serial: this.report.serial, adb },
            hint: `once USB debugging is on again, run \`omie check --device ${adb ?? this.report.serial ?? 'SERIAL'}\`; or pass --owner-enables-adb when the owner (or lab) turns it on after the flash`,
          },
        );
      return;
    }
    if (!adb || this.opts.noWaitAdb) {
      this.report.adbAfter = 'not-waited';
      return;
    }
    this.log(
      this.report.wiped
        ? 'waiting for the owner to turn USB debugging on (adb)'
        : 'waiting for Android (adb)',
    );
    await waitForAdb(adb, this.rebootTimeout);
    this.report.adbAfter = 'back';
    if (this.opts.afterFlash) await this.opts.afterFlash(adb);
  }

  /**
   * With --lock: undefined when the build is signed by the device's OEM key (green), else the key
   * to enroll in avb_custom_key (yellow). Refuses, before anything is written, a build without
   * vbmeta and a device that cannot enroll a custom key.
   */
  private async customKeyNeeded(
    c: FastbootClient,
    avb: BuildVerification | undefined,
  ): Promise<Buffer | false> {
    if (!avb)
      throw new InputError(
        `${this.label}: --lock needs a build with vbmeta.img: locked, nothing else boots`,
        {
          code: 'FLASH_LOCK_UNVERIFIABLE',
          hint: 'nothing was written; flash without --lock, or flash a complete (signed) build',
        },
      );
    if (this.opts.avbOemKey?.equals(avb.publicKey)) {
      this.report.avb = { ...this.report.avb!, customKey: 'not-needed' };
      this.log("vbmeta is signed by the device's OEM key: it boots green locked");
      return false;
    }
    this.step(
      `getvar partition-type:${AVB_CUSTOM_KEY}`,
      'vbmeta is not signed by the device OEM key: a custom key is needed to lock',
    );
    if ((await c.tryGetvar(`partition-type:${AVB_CUSTOM_KEY}`)) === undefined)
      throw new EnvironmentError(
        `${this.label}: cannot lock: vbmeta is signed by a key the device's bootloader does not trust (sha256 ${avb.publicKeySha256}), and the device cannot enroll a custom key (no ${AVB_CUSTOM_KEY} partition). Locked, it would not boot (red).`,
        {
          code: 'FLASH_NO_CUSTOM_KEY',
          context: { publicKeySha256: avb.publicKeySha256 },
          hint: this.opts.avbOemKey
            ? 'nothing was written; flash without --lock'
            : "nothing was written; flash without --lock, or pass --avb-oem-key if the device's bootloader trusts this key",
        },
      );
    if (this.build.pkmd) {
      const onDisk = await readFile(this.build.pkmd);
      if (!onDisk.equals(avb.publicKey))
        throw new InputError(`${this.label}: avb_pkmd.bin is not the key vbmeta.img is signed with`, {
          code: 'FLASH_PKMD_MISMATCH',
          context: { pkmd: this.build.pkmd, vbmetaKeySha256: avb.publicKeySha256 },
          hint: 'nothing was written: the build folder mixes two builds',
        });
    }
    return avb.publicKey;
  }

  /** erase, flash and read back avb_custom_key (Pixel's flow), while still unlocked. */
  private async enrollCustomKey(key: Buffer): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'omie-pkmd-'));
    const file = join(dir, 'avb_pkmd.bin');
    try {
      await writeFile(file, key);
      this.step(`erase ${AVB_CUSTOM_KEY}`, '--lock: the build is not signed by the device OEM key');
      this.step(
        `flash ${AVB_CUSTOM_KEY} avb_pkmd.bin`,
        'the key vbmeta.img is signed with: locked, it boots yellow',
      );
      this.report.avb = { ...this.report.avb!, customKey: 'enrolled' };
      if (this.opts.dryRun) return;
      await this.withRetry(`erase ${AVB_CUSTOM_KEY}`, (cl) => cl.command(`erase:${AVB_CUSTOM_KEY}`, 60_000));
      await this.withRetry(`flash ${AVB_CUSTOM_KEY}`, (cl) =>
        cl.flash(AVB_CUSTOM_KEY, file, { exactName: true }),
      );
      const how = await this.withRetry(`verify ${AVB_CUSTOM_KEY}`, (cl) =>
        verifyPartition(cl, AVB_CUSTOM_KEY, file),
      );
      this.report.flashed.push({ partition: AVB_CUSTOM_KEY, bytes: key.length, verified: how, shared: true });
      this.log(`${AVB_CUSTOM_KEY}: the build's key enrolled (${how})`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * --wipe as `fastboot -w`: for userdata, cache and metadata, where the device has the partition
   * (getvar partition-type answers), erase it, then format it: a fresh filesystem of the partition's
   * size and type (ext4), as fastboot's fb_perform_format does. Wipes user data.
   */
  private async wipe(): Promise<void> {
    const dry = !!this.opts.dryRun;
    for (const p of ['userdata', 'cache', 'metadata']) {
      const c = this.client ?? (await this.connect());
      const type = dry ? (p === 'cache' ? undefined : 'ext4') : await c.tryGetvar(`partition-type:${p}`);
      if (!type) {
        if (!dry) this.log(`--wipe: the device has no ${p} partition: skipped`);
        continue;
      }
      this.step(`erase ${p}`, '--wipe');
      if (!dry) await this.withRetry(`erase ${p}`, (cl) => cl.erase(p));
      if (type !== 'ext4') {
        this.log(`--wipe: ${p} is ${type}: erased, not formatted (as fastboot)`);
        continue;
      }
      this.step(`format ${p}`, '--wipe: a new ext4 filesystem of the partition size, flashed');
      if (dry) continue;
      const size = await c.partitionSize(p);
      if (!size) {
        this.log(`--wipe: ${p} does not report its size: erased, not formatted`);
        continue;
      }
      const dir = await mkdtemp(join(tmpdir(), 'omie-format-'));
      try {
        const raw = join(dir, `${p}.raw`);
        const img = join(dir, `${p}.img`);
        await writeFile(raw, '');
        await truncate(raw, size);
        await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-L', p, raw], { reject: true });
        await rawToSparse(raw, img);
        await rm(raw);
        await this.withRetry(`format ${p}`, (cl) => cl.flash(p, img, { exactName: true }));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    this.report.wiped = true;
  }

  /**
   * The slot to write. `inactive` is the slot that is not the last good one: normally the other
   * slot; but when the current slot never booted (slot-successful:<cur> is "no") while the other
   * one did, an earlier flash was interrupted after switching, and completing the current slot
   * keeps the good one intact.
   */
  private async chooseSlot(c: FastbootClient): Promise<'a' | 'b' | null> {
    const slotCount = await c.slotCount();
    const current = slotCount >= 2 ? ((await c.currentSlot()) ?? null) : null;
    this.report.previousSlot = current;
    if (!current) {
      if (this.opts.slot && this.opts.slot !== 'inactive')
        this.log(`the device has no A/B slots: --slot ${this.opts.slot} is ignored`);
      this.report.slot = null;
      return null;
    }
    if (current !== 'a' && current !== 'b')
      throw new EnvironmentError(`${this.label}: unsupported current slot ${JSON.stringify(current)}`, {
        code: 'FLASH_SLOT',
        context: { currentSlot: current, slotCount },
      });
    const other = current === 'a' ? 'b' : 'a';
    let slot: 'a' | 'b';
    let why = `currently ${current}; writing slot`;
    const want = this.opts.slot ?? 'inactive';
    if (want !== 'inactive') slot = want;
    else {
      const ok = async (s: string) => parseYesNoVar(await c.tryGetvar(`slot-successful:${s}`));
      if ((await ok(current)) === false && (await ok(other)) === true) {
        slot = current;
        why = `currently ${current}, which never booted (${other} did): completing slot`;
      } else slot = other;
    }
    this.step('getvar current-slot', `${why} ${slot}`);
    this.report.slot = slot;
    return slot;
  }

  private async activate(slot: 'a' | 'b', why: string): Promise<void> {
    this.step(`set_active ${slot}`, why);
    if (!this.opts.dryRun) await this.withRetry('set_active', (cl) => cl.setActive(slot));
  }

  private async cancelSnapshotIfNeeded(c: FastbootClient): Promise<FastbootClient> {
    if (this.opts.dryRun) return c;
    const status = await c.snapshotUpdateStatus();
    if (!status || status === 'none') return c;
    this.step('snapshot-update cancel', `a virtual A/B update is ${status}`);
    this.log(`cancelling the ${status} virtual A/B update (fastboot does the same before flashing)`);
    await this.withRetry('snapshot-update cancel', (cl) => cl.snapshotUpdate('cancel'));
    return this.client ?? c;
  }

  /** Runs `fn` with the live client; on a dropped link, reconnects and retries. */
  private async withRetry<T>(what: string, fn: (c: FastbootClient) => Promise<T>): Promise<T> {
    let attempt = 0;
    for (;;) {
      const c = this.client ?? (await this.connect());
      try {
        return await fn(c);
      } catch (e) {
        if (!(e instanceof TransportError) || attempt >= this.retries) throw e;
        attempt++;
        this.log(`${what}: ${e.message}; reconnecting (retry ${attempt}/${this.retries})`);
        await delay(200 * attempt);
        await this.reconnect();
      }
    }
  }

  /** Writes `<name>.img` to partition `base` (default `name`) of `slot`, then verifies it. */
  private async flashOne(name: string, slot: 'a' | 'b' | null, logical: boolean, base = name): Promise<void> {
    const path = this.build.images.get(name) as string;
    const c0 = this.client ?? (await this.connect());
    const hasSlot = slot !== null && (logical || (await c0.tryGetvar(`has-slot:${base}`)) === 'yes');
    const part = hasSlot ? `${base}_${slot}` : base;
    const shared = slot !== null && !hasSlot;
    if (shared) this.log(`${base} has no slots: shared by both slots, written in place`);
    const vbmetaFlags = /vbmeta(_[ab])?$/.test(part)
      ? (this.opts.disableVerity ? 1 : 0) | (this.opts.disableVerification ? 2 : 0)
      : 0;
    const flagArgs = `${vbmetaFlags & 1 ? '--disable-verity ' : ''}${vbmetaFlags & 2 ? '--disable-verification ' : ''}`;
    this.step(
      `flash ${flagArgs}${part} ${basename(path)}`,
      [
        name !== base ? `fastboot update's secondary image: the other slot's ${base}` : undefined,
        shared ? 'no slots: shared by both slots' : undefined,
        logical ? 'logical partition (fastbootd)' : undefined,
      ]
        .filter(Boolean)
        .join('; ') || undefined,
    );
    if (this.opts.dryRun) return;
    const stage = `${this.label} ${part}`;
    if (logical && (await c0.tryGetvar(`partition-size:${part}`)) === undefined) {
      this.step(`create-logical-partition ${part} 0`);
      await this.withRetry(`create ${part}`, (cl) => cl.createLogicalPartition(part, 0));
    }
    const source = vbmetaFlags ? await withVbmetaFlags(path, vbmetaFlags) : { path, close: async () => {} };
    const image = logical
      ? source
      : await this.withAvbFooterAtEnd(part, source.path).then(
          (x) => ({
            path: x.path,
            close: async () => {
              await x.close();
              await source.close();
            },
          }),
          async (e) => {
            await source.close();
            throw e;
          },
        );
    try {
      await this.withRetry(`flash ${part}`, (cl) =>
        cl.flash(part, image.path, {
          exactName: true,
          onProgress: this.opts.onProgress && ((e) => this.opts.onProgress?.({ ...e, stage })),
        }),
      );
      const how = await this.withRetry(`verify ${part}`, (cl) => verifyPartition(cl, part, image.path));
      this.report.flashed.push({
        partition: part,
        bytes: (await stat(path)).size,
        verified: how,
        ...(shared ? { shared } : {}),
      });
      this.log(`${part}: written and verified (${how})`);
    } finally {
      await image.close();
    }
  }

  /**
   * fastboot's copy_avb_footer: a raw image with an AVB footer that is smaller than its physical
   * partition gets the footer moved to the partition's end, where avb looks for it (the image is
   * sent padded to the partition size). A partition smaller than the image is refused.
   */
  private async withAvbFooterAtEnd(
    part: string,
    path: string,
  ): Promise<{ path: string; close(): Promise<void> }> {
    const none = { path, close: async () => {} };
    const fh = await open(path, 'r');
    let size: number;
    const tail = Buffer.alloc(FOOTER_SIZE);
    try {
      size = (await fh.stat()).size;
      if (size < FOOTER_SIZE) return none;
      await fh.read(tail, 0, FOOTER_SIZE, size - FOOTER_SIZE);
    } finally {
      await fh.close();
    }
    if (!hasFooterMagic(tail)) return none;
    const c = this.client ?? (await this.connect());
    const psize = await c.partitionSize(part);
    // Bootloaders that do not report partition-size get the image as it is, as with fastboot.
    if (!psize || psize === size) return none;
    if (psize < size)
      throw new InputError(
        `${this.label}: ${part} (${psize} bytes) is smaller than ${basename(path)} (${size})`,
        {
          code: 'FLASH_TOO_LARGE',
          context: { partition: part, partitionSize: psize, imageSize: size },
        },
      );
    const dir = await mkdtemp(join(tmpdir(), 'omie-avb-'));
    const out = join(dir, basename(path));
    await copyFile(path, out);
    // The gap stays a hole on disk; the footer goes to the partition's last 64 bytes.
    await truncate(out, psize);
    const w = await open(out, 'r+');
    try {
      await w.write(tail, 0, FOOTER_SIZE, psize - FOOTER_SIZE);
    } finally {
      await w.close();
    }
    this.log(`${part}: AVB footer moved to the end of the ${psize}-byte partition`);
    return { path: out, close: () => rm(dir, { recursive: true, force: true }) };
  }
}

/**
 * fastboot's rewrite_vbmeta_buffer for --disable-verity / --disable-verification: a copy of the
 * vbmeta image with bits ORed into the big-endian `flags` field at offset 120 of the AvbVBMetaImageHeader
 * (1 = hashtree disabled, 2 = verification disabled). The signature does not cover this field's
 * effect: the bootloader honours it only when unlocked, which flashing requires anyway.
 */
async function withVbmetaFlags(
  path: string,
  flags: number,
): Promise<{ path: string; close(): Promise<void> }> {
  const head = Buffer.alloc(124);
  const fh = await open(path, 'r');
  try {
    const { bytesRead } = await fh.read(head, 0, 124, 0);
    if (bytesRead < 124 || head.toString('latin1', 0, 4) !== 'AVB0')
      throw new InputError(
        `${path} is not a vbmeta image: cannot apply --disable-verity/--disable-verification`,
        {
          code: 'FLASH_VBMETA_FLAGS',
          context: { file: path, offset: 0, expected: 'AVB0', found: head.toString('latin1', 0, 4) },
        },
      );
  } finally {
    await fh.close();
  }
  const dir = await mkdtemp(join(tmpdir(), 'omie-vbmeta-'));
  const out = join(dir, basename(path));
  await copyFile(path, out);
  const w = await open(out, 'r+');
  try {
    const b = Buffer.alloc(4);
    b.writeUInt32BE((head.readUInt32BE(120) | flags) >>> 0, 0);
    await w.write(b, 0, 4, 120);
  } finally {
    await w.close();
  }
  return { path: out, close: () => rm(dir, { recursive: true, force: true }) };
}

/** Names of partitions listed in a super_empty.img (lpmake metadata). */
async function superEmptyNames(path: string): Promise<Set<string>> {
  const info = await readSuper(path);
  return new Set(info.partitions.map((p) => p.name));
}

/**
 * Verifies a write. Always: partition-size covers the image. Where the device implements `fetch:`
 * (fastbootd on debug builds, the Omie sim): reads the written ranges back and compares them byte
 * for byte with the image's DATA and FILL blocks (DONT_CARE ranges are not compared).
 */
export async function verifyPartition(
  c: FastbootClient,
  part: string,
  imagePath: string,
): Promise<'read-back' | 'size'> {
  const fh = await open(imagePath, 'r');
  try {
    const size = (await fh.stat()).size;
    const layout = await importLayout(fh, size, imagePath);
    const psize = await c.partitionSize(part);
    if (psize !== undefined && psize < layout.len)
      throw new VerificationError(
        'flash',
        `${part} is ${psize} bytes, smaller than the image (${layout.len})`,
      );
    // fastbootd implements fetch (and reports max-fetch-size) on debug builds only; the value is
    // read like max-download-size (0x hex or decimal).
    const maxFetch = parseUintVar(await c.tryGetvar('max-fetch-size'));
    if (!maxFetch) return 'size';
    // Read back in windows of up to 8 MiB covering many blocks (one round trip each), then compare
    // the DATA and FILL blocks inside; a DONT_CARE gap costs bytes on the wire but no round trips.
    const windowMax = Math.max(layout.blockSize, Math.min(8 << 20, maxFetch, await c.maxDownloadSize()));
    const bs = layout.blockSize;
    const blocks = layout.blocks;
    const source = new ReadWindow(fh, 8 << 20);
    let i = 0;
    while (i < blocks.length) {
      const start = blocks[i].block * bs;
      let j = i;
      while (j + 1 < blocks.length && blocks[j + 1].block * bs + blocks[j + 1].len - start <= windowMax) j++;
      const end = blocks[j].block * bs + blocks[j].len;
      if (end - start > windowMax) {
        // One block larger than a window: split it.
        const bb = blocks[i];
        const piece = Math.floor(windowMax / bs) * bs;
        const head = { ...bb, len: piece } as BackedBlock;
        const tail = { ...bb, len: bb.len - piece, block: bb.block + piece / bs } as BackedBlock;
        if (tail.kind === 'data' && bb.kind === 'data') tail.offset = bb.offset + piece;
        blocks.splice(i, 1, head, tail);
        continue;
      }
      const got = Buffer.allocUnsafe(end - start);
      let filled = 0;
      await c.fetch(part, start, end - start, (b) => {
        b.copy(got, filled);
        filled += b.length;
      });
      if (filled !== got.length)
        throw new VerificationError('flash', `${part}: short read-back (${filled} of ${got.length} bytes)`);
      for (let k = i; k <= j; k++) {
        const bb = blocks[k];
        const at = bb.block * bs - start;
        let want: Buffer;
        if (bb.kind === 'data') want = await source.get(bb.offset, bb.len);
        else {
          want = Buffer.allocUnsafe(bb.len);
          const w = Buffer.alloc(4);
          w.writeUInt32LE(bb.value, 0);
          want.fill(w);
        }
        if (got.compare(want, 0, bb.len, at, at + bb.len) !== 0)
          throw new VerificationError(
            'flash',
            `${part} differs from ${basename(imagePath)} in block ${bb.block}`,
            {
              context: { partition: part, offset: bb.block * bs },
            },
          );
      }
      i = j + 1;
    }
    return 'read-back';
  } finally {
    await fh.close();
  }
}
