import { createHash, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { z } from 'zod';
import { generateSigningKey, type SigningKey } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
import { APK_KEY_ROLES, type ApkKeyRole } from '../formats/apk/known-signers.ts';
import { runTool } from '../host/tools.ts';
import type { keyRef } from '../model/schemas.ts';

/**
 * Signing keys live outside the repository, in $OMIE_HOME/keys/<name>/ (default ~/.omie), with
 * 0700 folders and 0600 files. A product refers to them by name, file or environment variable:
 * secrets never appear in YAML.
 */
export function omieHome(): string {
  return resolve(process.env.OMIE_HOME ?? join(homedir(), '.omie'));
}

export function keyDir(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new InputError(`invalid key name ${JSON.stringify(name)}`, { code: 'KEY_NAME' });
  return join(omieHome(), 'keys', name);
}

export interface PartnerKeys {
  name: string;
  dir: string;
  /** APK/overlay signing key (apksigner). */
  apk: SigningKey;
  /** AVB signing key, RSA PEM. */
  avbPem: string;
  /** Keys of AOSP key roles the set holds (`<role>.pk8` + `<role>.x509.pem`, see --roles). */
  roles: Partial<Record<ApkKeyRole, SigningKey>>;
}

/** The four files of an APK signing key `<dir>/<stem>.*` (AOSP layout plus a PEM private key). */
function keyFiles(dir: string, stem: string): SigningKey {
  return {
    name: stem,
    keyPk8: join(dir, `${stem}.pk8`),
    certPem: join(dir, `${stem}.x509.pem`),
    keyPem: join(dir, `${stem}.pem`),
  };
}

/** Refuses role names that are not AOSP key roles (a typo would otherwise create a useless key). */
export function parseRoles(list: readonly string[]): ApkKeyRole[] {
  const bad = list.filter((r) => !(APK_KEY_ROLES as readonly string[]).includes(r));
  if (bad.length)
    throw new InputError(`unknown key role(s): ${bad.join(', ')}`, {
      code: 'KEY_ROLE_UNKNOWN',
      context: { roles: bad, known: APK_KEY_ROLES },
      hint: `use some of ${APK_KEY_ROLES.join(', ')}`,
    });
  return [...new Set(list)] as ApkKeyRole[];
}

/**
 * Creates (or reuses) a named key set: an APK signing key, an RSA AVB key and, for each of
 * `roles`, an APK signing key of that AOSP key role (`<role>.pk8`, `<role>.x509.pem`), so that
 * a product can give each role of a test-keys base a key of its own (signing.apkKeys).
 */
export async function initKeys(
  name: string,
  opts: { avbBits?: number; subject?: string; roles?: readonly ApkKeyRole[] } = {},
): Promise<PartnerKeys> {
  const dir = keyDir(name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const apk = await generateSigningKey(dir, 'apk', {
    subject: opts.subject ?? `/O=${name}/CN=${name} APK signing`,
    bits: 4096,
  });
  for (const role of opts.roles ?? [])
    await generateSigningKey(dir, role, { subject: `/O=${name}/CN=${name} ${role}`, bits: 4096 });
  const avbPem = join(dir, 'avb.pem');
  if (!existsSync(avbPem)) {
    await runTool('openssl', [
      'genpkey',
      '-algorithm',
      'RSA',
      '-pkeyopt',
      `rsa_keygen_bits:${opts.avbBits ?? 4096}`,
      '-out',
      avbPem,
    ]);
    await chmod(avbPem, 0o600);
  }
  return { name, dir, apk, avbPem, roles: presentRoles(dir) };
}

function presentRoles(dir: string): Partial<Record<ApkKeyRole, SigningKey>> {
  const out: Partial<Record<ApkKeyRole, SigningKey>> = {};
  for (const role of APK_KEY_ROLES) {
    const k = keyFiles(dir, role);
    if (existsSync(k.keyPk8) && existsSync(k.certPem)) out[role] = k;
  }
  return out;
}

/** The existing key set of that name, or an InputError telling how to create it. */
export function openKeys(name: string): PartnerKeys {
  const dir = keyDir(name);
  const k: PartnerKeys = {
    name,
    dir,
    apk: keyFiles(dir, 'apk'),
    avbPem: join(dir, 'avb.pem'),
    roles: presentRoles(dir),
  };
  const missing = [k.apk.keyPk8, k.apk.certPem, k.avbPem].filter((p) => !existsSync(p));
  if (missing.length) {
    throw new InputError(`key set "${name}" is incomplete: missing ${missing.join(', ')}`, {
      code: 'KEY_MISSING',
      context: { name, dir, missing },
      hint: `create it with: omie keys init ${name}`,
    });
  }
  return k;
}

type KeyRef = z.output<typeof keyRef>;

/** The path a file or environment-variable key reference names (a leading ~ expanded). */
function keyRefPath(ref: Exclude<KeyRef, { name: string }>, kind: 'avb' | 'apk'): string {
  const file = 'file' in ref ? ref.file.replace(/^~(?=\/)/, homedir()) : process.env[ref.env];
  if (!file) {
    throw new InputError(
      `environment variable ${'env' in ref ? ref.env : ''} (the ${kind} key path) is not set`,
      { code: 'KEY_ENV_UNSET' },
    );
  }
  return file;
}

/** Resolves a product's key reference to a file (AVB: a PEM) or a named key set. */
export function resolveKeyRef(ref: KeyRef, kind: 'avb' | 'apk'): { keys?: PartnerKeys; file?: string } {
  if ('name' in ref) return { keys: openKeys(ref.name) };
  const file = keyRefPath(ref, kind);
  if (!existsSync(file))
    throw new InputError(`${kind} key file not found: ${file}`, { code: 'KEY_MISSING', context: { file } });
  return { file };
}

/**
 * The APK signing key a product's key reference names, for `role` when given: a named key set
 * gives its `<role>` key (its `apk` key without a role); a file or variable names an AOSP-style
 * key prefix, `<prefix>.pk8` + `<prefix>.x509.pem`, as `sign_target_files_apks -k` takes them.
 * Throws KEY_MISSING naming the file and how to create it.
 */
export function apkSigningKey(ref: KeyRef, role?: ApkKeyRole): SigningKey {
  const where = role ? `signing.apkKeys.${role}` : 'signing.apkKey';
  let key: SigningKey;
  if ('name' in ref) {
    const set = openKeys(ref.name);
    key = role ? keyFiles(set.dir, role) : set.apk;
    if (role && !existsSync(key.keyPk8))
      throw new InputError(`${where}: key set "${set.name}" has no ${role} key (${key.keyPk8})`, {
        code: 'KEY_MISSING',
        context: { name: set.name, role, file: key.keyPk8 },
        hint: `create it with: omie keys init ${set.name} --roles ${role}`,
      });
  } else {
    const prefix = keyRefPath(ref, 'apk').replace(/\.(pk8|x509\.pem)$/, '');
    key = { name: basename(prefix), keyPk8: `${prefix}.pk8`, certPem: `${prefix}.x509.pem`, keyPem: '' };
  }
  for (const f of [key.keyPk8, key.certPem])
    if (!existsSync(f))
      throw new InputError(`${where}: APK signing key file not found: ${f}`, {
        code: 'KEY_MISSING',
        context: { file: f, role: role ?? null },
      });
  return key;
}

/** SHA-256 of a certificate's DER encoding, lower-case hex (as apksigner prints it). */
export async function certSha256(certPem: string): Promise<string> {
  return certSha256Of(await readFile(certPem));
}

/** Same as certSha256 for certificate bytes (PEM or DER). */
export function certSha256Of(cert: Buffer): string {
  return createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
}
