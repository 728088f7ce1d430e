/**
 * Certificates that matter to Omie, by SHA-256 of the DER certificate (what `apksigner
 * --print-certs` prints): the public AOSP test keys (anything signed with them is signed with a
 * key the whole world has) and Google's release certificate. Data in spec/known-signers.yaml.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { InputError } from '../../errors.ts';

/**
 * Key roles of an AOSP build, as AOSP's sign_target_files_apks maps them
 * (build/make/target/product/security/<role>): each public test key stands for one role, and a
 * release build signs that role with a key of its own. `releasekey` is the role of `testkey`
 * (and `devkey`): the default key of every app that names no other.
 */
export const APK_KEY_ROLES = [
  'releasekey',
  'platform',
  'shared',
  'media',
  'networkstack',
  'bluetooth',
  'sdk_sandbox',
  'nfc',
] as const;
export type ApkKeyRole = (typeof APK_KEY_ROLES)[number];

const signerSchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  name: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** public-test-key: private key published in AOSP (never trust for release builds). */
  kind: z.enum(['public-test-key', 'vendor-release', 'platform-release']),
  aliases: z.array(z.string()).optional(),
  /** For a public test key: the role it signs in an AOSP build. */
  role: z.enum(APK_KEY_ROLES).optional(),
  source: z.string().min(1),
});
const fileSchema = z.object({ signers: z.array(signerSchema).min(1) });

export type KnownSigner = z.infer<typeof signerSchema>;

export const DEFAULT_KNOWN_SIGNERS_FILE = resolve(import.meta.dirname, '../../../spec/known-signers.yaml');

export class KnownSigners {
  private readonly bySha = new Map<string, KnownSigner>();
  constructor(readonly signers: readonly KnownSigner[]) {
    for (const s of signers) this.bySha.set(s.sha256, s);
  }

  static load(file = DEFAULT_KNOWN_SIGNERS_FILE): KnownSigners {
    let data: unknown;
    try {
      data = parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new InputError(`cannot read known signers ${file}: ${(e as Error).message}`, {
        code: 'KNOWN_SIGNERS_UNREADABLE',
        context: { file },
      });
    }
    const r = fileSchema.safeParse(data);
    if (!r.success)
      throw new InputError(
        `invalid known signers ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        {
          code: 'KNOWN_SIGNERS_INVALID',
          context: { file },
        },
      );
    return new KnownSigners(r.data.signers);
  }

  lookup(sha256: string): KnownSigner | null {
    return this.bySha.get(sha256.toLowerCase()) ?? null;
  }

  /** The role of a public test key's certificate (null: not a public test key, or no role). */
  testKeyRole(sha256: string): ApkKeyRole | null {
    const s = this.lookup(sha256);
    return s?.kind === 'public-test-key' ? (s.role ?? null) : null;
  }
}

let cached: KnownSigners | null = null;
export function defaultKnownSigners(): KnownSigners {
  cached ??= KnownSigners.load();
  return cached;
}
