/**
 * `inspectApk(path)`: everything Omie needs to know about one APK — identity, SDKs, permissions
 * with their platform protection levels, components, signatures per scheme (with known signers),
 * DEX classes scanned for tracker SDKs, native ABIs and size — as one stable JSON shape
 * (ApkReport, schema "omie.apk/1"). Signature failures are reported in the shape, not thrown.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { FormatError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { parseArsc, type ResourceTable } from './arsc.ts';
import { dexEntryNames, parseDexClasses } from './dex.ts';
import { defaultKnownSigners, type KnownSigner, type KnownSigners } from './known-signers.ts';
import { type ApkManifest, type Component, parseManifest } from './manifest.ts';
import {
  type CertificateInfo,
  type LineageNode,
  type SchemeName,
  type SchemeReport,
  verifyApkSignatures,
} from './signing/index.ts';
import { defaultTrackers, type TrackerDatabase, type TrackerMatch } from './trackers.ts';
import { ZipArchive } from './zip.ts';

export const FRAMEWORK_RES_APK = '/usr/share/android-framework-res/framework-res.apk';
/** Largest DEX we load to list classes (real ones are up to ~15 MiB; 64K-method limit). */
const MAX_DEX = 256 * 1024 * 1024;

/** A permission the APK requests, with the platform's protection level when known. */
export interface RequestedPermission {
  name: string;
  maxSdkVersion: number | null;
  /** Protection level declared by the platform (framework-res) or by this APK; null when unknown (custom). */
  protectionLevel: string | null;
  /** Runtime permission the user must grant. */
  dangerous: boolean;
  /** signature or signatureOrSystem base level: only same-signer or platform apps get it. */
  signature: boolean;
  /** "privileged" flag: granted to priv-apps on the allowlist. */
  privileged: boolean;
}

/** Certificate as printed by apksigner, plus the name of a known signer (test keys, Google). */
export interface ApkSigner extends CertificateInfo {
  known: Pick<KnownSigner, 'id' | 'name' | 'kind'> | null;
}

/**
 * JSON shape of `omie inspect <apk> --json` (`result`). Stable: fields are only ever added.
 */
export interface ApkReport {
  /** Shape version. */
  schema: 'omie.apk/1';
  file: string;
  /** File size in bytes. */
  size: number;
  /** SHA-256 of the whole file (hex). */
  sha256: string;
  identity: {
    package: string;
    versionCode: number;
    /** versionCodeMajor << 32 | versionCode, what the platform compares on update. */
    longVersionCode: number;
    versionName: string | null;
    /** Application label resolved through resources.arsc (default configuration). */
    label: string | null;
    sharedUserId: string | null;
  };
  sdk: {
    min: number;
    target: number;
    max: number | null;
    compile: number | null;
    compileCodename: string | null;
  };
  application: ApkManifest['application'];
  permissions: {
    requested: RequestedPermission[];
    /** Permissions this APK defines. */
    declared: ApkManifest['permissions'];
    /** Names of requested permissions that are dangerous (runtime). */
    dangerous: string[];
    /** Names of requested permissions that are signature-level and/or privileged. */
    signatureOrPrivileged: string[];
  };
  components: Component[];
  /** Exported components (reachable by other apps). */
  exportedComponents: number;
  usesLibraries: ApkManifest['usesLibraries'];
  metaData: ApkManifest['metaData'];
  queries: ApkManifest['queries'];
  signatures: {
    /** apksigner's overall verdict. */
    verified: boolean;
    schemes: Record<SchemeName, SchemeReport>;
    /** Effective signers (v3 if present, else v2, else v1), with known-signer names. */
    signers: ApkSigner[];
    lineage: Array<LineageNode & { known: ApkSigner['known'] }> | null;
    rotationMinSdk: number | null;
    otherBlockIds: string[];
    problems: string[];
  };
  dex: {
    files: Array<{ name: string; version: string; size: number; classes: number }>;
    classCount: number;
  };
  trackers: TrackerMatch[];
  /** ABIs with native libraries (lib/<abi>/*.so). */
  nativeAbis: string[];
  entryCount: number;
}

export interface InspectOptions {
  trackers?: TrackerDatabase;
  knownSigners?: KnownSigners;
  /** Platform permission → protection level; default: parsed from framework-res.apk when present. */
  platformPermissions?: Map<string, string>;
  /** Skip the DEX scan (no class list, no trackers). */
  skipDex?: boolean;
  onProgress?: ProgressFn;
}

/**
 * Runtime ("dangerous") platform permissions, used only when framework-res.apk is not installed
 * (from frameworks/base/core/res/AndroidManifest.xml).
 */
const FALLBACK_PLATFORM: Record<string, string> = Object.fromEntries(
  [
    'READ_CALENDAR',
    'WRITE_CALENDAR',
    'CAMERA',
    'READ_CONTACTS',
    'WRITE_CONTACTS',
    'GET_ACCOUNTS',
    'ACCESS_FINE_LOCATION',
    'ACCESS_COARSE_LOCATION',
    'ACCESS_BACKGROUND_LOCATION',
    'RECORD_AUDIO',
    'READ_PHONE_STATE',
    'READ_PHONE_NUMBERS',
    'CALL_PHONE',
    'ANSWER_PHONE_CALLS',
    'READ_CALL_LOG',
    'WRITE_CALL_LOG',
    'ADD_VOICEMAIL',
    'USE_SIP',
    'PROCESS_OUTGOING_CALLS',
    'BODY_SENSORS',
    'SEND_SMS',
    'RECEIVE_SMS',
    'READ_SMS',
    'RECEIVE_WAP_PUSH',
    'RECEIVE_MMS',
    'READ_EXTERNAL_STORAGE',
    'WRITE_EXTERNAL_STORAGE',
    'ACCESS_MEDIA_LOCATION',
    'ACTIVITY_RECOGNITION',
  ].map((p) => [`android.permission.${p}`, 'dangerous']),
);

let platformCache: Map<string, string> | null = null;

/** Protection levels of the platform's permissions, read from framework-res.apk with our own parser. */
export async function platformPermissions(frameworkRes = FRAMEWORK_RES_APK): Promise<Map<string, string>> {
  if (platformCache && frameworkRes === FRAMEWORK_RES_APK) return platformCache;
  const map = new Map<string, string>(Object.entries(FALLBACK_PLATFORM));
  if (existsSync(frameworkRes)) {
    const z = await ZipArchive.openFile(frameworkRes);
    try {
      const m = parseManifest(await z.read(z.entry('AndroidManifest.xml')!), null, frameworkRes);
      for (const p of m.permissions) map.set(p.name, p.protectionLevel);
    } finally {
      await z.close();
    }
  }
  if (frameworkRes === FRAMEWORK_RES_APK) platformCache = map;
  return map;
}

function classify(level: string | null): { dangerous: boolean; signature: boolean; privileged: boolean } {
  const parts = (level ?? '').split('|').map((s) => s.trim());
  return {
    dangerous: parts[0] === 'dangerous',
    signature: parts[0] === 'signature' || parts[0] === 'signatureOrSystem',
    privileged: parts.includes('privileged') || parts[0] === 'signatureOrSystem',
  };
}

async function sha256File(zip: ZipArchive): Promise<string> {
  const h = createHash('sha256');
  const CH = 4 * 1024 * 1024;
  for (let p = 0; p < zip.layout.size; p += CH)
    h.update(await zip.source.read(p, Math.min(CH, zip.layout.size - p)));
  return h.digest('hex');
}

export async function inspectApk(path: string, opts: InspectOptions = {}): Promise<ApkReport> {
  const progress = opts.onProgress ?? (() => {});
  const zip = await ZipArchive.openFile(path);
  try {
    progress({ stage: 'manifest', done: 0, total: 4, unit: 'items' });
    const mfEntry = zip.entry('AndroidManifest.xml');
    if (!mfEntry)
      throw new FormatError({
        format: 'apk',
        reason: 'no AndroidManifest.xml entry',
        file: path,
        field: 'AndroidManifest.xml',
      });
    const arscEntry = zip.entry('resources.arsc');
    let res: ResourceTable | null = null;
    if (arscEntry) res = parseArsc(await zip.read(arscEntry), `${path}!resources.arsc`);
    const m = parseManifest(await zip.read(mfEntry, 64 * 1024 * 1024), res, `${path}!AndroidManifest.xml`);

    const platform = opts.platformPermissions ?? (await platformPermissions());
    const own = new Map(m.permissions.map((p) => [p.name, p.protectionLevel]));
    const requested: RequestedPermission[] = m.usesPermissions.map((u) => {
      const level = platform.get(u.name) ?? own.get(u.name) ?? null;
      return { name: u.name, maxSdkVersion: u.maxSdkVersion, protectionLevel: level, ...classify(level) };
    });

    progress({ stage: 'signatures', done: 1, total: 4, unit: 'items' });
    const sig = await verifyApkSignatures(zip, { minSdk: m.minSdkVersion, targetSdk: m.targetSdkVersion });
    const known = opts.knownSigners ?? defaultKnownSigners();
    const name = (sha: string): ApkSigner['known'] => {
      const k = known.lookup(sha);
      return k ? { id: k.id, name: k.name, kind: k.kind } : null;
    };

    progress({ stage: 'dex', done: 2, total: 4, unit: 'items' });
    const dexFiles: ApkReport['dex']['files'] = [];
    const classes: string[] = [];
    if (!opts.skipDex) {
      for (const n of dexEntryNames(zip.entries.map((e) => e.name))) {
        const e = zip.entry(n)!;
        const d = parseDexClasses(await zip.read(e, MAX_DEX), `${path}!${n}`);
        dexFiles.push({
          name: n,
          version: d.header.version,
          size: e.uncompressedSize,
          classes: d.classes.length,
        });
        for (const c of d.classes) classes.push(c);
      }
    }
    const trackers = opts.skipDex ? [] : (opts.trackers ?? defaultTrackers()).match(classes);

    progress({ stage: 'digest', done: 3, total: 4, unit: 'items' });
    const sha256 = await sha256File(zip);
    const abis = new Set<string>();
    for (const e of zip.entries) {
      const mm = /^lib\/([^/]+)\/[^/]+\.so$/.exec(e.name);
      if (mm) abis.add(mm[1]!);
    }
    progress({ stage: 'done', done: 4, total: 4, unit: 'items' });
    return {
      schema: 'omie.apk/1',
      file: path,
      size: zip.layout.size,
      sha256,
      identity: {
        package: m.package,
        versionCode: m.versionCode,
        longVersionCode: m.longVersionCode,
        versionName: m.versionName,
        label: m.label,
        sharedUserId: m.sharedUserId,
      },
      sdk: {
        min: m.minSdkVersion,
        target: m.targetSdkVersion,
        max: m.maxSdkVersion,
        compile: m.compileSdkVersion,
        compileCodename: m.compileSdkVersionCodename,
      },
      application: m.application,
      permissions: {
        requested,
        declared: m.permissions,
        dangerous: requested.filter((p) => p.dangerous).map((p) => p.name),
        signatureOrPrivileged: requested.filter((p) => p.signature || p.privileged).map((p) => p.name),
      },
      components: m.components,
      exportedComponents: m.components.filter((c) => c.exported).length,
      usesLibraries: m.usesLibraries,
      metaData: m.metaData,
      queries: m.queries,
      signatures: {
        verified: sig.verified,
        schemes: sig.schemes,
        signers: sig.signers.map((c) => ({ ...c, known: name(c.sha256) })),
        lineage: sig.lineage ? sig.lineage.map((n) => ({ ...n, known: name(n.certificate.sha256) })) : null,
        rotationMinSdk: sig.rotationMinSdk,
        otherBlockIds: sig.otherBlockIds,
        problems: sig.problems,
      },
      dex: { files: dexFiles, classCount: classes.length },
      trackers,
      nativeAbis: [...abis].sort(),
      entryCount: zip.entries.length,
    };
  } finally {
    await zip.close();
  }
}

function mib(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** The human view of `omie inspect` for an APK. */
export function formatApkReport(r: ApkReport): string {
  const L: string[] = [];
  L.push(
    `package      ${r.identity.package}  versionCode ${r.identity.versionCode}  versionName ${r.identity.versionName ?? '-'}`,
  );
  L.push(
    `label        ${r.identity.label ?? '-'}${r.identity.sharedUserId ? `  sharedUserId ${r.identity.sharedUserId}` : ''}`,
  );
  L.push(
    `sdk          min ${r.sdk.min}  target ${r.sdk.target}${r.sdk.max ? `  max ${r.sdk.max}` : ''}${r.sdk.compile ? `  compile ${r.sdk.compile}` : ''}`,
  );
  L.push(`size         ${mib(r.size)} (${r.size} bytes), ${r.entryCount} entries  sha256 ${r.sha256}`);
  const a = r.application;
  const flags = [
    a.debuggable && 'DEBUGGABLE',
    a.testOnly && 'TEST-ONLY',
    a.persistent && 'persistent',
    a.allowBackup && 'allowBackup',
    a.usesCleartextTraffic === true && 'cleartext-traffic',
  ].filter(Boolean);
  L.push(`application  ${flags.length ? flags.join(', ') : '(no notable flags)'}`);
  if (r.nativeAbis.length) L.push(`native ABIs  ${r.nativeAbis.join(', ')}`);
  L.push('');
  L.push(`signatures   ${r.signatures.verified ? 'VERIFIED' : 'NOT VERIFIED'}`);
  for (const s of Object.values(r.signatures.schemes))
    if (s.present)
      L.push(
        `  ${s.scheme.padEnd(5)} ${s.verified ? 'ok' : `FAILED: ${s.error?.message ?? 'see problems'}`}`,
      );
  for (const [i, s] of r.signatures.signers.entries()) {
    L.push(`  signer #${i + 1}  ${s.subject}`);
    L.push(`             sha256 ${s.sha256}  sha1 ${s.sha1}`);
    if (s.known)
      L.push(
        `             KNOWN: ${s.known.name}${s.known.kind === 'public-test-key' ? ' — PUBLIC TEST KEY, anyone can sign as this app' : ''}`,
      );
  }
  if (r.signatures.lineage) {
    L.push('  rotation lineage (oldest first):');
    for (const n of r.signatures.lineage)
      L.push(`    ${n.certificate.sha256}  ${n.certificate.subject}${n.known ? `  (${n.known.name})` : ''}`);
  }
  for (const p of r.signatures.problems) L.push(`  problem: ${p}`);
  L.push('');
  L.push(
    `permissions  ${r.permissions.requested.length} requested, ${r.permissions.dangerous.length} dangerous, ${r.permissions.signatureOrPrivileged.length} signature/privileged`,
  );
  for (const p of r.permissions.requested) {
    const tag = p.dangerous ? 'DANGEROUS ' : p.signature || p.privileged ? 'SIG/PRIV  ' : '          ';
    L.push(
      `  ${tag}${p.name}${p.maxSdkVersion !== null ? ` (maxSdk ${p.maxSdkVersion})` : ''}${p.protectionLevel ? `  [${p.protectionLevel}]` : ''}`,
    );
  }
  for (const p of r.permissions.declared) L.push(`  declares  ${p.name}  [${p.protectionLevel}]`);
  L.push('');
  L.push(`components   ${r.components.length} (${r.exportedComponents} exported)`);
  for (const c of r.components) {
    const extra = [
      c.permission && `permission ${c.permission}`,
      c.authorities && `authorities ${c.authorities}`,
      c.intentFilters.length && `${c.intentFilters.length} intent filter(s)`,
    ]
      .filter(Boolean)
      .join(', ');
    L.push(
      `  ${c.type.padEnd(9)} ${c.exported ? 'exported ' : 'internal '} ${c.name}${extra ? `  (${extra})` : ''}`,
    );
  }
  if (r.usesLibraries.length)
    L.push(
      `uses-library ${r.usesLibraries.map((u) => `${u.name}${u.required ? '' : ' (optional)'}`).join(', ')}`,
    );
  L.push('');
  L.push(
    `dex          ${r.dex.files.map((f) => `${f.name} (v${f.version}, ${f.classes} classes)`).join(', ') || 'none'}`,
  );
  L.push(`trackers     ${r.trackers.length ? r.trackers.length : 'none found'}`);
  for (const t of r.trackers)
    L.push(`  ${t.name} [${t.categories.join(', ')}] — ${t.classCount} classes, e.g. ${t.examples[0]}`);
  return L.join('\n');
}
