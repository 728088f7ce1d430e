/**
 * The product facts the checks compare an image or device with, taken from a resolved product
 * (scripts/model) so checks do not depend on the YAML layout.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { avbPublicKeySha256, readAvbPublicKey } from '../formats/avb/keys.ts';
import { certSha256Of, omieHome, resolveKeyRef } from '../keys/store.ts';
import type { AppRole } from '../model/app-roles.ts';
import type { ResolvedProduct } from '../model/index.ts';
import type { Waiver } from './spec-schema.ts';

export interface ProductApp {
  name: string;
  package: string;
  role: AppRole;
  partition: string;
  privileged: boolean;
  privilegedPermissions: string[];
  /** Pinned signer certificate digests (empty when the named key could not be found). */
  signerSha256: string[];
  apkSha256?: string;
  /** Why the app uses the network (app.yaml `internet.reason`). */
  internetReason?: string;
}

export interface ProductFacts {
  name: string;
  version: string;
  file: string;
  /** The product's device profile file (device.yaml). */
  deviceProfile?: string;
  identity?: { brand: string; manufacturer: string; model: string; device: string; name: string };
  endpoints?: {
    captivePortalHttpsUrl?: string;
    captivePortalHttpUrl?: string;
    captivePortalFallbackUrls?: string[];
    ntpServer?: string;
    suplHost?: string | null;
    dnsServers?: string[];
  };
  apps: ProductApp[];
  /**
   * Signers the product vouches for besides its apps' pins: its own APK signing key (overlays,
   * re-signed apps) and the base signers listed under `trust.baseSigners`, when readable.
   */
  partnerSignerSha256?: string[];
  /** The product's personal-cloud options (only what checks compare). */
  personalCloud?: { defaultRemote: string | null };
  avb?: {
    rollbackIndex: number;
    footers: Array<{ partition: string; type: 'hash' | 'hashtree' }>;
    publicKeySha256?: string;
  };
  waivers: Waiver[];
}

/** SHA-256 of the DER certificate in a PEM/DER file, lower-case hex; undefined if unreadable. */
export function certSha256(file: string): string | undefined {
  try {
    return certSha256Of(readFileSync(file));
  } catch {
    return undefined;
  }
}

/**
 * Digest of the certificate of a named key in $OMIE_HOME/keys/<name>/: its APK signing key
 * (apk.x509.pem, see `omie keys init`), else any *.x509.pem / cert.pem there.
 */
export function namedKeyCertSha256(name: string): string | undefined {
  const dir = join(omieHome(), 'keys', name);
  if (!existsSync(dir)) return undefined;
  for (const f of ['apk.x509.pem', ...readdirSync(dir).sort()]) {
    if (!/(\.x509\.pem|cert\.pem|\.crt|\.der)$/.test(f)) continue;
    const d = certSha256(join(dir, f));
    if (d) return d;
  }
  return undefined;
}

export function productFacts(r: ResolvedProduct): ProductFacts {
  const p = r.product;
  return {
    name: p.name,
    version: p.version,
    file: r.file,
    deviceProfile: r.device.file,
    identity: p.identity,
    endpoints: p.endpoints,
    apps: r.apps.map((a) => ({
      name: a.name,
      package: a.package,
      role: a.role,
      partition: a.partition,
      privileged: a.privileged,
      privilegedPermissions: a.privilegedPermissions ?? [],
      signerSha256:
        'sha256' in a.signer
          ? a.signer.sha256.map((s) => s.toLowerCase())
          : [namedKeyCertSha256(a.signer.key)].filter((x): x is string => Boolean(x)),
      apkSha256: 'sha256' in a.apk ? a.apk.sha256.toLowerCase() : undefined,
      internetReason: a.internet?.reason,
    })),
    personalCloud: p.personalCloud ? { defaultRemote: p.personalCloud.defaultRemote } : undefined,
    partnerSignerSha256: [
      partnerKeyCertSha256(p.signing.apkKey),
      ...Object.entries(p.signing.apkKeys ?? {}).map(([role, ref]) =>
        ref ? partnerKeyCertSha256(ref, role) : undefined,
      ),
      ...p.trust.baseSigners.map((b) => ('sha256' in b ? b.sha256 : certSha256(expandHome(b.cert)))),
    ].filter((x): x is string => Boolean(x)),
    avb: r.device.avb
      ? {
          rollbackIndex: Number(r.device.avb.rollbackIndex ?? 0),
          footers: (r.device.avb.footers ?? []).map((f) => ({ partition: f.partition, type: f.type })),
          publicKeySha256: partnerAvbKeySha256(p.signing.avbKey),
        }
      : undefined,
    waivers: p.waivers ?? [],
  };
}

/** Expands a leading $OMIE_HOME or ~ in a path from a product file. */
export function expandHome(p: string): string {
  return p.replace(/^\$OMIE_HOME(?=\/|$)/, omieHome()).replace(/^~(?=\/)/, homedir());
}

/** SHA-256 of the AVB public key blob of the product's AVB key, when the key is readable here. */
function partnerAvbKeySha256(ref: ResolvedProduct['product']['signing']['avbKey']): string | undefined {
  try {
    const { keys, file } = resolveKeyRef(ref, 'avb');
    const path = keys?.avbPem ?? file;
    return path ? avbPublicKeySha256(readAvbPublicKey(path)) : undefined;
  } catch {
    return undefined; // a lab checking a partner's build need not hold the partner's key
  }
}

/**
 * The certificate of one of the product's APK signing keys: a named key set's apk key (or its
 * `<role>` key), or an AOSP-style <prefix>.x509.pem.
 */
function partnerKeyCertSha256(
  ref: ResolvedProduct['product']['signing']['apkKey'],
  role?: string,
): string | undefined {
  if ('name' in ref) return certSha256(join(omieHome(), 'keys', ref.name, `${role ?? 'apk'}.x509.pem`));
  const file = 'file' in ref ? ref.file.replace(/^~(?=\/)/, homedir()) : process.env[ref.env];
  return file ? certSha256(`${file.replace(/\.(pk8|x509\.pem)$/, '')}.x509.pem`) : undefined;
}

/** What the repository's prebuilt-apps/<App>/app.yaml declares about one app. */
export interface RepoApp {
  package: string;
  role?: string;
  /** Pinned signer certificate digests (a named key resolves only where the key is). */
  signerSha256: string[];
  internetReason?: string;
  /** The app.yaml, for evidence. */
  file: string;
}

/**
 * Every app under `<repoRoot>/prebuilt-apps/` (used without a product, so an image is still held
 * to what the repository declares). Read leniently: an invalid app.yaml is `omie validate`'s to report.
 */
export function repoApps(repoRoot: string): Map<string, RepoApp> {
  const out = new Map<string, RepoApp>();
  const dir = join(repoRoot, 'prebuilt-apps');
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name, 'app.yaml');
    if (!existsSync(file)) continue;
    try {
      const y = parse(readFileSync(file, 'utf8')) as {
        package?: string;
        role?: string;
        signer?: { sha256?: string[]; key?: string };
        internet?: { reason?: string };
      };
      if (!y?.package) continue;
      const pins =
        y.signer?.sha256 ??
        [y.signer?.key ? namedKeyCertSha256(y.signer.key) : undefined].filter((x): x is string => Boolean(x));
      out.set(y.package, {
        package: y.package,
        role: y.role,
        signerSha256: pins.map((s) => s.toLowerCase()),
        internetReason: y.internet?.reason,
        file,
      });
    } catch {
      /* an invalid app.yaml is reported by `omie validate`, not here */
    }
  }
  return out;
}

/** Signer pins of every app under `<repoRoot>/prebuilt-apps/`: package → digests. */
export function repoSignerPins(repoRoot: string): Map<string, string[]> {
  return new Map([...repoApps(repoRoot).values()].map((a) => [a.package, a.signerSha256]));
}

/**
 * Signers the repository's products vouch for (each product's APK signing key, which signs its
 * overlays and re-signed apps, and its `trust.baseSigners`), with the product file that does.
 * Used without a product: the image is then held to what any product of the repository trusts.
 */
export function repoProductSigners(repoRoot: string): Array<{ sha256: string; source: string }> {
  const out: Array<{ sha256: string; source: string }> = [];
  for (const file of productFiles(repoRoot)) {
    try {
      const y = parse(readFileSync(file, 'utf8')) as {
        signing?: { apkKey?: ResolvedProduct['product']['signing']['apkKey'] };
        trust?: { baseSigners?: Array<{ sha256?: string; cert?: string }> };
      };
      const digests = [
        typeof y?.signing?.apkKey === 'object' ? partnerKeyCertSha256(y.signing.apkKey) : undefined,
        ...(y?.trust?.baseSigners ?? []).map((b) =>
          b.sha256 ? b.sha256.toLowerCase() : b.cert ? certSha256(expandHome(b.cert)) : undefined,
        ),
      ];
      for (const sha256 of digests) if (sha256) out.push({ sha256, source: file });
    } catch {
      /* an invalid product is reported by `omie validate`, not here */
    }
  }
  return out;
}

/** device/<vendor>/<codename>/products/*.yaml of a repository. */
function productFiles(repoRoot: string): string[] {
  const out: string[] = [];
  const ls = (d: string) => (existsSync(d) ? readdirSync(d, { withFileTypes: true }) : []);
  for (const vendor of ls(join(repoRoot, 'device')).filter((e) => e.isDirectory()))
    for (const codename of ls(join(repoRoot, 'device', vendor.name)).filter((e) => e.isDirectory())) {
      const dir = join(repoRoot, 'device', vendor.name, codename.name, 'products');
      for (const f of ls(dir)) if (f.isFile() && /\.ya?ml$/.test(f.name)) out.push(join(dir, f.name));
    }
  return out.sort();
}
