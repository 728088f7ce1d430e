/**
 * A clean Omie system described in memory (it passes every requirement); violations.ts holds,
 * per requirement, a mutation that violates it. Shared by the unit tests and the image end-to-end tests.
 */
import type { BuildReference } from '../../scripts/conformance/build-ref.ts';
import { apexFacts, apkFacts, type MemorySystem } from '../../scripts/conformance/memory-view.ts';
import type { ProductFacts } from '../../scripts/conformance/product.ts';
import type { ApexFacts, ApkFacts, VbmetaFacts } from '../../scripts/conformance/view.ts';
import {
  DATA_STORE_META_DATA,
  PERSONAL_CLOUD_PERMISSION,
  ROLE_META_DATA,
} from '../../scripts/model/app-roles.ts';

export const PLATFORM = 'aa'.repeat(32);
export const OMIE = 'bb'.repeat(32);
export const PARTNER_AVB = 'cc'.repeat(32);
export const STRANGER = 'dd'.repeat(32);
export const GOOGLE = 'f0fd6c5b410f25cb25c3b53346c8972fae30f8ee7411df910480ad6b2d60db83';
export const AOSP_TESTKEY = 'a40da80a59d170caa950cf15c18c454d47a39b26989d8b640ecd745ba71bf5dc';

const P = 'android.permission.';

export const SYSTEM_PROPS = `# begin build properties
ro.build.type=user
ro.debuggable=0
ro.secure=1
ro.adb.secure=1
ro.build.tags=release-keys
ro.control_privapp_permissions=enforce
ro.product.system.brand=Omie
ro.product.system.manufacturer=Omie
ro.product.system.model=Omie Tablet
ro.product.system.device=tablet
ro.product.system.name=omie_tablet
ro.build.fingerprint=Omie/omie_tablet/tablet:14/UQ1A.240105.004/1:user/release-keys
`;
export const PRODUCT_PROPS = `ro.product.product.brand=Omie
ro.product.product.model=Omie Tablet
ro.omie.version=1.0.0
`;
export const VENDOR_PROPS = `ro.product.vendor.brand=Omie
ro.product.vendor.device=tablet
`;

export const PRIVAPP_XML = `<?xml version="1.0" encoding="utf-8"?>
<!-- privileged permissions of the Omie apps -->
<permissions>
    <privapp-permissions package="org.omie.personalcloud">
        <permission name="android.permission.BACKUP"/>
    </privapp-permissions>
</permissions>
`;
export const BACKUP_SYSCONFIG = `<?xml version="1.0" encoding="utf-8"?>
<config>
    <backup-transport-whitelisted-service service="org.omie.personalcloud/.backup.CloudTransport"/>
    <backup-transport-whitelisted-service service="com.android.localtransport/.LocalTransport"/>
</config>
`;
export const GPS_CONF = `# GNSS assistance
SUPL_HOST=supl.omie.example
SUPL_PORT=7275
NTP_SERVER=pool.ntp.org
`;

export const PERSONAL_CLOUD_JSON = JSON.stringify({
  schema: 'omie.personal-cloud/1',
  package: 'org.omie.personalcloud',
  ownerChangeable: true,
  providers: [
    {
      kind: 'nextcloud',
      label: 'Nextcloud',
      endpointTemplate: 'https://{host}/remote.php/dav/files/{user}/',
    },
    { kind: 'local', label: 'This tablet only', endpointTemplate: null },
  ],
  defaultRemote: null,
});

export interface Fixture {
  sys: MemorySystem;
  product: ProductFacts;
  /** The build a device is checked against (`--image`). */
  build?: BuildReference;
}

export function cleanFixture(kind: 'image' | 'device' = 'image'): Fixture {
  const vbmeta: VbmetaFacts[] = [
    {
      partition: 'vbmeta',
      algorithm: 'SHA256_RSA4096',
      publicKeySha256: PARTNER_AVB,
      rollbackIndex: 1,
      flags: 0,
      signatureValid: true,
      descriptors: [
        { kind: 'hashtree', partition: 'system' },
        { kind: 'hashtree', partition: 'product' },
        { kind: 'hashtree', partition: 'vendor' },
        { kind: 'hash', partition: 'boot' },
      ],
    },
  ];
  const sys: MemorySystem = {
    kind,
    files: {
      system: { 'build.prop': SYSTEM_PROPS, 'bin/sh': 'ELF' },
      product: {
        'etc/build.prop': PRODUCT_PROPS,
        'etc/permissions/privapp-permissions-omie.xml': PRIVAPP_XML,
        'etc/sysconfig/omie-backup.xml': BACKUP_SYSCONFIG,
        'etc/omie/personal-cloud.json': PERSONAL_CLOUD_JSON,
      },
      vendor: { 'build.prop': VENDOR_PROPS, 'etc/gps.conf': GPS_CONF },
    },
    apks: [
      apk(
        'system',
        'framework/framework-res.apk',
        apkFacts('android', {
          signing: { verified: true, schemes: [1, 2], signerSha256: [PLATFORM] },
          declaredPermissions: [
            { name: `${P}BACKUP`, protectionLevel: 0x12 },
            { name: `${P}WRITE_SECURE_SETTINGS`, protectionLevel: 0x32 },
            { name: `${P}READ_PRIVILEGED_PHONE_STATE`, protectionLevel: 0x12 },
            { name: `${P}INTERNET`, protectionLevel: 0 },
          ],
          resources: { config_ntpServer: 'time.android.com', config_default_dns_server: '8.8.8.8' },
          webviewProviders: ['com.android.webview'],
        }),
      ),
      apk(
        'system',
        'priv-app/Provision/Provision.apk',
        apkFacts('com.android.provision', {
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
        }),
      ),
      apk(
        'apex',
        'com.android.permission/priv-app/PermissionController/PermissionController.apk',
        apkFacts('com.android.permissioncontroller', {
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
        }),
      ),
      apk(
        'system',
        'priv-app/SettingsProvider/SettingsProvider.apk',
        apkFacts('com.android.providers.settings', {
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
          resources: { def_backup_transport: 'com.android.localtransport/.LocalTransport' },
        }),
      ),
      apk(
        'product',
        'overlay/OmieFrameworkOverlay.apk',
        apkFacts('org.omie.overlay.framework', {
          overlayTarget: 'android',
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
          resources: { config_ntpServer: 'pool.ntp.org', config_default_dns_server: '9.9.9.9' },
        }),
      ),
      apk(
        'product',
        'overlay/OmieNetworkStackOverlay.apk',
        apkFacts('org.omie.overlay.networkstack', {
          overlayTarget: 'com.android.networkstack',
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
          resources: {
            config_captive_portal_https_url: 'https://captive.omie.example/generate_204',
            config_captive_portal_http_url: 'http://captive.omie.example/generate_204',
          },
        }),
      ),
      apk(
        'product',
        'overlay/OmieSettingsOverlay.apk',
        apkFacts('org.omie.overlay.settings', {
          overlayTarget: 'com.android.providers.settings',
          signing: { verified: true, schemes: [2], signerSha256: [PLATFORM] },
          resources: { def_backup_transport: 'org.omie.personalcloud/.backup.CloudTransport' },
        }),
      ),
      apk(
        'product',
        'priv-app/PersonalCloud/PersonalCloud.apk',
        apkFacts('org.omie.personalcloud', {
          signing: { verified: true, schemes: [2, 3], signerSha256: [OMIE] },
          usesPermissions: [`${P}BACKUP`, `${P}INTERNET`],
          appMetaData: { [ROLE_META_DATA]: 'personal-cloud' },
          components: [
            {
              type: 'service',
              name: 'org.omie.personalcloud.Authenticator',
              actions: ['android.accounts.AccountAuthenticator'],
            },
            {
              type: 'service',
              name: 'org.omie.personalcloud.backup.CloudTransport',
              actions: ['android.backup.TRANSPORT_HOST'],
            },
          ],
          classes: ['org.omie.personalcloud.Main', 'org.omie.personalcloud.Authenticator'],
        }),
      ),
      apk(
        'product',
        'app/MySuppliers/MySuppliers.apk',
        apkFacts('org.omie.mysuppliers', {
          signing: { verified: true, schemes: [2], signerSha256: [OMIE] },
          appMetaData: {
            [ROLE_META_DATA]: 'customer-app',
            [DATA_STORE_META_DATA]: 'org.omie.personalcloud.provider',
          },
          usesPermissions: [PERSONAL_CLOUD_PERMISSION],
          classes: ['org.omie.mysuppliers.Main'],
        }),
      ),
    ],
    apexes: [
      {
        partition: 'system',
        path: 'apex/com.android.permission.apex',
        facts: apexFacts('com.android.permission', {
          version: 340090000,
          signing: { verified: true, signerSha256: [PLATFORM] },
          payloadKeySha256: PARTNER_AVB,
          apks: ['priv-app/PermissionController/PermissionController.apk'],
          jars: [
            { path: 'javalib/framework-permission.jar', classes: ['android.permission.PermissionManager'] },
          ],
        }),
      },
      {
        partition: 'system',
        path: 'apex/com.android.tzdata.capex',
        facts: apexFacts('com.android.tzdata', {
          version: 340090000,
          compressed: true,
          signing: { verified: true, signerSha256: [PLATFORM] },
          payloadKeySha256: PARTNER_AVB,
          payloadFs: 'erofs',
        }),
      },
    ],
    cmdline: 'console=ttyS0 androidboot.hardware=omie',
    vbmeta,
    avbContents: {
      ok: true,
      vbmetaDigest: 'ee'.repeat(32),
      vbmetaSize: 4096,
      vbmetas: [{ partition: 'vbmeta', ok: true }],
      flags: 0,
      rollbackIndexes: new Map([[0, 0n]]),
      descriptors: ['system', 'product', 'vendor', 'boot'].map((partition) => ({
        partition,
        kind: partition === 'boot' ? ('hash' as const) : ('hashtree' as const),
        vbmeta: 'vbmeta',
        result: 'verified' as const,
        bytes: 1 << 20,
      })),
      problems: [],
    },
    rawPartitions: ['boot', 'vbmeta'],
  };
  if (kind === 'device') {
    sys.vbmeta = null;
    sys.avbContents = undefined;
    sys.cmdline = 'console=ttyS0 androidboot.hardware=omie androidboot.verifiedbootstate=green';
    sys.settings = {
      'global/captive_portal_https_url': 'https://captive.omie.example/generate_204',
      'global/ntp_server': 'pool.ntp.org',
      'secure/backup_transport': 'org.omie.personalcloud/.backup.CloudTransport',
      'global/webview_provider': 'com.android.webview',
    };
    sys.deviceProps = {
      'ro.boot.verifiedbootstate': 'green',
      'ro.boot.flash.locked': '1',
      'ro.boot.vbmeta.device_state': 'locked',
      'ro.boot.vbmeta.avb_version': '1.2',
      'ro.boot.vbmeta.digest': 'ee'.repeat(32),
      'ro.boot.vbmeta.public_key_digest': PARTNER_AVB,
      'ro.boot.veritymode': 'enforcing',
    };
    sys.shell = (cmd) => {
      if (cmd === 'getenforce') return 'Enforcing\n';
      if (cmd === 'ls /system/bin/sh') return '/system/bin/sh\n';
      if (cmd.startsWith('bmgr'))
        return 'Available transports:\n  * org.omie.personalcloud/.backup.CloudTransport\n    com.android.localtransport/.LocalTransport\n';
      return '';
    };
  }
  const product: ProductFacts = {
    name: 'omie-tablet',
    version: '1.0.0',
    file: '/repo/device/omie/tablet/products/omie-tablet.yaml',
    identity: {
      brand: 'Omie',
      manufacturer: 'Omie',
      model: 'Omie Tablet',
      device: 'tablet',
      name: 'omie_tablet',
    },
    endpoints: {
      captivePortalHttpsUrl: 'https://captive.omie.example/generate_204',
      ntpServer: 'pool.ntp.org',
    },
    apps: [
      {
        name: 'PersonalCloud',
        package: 'org.omie.personalcloud',
        role: 'personal-cloud',
        partition: 'product',
        privileged: true,
        privilegedPermissions: [`${P}BACKUP`],
        signerSha256: [OMIE],
      },
      {
        name: 'MySuppliers',
        package: 'org.omie.mysuppliers',
        role: 'customer-app',
        partition: 'product',
        privileged: false,
        privilegedPermissions: [],
        signerSha256: [OMIE],
      },
    ],
    avb: {
      rollbackIndex: 1,
      footers: [
        { partition: 'system', type: 'hashtree' },
        { partition: 'product', type: 'hashtree' },
        { partition: 'vendor', type: 'hashtree' },
        { partition: 'boot', type: 'hash' },
      ],
      publicKeySha256: PARTNER_AVB,
    },
    waivers: [],
  };
  const build: BuildReference | undefined =
    kind === 'device'
      ? {
          source: 'out/omie-tablet',
          from: 'build-record',
          vbmetaDigest: 'ee'.repeat(32),
          avbPublicKeySha256: PARTNER_AVB,
        }
      : undefined;
  return { sys, product, build };
}

/** The facts of the fixture's APK of `pkg` (to mutate in a violation). */
export function apexOf(f: Fixture, name: string): ApexFacts {
  const a = f.sys.apexes?.find((x) => !(x.facts instanceof Error) && x.facts.name === name);
  if (!a || a.facts instanceof Error) throw new Error(`fixture has no APEX ${name}`);
  return a.facts;
}

export function app(f: Fixture, pkg: string): ApkFacts {
  const a = f.sys.apks.find((x) => !(x.facts instanceof Error) && x.facts.package === pkg);
  if (!a || a.facts instanceof Error) throw new Error(`fixture has no ${pkg}`);
  return a.facts;
}

/** Sets (or with null removes) a property of system/build.prop. */
export function setProp(f: Fixture, key: string, value: string | null): void {
  const t = String(f.sys.files.system['build.prop']);
  const lines = t.split('\n').filter((l) => !l.startsWith(`${key}=`));
  if (value !== null) lines.push(`${key}=${value}`);
  f.sys.files.system['build.prop'] = lines.join('\n');
}

export function apk(partition: string, path: string, facts: ApkFacts) {
  return { partition, path, facts };
}
