/**
 * APK fixtures built with the real tools (aapt, smali, zipalign, apksigner) through apkgen, into
 * test/.work/apk/fixtures. Each fixture is rebuilt only when its spec changes, and a directory
 * lock keeps parallel vitest workers from building the same files at once.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ApkSpec,
  buildApk,
  generateSigningKey,
  type SigningKey,
  type SignOptions,
} from '../../scripts/apkgen/index.ts';
import { workDir } from '../helpers.ts';

export const TRACKER_CLASSES = [
  'com.google.firebase.analytics.FirebaseAnalytics',
  'com.google.android.gms.measurement.AppMeasurement',
  'com.crashlytics.android.Crashlytics',
  'com.facebook.ads.AdView',
  'com.appsflyer.AppsFlyerLib',
  'io.sentry.Sentry',
  'com.onesignal.OneSignal',
];

const base: ApkSpec = {
  package: 'org.omie.fixture',
  versionCode: 42,
  versionName: '4.2.0',
  label: 'Omie Fixture',
  minSdk: 21,
  targetSdk: 29,
  compileSdk: 29,
  usesPermissions: [
    'android.permission.INTERNET',
    'android.permission.CAMERA',
    { name: 'android.permission.WRITE_EXTERNAL_STORAGE', maxSdkVersion: 28 },
    'android.permission.INSTALL_PACKAGES',
    'org.omie.fixture.permission.PRIVATE',
  ],
  permissions: [{ name: 'org.omie.fixture.permission.PRIVATE', protectionLevel: 'signature' }],
  components: [
    {
      type: 'activity',
      name: '.MainActivity',
      exported: true,
      intentFilters: [
        { actions: ['android.intent.action.MAIN'], categories: ['android.intent.category.LAUNCHER'] },
        {
          actions: ['android.intent.action.VIEW'],
          categories: ['android.intent.category.DEFAULT'],
          data: [{ scheme: 'omie', host: 'open' }],
        },
      ],
    },
    {
      type: 'service',
      name: '.SyncService',
      exported: false,
      permission: 'org.omie.fixture.permission.PRIVATE',
    },
    {
      type: 'receiver',
      name: '.BootReceiver',
      intentFilters: [{ actions: ['android.intent.action.BOOT_COMPLETED'] }],
    },
    { type: 'provider', name: '.Files', exported: false, authorities: 'org.omie.fixture.files' },
  ],
  metaData: [{ name: 'org.omie.flavor', value: 'test' }],
  usesLibraries: [{ name: 'org.apache.http.legacy', required: false }],
};

export interface Fixture {
  name: string;
  spec: ApkSpec;
  /** Which keys sign it (names), null = unsigned. */
  sign: { key: string; v1?: boolean; v2?: boolean; v3?: boolean; rotateFrom?: string } | null;
}

export const FIXTURES: Fixture[] = [
  {
    name: 'v1-only',
    spec: { ...base, package: 'org.omie.v1only' },
    sign: { key: 'rsa-a', v1: true, v2: false, v3: false },
  },
  {
    name: 'v2-only',
    spec: { ...base, package: 'org.omie.v2only', minSdk: 24 },
    sign: { key: 'rsa-a', v1: false, v2: true, v3: false },
  },
  {
    name: 'v123',
    spec: { ...base, package: 'org.omie.v123' },
    sign: { key: 'rsa-a', v1: true, v2: true, v3: true },
  },
  {
    name: 'v23-sdk28',
    spec: { ...base, package: 'org.omie.sdk28', minSdk: 28 },
    sign: { key: 'rsa-a', v1: false, v2: true, v3: true },
  },
  {
    name: 'ec-v123',
    spec: { ...base, package: 'org.omie.ec', minSdk: 24 },
    sign: { key: 'ec-b', v1: true, v2: true, v3: true },
  },
  {
    name: 'rotation',
    spec: { ...base, package: 'org.omie.rotation' },
    sign: { key: 'ec-b', v3: true, rotateFrom: 'rsa-a' },
  },
  {
    name: 'trackers-multidex',
    spec: { ...base, package: 'org.omie.trackers', classes: TRACKER_CLASSES, extraDexFiles: 2 },
    sign: { key: 'rsa-a' },
  },
  {
    name: 'debuggable',
    spec: {
      ...base,
      package: 'org.omie.debug',
      application: { debuggable: true, allowBackup: false, usesCleartextTraffic: true },
    },
    sign: { key: 'rsa-a' },
  },
  {
    name: 'test-only',
    spec: {
      ...base,
      package: 'org.omie.testonly',
      sharedUserId: 'org.omie.shared',
      application: { testOnly: true, persistent: true },
    },
    sign: { key: 'rsa-a' },
  },
  {
    // aapt2 output (UTF-8 string pools, its own chunk layout), localized strings, DSA signer.
    name: 'aapt2-dsa',
    spec: {
      ...base,
      package: 'org.omie.aapttwo',
      minSdk: 24,
      builder: 'aapt2',
      resources: { greeting: 'Hello' },
      localizedResources: {
        fr: { app_name: 'Fixture Omie', greeting: 'Bonjour' },
        de: { greeting: 'Hallo' },
      },
    },
    sign: { key: 'dsa-c', v1: true, v2: true, v3: true },
  },
  { name: 'unsigned', spec: { ...base, package: 'org.omie.unsigned' }, sign: null },
];

export const FIXTURE_DIR = join(workDir('apk'), 'fixtures');

async function keys(): Promise<Record<string, SigningKey>> {
  const dir = join(FIXTURE_DIR, 'keys');
  return {
    'rsa-a': await generateSigningKey(dir, 'rsa-a', { subject: '/C=US/O=Omie Kit Tests/CN=Fixture RSA A' }),
    'ec-b': await generateSigningKey(dir, 'ec-b', {
      subject: '/C=US/O=Omie Kit Tests/CN=Fixture EC B',
      algorithm: 'ec',
    }),
    'dsa-c': await generateSigningKey(dir, 'dsa-c', {
      subject: '/C=US/O=Omie Kit Tests/CN=Fixture DSA C',
      algorithm: 'dsa',
    }),
  };
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Builds (or reuses) every fixture; returns name → path. */
export async function ensureFixtures(): Promise<Record<string, string>> {
  mkdirSync(FIXTURE_DIR, { recursive: true });
  const lock = join(FIXTURE_DIR, '.lock');
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Stale lock from a killed run: older than 5 minutes.
      if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 300_000)
        rmSync(lock, { recursive: true, force: true });
      if (i > 1200) throw new Error('timed out waiting for the APK fixture lock');
      await sleep(250);
    }
  }
  try {
    const k = await keys();
    const out: Record<string, string> = {};
    for (const f of FIXTURES) {
      const apk = join(FIXTURE_DIR, `${f.name}.apk`);
      const stamp = join(FIXTURE_DIR, `${f.name}.json`);
      const want = JSON.stringify({ spec: f.spec, sign: f.sign, v: 1 });
      if (!(existsSync(apk) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want)) {
        const sign: SignOptions | null = f.sign
          ? {
              key: k[f.sign.key]!,
              v1: f.sign.v1,
              v2: f.sign.v2,
              v3: f.sign.v3,
              rotation: f.sign.rotateFrom ? { oldKey: k[f.sign.rotateFrom]! } : undefined,
            }
          : null;
        await buildApk(f.spec, sign, apk);
        writeFileSync(stamp, want);
      }
      out[f.name] = apk;
    }
    return out;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export function fixtureSpec(name: string): Fixture {
  const f = FIXTURES.find((x) => x.name === name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f;
}
