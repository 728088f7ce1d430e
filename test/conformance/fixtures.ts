/**
 * A clean Omie system described in memory (it passes every requirement), and for each
 * requirement a mutation that violates it. Shared by the unit tests and the image end-to-end tests.
 */
import { apexFacts, apkFacts, type MemorySystem } from '../../scripts/conformance/memory-view.ts';
import type { ProductFacts } from '../../scripts/conformance/product.ts';
import type { ApexFacts, ApkFacts, VbmetaFacts } from '../../scripts/conformance/view.ts';

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
}

function apk(partition: string, path: string, facts: ApkFacts) {
  return { partition, path, facts };
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
          appMetaData: { 'org.omie.role': 'personal-cloud' },
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
            'org.omie.role': 'customer-app',
            'org.omie.DATA_STORE': 'org.omie.personalcloud.provider',
          },
          usesPermissions: ['org.omie.permission.PERSONAL_CLOUD'],
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
    rawPartitions: ['boot', 'vbmeta'],
  };
  if (kind === 'device') {
    sys.vbmeta = null;
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
      'ro.boot.veritymode': 'enforcing',
    };
    sys.shell = (cmd) => {
      if (cmd === 'getenforce') return 'Enforcing\n';
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
  return { sys, product };
}

function apexOf(f: Fixture, name: string): ApexFacts {
  const a = f.sys.apexes?.find((x) => !(x.facts instanceof Error) && x.facts.name === name);
  if (!a || a.facts instanceof Error) throw new Error(`fixture has no APEX ${name}`);
  return a.facts;
}

function app(f: Fixture, pkg: string): ApkFacts {
  const a = f.sys.apks.find((x) => !(x.facts instanceof Error) && x.facts.package === pkg);
  if (!a || a.facts instanceof Error) throw new Error(`fixture has no ${pkg}`);
  return a.facts;
}

function setProp(f: Fixture, key: string, value: string | null): void {
  const t = String(f.sys.files.system['build.prop']);
  const lines = t.split('\n').filter((l) => !l.startsWith(`${key}=`));
  if (value !== null) lines.push(`${key}=${value}`);
  f.sys.files.system['build.prop'] = lines.join('\n');
}

/** For each requirement, a mutation of the clean fixture that violates it (and only needs to fail that one). */
export const violations: Record<
  string,
  { profile?: 'image' | 'device'; what: string; apply: (f: Fixture) => void }
> = {
  '2.1/C-0-1': {
    what: 'Google Play services preinstalled',
    apply: (f) =>
      f.sys.apks.push(
        apk(
          'product',
          'priv-app/GmsCore/GmsCore.apk',
          apkFacts('com.google.android.gms', {
            signing: { verified: true, schemes: [2], signerSha256: [OMIE] },
          }),
        ),
      ),
  },
  '2.1/C-0-2': {
    what: 'a renamed APK signed by Google',
    apply: (f) =>
      f.sys.apks.push(
        apk(
          'system',
          'app/Renamed/Renamed.apk',
          apkFacts('org.example.renamed', {
            signing: { verified: true, schemes: [2], signerSha256: [GOOGLE] },
          }),
        ),
      ),
  },
  '2.2/C-0-1': {
    what: 'privapp allowlist for GMS',
    apply: (f) => {
      f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = PRIVAPP_XML.replace(
        '</permissions>',
        '    <privapp-permissions package="com.google.android.gms">\n        <permission name="android.permission.BACKUP"/>\n    </privapp-permissions>\n</permissions>',
      );
    },
  },
  '2.3/C-0-1': {
    what: 'ro.com.google.clientidbase set',
    apply: (f) => setProp(f, 'ro.com.google.clientidbase', 'android-google'),
  },
  '2.4/C-0-1': {
    what: 'captive portal probes Google',
    apply: (f) => {
      app(f, 'org.omie.overlay.networkstack').resources.config_captive_portal_https_url =
        'https://www.google.com/generate_204';
    },
  },
  '2.4/C-0-2': {
    what: 'NTP left at the Google default',
    apply: (f) => {
      delete app(f, 'org.omie.overlay.framework').resources.config_ntpServer;
    },
  },
  '2.4/C-0-3': {
    what: 'SUPL server is Google',
    apply: (f) => {
      f.sys.files.vendor['etc/gps.conf'] = GPS_CONF.replace('supl.omie.example', 'supl.google.com');
    },
  },
  '2.4/C-0-4': {
    what: 'default DNS is Google',
    apply: (f) => {
      app(f, 'org.omie.overlay.framework').resources.config_default_dns_server = '8.8.4.4';
    },
  },
  '2.4/C-0-5': {
    what: 'network location provider is GMS',
    apply: (f) => {
      app(f, 'org.omie.overlay.framework').resources.config_networkLocationProviderPackageName =
        'com.google.android.gms';
    },
  },
  '2.4/C-0-6': {
    what: 'Google WebView is a provider',
    apply: (f) => {
      app(f, 'android').webviewProviders = ['com.google.android.webview', 'com.android.webview'];
    },
  },
  '2.5/C-0-1': {
    what: "Google's build of the time zone APEX",
    apply: (f) => {
      f.sys.apexes?.push({
        partition: 'system',
        path: 'apex/com.google.android.tzdata6.apex',
        facts: apexFacts('com.android.tzdata', {
          package: 'com.google.android.tzdata6',
          version: 339990000,
          signing: { verified: true, signerSha256: [STRANGER] },
        }),
      });
      f.sys.apexes = f.sys.apexes?.filter((a) => a.path !== 'apex/com.android.tzdata.capex');
    },
  },
  '2.6/C-0-1': {
    what: "Provision replaced by Google's setup wizard",
    apply: (f) => {
      f.sys.apks = f.sys.apks.filter((a) => a.path !== 'priv-app/Provision/Provision.apk');
      f.sys.apks.push(
        apk(
          'system',
          'priv-app/SetupWizard/SetupWizard.apk',
          apkFacts('com.google.android.setupwizard', {
            signing: { verified: true, schemes: [2], signerSha256: [STRANGER] },
          }),
        ),
      );
    },
  },
  '3.1/C-0-1': {
    what: 'Firebase Analytics in the personal cloud',
    apply: (f) => {
      app(f, 'org.omie.personalcloud').classes.push('com.google.firebase.analytics.FirebaseAnalytics');
    },
  },
  '3.2/C-0-1': {
    what: 'location pre-granted',
    apply: (f) => {
      f.sys.files.product['etc/default-permissions/default-permissions-omie.xml'] =
        '<exceptions>\n  <exception package="org.omie.mysuppliers">\n    <permission name="android.permission.ACCESS_FINE_LOCATION" fixed="false"/>\n  </exception>\n</exceptions>\n';
    },
  },
  '3.2/C-0-2': {
    what: 'IMEI access for a non-platform app',
    apply: (f) => {
      f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = PRIVAPP_XML.replace(
        '<permission name="android.permission.BACKUP"/>',
        '<permission name="android.permission.BACKUP"/>\n        <permission name="android.permission.READ_PRIVILEGED_PHONE_STATE"/>',
      );
    },
  },
  '3.2/C-0-3': {
    what: 'an app requests background location',
    apply: (f) => {
      app(f, 'org.omie.mysuppliers').usesPermissions.push(`${P}ACCESS_BACKGROUND_LOCATION`);
    },
  },
  '4.1/C-0-1': {
    what: 'two personal clouds',
    apply: (f) =>
      f.sys.apks.push(
        apk(
          'product',
          'priv-app/OtherCloud/OtherCloud.apk',
          apkFacts('com.example.othercloud', {
            signing: { verified: true, schemes: [2], signerSha256: [OMIE] },
            appMetaData: { 'org.omie.role': 'personal-cloud' },
          }),
        ),
      ),
  },
  '4.1/C-0-2': {
    what: 'personal cloud not allowlisted',
    apply: (f) => {
      f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = '<permissions/>\n';
    },
  },
  '4.1/C-0-3': {
    what: 'personal cloud has no account authenticator',
    apply: (f) => {
      app(f, 'org.omie.personalcloud').components = [];
    },
  },
  '4.1/C-0-4': {
    what: 'another backup transport allowlisted',
    apply: (f) => {
      f.sys.files.product['etc/sysconfig/omie-backup.xml'] = BACKUP_SYSCONFIG.replace(
        '</config>',
        '    <backup-transport-whitelisted-service service="com.example.othercloud/.Transport"/>\n</config>',
      );
    },
  },
  '4.2/C-0-1': {
    what: 'customer app swapped for another build',
    apply: (f) => {
      app(f, 'org.omie.mysuppliers').signing.signerSha256 = [STRANGER];
    },
  },
  '4.3/C-0-1': {
    what: 'personal cloud sync hard-wired to a vendor server',
    apply: (f) => {
      const cfg = JSON.parse(String(f.sys.files.product['etc/omie/personal-cloud.json']));
      cfg.providers.unshift({
        kind: 'webdav',
        label: 'Vendor cloud',
        endpointTemplate: 'https://cloud.vendor.example/dav/',
      });
      f.sys.files.product['etc/omie/personal-cloud.json'] = JSON.stringify(cfg);
    },
  },
  '4.3/C-0-2': {
    what: 'customer app keeps its data elsewhere',
    apply: (f) => {
      delete app(f, 'org.omie.mysuppliers').appMetaData['org.omie.DATA_STORE'];
    },
  },
  '4.3/C-0-3': {
    what: 'customer app uses the network without a declared reason',
    apply: (f) => {
      app(f, 'org.omie.mysuppliers').usesPermissions.push('android.permission.INTERNET');
    },
  },
  '5.1/C-0-1': {
    what: 'APK altered after signing',
    apply: (f) => {
      app(f, 'org.omie.mysuppliers').signing = {
        verified: false,
        schemes: [],
        signerSha256: [OMIE],
        error: 'APK Signature Scheme v2 digest mismatch',
      };
    },
  },
  '5.1/C-0-2': {
    what: 'APK by an unknown signer',
    apply: (f) =>
      f.sys.apks.push(
        apk(
          'system',
          'app/Stranger/Stranger.apk',
          apkFacts('org.example.stranger', {
            signing: { verified: true, schemes: [2], signerSha256: [STRANGER] },
          }),
        ),
      ),
  },
  '5.1/C-0-3': {
    what: 'APK signed with the AOSP test key',
    apply: (f) =>
      f.sys.apks.push(
        apk(
          'system',
          'app/Calc/Calc.apk',
          apkFacts('com.android.calculator2', {
            signing: { verified: true, schemes: [2], signerSha256: [AOSP_TESTKEY] },
          }),
        ),
      ),
  },
  '5.1/C-0-4': {
    what: 'debuggable app',
    apply: (f) => {
      app(f, 'org.omie.mysuppliers').debuggable = true;
    },
  },
  '5.3/C-0-1': {
    what: 'an APEX payload signed with the AVB public test key',
    apply: (f) => {
      const a = apexOf(f, 'com.android.tzdata');
      a.payloadTestKey = 'testkey_rsa4096';
      a.payloadKeySha256 = '7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6';
    },
  },
  '5.2/C-0-1': {
    what: 'priv-app with a privileged permission not allowlisted',
    apply: (f) => {
      app(f, 'com.android.providers.settings').usesPermissions.push(`${P}WRITE_SECURE_SETTINGS`);
    },
  },
  '6.1/C-0-1': { what: 'userdebug build', apply: (f) => setProp(f, 'ro.build.type', 'userdebug') },
  '6.1/C-0-2': { what: 'ro.debuggable=1', apply: (f) => setProp(f, 'ro.debuggable', '1') },
  '6.1/C-0-3': { what: 'ro.secure=0', apply: (f) => setProp(f, 'ro.secure', '0') },
  '6.1/C-0-4': { what: 'ro.adb.secure unset', apply: (f) => setProp(f, 'ro.adb.secure', null) },
  '6.1/C-0-5': { what: 'test-keys', apply: (f) => setProp(f, 'ro.build.tags', 'test-keys') },
  '6.1/C-0-6': {
    what: 'privapp permissions only logged',
    apply: (f) => setProp(f, 'ro.control_privapp_permissions', 'log'),
  },
  '6.2/C-0-1': {
    what: 'su in xbin',
    apply: (f) => {
      f.sys.files.system['xbin/su'] = 'ELF';
    },
  },
  '6.2/C-0-2': {
    what: 'permissive SELinux on the cmdline',
    apply: (f) => {
      f.sys.cmdline = `${f.sys.cmdline} androidboot.selinux=permissive`;
    },
  },
  '6.3/C-0-1': {
    what: 'unsigned vbmeta',
    apply: (f) => {
      const v = f.sys.vbmeta?.[0];
      if (v) {
        v.algorithm = 'NONE';
        v.signatureValid = false;
        v.publicKeySha256 = undefined;
      }
    },
  },
  '6.3/C-0-2': {
    what: 'vbmeta signed with the AVB test key',
    apply: (f) => {
      const v = f.sys.vbmeta?.[0];
      if (v) v.publicTestKeyName = 'testkey_rsa4096';
    },
  },
  '6.3/C-0-3': {
    what: 'vendor without hashtree',
    apply: (f) => {
      const v = f.sys.vbmeta?.[0];
      if (v) v.descriptors = v.descriptors.filter((d) => d.partition !== 'vendor');
    },
  },
  '6.3/C-0-4': {
    what: 'verification disabled in vbmeta flags',
    apply: (f) => {
      const v = f.sys.vbmeta?.[0];
      if (v) v.flags = 2;
    },
  },
  '6.4/C-1-1': {
    profile: 'device',
    what: 'orange boot state',
    apply: (f) => {
      if (f.sys.deviceProps) f.sys.deviceProps['ro.boot.verifiedbootstate'] = 'orange';
    },
  },
  '6.4/C-1-2': {
    profile: 'device',
    what: 'unlocked bootloader',
    apply: (f) => {
      if (f.sys.deviceProps) {
        f.sys.deviceProps['ro.boot.flash.locked'] = '0';
        f.sys.deviceProps['ro.boot.vbmeta.device_state'] = 'unlocked';
      }
    },
  },
  '7.1/C-0-1': {
    what: 'base vendor brand kept',
    apply: (f) => {
      f.sys.files.vendor['build.prop'] = VENDOR_PROPS.replace(
        'ro.product.vendor.brand=Omie',
        'ro.product.vendor.brand=Acme',
      );
    },
  },
  '7.1/C-0-2': {
    what: 'base fingerprint kept',
    apply: (f) =>
      setProp(f, 'ro.build.fingerprint', 'Acme/acme_tab/acme:14/UQ1A.240105.004/1:user/release-keys'),
  },
  '7.1/C-0-3': {
    what: 'no Omie version',
    apply: (f) => {
      f.sys.files.product['etc/build.prop'] = PRODUCT_PROPS.replace('ro.omie.version=1.0.0\n', '');
    },
  },
};
