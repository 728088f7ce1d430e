/**
 * The build plan: what `omie build` will do to each partition of a base, as plain JSON-serialisable
 * data (printed by `--dry-run`, stored in the build record) — APK directories to remove (decided
 * by the package name read from each APK's manifest, or by its signer certificate, never by folder
 * names), Google permission/sysconfig/default-permission/preferred-apps XMLs and libraries to
 * remove, references to removed packages to cut from the XMLs that stay, files to add (the
 * product's apps with their privapp allowlists and default-permission XMLs, plus any extra files
 * such as overlays) with mode/owner/SELinux label, and property edits.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { googleMainlineModule, type MainlineModule } from '../conformance/mainline.ts';
import { InputError, VerificationError } from '../errors.ts';
import { readApexInfo } from '../formats/apex/index.ts';
import { parseArsc } from '../formats/apk/arsc.ts';
import { defaultKnownSigners } from '../formats/apk/known-signers.ts';
import { type ApkManifest, parseManifest, WEBVIEW_LIBRARY_META_DATA } from '../formats/apk/manifest.ts';
import { verifyApkSignatures } from '../formats/apk/signing/index.ts';
import { bufferSource, ZipArchive } from '../formats/apk/zip.ts';
import { OTACERTS_PATH } from '../formats/ota/otacerts.ts';
import { FileContexts } from '../fs/selinux.ts';
import type { FsEntry, FsReader } from '../fs/types.ts';
import { certSha256, certSha256Of, openKeys } from '../keys/store.ts';
import type { ResolvedApp, ResolvedProduct } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';
import {
  type BuildIdentity,
  buildDescription,
  buildFingerprint,
  getProp,
  type PropEdit,
  parseProps,
  propPatternMatches,
  releaseTags,
} from './props.ts';
import { releaseDate } from './record.ts';
import { declaredLibraries, removePackageReferences, type XmlReference, xmlAttr } from './xml-edits.ts';

/**
 * Packages Omie removes by default (exact names or `*` globs): Google Mobile Services and Google
 * apps. Anything signed by Google's release certificate is removed too (see googleSigners).
 */
export const DEFAULT_GOOGLE_PACKAGES: readonly string[] = [
  'com.google.android.gms',
  'com.google.android.gms.*',
  'com.google.android.gsf',
  'com.google.android.gsf.*',
  'com.android.vending',
  'com.google.android.googlequicksearchbox',
  'com.google.android.setupwizard*',
  'com.google.android.webview',
  'com.google.android.trichromelibrary*',
  'com.android.chrome',
  'com.google.android.syncadapters.*',
  'com.google.android.backuptransport',
  'com.google.android.backup',
  'com.google.android.feedback',
  'com.google.android.partnersetup',
  'com.google.android.onetimeinitializer',
  'com.google.android.configupdater',
  'com.google.android.apps.*',
  // GMS configuration overlays (product/overlay/GmsConfigOverlay*.apk and the like on Pixels).
  'com.google.android.overlay.*',
  'com.google.android.youtube*',
  'com.google.android.gm',
  'com.google.android.calendar',
  'com.google.android.contacts',
  'com.google.android.dialer',
  'com.google.android.inputmethod.*',
  'com.google.android.tts',
  'com.google.android.marvin.talkback',
  'com.google.android.music',
  'com.google.android.videos',
  'com.google.android.keep',
  'com.google.android.play.games',
  'com.google.android.as',
  'com.google.android.as.oss',
  'com.google.android.projection.gearhead',
  'com.google.android.gsf.login',
  'com.google.android.ims',
  'com.google.android.soundpicker',
  'com.google.android.printservice.recommendation',
  'com.google.android.apps.restore',
  'com.google.ar.core',
  'com.google.ar.lens',
];

/** Props removed with the default Google set. */
export const DEFAULT_GOOGLE_PROPS: readonly string[] = [
  'ro.com.google.*',
  'ro.setupwizard.*',
  'ro.opa.*',
  'ro.error.receiver.system.apps',
];

/** Props forced on every Omie image (a release build that cannot be debugged into). */
export const ENFORCED_PROPS: Readonly<Record<string, string>> = {
  'ro.build.type': 'user',
  'ro.debuggable': '0',
  'ro.secure': '1',
  'ro.adb.secure': '1',
  'ro.control_privapp_permissions': 'enforce',
};

/** Directories whose XMLs configure packages (frameworks/base SystemConfig + default-permissions). */
const CONFIG_DIRS = ['etc/permissions', 'etc/sysconfig', 'etc/default-permissions', 'etc/preferred-apps'];

export type PartitionName =
  | 'system'
  | 'system_ext'
  | 'product'
  | 'vendor'
  | 'odm'
  | 'system_dlkm'
  | 'vendor_dlkm'
  | 'odm_dlkm';

/**
 * The partitions whose ro.product.<partition>.* init reads to derive ro.product.*
 * (property_service.cpp RO_PRODUCT_PROPS_ALLOWED_SOURCES): the product's identity goes there.
 * The kernel-module partitions (*_dlkm) only get release-keys tags, as sign_target_files_apks does.
 */
const IDENTITY_NAMESPACES: readonly PartitionName[] = ['system', 'system_ext', 'product', 'vendor', 'odm'];

export interface PartitionInput {
  name: PartitionName;
  fs: FsReader;
}

export interface ApkIdentity {
  package: string;
  versionCode: number;
  versionName: string | null;
  /** Signer certificate SHA-256 digests (v3 → v2 → v1 as apksigner reports them). */
  signers: string[];
  /** Whether the signatures verify. */
  verified: boolean;
  /** android:sharedUserId (members of one shared UID must share a signer). */
  sharedUserId?: string | null;
  /** A WebView provider: its manifest names the library WebViewFactory loads (com.android.webview.WebViewLibrary). */
  webviewProvider?: boolean;
}

/** An APEX's identity: apex_manifest.pb's name and version, the container's package and signers. */
export interface ApexIdentity {
  /** The APEX name (mount point /apex/<name>). */
  name: string;
  /** The container's package, what PackageManager lists (the name when the container has none). */
  package: string;
  version: number;
  signers: string[];
  verified: boolean;
  /** SHA-256 of apex_pubkey (the payload key), null without one. */
  payloadKeySha256: string | null;
}

export interface PlannedApex {
  path: string;
  name: string;
  package: string;
  version: number;
  signers: string[];
  payloadKeySha256: string | null;
  action: 'remove' | 'keep';
  reason: string;
}

/**
 * What the plan cannot do for the product as it stands: a Google Mainline module whose AOSP
 * module the product does not provide, a WebView or setup wizard removed with nothing to take its
 * place. The build refuses a plan that has any (a dry run prints them).
 */
export interface PlanRefusal {
  kind: 'mainline' | 'webview' | 'setup';
  /** The package removed, and where (`partition:path`). */
  package?: string;
  where?: string;
  /** Mainline: the AOSP module that must replace it. */
  replacement?: string;
  message: string;
}

export interface PlannedApk {
  path: string;
  package: string;
  versionName: string | null;
  signers: string[];
  action: 'remove' | 'keep';
  reason: string;
}

export interface PlannedRemoval {
  path: string;
  kind: 'apk-dir' | 'apk' | 'apex' | 'xml' | 'library' | 'file';
  reason: string;
  package?: string;
}

export interface PlannedAddition {
  path: string;
  kind: 'dir' | 'file';
  /** Host file to copy (APKs, overlays). */
  source?: string;
  /** Inline content (generated XMLs). */
  content?: string;
  mode: number;
  uid: number;
  gid: number;
  /** SELinux label from the partition's own file_contexts (null: none matched). */
  label: string | null;
  package?: string;
  sha256?: string;
  reason: string;
}

export interface PlannedXmlEdit {
  path: string;
  /** Packages whose references are cut (the apply step recomputes the text from these). */
  packages: string[];
  removed: XmlReference[];
}

export interface PlannedPropFile {
  path: string;
  edits: PropEdit[];
}

export interface PartitionPlan {
  partition: PartitionName;
  fs: 'ext4' | 'erofs';
  /** Where the partition is mounted on the device ("/" for a system-as-root system image). */
  mountPoint: string;
  /** Path of the partition's content inside the image ("/system" for system-as-root, else ""). */
  prefix: string;
  apks: PlannedApk[];
  apexes: PlannedApex[];
  removals: PlannedRemoval[];
  xmlEdits: PlannedXmlEdit[];
  additions: PlannedAddition[];
  props: PlannedPropFile[];
}

export interface Plan {
  schema: 'omie.plan/1';
  product: { name: string; version: string };
  partitions: PartitionPlan[];
  /** Packages removed, kept and added: APKs and APEXes (by the container's package). */
  removedPackages: string[];
  keptPackages: string[];
  addedPackages: string[];
  /** Why the build must not go ahead with this plan (empty when it can). */
  refusals: PlanRefusal[];
}

/** An extra file to place (e.g. a compiled overlay): the plan fills in label and parent dirs. */
export interface ExtraFile {
  partition: PartitionName;
  /** Path relative to the partition root, e.g. "overlay/OmieBranding.apk". */
  path: string;
  source?: string;
  content?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  package?: string;
  reason: string;
}

export interface PlanOptions {
  /** Extra signer digests to treat as Google's (the sample base's stand-in key, tests). */
  googleSigners?: string[];
  /** Reads an APK's identity; default: manifest + signatures via scripts/formats/apk. */
  identify?: (apkHostPath: string) => Promise<ApkIdentity>;
  /** Reads an APEX's identity; default: readApexIdentity. */
  identifyApex?: (apexHostPath: string) => Promise<ApexIdentity>;
  /** Google's Mainline modules and their AOSP replacements (spec/mainline-modules.yaml); none: no Mainline policy. */
  mainline?: readonly MainlineModule[];
  /** APEX packages that are Google's builds of Mainline modules (2.5/C-0-1's googleApexPatterns). */
  googleApexPatterns?: readonly string[];
  /** Keep Google's Mainline modules (2.5/C-0-1 waived) instead of replacing them. */
  keepGoogleMainline?: boolean;
  /**
   * Identities already read, by "partition:path" (filled as APKs are read): a second plan of the
   * same partitions (after re-signing) then reads no APK twice.
   */
  apkIdentities?: Map<string, ApkIdentity>;
  /** Files to add besides the product's apps (overlays…). */
  extraFiles?: ExtraFile[];
  /** Check each product app's APK against its pinned sha256 and signer (default true). */
  verifyApps?: boolean;
  onProgress?: ProgressFn;
}

/** Reads package identity and signer digests from an APK file. */
export async function readApkIdentity(path: string): Promise<ApkIdentity> {
  const zip = await ZipArchive.openFile(path);
  try {
    const m = zip.entry('AndroidManifest.xml');
    if (!m)
      throw new InputError(`${path}: APK has no AndroidManifest.xml`, {
        code: 'APK_NO_MANIFEST',
        context: { file: path },
      });
    // Identity needs resources.arsc only when versionName is a reference (@string/…): parsing a
    // large table (framework-res) for nothing costs time and tens of MiB.
    const manifestBytes = await zip.read(m);
    let manifest: ApkManifest = parseManifest(manifestBytes, null, path);
    const arscEntry = zip.entry('resources.arsc');
    if (arscEntry && manifest.versionName?.startsWith('@')) {
      try {
        manifest = parseManifest(manifestBytes, parseArsc(await zip.read(arscEntry), path), path);
      } catch {
        // An unreadable table leaves the reference as it is: identity does not need the label.
      }
    }
    const sig = await verifyApkSignatures(zip, {
      minSdk: manifest.minSdkVersion,
      targetSdk: manifest.targetSdkVersion,
      consultedOnly: true,
    });
    const webview = manifest.metaData.some((m) => m.name === WEBVIEW_LIBRARY_META_DATA);
    return {
      package: manifest.package,
      versionCode: manifest.versionCode,
      versionName: manifest.versionName,
      signers: sig.signers.map((s) => s.sha256.toLowerCase()),
      verified: sig.verified,
      sharedUserId: manifest.sharedUserId,
      ...(webview ? { webviewProvider: true } : {}),
    };
  } finally {
    await zip.close();
  }
}

/** Reads an APEX's identity (container and manifest; the payload is not opened). */
export async function readApexIdentity(path: string): Promise<ApexIdentity> {
  const info = await readApexInfo(path);
  return {
    name: info.name,
    package: info.packageName ?? info.name,
    version: info.version,
    signers: info.container.signers,
    verified: info.container.verified,
    payloadKeySha256: info.publicKeySha256,
  };
}

/** Google's setup wizards (GMS, Pixel), whose removal needs another way to finish setup. */
const SETUP_WIZARD = /^com\.google\.android\.(pixel\.)?setupwizard$/;
/** Google's feature flags in sysconfig XMLs (the check calls any com.google.* name Google's). */
const GOOGLE_FEATURE = /^com\.google\./;
/** The SettingsProvider defaults that start a device provisioned, with nothing to run at first boot. */
export const PROVISIONED_DEFAULTS = ['def_device_provisioned', 'def_user_setup_complete'] as const;

/** The default set of Google signer digests (spec/known-signers.yaml entries of Google) plus extras. */
export function googleSignerSet(extra: string[] = []): Set<string> {
  const known = defaultKnownSigners()
    .signers.filter((s) => s.id.startsWith('google') || s.aliases?.includes('google'))
    .map((s) => s.sha256);
  return new Set([...known, ...extra].map((s) => s.toLowerCase()));
}

/** Package matcher for exact names and `*` globs. */
export function packageMatcher(patterns: readonly string[]): (pkg: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const globs = patterns
    .filter((p) => p.includes('*'))
    .map(
      (p) =>
        new RegExp(
          `^${p
            .split('*')
            .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
            .join('.*')}$`,
        ),
    );
  return (pkg) => exact.has(pkg) || globs.some((g) => g.test(pkg));
}

interface PartCtx {
  input: PartitionInput;
  entries: FsEntry[];
  byPath: Map<string, FsEntry>;
  prefix: string;
  mountPoint: string;
  contexts: FileContexts | null;
  plan: PartitionPlan;
}

const OWN_CONTEXTS: Record<PartitionName, string> = {
  system: 'etc/selinux/plat_file_contexts',
  system_ext: 'etc/selinux/system_ext_file_contexts',
  product: 'etc/selinux/product_file_contexts',
  vendor: 'etc/selinux/vendor_file_contexts',
  odm: 'etc/selinux/odm_file_contexts',
  // Kernel-module partitions carry no file_contexts of their own (system's labels them).
  system_dlkm: 'etc/selinux/system_dlkm_file_contexts',
  vendor_dlkm: 'etc/selinux/vendor_dlkm_file_contexts',
  odm_dlkm: 'etc/selinux/odm_dlkm_file_contexts',
};

/** Computes the plan for a product over the opened partitions of its base. */
export async function makePlan(
  parts: PartitionInput[],
  product: ResolvedProduct,
  opts: PlanOptions = {},
): Promise<Plan> {
  const p = product.product;
  const identify = opts.identify ?? readApkIdentity;
  const googleSigners = googleSignerSet(opts.googleSigners);
  const removals = p.removals ?? { defaults: true, packages: [], patterns: [], keep: [] };
  const isListed = packageMatcher([
    ...(removals.defaults ? DEFAULT_GOOGLE_PACKAGES : []),
    ...removals.packages,
    ...removals.patterns,
  ]);
  const keep = new Set(removals.keep);

  // Open every partition: listing, layout, file_contexts.
  const ctxs: PartCtx[] = [];
  for (const input of parts) {
    const entries = await input.fs.list();
    const byPath = new Map(entries.map((e) => [e.path, e]));
    const sar = input.name === 'system' && byPath.has('/system/build.prop');
    const prefix = sar ? '/system' : '';
    const mountPoint = sar ? '/' : `/${input.name}`;
    ctxs.push({
      input,
      entries,
      byPath,
      prefix,
      mountPoint,
      contexts: null,
      plan: {
        partition: input.name,
        fs: input.fs.kind,
        mountPoint,
        prefix,
        apks: [],
        apexes: [],
        removals: [],
        xmlEdits: [],
        additions: [],
        props: [],
      },
    });
  }
  const sysCtx = ctxs.find((c) => c.input.name === 'system');
  const plat = sysCtx ? await readContexts(sysCtx, OWN_CONTEXTS.system) : null;
  for (const c of ctxs) {
    const own = c.input.name === 'system' ? null : await readContexts(c, OWN_CONTEXTS[c.input.name]);
    const list = [plat, own].filter((x): x is FileContexts => !!x);
    c.contexts = list.length ? FileContexts.concat(...list) : null;
  }

  // 1. APKs and APEXes, identified by manifest and signer: all of them first, as whether a
  //    Google Mainline module can go depends on the whole image (and the product).
  const tmp = await mkdtemp(join(tmpdir(), 'omie-plan-'));
  const identifyIn = async <T>(
    c: PartCtx,
    path: string,
    host: string,
    read: (host: string) => Promise<T>,
    what: string,
  ): Promise<T> => {
    await c.input.fs.copyOut(path, host);
    const id = await read(host).catch((err: unknown) => {
      throw new InputError(
        `${c.input.name}:${path}: cannot read the ${what}'s identity: ${(err as Error).message}`,
        {
          code: 'PLAN_APK_UNREADABLE',
          context: { partition: c.input.name, path },
          cause: err,
        },
      );
    });
    await rm(host, { force: true });
    return id;
  };
  const identifyApex = opts.identifyApex ?? readApexIdentity;
  const apkFiles: Array<{ c: PartCtx; e: FsEntry; id: ApkIdentity }> = [];
  const apexFiles: Array<{ c: PartCtx; e: FsEntry; id: ApexIdentity }> = [];
  try {
    const allApks = ctxs.flatMap((c) =>
      c.entries
        .filter(
          (e) => e.type === 'file' && e.path.endsWith('.apk') && !e.path.startsWith(`${c.prefix}/framework/`),
        )
        .map((e) => ({ c, e })),
    );
    const allApexes = ctxs.flatMap((c) =>
      c.entries
        .filter(
          (e) =>
            e.type === 'file' &&
            /\.c?apex$/.test(e.path) &&
            e.path.slice(0, e.path.lastIndexOf('/')) === `${rootOf(c, e.path).root}/apex`,
        )
        .map((e) => ({ c, e })),
    );
    const total = allApks.length + allApexes.length;
    let n = 0;
    for (const { c, e } of allApks) {
      n++;
      const cacheKey = `${c.input.name}:${e.path}`;
      const id =
        opts.apkIdentities?.get(cacheKey) ??
        (await identifyIn(c, e.path, join(tmp, `apk${n}.apk`), identify, 'APK'));
      opts.apkIdentities?.set(cacheKey, id);
      apkFiles.push({ c, e, id });
      opts.onProgress?.({ stage: 'plan apks', done: n, total, unit: 'items' });
    }
    for (const { c, e } of allApexes) {
      n++;
      apexFiles.push({
        c,
        e,
        id: await identifyIn(c, e.path, join(tmp, `apex${n}.apex`), identifyApex, 'APEX'),
      });
      opts.onProgress?.({ stage: 'plan apks', done: n, total, unit: 'items' });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }

  const refusals: PlanRefusal[] = [];
  const productPackages = new Set(product.apps.map((a) => a.package));
  const basePackages = new Set([...apkFiles.map((f) => f.id.package), ...apexFiles.map((f) => f.id.package)]);
  const mainline = opts.mainline ?? [];
  /** The verdict on one package: remove or keep, and why. */
  const decide = (
    pkg: string,
    kind: 'apk' | 'apex',
    signers: string[],
    where: string,
    apexName?: string,
  ): { action: 'remove' | 'keep'; reason: string } => {
    if (keep.has(pkg)) return { action: 'keep', reason: 'kept by product removals.keep' };
    const googleSigned = signers.some((s) => googleSigners.has(s));
    const module =
      googleMainlineModule(pkg, kind, mainline, opts.googleApexPatterns) ??
      // A Google-signed APEX is Google's build of the module its manifest names.
      (kind === 'apex' && googleSigned && apexName ? { google: pkg, aosp: apexName } : null);
    if (module && mainline.length) {
      if (opts.keepGoogleMainline)
        return { action: 'keep', reason: 'Google Mainline module, kept: the product waives 2.5/C-0-1' };
      if (!module.aosp)
        return { action: 'remove', reason: 'Google Mainline module the platform does not need' };
      if (productPackages.has(module.aosp))
        return {
          action: 'remove',
          reason: `Google Mainline module, replaced by the AOSP module ${module.aosp}`,
        };
      if (module.aosp !== pkg && basePackages.has(module.aosp))
        return {
          action: 'remove',
          reason: `Google Mainline module; the base has the AOSP module ${module.aosp}`,
        };
      refusals.push({
        kind: 'mainline',
        package: pkg,
        where,
        replacement: module.aosp,
        message:
          module.aosp === pkg
            ? `${pkg} (${where}) is signed by Google: provide a build of ${module.aosp} the partner signed in prebuilt-apps/ and the product's apps`
            : `${pkg} (${where}) is Google's build of a Mainline module: provide the AOSP module ${module.aosp} in prebuilt-apps/ and the product's apps`,
      });
      return {
        action: 'remove',
        reason: `Google Mainline module; its AOSP module ${module.aosp} is not provided`,
      };
    }
    if (isListed(pkg))
      return {
        action: 'remove',
        reason:
          removals.defaults && packageMatcher(DEFAULT_GOOGLE_PACKAGES)(pkg)
            ? 'default Google package set'
            : 'product removals',
      };
    if (googleSigned) return { action: 'remove', reason: "signed with Google's release certificate" };
    return { action: 'keep', reason: kind === 'apex' ? 'not a Google APEX' : 'not a Google package' };
  };

  const removedPkgs = new Set<string>();
  const keptPkgs = new Set<string>();
  for (const { c, e, id } of apkFiles) {
    const { action, reason } = decide(id.package, 'apk', id.signers, `${c.input.name}:${e.path}`);
    c.plan.apks.push({
      path: e.path,
      package: id.package,
      versionName: id.versionName,
      signers: id.signers,
      action,
      reason,
    });
    (action === 'remove' ? removedPkgs : keptPkgs).add(id.package);
    if (action === 'remove') {
      const dir = e.path.slice(0, e.path.lastIndexOf('/'));
      const isAppDir = new RegExp(`^${escapeRe(rootOf(c, dir).root)}/(priv-app|app)/[^/]+$`).test(dir);
      // An app folder holds one APK (plus oat/, lib/): remove the folder, unless others APKs share it.
      const siblings = c.entries.filter(
        (x) => x.path.startsWith(`${dir}/`) && x.path.endsWith('.apk') && x.path !== e.path,
      );
      c.plan.removals.push({
        path: isAppDir && siblings.length === 0 ? dir : e.path,
        kind: isAppDir && siblings.length === 0 ? 'apk-dir' : 'apk',
        reason: `${id.package}: ${reason}`,
        package: id.package,
      });
    }
  }
  for (const { c, e, id } of apexFiles) {
    const { action, reason } = decide(id.package, 'apex', id.signers, `${c.input.name}:${e.path}`, id.name);
    c.plan.apexes.push({
      path: e.path,
      name: id.name,
      package: id.package,
      version: id.version,
      signers: id.signers,
      payloadKeySha256: id.payloadKeySha256,
      action,
      reason,
    });
    (action === 'remove' ? removedPkgs : keptPkgs).add(id.package);
    if (action === 'remove')
      c.plan.removals.push({
        path: e.path,
        kind: 'apex',
        reason: `${id.package}: ${reason}`,
        package: id.package,
      });
  }
  for (const pkg of removedPkgs) keptPkgs.delete(pkg);
  const isRemoved = (pkg: string) => removedPkgs.has(pkg) || (isListed(pkg) && !keep.has(pkg));
  // Google's feature flags (<feature name="com.google.android.feature.…">) go with Google's apps.
  const isRemovedFeature = (name: string) => removals.defaults && GOOGLE_FEATURE.test(name);

  // A WebView and a way through first-boot setup must remain when Google's go.
  const roles = new Set(product.apps.map((a) => a.role));
  const kept = apkFiles.filter((f) => !removedPkgs.has(f.id.package));
  const where = (f: { c: PartCtx; e: FsEntry }) => `${f.c.input.name}:${f.e.path}`;
  const goneWebview = apkFiles.filter((f) => f.id.webviewProvider && removedPkgs.has(f.id.package));
  if (goneWebview.length && !roles.has('webview') && !kept.some((f) => f.id.webviewProvider))
    for (const f of goneWebview)
      refusals.push({
        kind: 'webview',
        package: f.id.package,
        where: where(f),
        message: `${f.id.package} (${where(f)}) is the WebView provider and is removed: add a WebView provider (a prebuilt app with role: webview) to the product's apps`,
      });
  const goneSetup = apkFiles.filter((f) => SETUP_WIZARD.test(f.id.package) && removedPkgs.has(f.id.package));
  const provisioned = product.overlays.some(
    (o) =>
      o.target === 'com.android.providers.settings' &&
      PROVISIONED_DEFAULTS.every((name) =>
        o.values.some((v) => v.name === name && (v.value === true || v.value === 'true')),
      ),
  );
  if (
    goneSetup.length &&
    !roles.has('setup') &&
    !provisioned &&
    !kept.some((f) => f.id.package === 'com.android.provision')
  )
    for (const f of goneSetup)
      refusals.push({
        kind: 'setup',
        package: f.id.package,
        where: where(f),
        message: `${f.id.package} (${where(f)}) finishes first-boot setup and is removed: add AOSP's Provision (com.android.provision), an app with role: setup, or an overlay of com.android.providers.settings setting def_device_provisioned and def_user_setup_complete to true`,
      });

  // 2. Google libraries and configuration XMLs; references to removed packages in the others.
  for (const c of ctxs) {
    for (const e of c.entries) {
      if (e.type !== 'file') continue;
      const rel = e.path.slice(rootOf(c, e.path).root.length + 1);
      if (/^framework\/(.*\/)?com\.google\.[^/]*$/.test(rel)) {
        c.plan.removals.push({ path: e.path, kind: 'library', reason: 'Google shared library' });
        continue;
      }
      if (!CONFIG_DIRS.some((d) => rel.startsWith(`${d}/`)) || !rel.endsWith('.xml')) continue;
      const name = rel.slice(rel.lastIndexOf('/') + 1);
      const text = (await c.input.fs.readFile(e.path)).toString('utf8');
      const libs = declaredLibraries(text, e.path);
      if (/google|gms/i.test(name) || libs.some((l) => l.startsWith('com.google.'))) {
        c.plan.removals.push({
          path: e.path,
          kind: 'xml',
          reason: libs.length ? `declares Google library ${libs.join(', ')}` : 'Google configuration XML',
        });
        continue;
      }
      const r = removePackageReferences(text, isRemoved, e.path, isRemovedFeature);
      if (r.removed.length === 0) continue;
      if (r.remainingChildren === 0)
        c.plan.removals.push({ path: e.path, kind: 'xml', reason: 'only referenced removed packages' });
      else
        c.plan.xmlEdits.push({
          path: e.path,
          packages: [...new Set(r.removed.map((x) => x.package))].sort(),
          removed: r.removed,
        });
    }
  }

  // 2b. OTA certificates that are public test keys (a test-keys build's otacerts.zip).
  for (const c of ctxs)
    for (const r of [{ root: c.prefix }, ...nestedRoots(c)]) {
      const path = `${r.root}/${OTACERTS_PATH}`;
      if (c.byPath.get(path)?.type !== 'file') continue;
      const keys = await otacertsTestKeys(await c.input.fs.readFile(path), `${c.input.name}:${path}`);
      if (keys.length)
        c.plan.removals.push({
          path,
          kind: 'file',
          reason: `OTA certificate(s) ${keys.join(', ')}: public test key(s), anyone could sign an update this device installs (no OTA is accepted until the partner's OTA certificate is written)`,
        });
    }

  // 3. The product's apps, with allowlists.
  const personalClouds = product.apps.filter((a) => a.role === 'personal-cloud');
  if (product.apps.length && personalClouds.length !== 1)
    throw new InputError(
      `product ${p.name} must name exactly one personal-cloud app, found ${personalClouds.length}`,
      {
        code: 'PLAN_PERSONAL_CLOUD',
        context: { apps: personalClouds.map((a) => a.name) },
        hint: 'set role: personal-cloud on exactly one prebuilt app',
      },
    );
  const added: string[] = [];
  for (const app of product.apps) {
    const c = ctxs.find((x) => x.input.name === app.partition);
    if (!c)
      throw new InputError(
        `app ${app.name} goes on partition ${app.partition}, which the base does not have`,
        {
          code: 'PLAN_NO_PARTITION',
          context: { app: app.name, partition: app.partition, have: ctxs.map((x) => x.input.name) },
          hint: `set partition: to one of ${ctxs.map((x) => x.input.name).join(', ')} in prebuilt-apps/${app.name}/app.yaml`,
        },
      );
    const sha256 = await verifyApp(app, opts.verifyApps !== false ? identify : null, opts.identifyApex);
    /** The app's own file (APK or APEX) at `path`, as the product pinned it. */
    const appFile = (path: string, reason: string): Omit<PlannedAddition, 'label'> => ({
      path,
      kind: 'file',
      source: app.apkPath,
      mode: 0o644,
      uid: 0,
      gid: 0,
      package: app.package,
      sha256,
      reason,
    });
    if (app.kind === 'apex') {
      // apexd activates the preinstalled APEXes of <partition>/apex/, by file; AOSP names the
      // file after the module.
      // The base's own build of the module goes (two APEXes of one name and apexd activates neither).
      for (const f of apexFiles) {
        const planned = f.c.plan.apexes.find((x) => x.path === f.e.path);
        if (f.id.package !== app.package || planned?.action !== 'keep') continue;
        planned.action = 'remove';
        planned.reason = `replaced by the product's ${app.name}`;
        f.c.plan.removals.push({
          path: f.e.path,
          kind: 'apex',
          reason: `${app.package}: ${planned.reason}`,
          package: app.package,
        });
      }
      const ext = app.apkPath.endsWith('.capex') ? 'capex' : 'apex';
      addFile(c, appFile(`${c.prefix}/apex/${app.package}.${ext}`, `APEX ${app.name}`));
      added.push(app.package);
      continue;
    }
    const dir = `${c.prefix}/${app.privileged ? 'priv-app' : 'app'}/${app.name}`;
    if (c.byPath.has(dir) && !c.plan.removals.some((r) => r.path === dir))
      c.plan.removals.push({
        path: dir,
        kind: 'file',
        reason: `replaced by ${app.name}`,
        package: app.package,
      });
    addFile(c, appFile(`${dir}/${app.name}.apk`, `app ${app.name}`));
    if (app.privileged)
      addFile(c, {
        path: `${c.prefix}/etc/permissions/privapp-permissions-${app.package}.xml`,
        kind: 'file',
        content: privappXml(app),
        mode: 0o644,
        uid: 0,
        gid: 0,
        package: app.package,
        reason: `privileged permission allowlist of ${app.name}`,
      });
    if (app.defaultPermissions.length)
      addFile(c, {
        path: `${c.prefix}/etc/default-permissions/default-permissions-${app.package}.xml`,
        kind: 'file',
        content: defaultPermissionsXml(app),
        mode: 0o644,
        uid: 0,
        gid: 0,
        package: app.package,
        reason: `default-granted permissions of ${app.name}`,
      });
    if (app.role === 'personal-cloud')
      addFile(c, {
        path: `${c.prefix}/etc/sysconfig/omie-personal-cloud.xml`,
        kind: 'file',
        content: personalCloudXml(app),
        mode: 0o644,
        uid: 0,
        gid: 0,
        package: app.package,
        reason: `${app.name} is the backup transport and default sync provider`,
      });
    added.push(app.package);
  }
  for (const x of opts.extraFiles ?? []) {
    const c = ctxs.find((y) => y.input.name === x.partition);
    if (!c)
      throw new InputError(`extra file ${x.path}: no partition ${x.partition} in the base`, {
        code: 'PLAN_NO_PARTITION',
      });
    addFile(c, {
      path: `${c.prefix}/${x.path.replace(/^\/+/, '')}`,
      kind: 'file',
      source: x.source,
      content: x.content,
      mode: x.mode ?? 0o644,
      uid: x.uid ?? 0,
      gid: x.gid ?? 0,
      package: x.package,
      reason: x.reason,
    });
    if (x.package) added.push(x.package);
  }

  // 4. Properties.
  await planProps(ctxs, product, isRemoved, removals.defaults);

  for (const c of ctxs) {
    c.plan.removals.sort((a, b) => (a.path < b.path ? -1 : 1));
    c.plan.additions.sort((a, b) => (a.path < b.path ? -1 : 1));
  }
  return {
    schema: 'omie.plan/1',
    product: { name: p.name, version: p.version },
    partitions: ctxs.map((c) => c.plan),
    removedPackages: [...removedPkgs].sort(),
    keptPackages: [...keptPkgs].sort(),
    addedPackages: [...new Set(added)].sort(),
    refusals,
  };
}

async function readContexts(c: PartCtx, rel: string): Promise<FileContexts | null> {
  const path = `${c.prefix}/${rel}`;
  if (!c.byPath.has(path)) return null;
  return FileContexts.parse((await c.input.fs.readFile(path)).toString('utf8'), `${c.input.name}:${path}`);
}

/**
 * Partitions a GSI keeps inside system.img (/system/product, /system/system_ext, with /product
 * and /system_ext symlinks to them) when the build has no separate image for them: their apps,
 * XMLs and build.prop sit under these roots, laid out as on their own partition.
 */
function nestedRoots(c: PartCtx): Array<{ root: string; name: PartitionName }> {
  if (c.input.name !== 'system' || c.prefix !== '/system') return [];
  return (['system_ext', 'product'] as const)
    .filter((n) => c.byPath.get(`/system/${n}`)?.type === 'dir')
    .map((n) => ({ root: `/system/${n}`, name: n }));
}

/** The partition root a path lives under: a nested one (GSI) or the partition's own. */
function rootOf(c: PartCtx, path: string): { root: string; name: PartitionName } {
  return nestedRoots(c).find((r) => path.startsWith(`${r.root}/`)) ?? { root: c.prefix, name: c.input.name };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Adds a file and any missing parent directories, labelling each from the partition's file_contexts. */
function addFile(c: PartCtx, a: Omit<PlannedAddition, 'label'>): void {
  const parts = a.path.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const existing = c.byPath.get(dir);
    const removed = c.plan.removals.some((r) => r.path === dir || dir.startsWith(`${r.path}/`));
    if ((existing && !removed) || c.plan.additions.some((x) => x.path === dir)) continue;
    c.plan.additions.push({
      path: dir,
      kind: 'dir',
      mode: 0o755,
      uid: 0,
      gid: 0,
      label: labelFor(c, dir, 'dir'),
      reason: `parent of ${a.path}`,
    });
  }
  const i = c.plan.additions.findIndex((x) => x.path === a.path);
  const full: PlannedAddition = { ...a, label: labelFor(c, a.path, 'file') };
  if (i >= 0) c.plan.additions[i] = full;
  else c.plan.additions.push(full);
  if (
    c.byPath.has(a.path) &&
    !c.plan.removals.some((r) => r.path === a.path || a.path.startsWith(`${r.path}/`))
  )
    c.plan.removals.push({ path: a.path, kind: 'file', reason: `replaced (${a.reason})` });
}

/** Label for an image path: its device path looked up in file_contexts, else its parent's label. */
function labelFor(c: PartCtx, path: string, type: 'file' | 'dir'): string | null {
  const device = c.mountPoint === '/' ? path : `${c.mountPoint}${path}`;
  const l = c.contexts?.lookup(device, type);
  if (l) return l;
  for (let p = path.slice(0, path.lastIndexOf('/')) || '/'; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
    const e = c.byPath.get(p);
    if (e?.label) return e.label;
    if (p === '/') return null;
  }
}

/** Checks an app's APK against its pinned sha256 and, with `identify`, its package and signer. */
export async function verifyApp(
  app: ResolvedApp,
  identify: ((p: string) => Promise<ApkIdentity>) | null,
  identifyApex: (p: string) => Promise<ApexIdentity> = readApexIdentity,
): Promise<string> {
  const bytes = await readFile(app.apkPath).catch(() => {
    throw new InputError(`APK of ${app.name} not found: ${app.apkPath}`, {
      code: 'APP_APK_MISSING',
      context: { app: app.name, file: app.apkPath },
      hint: 'generated: true apps are built by `omie sample-apps`',
    });
  });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (!identify) return sha256;
  const pinned =
    'sha256' in app.apk
      ? app.apk.sha256
      : await readFile(`${app.apkPath}.sha256`, 'utf8').then(
          (s) => s.trim(),
          () => null,
        );
  if (pinned && pinned.toLowerCase() !== sha256)
    throw new VerificationError(
      'apk-pin',
      `${app.name}: APK sha256 ${sha256} does not match the pinned ${pinned}`,
      {
        context: { app: app.name, file: app.apkPath, expected: pinned, found: sha256 },
        hint: 'regenerate the APK or update the pin in app.yaml',
      },
    );
  // An APEX's package is its container's; its signer the container's.
  const id =
    app.kind === 'apex'
      ? await identifyApex(app.apkPath).then((x) => ({
          package: x.package,
          signers: x.signers,
          verified: x.verified,
        }))
      : await identify(app.apkPath);
  if (id.package !== app.package)
    throw new VerificationError(
      'apk-identity',
      `${app.name}: APK package ${id.package} is not the declared ${app.package}`,
      {
        context: { app: app.name, expected: app.package, found: id.package },
      },
    );
  const expected =
    'sha256' in app.signer
      ? app.signer.sha256.map((s) => s.toLowerCase())
      : [await certSha256(openKeys(app.signer.key).apk.certPem)];
  if (!id.verified || !id.signers.some((s) => expected.includes(s)))
    throw new VerificationError(
      'apk-signer',
      `${app.name}: APK signer ${id.signers.join(', ') || 'none'} is not the pinned ${expected.join(', ')}`,
      {
        context: { app: app.name, expected, found: id.signers, verified: id.verified },
      },
    );
  return sha256;
}

const XML_HEAD = (what: string) =>
  `<?xml version="1.0" encoding="utf-8"?>\n<!-- Generated by Omie Kit: ${what} -->\n`;

export function privappXml(app: Pick<ResolvedApp, 'package' | 'name' | 'privilegedPermissions'>): string {
  const perms = [...app.privilegedPermissions].sort();
  return `${XML_HEAD(`prebuilt-apps/${app.name}/app.yaml`)}<permissions>
    <privapp-permissions package="${xmlAttr(app.package)}">
${perms.map((p) => `        <permission name="${xmlAttr(p)}"/>\n`).join('')}    </privapp-permissions>
</permissions>
`;
}

export function defaultPermissionsXml(
  app: Pick<ResolvedApp, 'package' | 'name' | 'defaultPermissions'>,
): string {
  const perms = [...app.defaultPermissions].sort();
  return `${XML_HEAD(`prebuilt-apps/${app.name}/app.yaml`)}<exceptions>
    <exception package="${xmlAttr(app.package)}">
${perms.map((p) => `        <permission name="${xmlAttr(p)}" fixed="false"/>\n`).join('')}    </exception>
</exceptions>
`;
}

/** Allowlists the personal cloud as a backup transport and keeps it running (sysconfig XML). */
export function personalCloudXml(app: Pick<ResolvedApp, 'package' | 'name'>): string {
  return `${XML_HEAD(`personal cloud ${app.name}`)}<config>
    <backup-transport-whitelisted-service service="${xmlAttr(app.package)}/.BackupTransportService" />
    <allow-in-power-save package="${xmlAttr(app.package)}" />
    <system-user-whitelisted-app package="${xmlAttr(app.package)}" />
</config>
`;
}

/**
 * The files of the planned partitions that `match` (their path inside the image, under the
 * partition's prefix), each with the reader of its partition.
 */
export async function* planFiles(
  plan: Plan,
  readers: ReadonlyMap<string, FsReader>,
  match: (path: string, part: PartitionPlan) => boolean,
): AsyncGenerator<{ part: PartitionPlan; fs: FsReader; path: string }> {
  for (const part of plan.partitions) {
    const fs = readers.get(part.partition);
    if (!fs) continue;
    for (const e of await fs.list())
      if (e.type === 'file' && e.path.startsWith(`${part.prefix}/`) && match(e.path, part))
        yield { part, fs, path: e.path };
  }
}

/**
 * Names of the public test keys among the certificates of an otacerts.zip (PEM or DER entries,
 * as AOSP's releasetools write them). An unreadable archive is not judged (nothing to verify with).
 */
export async function otacertsTestKeys(zipBytes: Buffer, name: string): Promise<string[]> {
  const known = defaultKnownSigners();
  const out: string[] = [];
  let zip: ZipArchive;
  try {
    zip = await ZipArchive.open(bufferSource(zipBytes, name));
  } catch {
    return [];
  }
  for (const e of zip.entries) {
    if (e.name.endsWith('/')) continue;
    let sha: string;
    try {
      sha = certSha256Of(await zip.read(e, 1024 * 1024));
    } catch {
      continue;
    }
    const k = known.lookup(sha);
    if (k?.kind === 'public-test-key') out.push(`${e.name} (${k.name})`);
  }
  return out;
}

/** Property files per partition, relative to its prefix, in the order init loads them. */
const PROP_FILES = ['etc/prop.default', 'build.prop', 'etc/build.prop', 'default.prop'];

async function planProps(
  ctxs: PartCtx[],
  product: ResolvedProduct,
  isRemoved: (pkg: string) => boolean,
  defaults: boolean,
): Promise<void> {
  const p = product.product;
  const id: BuildIdentity = p.identity;
  const removePatterns = [...(defaults ? DEFAULT_GOOGLE_PROPS : []), ...p.properties.remove];
  const sets: Record<string, string> = {
    ...p.properties.set,
    'ro.omie.version': p.version,
    ...ENFORCED_PROPS,
  };
  const files: Array<{ c: PartCtx; part: PartitionName; path: string; text: string }> = [];
  for (const c of ctxs)
    for (const r of [{ root: c.prefix, name: c.input.name }, ...nestedRoots(c)])
      for (const rel of PROP_FILES) {
        const path = `${r.root}/${rel}`;
        if (c.byPath.get(path)?.type === 'file')
          files.push({ c, part: r.name, path, text: (await c.input.fs.readFile(path)).toString('utf8') });
      }
  // Each partition's own build.prop (not prop.default): where its namespace's identity keys go
  // when the base lacks them (a GSI's system has no ro.product.system.* of the product's).
  const own = new Map<PartitionName, (typeof files)[number]>();
  for (const f of files) if (/\/build\.prop$/.test(f.path) && !own.has(f.part)) own.set(f.part, f);
  const main =
    files.find((f) => f.c.input.name === 'system' && f.path.endsWith('/build.prop')) ??
    files.find((f) => f.path.endsWith('/build.prop'));
  const sysText = main?.text ?? '';
  const fallback = {
    release:
      getProp(sysText, 'ro.build.version.release') ??
      getProp(sysText, 'ro.system.build.version.release') ??
      '0',
    buildId: getProp(sysText, 'ro.build.id') ?? getProp(sysText, 'ro.system.build.id') ?? 'UNKNOWN',
    incremental:
      getProp(sysText, 'ro.build.version.incremental') ??
      getProp(sysText, 'ro.system.build.version.incremental') ??
      '0',
  };
  const present = new Set<string>();
  const byFile = new Map<string, PropEdit[]>();
  for (const f of files) {
    for (const e of parseProps(f.text)) present.add(e.key);
    byFile.set(
      `${f.c.input.name}:${f.path}`,
      propEditsFor(f.text, f.part, id, removePatterns, sets, isRemoved, fallback, {
        complete: own.get(f.part) === f,
        main: main === f,
        release: { version: p.version, dateUtc: releaseDate() },
      }),
    );
  }
  if (main) {
    const edits = byFile.get(`${main.c.input.name}:${main.path}`)!;
    for (const [k, v] of Object.entries(sets))
      if (!present.has(k))
        edits.push({
          op: 'set',
          key: k,
          value: v,
          reason: ENFORCED_PROPS[k] !== undefined ? 'enforced on Omie images' : 'product properties',
        });
  }
  for (const f of files) {
    const edits = byFile.get(`${f.c.input.name}:${f.path}`)!;
    if (edits.length) f.c.plan.props.push({ path: f.path, edits });
  }
}

/** What stamps a build as one Omie release: the product version, and its date when given. */
export interface OmieRelease {
  version: string;
  /** ro.build.date.utc of the release (seconds); undefined keeps the base's. */
  dateUtc?: number;
}

/**
 * The build's ro.build.version.incremental: the base's, then the product version, so that each
 * release has a fingerprint of its own (an OTA's pre-build names the one it updates).
 * Characters a fingerprint cannot hold become `_`.
 */
export function omieIncremental(base: string, version: string): string {
  return `${base}.omie-${version}`.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** ro.build.date as the build system writes it (`date -d @<utc>`, in UTC): "Mon Feb  5 12:00:00 UTC 2024". */
export function buildDate(utc: number): string {
  const d = new Date(utc * 1000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][
    d.getUTCMonth()
  ];
  const time = d.toISOString().slice(11, 19);
  return `${day} ${month} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} UTC ${d.getUTCFullYear()}`;
}

/** The identity fields of every partition namespace (ro.product.<partition>.<field>). */
const IDENTITY_FIELDS = ['brand', 'manufacturer', 'model', 'device', 'name'] as const;

/**
 * Property edits for one file. `part` is the partition name used in namespaced keys
 * (ro.product.<part>.brand, ro.<part>.build.fingerprint). Every identity key and fingerprint the
 * file has becomes the product's, with the release-keys tags of a release build (what AOSP's
 * sign_target_files_apks does to a test-keys build's tags). With `complete` (the partition's own
 * build.prop), the keys of its namespace it lacks are added; with `main` (the system build.prop,
 * loaded first), so are ro.product.<field>, ro.build.fingerprint and ro.build.tags themselves:
 * init derives those only when unset, from the first partition of
 * ro.product.property_source_order that sets them, which could be a vendor image the build
 * does not touch, so they are set outright.
 */
export function propEditsFor(
  text: string,
  part: PartitionName,
  id: BuildIdentity,
  removePatterns: readonly string[],
  sets: Readonly<Record<string, string>>,
  isRemovedPackage: (pkg: string) => boolean,
  fallback: { release: string; buildId: string; incremental: string },
  opts: { complete?: boolean; main?: boolean; release?: OmieRelease } = {},
): PropEdit[] {
  const props = parseProps(text);
  const edits: PropEdit[] = [];
  const keys = [...new Set(props.map((x) => x.key))];
  const value = (k: string) => getProp(text, k);
  for (const k of keys) {
    const pat = removePatterns.find((r) => propPatternMatches(r, k));
    if (pat) edits.push({ op: 'remove', key: k, reason: `matches ${pat}` });
    else if (isRemovedPackage(value(k) ?? ''))
      edits.push({ op: 'remove', key: k, reason: `names removed package ${value(k)}` });
  }
  const removedKeys = new Set(edits.map((e) => e.key));
  const set = (k: string, v: string, reason: string) => {
    if (removedKeys.has(k)) return;
    const prev = edits.findIndex((e) => e.op === 'set' && e.key === k);
    if (prev >= 0) edits[prev] = { op: 'set', key: k, value: v, reason };
    else if (value(k) !== v) edits.push({ op: 'set', key: k, value: v, reason });
  };
  const release =
    value(`ro.${part}.build.version.release`) ?? value('ro.build.version.release') ?? fallback.release;
  const buildId = value(`ro.${part}.build.id`) ?? value('ro.build.id') ?? fallback.buildId;
  const baseIncremental =
    value(`ro.${part}.build.version.incremental`) ??
    value('ro.build.version.incremental') ??
    fallback.incremental;
  const identity = IDENTITY_NAMESPACES.includes(part);
  // Only the namespaces that carry the product's identity are stamped as the Omie release: a
  // kernel-module partition keeps its own fingerprint, incremental and date (tags aside).
  const stamp = identity ? opts.release : undefined;
  const incremental = stamp ? omieIncremental(baseIncremental, stamp.version) : baseIncremental;
  const fp = buildFingerprint(id, release, buildId, incremental);
  const required = new Set<string>();
  if (opts.complete && identity) {
    for (const field of IDENTITY_FIELDS) required.add(`ro.product.${part}.${field}`);
    required.add(`ro.${part}.build.fingerprint`);
  }
  if (opts.main) {
    for (const field of IDENTITY_FIELDS) required.add(`ro.product.${field}`);
    required.add('ro.build.fingerprint');
    required.add('ro.build.tags');
  }
  const added = (k: string) => (keys.includes(k) ? '' : ' (added: the base lacks it)');
  for (const k of [...keys, ...[...required].filter((x) => !keys.includes(x))]) {
    const field = /^ro\.product\.(?:[a-z0-9_]+\.)?(brand|manufacturer|model|device|name)$/.exec(k)?.[1] as
      | (typeof IDENTITY_FIELDS)[number]
      | undefined;
    const fingerprint = /^ro\.(?:[a-z0-9_]+\.)?build\.fingerprint$/.test(k);
    if (field && identity) set(k, id[field], `product identity${added(k)}`);
    else if (fingerprint && identity) set(k, fp, `fingerprint of the Omie build${added(k)}`);
    else if (fingerprint) set(k, releaseTags(value(k) ?? '', '/'), 'release build');
    else if (/^ro\.(?:[a-z0-9_]+\.)?build\.thumbprint$/.test(k))
      set(k, releaseTags(value(k) ?? '', '/'), 'release build');
    else if (/^ro\.(?:[a-z0-9_]+\.)?build\.tags$/.test(k)) set(k, 'release-keys', `release build${added(k)}`);
    else if (identity && /^ro\.(?:[a-z0-9_]+\.)?build\.type$/.test(k)) set(k, 'user', 'release build');
    else if (stamp && /^ro\.(?:[a-z0-9_]+\.)?build\.version\.incremental$/.test(k))
      set(k, incremental, 'the Omie release: its fingerprint differs from every other release');
    else if (stamp?.dateUtc !== undefined && /^ro\.(?:[a-z0-9_]+\.)?build\.date\.utc$/.test(k))
      set(k, String(stamp.dateUtc), 'the release date (SOURCE_DATE_EPOCH)');
    else if (stamp?.dateUtc !== undefined && /^ro\.(?:[a-z0-9_]+\.)?build\.date$/.test(k))
      set(k, buildDate(stamp.dateUtc), 'the release date (SOURCE_DATE_EPOCH)');
  }
  if (keys.includes('ro.build.description'))
    set(
      'ro.build.description',
      buildDescription(id, release, buildId, incremental),
      'description of the Omie build',
    );
  if (keys.includes('ro.build.display.id'))
    set(
      'ro.build.display.id',
      buildDescription(id, release, buildId, incremental),
      'description of the Omie build',
    );
  if (keys.includes('ro.build.flavor')) set('ro.build.flavor', `${id.name}-user`, 'release build');
  if (keys.includes('ro.build.product')) set('ro.build.product', id.device, 'product identity');
  for (const [k, v] of Object.entries(sets))
    if (keys.includes(k))
      set(k, v, ENFORCED_PROPS[k] !== undefined ? 'enforced on Omie images' : 'product properties');
  return edits;
}

/** A readable table of the plan (what `omie build --dry-run` prints). */
export function renderPlan(plan: Plan): string {
  const out: string[] = [`Plan for ${plan.product.name} ${plan.product.version}`];
  const pad = (s: string, n: number) => `${s.length >= n ? s : s + ' '.repeat(n - s.length)} `;
  const mode = (m: number) => `0${m.toString(8)}`;
  for (const p of plan.partitions) {
    out.push('', `== ${p.partition} (${p.fs}, mounted at ${p.mountPoint}) ==`);
    if (p.apks.length) {
      out.push('APKs:');
      for (const a of p.apks)
        out.push(`  ${pad(a.action.toUpperCase(), 7)}${pad(a.package, 44)}${pad(a.path, 60)}${a.reason}`);
    }
    if (p.apexes.length) {
      out.push('APEXes:');
      for (const a of p.apexes)
        out.push(
          `  ${pad(a.action.toUpperCase(), 7)}${pad(`${a.package} (${a.name} ${a.version})`, 44)}${pad(a.path, 60)}${a.reason}`,
        );
    }
    if (p.removals.length) {
      out.push('Remove:');
      for (const r of p.removals) out.push(`  - ${pad(r.kind, 8)}${pad(r.path, 72)}${r.reason}`);
    }
    if (p.xmlEdits.length) {
      out.push('Edit XML:');
      for (const x of p.xmlEdits) {
        out.push(`  ~ ${x.path}`);
        for (const r of x.removed)
          out.push(`      line ${r.line}: drop <${r.tag} ${r.attribute}="${r.value}">`);
      }
    }
    if (p.additions.length) {
      out.push('Add:');
      for (const a of p.additions)
        out.push(
          `  + ${pad(a.kind, 5)}${pad(a.path, 72)}${mode(a.mode)} ${a.uid}:${a.gid} ${a.label ?? '(no label)'}`,
        );
    }
    if (p.props.length) {
      out.push('Properties:');
      for (const f of p.props) {
        out.push(`  ${f.path}`);
        for (const e of f.edits)
          out.push(
            e.op === 'set'
              ? `      set    ${e.key}=${e.value}   (${e.reason})`
              : `      remove ${e.key}   (${e.reason})`,
          );
      }
    }
  }
  out.push('', `Removed packages (${plan.removedPackages.length}): ${plan.removedPackages.join(', ')}`);
  out.push(`Kept packages (${plan.keptPackages.length}): ${plan.keptPackages.join(', ')}`);
  out.push(`Added packages (${plan.addedPackages.length}): ${plan.addedPackages.join(', ')}`);
  if (plan.refusals.length) {
    out.push('', `The build refuses this plan (${plan.refusals.length}):`);
    for (const r of plan.refusals) out.push(`  ! ${r.message}`);
  }
  return out.join('\n');
}
