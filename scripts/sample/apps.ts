import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildApex } from '../apexgen/index.ts';
import { type ApkSpec, buildApk } from '../apkgen/index.ts';
import { WEBVIEW_LIBRARY_META_DATA } from '../formats/apk/manifest.ts';
import { initKeys } from '../keys/store.ts';
import { DATA_STORE_META_DATA, PERSONAL_CLOUD_PERMISSION, ROLE_META_DATA } from '../model/app-roles.ts';
import type { ResolvedApp } from '../model/index.ts';
import { loadApp } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';
import { mainActivity, personalCloudCode, personalCloudXml, setupActivity } from './app-code.ts';

/** Meta-data a customer-side app carries to say its data lives in the owner's personal cloud. */
export const PERSONAL_CLOUD_META = DATA_STORE_META_DATA;
export const PERSONAL_CLOUD_AUTHORITY = 'org.omie.personalcloud.provider';
export const PERSONAL_CLOUD_PACKAGE = 'org.omie.personalcloud';
export const SAMPLE_APPS_KEY = 'omie-sample-apps';

/**
 * The protection level of PERSONAL_CLOUD_PERMISSION: `dangerous`, so a customer-side app from
 * any publisher can ask for it and the owner grants (or refuses, or later revokes) it at run
 * time. `signature` would shut out every app not signed with the personal cloud's key, and
 * `normal` would hand the owner's data to any installed app without asking (docs/personal-cloud.md).
 */
export const PERSONAL_CLOUD_PROTECTION_LEVEL = 'dangerous';

/** What each sample app does, in manifest terms, and the code of every component it declares. */
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
    metaData: [{ name: ROLE_META_DATA, value: app.role }],
    code: [mainActivity(app.package)],
  };
  if (app.role === 'webview') {
    // A WebView provider: WebViewFactory loads the library its meta-data names. Its launcher
    // activity plays the part of WebView's DevTools entry.
    return {
      ...base,
      metaData: [
        ...(base.metaData ?? []),
        { name: WEBVIEW_LIBRARY_META_DATA, value: 'libwebviewchromium.so' },
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
      code: [setupActivity(app.package)],
    };
  }
  if (app.role === 'personal-cloud') {
    const names = {
      package: app.package,
      authority: PERSONAL_CLOUD_AUTHORITY,
      accountType: app.package,
      transportName: `${app.package}/.BackupTransportService`,
    };
    return {
      ...base,
      usesPermissions: [
        ...(base.usesPermissions ?? []),
        ...app.privilegedPermissions,
        // The authenticator turns on sync for the account it adds.
        'android.permission.READ_SYNC_SETTINGS',
        'android.permission.WRITE_SYNC_SETTINGS',
      ],
      permissions: [
        {
          name: PERSONAL_CLOUD_PERMISSION,
          protectionLevel: PERSONAL_CLOUD_PROTECTION_LEVEL,
          label: '@string/permission_label',
          description: '@string/permission_description',
        },
      ],
      resources: {
        permission_label: 'keep its data in your personal cloud',
        permission_description:
          'Lets the app store and read its own data in your personal cloud. It sees only what it stored itself.',
      },
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
          metaData: [{ name: 'android.accounts.AccountAuthenticator', resource: '@xml/authenticator' }],
        },
        {
          type: 'service',
          name: '.SyncService',
          // Bound by SyncManager in system_server, whose uid reaches unexported components;
          // no other app needs to bind it.
          exported: false,
          intentFilters: [{ actions: ['android.content.SyncAdapter'] }],
          metaData: [{ name: 'android.content.SyncAdapter', resource: '@xml/syncadapter' }],
        },
        {
          type: 'provider',
          name: '.DataStoreProvider',
          exported: true,
          authorities: PERSONAL_CLOUD_AUTHORITY,
          permission: PERSONAL_CLOUD_PERMISSION,
        },
      ],
      code: personalCloudCode(names),
      xmlResources: personalCloudXml(names),
    };
  }
  return {
    ...base,
    usesPermissions: [...(base.usesPermissions ?? []), PERSONAL_CLOUD_PERMISSION],
    queries: { packages: [PERSONAL_CLOUD_PACKAGE] },
    metaData: [...(base.metaData ?? []), { name: PERSONAL_CLOUD_META, value: PERSONAL_CLOUD_AUTHORITY }],
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
