/**
 * For every requirement of spec/, keyed by its ID, a mutation of the clean fixture
 * (fixtures.ts) that violates it, for each profile the requirement belongs to. checks.test.ts
 * asserts that each requirement passes on the clean fixture and fails after its mutation, and
 * that every requirement of the spec has an entry here for each of its profiles: a requirement
 * added to spec/ without an entry here fails the test suite.
 */

import { apexFacts, apkFacts } from '../../scripts/conformance/memory-view.ts';
import { DATA_STORE_META_DATA, ROLE_META_DATA } from '../../scripts/model/app-roles.ts';
import {
  AOSP_TESTKEY,
  apexOf,
  apk,
  app,
  BACKUP_SYSCONFIG,
  type Fixture,
  GOOGLE,
  GPS_CONF,
  OMIE,
  PRIVAPP_XML,
  PRODUCT_PROPS,
  STRANGER,
  setProp,
  VENDOR_PROPS,
} from './fixtures.ts';

export interface Violation {
  /** What the mutation does, for the test name. */
  what: string;
  apply: (f: Fixture) => void;
}

/** One mutation per profile of the requirement (`image`, `device`). */
export type Violations = Partial<Record<'image' | 'device', Violation>>;

const P = 'android.permission.';

/** The same mutation fails the requirement on an image and on a device. */
function both(what: string, apply: (f: Fixture) => void): Violations {
  return { image: { what, apply }, device: { what, apply } };
}

/** Adds a device-only answer to the fixture's shell (the clean answers stay for other commands). */
function answer(f: Fixture, cmd: string | RegExp, out: string): void {
  const prev = f.sys.shell ?? (() => '');
  f.sys.shell = (c) => ((typeof cmd === 'string' ? c === cmd : cmd.test(c)) ? out : prev(c));
}

function deviceProp(f: Fixture, key: string, value: string | null): void {
  const props = f.sys.deviceProps ?? {};
  if (value === null) delete props[key];
  else props[key] = value;
  f.sys.deviceProps = props;
}

function vbmeta(f: Fixture) {
  const v = f.sys.vbmeta?.[0];
  if (!v) throw new Error('the image fixture has no vbmeta');
  return v;
}

export const violations: Record<string, Violations> = {
  '2.1/C-0-1': both('Google Play services preinstalled', (f) =>
    f.sys.apks.push(
      apk(
        'product',
        'priv-app/GmsCore/GmsCore.apk',
        apkFacts('com.google.android.gms', {
          signing: { verified: true, schemes: [2], signerSha256: [OMIE] },
        }),
      ),
    ),
  ),
  '2.1/C-0-2': both('a renamed APK signed by Google', (f) =>
    f.sys.apks.push(
      apk(
        'system',
        'app/Renamed/Renamed.apk',
        apkFacts('org.example.renamed', {
          signing: { verified: true, schemes: [2], signerSha256: [GOOGLE] },
        }),
      ),
    ),
  ),
  '2.2/C-0-1': both('privapp allowlist for GMS', (f) => {
    f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = PRIVAPP_XML.replace(
      '</permissions>',
      '    <privapp-permissions package="com.google.android.gms">\n        <permission name="android.permission.BACKUP"/>\n    </privapp-permissions>\n</permissions>',
    );
  }),
  '2.3/C-0-1': both('ro.com.google.clientidbase set', (f) =>
    setProp(f, 'ro.com.google.clientidbase', 'android-google'),
  ),
  '2.4/C-0-1': {
    image: {
      what: 'captive portal probes Google',
      apply: (f) => {
        app(f, 'org.omie.overlay.networkstack').resources.config_captive_portal_https_url =
          'https://www.google.com/generate_204';
      },
    },
    device: {
      what: 'the captive-portal setting probes Google',
      apply: (f) => {
        f.sys.settings!['global/captive_portal_https_url'] =
          'https://connectivitycheck.gstatic.com/generate_204';
      },
    },
  },
  '2.4/C-0-2': {
    image: {
      what: 'NTP left at the Google default',
      apply: (f) => {
        delete app(f, 'org.omie.overlay.framework').resources.config_ntpServer;
      },
    },
    device: {
      what: 'the NTP setting names time.android.com',
      apply: (f) => {
        f.sys.settings!['global/ntp_server'] = 'time.android.com';
      },
    },
  },
  '2.4/C-0-3': both('SUPL server is Google', (f) => {
    f.sys.files.vendor['etc/gps.conf'] = GPS_CONF.replace('supl.omie.example', 'supl.google.com');
  }),
  '2.4/C-0-4': {
    image: {
      what: 'default DNS is Google',
      apply: (f) => {
        app(f, 'org.omie.overlay.framework').resources.config_default_dns_server = '8.8.4.4';
      },
    },
    device: {
      what: 'private DNS set to dns.google',
      apply: (f) => {
        f.sys.settings!['global/private_dns_specifier'] = 'dns.google';
      },
    },
  },
  '2.4/C-0-5': both('network location provider is GMS', (f) => {
    app(f, 'org.omie.overlay.framework').resources.config_networkLocationProviderPackageName =
      'com.google.android.gms';
  }),
  '2.4/C-0-6': {
    image: {
      what: 'Google WebView is a provider',
      apply: (f) => {
        app(f, 'android').webviewProviders = ['com.google.android.webview', 'com.android.webview'];
      },
    },
    device: {
      what: 'the WebView provider setting is Google WebView',
      apply: (f) => {
        f.sys.settings!['global/webview_provider'] = 'com.google.android.webview';
      },
    },
  },
  '2.5/C-0-1': both("Google's build of the time zone APEX", (f) => {
    f.sys.apexes = f.sys.apexes?.filter((a) => a.path !== 'apex/com.android.tzdata.capex');
    f.sys.apexes?.push({
      partition: 'system',
      path: 'apex/com.google.android.tzdata6.apex',
      facts: apexFacts('com.android.tzdata', {
        package: 'com.google.android.tzdata6',
        version: 339990000,
        signing: { verified: true, signerSha256: [STRANGER] },
      }),
    });
  }),
  '2.6/C-0-1': both("Provision replaced by Google's setup wizard", (f) => {
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
  }),
  '3.1/C-0-1': both('Firebase Analytics in the personal cloud', (f) => {
    app(f, 'org.omie.personalcloud').classes.push('com.google.firebase.analytics.FirebaseAnalytics');
  }),
  '3.2/C-0-1': both('location pre-granted', (f) => {
    f.sys.files.product['etc/default-permissions/default-permissions-omie.xml'] =
      '<exceptions>\n  <exception package="org.omie.mysuppliers">\n    <permission name="android.permission.ACCESS_FINE_LOCATION" fixed="false"/>\n  </exception>\n</exceptions>\n';
  }),
  '3.2/C-0-2': both('IMEI access for a non-platform app', (f) => {
    f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = PRIVAPP_XML.replace(
      '<permission name="android.permission.BACKUP"/>',
      '<permission name="android.permission.BACKUP"/>\n        <permission name="android.permission.READ_PRIVILEGED_PHONE_STATE"/>',
    );
  }),
  '3.2/C-0-3': both('an app requests background location', (f) => {
    app(f, 'org.omie.mysuppliers').usesPermissions.push(`${P}ACCESS_BACKGROUND_LOCATION`);
  }),
  '4.1/C-0-1': both('two personal clouds', (f) =>
    f.sys.apks.push(
      apk(
        'product',
        'priv-app/OtherCloud/OtherCloud.apk',
        apkFacts('com.example.othercloud', {
          signing: { verified: true, schemes: [2], signerSha256: [OMIE] },
          appMetaData: { [ROLE_META_DATA]: 'personal-cloud' },
        }),
      ),
    ),
  ),
  '4.1/C-0-2': both('personal cloud not allowlisted', (f) => {
    f.sys.files.product['etc/permissions/privapp-permissions-omie.xml'] = '<permissions/>\n';
  }),
  '4.1/C-0-3': {
    image: {
      what: 'personal cloud has no account authenticator',
      apply: (f) => {
        app(f, 'org.omie.personalcloud').components = [];
      },
    },
    device: {
      what: 'the backup transport setting is another app',
      apply: (f) => {
        f.sys.settings!['secure/backup_transport'] = 'com.example.othercloud/.Transport';
      },
    },
  },
  '4.1/C-0-4': {
    image: {
      what: 'another backup transport allowlisted',
      apply: (f) => {
        f.sys.files.product['etc/sysconfig/omie-backup.xml'] = BACKUP_SYSCONFIG.replace(
          '</config>',
          '    <backup-transport-whitelisted-service service="com.example.othercloud/.Transport"/>\n</config>',
        );
      },
    },
    device: {
      what: 'bmgr lists another transport',
      apply: (f) =>
        answer(
          f,
          /^bmgr/,
          'Available transports:\n  * org.omie.personalcloud/.backup.CloudTransport\n    com.example.othercloud/.Transport\n',
        ),
    },
  },
  '4.2/C-0-1': both('customer app swapped for another build', (f) => {
    app(f, 'org.omie.mysuppliers').signing.signerSha256 = [STRANGER];
  }),
  '4.3/C-0-1': both('personal cloud sync hard-wired to a vendor server', (f) => {
    const cfg = JSON.parse(String(f.sys.files.product['etc/omie/personal-cloud.json']));
    cfg.providers.unshift({
      kind: 'webdav',
      label: 'Vendor cloud',
      endpointTemplate: 'https://cloud.vendor.example/dav/',
    });
    f.sys.files.product['etc/omie/personal-cloud.json'] = JSON.stringify(cfg);
  }),
  '4.3/C-0-2': both('customer app keeps its data elsewhere', (f) => {
    delete app(f, 'org.omie.mysuppliers').appMetaData[DATA_STORE_META_DATA];
  }),
  '4.3/C-0-3': both('customer app uses the network without a declared reason', (f) => {
    app(f, 'org.omie.mysuppliers').usesPermissions.push('android.permission.INTERNET');
  }),
  '5.1/C-0-1': both('APK altered after signing', (f) => {
    app(f, 'org.omie.mysuppliers').signing = {
      verified: false,
      schemes: [],
      signerSha256: [OMIE],
      error: 'APK Signature Scheme v2 digest mismatch',
    };
  }),
  '5.1/C-0-2': both('APK by an unknown signer', (f) =>
    f.sys.apks.push(
      apk(
        'system',
        'app/Stranger/Stranger.apk',
        apkFacts('org.example.stranger', {
          signing: { verified: true, schemes: [2], signerSha256: [STRANGER] },
        }),
      ),
    ),
  ),
  '5.1/C-0-3': both('APK signed with the AOSP test key', (f) =>
    f.sys.apks.push(
      apk(
        'system',
        'app/Calc/Calc.apk',
        apkFacts('com.android.calculator2', {
          signing: { verified: true, schemes: [2], signerSha256: [AOSP_TESTKEY] },
        }),
      ),
    ),
  ),
  '5.1/C-0-4': both('debuggable app', (f) => {
    app(f, 'org.omie.mysuppliers').debuggable = true;
  }),
  '5.2/C-0-1': both('priv-app with a privileged permission not allowlisted', (f) => {
    app(f, 'com.android.providers.settings').usesPermissions.push(`${P}WRITE_SECURE_SETTINGS`);
  }),
  '5.3/C-0-1': both('an APEX payload signed with the AVB public test key', (f) => {
    const a = apexOf(f, 'com.android.tzdata');
    a.payloadTestKey = 'testkey_rsa4096';
    a.payloadKeySha256 = '7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6';
  }),
  '6.1/C-0-1': both('userdebug build', (f) => setProp(f, 'ro.build.type', 'userdebug')),
  '6.1/C-0-2': both('ro.debuggable=1', (f) => setProp(f, 'ro.debuggable', '1')),
  '6.1/C-0-3': both('ro.secure=0', (f) => setProp(f, 'ro.secure', '0')),
  '6.1/C-0-4': both('ro.adb.secure unset', (f) => setProp(f, 'ro.adb.secure', null)),
  '6.1/C-0-5': both('test-keys', (f) => setProp(f, 'ro.build.tags', 'test-keys')),
  '6.1/C-0-6': both('privapp permissions only logged', (f) =>
    setProp(f, 'ro.control_privapp_permissions', 'log'),
  ),
  '6.2/C-0-1': {
    image: {
      what: 'su in xbin',
      apply: (f) => {
        f.sys.files.system['xbin/su'] = 'ELF';
      },
    },
    device: {
      what: 'su in /system/xbin',
      apply: (f) => answer(f, 'ls /system/xbin/su', '/system/xbin/su\n'),
    },
  },
  '6.2/C-0-2': {
    image: {
      what: 'permissive SELinux on the cmdline',
      apply: (f) => {
        f.sys.cmdline = `${f.sys.cmdline} androidboot.selinux=permissive`;
      },
    },
    device: { what: 'getenforce says Permissive', apply: (f) => answer(f, 'getenforce', 'Permissive\n') },
  },
  '6.3/C-0-1': {
    image: {
      what: 'unsigned vbmeta',
      apply: (f) => {
        const v = vbmeta(f);
        v.algorithm = 'NONE';
        v.signatureValid = false;
        v.publicKeySha256 = undefined;
      },
    },
    device: {
      what: 'the bootloader reports no vbmeta verification',
      apply: (f) => {
        deviceProp(f, 'ro.boot.vbmeta.avb_version', null);
        deviceProp(f, 'ro.boot.vbmeta.digest', null);
      },
    },
  },
  '6.3/C-0-2': {
    image: {
      what: 'vbmeta signed with the AVB test key',
      apply: (f) => {
        vbmeta(f).publicTestKeyName = 'testkey_rsa4096';
      },
    },
    device: {
      what: 'the booted vbmeta key is the AVB test key testkey_rsa4096',
      apply: (f) =>
        deviceProp(
          f,
          'ro.boot.vbmeta.public_key_digest',
          '7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6',
        ),
    },
  },
  '6.3/C-0-3': {
    image: {
      what: 'vendor without hashtree',
      apply: (f) => {
        const v = vbmeta(f);
        v.descriptors = v.descriptors.filter((d) => d.partition !== 'vendor');
      },
    },
  },
  '6.3/C-0-4': {
    image: {
      what: 'verification disabled in vbmeta flags',
      apply: (f) => {
        vbmeta(f).flags = 2;
      },
    },
    device: {
      what: 'dm-verity disabled',
      apply: (f) => deviceProp(f, 'ro.boot.veritymode', 'disabled'),
    },
  },
  '6.3/C-0-5': {
    image: {
      what: 'a flipped byte in a data block of system.img',
      apply: (f) => {
        const c = f.sys.avbContents;
        if (!c) throw new Error('the clean image fixture has verified partition contents');
        c.ok = false;
        c.descriptors[0].result = 'failed';
        c.problems.push({
          code: 'AVB_HASHTREE_ROOT_MISMATCH',
          partition: 'system',
          vbmeta: 'vbmeta',
          file: '/images/system.img',
          area: 'data',
          firstBadBlock: 100,
          offset: 409600,
          message: 'data block 100 (offset 409600) of system.img does not match its digest',
        });
      },
    },
  },
  '6.4/C-1-1': {
    device: {
      what: 'orange boot state',
      apply: (f) => deviceProp(f, 'ro.boot.verifiedbootstate', 'orange'),
    },
  },
  '6.4/C-1-2': {
    device: {
      what: 'unlocked bootloader',
      apply: (f) => {
        deviceProp(f, 'ro.boot.flash.locked', '0');
        deviceProp(f, 'ro.boot.vbmeta.device_state', 'unlocked');
      },
    },
  },
  '6.4/C-1-3': {
    device: {
      what: 'the device booted another build',
      apply: (f) => deviceProp(f, 'ro.boot.vbmeta.digest', 'ab'.repeat(32)),
    },
  },
  '7.1/C-0-1': both('base vendor brand kept', (f) => {
    f.sys.files.vendor['build.prop'] = VENDOR_PROPS.replace(
      'ro.product.vendor.brand=Omie',
      'ro.product.vendor.brand=Acme',
    );
  }),
  '7.1/C-0-2': both('base fingerprint kept', (f) =>
    setProp(f, 'ro.build.fingerprint', 'Acme/acme_tab/acme:14/UQ1A.240105.004/1:user/release-keys'),
  ),
  '7.1/C-0-3': both('no Omie version', (f) => {
    f.sys.files.product['etc/build.prop'] = PRODUCT_PROPS.replace('ro.omie.version=1.0.0\n', '');
  }),
};
