/**
 * SystemView: what the checks see of an Android system, whether it is an image on disk
 * (image-view.ts) or a live device over adb (device-view.ts). Checks only use this interface, so
 * the same requirement logic runs offline and online, and tests can use memory-view.ts.
 */
import type { PartitionsVerification } from '../formats/avb/index.ts';
import type { Profile } from './spec-schema.ts';

export interface FileEntry {
  /** Name inside its directory. */
  name: string;
  /** Path from the partition root, without a leading slash (e.g. `etc/permissions/x.xml`). */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size?: number;
  mode?: number;
}

/** An APK found on a partition. */
export interface ApkRef {
  partition: string;
  /** Path from the partition root, e.g. `priv-app/Foo/Foo.apk`. */
  path: string;
  /** A local file holding the APK bytes (extracted or pulled). */
  localPath: string;
  /** Package name when the source already knows it (e.g. `pm list packages -f`). */
  packageHint?: string;
  /** For an APK inside an APEX (partition `apex`, path `<apex name>/…`): `<partition>/<path>` of the APEX file. */
  apex?: string;
}

/** An APEX file (.apex or .capex) on a partition, or a device's active APEX. */
export interface ApexRef {
  partition: string;
  /** Path from the partition root, e.g. `apex/com.android.tzdata.apex`. */
  path: string;
  /** A local file holding the APEX bytes (extracted or pulled). */
  localPath: string;
  /** Package name when the source already knows it (`pm list packages --apex-only`). */
  packageHint?: string;
}

/** The facts the checks need about one APEX. */
export interface ApexFacts {
  /** apex_manifest.pb name (the mount point /apex/<name>). */
  name: string;
  /** The container's package (what PackageManager lists); the name when the container has none. */
  package: string;
  version: number;
  versionName: string;
  compressed: boolean;
  /** SHA-256 of apex_pubkey, the AVB key the payload must be signed with; null without one. */
  payloadKeySha256: string | null;
  /** Name of the AVB public test key the payload key is, if it is one. */
  payloadTestKey?: string;
  /** The container's APK signature. */
  signing: { verified: boolean; signerSha256: string[]; error?: string };
  /** What apexd would refuse in the payload (wrong key, no hashtree, unreadable…); empty when sound. */
  payloadProblems: string[];
  payloadFs?: 'ext4' | 'erofs';
  /** APKs inside the payload (paths in it, no leading slash). */
  apks: string[];
  /** Java libraries inside the payload, with their DEX classes. */
  jars: Array<{ path: string; classes: string[]; error?: string }>;
}

export interface ApkComponent {
  type: 'activity' | 'service' | 'receiver' | 'provider';
  name: string;
  permission?: string;
  exported?: boolean;
  actions: string[];
}

/** The facts the checks need about one APK. */
export interface ApkFacts {
  package: string;
  versionCode?: number;
  minSdk?: number;
  targetSdk?: number;
  debuggable: boolean;
  testOnly: boolean;
  usesPermissions: string[];
  /** Permissions the APK defines (framework-res: the platform's), with protectionLevel flags. */
  declaredPermissions: Array<{ name: string; protectionLevel: number }>;
  /** `<application><meta-data>` name → value. */
  appMetaData: Record<string, string>;
  components: ApkComponent[];
  /** Package a runtime resource overlay targets (`<overlay android:targetPackage>`). */
  overlayTarget?: string;
  signing: {
    /** At least one scheme verified and none present failed. */
    verified: boolean;
    /** Schemes that verified (1, 2, 3, 31). */
    schemes: number[];
    /** SHA-256 (hex, lower case) of each signer's certificate. */
    signerSha256: string[];
    error?: string;
  };
  /** Class names (dotted) of every DEX file in the APK. */
  classes: string[];
  /** Resource values by entry name (string → string, string-array → string[]); default config. */
  resources: Record<string, string | string[]>;
  /** WebView provider packages from res/xml/config_webview_packages.xml, when the APK has one. */
  webviewProviders?: string[];
}

export interface VbmetaDescriptorFacts {
  kind: 'hashtree' | 'hash' | 'chain' | 'property' | 'cmdline' | 'other';
  partition?: string;
  key?: string;
  value?: string;
  rollbackIndexLocation?: number;
  /** chain: SHA-256 of the chained partition's AVB public key blob. */
  publicKeySha256?: string;
  publicTestKeyName?: string;
}

/** One vbmeta structure (vbmeta.img, a chained vbmeta_*.img or a footer's vbmeta). */
export interface VbmetaFacts {
  /** Partition the vbmeta came from. */
  partition: string;
  algorithm: string;
  /** SHA-256 of the AVB public key blob (absent when unsigned). */
  publicKeySha256?: string;
  /** Name of the AVB public test key when it is one. */
  publicTestKeyName?: string;
  rollbackIndex: number;
  flags: number;
  /** Signature verified against the embedded key (false when unsigned or broken). */
  signatureValid: boolean;
  verifyError?: string;
  descriptors: VbmetaDescriptorFacts[];
}

export interface SystemView {
  readonly kind: Profile;
  /** Image path or device serial. */
  readonly input: string;
  readonly description: string;
  /** Partitions that have a readable filesystem (system, vendor, product, system_ext, odm…). */
  partitions(): Promise<string[]>;
  /** Every partition image present, filesystem or not (boot, vbmeta, dtbo…); device: from by-name. */
  allPartitions(): Promise<string[]>;
  /** Direct children of a directory; [] when it does not exist. */
  listFiles(partition: string, dir: string): Promise<FileEntry[]>;
  /** File bytes, or null when it does not exist. Only for small files (XML, props, confs). */
  readFile(partition: string, path: string): Promise<Buffer | null>;
  /** Merged build.prop of system, system_ext, product, vendor, odm (later wins), plus getprop on a device. */
  props(): Promise<Record<string, string>>;
  /** Every APK on every partition, and inside every APEX (partition `apex`, as a device mounts them). */
  apks(): Promise<ApkRef[]>;
  apkFacts(apk: ApkRef): Promise<ApkFacts>;
  /** Every APEX: `<partition>/apex/*.apex|*.capex` of an image, `pm list packages --apex-only -f` of a device. */
  apexes(): Promise<ApexRef[]>;
  apexFacts(apex: ApexRef): Promise<ApexFacts>;
  /** `settings get <ns> <key>`; undefined when the view has no settings (an image). */
  settings(ns: 'global' | 'secure' | 'system', key: string): Promise<string | null | undefined>;
  /** Kernel command line (boot image + vbmeta cmdline descriptors, or /proc/cmdline); null when unknown. */
  kernelCmdline(): Promise<string | null>;
  /** vbmeta structures; null when the view has none (a device, or an image without vbmeta.img). */
  vbmeta(): Promise<VbmetaFacts[] | null>;
  /**
   * Every vbmeta, chained vbmeta, hash and hashtree descriptor verified against the partition
   * bytes (scripts/formats/avb/partitions.ts); null when there is no vbmeta; absent on a device.
   */
  avbContents?(): Promise<PartitionsVerification | null>;
  /** avbtool calculate_vbmeta_digest of the image's vbmeta (cheap: vbmeta blobs only); null without one. */
  vbmetaDigest?(): Promise<string | null>;
  /** Runs a shell command on a device; absent on images. */
  shell?(cmd: string): Promise<string>;
  close(): Promise<void>;
}

/** Boot-type partitions whose headers carry a kernel command line or bootconfig. */
export const CMDLINE_PARTITIONS = ['boot', 'init_boot', 'vendor_boot'];

/** Every file under `dir` of a partition, depth first; skips symlinks' targets. */
export async function walk(
  view: SystemView,
  partition: string,
  dir = '',
  maxEntries = 500_000,
): Promise<FileEntry[]> {
  const out: FileEntry[] = [];
  const stack = [dir];
  while (stack.length && out.length < maxEntries) {
    const d = stack.pop() as string;
    for (const e of await view.listFiles(partition, d)) {
      out.push(e);
      if (e.type === 'dir') stack.push(e.path);
    }
  }
  return out;
}

/** Parses a build.prop / default.prop text (`key=value`, `#` comments, `import` lines ignored). */
export function parseProps(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('import ')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/**
 * Where each partition keeps its build.prop, in the order Android's property service loads
 * them (property_service.cpp PropertyLoadBootDefaults): the more product-specific a partition,
 * the later it loads and the higher its precedence.
 */
export const BUILD_PROP_ORDER: Array<{ partition: string; paths: string[] }> = [
  // init loads /system/etc/prop.default (ro.secure, ro.adb.secure, ro.debuggable) before build.prop.
  { partition: 'system', paths: ['system/etc/prop.default', 'etc/prop.default'] },
  { partition: 'system', paths: ['system/build.prop', 'build.prop'] },
  { partition: 'system_ext', paths: ['etc/build.prop', 'build.prop'] },
  { partition: 'system_dlkm', paths: ['etc/build.prop'] },
  // Two files, both loaded (a vendor of Android ≤ 11 keeps ro.* defaults in default.prop).
  { partition: 'vendor', paths: ['default.prop'] },
  { partition: 'vendor', paths: ['build.prop'] },
  { partition: 'vendor_dlkm', paths: ['etc/build.prop'] },
  { partition: 'odm_dlkm', paths: ['etc/build.prop'] },
  { partition: 'odm', paths: ['etc/build.prop', 'build.prop'] },
  { partition: 'product', paths: ['etc/build.prop', 'build.prop'] },
];

/** Merges the build.prop files of the partitions present; a later file overrides an earlier one. */
export async function mergedBuildProps(
  view: Pick<SystemView, 'readFile'>,
  partitions: string[],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const { partition, paths } of BUILD_PROP_ORDER) {
    if (!partitions.includes(partition)) continue;
    for (const path of paths) {
      const buf = await view.readFile(partition, path);
      if (!buf) continue;
      Object.assign(out, parseProps(buf.toString('utf8')));
      break;
    }
  }
  return out;
}
