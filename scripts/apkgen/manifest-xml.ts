import type { ApkSpec } from './index.ts';

/**
 * Renders an ApkSpec as a source AndroidManifest.xml for `aapt package`. Kept separate from the
 * build so tests can read exactly what was declared.
 */

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function attrs(a: Record<string, string | number | boolean | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${esc(String(v))}"`)
    .join('');
}

export function manifestXml(spec: ApkSpec): string {
  const L: string[] = [];
  L.push('<?xml version="1.0" encoding="utf-8"?>');
  L.push(
    `<manifest xmlns:android="http://schemas.android.com/apk/res/android"${attrs({
      package: spec.package,
      'android:versionCode': spec.versionCode ?? 1,
      'android:versionName': spec.versionName ?? '1.0',
      'android:sharedUserId': spec.sharedUserId,
      'android:compileSdkVersion': spec.compileSdk,
    })}>`,
  );
  L.push(
    `  <uses-sdk${attrs({ 'android:minSdkVersion': spec.minSdk ?? 24, 'android:targetSdkVersion': spec.targetSdk ?? spec.minSdk ?? 29 })}/>`,
  );
  for (const p of spec.permissions ?? [])
    L.push(
      `  <permission${attrs({ 'android:name': p.name, 'android:protectionLevel': p.protectionLevel })}/>`,
    );
  for (const u of spec.usesPermissions ?? []) {
    const p = typeof u === 'string' ? { name: u } : u;
    L.push(
      `  <uses-permission${attrs({ 'android:name': p.name, 'android:maxSdkVersion': p.maxSdkVersion })}/>`,
    );
  }
  if (spec.queries) {
    L.push('  <queries>');
    for (const p of spec.queries.packages ?? []) L.push(`    <package${attrs({ 'android:name': p })}/>`);
    for (const p of spec.queries.providers ?? [])
      L.push(`    <provider${attrs({ 'android:authorities': p })}/>`);
    L.push('  </queries>');
  }
  const app = spec.application ?? {};
  L.push(
    `  <application${attrs({
      'android:label': '@string/app_name',
      'android:debuggable': app.debuggable,
      'android:testOnly': app.testOnly,
      'android:allowBackup': app.allowBackup,
      'android:usesCleartextTraffic': app.usesCleartextTraffic,
      'android:persistent': app.persistent,
      'android:backupAgent': app.backupAgent,
    })}>`,
  );
  for (const lib of spec.usesLibraries ?? [])
    L.push(`    <uses-library${attrs({ 'android:name': lib.name, 'android:required': lib.required })}/>`);
  for (const m of spec.metaData ?? [])
    L.push(
      `    <meta-data${attrs({ 'android:name': m.name, 'android:value': m.value, 'android:resource': m.resource })}/>`,
    );
  for (const c of spec.components ?? []) {
    const head = `    <${c.type}${attrs({
      'android:name': c.name,
      'android:exported': c.exported,
      'android:permission': c.permission,
      'android:authorities':
        c.type === 'provider' ? (c.authorities ?? `${spec.package}.provider`) : undefined,
    })}`;
    const inner: string[] = [];
    for (const f of c.intentFilters ?? []) {
      inner.push('      <intent-filter>');
      for (const a of f.actions ?? []) inner.push(`        <action${attrs({ 'android:name': a })}/>`);
      for (const a of f.categories ?? []) inner.push(`        <category${attrs({ 'android:name': a })}/>`);
      for (const d of f.data ?? [])
        inner.push(
          `        <data${attrs(Object.fromEntries(Object.entries(d).map(([k, v]) => [k.includes(':') ? k : `android:${k}`, v])))}/>`,
        );
      inner.push('      </intent-filter>');
    }
    for (const m of c.metaData ?? [])
      inner.push(`      <meta-data${attrs({ 'android:name': m.name, 'android:value': m.value })}/>`);
    if (inner.length) L.push(`${head}>`, ...inner, `    </${c.type}>`);
    else L.push(`${head}/>`);
  }
  L.push('  </application>');
  L.push('</manifest>');
  return `${L.join('\n')}\n`;
}

export function stringsXml(spec: ApkSpec, withAppName = true): string {
  const all: Record<string, string> = {
    ...(withAppName ? { app_name: spec.label ?? spec.package } : {}),
    ...(spec.resources ?? {}),
  };
  const body = Object.entries(all)
    .map(([k, v]) => `  <string name="${esc(k)}">"${esc(v).replace(/'/g, "\\'")}"</string>`)
    .join('\n');
  return `<?xml version="1.0" encoding="utf-8"?>\n<resources>\n${body}\n</resources>\n`;
}

/** Superclass a component's class needs so the APK is installable and recognisable. */
const SUPER: Record<string, string> = {
  activity: 'Landroid/app/Activity;',
  service: 'Landroid/app/Service;',
  receiver: 'Landroid/content/BroadcastReceiver;',
  provider: 'Landroid/content/ContentProvider;',
};

/** Fully qualified class name of a manifest component name (".Foo" and "Foo" are package-relative). */
export function qualifyClass(pkg: string, name: string): string {
  if (name.startsWith('.')) return pkg + name;
  if (!name.includes('.')) return `${pkg}.${name}`;
  return name;
}

/** Every class the APK's DEX files carry, with the superclass each extends. */
export function classList(spec: ApkSpec): Array<{ name: string; superClass: string }> {
  const out = new Map<string, string>();
  out.set(`${spec.package}.Main`, 'Ljava/lang/Object;');
  for (const c of spec.components ?? []) out.set(qualifyClass(spec.package, c.name), SUPER[c.type]!);
  for (const c of spec.classes ?? []) if (!out.has(c)) out.set(c, 'Ljava/lang/Object;');
  if (spec.application?.backupAgent)
    out.set(qualifyClass(spec.package, spec.application.backupAgent), 'Landroid/app/backup/BackupAgent;');
  return [...out].map(([name, superClass]) => ({ name, superClass }));
}

/** One minimal class in smali syntax: a public no-arg constructor calling its superclass. */
export function smaliClass(name: string, superClass: string): string {
  const desc = `L${name.replace(/\./g, '/')};`;
  const src = `${name.split('.').pop()!.split('$')[0]}.java`;
  return [
    `.class public ${desc}`,
    `.super ${superClass}`,
    `.source "${src}"`,
    '',
    '.method public constructor <init>()V',
    '    .registers 1',
    `    invoke-direct {p0}, ${superClass}-><init>()V`,
    '    return-void',
    '.end method',
    '',
  ].join('\n');
}
