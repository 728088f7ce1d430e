/** Section 4: The owner's personal cloud. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { APP_ROLE_NAMES, APP_ROLES, isAppRole, manifestRole, ROLE_META_DATA } from '../../model/app-roles.ts';
import { apkWhere, type CheckContext, stringList } from '../context.ts';
import {
  type CheckFamily,
  type CheckOutcome,
  type Evidence,
  fail,
  notApplicable,
  pass,
  verdict,
} from '../types.ts';
import type { ApkFacts, ApkRef } from '../view.ts';
import { privilegedPermissionSet } from './apps.ts';

type App = { ref: ApkRef; facts: ApkFacts };

/** Apps that are the personal cloud: by the product's role or by manifest meta-data. */
export async function personalClouds(ctx: CheckContext): Promise<App[]> {
  const declared = new Set(
    (ctx.product?.apps ?? []).filter((a) => a.role === 'personal-cloud').map((a) => a.package),
  );
  return (await ctx.facts.readableApps()).filter(
    (a) => declared.has(a.facts.package) || manifestRole(a.facts.appMetaData) === 'personal-cloud',
  );
}

function distinctPackages(apps: App[]): string[] {
  return [...new Set(apps.map((a) => a.facts.package))];
}

async function exactlyOne(ctx: CheckContext): Promise<CheckOutcome> {
  const clouds = await personalClouds(ctx);
  const pkgs = distinctPackages(clouds);
  const ev: Evidence[] = clouds.map((a) => ({
    ...apkWhere(a.ref),
    package: a.facts.package,
    detail: 'personal-cloud app',
  }));
  const declared = (ctx.product?.apps ?? []).filter((a) => a.role === 'personal-cloud');
  if (pkgs.length !== 1) return fail(`${pkgs.length} personal-cloud apps found, exactly one is required`, ev);
  if (ctx.product && !declared.some((d) => d.package === pkgs[0]))
    return fail(`the personal cloud on the image (${pkgs[0]}) is not the one the product declares`, [
      ...ev,
      { detail: `product declares ${declared.map((d) => d.package).join(', ') || 'none'}` },
    ]);
  return pass(`one personal cloud: ${pkgs[0]}`, ev);
}

async function single(ctx: CheckContext): Promise<App | CheckOutcome> {
  const clouds = await personalClouds(ctx);
  const pkgs = distinctPackages(clouds);
  if (pkgs.length === 0) return fail('no personal-cloud app on the image (see 4.1/C-0-1)');
  if (pkgs.length > 1) return fail(`${pkgs.length} personal-cloud apps (see 4.1/C-0-1)`);
  return clouds[0];
}

function isOutcome(x: App | CheckOutcome): x is CheckOutcome {
  return 'status' in x;
}

async function privilegedAndAllowlisted(ctx: CheckContext): Promise<CheckOutcome> {
  const c = await single(ctx);
  if (isOutcome(c)) return c;
  const ev: Evidence[] = [];
  const where = { ...apkWhere(c.ref), package: c.facts.package };
  if (!c.ref.path.startsWith('priv-app/')) ev.push({ ...where, detail: 'not installed under priv-app/' });
  const privileged = await privilegedPermissionSet(ctx);
  const declared = ctx.product?.apps.find((a) => a.package === c.facts.package)?.privilegedPermissions ?? [];
  const needed = new Set([...c.facts.usesPermissions.filter((p) => privileged.has(p)), ...declared]);
  const list = (await ctx.facts.privappAllowlists()).get(c.ref.partition)?.get(c.facts.package);
  if (!list) ev.push({ ...where, detail: `no privapp-permissions entry on ${c.ref.partition}` });
  else
    for (const p of needed)
      if (!list.grant.has(p))
        ev.push({
          ...where,
          file: list.files[0],
          value: p,
          detail: 'privileged permission not granted by the allowlist',
        });
  return verdict(
    ev,
    `${c.facts.package} is privileged and its ${needed.size} privileged permission(s) are allowlisted`,
    (k) => `${k} problem(s) with the personal cloud's privileges`,
  );
}

/** `pkg/.Cls` → pkg. */
const pkgOf = (service: string) => service.split('/')[0].trim();

async function transportServices(
  ctx: CheckContext,
): Promise<Array<{ partition: string; file: string; service: string; line: number }>> {
  const out: Array<{ partition: string; file: string; service: string; line: number }> = [];
  for (const x of await ctx.facts.configXmls()) {
    for (const el of x.elements) {
      if (el.name === 'backup-transport-whitelisted-service' && el.attrs.service)
        out.push({ partition: x.partition, file: x.file, service: el.attrs.service, line: el.line });
    }
  }
  return out;
}

async function defaultTransportAndAccounts(ctx: CheckContext): Promise<CheckOutcome> {
  const c = await single(ctx);
  if (isOutcome(c)) return c;
  const pkg = c.facts.package;
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  const transports = await transportServices(ctx);
  const mine = transports.filter((t) => pkgOf(t.service) === pkg);
  if (mine.length)
    ok.push({
      partition: mine[0].partition,
      file: mine[0].file,
      value: mine[0].service,
      detail: 'allowlisted backup transport',
    });
  else
    ev.push({
      package: pkg,
      detail: 'no sysconfig backup-transport-whitelisted-service names the personal cloud',
    });

  const setting = await ctx.view.settings('secure', 'backup_transport');
  if (setting !== undefined && setting !== null && setting !== 'null') {
    (pkgOf(setting) === pkg ? ok : ev).push({ value: setting, detail: 'settings secure backup_transport' });
  } else {
    const def = await ctx.facts.effectiveResource('def_backup_transport');
    const v = def ? (Array.isArray(def.value) ? def.value[0] : def.value) : undefined;
    if (!def || !v)
      ev.push({
        package: pkg,
        detail: 'no SettingsProvider overlay sets def_backup_transport to the personal cloud',
      });
    else
      (pkgOf(v) === pkg ? ok : ev).push({
        ...apkWhere(def.source),
        value: v,
        detail: 'def_backup_transport',
      });
  }
  const auth = c.facts.components.find(
    (x) => x.type === 'service' && x.actions.includes('android.accounts.AccountAuthenticator'),
  );
  if (auth)
    ok.push({ ...apkWhere(c.ref), package: pkg, value: auth.name, detail: 'account authenticator service' });
  else
    ev.push({
      ...apkWhere(c.ref),
      package: pkg,
      detail: 'declares no service for android.accounts.AccountAuthenticator',
    });
  return ev.length
    ? fail(
        `${ev.length} problem(s): the personal cloud must be the default backup transport and an account provider`,
        ev,
      )
    : pass(`${pkg} is the default backup transport and an account provider`, ok);
}

async function noOtherTransport(ctx: CheckContext): Promise<CheckOutcome> {
  const clouds = distinctPackages(await personalClouds(ctx));
  const allowed = new Set([...clouds, ...stringList(ctx.params.allowedTransports)]);
  const ev: Evidence[] = [];
  const transports = await transportServices(ctx);
  for (const t of transports) {
    if (!allowed.has(pkgOf(t.service)))
      ev.push({
        partition: t.partition,
        file: t.file,
        package: pkgOf(t.service),
        value: t.service,
        detail: `line ${t.line}: another backup transport is allowlisted`,
      });
  }
  // A device also says which transports are registered.
  const bmgr = ctx.view.shell ? await ctx.view.shell('bmgr list transports').catch(() => '') : '';
  const registered = bmgr
    .split('\n')
    .map((line) => line.replace(/^\s*\*?\s*/, '').trim())
    .filter((s) => s.includes('/'));
  for (const s of registered)
    if (!allowed.has(pkgOf(s))) ev.push({ package: pkgOf(s), value: s, detail: 'bmgr list transports' });
  const noXml = await ctx.facts.missing('config-xmls');
  if (noXml && !registered.length)
    return notApplicable(ctx.view.shell ? `${noXml}, and \`bmgr list transports\` listed none` : noXml);
  return verdict(
    ev,
    'no backup transport other than the personal cloud',
    (k) => `${k} other backup transport(s)`,
  );
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function declaredAndPinned(ctx: CheckContext): Promise<CheckOutcome> {
  const apps = await ctx.facts.readableApps();
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  if (ctx.product) {
    for (const d of ctx.product.apps.filter((a) => APP_ROLES[a.role].ownerSide)) {
      const found = apps.filter((a) => a.facts.package === d.package);
      if (!found.length) {
        ev.push({
          package: d.package,
          partition: d.partition,
          detail: `declared ${d.role} app (${d.name}) is missing`,
        });
        continue;
      }
      for (const a of found) {
        const where = { ...apkWhere(a.ref), package: d.package };
        if (a.ref.partition !== d.partition)
          ev.push({ ...where, detail: `on ${a.ref.partition}, declared on ${d.partition}` });
        if (!d.signerSha256.length)
          ev.push({ ...where, detail: 'its app.yaml pin could not be resolved (named key missing)' });
        else if (!a.facts.signing.signerSha256.some((s) => d.signerSha256.includes(s)))
          ev.push({
            ...where,
            value: a.facts.signing.signerSha256.join(', '),
            detail: `signer is not the pinned ${d.signerSha256.join(', ')}`,
          });
        if (d.apkSha256) {
          const got = await sha256File(a.ref.localPath);
          if (got !== d.apkSha256)
            ev.push({ ...where, value: got, detail: `APK SHA-256 is not the pinned ${d.apkSha256}` });
        }
        ok.push({ ...where, detail: `declared as ${d.role} (${d.name})` });
      }
    }
    const declared = new Set(ctx.product.apps.map((a) => a.package));
    for (const a of apps) {
      const role = manifestRole(a.facts.appMetaData);
      if (role === undefined || declared.has(a.facts.package)) continue;
      if (!isAppRole(role) || APP_ROLES[role].ownerSide)
        ev.push({
          ...apkWhere(a.ref),
          package: a.facts.package,
          value: role,
          detail: `its manifest declares the Omie role ${role} but the product does not list it`,
        });
    }
    return ev.length
      ? fail(`${ev.length} customer-side app problem(s)`, ev)
      : pass('every customer-side app is present, declared and pinned', ok);
  }
  // Without a product the repository is the reference: every APK that declares an Omie role in
  // its manifest must be an app of prebuilt-apps/, signed by the signer pinned there.
  const pins = ctx.facts.data.repoPins;
  const roleApps = apps.filter((a) => manifestRole(a.facts.appMetaData) !== undefined);
  if (!roleApps.length)
    return notApplicable(
      `no product given (--product) and no APK declares an Omie role (${ROLE_META_DATA} meta-data)`,
    );
  for (const a of roleApps) {
    const role = manifestRole(a.facts.appMetaData) as string;
    const pin = pins.get(a.facts.package);
    const where = { ...apkWhere(a.ref), package: a.facts.package };
    if (!isAppRole(role))
      ev.push({
        ...where,
        value: role,
        detail: `declares an unknown Omie role (known: ${APP_ROLE_NAMES.join(', ')})`,
      });
    if (!pin)
      ev.push({
        ...where,
        value: role,
        detail: `declares the Omie role ${role} but is not declared in prebuilt-apps/`,
      });
    else if (!a.facts.signing.signerSha256.some((s) => pin.includes(s)))
      ev.push({
        ...where,
        value: a.facts.signing.signerSha256.join(', '),
        detail: `signer is not the one pinned in prebuilt-apps/ (${pin.join(', ') || 'pin unresolved: named key missing'})`,
      });
    else ok.push({ ...where, value: role, detail: 'pinned in prebuilt-apps/' });
  }
  return ev.length
    ? fail(`${ev.length} customer-side app problem(s): not declared or not pinned`, ev)
    : pass(
        `every app that declares an Omie role (${roleApps.length}) is declared and pinned in prebuilt-apps/`,
        ok,
      );
}

export const personalCloudChecks: CheckFamily = {
  '4.1/C-0-1': exactlyOne,
  '4.1/C-0-2': privilegedAndAllowlisted,
  '4.1/C-0-3': defaultTransportAndAccounts,
  '4.1/C-0-4': noOtherTransport,
  '4.2/C-0-1': declaredAndPinned,
};
