/** Section 2: No Google dependency. */

import { manifestRole } from '../../model/app-roles.ts';
import { apkWhere, type CheckContext, matchesAny, stringList } from '../context.ts';
import { googleHostsIn, isGoogleHost } from '../endpoints.ts';
import { DEFAULT_GOOGLE_APEX_PATTERNS, googleMainlineModule } from '../mainline.ts';
import {
  type CheckFamily,
  type CheckOutcome,
  type Evidence,
  fail,
  notApplicable,
  pass,
  verdict,
} from '../types.ts';

/** Google package patterns from 2.1/C-0-1, shared by the other Google checks. */
export const DEFAULT_GOOGLE_PACKAGES = ['com.google.*', 'com.android.vending', 'com.android.chrome'];

/** 2.1/C-0-1's `packagePatterns`, or the defaults when the spec gives none. */
export function googlePackagePatterns(params: Record<string, unknown> | undefined): string[] {
  const own = stringList(params?.packagePatterns);
  return own.length ? own : DEFAULT_GOOGLE_PACKAGES;
}

function googlePatterns(ctx: CheckContext): string[] {
  return googlePackagePatterns(ctx.params);
}

/** The package part of `pkg`, `pkg/.Class` or `pkg/pkg.Class`. */
function packagePart(v: string): string {
  return v.split('/')[0].trim();
}

async function noGooglePackages(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const patterns = googlePatterns(ctx);
  const ev: Evidence[] = [];
  for (const a of await ctx.facts.apps()) {
    const pkg = a.facts?.package ?? a.ref.packageHint;
    if (!pkg) continue;
    const m = matchesAny(pkg, patterns);
    if (m) ev.push({ ...apkWhere(a.ref), package: pkg, detail: `package ${pkg} matches ${m}` });
  }
  const apexes = await ctx.facts.apexes();
  for (const x of apexes) {
    const pkg = x.facts?.package ?? x.ref.packageHint;
    if (!pkg) continue;
    const m = matchesAny(pkg, patterns);
    if (m) ev.push({ ...apkWhere(x.ref), package: pkg, detail: `APEX package ${pkg} matches ${m}` });
  }
  const n = (await ctx.facts.apps()).length + apexes.length;
  return verdict(ev, `none of ${n} packages is Google's`, (k) => `${k} Google package(s) present`);
}

/** Google's signer digests: 2.1/C-0-2's `googleSignerSha256` and the Google entries of spec/known-signers.yaml. */
export function googleSignerDigests(ctx: CheckContext): Set<string> {
  const digests = new Set(
    stringList(ctx.paramsOf('2.1/C-0-2').googleSignerSha256).map((s) => s.toLowerCase()),
  );
  for (const [d, k] of ctx.facts.data.knownSigners) if (k.kind === 'google') digests.add(d);
  return digests;
}

async function noGoogleSigners(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('apks');
  if (missing) return notApplicable(missing);
  const digests = googleSignerDigests(ctx);
  const ev: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    for (const s of a.facts.signing.signerSha256) {
      if (digests.has(s)) {
        const known = ctx.facts.data.knownSigners.get(s);
        ev.push({
          ...apkWhere(a.ref),
          package: a.facts.package,
          value: s,
          detail: `signed by Google${known ? ` (${known.name})` : ''}`,
        });
      }
    }
  }
  for (const x of await ctx.facts.apexes()) {
    const s = x.facts?.signing.signerSha256.find((d) => digests.has(d));
    if (s)
      ev.push({
        ...apkWhere(x.ref),
        package: x.facts?.package,
        value: s,
        detail: `APEX container signed by Google${ctx.facts.data.knownSigners.get(s) ? ` (${ctx.facts.data.knownSigners.get(s)?.name})` : ''}`,
      });
  }
  return verdict(
    ev,
    'no APK or APEX is signed by a Google release key',
    (k) => `${k} APK(s)/APEX(es) signed by Google`,
  );
}

/**
 * 2.5/C-0-1: no Google build of a Mainline module, APK or APEX; each finding names the AOSP
 * module that replaces it (spec/mainline-modules.yaml). Passing evidence lists every APEX.
 */
async function mainlineIsAosp(ctx: CheckContext): Promise<CheckOutcome> {
  const modules = ctx.facts.data.mainline ?? [];
  const own = stringList(ctx.params.googleApexPatterns);
  const apexPatterns = own.length ? own : DEFAULT_GOOGLE_APEX_PATTERNS;
  const googleSigners = googleSignerDigests(ctx);
  const fix = (aosp: string | null) =>
    aosp ? `replace it with the AOSP module ${aosp}` : 'remove it (the platform needs no AOSP counterpart)';
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  const apps = await ctx.facts.readableApps();
  const apexes = await ctx.facts.apexes();
  if (!apps.length && !apexes.length) return notApplicable('no APK or APEX to read');
  for (const a of apps) {
    const m = googleMainlineModule(a.facts.package, 'apk', modules, apexPatterns);
    if (m)
      ev.push({
        ...apkWhere(a.ref),
        package: a.facts.package,
        value: m.aosp ?? undefined,
        detail: `Google's build of a Mainline module: ${fix(m.aosp)}`,
      });
  }
  for (const x of apexes) {
    if (!x.facts) continue;
    const f = x.facts;
    const byName = googleMainlineModule(f.package, 'apex', modules, apexPatterns);
    const bySigner = f.signing.signerSha256.some((d) => googleSigners.has(d));
    if (byName || bySigner) {
      const aosp = byName ? byName.aosp : f.name;
      ev.push({
        ...apkWhere(x.ref),
        package: f.package,
        value: aosp ?? undefined,
        detail: `Google's build of the Mainline APEX ${f.name}${bySigner && !byName ? ' (signed by Google)' : ''}: ${fix(aosp)}`,
      });
    } else
      ok.push({
        ...apkWhere(x.ref),
        package: f.package,
        value: f.payloadKeySha256 ?? undefined,
        detail: `APEX ${f.name} version ${f.version}${f.versionName ? ` (${f.versionName})` : ''}, payload key ${f.payloadKeySha256 ?? 'none'}`,
      });
  }
  return verdict(
    ev,
    `no Google Mainline module (${apexes.length} APEX(es) checked)`,
    (k) => `${k} Google Mainline module(s): each needs its AOSP module`,
    ok,
  );
}

async function noGoogleXmls(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('config-xmls');
  if (missing) return notApplicable(missing);
  const patterns = googlePatterns(ctx);
  const ev: Evidence[] = [];
  const xmls = await ctx.facts.configXmls();
  for (const x of xmls) {
    if (/google|gms/i.test(x.file.split('/').pop() ?? '')) {
      ev.push({ partition: x.partition, file: x.file, detail: `${x.kind} XML named after Google` });
      continue;
    }
    for (const el of x.elements) {
      for (const attr of ['package', 'name', 'service', 'component', 'activity', 'value']) {
        const v = el.attrs[attr];
        if (!v) continue;
        const pkg = packagePart(v);
        const m = matchesAny(pkg, patterns);
        if (m) {
          ev.push({
            partition: x.partition,
            file: x.file,
            package: pkg,
            detail: `line ${el.line}: <${el.name} ${attr}="${v}"> names Google (${m})`,
          });
          break;
        }
      }
    }
  }
  return verdict(
    ev,
    `${xmls.length} permission/sysconfig/default-permission/preferred-apps XML(s) name no Google package`,
    (k) => `${k} Google entr(ies) in platform XMLs`,
  );
}

async function noGoogleProps(ctx: CheckContext): Promise<CheckOutcome> {
  const missing = await ctx.facts.missing('props');
  if (missing) return notApplicable(missing);
  const patterns = stringList(ctx.params.propPatterns);
  const ev: Evidence[] = [];
  for (const [k, v] of Object.entries(await ctx.facts.props())) {
    const m = matchesAny(k, patterns);
    if (m) ev.push({ prop: k, value: v, detail: `property matches ${m}` });
  }
  return verdict(ev, 'no Google property is set', (k) => `${k} Google propert(ies) set`);
}

interface EndpointSpec {
  what: string;
  /** Resources that configure it (overlays of framework-res / NetworkStack / SettingsProvider). */
  resources: string[];
  /** The resource that must be set (by an overlay or the base) because the built-in default is Google's. */
  required?: string;
  /** settings keys (device). */
  settings: Array<{ ns: 'global' | 'secure'; key: string }>;
  /** Property name fragments. */
  props: RegExp;
  /** The product's value for the primary setting, when it declares one. */
  productValue?: string;
  /** How to judge a value (default: names a Google host). */
  isBad?: (v: string) => boolean;
}

function asList(v: string | string[]): string[] {
  return Array.isArray(v) ? v : [v];
}

/** Shared logic of 2.4: every place that configures an endpoint must not name Google. */
async function endpointCheck(ctx: CheckContext, spec: EndpointSpec): Promise<CheckOutcome> {
  const bad = spec.isBad ?? ((v: string) => isGoogleHost(v));
  const ev: Evidence[] = [];
  const seen: Evidence[] = [];
  let requiredValue: string | undefined;
  for (const name of spec.resources) {
    const eff = await ctx.facts.effectiveResource(name);
    if (!eff) continue;
    for (const v of asList(eff.value)) {
      const e: Evidence = {
        ...apkWhere(eff.source),
        value: v,
        detail: `${name}${eff.overlay ? ' (overlay)' : ' (base default)'}`,
      };
      (v && bad(v) ? ev : seen).push(e);
    }
    if (name === spec.required) requiredValue = asList(eff.value)[0];
  }
  for (const [k, v] of Object.entries(await ctx.facts.props())) {
    if (spec.props.test(k) && v && bad(v))
      ev.push({ prop: k, value: v, detail: `property configures ${spec.what}` });
  }
  let settingValue: string | undefined;
  for (const s of spec.settings) {
    const v = await ctx.view.settings(s.ns, s.key);
    if (v === undefined || v === null || v === '' || v === 'null') continue;
    settingValue ??= v;
    for (const item of v.split(/[\s,]+/).filter(Boolean)) {
      (bad(item) ? ev : seen).push({ value: item, detail: `settings ${s.ns} ${s.key}` });
    }
  }
  if (spec.required && !requiredValue && !settingValue) {
    ev.push({
      detail: `${spec.required} is not set by any overlay or setting, so the platform's built-in Google default applies`,
    });
  }
  const effective = settingValue ?? requiredValue;
  if (spec.productValue && effective && effective !== spec.productValue) {
    ev.push({
      value: effective,
      detail: `${spec.what} is ${effective}, the product declares ${spec.productValue}`,
    });
  }
  return ev.length
    ? fail(`${spec.what}: ${ev.length} problem(s)`, ev)
    : pass(`${spec.what} is not Google's`, seen);
}

const captivePortal = (ctx: CheckContext) =>
  endpointCheck(ctx, {
    what: 'captive-portal probe',
    resources: [
      'config_captive_portal_https_url',
      'config_captive_portal_http_url',
      'config_captive_portal_https_urls',
      'config_captive_portal_http_urls',
      'config_captive_portal_fallback_urls',
      'config_captive_portal_fallback_url',
    ],
    required: 'config_captive_portal_https_url',
    settings: [
      { ns: 'global', key: 'captive_portal_https_url' },
      { ns: 'global', key: 'captive_portal_http_url' },
      { ns: 'global', key: 'captive_portal_fallback_url' },
      { ns: 'global', key: 'captive_portal_other_fallback_urls' },
    ],
    props: /captive_portal/,
    productValue: ctx.product?.endpoints?.captivePortalHttpsUrl,
  });

async function ntp(ctx: CheckContext): Promise<CheckOutcome> {
  const base = await endpointCheck(ctx, {
    what: 'network time server',
    resources: ['config_ntpServer'],
    required: 'config_ntpServer',
    settings: [{ ns: 'global', key: 'ntp_server' }],
    props: /(^|\.)ntp[._]?server|\.ntp$/i,
    productValue: ctx.product?.endpoints?.ntpServer,
  });
  const gps = await gpsConfValues(ctx, /^NTP_SERVER$/);
  return merge(base, gps);
}

/** key=value pairs of every etc/gps.conf (and config_gnssParameters items) whose key matches. */
async function gpsConfValues(ctx: CheckContext, key: RegExp): Promise<{ bad: Evidence[]; ok: Evidence[] }> {
  const bad: Evidence[] = [];
  const ok: Evidence[] = [];
  const files = await ctx.facts.textFiles(['etc/gps.conf', 'etc/gps_debug.conf']);
  for (const f of files) {
    for (const line of f.text.split(/\r?\n/)) {
      const m = /^\s*([A-Z0-9_]+)\s*=\s*(.+?)\s*$/.exec(line);
      if (!m || !key.test(m[1])) continue;
      const e: Evidence = { partition: f.partition, file: f.path, value: m[2], detail: m[1] };
      (googleHostsIn(m[2]).length || isGoogleHost(m[2]) ? bad : ok).push(e);
    }
  }
  const gnss = await ctx.facts.effectiveResource('config_gnssParameters');
  if (gnss) {
    for (const item of asList(gnss.value)) {
      const m = /^\s*([A-Z0-9_]+)\s*=\s*(.+?)\s*$/.exec(item);
      if (!m || !key.test(m[1])) continue;
      const e: Evidence = { ...apkWhere(gnss.source), value: m[2], detail: `config_gnssParameters ${m[1]}` };
      (isGoogleHost(m[2]) ? bad : ok).push(e);
    }
  }
  return { bad, ok };
}

function merge(base: CheckOutcome, extra: { bad: Evidence[]; ok: Evidence[] }): CheckOutcome {
  if (base.status === 'fail' || extra.bad.length) {
    const ev = [...(base.status === 'fail' ? base.evidence : []), ...extra.bad];
    return fail(
      `${ev.length} problem(s): ${base.status === 'fail' ? base.message : 'gps.conf names Google'}`,
      ev,
    );
  }
  return pass(base.message, [...base.evidence, ...extra.ok]);
}

/**
 * A pass with nothing seen means the platform defaults apply; when framework-res.apk, which holds
 * them, is not on the view, they could not be read: not applicable, with the reason.
 */
async function unlessDefaultsUnread(ctx: CheckContext, outcome: CheckOutcome): Promise<CheckOutcome> {
  if (outcome.status !== 'pass' || outcome.evidence.length) return outcome;
  const missing = await ctx.facts.missing('framework-res');
  return missing ? notApplicable(missing) : outcome;
}

async function supl(ctx: CheckContext): Promise<CheckOutcome> {
  const r = await gpsConfValues(
    ctx,
    /^(SUPL_HOST|XTRA_SERVER_\d+|XTRA_URL|LONGTERM_PSDS_SERVER_\d+|NORMAL_PSDS_SERVER|REALTIME_PSDS_SERVER|PSDS_SERVER_\d+)$/,
  );
  for (const [k, v] of Object.entries(await ctx.facts.props())) {
    if (/supl|psds|xtra/i.test(k) && isGoogleHost(v))
      r.bad.push({ prop: k, value: v, detail: 'property configures GNSS assistance' });
  }
  return unlessDefaultsUnread(
    ctx,
    r.bad.length
      ? fail(`${r.bad.length} GNSS assistance server(s) are Google's`, r.bad)
      : pass(
          r.ok.length ? 'no GNSS assistance server is Google' : 'no GNSS assistance server configured',
          r.ok,
        ),
  );
}

const dns = (ctx: CheckContext) =>
  endpointCheck(ctx, {
    what: 'default DNS',
    resources: ['config_default_dns_server'],
    required: 'config_default_dns_server',
    settings: [{ ns: 'global', key: 'private_dns_specifier' }],
    props: /^net\.(dns\d|rmnet\d\.dns\d|.*\.dns\d)$/,
  });

async function locationProviders(ctx: CheckContext): Promise<CheckOutcome> {
  const patterns = DEFAULT_GOOGLE_PACKAGES;
  const outcome = await endpointCheck(ctx, {
    what: 'location / geocoder provider',
    resources: [
      'config_networkLocationProviderPackageName',
      'config_locationProviderPackageNames',
      'config_geocoderProviderPackageName',
      'config_fusedLocationProviderPackageName',
      'config_comboNetworkLocationProvider',
    ],
    settings: [{ ns: 'secure', key: 'location_providers_allowed' }],
    props: /^ro\.(location|geocoder)\./,
    isBad: (v) => Boolean(matchesAny(packagePart(v), patterns)),
  });
  return unlessDefaultsUnread(ctx, outcome);
}

async function webview(ctx: CheckContext): Promise<CheckOutcome> {
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    for (const p of a.facts.webviewProviders ?? []) {
      const e: Evidence = {
        ...apkWhere(a.ref),
        package: p,
        detail: 'config_webview_packages lists it as a WebView provider',
      };
      (matchesAny(p, DEFAULT_GOOGLE_PACKAGES) ? ev : ok).push(e);
    }
  }
  const s = await ctx.view.settings('global', 'webview_provider');
  if (s && s !== 'null')
    (matchesAny(s, DEFAULT_GOOGLE_PACKAGES) ? ev : ok).push({
      package: s,
      detail: 'settings global webview_provider',
    });
  return unlessDefaultsUnread(
    ctx,
    verdict(
      ev,
      ok.length ? 'no WebView provider is Google' : 'no WebView provider list found (no Google one)',
      (k) => `${k} Google WebView provider(s)`,
      ok,
    ),
  );
}

/**
 * 2.6/C-0-1: something sets DEVICE_PROVISIONED / USER_SETUP_COMPLETE without Google: AOSP's
 * Provision app, an app with role `setup`, or SettingsProvider defaults that start provisioned.
 */
async function provisionedWithoutGoogle(ctx: CheckContext): Promise<CheckOutcome> {
  const own = stringList(ctx.params.provisionPackages);
  const provision = new Set(own.length ? own : ['com.android.provision']);
  const setupApps = new Set(
    (ctx.product?.apps ?? []).filter((a) => a.role === 'setup').map((a) => a.package),
  );
  const ok: Evidence[] = [];
  const google: Evidence[] = [];
  for (const a of await ctx.facts.readableApps()) {
    const pkg = a.facts.package;
    if (provision.has(pkg)) ok.push({ ...apkWhere(a.ref), package: pkg, detail: "AOSP's Provision app" });
    else if (setupApps.has(pkg) || manifestRole(a.facts.appMetaData) === 'setup')
      ok.push({ ...apkWhere(a.ref), package: pkg, detail: 'an app with role setup' });
    else if (/^com\.google\.android\.setupwizard/.test(pkg))
      google.push({ ...apkWhere(a.ref), package: pkg, detail: "Google's setup wizard (does not count)" });
  }
  const isTrue = (v: string | string[] | undefined) => v === 'true' || v === '1';
  const provisioned = await ctx.facts.effectiveResource('def_device_provisioned');
  const setupDone = await ctx.facts.effectiveResource('def_user_setup_complete');
  if (provisioned && setupDone && isTrue(provisioned.value) && isTrue(setupDone.value))
    ok.push({
      ...apkWhere(provisioned.source),
      detail: `SettingsProvider defaults def_device_provisioned and def_user_setup_complete are true${provisioned.overlay ? ' (overlay)' : ''}`,
    });
  const dp = await ctx.view.settings('global', 'device_provisioned');
  const usc = await ctx.view.settings('secure', 'user_setup_complete');
  if (dp === '1' && usc === '1')
    ok.push({ detail: 'settings global device_provisioned and secure user_setup_complete are 1' });
  if (ok.length) return pass(`provisioned without Google: ${ok[0].detail}`, ok);
  return fail('nothing but Google could finish the first-boot setup', [
    ...google,
    {
      detail:
        'none of: com.android.provision, an app with role setup, a SettingsProvider overlay setting def_device_provisioned and def_user_setup_complete to true',
    },
  ]);
}

export const googleChecks: CheckFamily = {
  '2.1/C-0-1': noGooglePackages,
  '2.1/C-0-2': noGoogleSigners,
  '2.2/C-0-1': noGoogleXmls,
  '2.3/C-0-1': noGoogleProps,
  '2.4/C-0-1': captivePortal,
  '2.4/C-0-2': ntp,
  '2.4/C-0-3': supl,
  '2.4/C-0-4': dns,
  '2.4/C-0-5': locationProviders,
  '2.4/C-0-6': webview,
  '2.5/C-0-1': mainlineIsAosp,
  '2.6/C-0-1': provisionedWithoutGoogle,
};
