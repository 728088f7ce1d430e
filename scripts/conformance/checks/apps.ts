/** Section 5: Apps. */
import { apkWhere, type CheckContext, stringList } from '../context.ts';
import { type CheckFamily, type CheckOutcome, type Evidence, notApplicable, verdict } from '../types.ts';

/** PermissionInfo.PROTECTION_FLAG_PRIVILEGED. */
const PROTECTION_FLAG_PRIVILEGED = 0x10;

/**
 * Names of privileged permissions: those framework-res.apk declares with the `privileged`
 * protection flag, or the spec's list (5.2/C-0-1 `privilegedPermissions`) when framework-res is
 * not on the image (a partial image).
 */
export async function privilegedPermissionSet(ctx: CheckContext): Promise<Set<string>> {
  const fw = await ctx.facts.frameworkRes();
  const declared =
    fw?.facts.declaredPermissions.filter((p) => (p.protectionLevel & PROTECTION_FLAG_PRIVILEGED) !== 0) ?? [];
  if (declared.length) return new Set(declared.map((p) => p.name));
  return new Set(stringList(ctx.paramsOf('5.2/C-0-1').privilegedPermissions));
}

const V2_OR_LATER = [2, 3, 31];

async function allVerify(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const ev: Evidence[] = [];
  const apps = await ctx.facts.apps();
  for (const a of apps) {
    if (!a.facts) {
      ev.push({ ...apkWhere(a.ref), package: a.ref.packageHint, detail: `unreadable APK: ${a.error}` });
      continue;
    }
    const s = a.facts.signing;
    const where = { ...apkWhere(a.ref), package: a.facts.package };
    if (!s.verified)
      ev.push({ ...where, detail: `signature does not verify${s.error ? `: ${s.error}` : ''}` });
    else if ((a.facts.targetSdk ?? 0) >= 30 && !s.schemes.some((x) => V2_OR_LATER.includes(x)))
      ev.push({
        ...where,
        value: `v${s.schemes.join(',v')}`,
        detail: `targetSdkVersion ${a.facts.targetSdk} needs APK Signature Scheme v2 or later`,
      });
  }
  return verdict(ev, `all ${apps.length} APK(s) verify`, (k) => `${k} APK(s) fail verification`);
}

async function signersKnown(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const apps = await ctx.facts.readableApps();
  const anchors = new Set(stringList(ctx.params.baseAnchorPackages));
  const base = new Set<string>();
  for (const a of apps)
    if (anchors.has(a.facts.package)) for (const s of a.facts.signing.signerSha256) base.add(s);
  const pinned = new Set<string>();
  for (const a of ctx.product?.apps ?? []) for (const s of a.signerSha256) pinned.add(s);
  for (const s of ctx.product?.partnerSignerSha256 ?? []) pinned.add(s);
  for (const pins of ctx.facts.data.repoPins.values()) for (const s of pins) pinned.add(s);
  // Without a product, what the repository's products vouch for (their APK key, trust.baseSigners).
  if (!ctx.product) for (const t of ctx.facts.data.repoProductSigners ?? []) pinned.add(t.sha256);
  const ev: Evidence[] = [];
  for (const a of apps) {
    const signers = a.facts.signing.signerSha256;
    if (!signers.some((s) => base.has(s) || pinned.has(s)))
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: signers.join(', ') || '(unsigned)',
        detail: `signer is neither pinned in prebuilt-apps/, nor the ${ctx.product ? "product's" : "repository products'"} APK key or trust.baseSigners, nor a key of the base`,
      });
  }
  return verdict(
    ev,
    `every signer is pinned or a base key (${base.size} base key(s), ${pinned.size} pin(s))`,
    (k) => `${k} APK(s) with an unknown signer`,
  );
}

/** Public test-key certificate digests → name: 5.1/C-0-3's `publicTestKeySha256` and spec/known-signers.yaml. */
function testKeyCertificates(ctx: CheckContext): Map<string, string> {
  const test = new Map<string, string>();
  for (const d of stringList(ctx.paramsOf('5.1/C-0-3').publicTestKeySha256))
    test.set(d.toLowerCase(), 'AOSP public test key');
  for (const [d, k] of ctx.facts.data.knownSigners) if (/test/.test(k.kind)) test.set(d, k.name);
  return test;
}

async function noTestKeys(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const test = testKeyCertificates(ctx);
  const ev: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    for (const s of a.facts.signing.signerSha256) {
      const name = test.get(s);
      if (name)
        ev.push({ ...apkWhere(a.ref), package: a.facts.package, value: s, detail: `signed with ${name}` });
    }
  }
  return verdict(
    ev,
    'no APK is signed with a public test key',
    (k) => `${k} APK(s) signed with a public test key`,
  );
}

async function noDebuggable(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const ev: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    const flags = [a.facts.debuggable && 'debuggable', a.facts.testOnly && 'testOnly'].filter(Boolean);
    if (flags.length)
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: flags.join(', '),
        detail: `android:${flags.join(' and android:')} is true`,
      });
  }
  return verdict(ev, 'no debuggable or test-only app', (k) => `${k} debuggable or test-only app(s)`);
}

async function privappAllowlistsComplete(ctx: CheckContext): Promise<CheckOutcome> {
  const privileged = await privilegedPermissionSet(ctx);
  const lists = await ctx.facts.privappAllowlists();
  const ev: Evidence[] = [];
  let n = 0;
  for (const a of await ctx.facts.readableApps()) {
    if (!a.ref.path.startsWith('priv-app/')) continue;
    n++;
    const wanted = a.facts.usesPermissions.filter((p) => privileged.has(p));
    const l = lists.get(a.ref.partition)?.get(a.facts.package);
    const missing = wanted.filter((p) => !l?.grant.has(p) && !l?.deny.has(p));
    if (missing.length)
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: missing.join(', '),
        detail: `${missing.length} privileged permission(s) missing from ${a.ref.partition}/etc/permissions privapp-permissions (boot aborts under enforce)`,
      });
  }
  if (n === 0)
    return notApplicable('no APK under priv-app/ of any partition: no privileged app to allowlist');
  return verdict(
    ev,
    `${n} priv-app(s) have complete allowlists`,
    (k) => `${k} priv-app(s) with incomplete allowlists`,
  );
}

/**
 * 5.3/C-0-1: every APEX is one apexd accepts (container signature, payload signed by
 * apex_pubkey, one hashtree named after it), and neither its container certificate nor its
 * payload key is a public test key. Passing evidence reports each APEX's name, version and key.
 */
async function apexesSound(ctx: CheckContext): Promise<CheckOutcome> {
  const test = testKeyCertificates(ctx);
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  const apexes = await ctx.facts.apexes();
  // Nothing to verify is not a pass (an AOSP base before Android 10, a partial image).
  if (!apexes.length) return notApplicable('no APEX on the image or device');
  for (const x of apexes) {
    const where = { partition: x.ref.partition, file: x.ref.path };
    if (!x.facts) {
      ev.push({ ...where, package: x.ref.packageHint, detail: `unreadable APEX: ${x.error}` });
      continue;
    }
    const f = x.facts;
    const id = { ...where, package: f.package };
    const before = ev.length;
    if (!f.signing.verified)
      ev.push({
        ...id,
        detail: `container signature does not verify${f.signing.error ? `: ${f.signing.error}` : ''}`,
      });
    for (const s of f.signing.signerSha256) {
      const name = test.get(s);
      if (name) ev.push({ ...id, value: s, detail: `container signed with ${name}` });
    }
    if (f.payloadTestKey)
      ev.push({
        ...id,
        value: f.payloadKeySha256 ?? undefined,
        detail: `payload signed with the AVB public test key ${f.payloadTestKey}`,
      });
    for (const p of f.payloadProblems) ev.push({ ...id, detail: `payload: ${p}` });
    if (ev.length === before)
      ok.push({
        ...id,
        value: f.payloadKeySha256 ?? undefined,
        detail: `${f.name} version ${f.version}${f.compressed ? ' (compressed)' : ''}, payload key ${f.payloadKeySha256}`,
      });
  }
  return verdict(
    ev,
    apexes.length
      ? `all ${apexes.length} APEX(es) verify, none with a public test key`
      : 'no APEX on the image',
    (k) => `${k} APEX problem(s)`,
    ok,
  );
}

export const appsChecks: CheckFamily = {
  '5.1/C-0-1': allVerify,
  '5.1/C-0-2': signersKnown,
  '5.1/C-0-3': noTestKeys,
  '5.1/C-0-4': noDebuggable,
  '5.2/C-0-1': privappAllowlistsComplete,
  '5.3/C-0-1': apexesSound,
};
