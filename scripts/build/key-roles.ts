/**
 * Release signing of a test-keys base by key role, as AOSP's sign_target_files_apks does it: an
 * APK signed with the public test key of a role (platform, shared, media, networkstack, …) is
 * re-signed with the partner's key of that same role, so that everything that must share a key
 * still does (the apps of android.uid.system and the framework, the members of every other shared
 * UID, the signers the SELinux policy names in mac_permissions.xml).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { SigningKey } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
import { APK_KEY_ROLES, type ApkKeyRole, defaultKnownSigners } from '../formats/apk/known-signers.ts';
import { apkSigningKey, certSha256Of } from '../keys/store.ts';
import type { ResolvedProduct } from '../model/index.ts';

type Signing = ResolvedProduct['product']['signing'];

export interface RoleKey {
  key: SigningKey;
  /** SHA-256 of the certificate's DER (as apksigner prints it). */
  certSha256: string;
  /** The certificate's DER, as mac_permissions.xml names signers (in hex). */
  certDer: Buffer;
  /** Where the product names it ("signing.apkKeys.platform" or "signing.apkKey"). */
  from: string;
}

/**
 * The partner key of every role: `signing.apkKeys.<role>` when the product names one, else
 * `signing.apkKey` (which also stays the key of the product's own apps and overlays).
 */
export async function resolveRoleKeys(signing: Signing): Promise<Record<ApkKeyRole, RoleKey>> {
  const load = async (key: SigningKey, from: string): Promise<RoleKey> => {
    const der = Buffer.from(new X509Certificate(await readFile(key.certPem)).raw);
    return { key, certSha256: certSha256Of(der), certDer: der, from };
  };
  const fallback = await load(apkSigningKey(signing.apkKey), 'signing.apkKey');
  const out = {} as Record<ApkKeyRole, RoleKey>;
  for (const role of APK_KEY_ROLES) {
    const ref = signing.apkKeys?.[role];
    out[role] = ref ? await load(apkSigningKey(ref, role), `signing.apkKeys.${role}`) : fallback;
  }
  return out;
}

/**
 * Certificate digest → role, for every public test key the kit knows (spec/known-signers.yaml)
 * plus `extra` (stand-ins of a generated sample base).
 */
export function testKeyRoles(extra: ReadonlyMap<string, ApkKeyRole> = new Map()): Map<string, ApkKeyRole> {
  const out = new Map<string, ApkKeyRole>();
  for (const s of defaultKnownSigners().signers)
    if (s.kind === 'public-test-key' && s.role) out.set(s.sha256, s.role);
  for (const [sha, role] of extra) out.set(sha.toLowerCase(), role);
  return out;
}

/** The role of the first of `signers` that is a public test key, or null. */
export function roleOfSigners(
  signers: readonly string[],
  roles: ReadonlyMap<string, ApkKeyRole>,
): ApkKeyRole | null {
  for (const s of signers) {
    const r = roles.get(s.toLowerCase());
    if (r) return r;
  }
  return null;
}

export interface SharedUidMember {
  /** "system:/system/priv-app/Settings/Settings.apk" or the like. */
  where: string;
  package: string;
  sharedUserId: string | null | undefined;
  /** Signer digests the APK has once the build is done. */
  signers: string[];
}

/**
 * Every shared UID's members must end with one signer: the package manager refuses a package
 * whose certificate differs from its shared user's (for android.uid.system, a platform app
 * signed otherwise than framework-res does not start). Throws SHARED_UID_SPLIT naming them.
 */
export function checkSharedUids(members: readonly SharedUidMember[]): void {
  const byUid = new Map<string, SharedUidMember[]>();
  for (const m of members) {
    if (!m.sharedUserId) continue;
    const list = byUid.get(m.sharedUserId) ?? [];
    list.push(m);
    byUid.set(m.sharedUserId, list);
  }
  const split: Array<{
    sharedUserId: string;
    members: Array<{ package: string; where: string; signers: string[] }>;
  }> = [];
  for (const [uid, list] of byUid) {
    const keys = new Set(list.map((m) => [...m.signers].sort().join(',')));
    if (keys.size > 1)
      split.push({
        sharedUserId: uid,
        members: list.map((m) => ({ package: m.package, where: m.where, signers: m.signers })),
      });
  }
  if (!split.length) return;
  const text = split
    .map(
      (s) =>
        `${s.sharedUserId}: ${s.members.map((m) => `${m.package} (${m.signers.map((x) => x.slice(0, 12)).join(',') || 'unsigned'})`).join(', ')}`,
    )
    .join('; ');
  throw new InputError(`members of a shared UID would end with different signing keys: ${text}`, {
    code: 'SHARED_UID_SPLIT',
    context: { sharedUids: split },
    hint: 'a shared UID needs one key: re-sign the odd member out of band with the key of its group, remove it from the base (removals.packages), or give the roles involved the same key in signing.apkKeys',
  });
}

const SIGNATURE_ATTR = /(\bsignature\s*=\s*)(["'])([0-9A-Fa-f]+)\2/g;

export interface MacPermissionsRewrite {
  text: string;
  /** Roles whose test-key certificate was replaced. */
  roles: ApkKeyRole[];
  /** Roles whose test-key certificate is named but was left (no re-signed APK of that role). */
  left: ApkKeyRole[];
}

/**
 * mac_permissions.xml gives apps their SELinux seinfo by signer certificate (hex of the DER):
 * `platform` for the platform key, `media`, `network_stack`, `bluetooth`… Replaces the public
 * test-key certificate of every role in `resigned` with the partner certificate of that role
 * (sign_target_files_apks ReplaceCerts). A role none of whose APKs was re-signed keeps its entry:
 * its apps (inside APEXes, which the build does not re-sign) still carry the test key, and
 * would lose their seinfo otherwise. Returns null when the file names no public test key.
 */
export function rewriteMacPermissions(
  text: string,
  roles: ReadonlyMap<string, ApkKeyRole>,
  keys: Readonly<Record<ApkKeyRole, RoleKey>>,
  resigned: ReadonlySet<ApkKeyRole>,
): MacPermissionsRewrite | null {
  const replaced = new Set<ApkKeyRole>();
  const left = new Set<ApkKeyRole>();
  const out = text.replace(SIGNATURE_ATTR, (all, head: string, q: string, hex: string) => {
    if (hex.length % 2) return all;
    const role = roles.get(certSha256OfHex(hex));
    if (!role) return all;
    if (!resigned.has(role)) {
      left.add(role);
      return all;
    }
    replaced.add(role);
    return `${head}${q}${keys[role].certDer.toString('hex')}${q}`;
  });
  return replaced.size || left.size
    ? { text: out, roles: [...replaced].sort(), left: [...left].sort() }
    : null;
}

function certSha256OfHex(hex: string): string {
  try {
    return certSha256Of(Buffer.from(hex, 'hex'));
  } catch {
    return '';
  }
}

/** The certificates `<signer signature="…">` names in a mac_permissions.xml (lower-case hex). */
export function macPermissionsSigners(text: string): string[] {
  return [...text.matchAll(/<signer\b[^>]*?\bsignature\s*=\s*(["'])([0-9A-Fa-f]+)\1/g)].map((m) =>
    m[2].toLowerCase(),
  );
}

/**
 * SELinuxMMAC sorts the stanzas of every mac_permissions.xml together and, on two for one
 * certificate, keeps one seinfo for both: with one partner key for two roles the policy names,
 * the apps of one role would run in the other's SELinux domain. Throws MAC_PERMISSIONS_DUPLICATE
 * when the re-signing makes two stanzas name one certificate (sign_target_files_apks refuses
 * this too), unless the base already had them so.
 */
export function checkMacPermissionsUnique(
  files: ReadonlyArray<{ where: string; before: string; after: string; roles: readonly ApkKeyRole[] }>,
  keys: Readonly<Record<ApkKeyRole, RoleKey>>,
): void {
  const count = (texts: string[]) => {
    const n = new Map<string, number>();
    for (const t of texts) for (const s of macPermissionsSigners(t)) n.set(s, (n.get(s) ?? 0) + 1);
    return n;
  };
  const before = count(files.map((f) => f.before));
  const after = count(files.map((f) => f.after));
  const dup = [...after].filter(([s, n]) => n > 1 && (before.get(s) ?? 0) < n).map(([s]) => s);
  if (!dup.length) return;
  const named = new Set(files.flatMap((f) => f.roles));
  const shared = APK_KEY_ROLES.filter((r) => named.has(r) && dup.includes(keys[r].certDer.toString('hex')));
  const byKey = new Map<string, ApkKeyRole[]>();
  for (const r of shared) {
    const k = keys[r].from;
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  const text = [...byKey].map(([from, rs]) => `${rs.join(', ')} (all ${from})`).join('; ');
  throw new InputError(
    `the SELinux policy (${files.map((f) => f.where).join(', ')}) tells these key roles apart, but the product signs them with one key: ${text}`,
    {
      code: 'MAC_PERMISSIONS_DUPLICATE',
      context: { roles: shared, files: files.map((f) => f.where) },
      hint: `give each role its own key: \`omie keys init <name> --roles ${shared.join(',')}\` and signing.apkKeys: { ${shared.map((r) => `${r}: { name: <name> }`).join(', ')} } in the product`,
    },
  );
}

/**
 * Roles keep their separation: an APK of one role must not end with the key of another, or it
 * would gain that role's privileges (an app with the platform key gets every signature
 * permission of the framework; with the media key, it may join android.media). Two roles that
 * re-sign base APKs may share a key only when the product names it for both in signing.apkKeys;
 * falling back to signing.apkKey for both is refused (KEY_ROLES_MERGED), naming the roles.
 */
export function checkRoleKeysDistinct(
  resigned: ReadonlySet<ApkKeyRole>,
  keys: Readonly<Record<ApkKeyRole, RoleKey>>,
): void {
  const byCert = new Map<string, ApkKeyRole[]>();
  for (const r of APK_KEY_ROLES)
    if (resigned.has(r)) byCert.set(keys[r].certSha256, [...(byCert.get(keys[r].certSha256) ?? []), r]);
  const merged = [...byCert.values()].filter(
    (rs) => rs.length > 1 && rs.some((r) => keys[r].from === 'signing.apkKey'),
  );
  if (!merged.length) return;
  const roles = merged.flat();
  throw new InputError(
    `the base has APKs of the test-key roles ${merged.map((rs) => rs.join(', ')).join('; ')}, which would all be re-signed with one key (${[...new Set(roles.map((r) => keys[r].from))].join(', ')}): each role needs a key of its own`,
    {
      code: 'KEY_ROLES_MERGED',
      context: { roles: merged },
      hint: `create role keys with \`omie keys init <name> --roles ${roles.join(',')}\` and name them in the product: signing.apkKeys: { ${roles.map((r) => `${r}: { name: <name> }`).join(', ')} } (a role left out keeps signing.apkKey)`,
    },
  );
}
