import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildApex } from '../apexgen/index.ts';
import { type ApkSpec, buildApk } from '../apkgen/index.ts';
import { WEBVIEW_LIBRARY_META_DATA } from '../build/plan.ts';
import { initKeys } from '../keys/store.ts';
import type { ResolvedApp } from '../model/index.ts';
import { loadApp } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';

/** Meta-data a customer-side app carries to say its data lives in the owner's personal cloud. */
export const PERSONAL_CLOUD_META = 'org.omie.DATA_STORE';
export const PERSONAL_CLOUD_AUTHORITY = 'org.omie.personalcloud.provider';
export const PERSONAL_CLOUD_PACKAGE = 'org.omie.personalcloud';
export const SAMPLE_APPS_KEY = 'omie-sample-apps';

/** What each sample app does, in manifest terms. The app.yaml stays the source of identity and role. */
function specFor(app: ResolvedApp): ApkSpec {
  const base: ApkSpec = {
    package: app.package,
    versionCode: 1,
    versionName: '1.0.0',
    label: app.label,
    minSdk: 29,
    targetSdk: 34,
    application: { allowBackup: false, usesCleartextTraffic: false },
    usesPermissions: app.internet ? ['android.permission.INTERNET'] : [],
    components: [
      {
        type: 'activity',
        name: '.MainActivity',
        exported: true,
        intentFilters: [
          { actions: ['android.intent.action.MAIN'], categories: ['android.intent.category.LAUNCHER'] },
        ],
      },
    ],
  };
  if (app.role === 'webview') {
    // A WebView provider: no launcher; WebViewFactory loads the library its meta-data names.
    return {
      ...base,
      components: [],
      metaData: [
        { name: WEBVIEW_LIBRARY_META_DATA, value: 'libwebviewchromium.so' },
        { name: 'org.omie.role', value: 'webview' },
      ],
    };
  }
  if (app.role === 'setup') {
    // First-boot setup, as AOSP's Provision: a HOME activity that runs once, sets
    // device_provisioned / user_setup_complete (WRITE_SECURE_SETTINGS) and disables itself.
    return {
      ...base,
      usesPermissions: [...(base.usesPermissions ?? []), ...app.privilegedPermissions],
      components: [
        {
          type: 'activity',
          name: '.SetupActivity',
          exported: true,
          intentFilters: [
            {
              actions: ['android.intent.action.MAIN'],
              categories: ['android.intent.category.HOME', 'android.intent.category.DEFAULT'],
            },
          ],
        },
      ],
      queries: { packages: [PERSONAL_CLOUD_PACKAGE] },
      metaData: [{ name: 'org.omie.role', value: 'setup' }],
    };
  }
  if (app.role === 'system')
    return { ...base, components: [], metaData: [{ name: 'org.omie.role', value: 'system' }] };
  if (app.role === 'personal-cloud') {
    return {
      ...base,
      usesPermissions: [
        ...(base.usesPermissions ?? []),
        ...app.privilegedPermissions,
        'android.permission.RECEIVE_BOOT_COMPLETED',
      ],
      permissions: [{ name: 'org.omie.permission.PERSONAL_CLOUD', protectionLevel: 'signature|privileged' }],
      components: [
        ...(base.components ?? []),
        {
          type: 'service',
          name: '.BackupTransportService',
          exported: true,
          permission: 'android.permission.BACKUP',
          intentFilters: [{ actions: ['android.backup.TRANSPORT_HOST'] }],
        },
        {
          type: 'service',
          name: '.AccountAuthenticatorService',
          exported: true,
          permission: 'android.permission.ACCOUNT_MANAGER',
          intentFilters: [{ actions: ['android.accounts.AccountAuthenticator'] }],
        },
        {
          type: 'provider',
          name: '.DataStoreProvider',
          exported: true,
          authorities: PERSONAL_CLOUD_AUTHORITY,
          permission: 'org.omie.permission.PERSONAL_CLOUD',
        },
      ],
      metaData: [{ name: 'org.omie.ROLE', value: 'personal-cloud' }],
    };
  }
  return {
    ...base,
    usesPermissions: [...(base.usesPermissions ?? []), 'org.omie.permission.PERSONAL_CLOUD'],
    queries: { packages: [PERSONAL_CLOUD_PACKAGE] },
    metaData: [{ name: PERSONAL_CLOUD_META, value: PERSONAL_CLOUD_AUTHORITY }],
  };
}

export interface GeneratedApp {
  name: string;
  package: string;
  apk: string;
  sha256: string;
  signerKey: string;
}

/** Path of the file that pins a generated APK's sha256 (written at generation, read at build). */
export const pinFile = (app: ResolvedApp) => `${app.apkPath}.sha256`;

/**
 * Builds every `generated: true` app of prebuilt-apps/ as a real APK (aapt + smali + apksigner),
 * signed with the local sample key (created on first run, never committed), and pins its sha256.
 */
export async function generateSampleApps(
  repoRoot: string,
  names: string[],
  onProgress?: ProgressFn,
): Promise<GeneratedApp[]> {
  const keys = await initKeys(SAMPLE_APPS_KEY);
  const out: GeneratedApp[] = [];
  for (const [i, name] of names.entries()) {
    const app = await loadApp(join(repoRoot, 'prebuilt-apps', name, 'app.yaml'));
    if (!('generated' in app.apk)) continue;
    const tmp = `${app.apkPath}.tmp`;
    if (app.kind === 'apex')
      // A platform module: the AOSP-style APEX of that name, payload signed with the sample AVB key.
      await buildApex(
        {
          name: app.package,
          version: 1,
          versionName: '1.0.0',
          files: { 'etc/omie-sample-module.txt': `${app.label}: a sample APEX made by omie sample-apps\n` },
        },
        { payloadKey: keys.avbPem, containerKey: keys.apk },
        tmp,
        { compressed: app.apkPath.endsWith('.capex') },
      );
    else await buildApk(specFor(app), { key: keys.apk, v1: true, v2: true, v3: true }, tmp);
    await rename(tmp, app.apkPath);
    const sha256 = createHash('sha256')
      .update(await readFile(app.apkPath))
      .digest('hex');
    await writeFile(pinFile(app), `${sha256}\n`);
    out.push({ name, package: app.package, apk: app.apkPath, sha256, signerKey: SAMPLE_APPS_KEY });
    onProgress?.({ stage: 'sample apps', done: i + 1, total: names.length, unit: 'items' });
  }
  return out;
}
