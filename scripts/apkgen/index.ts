/**
 * APK generator: builds real, installable APKs from a small spec with the host tools the
 * Android platform itself uses — aapt (manifest + resources against framework-res.apk), smali
 * (a real classes.dex), zipalign and apksigner (v1/v2/v3 signatures, key rotation lineage).
 * Used for the sample apps, overlays and the APK test fixtures; nothing here is checked in.
 */
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { FRAMEWORK_RES, requireFile, runTool } from '../host/tools.ts';
import { manifestXml, smaliSources, stringsXml } from './manifest-xml.ts';

export {
  classList,
  manifestXml,
  qualifyClass,
  smaliClass,
  smaliSources,
  stringsXml,
} from './manifest-xml.ts';

/** Paths of one signing key's files (all PEM/DER written by openssl, mode 0600). */
export interface SigningKey {
  name: string;
  /** PKCS#8 DER private key, as `apksigner --key` wants it. */
  keyPk8: string;
  /** X.509 certificate, PEM. */
  certPem: string;
  /** Private key, PEM (for tools that want PEM). */
  keyPem: string;
}

export interface KeyOptions {
  subject?: string;
  /** RSA modulus size; default 2048. Ignored for EC. */
  bits?: number;
  days?: number;
  /** Key algorithm; default 'rsa'. 'ec' makes a P-256 key (ECDSA), 'dsa' a 2048-bit DSA key. */
  algorithm?: 'rsa' | 'ec' | 'dsa';
}

/**
 * Creates `<dir>/<name>.pk8`, `.x509.pem` and `.pem` with openssl (the AOSP key file naming),
 * or reuses them when all three exist, so a key is generated once and never changes afterwards.
 */
export async function generateSigningKey(
  dir: string,
  name: string,
  opts: KeyOptions = {},
): Promise<SigningKey> {
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new InputError(`invalid key name ${JSON.stringify(name)}`, { code: 'KEY_NAME' });
  await mkdir(dir, { recursive: true });
  const key: SigningKey = {
    name,
    keyPk8: join(dir, `${name}.pk8`),
    certPem: join(dir, `${name}.x509.pem`),
    keyPem: join(dir, `${name}.pem`),
  };
  if (existsSync(key.keyPk8) && existsSync(key.certPem) && existsSync(key.keyPem)) return key;
  const subject = opts.subject ?? `/C=US/O=Omie Kit/CN=${name}`;
  if (opts.algorithm === 'dsa') {
    // DSA needs parameters first; apksigner signs v1/v2/v3 with DSA_WITH_SHA256.
    const params = join(dir, `${name}.dsaparam.pem`);
    const bits = `dsa_paramgen_bits:${opts.bits ?? 2048}`;
    await runTool('openssl', ['genpkey', '-genparam', '-algorithm', 'DSA', '-pkeyopt', bits, '-out', params]);
    await runTool('openssl', ['genpkey', '-paramfile', params, '-out', key.keyPem]);
    await rm(params, { force: true });
  } else {
    const genArgs =
      opts.algorithm === 'ec'
        ? ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key.keyPem]
        : [
            'genpkey',
            '-algorithm',
            'RSA',
            '-pkeyopt',
            `rsa_keygen_bits:${opts.bits ?? 2048}`,
            '-out',
            key.keyPem,
          ];
    await runTool('openssl', genArgs);
  }
  await chmod(key.keyPem, 0o600);
  await runTool('openssl', [
    'req',
    '-new',
    '-x509',
    '-sha256',
    '-key',
    key.keyPem,
    '-out',
    key.certPem,
    '-days',
    String(opts.days ?? 10000),
    '-subj',
    subject,
  ]);
  await runTool('openssl', [
    'pkcs8',
    '-topk8',
    '-inform',
    'PEM',
    '-outform',
    'DER',
    '-nocrypt',
    '-in',
    key.keyPem,
    '-out',
    key.keyPk8,
  ]);
  await chmod(key.keyPk8, 0o600);
  await chmod(key.certPem, 0o600);
  return key;
}

export interface ApkSpec {
  package: string;
  versionCode?: number;
  versionName?: string;
  /** Application label; stored as @string/app_name so readers must resolve it through resources.arsc. */
  label?: string;
  minSdk?: number;
  targetSdk?: number;
  compileSdk?: number;
  sharedUserId?: string;
  usesPermissions?: Array<string | { name: string; maxSdkVersion?: number }>;
  /** `label` is text or a @string reference; `description` must be a @string reference (see `resources`). */
  permissions?: Array<{ name: string; protectionLevel?: string; label?: string; description?: string }>;
  application?: {
    debuggable?: boolean;
    testOnly?: boolean;
    allowBackup?: boolean;
    usesCleartextTraffic?: boolean;
    persistent?: boolean;
    backupAgent?: string;
  };
  components?: Array<{
    type: 'activity' | 'service' | 'receiver' | 'provider';
    name: string;
    exported?: boolean;
    permission?: string;
    authorities?: string;
    intentFilters?: Array<{
      actions?: string[];
      categories?: string[];
      data?: Array<Record<string, string>>;
    }>;
    /** `resource` is a reference such as `@xml/authenticator` (see `xmlResources`). */
    metaData?: Array<{ name: string; value?: string; resource?: string }>;
  }>;
  metaData?: Array<{ name: string; value?: string; resource?: string }>;
  usesLibraries?: Array<{ name: string; required?: boolean }>;
  queries?: { packages?: string[]; providers?: string[] };
  /** Java class names; each becomes a minimal smali class. `<package>.Main` and component classes are always added. */
  classes?: string[];
  /**
   * Complete smali sources: a class named here replaces the generated minimal class of the same
   * name (a component's implementation), others are added (helpers the components use).
   */
  code?: SmaliSource[];
  /** XML resources: name → document, written as res/xml/<name>.xml (referenced as @xml/<name>). */
  xmlResources?: Record<string, string>;
  /** Split the classes over classes.dex, classes2.dex, … (multidex): this many extra DEX files. */
  extraDexFiles?: number;
  /** Extra string resources (name → value). */
  resources?: Record<string, string>;
  /** Localized string resources: qualifier (e.g. "fr", "de-rDE") → name → value (res/values-<q>/). */
  localizedResources?: Record<string, Record<string, string>>;
  /** Resource compiler: 'aapt' (default) or 'aapt2' (UTF-8 pools, different chunk layout). */
  builder?: 'aapt' | 'aapt2';
  /** aapt2 only: pass --enable-sparse-encoding (aapt2 decides per type chunk whether sparse pays off). */
  sparseResources?: boolean;
}

/** One class in smali syntax, as `smali assemble` reads it. */
export interface SmaliSource {
  /** Java name, e.g. `org.omie.personalcloud.DataStoreProvider`. */
  name: string;
  smali: string;
}

export interface SignOptions {
  key: SigningKey;
  v1?: boolean;
  v2?: boolean;
  v3?: boolean;
  /** Passed as --min-sdk-version (default: apksigner reads the manifest's minSdkVersion). */
  minSdk?: number;
  /**
   * v3 key rotation: `oldKey` signs the lineage entry and the v1/v2 schemes, `key` is the new
   * signer of v3. The lineage file is created with `apksigner rotate` (at lineagePath when given).
   */
  rotation?: { oldKey: SigningKey; lineagePath?: string };
}

/** Fixed timestamp for every input file, so aapt writes the same zip bytes on every run. */
const EPOCH = new Date('2008-01-01T00:00:00Z');

/**
 * Builds an APK at outPath: aapt package → smali assemble (→ classes*.dex) → aapt add → zipalign →
 * apksigner sign (when `sign` is given). Deterministic for the same spec and key, as far as the
 * tools allow (inputs get a fixed mtime; RSA PKCS#1 v1.5 signatures are deterministic).
 */
export async function buildApk(spec: ApkSpec, sign: SignOptions | null, outPath: string): Promise<void> {
  if (!/^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$/.test(spec.package))
    throw new InputError(`invalid package name ${JSON.stringify(spec.package)}`, { code: 'APK_PACKAGE' });
  const fw = requireFile(FRAMEWORK_RES);
  const work = await mkdtemp(join(tmpdir(), 'omie-apkgen-'));
  try {
    const res = join(work, 'res');
    await mkdir(join(res, 'values'), { recursive: true });
    await writeFile(join(work, 'AndroidManifest.xml'), manifestXml(spec));
    await writeFile(join(res, 'values', 'strings.xml'), stringsXml(spec));
    await fixTimes([join(work, 'AndroidManifest.xml'), join(res, 'values', 'strings.xml')]);
    for (const [name, xml] of Object.entries(spec.xmlResources ?? {})) {
      if (!/^[a-z][a-z0-9_]*$/.test(name))
        throw new InputError(`invalid XML resource name ${JSON.stringify(name)}`, {
          code: 'APK_RESOURCE_NAME',
        });
      const f = join(res, 'xml', `${name}.xml`);
      await mkdir(dirname(f), { recursive: true });
      await writeFile(f, xml);
      await fixTimes([f]);
    }
    for (const [q, strings] of Object.entries(spec.localizedResources ?? {})) {
      if (!/^[a-zA-Z0-9-]+$/.test(q))
        throw new InputError(`invalid resource qualifier ${JSON.stringify(q)}`, { code: 'APK_QUALIFIER' });
      const f = join(res, `values-${q}`, 'strings.xml');
      await mkdir(dirname(f), { recursive: true });
      await writeFile(
        f,
        stringsXml({ package: spec.package, label: strings.app_name, resources: strings }, false),
      );
      await fixTimes([f]);
    }
    const unaligned = join(work, 'unaligned.apk');
    if (spec.builder === 'aapt2') {
      const compiled = join(work, 'compiled.zip');
      await runTool('aapt2', ['compile', '--dir', res, '-o', compiled]);
      const link = ['link', '-o', unaligned, '-I', fw, '--manifest', join(work, 'AndroidManifest.xml')];
      if (spec.sparseResources) link.push('--enable-sparse-encoding');
      await runTool('aapt2', [...link, compiled]);
    } else {
      const pkg = ['package', '-f', '-M', join(work, 'AndroidManifest.xml'), '-S', res];
      await runTool('aapt', [...pkg, '-I', fw, '-F', unaligned]);
    }

    const classes = smaliSources(spec);
    const nDex = 1 + Math.max(0, Math.min(spec.extraDexFiles ?? 0, classes.length - 1));
    const dexNames: string[] = [];
    for (let d = 0; d < nDex; d++) {
      const src = join(work, `smali${d}`);
      await mkdir(src, { recursive: true });
      const mine = classes.filter((_, i) => i % nDex === d);
      for (const [i, c] of mine.entries()) await writeFile(join(src, `C${i}.smali`), c.smali);
      const dexName = d === 0 ? 'classes.dex' : `classes${d + 1}.dex`;
      await runTool('smali', ['assemble', '-o', join(work, dexName), src]);
      dexNames.push(dexName);
    }
    await fixTimes(dexNames.map((n) => join(work, n)));
    await runTool('aapt', ['add', unaligned, ...dexNames], { cwd: work });

    const aligned = join(work, 'aligned.apk');
    await runTool('zipalign', ['-f', '4', unaligned, aligned]);
    await mkdir(dirname(resolve(outPath)), { recursive: true });
    if (sign) await signApk(aligned, outPath, sign);
    else await copyFile(aligned, outPath);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Signs an (aligned) APK with apksigner; see SignOptions for the schemes and rotation. */
export async function signApk(inPath: string, outPath: string, sign: SignOptions): Promise<void> {
  const flags = [
    '--v1-signing-enabled',
    String(sign.v1 ?? true),
    '--v2-signing-enabled',
    String(sign.v2 ?? true),
    '--v3-signing-enabled',
    String(sign.v3 ?? !!sign.rotation),
    '--v4-signing-enabled',
    'false',
  ];
  if (sign.minSdk !== undefined) flags.push('--min-sdk-version', String(sign.minSdk));
  await mkdir(dirname(resolve(outPath)), { recursive: true });
  const tmp = await mkdtemp(join(tmpdir(), 'omie-apksign-'));
  try {
    const signers: string[] = [];
    if (sign.rotation) {
      const { oldKey } = sign.rotation;
      const lineage = sign.rotation.lineagePath ?? join(tmp, 'lineage.bin');
      if (!existsSync(lineage))
        await runTool('apksigner', [
          'rotate',
          '--out',
          lineage,
          '--old-signer',
          '--key',
          oldKey.keyPk8,
          '--cert',
          oldKey.certPem,
          '--new-signer',
          '--key',
          sign.key.keyPk8,
          '--cert',
          sign.key.certPem,
        ]);
      signers.push(
        '--key',
        oldKey.keyPk8,
        '--cert',
        oldKey.certPem,
        '--next-signer',
        '--key',
        sign.key.keyPk8,
        '--cert',
        sign.key.certPem,
        '--lineage',
        lineage,
      );
    } else signers.push('--key', sign.key.keyPk8, '--cert', sign.key.certPem);
    // apksigner refuses to overwrite its own input; sign to a temp file then move it into place.
    const out = join(tmp, 'signed.apk');
    await runTool('apksigner', ['sign', ...signers, ...flags, '--out', out, inPath]);
    await copyFile(out, outPath);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function fixTimes(paths: string[]): Promise<void> {
  for (const p of paths) await utimes(p, EPOCH, EPOCH);
}
