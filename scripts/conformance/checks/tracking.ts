/** Section 3: No tracking. */
import { apkWhere, type CheckContext, stringList } from '../context.ts';
import { type CheckFamily, type CheckOutcome, type Evidence, notApplicable, verdict } from '../types.ts';

/** Tracker SDKs found in a list of class names: [{ tracker, class }]. */
export function findTrackers(
  classes: string[],
  trackers: Array<{ name: string; category?: string; prefixes: string[] }>,
): Array<{ name: string; category?: string; className: string }> {
  const out: Array<{ name: string; category?: string; className: string }> = [];
  for (const t of trackers) {
    const hit = classes.find((c) => t.prefixes.some((p) => c.startsWith(p)));
    if (hit) out.push({ name: t.name, category: t.category, className: hit });
  }
  return out;
}

async function noTrackerSdks(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const ev: Evidence[] = [];
  const apps = await ctx.facts.readableApps();
  for (const a of apps) {
    for (const t of findTrackers(a.facts.classes, ctx.facts.data.trackers)) {
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: t.className,
        detail: `tracker SDK ${t.name}${t.category ? ` (${t.category})` : ''}`,
      });
    }
  }
  let jars = 0;
  for (const x of await ctx.facts.apexes()) {
    for (const j of x.facts?.jars ?? []) {
      jars++;
      for (const t of findTrackers(j.classes, ctx.facts.data.trackers))
        ev.push({
          partition: x.ref.partition,
          file: `${x.ref.path}!${j.path}`,
          package: x.facts?.package,
          value: t.className,
          detail: `tracker SDK ${t.name}${t.category ? ` (${t.category})` : ''} in an APEX java library`,
        });
    }
  }
  return verdict(
    ev,
    `no tracker SDK in ${apps.length} APK(s) and ${jars} APEX jar(s) (${ctx.facts.data.trackers.length} signatures)`,
    (k) => `${k} tracker SDK(s) found`,
  );
}

async function noSilentGrants(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('config-xmls');
  if (missing) return notApplicable(missing);
  const perms = new Set(stringList(ctx.params.consentPermissions));
  const ev: Evidence[] = [];
  for (const x of await ctx.facts.configXmls()) {
    if (x.kind !== 'default-permissions') continue;
    for (const el of x.elements) {
      if (el.name !== 'exception' || !el.attrs.package) continue;
      for (const p of el.children) {
        if (p.name === 'permission' && perms.has(p.attrs.name))
          ev.push({
            partition: x.partition,
            file: x.file,
            package: el.attrs.package,
            value: p.attrs.name,
            detail: `line ${p.line}: granted by default${p.attrs.fixed === 'true' ? ' and fixed' : ''}, without the owner's consent`,
          });
      }
    }
  }
  return verdict(ev, 'no location or identity permission is pre-granted', (k) => `${k} silent pre-grant(s)`);
}

async function onlyPlatformReadsIdentifiers(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('config-xmls');
  if (missing) return notApplicable(missing);
  const perms = new Set(stringList(ctx.params.silentIdentifierPermissions));
  const platform = await ctx.facts.platformSigners();
  const byPkg = new Map<string, string[]>();
  for (const a of await ctx.facts.readableApps()) byPkg.set(a.facts.package, a.facts.signing.signerSha256);
  const ev: Evidence[] = [];
  for (const [partition, lists] of await ctx.facts.privappAllowlists()) {
    for (const [pkg, l] of lists) {
      const granted = [...l.grant].filter((p) => perms.has(p));
      if (!granted.length) continue;
      const signers = byPkg.get(pkg);
      const isPlatform = signers?.some((s) => platform.has(s)) ?? false;
      if (!isPlatform)
        ev.push({
          partition,
          file: l.files[0],
          package: pkg,
          value: granted.join(', '),
          detail: signers
            ? 'allowlisted for a silent identifier permission but not signed with the platform key'
            : 'allowlisted for a silent identifier permission; the package is not on the image',
        });
    }
  }
  return verdict(
    ev,
    'only platform-signed packages hold silent identifier permissions',
    (k) => `${k} non-platform package(s) can read identifiers silently`,
  );
}

async function noBackgroundLocation(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const ev: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    if (a.facts.usesPermissions.includes('android.permission.ACCESS_BACKGROUND_LOCATION'))
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: 'android.permission.ACCESS_BACKGROUND_LOCATION',
        detail: 'requests background location',
      });
  }
  return verdict(
    ev,
    'no preinstalled app requests background location',
    (k) => `${k} app(s) request background location`,
  );
}

export const trackingChecks: CheckFamily = {
  '3.1/C-0-1': noTrackerSdks,
  '3.2/C-0-1': noSilentGrants,
  '3.2/C-0-2': onlyPlatformReadsIdentifiers,
  '3.2/C-0-3': noBackgroundLocation,
};
