/**
 * What the virtual device "sees" when it runs: the filesystems of the current slot's flashed
 * partitions (system, system_ext, product, vendor, odm), its writable /data, the system properties
 * (build.prop files layered over the device profile's defaults and the boot-time ro.boot.* values)
 * and the installed packages (APKs found on those partitions).
 *
 * Partition images are read offline with the kit's filesystem readers (scripts/fs: ext4 through
 * debugfs rdump, erofs in TypeScript), into `STATE/.cache/fs/<partition>_<slot>/<identity>` where identity
 * is a hash of the image file's inode, size, mtime and first MiB (commitPartition renames a new
 * file in, so a new flash always gets a new identity). A partition with no recognisable filesystem
 * (fresh zero-filled sim) is absent, and the device falls back to the profile's defaults.
 * Package names come from each APK's binary AndroidManifest.xml (scripts/formats/apk).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { OmieError } from '../errors.ts';
import { ApexArchive } from '../formats/apex/index.ts';
import { parseManifest } from '../formats/apk/manifest.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import { extractErofs, isErofs } from '../fs/erofs.ts';
import { Ext4Reader, isExt4 } from '../fs/ext4.ts';
import { putSettings, readSettings, type Settings, type SettingsNamespace } from './settings.ts';
import type { DeviceJson, Slot } from './state.ts';

/** What the view needs from SimState. */
export interface ViewState {
  readonly dir: string;
  readonly info: DeviceJson;
  partitionPath(name: string, slot?: Slot | null): string;
}

export interface PackageEntry {
  name: string;
  /** Device path of the APK, e.g. /system/app/Foo/Foo.apk. */
  path: string;
  /** On a read-only partition (pm list packages -s) rather than /data (-3). */
  system: boolean;
}

/** An APEX apexd activated: its file, names, and the extracted payload mounted at /apex/<name>. */
export interface ActiveApex {
  /** apex_manifest.pb name: the mount point /apex/<name>. */
  name: string;
  /** The container's package (`pm list packages --apex-only`). */
  package: string;
  /** Device path of the APEX file, e.g. /system/apex/com.android.tzdata.apex. */
  path: string;
  /** Host directory of the payload's files. */
  root: string;
}

export type ResolvedPath =
  | { kind: 'host'; hostPath: string; writable: boolean }
  | { kind: 'virtual-dir'; entries: string[] }
  | { kind: 'virtual-file'; content: Buffer };

/** Partitions mounted at /<name>, in property-loading order (later build.prop files override earlier ones). */
const MOUNTED = ['system', 'system_ext', 'vendor', 'odm', 'product'] as const;

const PROP_FILES = [
  '/system/etc/prop.default',
  '/system/build.prop',
  '/system_ext/etc/build.prop',
  '/system_ext/build.prop',
  '/vendor/default.prop',
  '/vendor/build.prop',
  '/odm/etc/build.prop',
  '/product/etc/build.prop',
  '/product/build.prop',
];

/** Where APKs live: dir and how deep below it the .apk sits (app/Foo/Foo.apk = 2). */
const APK_DIRS: Array<[string, number]> = [
  ['/system/framework', 1],
  ['/system/app', 2],
  ['/system/priv-app', 2],
  ['/system/overlay', 2],
  ['/system_ext/app', 2],
  ['/system_ext/priv-app', 2],
  ['/system_ext/overlay', 2],
  ['/product/app', 2],
  ['/product/priv-app', 2],
  ['/product/overlay', 2],
  ['/vendor/app', 2],
  ['/vendor/overlay', 2],
  ['/odm/app', 2],
];

const DEFAULT_PACKAGES: PackageEntry[] = [
  { name: 'android', path: '/system/framework/framework-res.apk', system: true },
  { name: 'com.android.shell', path: '/system/priv-app/Shell/Shell.apk', system: true },
  { name: 'com.android.settings', path: '/system/priv-app/Settings/Settings.apk', system: true },
  { name: 'com.android.systemui', path: '/system_ext/priv-app/SystemUI/SystemUI.apk', system: true },
];

export class DeviceView {
  private readonly state: ViewState;
  private readonly extracting = new Map<string, Promise<string | null>>();
  private readonly apkNames = new Map<string, string | null>();
  private readonly apexJobs = new Map<string, Promise<ActiveApex | null>>();
  private readonly identities = new Map<
    string,
    { statKey: string; fs: 'ext4' | 'erofs' | null; identity: string }
  >();

  constructor(state: ViewState) {
    this.state = state;
    // /data and the primary user's storage exist on every booted device.
    mkdirSync(join(this.dataDir, 'media', '0'), { recursive: true });
    mkdirSync(join(this.dataDir, 'local', 'tmp'), { recursive: true });
  }

  /** Host directory backing the device's /data (writable; /sdcard is /data/media/0). */
  get dataDir(): string {
    return join(this.state.dir, 'data');
  }

  /** Extracted root of a mounted partition of the current slot, or null when it holds no filesystem. */
  async partitionRoot(name: string): Promise<string | null> {
    const info = this.state.info;
    // Physical A/B partitions are one slotted entry; logical ones are keyed per slot ("system_a").
    const p = info.partitions[name];
    const perSlot = info.currentSlot ? info.partitions[`${name}_${info.currentSlot}`] : undefined;
    if (!p && !perSlot) return null;
    const slot = p?.slotted || (!p && perSlot) ? info.currentSlot : null;
    let img: string;
    try {
      img = this.state.partitionPath(name, slot);
    } catch {
      return null;
    }
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(img);
    } catch {
      return null;
    }
    // Hashing the head costs a 1 MiB read: do it once per file version (inode, size, mtime).
    const statKey = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    let known = this.identities.get(img);
    if (!known || known.statKey !== statKey) {
      const head = await readHead(img, 1024 * 1024);
      const fs = detectFs(head);
      const identity = createHash('sha256').update(`${statKey}:`).update(head).digest('hex').slice(0, 24);
      known = { statKey, fs, identity };
      this.identities.set(img, known);
    }
    const { fs, identity } = known;
    if (!fs) return null;
    const base = join(this.state.dir, '.cache', 'fs', `${name}${slot ? `_${slot}` : ''}`);
    const out = join(base, identity);
    let job = this.extracting.get(out);
    if (!job) {
      job = extract(fs, img, base, out);
      this.extracting.set(out, job);
      job.catch(() => this.extracting.delete(out));
    }
    return job;
  }

  /** Host directory for each mount point that has content. */
  private async mounts(): Promise<Map<string, string>> {
    const m = new Map<string, string>();
    const sysImg = await this.partitionRoot('system');
    if (sysImg) {
      // System-as-root images keep /system inside the image root.
      const inner = join(sysImg, 'system');
      const sysRoot = existsSync(join(inner, 'build.prop')) ? inner : sysImg;
      m.set('system', sysRoot);
      for (const name of MOUNTED.slice(1)) {
        const own = await this.partitionRoot(name);
        if (own) m.set(name, own);
        else if (existsSync(join(sysRoot, name))) m.set(name, join(sysRoot, name));
      }
    } else {
      for (const name of MOUNTED.slice(1)) {
        const own = await this.partitionRoot(name);
        if (own) m.set(name, own);
      }
    }
    return m;
  }

  /**
   * The APEXes apexd would activate: every <partition>/apex/*.apex|*.capex of the mounted
   * partitions, the first of each name (apexd refuses duplicates), each payload extracted once
   * into STATE/.cache/apex. An APEX that cannot be read is not activated (apexd skips it too).
   */
  async activeApexes(): Promise<ActiveApex[]> {
    const out: ActiveApex[] = [];
    for (const [part, root] of await this.mounts()) {
      let files: string[];
      try {
        files = (await readdir(join(root, 'apex'))).filter((f) => /\.c?apex$/.test(f)).sort();
      } catch {
        continue;
      }
      for (const f of files) {
        const a = await this.activateApex(join(root, 'apex', f), `/${part}/apex/${f}`);
        if (a && !out.some((x) => x.name === a.name)) out.push(a);
      }
    }
    return out;
  }

  private async activateApex(host: string, devicePath: string): Promise<ActiveApex | null> {
    const st = await stat(host).catch(() => null);
    if (!st) return null;
    const id = createHash('sha256')
      .update(`${host}:${st.ino}:${st.size}:${st.mtimeMs}`)
      .digest('hex')
      .slice(0, 24);
    let job = this.apexJobs.get(id);
    if (!job) {
      job = (async () => {
        const base = join(this.state.dir, '.cache', 'apex', id);
        let archive: ApexArchive;
        try {
          archive = await ApexArchive.open(host);
        } catch (e) {
          if (e instanceof OmieError) return null;
          throw e;
        }
        try {
          const img = join(base, 'payload.img');
          if (!existsSync(img)) {
            await mkdir(base, { recursive: true });
            await archive.extractPayload(`${img}.tmp`);
            await rename(`${img}.tmp`, img);
          }
          const fs = detectFs(await readHead(img, 4096));
          const root = fs && (await extract(fs, img, join(base, 'tree'), join(base, 'tree', 'payload')));
          if (!root) return null;
          const { name, packageName } = archive.info;
          return { name, package: packageName ?? name, path: devicePath, root };
        } catch (e) {
          if (e instanceof OmieError) return null;
          throw e;
        } finally {
          await archive.close();
        }
      })();
      this.apexJobs.set(id, job);
    }
    return job;
  }

  /** True when the current slot carries a system image the device can "boot". */
  async hasSystem(): Promise<boolean> {
    return (await this.partitionRoot('system')) !== null;
  }

  /**
   * Maps a device path to the host. /data, /sdcard and /storage/emulated/0 are writable; partition
   * mounts are read-only; "/" is a virtual listing. Null when the path is outside every mount.
   */
  async resolve(devicePath: string): Promise<ResolvedPath | null> {
    const norm = posix.normalize(`/${devicePath}`).replace(/\/+$/, '') || '/';
    const parts = norm.split('/').filter(Boolean);
    const mounts = await this.mounts();
    if (parts.length === 0)
      return {
        kind: 'virtual-dir',
        entries: [...mounts.keys(), 'apex', 'data', 'dev', 'proc', 'sdcard', 'storage'].sort(),
      };
    const [top, ...rest] = parts;
    if (top === 'apex') {
      const active = await this.activeApexes();
      if (rest.length === 0) return { kind: 'virtual-dir', entries: active.map((a) => a.name) };
      const a = active.find((x) => x.name === rest[0]);
      return a ? { kind: 'host', hostPath: join(a.root, ...rest.slice(1)), writable: false } : null;
    }
    if (top === 'proc') {
      if (rest.length === 0) return { kind: 'virtual-dir', entries: ['cmdline'] };
      if (rest.join('/') === 'cmdline')
        return { kind: 'virtual-file', content: Buffer.from(`${this.kernelCmdline()}\n`) };
      return null;
    }
    if (top === 'dev') {
      const sub = rest.join('/');
      if (sub === '') return { kind: 'virtual-dir', entries: ['block'] };
      if (sub === 'block') return { kind: 'virtual-dir', entries: ['by-name'] };
      if (sub === 'block/by-name') return { kind: 'virtual-dir', entries: this.blockDevices() };
      return null;
    }
    if (top === 'data') return { kind: 'host', hostPath: join(this.dataDir, ...rest), writable: true };
    // Recovery's own log of the current session (recovery.ts writes it where recovery-persist
    // keeps it for after the reboot: /data/misc/recovery/last_log).
    const mode = this.state.info.mode;
    if (top === 'tmp' && (mode === 'recovery' || mode === 'sideload')) {
      if (rest.length === 0) return { kind: 'virtual-dir', entries: ['recovery.log'] };
      if (rest.join('/') === 'recovery.log')
        return {
          kind: 'host',
          hostPath: join(this.dataDir, 'misc', 'recovery', 'last_log'),
          writable: false,
        };
      return null;
    }
    if (top === 'sdcard')
      return { kind: 'host', hostPath: join(this.dataDir, 'media', '0', ...rest), writable: true };
    if (top === 'storage') {
      if (rest.length === 0) return { kind: 'virtual-dir', entries: ['emulated', 'self'] };
      if (rest[0] === 'emulated' && rest.length === 1) return { kind: 'virtual-dir', entries: ['0'] };
      if (rest[0] === 'emulated' && rest[1] === '0')
        return { kind: 'host', hostPath: join(this.dataDir, 'media', '0', ...rest.slice(2)), writable: true };
      return null;
    }
    const root = mounts.get(top);
    if (!root) return null;
    return { kind: 'host', hostPath: join(root, ...rest), writable: false };
  }

  /** Physical partitions as /dev/block/by-name lists them (logical ones live in super). */
  blockDevices(): string[] {
    const info = this.state.info;
    const names: string[] = [];
    for (const [name, p] of Object.entries(info.partitions)) {
      if (p.logical) continue;
      if (p.slotted) names.push(`${name}_a`, `${name}_b`);
      else names.push(name);
    }
    if (info.superPartition) names.push(info.superPartition.name);
    return names.sort();
  }

  /**
   * The kernel command line the bootloader passed (androidboot.* values): the slot it booted and
   * what verified boot found (scripts/sim/boot.ts), never the lock flag alone.
   */
  kernelCmdline(): string {
    const info = this.state.info;
    const locked = !info.unlocked;
    return [
      'console=ttyS0',
      `androidboot.serialno=${info.serial}`,
      ...Object.entries(this.bootValues()).map(([k, v]) => `androidboot.${k}=${v}`),
      `androidboot.vbmeta.device_state=${locked ? 'locked' : 'unlocked'}`,
      `androidboot.flash.locked=${locked ? 1 : 0}`,
      `androidboot.bootloader=${info.versionBootloader}`,
    ].join(' ');
  }

  /** androidboot.* values from the last boot (slot_suffix, verifiedbootstate, veritymode, vbmeta.*). */
  private bootValues(): Record<string, string> {
    const b = this.state.info.boot;
    if (!b?.booted) return {};
    return {
      ...(b.slot ? { slot_suffix: `_${b.slot}` } : {}),
      ...(b.verifiedBootState ? { verifiedbootstate: b.verifiedBootState } : {}),
      ...(b.verityMode ? { veritymode: b.verityMode } : {}),
      ...(b.vbmetaDigest
        ? {
            // libavb's avb_append_options: the version of libavb, the digest over every vbmeta struct.
            'vbmeta.avb_version': '1.3',
            'vbmeta.hash_alg': 'sha256',
            'vbmeta.size': String(b.vbmetaSize ?? 0),
            'vbmeta.digest': b.vbmetaDigest,
            'vbmeta.invalidate_on_error': 'yes',
            ...(b.publicKeyDigest ? { 'vbmeta.public_key_digest': b.publicKeyDigest } : {}),
          }
        : {}),
    };
  }

  /** Reads a small device file (build.prop, …); null when absent. */
  async readFile(devicePath: string): Promise<Buffer | null> {
    const r = await this.resolve(devicePath);
    if (r?.kind === 'virtual-file') return r.content;
    if (r?.kind !== 'host') return null;
    try {
      return await readFile(r.hostPath);
    } catch {
      return null;
    }
  }

  /** Every system property: profile defaults, then the flashed build.prop files, then boot values. */
  async props(): Promise<Map<string, string>> {
    const info = this.state.info;
    const props = new Map<string, string>(Object.entries(await this.profileProps()));
    const fromFiles = new Set<string>();
    for (const f of PROP_FILES) {
      const text = await this.readFile(f);
      if (!text) continue;
      for (const [k, v] of parseBuildProp(text.toString('utf8'))) {
        props.set(k, v);
        fromFiles.add(k);
      }
    }
    // init derives ro.product.<x> from the partition-specific values when no build.prop sets it
    // (property_service.cpp, ro.product.property_source_order).
    for (const x of ['brand', 'device', 'manufacturer', 'model', 'name']) {
      if (fromFiles.has(`ro.product.${x}`)) continue;
      for (const src of ['product', 'odm', 'vendor', 'system_ext', 'system']) {
        const v = props.get(`ro.product.${src}.${x}`);
        if (v !== undefined) {
          props.set(`ro.product.${x}`, v);
          break;
        }
      }
    }
    const locked = !info.unlocked;
    const boot: Record<string, string> = {
      'ro.serialno': info.serial,
      'ro.boot.serialno': info.serial,
      'ro.bootloader': info.versionBootloader,
      'ro.boot.bootloader': info.versionBootloader,
      'ro.boot.flash.locked': locked ? '1' : '0',
      'ro.boot.vbmeta.device_state': locked ? 'locked' : 'unlocked',
      'ro.boot.dynamic_partitions': info.superPartition ? 'true' : 'false',
      'init.svc.adbd': 'running',
    };
    // What the bootloader verified and booted (init copies androidboot.* to ro.boot.*).
    for (const [k, v] of Object.entries(this.bootValues())) boot[`ro.boot.${k}`] = v;
    if (info.boot?.booted && info.mode === 'adb') boot['sys.boot_completed'] = '1';
    if (info.mode === 'recovery' || info.mode === 'sideload') boot['ro.bootmode'] = 'recovery';
    for (const [k, v] of Object.entries(boot)) props.set(k, v);
    return new Map([...props.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Defaults from the device profile (STATE/sim-props.json, written by `omie sim`) and device.json. */
  private async profileProps(): Promise<Record<string, string>> {
    const info = this.state.info;
    const base: Record<string, string> = {
      'ro.product.name': info.product,
      'ro.product.device': info.product,
      'ro.product.model': info.product,
      'ro.product.brand': 'omie',
      'ro.product.manufacturer': 'Omie',
      'ro.hardware': info.product,
      'ro.build.type': 'user',
      'ro.build.tags': 'release-keys',
      'ro.build.version.sdk': '34',
      'ro.build.version.release': '14',
      'ro.secure': '1',
      'ro.debuggable': '0',
      'ro.adb.secure': info.adbAuthRequired ? '1' : '0',
      'ro.build.ab_update': info.slotCount === 2 ? 'true' : 'false',
      'ro.virtual_ab.enabled': 'false',
      'persist.sys.usb.config': 'adb',
      'sys.usb.state': 'adb',
    };
    try {
      const extra = JSON.parse(await readFile(join(this.state.dir, 'sim-props.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      for (const [k, v] of Object.entries(extra)) if (typeof v === 'string') base[k] = v;
    } catch {
      /* no profile extras */
    }
    return base;
  }

  /** Installed packages: APKs on the current slot's partitions and under /data/app. */
  async packages(): Promise<PackageEntry[]> {
    const out: PackageEntry[] = [];
    const seen = new Set<string>();
    const add = (e: PackageEntry) => {
      if (seen.has(e.name)) return;
      seen.add(e.name);
      out.push(e);
    };
    if (!(await this.hasSystem())) for (const p of DEFAULT_PACKAGES) add(p);
    else {
      const apexDirs: Array<[string, number]> = (await this.activeApexes()).flatMap((a) => [
        [`/apex/${a.name}/app`, 2],
        [`/apex/${a.name}/priv-app`, 2],
      ]);
      for (const [dir, depth] of [...APK_DIRS, ...apexDirs])
        for (const apk of await this.findApks(dir, depth)) {
          const name = await this.apkPackage(apk.hostPath);
          if (name) add({ name, path: apk.devicePath, system: true });
        }
    }
    for (const apk of await this.findApks('/data/app', 3)) {
      const name = await this.apkPackage(apk.hostPath);
      if (name) add({ name, path: apk.devicePath, system: false });
    }
    return out;
  }

  private async findApks(
    deviceDir: string,
    depth: number,
  ): Promise<Array<{ devicePath: string; hostPath: string }>> {
    const r = await this.resolve(deviceDir);
    if (r?.kind !== 'host') return [];
    const found: Array<{ devicePath: string; hostPath: string }> = [];
    const walk = async (host: string, dev: string, level: number) => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(host, { withFileTypes: true });
      } catch {
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const e of entries) {
        if (level === depth && e.isFile() && e.name.endsWith('.apk'))
          found.push({ devicePath: `${dev}/${e.name}`, hostPath: join(host, e.name) });
        else if (level < depth && e.isDirectory())
          await walk(join(host, e.name), `${dev}/${e.name}`, level + 1);
      }
    };
    await walk(r.hostPath, deviceDir, 1);
    return found;
  }

  /** Package name from an APK's manifest (null when it is not a readable APK). */
  private async apkPackage(hostPath: string): Promise<string | null> {
    let key: string;
    try {
      const st = await stat(hostPath);
      key = `${hostPath}:${st.size}:${st.mtimeMs}`;
    } catch {
      return null;
    }
    if (this.apkNames.has(key)) return this.apkNames.get(key) ?? null;
    const name = await readApkPackage(hostPath);
    this.apkNames.set(key, name);
    return name;
  }

  /** `settings get` store (STATE/settings.json), with the values a provisioned device has. */
  settings(): Promise<Settings> {
    return readSettings(this.state.dir, this.state.info.serial);
  }

  putSetting(ns: SettingsNamespace, key: string, value: string | null): Promise<void> {
    return putSettings(this.state.dir, ns, { [key]: value });
  }
}

export function parseBuildProp(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('import ')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** ext4 or erofs by superblock magic (scripts/fs), or null for a blank / raw partition. */
export function detectFs(head: Buffer): 'ext4' | 'erofs' | null {
  if (isExt4(head)) return 'ext4';
  if (isErofs(head)) return 'erofs';
  return null;
}

/** The package name from an APK's binary manifest; null when it is not a readable APK. */
export async function readApkPackage(apkPath: string): Promise<string | null> {
  let zip: ZipArchive | undefined;
  try {
    zip = await ZipArchive.openFile(apkPath);
    const entry = zip.entry('AndroidManifest.xml');
    if (!entry) return null;
    return parseManifest(await zip.read(entry, 16 * 1024 * 1024), null, `${apkPath}!AndroidManifest.xml`)
      .package;
  } catch (e) {
    if (e instanceof OmieError) return null; // not an APK: pm would not list it either
    throw e;
  } finally {
    await zip?.close().catch(() => {});
  }
}

async function extract(fs: 'ext4' | 'erofs', img: string, base: string, out: string): Promise<string | null> {
  if (existsSync(join(out, 'done'))) return join(out, 'root');
  await mkdir(base, { recursive: true });
  // Older extractions of this partition are stale: the image was reflashed.
  for (const old of await readdir(base))
    if (!join(base, old).startsWith(out)) await rm(join(base, old), { recursive: true, force: true });
  const tmp = `${out}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await rm(tmp, { recursive: true, force: true });
  const root = join(tmp, 'root');
  await mkdir(root, { recursive: true });
  if (fs === 'ext4') {
    try {
      await new Ext4Reader(img).extractTree('/', root); // rdump, with inline_data files cut to size
    } catch {
      return null;
    }
  } else {
    try {
      await extractErofs(img, root);
    } catch {
      return null;
    }
  }
  await writeFile(join(tmp, 'done'), '');
  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
  return join(out, 'root');
}
