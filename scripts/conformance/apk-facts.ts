/**
 * Reads the ApkFacts the checks need from an APK file, with the kit's own APK layer
 * (scripts/formats/apk): zip, binary manifest, resources.arsc, v1–v3.1 signature verification and
 * DEX class lists. No host tools.
 */
import { parseArsc, type ResourceTable } from '../formats/apk/arsc.ts';
import { parseAxml, type XmlElement } from '../formats/apk/axml.ts';
import { dexEntryNames, parseDexClasses } from '../formats/apk/dex.ts';
import { parseManifest } from '../formats/apk/manifest.ts';
import { verifyApkSignatures } from '../formats/apk/signing/index.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import type { ApkFacts } from './view.ts';

/** PermissionInfo protection flags we need (frameworks/base PermissionInfo.java). */
const PROTECTION_FLAG_PRIVILEGED = 0x10;
const BASE_LEVELS: Record<string, number> = {
  normal: 0,
  dangerous: 1,
  signature: 2,
  signatureOrSystem: 3,
  internal: 4,
};

/** "signature|privileged" → PermissionInfo protectionLevel bits (base | PROTECTION_FLAG_PRIVILEGED …). */
export function protectionLevelBits(level: string): number {
  const parts = level.split('|').map((s) => s.trim());
  let bits = BASE_LEVELS[parts[0] ?? ''] ?? 0;
  if (parts.includes('privileged') || parts[0] === 'signatureOrSystem') bits |= PROTECTION_FLAG_PRIVILEGED;
  return bits;
}

const SCHEME_NUMBERS: Record<string, number> = { v1: 1, v2: 2, v3: 3, 'v3.1': 31 };
/** Largest DEX we list classes of; bigger ones are reported as an error. */
const MAX_DEX = 256 * 1024 * 1024;

function overlayTarget(root: XmlElement): string | undefined {
  const o = root.children.find((c) => c.name === 'overlay');
  const a = o?.attributes.find((x) => x.name === 'targetPackage');
  return a ? String(a.typed.value ?? a.raw ?? '') || undefined : undefined;
}

/** Simple (string/number/bool) resource values by entry name, default configuration. */
function resourceValues(res: ResourceTable | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (!res) return out;
  for (const e of res.allEntries()) {
    if (!e.value || e.value.value === null) continue;
    const name = e.name.slice(e.name.indexOf('/') + 1);
    if (name in out) continue;
    let v = e.value.value;
    if (typeof v === 'string' && v.startsWith('@')) v = res.resolveString(e.id) ?? v;
    out[name] = String(v);
  }
  return out;
}

/** Packages of res/xml/config_webview_packages.xml (`<webviewprovider packageName=…>`). */
async function webviewProviders(zip: ZipArchive, file: string | undefined): Promise<string[] | undefined> {
  if (!file) return undefined;
  const entry = zip.entry(file);
  if (!entry) return undefined;
  const doc = parseAxml(await zip.read(entry, 4 * 1024 * 1024), file);
  const out: string[] = [];
  const visit = (el: XmlElement) => {
    if (el.name === 'webviewprovider') {
      const a = el.attributes.find((x) => x.name === 'packageName');
      if (a) out.push(String(a.typed.value ?? a.raw ?? ''));
    }
    el.children.forEach(visit);
  };
  visit(doc.root);
  return out;
}

export async function readApkFacts(path: string): Promise<ApkFacts> {
  const zip = await ZipArchive.openFile(path);
  try {
    const mfEntry = zip.entry('AndroidManifest.xml');
    if (!mfEntry) throw new Error(`${path}: no AndroidManifest.xml`);
    const arscEntry = zip.entry('resources.arsc');
    const res = arscEntry ? parseArsc(await zip.read(arscEntry), `${path}!resources.arsc`) : null;
    const mfBuf = await zip.read(mfEntry, 16 * 1024 * 1024);
    const m = parseManifest(mfBuf, res, `${path}!AndroidManifest.xml`);
    const root = parseAxml(mfBuf, `${path}!AndroidManifest.xml`).root;
    const sig = await verifyApkSignatures(zip, {
      minSdk: m.minSdkVersion,
      targetSdk: m.targetSdkVersion,
      consultedOnly: true,
    });
    const classes: string[] = [];
    for (const name of dexEntryNames(zip.entries.map((e) => e.name))) {
      const e = zip.entry(name);
      if (e) classes.push(...parseDexClasses(await zip.read(e, MAX_DEX), `${path}!${name}`).classes);
    }
    const resources = resourceValues(res);
    const appMeta: Record<string, string> = {};
    for (const md of m.metaData) appMeta[md.name] = String(md.value ?? md.resource ?? '');
    return {
      package: m.package,
      versionCode: m.versionCode,
      minSdk: m.minSdkVersion,
      targetSdk: m.targetSdkVersion,
      debuggable: m.application.debuggable,
      testOnly: m.application.testOnly,
      usesPermissions: m.usesPermissions.map((p) => p.name),
      declaredPermissions: m.permissions.map((p) => ({
        name: p.name,
        protectionLevel: protectionLevelBits(p.protectionLevel),
      })),
      appMetaData: appMeta,
      components: m.components
        .filter((c) => c.type !== 'activity-alias')
        .map((c) => ({
          type: c.type as 'activity' | 'service' | 'receiver' | 'provider',
          name: c.name,
          permission: c.permission ?? undefined,
          exported: c.exported,
          actions: c.intentFilters.flatMap((f) => f.actions),
        })),
      overlayTarget: overlayTarget(root),
      signing: {
        verified: sig.verified,
        schemes: Object.values(sig.schemes)
          .filter((s) => s.verified)
          .map((s) => SCHEME_NUMBERS[s.scheme] ?? 0),
        signerSha256: sig.signers.map((s) => s.sha256.toLowerCase().replace(/:/g, '')),
        error: sig.verified
          ? undefined
          : [
              ...Object.values(sig.schemes)
                .filter((s) => s.error)
                .map((s) => `${s.scheme}: ${s.error?.message}`),
              ...sig.problems,
            ].join('; ') || 'no valid signature',
      },
      classes,
      resources,
      webviewProviders: await webviewProviders(zip, resources.config_webview_packages),
    };
  } finally {
    await zip.close();
  }
}
