/**
 * What the build's conformance check would fail on, known from the plan alone: packages the plan
 * keeps or adds that 2.1/C-0-1 names as Google's (a base with Google apps outside the default
 * removal set, or a product that keeps one). Found before anything is repacked, so a build that
 * would fail its check at the end fails in seconds instead, naming the packages and the fix.
 */
import { matchesAny, stringList } from '../conformance/context.ts';
import { DEFAULT_SPEC_DIR } from '../conformance/run.ts';
import { loadSpec } from '../conformance/spec.ts';
import { isExpired } from '../conformance/waivers.ts';
import type { ResolvedProduct } from '../model/index.ts';
import type { Plan } from './plan.ts';

/** The requirement the preflight anticipates: no Google package on any partition. */
export const NO_GOOGLE_PACKAGE = '2.1/C-0-1';

export interface ForbiddenPackage {
  package: string;
  /** `partition:path` of each APK holding it (none for a product app). */
  where: string[];
  pattern: string;
}

/**
 * The packages of `plan` that the check's 2.1/C-0-1 will flag, unless the product waives that
 * requirement (a waiver still in force on `now`). Patterns come from the spec the check uses.
 */
export async function packagesTheCheckRefuses(
  plan: Plan,
  product: ResolvedProduct,
  now: Date,
  specDir = DEFAULT_SPEC_DIR,
): Promise<ForbiddenPackage[]> {
  if ((product.product.waivers ?? []).some((w) => w.id === NO_GOOGLE_PACKAGE && !isExpired(w, now)))
    return [];
  const req = (await loadSpec(specDir)).requirements.find((r) => r.id === NO_GOOGLE_PACKAGE);
  const patterns = stringList(req?.params?.packagePatterns);
  if (!req || !patterns.length) return [];
  const found = new Map<string, ForbiddenPackage>();
  const flag = (pkg: string, where?: string) => {
    const pattern = matchesAny(pkg, patterns);
    if (!pattern) return;
    const f = found.get(pkg) ?? { package: pkg, where: [], pattern };
    if (where) f.where.push(where);
    found.set(pkg, f);
  };
  for (const part of plan.partitions)
    for (const apk of part.apks)
      if (apk.action === 'keep') flag(apk.package, `${part.partition}:${apk.path}`);
  for (const pkg of plan.addedPackages) flag(pkg);
  return [...found.values()].sort((a, b) => a.package.localeCompare(b.package));
}
