/**
 * Content of the sample GSI-like base: the apps it carries (with their expected fate under the
 * default removal rules), build.prop files, permission/sysconfig XMLs, SELinux file_contexts and
 * fs_config rules. Modelled on a Pixel GSI (Android 14) with GMS and an OEM layer; everything is
 * made up here except the file layout and formats, which follow AOSP.
 */
import type { ApexSpec } from '../apexgen/index.ts';
import type { ApkSpec } from '../apkgen/index.ts';
import type { FsConfigRule } from '../fs/fs-config.ts';

/** Which sample key signs an app. `google` is a stand-in for Google's release key (see README of sample-base). */
export type SampleSigner = 'google' | 'oem' | 'platform' | 'testkey';

export interface SampleApp {
  /** Folder (and APK file) name; deliberately not always the package name. */
  dir: string;
  partition: 'system' | 'product' | 'vendor';
  privileged: boolean;
  signer: SampleSigner;
  /** What the default Omie removal rules do with it (checked by tests). */
  expect:
    | 'removed-by-package'
    | 'removed-by-signer'
    | 'removed-by-product-pattern'
    | 'replaced-by-aosp-module'
    | 'kept';
  spec: ApkSpec;
}

/** An APEX of the sample base, in <partition>/apex/. */
export interface SampleApex {
  /** File name in the apex/ folder (Google's builds are named after their container package). */
  file: string;
  partition: 'system';
  /** Container key; the payload is signed with that signer's stand-in AVB key. */
  signer: SampleSigner;
  expect: 'replaced-by-aosp-module' | 'kept';
  spec: Omit<ApexSpec, 'apps'>;
}

/**
 * A GMS base's APEXes: Google's build of the time zone module (the AOSP name in apex_manifest.pb,
 * com.google.android.tzdata6 as the container's package, Google's keys), and an AOSP module the
 * OEM built (kept).
 */
export const SAMPLE_APEXES: SampleApex[] = [
  {
    file: 'com.google.android.tzdata6.apex',
    partition: 'system',
    signer: 'google',
    expect: 'replaced-by-aosp-module',
    spec: {
      name: 'com.android.tzdata',
      packageName: 'com.google.android.tzdata6',
      version: 339990000,
      versionName: '2024a',
      files: { 'etc/tz/tzdata': 'tzdata2024a (sample)\n', 'etc/tz/tz_version': '007.001|2024a|001\n' },
    },
  },
  {
    file: 'com.android.i18n.apex',
    partition: 'system',
    signer: 'platform',
    expect: 'kept',
    spec: {
      name: 'com.android.i18n',
      version: 1,
      files: { 'etc/icu/icu_sample.dat': 'ICU data (sample)\n' },
      jars: [{ path: 'javalib/core-icu4j.jar', classes: ['android.icu.util.TimeZone'] }],
    },
  },
];

const launcher = (name = '.MainActivity') => ({
  type: 'activity' as const,
  name,
  exported: true,
  intentFilters: [
    { actions: ['android.intent.action.MAIN'], categories: ['android.intent.category.LAUNCHER'] },
  ],
});

const g = (
  dir: string,
  partition: SampleApp['partition'],
  privileged: boolean,
  pkg: string,
  label: string,
  extra: Partial<ApkSpec> = {},
): SampleApp => ({
  dir,
  partition,
  privileged,
  signer: 'google',
  expect: 'removed-by-package',
  spec: {
    package: pkg,
    label,
    versionCode: 240_000_000,
    versionName: '24.08.12',
    minSdk: 30,
    targetSdk: 34,
    ...extra,
  },
});

export const SAMPLE_APPS: SampleApp[] = [
  // system/priv-app — GMS core set.
  g('PrebuiltGmsCoreSc', 'system', true, 'com.google.android.gms', 'Google Play services', {
    sharedUserId: 'com.google.uid.shared',
    usesPermissions: [
      'android.permission.INTERNET',
      'android.permission.ACCESS_FINE_LOCATION',
      'android.permission.READ_CONTACTS',
      'android.permission.BACKUP',
    ],
    components: [
      {
        type: 'service',
        name: 'com.google.android.gms.backup.BackupTransportService',
        exported: true,
        intentFilters: [{ actions: ['android.backup.TRANSPORT_HOST'] }],
      },
      {
        type: 'service',
        name: 'com.google.android.location.network.NetworkLocationService',
        exported: true,
        intentFilters: [{ actions: ['com.android.location.service.v3.NetworkLocationProvider'] }],
      },
    ],
    classes: [
      'com.google.android.gms.chimera.GmsApplication',
      'com.google.android.gms.ads.identifier.AdvertisingIdClient',
    ],
  }),
  g('Phonesky', 'system', true, 'com.android.vending', 'Google Play Store', {
    usesPermissions: ['android.permission.INTERNET', 'android.permission.INSTALL_PACKAGES'],
    components: [launcher('com.google.android.finsky.activities.MainActivity')],
  }),
  g('GoogleServicesFramework', 'system', true, 'com.google.android.gsf', 'Google Services Framework', {
    sharedUserId: 'com.google.uid.shared',
    usesPermissions: ['android.permission.INTERNET'],
  }),
  g('Velvet', 'system', true, 'com.google.android.googlequicksearchbox', 'Google', {
    usesPermissions: ['android.permission.RECORD_AUDIO', 'android.permission.INTERNET'],
    components: [launcher('com.google.android.googlequicksearchbox.SearchActivity')],
  }),
  g('SetupWizardPrebuilt', 'system', true, 'com.google.android.setupwizard', 'Android Setup', {
    components: [
      {
        type: 'activity',
        name: 'com.google.android.setupwizard.SetupWizardActivity',
        exported: true,
        intentFilters: [
          {
            actions: ['android.intent.action.MAIN'],
            categories: ['android.intent.category.HOME', 'android.intent.category.DEFAULT'],
          },
        ],
      },
    ],
  }),
  g('GoogleBackupTransport', 'system', true, 'com.google.android.backuptransport', 'Google Backup Transport'),
  g('GoogleFeedback', 'system', true, 'com.google.android.feedback', 'Market Feedback Agent'),
  {
    // Google's build of a Mainline module: replaced by the AOSP one, never just removed.
    ...g('ModuleMetadataGoogle', 'system', false, 'com.google.android.modulemetadata', 'Module Metadata'),
    expect: 'replaced-by-aosp-module',
  },
  {
    dir: 'Settings',
    partition: 'system',
    privileged: true,
    signer: 'platform',
    expect: 'kept',
    spec: {
      package: 'com.android.settings',
      label: 'Settings',
      versionCode: 34,
      versionName: '14',
      minSdk: 34,
      targetSdk: 34,
      sharedUserId: 'android.uid.system',
      usesPermissions: ['android.permission.WRITE_SECURE_SETTINGS', 'android.permission.MANAGE_USERS'],
      components: [launcher('.Settings')],
    },
  },
  // system/app
  g('Maps', 'system', false, 'com.google.android.apps.maps', 'Maps', {
    usesLibraries: [{ name: 'com.google.android.maps', required: false }],
    usesPermissions: ['android.permission.ACCESS_FINE_LOCATION', 'android.permission.INTERNET'],
    components: [launcher('com.google.android.maps.MapsActivity')],
  }),
  g('Chrome', 'system', false, 'com.android.chrome', 'Chrome', {
    usesPermissions: ['android.permission.INTERNET'],
    components: [launcher('com.google.android.apps.chrome.Main')],
  }),
  g('WebViewGoogle', 'system', false, 'com.google.android.webview', 'Android System WebView', {
    metaData: [{ name: 'com.android.webview.WebViewLibrary', value: 'libmonochrome.so' }],
  }),
  g('TrichromeLibrary', 'system', false, 'com.google.android.trichromelibrary', 'Trichrome Library'),
  {
    // Innocent name and package, but signed with the (stand-in) Google release key: removed by signer.
    dir: 'DeviceHelper',
    partition: 'system',
    privileged: false,
    signer: 'google',
    expect: 'removed-by-signer',
    spec: {
      package: 'com.example.devicehelper',
      label: 'Device Helper',
      versionCode: 3,
      versionName: '1.2',
      minSdk: 30,
      targetSdk: 34,
      usesPermissions: ['android.permission.INTERNET'],
    },
  },
  {
    dir: 'Calculator',
    partition: 'system',
    privileged: false,
    signer: 'platform',
    expect: 'kept',
    spec: {
      package: 'com.android.calculator2',
      label: 'Calculator',
      versionCode: 34,
      versionName: '14',
      minSdk: 34,
      targetSdk: 34,
      components: [launcher('.Calculator')],
    },
  },
  {
    // Signed with the AOSP test key (stand-in): kept by the plan, flagged by the conformance check.
    dir: 'BasicDreams',
    partition: 'system',
    privileged: false,
    signer: 'testkey',
    expect: 'kept',
    spec: {
      package: 'com.android.dreams.basic',
      label: 'Basic Daydreams',
      versionCode: 34,
      versionName: '14',
      minSdk: 34,
      targetSdk: 34,
    },
  },
  // product/priv-app
  g('GmsCore', 'product', true, 'com.google.android.gms', 'Google Play services', {
    sharedUserId: 'com.google.uid.shared',
    usesPermissions: ['android.permission.INTERNET'],
  }),
  g('ConfigUpdater', 'product', true, 'com.google.android.configupdater', 'ConfigUpdater'),
  g('PartnerSetupPrebuilt', 'product', true, 'com.google.android.partnersetup', 'Google Partner Setup'),
  g(
    'GoogleOneTimeInitializer',
    'product',
    true,
    'com.google.android.onetimeinitializer',
    'Google One Time Init',
  ),
  g('SetupWizardProduct', 'product', true, 'com.google.android.setupwizard.overlay', 'Setup Wizard Overlay'),
  g('WellbeingPrebuilt', 'product', true, 'com.google.android.apps.wellbeing', 'Digital Wellbeing'),
  // product/app
  g(
    'GoogleContactsSyncAdapter',
    'product',
    false,
    'com.google.android.syncadapters.contacts',
    'Google Contacts Sync',
  ),
  g('Photos', 'product', false, 'com.google.android.apps.photos', 'Photos', {
    components: [launcher('.home.HomeActivity')],
  }),
  g('YouTube', 'product', false, 'com.google.android.youtube', 'YouTube', {
    components: [launcher('.app.honeycomb.Shell$HomeActivity')],
  }),
  g('LatinImeGoogle', 'product', false, 'com.google.android.inputmethod.latin', 'Gboard'),
  {
    dir: 'FBAppManager',
    partition: 'product',
    privileged: false,
    signer: 'oem',
    expect: 'removed-by-product-pattern',
    spec: {
      package: 'com.facebook.appmanager',
      label: 'App Manager',
      versionCode: 1,
      versionName: '1.0',
      minSdk: 30,
      targetSdk: 34,
      usesPermissions: ['android.permission.INTERNET'],
    },
  },
  {
    // OEM app bundling tracker SDKs (Facebook app events, Firebase Analytics, AppsFlyer).
    dir: 'OemWeather',
    partition: 'product',
    privileged: false,
    signer: 'oem',
    expect: 'kept',
    spec: {
      package: 'com.oem.weather',
      label: 'Weather',
      versionCode: 12,
      versionName: '3.1',
      minSdk: 30,
      targetSdk: 34,
      usesPermissions: ['android.permission.INTERNET', 'android.permission.ACCESS_COARSE_LOCATION'],
      components: [launcher()],
      metaData: [{ name: 'com.facebook.sdk.ApplicationId', value: 'fb1234567890' }],
      classes: [
        'com.facebook.appevents.AppEventsLogger',
        'com.facebook.appevents.internal.ActivityLifecycleTracker',
        'com.google.firebase.analytics.FirebaseAnalytics',
        'com.appsflyer.AppsFlyerLib',
      ],
    },
  },
  {
    dir: 'DeskClock',
    partition: 'product',
    privileged: false,
    signer: 'platform',
    expect: 'kept',
    spec: {
      package: 'com.android.deskclock',
      label: 'Clock',
      versionCode: 34,
      versionName: '14',
      minSdk: 34,
      targetSdk: 34,
      components: [launcher('.DeskClock')],
    },
  },
  // vendor/app
  {
    dir: 'OemCamera',
    partition: 'vendor',
    privileged: false,
    signer: 'oem',
    expect: 'kept',
    spec: {
      package: 'com.oem.camera',
      label: 'Camera',
      versionCode: 5,
      versionName: '5.0',
      minSdk: 30,
      targetSdk: 34,
      usesPermissions: ['android.permission.CAMERA'],
      components: [launcher()],
    },
  },
];

export const GOOGLE_FINGERPRINT =
  'google/gsi_gms_arm64/gsi_arm64:14/UQ1A.240205.004/11269751:userdebug/test-keys';

export function systemBuildProp(): string {
  return `
# begin common build properties
# autogenerated by build/make/tools/buildinfo_common.sh
ro.system.build.date=Mon Feb  5 12:00:00 UTC 2024
ro.system.build.date.utc=1707134400
ro.system.build.fingerprint=${GOOGLE_FINGERPRINT}
ro.system.build.id=UQ1A.240205.004
ro.system.build.tags=test-keys
ro.system.build.type=userdebug
ro.system.build.version.incremental=11269751
ro.system.build.version.release=14
ro.system.build.version.release_or_codename=14
ro.system.build.version.sdk=34
ro.product.system.brand=google
ro.product.system.device=generic
ro.product.system.manufacturer=Google
ro.product.system.model=GSI on ARM64
ro.product.system.name=gsi_gms_arm64
# end common build properties
# begin build properties
# autogenerated by buildinfo.sh
ro.build.id=UQ1A.240205.004
ro.build.display.id=gsi_gms_arm64-userdebug 14 UQ1A.240205.004 11269751 test-keys
ro.build.version.incremental=11269751
ro.build.version.sdk=34
ro.build.version.preview_sdk=0
ro.build.version.codename=REL
ro.build.version.release=14
ro.build.version.security_patch=2024-02-05
ro.build.version.base_os=
ro.build.date=Mon Feb  5 12:00:00 UTC 2024
ro.build.date.utc=1707134400
ro.build.type=userdebug
ro.build.user=android-build
ro.build.host=abfarm-release
ro.build.tags=test-keys
ro.build.flavor=gsi_gms_arm64-userdebug
ro.build.system_root_image=false
ro.product.cpu.abi=arm64-v8a
ro.product.locale=en-US
ro.wifi.channels=
# ro.build.product is obsolete; use ro.product.device
ro.build.product=generic
ro.build.description=gsi_gms_arm64-userdebug 14 UQ1A.240205.004 11269751 test-keys
ro.build.fingerprint=${GOOGLE_FINGERPRINT}
# end build properties

#
# ADDITIONAL_BUILD_PROPERTIES
#
ro.com.google.gmsversion=14_202402
ro.com.google.clientidbase=android-google
ro.com.google.ime.theme_id=5
ro.setupwizard.mode=OPTIONAL
ro.setupwizard.rotation_locked=true
ro.opa.eligible_device=true
ro.control_privapp_permissions=log
dalvik.vm.heapsize=512m
persist.sys.dalvik.vm.lib.2=libart.so
net.bt.name=Android
ro.config.ringtone=Ring_Synth_04.ogg
`.trimStart();
}

/** system/etc/prop.default: loaded first by init; carries the debuggable/secure switches. */
export function propDefault(): string {
  return `
#
# ADDITIONAL_DEFAULT_PROPERTIES
#
ro.secure=1
security.perf_harden=1
ro.adb.secure=0
ro.debuggable=1
ro.allow.mock.location=0
persist.sys.usb.config=adb
dalvik.vm.image-dex2oat-Xms=64m
ro.zygote=zygote64_32
`.trimStart();
}

export function productBuildProp(): string {
  return `
# begin common build properties
ro.product.build.date=Mon Feb  5 12:00:00 UTC 2024
ro.product.build.date.utc=1707134400
ro.product.build.fingerprint=${GOOGLE_FINGERPRINT}
ro.product.build.id=UQ1A.240205.004
ro.product.build.tags=test-keys
ro.product.build.type=userdebug
ro.product.build.version.incremental=11269751
ro.product.build.version.release=14
ro.product.build.version.sdk=34
ro.product.product.brand=google
ro.product.product.device=generic
ro.product.product.manufacturer=Google
ro.product.product.model=GSI on ARM64
ro.product.product.name=gsi_gms_arm64
# end common build properties
ro.com.google.gmsversion=14_202402
ro.com.google.clientidbase.ms=android-google
ro.setupwizard.enterprise_mode=1
ro.setupwizard.esim_cid_ignore=00000001
ro.opa.eligible_device=true
ro.support_one_handed_mode=true
`.trimStart();
}

export function vendorBuildProp(): string {
  return `
# begin common build properties
ro.vendor.build.date=Mon Feb  5 12:00:00 UTC 2024
ro.vendor.build.date.utc=1707134400
ro.vendor.build.fingerprint=oem/tablet/tablet:14/UQ1A.240205.004/11269751:user/release-keys
ro.vendor.build.id=UQ1A.240205.004
ro.vendor.build.tags=release-keys
ro.vendor.build.type=user
ro.vendor.build.version.release=14
ro.vendor.build.version.sdk=34
ro.product.vendor.brand=oem
ro.product.vendor.device=tablet
ro.product.vendor.manufacturer=OEM
ro.product.vendor.model=OEM Tablet
ro.product.vendor.name=tablet
# end common build properties
ro.vendor.build.security_patch=2024-02-05
ro.board.platform=sample
ro.hardware.egl=mesa
ro.com.google.clientidbase.vs=android-oem
`.trimStart();
}

export function gpsConf(): string {
  return `# Sample vendor gps.conf (format of hardware/qcom/gps etc/gps.conf)
NTP_SERVER=time.android.com
XTRA_SERVER_1=https://xtrapath1.izatcloud.net/xtra3grc.bin
SUPL_HOST=supl.google.com
SUPL_PORT=7275
SUPL_VER=0x20000
SUPL_MODE=1
LPP_PROFILE=2
A_GLONASS_POS_PROTOCOL_SELECT=0
GPS_LOCK=3
`;
}

const HEADER =
  '<?xml version="1.0" encoding="utf-8"?>\n<!--\n  Sample content for Omie Kit tests (layout of AOSP frameworks/base/data/etc).\n-->\n';

const privapp = (pkg: string, perms: string[]) =>
  `    <privapp-permissions package="${pkg}">\n${perms.map((p) => `        <permission name="${p}"/>\n`).join('')}    </privapp-permissions>\n`;

export interface SampleFile {
  /** Path inside the partition image. */
  path: string;
  content: string | Buffer;
}

export function systemXmls(): SampleFile[] {
  return [
    {
      path: '/system/etc/permissions/platform.xml',
      content: `${HEADER}<permissions>
    <permission name="android.permission.BLUETOOTH_ADMIN" >
        <group gid="net_bt_admin" />
    </permission>
    <assign-permission name="android.permission.MODIFY_AUDIO_SETTINGS" uid="media" />
    <library name="android.test.base" file="/system/framework/android.test.base.jar" />
    <allow-in-power-save package="com.android.providers.downloads" />
    <allow-in-power-save package="com.google.android.gms" />
    <backup-transport-whitelisted-service service="com.android.localtransport/.LocalTransportService" />
    <backup-transport-whitelisted-service service="com.google.android.gms/.backup.BackupTransportService" />
    <hidden-api-whitelisted-app package="com.android.settings" />
    <hidden-api-whitelisted-app package="com.google.android.gms" />
</permissions>
`,
    },
    {
      path: '/system/etc/permissions/privapp-permissions-platform.xml',
      content: `${HEADER}<permissions>
${privapp('com.android.settings', ['android.permission.BACKUP', 'android.permission.MANAGE_USERS', 'android.permission.WRITE_SECURE_SETTINGS'])}${privapp('com.google.android.setupwizard', ['android.permission.MANAGE_USERS'])}</permissions>
`,
    },
    {
      path: '/system/etc/permissions/privapp-permissions-google.xml',
      content: `${HEADER}<permissions>
${privapp('com.google.android.gms', ['android.permission.BACKUP', 'android.permission.INSTALL_LOCATION_PROVIDER', 'android.permission.LOCATION_HARDWARE', 'android.permission.READ_PRIVILEGED_PHONE_STATE'])}${privapp('com.android.vending', ['android.permission.INSTALL_PACKAGES', 'android.permission.DELETE_PACKAGES'])}${privapp('com.google.android.gsf', ['android.permission.WRITE_GSERVICES'])}${privapp('com.google.android.setupwizard', ['android.permission.BACKUP', 'android.permission.WRITE_SECURE_SETTINGS'])}${privapp('com.google.android.googlequicksearchbox', ['android.permission.CAPTURE_AUDIO_HOTWORD'])}</permissions>
`,
    },
    {
      path: '/system/etc/permissions/com.google.android.maps.xml',
      content: `${HEADER}<permissions>
    <library name="com.google.android.maps" file="/system/framework/com.google.android.maps.jar" />
</permissions>
`,
    },
    {
      path: '/system/etc/permissions/android.software.webview.xml',
      content: `${HEADER}<permissions>
    <feature name="android.software.webview" />
</permissions>
`,
    },
    {
      path: '/system/etc/sysconfig/google.xml',
      content: `${HEADER}<config>
    <allow-in-power-save package="com.google.android.gms" />
    <allow-in-data-usage-save package="com.google.android.gms" />
    <system-user-whitelisted-app package="com.google.android.gms" />
    <backup-transport-whitelisted-service service="com.google.android.gms/.backup.BackupTransportService" />
    <app-link package="com.google.android.apps.maps" />
    <feature name="com.google.android.feature.GOOGLE_BUILD" />
    <feature name="com.google.android.feature.GOOGLE_EXPERIENCE" />
</config>
`,
    },
    {
      path: '/system/etc/sysconfig/google-hiddenapi-package-whitelist.xml',
      content: `${HEADER}<config>
    <hidden-api-whitelisted-app package="com.google.android.gms" />
    <hidden-api-whitelisted-app package="com.google.android.gsf" />
    <hidden-api-whitelisted-app package="com.android.vending" />
</config>
`,
    },
    {
      path: '/system/etc/sysconfig/framework-sysconfig.xml',
      content: `${HEADER}<config>
    <allow-in-power-save-except-idle package="com.android.providers.downloads" />
    <allow-in-power-save package="com.google.android.gms" />
    <system-user-whitelisted-app package="com.android.settings" />
    <system-user-whitelisted-app package="com.google.android.googlequicksearchbox" />
</config>
`,
    },
    {
      path: '/system/etc/default-permissions/default-permissions-google.xml',
      content: `${HEADER}<exceptions>
    <exception package="com.google.android.gms">
        <permission name="android.permission.ACCESS_FINE_LOCATION" fixed="false"/>
        <permission name="android.permission.READ_CONTACTS" fixed="false"/>
    </exception>
    <exception package="com.google.android.googlequicksearchbox">
        <permission name="android.permission.RECORD_AUDIO" fixed="false"/>
    </exception>
</exceptions>
`,
    },
    {
      path: '/system/etc/preferred-apps/google.xml',
      content: `${HEADER}<preferred-activities>
    <item name="com.google.android.googlequicksearchbox/com.google.android.googlequicksearchbox.SearchActivity" match="100000" set="1">
        <set name="com.google.android.googlequicksearchbox/com.google.android.googlequicksearchbox.SearchActivity" />
        <filter>
            <action name="android.intent.action.WEB_SEARCH" />
            <cat name="android.intent.category.DEFAULT" />
        </filter>
    </item>
</preferred-activities>
`,
    },
  ];
}

export function productXmls(): SampleFile[] {
  return [
    {
      path: '/etc/permissions/privapp-permissions-google-p.xml',
      content: `${HEADER}<permissions>
${privapp('com.google.android.gms', ['android.permission.BACKUP'])}${privapp('com.google.android.partnersetup', ['android.permission.WRITE_SECURE_SETTINGS'])}${privapp('com.google.android.apps.wellbeing', ['android.permission.PACKAGE_USAGE_STATS'])}${privapp('com.google.android.configupdater', ['android.permission.UPDATE_CONFIG'])}</permissions>
`,
    },
    {
      path: '/etc/sysconfig/google.xml',
      content: `${HEADER}<config>
    <allow-in-power-save package="com.google.android.gms" />
    <system-user-whitelisted-app package="com.google.android.apps.wellbeing" />
</config>
`,
    },
    {
      path: '/etc/sysconfig/preinstalled-packages-product.xml',
      content: `${HEADER}<config>
    <install-in-user-type package="com.android.deskclock">
        <install-in user-type="FULL" />
    </install-in-user-type>
    <install-in-user-type package="com.google.android.apps.photos">
        <install-in user-type="FULL" />
    </install-in-user-type>
</config>
`,
    },
    {
      path: '/etc/default-permissions/default-permissions-google-product.xml',
      content: `${HEADER}<exceptions>
    <exception package="com.google.android.apps.photos">
        <permission name="android.permission.READ_EXTERNAL_STORAGE" fixed="false"/>
    </exception>
</exceptions>
`,
    },
    {
      // Pixel-style features: the Google ones go, the file stays for the rest.
      path: '/etc/sysconfig/pixel_experience_2023.xml',
      content: `${HEADER}<config>
    <feature name="com.google.android.feature.PIXEL_2023_EXPERIENCE" />
    <feature name="com.google.android.feature.PIXEL_EXPERIENCE" />
    <feature name="android.software.ipsec_tunnels" />
</config>
`,
    },
    {
      path: '/etc/preferred-apps/google.xml',
      content: `${HEADER}<preferred-activities>
    <item name="com.google.android.youtube/.UrlActivity" match="200000" set="1">
        <set name="com.google.android.youtube/.UrlActivity" />
        <filter>
            <action name="android.intent.action.VIEW" />
            <cat name="android.intent.category.DEFAULT" />
            <scheme name="https" />
            <host name="www.youtube.com" />
        </filter>
    </item>
</preferred-activities>
`,
    },
  ];
}

/** A realistic cut of AOSP system/sepolicy private/file_contexts (what plat_file_contexts holds). */
export function platFileContexts(): string {
  return `###########################################
# Root
/                   u:object_r:rootfs:s0

# Data files
/adb_keys           u:object_r:adb_keys_file:s0
/build\\.prop        u:object_r:rootfs:s0
/default\\.prop      u:object_r:rootfs:s0
/fstab\\..*          u:object_r:rootfs:s0
/init\\..*           u:object_r:rootfs:s0
/res(/.*)?          u:object_r:rootfs:s0
/selinux_version    u:object_r:rootfs:s0
/ueventd\\..*        u:object_r:rootfs:s0

# Executables
/init               u:object_r:init_exec:s0
/sbin(/.*)?         u:object_r:rootfs:s0

# For kernel modules
/lib(/.*)?          u:object_r:rootfs:s0

# Empty directories
/lost\\+found        u:object_r:rootfs:s0
/acct               u:object_r:cgroup:s0
/config             u:object_r:rootfs:s0
/data_mirror        u:object_r:mirror_data_file:s0
/debug_ramdisk      u:object_r:tmpfs:s0
/mnt                u:object_r:tmpfs:s0
/proc               u:object_r:rootfs:s0
/second_stage_resources u:object_r:tmpfs:s0
/sys                u:object_r:sysfs:s0
/apex               u:object_r:apex_mnt_dir:s0

# Symlinks
/bin                u:object_r:rootfs:s0
/bugreports         u:object_r:rootfs:s0
/d                  u:object_r:rootfs:s0
/etc                u:object_r:rootfs:s0
/sdcard             u:object_r:rootfs:s0

# SELinux policy files
/vendor_file_contexts   u:object_r:file_contexts_file:s0
/plat_file_contexts     u:object_r:file_contexts_file:s0
/sepolicy           u:object_r:sepolicy_file:s0

##########################
# Devices
#
/dev(/.*)?		u:object_r:device:s0
/dev/binder		u:object_r:binder_device:s0
/dev/null		u:object_r:null_device:s0
/dev/socket(/.*)?	u:object_r:socket_device:s0

#############################
# System files
#
/system(/.*)?		u:object_r:system_file:s0
/system/lib(64)?(/.*)?		u:object_r:system_lib_file:s0
/system/bin/linker(64)? u:object_r:system_linker_exec:s0
/system/bin/init		u:object_r:init_exec:s0
/system/bin/logd		u:object_r:logd_exec:s0
/system/bin/run-as	--	u:object_r:runas_exec:s0
/system/bin/surfaceflinger	u:object_r:surfaceflinger_exec:s0
/system/bin/toybox	--	u:object_r:toolbox_exec:s0
/system/bin/toolbox	--	u:object_r:toolbox_exec:s0
/system/bin/sh		--	u:object_r:shell_exec:s0
/system/bin/app_process32	u:object_r:zygote_exec:s0
/system/bin/app_process64	u:object_r:zygote_exec:s0
/system/etc/selinux/plat_file_contexts	u:object_r:file_contexts_file:s0
/system/etc/selinux/plat_sepolicy\\.cil	u:object_r:sepolicy_file:s0
/system/etc/prop\\.default	u:object_r:system_file:s0
/system/build\\.prop	u:object_r:system_file:s0
/system/etc/security/cacerts(/.*)?	u:object_r:system_security_cacerts_file:s0
/system/usr/share/zoneinfo(/.*)?	u:object_r:system_zoneinfo_file:s0
/system/bin/vold_prepare_subdirs	u:object_r:vold_prepare_subdirs_exec:s0

#############################
# Vendor files
#
/(vendor|system/vendor)(/.*)?		u:object_r:vendor_file:s0
/(vendor|system/vendor)/bin/sh		u:object_r:vendor_shell_exec:s0
/(vendor|system/vendor)/bin/toybox_vendor	u:object_r:vendor_toolbox_exec:s0
/(vendor|system/vendor)/etc(/.*)?	u:object_r:vendor_configs_file:s0
/(vendor|system/vendor)/app(/.*)?	u:object_r:vendor_app_file:s0
/(vendor|system/vendor)/priv-app(/.*)?	u:object_r:vendor_app_file:s0
/(vendor|system/vendor)/overlay(/.*)?	u:object_r:vendor_overlay_file:s0
/(vendor|system/vendor)/framework(/.*)?	u:object_r:vendor_framework_file:s0
/(vendor|system/vendor)/build\\.prop	u:object_r:vendor_file:s0

#############################
# Product files
#
/(product|system/product)(/.*)?		u:object_r:system_file:s0
/(product|system/product)/etc/selinux/product_file_contexts	u:object_r:file_contexts_file:s0
/(product|system/product)/overlay(/.*)?	u:object_r:vendor_overlay_file:s0

#############################
# Data files
#
/data(/.*)?		u:object_r:system_data_file:s0
/data/app(/.*)?                       u:object_r:apk_data_file:s0
/data/misc/adb(/.*)?  u:object_r:adb_keys_file:s0
/data/local/tmp(/.*)?	u:object_r:shell_data_file:s0
/data/system/ndebugsocket  u:object_r:system_ndebug_socket:s0
/data/vendor(/.*)?              <<none>>
/data/user(/.*)?              <<none>>

#############################
# Mount points
#
/storage(/.*)?		u:object_r:storage_file:s0
/odm		u:object_r:vendor_file:s0
/oem(/.*)?		u:object_r:oemfs:s0
`;
}

export function productFileContexts(): string {
  return `# product_file_contexts (BOARD_PRODUCT_SEPOLICY_DIRS)
/(product|system/product)/bin/omie_sample_daemon	u:object_r:system_file:s0
/(product|system/product)/etc/selinux/product_file_contexts	u:object_r:file_contexts_file:s0
`;
}

export function vendorFileContexts(): string {
  return `# vendor_file_contexts (device/oem/tablet/sepolicy)
/(vendor|system/vendor)/bin/hw/android\\.hardware\\.gnss-service\\.sample	u:object_r:hal_gnss_default_exec:s0
/(vendor|system/vendor)/bin/hw/android\\.hardware\\.graphics\\.composer@2\\.4-service\\.sample	u:object_r:hal_graphics_composer_default_exec:s0
/(vendor|system/vendor)/etc/selinux/vendor_file_contexts	u:object_r:file_contexts_file:s0
/(vendor|system/vendor)/etc/gps\\.conf	u:object_r:vendor_configs_file:s0
`;
}

/** fs_config-like owner/mode/capability rules (paths inside each image). */
export const SYSTEM_FS_CONFIG: FsConfigRule[] = [
  { path: '/system/bin', mode: 0o751, uid: 0, gid: 2000 },
  { path: '/system/bin/*', mode: 0o755, uid: 0, gid: 2000 },
  {
    path: '/system/bin/logd',
    mode: 0o550,
    uid: 1036,
    gid: 1036,
    capabilities: ['SYSLOG', 'AUDIT_CONTROL', 'SETGID'],
  },
  { path: '/system/bin/run-as', mode: 0o750, uid: 0, gid: 2000, capabilities: ['SETUID', 'SETGID'] },
  { path: '/system/bin/surfaceflinger', mode: 0o755, uid: 0, gid: 2000, capabilities: ['SYS_NICE'] },
];

export const VENDOR_FS_CONFIG: FsConfigRule[] = [
  { path: '/bin', mode: 0o751, uid: 0, gid: 2000 },
  { path: '/bin/*', mode: 0o755, uid: 0, gid: 2000 },
  {
    path: '/bin/hw/android.hardware.gnss-service.sample',
    mode: 0o755,
    uid: 1021,
    gid: 1021,
    capabilities: ['NET_BIND_SERVICE'],
  },
];

/** Fake ELF executables: a header so tools see them as ELF, then a deterministic body. */
export function fakeElf(name: string): Buffer {
  const h = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(h, 0);
  h.writeUInt16LE(3, 16); // ET_DYN
  h.writeUInt16LE(183, 18); // EM_AARCH64
  h.writeUInt32LE(1, 20);
  return Buffer.concat([h, Buffer.from(`omie-sample:${name}\n`)]);
}
