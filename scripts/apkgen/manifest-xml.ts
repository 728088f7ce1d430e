import type { ApkSpec, SmaliSource } from './index.ts';

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
      `  <permission${attrs({
        'android:name': p.name,
        'android:protectionLevel': p.protectionLevel,
        'android:label': p.label,
        'android:description': p.description,
      })}/>`,
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
      inner.push(
        `      <meta-data${attrs({ 'android:name': m.name, 'android:value': m.value, 'android:resource': m.resource })}/>`,
      );
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

/**
 * The abstract methods of the framework classes components extend, each with a minimal body
 * that is valid for its return type, so a generated class is concrete (the runtime would throw
 * AbstractMethodError on the first framework call otherwise). Signatures from the AOSP sources
 * (android.app.Service, android.content.BroadcastReceiver / ContentProvider,
 * android.app.backup.BackupAgent).
 */
const ABSTRACT_METHODS: Record<string, string[]> = {
  'Landroid/app/Service;': ['public onBind(Landroid/content/Intent;)Landroid/os/IBinder;'],
  'Landroid/content/BroadcastReceiver;': [
    'public onReceive(Landroid/content/Context;Landroid/content/Intent;)V',
  ],
  'Landroid/content/ContentProvider;': [
    'public onCreate()Z',
    'public query(Landroid/net/Uri;[Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;)Landroid/database/Cursor;',
    'public getType(Landroid/net/Uri;)Ljava/lang/String;',
    'public insert(Landroid/net/Uri;Landroid/content/ContentValues;)Landroid/net/Uri;',
    'public delete(Landroid/net/Uri;Ljava/lang/String;[Ljava/lang/String;)I',
    'public update(Landroid/net/Uri;Landroid/content/ContentValues;Ljava/lang/String;[Ljava/lang/String;)I',
  ],
  'Landroid/app/backup/BackupAgent;': [
    'public onBackup(Landroid/os/ParcelFileDescriptor;Landroid/app/backup/BackupDataOutput;Landroid/os/ParcelFileDescriptor;)V',
    'public onRestore(Landroid/app/backup/BackupDataInput;ILandroid/os/ParcelFileDescriptor;)V',
  ],
};

/** A body returning the default value of the method's return type (void, 0/false, null). */
function defaultBody(signature: string): string[] {
  const ret = signature.slice(signature.lastIndexOf(')') + 1);
  if (ret === 'V') return ['    .locals 0', '    return-void'];
  if (ret === 'J' || ret === 'D') return ['    .locals 2', '    const-wide/16 v0, 0x0', '    return-wide v0'];
  if (ret.length === 1) return ['    .locals 1', '    const/4 v0, 0x0', '    return v0'];
  return ['    .locals 1', '    const/4 v0, 0x0', '    return-object v0'];
}

/**
 * One minimal class in smali syntax: a public no-arg constructor calling its superclass and,
 * for a framework component superclass, a default implementation of each abstract method.
 */
export function smaliClass(name: string, superClass: string): string {
  const desc = `L${name.replace(/\./g, '/')};`;
  const src = `${name.split('.').pop()!.split('$')[0]}.java`;
  const methods = (ABSTRACT_METHODS[superClass] ?? []).flatMap((m) => [
    `.method ${m}`,
    ...defaultBody(m),
    '.end method',
    '',
  ]);
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
    ...methods,
  ].join('\n');
}

/**
 * The smali source of every class of the APK: the spec's own code for the classes it implements,
 * a minimal class (smaliClass) for every other class of classList, then the spec's helper classes.
 */
export function smaliSources(spec: ApkSpec): SmaliSource[] {
  const own = new Map((spec.code ?? []).map((c) => [c.name, c]));
  const out: SmaliSource[] = classList(spec).map(
    (c) => own.get(c.name) ?? { name: c.name, smali: smaliClass(c.name, c.superClass) },
  );
  const listed = new Set(out.map((c) => c.name));
  for (const c of spec.code ?? []) if (!listed.has(c.name)) out.push(c);
  return out;
}
