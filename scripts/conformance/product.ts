/**
 * The product facts the checks compare an image or device with, taken from a resolved product
 * (scripts/model) so checks do not depend on the YAML layout.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { ResolvedProduct } from '../model/index.ts';
import type { Waiver } from './spec-schema.ts';

export interface ProductApp {
  name: string;
  package: string;
  role: 'personal-cloud' | 'customer-app' | 'system';
  partition: string;
  privileged: boolean;
  privilegedPermissions: string[];
  /** Pinned signer certificate digests (empty when the named key could not be found). */
  signerSha256: string[];
  apkSha256?: string;
}

export interface ProductFacts {
  name: string;
  version: string;
  file: string;
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
  avb?: {
    rollbackIndex: number;
    footers: Array<{ partition: string; type: 'hash' | 'hashtree' }>;
    publicKeySha256?: string;
  };
  waivers: Waiver[];
}

/** OMIE_HOME (default ~/.omie). */
export function omieHome(): string {
  return process.env.OMIE_HOME || join(homedir(), '.omie');
}

/** SHA-256 of the DER certificate in a PEM/DER file, lower-case hex; undefined if unreadable. */
export function certSha256(file: string): string | undefined {
  try {
    const cert = new X509Certificate(readFileSync(file));
    return createHash('sha256').update(cert.raw).digest('hex');
  } catch {
    return undefined;
  }
}

/** Digest of the certificate of a named key in $OMIE_HOME/keys/<name>/ (any *.x509.pem / cert.pem there). */
export function namedKeyCertSha256(name: string): string | undefined {
  const dir = join(omieHome(), 'keys', name);
  if (!existsSync(dir)) return undefined;
  for (const f of readdirSync(dir).sort()) {
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
    })),
    avb: r.device.avb
      ? {
          rollbackIndex: Number(r.device.avb.rollbackIndex ?? 0),
          footers: (r.device.avb.footers ?? []).map((f) => ({ partition: f.partition, type: f.type })),
        }
      : undefined,
    waivers: p.waivers ?? [],
  };
}

/**
 * Signer pins of every app under `<repoRoot>/prebuilt-apps/` (used without a product, so an
 * image is still held to the pins the repository declares).
 */
export function repoSignerPins(repoRoot: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const dir = join(repoRoot, 'prebuilt-apps');
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const f = join(dir, name, 'app.yaml');
    if (!existsSync(f)) continue;
    try {
      const y = parse(readFileSync(f, 'utf8')) as {
        package?: string;
        signer?: { sha256?: string[]; key?: string };
      };
      if (!y?.package || !y.signer) continue;
      const pins =
        y.signer.sha256 ??
        [y.signer.key ? namedKeyCertSha256(y.signer.key) : undefined].filter((x): x is string => Boolean(x));
      out.set(
        y.package,
        pins.map((s) => s.toLowerCase()),
      );
    } catch {
      /* an invalid app.yaml is reported by `omie validate`, not here */
    }
  }
  return out;
}
