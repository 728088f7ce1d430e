/**
 * Section 4.3: customer-side guarantees around the personal cloud — the owner chooses where
 * data syncs, and every customer-side app keeps its data in the personal cloud and says why it
 * needs the network.
 */
import { DATA_STORE_META_DATA, manifestRole, PERSONAL_CLOUD_PERMISSION } from '../../model/app-roles.ts';
import { personalCloudConfigSchema } from '../../model/personal-cloud.ts';
import { apkWhere, type CheckContext, stringList } from '../context.ts';
import {
  type CheckFamily,
  type CheckOutcome,
  type Evidence,
  fail,
  notApplicable,
  verdict,
} from '../types.ts';
import { personalClouds } from './personal-cloud.ts';

const CONFIG_PATH = 'etc/omie/personal-cloud.json';
const INTERNET = 'android.permission.INTERNET';

/** Customer-side apps: by the product's role, else by the role their manifest declares. */
async function customerApps(ctx: CheckContext) {
  const declared = new Map(
    (ctx.product?.apps ?? []).filter((a) => a.role === 'customer-app').map((a) => [a.package, a]),
  );
  const apps = (await ctx.facts.readableApps()).filter(
    (a) => declared.has(a.facts.package) || manifestRole(a.facts.appMetaData) === 'customer-app',
  );
  return { apps, declared };
}

/** 4.3/C-0-1: the sync target is the owner's choice: options with placeholders, no default remote forced on them. */
async function syncOwnerChangeable(ctx: CheckContext): Promise<CheckOutcome> {
  const clouds = await personalClouds(ctx);
  if (clouds.length === 0) return fail('no personal-cloud app (see 4.1/C-0-1)');
  const files = await ctx.facts.textFiles([CONFIG_PATH]);
  if (files.length === 0)
    return fail(
      `no ${CONFIG_PATH} on any partition: the personal cloud has no owner-selectable sync options`,
    );
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  const hardWired = stringList(ctx.params.allowedFixedHosts);
  for (const f of files) {
    let data: unknown;
    try {
      data = JSON.parse(f.text);
    } catch (e) {
      ev.push({ partition: f.partition, file: f.path, detail: `not JSON: ${(e as Error).message}` });
      continue;
    }
    const r = personalCloudConfigSchema.safeParse(data);
    if (!r.success) {
      ev.push({
        partition: f.partition,
        file: f.path,
        detail: `does not follow spec/schemas/personal-cloud.schema.json: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`,
      });
      continue;
    }
    const cfg = r.data;
    if (!clouds.some((c) => c.facts.package === cfg.package))
      ev.push({
        partition: f.partition,
        file: f.path,
        value: cfg.package,
        detail: 'names a package that is not the personal cloud',
      });
    if (!cfg.providers.some((p) => p.kind === 'local'))
      ev.push({
        partition: f.partition,
        file: f.path,
        detail: 'offers no local-only option: the owner cannot keep data on the tablet alone',
      });
    for (const p of cfg.providers) {
      if (p.kind === 'local' || !p.endpointTemplate) continue;
      const host = /^[a-z]+:\/\/([^/]+)/i.exec(p.endpointTemplate)?.[1] ?? '';
      if (!host.includes('{') && !hardWired.includes(host)) {
        ev.push({
          partition: f.partition,
          file: f.path,
          value: p.endpointTemplate,
          detail: `provider "${p.label}" is hard-wired to ${host}: its endpoint must be filled in by the owner`,
        });
      }
    }
    const declaredDefault = ctx.product?.personalCloud?.defaultRemote ?? null;
    if (cfg.defaultRemote !== null && cfg.defaultRemote !== declaredDefault) {
      ev.push({
        partition: f.partition,
        file: f.path,
        value: cfg.defaultRemote,
        detail: 'a default remote the product does not declare',
      });
    }
    ok.push({
      partition: f.partition,
      file: f.path,
      detail: `${cfg.providers.length} provider kind(s): ${cfg.providers.map((p) => p.kind).join(', ')}; default remote ${cfg.defaultRemote ?? 'none'}`,
    });
  }
  return verdict(
    ev,
    'the owner picks (and can change) where the personal cloud syncs',
    (n) => `${n} problem(s) with the personal cloud sync options`,
    ok,
  );
}

/** 4.3/C-0-2: each customer-side app declares that its data lives in the personal cloud. */
async function keepsDataInPersonalCloud(ctx: CheckContext): Promise<CheckOutcome> {
  const { apps } = await customerApps(ctx);
  if (apps.length === 0) return notApplicable('no customer-side app on the image');
  const meta = String(ctx.params.metaDataName ?? DATA_STORE_META_DATA);
  const permission = String(ctx.params.permission ?? PERSONAL_CLOUD_PERMISSION);
  const ev: Evidence[] = [];
  for (const a of apps) {
    const declares = a.facts.appMetaData[meta] !== undefined && a.facts.usesPermissions.includes(permission);
    if (!declares) {
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        detail: `needs <meta-data android:name="${meta}"> and <uses-permission android:name="${permission}">`,
      });
    }
  }
  return verdict(
    ev,
    `all ${apps.length} customer-side app(s) keep their data in the personal cloud`,
    (n) => `${n} customer-side app(s) do not declare the personal cloud as their data store`,
  );
}

/** 4.3/C-0-3: a customer-side app that can reach the network says why, in its app.yaml. */
async function internetJustified(ctx: CheckContext): Promise<CheckOutcome> {
  const { apps, declared } = await customerApps(ctx);
  if (apps.length === 0) return notApplicable('no customer-side app on the image');
  // Without a product, the app.yaml of prebuilt-apps/ with the same package holds the reason.
  const repo = ctx.facts.data.repoApps ?? new Map();
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  for (const a of apps) {
    if (!a.facts.usesPermissions.includes(INTERNET)) continue;
    const where = { ...apkWhere(a.ref), package: a.facts.package };
    const reason = ctx.product
      ? declared.get(a.facts.package)?.internetReason
      : repo.get(a.facts.package)?.internetReason;
    if (reason) ok.push({ ...where, detail: `INTERNET: ${reason}` });
    else if (!ctx.product && !repo.has(a.facts.package))
      ev.push({ ...where, detail: 'holds INTERNET but has no app.yaml in prebuilt-apps/ to say why' });
    else ev.push({ ...where, detail: 'holds INTERNET but its app.yaml gives no internet.reason' });
  }
  return verdict(
    ev,
    'every customer-side app that uses the network says why',
    (n) => `${n} app(s) hold INTERNET without a declared reason`,
    ok,
  );
}

export const customerSideChecks: CheckFamily = {
  '4.3/C-0-1': syncOwnerChangeable,
  '4.3/C-0-2': keepsDataInPersonalCloud,
  '4.3/C-0-3': internetJustified,
};
