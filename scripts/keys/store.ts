import { createHash, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { z } from 'zod';
import { generateSigningKey, type SigningKey } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
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
}

/** Creates (or reuses) a named key set: an APK signing key and an RSA AVB key. */
export async function initKeys(
  name: string,
  opts: { avbBits?: number; subject?: string } = {},
): Promise<PartnerKeys> {
  const dir = keyDir(name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const apk = await generateSigningKey(dir, 'apk', {
    subject: opts.subject ?? `/O=${name}/CN=${name} APK signing`,
    bits: 4096,
  });
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
  return { name, dir, apk, avbPem };
}

/** The existing key set of that name, or an InputError telling how to create it. */
export function openKeys(name: string): PartnerKeys {
  const dir = keyDir(name);
  const k: PartnerKeys = {
    name,
    dir,
    apk: {
      name: 'apk',
      keyPk8: join(dir, 'apk.pk8'),
      certPem: join(dir, 'apk.x509.pem'),
      keyPem: join(dir, 'apk.pem'),
    },
    avbPem: join(dir, 'avb.pem'),
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

/** Resolves a product's key reference to a file (AVB: a PEM) or a named key set. */
export function resolveKeyRef(ref: KeyRef, kind: 'avb' | 'apk'): { keys?: PartnerKeys; file?: string } {
  if ('name' in ref) return { keys: openKeys(ref.name) };
  const file = 'file' in ref ? ref.file.replace(/^~(?=\/)/, homedir()) : process.env[ref.env];
  if (!file) {
    throw new InputError(
      `environment variable ${'env' in ref ? ref.env : ''} (the ${kind} key path) is not set`,
      { code: 'KEY_ENV_UNSET' },
    );
  }
  if (!existsSync(file))
    throw new InputError(`${kind} key file not found: ${file}`, { code: 'KEY_MISSING', context: { file } });
  return { file };
}

/** SHA-256 of a certificate's DER encoding, lower-case hex (as apksigner prints it). */
export async function certSha256(certPem: string): Promise<string> {
  return certSha256Of(await readFile(certPem));
}

/** Same as certSha256 for certificate bytes (PEM or DER). */
export function certSha256Of(cert: Buffer): string {
  return createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
}

/** A private key and its certificate, as files. */
export interface KeyPairFiles {
  /** DER PKCS#8 (AOSP's .pk8) or PEM. */
  key: string;
  certPem: string;
}

/**
 * The key pair an APK-style key reference names: a named key set's APK key, or an AOSP-style
 * prefix (`<prefix>.pk8` + `<prefix>.x509.pem`, either file named).
 */
export function apkStyleKeyFiles(ref: KeyRef, what: string): KeyPairFiles {
  const r = resolveKeyRef(ref, 'apk');
  const pair = r.keys
    ? { key: r.keys.apk.keyPk8, certPem: r.keys.apk.certPem }
    : {
        key: `${(r.file as string).replace(/\.(pk8|x509\.pem)$/, '')}.pk8`,
        certPem: `${(r.file as string).replace(/\.(pk8|x509\.pem)$/, '')}.x509.pem`,
      };
  for (const f of [pair.key, pair.certPem])
    if (!existsSync(f))
      throw new InputError(`${what} file not found: ${f}`, { code: 'KEY_MISSING', context: { file: f } });
  return pair;
}
