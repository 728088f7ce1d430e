/**
 * What the build's conformance check would fail on, known from the plan alone: APKs the plan
 * keeps or adds that section 2.1 calls Google's, by package name (2.1/C-0-1: a base's Google app
 * outside the default removal set, a `removals.keep` entry) or by signer (2.1/C-0-2: kept with
 * `removals.defaults: false` or `keep`). Found before anything is repacked, so a build that would
 * fail its check at the end fails in seconds instead, naming the APKs and the fix.
 */
import { googlePackagePatterns } from '../conformance/checks/google.ts';
import { matchesAny, stringList } from '../conformance/context.ts';
import { DEFAULT_SPEC_DIR } from '../conformance/run.ts';
import { loadSpec } from '../conformance/spec.ts';
import { loadKnownSigners } from '../conformance/spec-data.ts';
import { isExpired } from '../conformance/waivers.ts';
import type { ResolvedProduct } from '../model/index.ts';
import type { Plan } from './plan.ts';

/** No Google package on any partition. */
export const NO_GOOGLE_PACKAGE = '2.1/C-0-1';
/** No APK signed by a Google release key. */
export const NO_GOOGLE_SIGNER = '2.1/C-0-2';

export interface RefusedApk {
  requirement: typeof NO_GOOGLE_PACKAGE | typeof NO_GOOGLE_SIGNER;
  package: string;
  /** `partition:path` of the APK (absent for a product app, which has no path in the image yet). */
  where?: string;
  /** The package pattern or the signer digest the check will flag. */
  because: string;
}

/**
 * The APKs of `plan` that 2.1/C-0-1 and 2.1/C-0-2 will flag, with the parameters of the spec the
 * check uses; a requirement the product waives (a waiver still in force on `now`) is skipped.
 */
export async function apksTheCheckRefuses(
  plan: Plan,
  product: ResolvedProduct,
  now: Date,
  specDir = DEFAULT_SPEC_DIR,
): Promise<RefusedApk[]> {
  const waived = (id: string) =>
    (product.product.waivers ?? []).some((w) => w.id === id && !isExpired(w, now));
  const spec = await loadSpec(specDir);
  // A requirement the spec lacks or the product waives is not anticipated.
  const inForce = (id: string) => (waived(id) ? undefined : spec.requirements.find((r) => r.id === id));
  const nameRule = inForce(NO_GOOGLE_PACKAGE);
  const signerRule = inForce(NO_GOOGLE_SIGNER);
  const patterns = nameRule ? googlePackagePatterns(nameRule.params) : [];
  const googleSigners = new Set<string>();
  if (signerRule) {
    for (const s of stringList(signerRule.params.googleSignerSha256)) googleSigners.add(s.toLowerCase());
    for (const [digest, k] of await loadKnownSigners(specDir))
      if (k.kind === 'google') googleSigners.add(digest);
  }

  const out: RefusedApk[] = [];
  const byName = (pkg: string, where?: string) => {
    const pattern = patterns.length ? matchesAny(pkg, patterns) : undefined;
    if (pattern) out.push({ requirement: NO_GOOGLE_PACKAGE, package: pkg, where, because: pattern });
  };
  for (const part of plan.partitions)
    for (const apk of part.apks) {
      if (apk.action !== 'keep') continue;
      const where = `${part.partition}:${apk.path}`;
      byName(apk.package, where);
      const signer = apk.signers.find((s) => googleSigners.has(s));
      if (signer) out.push({ requirement: NO_GOOGLE_SIGNER, package: apk.package, where, because: signer });
    }
  for (const part of plan.partitions)
    for (const apex of part.apexes ?? []) {
      if (apex.action !== 'keep') continue;
      const where = `${part.partition}:${apex.path}`;
      byName(apex.package, where);
      const signer = apex.signers.find((s) => googleSigners.has(s));
      if (signer) out.push({ requirement: NO_GOOGLE_SIGNER, package: apex.package, where, because: signer });
    }
  for (const pkg of plan.addedPackages) byName(pkg);
  return out;
}
