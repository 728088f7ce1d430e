/**
 * Real partition images for the end-to-end tests: ext4 (mke2fs -d, system-as-root) and erofs
 * (mkfs.erofs) trees holding real APKs built with scripts/apkgen, and a vbmeta.img signed with a
 * fresh AVB key over hashtree footers added by the kit's AVB layer. `clean` conforms; `bad`
 * violates a handful of requirements on purpose.
 */
import { existsSync } from 'node:fs';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { buildApex } from '../../scripts/apexgen/index.ts';
import { type ApkSpec, buildApk, generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { addHashtreeFooter, generateAvbKey, makeVbmetaImage } from '../../scripts/formats/avb/index.ts';
import { runTool } from '../../scripts/host/tools.ts';
import {
  DATA_STORE_META_DATA,
  PERSONAL_CLOUD_PERMISSION,
  ROLE_META_DATA,
} from '../../scripts/model/app-roles.ts';
import { workDir } from '../helpers.ts';
import {
  BACKUP_SYSCONFIG,
  GPS_CONF,
  PERSONAL_CLOUD_JSON,
  PRIVAPP_XML,
  PRODUCT_PROPS,
  SYSTEM_PROPS,
  VENDOR_PROPS,
} from './fixtures.ts';

export const E2E = join(workDir('conformance'), 'e2e');

export interface Keys {
  platform: SigningKey;
  omie: SigningKey;
  avb: string;
  /** Payload key of the APEXes. */
  apexPayload: string;
}

async function keys(root: string): Promise<Keys> {
  const dir = join(root, 'keys');
  await mkdir(dir, { recursive: true });
  const avb = join(dir, 'avb.pem');
  if (!existsSync(avb)) await generateAvbKey(avb, 2048);
  const apexPayload = join(dir, 'apex-payload.pem');
  if (!existsSync(apexPayload)) await generateAvbKey(apexPayload, 4096);
  return {
    platform: await generateSigningKey(dir, 'platform'),
    omie: await generateSigningKey(dir, 'omie'),
    avb,
    apexPayload,
  };
}

const P = 'android.permission.';

function apkSpecs(variant: 'clean' | 'bad'): Record<string, { spec: ApkSpec; key: 'platform' | 'omie' }> {
  const specs: Record<string, { spec: ApkSpec; key: 'platform' | 'omie' }> = {
    'system/system/priv-app/SettingsProvider/SettingsProvider.apk': {
      key: 'platform',
      spec: {
        package: 'com.android.providers.settings',
        targetSdk: 34,
        minSdk: 29,
        resources: { def_backup_transport: 'org.omie.personalcloud/.backup.CloudTransport' },
      },
    },
    'product/overlay/OmieOverlay/OmieOverlay.apk': {
      key: 'platform',
      spec: {
        package: 'org.omie.overlay.endpoints',
        targetSdk: 34,
        minSdk: 29,
        resources: {
          config_captive_portal_https_url: 'https://captive.omie.example/generate_204',
          config_captive_portal_http_url: 'http://captive.omie.example/generate_204',
          config_ntpServer: 'pool.ntp.org',
          config_default_dns_server: '9.9.9.9',
        },
      },
    },
    'system/system/priv-app/Provision/Provision.apk': {
      key: 'platform',
      spec: { package: 'com.android.provision', targetSdk: 34, minSdk: 29 },
    },
    'product/priv-app/PersonalCloud/PersonalCloud.apk': {
      key: 'omie',
      spec: {
        package: 'org.omie.personalcloud',
        targetSdk: 34,
        minSdk: 29,
        usesPermissions: [`${P}BACKUP`, `${P}INTERNET`],
        metaData: [{ name: ROLE_META_DATA, value: 'personal-cloud' }],
        components: [
          {
            type: 'service',
            name: '.Authenticator',
            exported: true,
            intentFilters: [{ actions: ['android.accounts.AccountAuthenticator'] }],
          },
          {
            type: 'service',
            name: '.backup.CloudTransport',
            exported: true,
            permission: `${P}BACKUP`,
            intentFilters: [{ actions: ['android.backup.TRANSPORT_HOST'] }],
          },
        ],
      },
    },
    'product/app/MySuppliers/MySuppliers.apk': {
      key: 'omie',
      spec: {
        package: 'org.omie.mysuppliers',
        targetSdk: 34,
        minSdk: 29,
        metaData: [
          { name: ROLE_META_DATA, value: 'customer-app' },
          { name: DATA_STORE_META_DATA, value: 'org.omie.personalcloud.provider' },
        ],
        usesPermissions: [PERSONAL_CLOUD_PERMISSION],
        classes: variant === 'bad' ? ['com.google.firebase.analytics.FirebaseAnalytics'] : [],
        application: { debuggable: variant === 'bad' },
      },
    },
  };
  if (variant === 'bad')
    specs['product/priv-app/GmsCore/GmsCore.apk'] = {
      key: 'omie',
      spec: { package: 'com.google.android.gms', targetSdk: 34, minSdk: 29 },
    };
  return specs;
}

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [p, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, p)), { recursive: true });
    await writeFile(join(root, p), text);
  }
}

async function mkext4(img: string, tree: string, sizeMiB: number): Promise<void> {
  await rm(img, { force: true });
  await runTool(
    'mke2fs',
    ['-q', '-F', '-t', 'ext4', '-b', '4096', '-L', 'system', '-d', tree, img, `${sizeMiB}M`],
    { env: { E2FSPROGS_FAKE_TIME: '1230768000' } },
  );
}

async function mkerofs(img: string, tree: string): Promise<void> {
  await rm(img, { force: true });
  await runTool('mkfs.erofs', ['-T', '1230768000', img, tree]);
}

/** Builds (once per run) the images folder of a variant and returns its path. */
export async function buildImages(
  variant: 'clean' | 'bad',
  opts: { vbmetaAlgorithm?: 'NONE'; root?: string } = {},
): Promise<string> {
  // Test files run in parallel: each gets its own root (keys, APK cache, images).
  const root = opts.root ?? E2E;
  const k = await keys(root);
  const base = join(root, variant);
  const trees = join(base, 'trees');
  const out = join(base, 'images');
  await rm(base, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const apkCache = join(root, 'apks', variant);
  for (const [path, { spec, key }] of Object.entries(apkSpecs(variant))) {
    const cached = join(apkCache, path);
    if (!existsSync(cached)) {
      await mkdir(dirname(cached), { recursive: true });
      await buildApk(spec, { key: k[key], v1: true, v2: true, v3: true }, cached);
    }
    await mkdir(dirname(join(trees, path)), { recursive: true });
    await cp(cached, join(trees, path));
  }
  // A time zone APEX: the AOSP module (clean), or Google's build of it with a tracker in its jar (bad).
  const apexFile = variant === 'clean' ? 'com.android.tzdata.apex' : 'com.google.android.tzdata6.apex';
  const apex = join(apkCache, 'apex', apexFile);
  if (!existsSync(apex))
    await buildApex(
      {
        name: 'com.android.tzdata',
        packageName: variant === 'clean' ? 'com.android.tzdata' : 'com.google.android.tzdata6',
        version: 340090000,
        files: { 'etc/tz/tzdata': 'tzdata2024a\n' },
        apps: [
          {
            path: 'app/TzUpdater/TzUpdater.apk',
            spec: { package: 'com.android.tzupdater', targetSdk: 34, minSdk: 29 },
            key: k.platform,
          },
        ],
        jars: [
          {
            path: 'javalib/framework-tz.jar',
            classes: ['com.android.tz.TzData', ...(variant === 'bad' ? ['com.appsflyer.AppsFlyerLib'] : [])],
          },
        ],
      },
      { payloadKey: k.apexPayload, containerKey: k.platform },
      apex,
    );
  await mkdir(join(trees, 'system/system/apex'), { recursive: true });
  await cp(apex, join(trees, 'system/system/apex', apexFile));
  const systemProps =
    variant === 'bad' ? SYSTEM_PROPS.replace('ro.build.type=user', 'ro.build.type=userdebug') : SYSTEM_PROPS;
  await writeTree(join(trees, 'system'), {
    'system/build.prop': systemProps,
    'system/bin/sh': '#!/bin/sh\n',
    ...(variant === 'bad' ? { 'system/xbin/su': '#!/bin/sh\n' } : {}),
  });
  await writeTree(join(trees, 'product'), {
    'etc/build.prop': PRODUCT_PROPS,
    'etc/permissions/privapp-permissions-omie.xml': PRIVAPP_XML,
    'etc/sysconfig/omie-backup.xml': BACKUP_SYSCONFIG,
    'etc/omie/personal-cloud.json': PERSONAL_CLOUD_JSON,
  });
  await writeTree(join(trees, 'vendor'), { 'build.prop': VENDOR_PROPS, 'etc/gps.conf': GPS_CONF });
  await mkext4(join(out, 'system.img'), join(trees, 'system'), 32);
  await mkerofs(join(out, 'product.img'), join(trees, 'product'));
  await mkext4(join(out, 'vendor.img'), join(trees, 'vendor'), 8);
  for (const p of ['system', 'product', 'vendor'])
    await addHashtreeFooter(join(out, `${p}.img`), {
      partitionName: p,
      hashAlgorithm: 'sha256',
      algorithm: 'NONE',
      salt: '00'.repeat(32),
    });
  await makeVbmetaImage(join(out, 'vbmeta.img'), {
    algorithm: opts.vbmetaAlgorithm ?? 'SHA256_RSA2048',
    key: opts.vbmetaAlgorithm === 'NONE' ? undefined : k.avb,
    rollbackIndex: 1,
    includeDescriptorsFromImages: ['system', 'product', 'vendor'].map((p) => join(out, `${p}.img`)),
  });
  return out;
}
