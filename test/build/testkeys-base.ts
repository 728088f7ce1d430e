/**
 * A LineageOS/AOSP-style base signed with the public AOSP test keys, as unofficial LineageOS
 * builds, GSIs and most partner BSPs are: every app signed with the key of its role (framework-res,
 * Settings and SettingsProvider with `platform`, ContactsProvider with `shared`, MediaProvider with
 * `media`, NetworkStack with `networkstack`, Bluetooth with `bluetooth`, the rest with `testkey`),
 * each shared UID declared as AOSP does, `ro.build.tags=test-keys` and test-keys fingerprints,
 * plat_mac_permissions.xml naming the test certificates as insertkeys.py writes them, and an
 * otacerts.zip holding testkey. The keys are the real ones (../shared/fixtures/aosp-testkeys).
 *
 * system (ext4, system-as-root), system_ext (ext4), product (erofs), vendor (ext4), vendor_dlkm
 * (erofs): a folder of images as `omie build --base` takes it. The `extras` variant adds what the build must refuse:
 * an APEX whose container is signed with the platform test key, and an app of android.uid.system
 * signed with an OEM key (the framework's test key cannot be mapped onto it).
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import yazl from 'yazl';
import type { ApkSpec, SigningKey } from '../../scripts/apkgen/index.ts';
import { buildApk, generateSigningKey, signApk } from '../../scripts/apkgen/index.ts';
import { encodeAvbPublicKey, generateAvbKey } from '../../scripts/formats/avb/keys.ts';
import { buildErofs, erofsMeta } from '../../scripts/fs/erofs.ts';
import { createExt4 } from '../../scripts/fs/ext4.ts';
import { FRAMEWORK_RES, requireFile } from '../../scripts/host/tools.ts';
import { SAMPLE_EPOCH } from '../../scripts/sample/base.ts';
import {
  platFileContexts,
  propDefault,
  SYSTEM_FS_CONFIG,
  VENDOR_FS_CONFIG,
  vendorFileContexts,
} from '../../scripts/sample/base-content.ts';
import { contextsFor, partitionFileContexts } from '../../scripts/sample/realistic-base.ts';

/** Key roles of AOSP's build/make/target/product/security that the base signs with. */
export type TestKey = 'testkey' | 'platform' | 'shared' | 'media' | 'networkstack' | 'bluetooth';

export const TESTKEYS_PARTITIONS = ['system', 'system_ext', 'product', 'vendor', 'vendor_dlkm'] as const;
type Part = (typeof TESTKEYS_PARTITIONS)[number];

export interface TestKeysApp {
  partition: Part;
  /** Path inside the partition image. */
  path: string;
  key: TestKey;
  spec: ApkSpec;
}

const app = (pkg: string, label: string, minSdk: number, sharedUserId?: string): ApkSpec => ({
  package: pkg,
  label,
  versionCode: 34,
  versionName: '14',
  minSdk,
  targetSdk: 34,
  ...(sharedUserId ? { sharedUserId } : {}),
});

/**
 * The apps, with the keys AOSP's Android.bp/Android.mk give them (`certificate: "platform"` …).
 * Two have a minSdkVersion below 24, as older AOSP apps do: they need a v1 signature too.
 */
export const TESTKEYS_APPS: TestKeysApp[] = [
  {
    partition: 'system',
    path: '/system/priv-app/Settings/Settings.apk',
    key: 'platform',
    spec: app('com.android.settings', 'Settings', 34, 'android.uid.system'),
  },
  {
    partition: 'system',
    path: '/system/priv-app/SettingsProvider/SettingsProvider.apk',
    key: 'platform',
    spec: app('com.android.providers.settings', 'Settings Storage', 34, 'android.uid.system'),
  },
  {
    partition: 'system',
    path: '/system/priv-app/ContactsProvider/ContactsProvider.apk',
    key: 'shared',
    spec: app('com.android.providers.contacts', 'Contacts Storage', 34, 'android.uid.shared'),
  },
  {
    partition: 'system',
    path: '/system/priv-app/MediaProviderLegacy/MediaProviderLegacy.apk',
    key: 'media',
    spec: app('com.android.providers.media', 'Media Storage', 21, 'android.media'),
  },
  {
    partition: 'system',
    path: '/system/priv-app/NetworkStack/NetworkStack.apk',
    key: 'networkstack',
    spec: app('com.android.networkstack', 'Network Stack', 29, 'android.uid.networkstack'),
  },
  {
    partition: 'system',
    path: '/system/app/Bluetooth/Bluetooth.apk',
    key: 'bluetooth',
    spec: app('com.android.bluetooth', 'Bluetooth', 34, 'android.uid.bluetooth'),
  },
  {
    partition: 'system_ext',
    path: '/priv-app/Launcher3QuickStep/Launcher3QuickStep.apk',
    key: 'testkey',
    spec: app('com.android.launcher3', 'Quickstep', 34),
  },
  {
    partition: 'product',
    path: '/app/ExactCalculator/ExactCalculator.apk',
    key: 'testkey',
    spec: app('com.android.calculator2', 'Calculator', 21),
  },
];

/** The base's identity: a LineageOS build for an OEM's tablet (what the product replaces). */
const BUILD = {
  fingerprint:
    'Lineage/lineage_oemtab/oemtab:14/UQ1A.240205.004/eng.builder.20240205.120000:userdebug/test-keys',
  description: 'lineage_oemtab-userdebug 14 UQ1A.240205.004 eng.builder.20240205.120000 test-keys',
  vendorFingerprint: 'oem/oemtab/oemtab:14/UQ1A.240205.004/20240205:userdebug/test-keys',
};

function commonProps(ns: string, fingerprint = BUILD.fingerprint): string {
  return `# begin common build properties
ro.${ns}.build.date.utc=${SAMPLE_EPOCH}
ro.${ns}.build.fingerprint=${fingerprint}
ro.${ns}.build.id=UQ1A.240205.004
ro.${ns}.build.tags=test-keys
ro.${ns}.build.type=userdebug
ro.${ns}.build.version.incremental=eng.builder.20240205.120000
ro.${ns}.build.version.release=14
ro.${ns}.build.version.sdk=34
`;
}

function identityProps(
  ns: string,
  v: { brand: string; device: string; manufacturer: string; model: string; name: string },
) {
  return `ro.product.${ns}.brand=${v.brand}
ro.product.${ns}.device=${v.device}
ro.product.${ns}.manufacturer=${v.manufacturer}
ro.product.${ns}.model=${v.model}
ro.product.${ns}.name=${v.name}
# end common build properties
`;
}

const LINEAGE = {
  brand: 'Lineage',
  device: 'oemtab',
  manufacturer: 'OEM',
  model: 'LineageOS on oemtab',
  name: 'lineage_oemtab',
};
const OEM_VENDOR = {
  brand: 'oem',
  device: 'oemtab',
  manufacturer: 'OEM',
  model: 'OEM Tab 10',
  name: 'oemtab',
};

function systemProps(): string {
  return `${commonProps('system')}${identityProps('system', LINEAGE)}# begin build properties
ro.build.id=UQ1A.240205.004
ro.build.display.id=${BUILD.description}
ro.build.version.incremental=eng.builder.20240205.120000
ro.build.version.sdk=34
ro.build.version.codename=REL
ro.build.version.release=14
ro.build.version.security_patch=2024-02-05
ro.build.date.utc=${SAMPLE_EPOCH}
ro.build.type=userdebug
ro.build.user=builder
ro.build.tags=test-keys
ro.build.flavor=lineage_oemtab-userdebug
ro.build.product=oemtab
ro.build.description=${BUILD.description}
ro.build.thumbprint=14/UQ1A.240205.004/eng.builder.20240205.120000:userdebug/test-keys
# end build properties
ro.lineage.version=21.0-20240205-UNOFFICIAL-oemtab
ro.lineage.releasetype=UNOFFICIAL
ro.control_privapp_permissions=log
`;
}

/** insertkeys.py writes each @KEY of mac_permissions.xml as the hex of the certificate's DER. */
function macPermissions(certs: Record<TestKey, Buffer>): string {
  const signer = (k: TestKey, seinfo: string) =>
    `<signer signature="${certs[k].toString('hex')}"><seinfo value="${seinfo}"/></signer>`;
  return `<?xml version="1.0" encoding="iso-8859-1"?><policy>${signer('platform', 'platform')}${signer('bluetooth', 'bluetooth')}${signer('media', 'media')}${signer('networkstack', 'network_stack')}</policy>\n`;
}

async function zipOf(entries: Array<{ name: string; data: Buffer }>, dest: string): Promise<void> {
  const z = new yazl.ZipFile();
  for (const e of entries)
    z.addBuffer(e.data, e.name, { mtime: new Date(SAMPLE_EPOCH * 1000), compress: false });
  z.end();
  await new Promise<void>((res, rej) => {
    const out = createWriteStream(dest);
    z.outputStream
      .pipe(out)
      .on('close', () => res())
      .on('error', rej);
  });
}

/** Where the `extras` variant puts its refused APEX and its OEM-signed android.uid.system app. */
export const EXTRA_APEX = '/system/apex/com.android.tzdata.apex';
export const EXTRA_OEM_APP = '/system/priv-app/OemSystemUi/OemSystemUi.apk';

export interface TestKeysBase {
  dir: string;
  /** Partition → image in `dir`. */
  images: Record<Part, string>;
  /** Certificate SHA-256 of every test key the base uses. */
  certs: Record<TestKey, string>;
  apps: TestKeysApp[];
  /** Present in the `extras` variant. */
  extras?: { apex: string; oemApp: string; oemCertSha256: string };
}

/**
 * Builds the base into `outDir` with the AOSP test keys of `testKeysDir` (<role>.pk8 +
 * <role>.x509.pem). `extras` adds the refused APEX and OEM-signed android.uid.system app.
 */
export async function generateTestKeysBase(opts: {
  outDir: string;
  testKeysDir: string;
  extras?: boolean;
}): Promise<TestKeysBase> {
  const outDir = resolve(opts.outDir);
  const work = join(outDir, '.work');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const roles: TestKey[] = ['testkey', 'platform', 'shared', 'media', 'networkstack', 'bluetooth'];
  const keys = {} as Record<TestKey, SigningKey>;
  const der = {} as Record<TestKey, Buffer>;
  const certs = {} as Record<TestKey, string>;
  for (const r of roles) {
    keys[r] = {
      name: r,
      keyPk8: join(opts.testKeysDir, `${r}.pk8`),
      certPem: join(opts.testKeysDir, `${r}.x509.pem`),
      keyPem: '',
    };
    der[r] = Buffer.from(new X509Certificate(await readFile(keys[r].certPem)).raw);
    certs[r] = createHash('sha256').update(der[r]).digest('hex');
  }
  const root = (p: Part) => join(work, p);
  const put = async (p: Part, path: string, content: string | Buffer) => {
    const f = join(root(p), path);
    await mkdir(dirname(f), { recursive: true });
    await writeFile(f, content);
  };

  await put('system', '/system/build.prop', systemProps());
  await put('system', '/system/etc/prop.default', propDefault());
  await put('system', '/system/etc/selinux/plat_file_contexts', platFileContexts());
  await put('system', '/system/etc/selinux/plat_mac_permissions.xml', macPermissions(der));
  await mkdir(join(root('system'), 'system/etc/security'), { recursive: true });
  await zipOf(
    [{ name: 'testkey.x509.pem', data: await readFile(keys.testkey.certPem) }],
    join(root('system'), 'system/etc/security/otacerts.zip'),
  );
  for (const d of ['apex', 'dev', 'odm', 'proc', 'product', 'sys', 'system_ext', 'vendor'])
    await mkdir(join(root('system'), d), { recursive: true });
  // System_ext and product as a GSI-derived build has them: without the identity keys of their
  // namespace (the build adds them).
  await put('system_ext', '/etc/build.prop', commonProps('system_ext'));
  await put('system_ext', '/etc/selinux/system_ext_file_contexts', contextsFor('system_ext'));
  await put('product', '/etc/build.prop', `${commonProps('product')}ro.product.product.brand=Lineage\n`);
  await put('product', '/etc/selinux/product_file_contexts', contextsFor('product'));
  // The OEM's vendor, which prefers its own identity: init would derive ro.product.* from it.
  await put(
    'vendor',
    '/build.prop',
    `${commonProps('vendor', BUILD.vendorFingerprint)}${identityProps('vendor', OEM_VENDOR)}ro.product.property_source_order=vendor,odm,product,system_ext,system\nro.board.platform=oemtab\n`,
  );
  await put('vendor', '/etc/selinux/vendor_file_contexts', vendorFileContexts());
  await put(
    'vendor_dlkm',
    '/etc/build.prop',
    `${commonProps('vendor_dlkm', BUILD.vendorFingerprint)}${identityProps('vendor_dlkm', OEM_VENDOR)}`,
  );
  await put('vendor_dlkm', '/lib/modules/modules.load', 'wlan.ko\n');

  // framework-res (package android, android.uid.system), zipaligned and signed with the platform
  // key (v1 + v2) as an AOSP build makes it (Debian's copy is not aligned).
  const fwAligned = join(work, 'framework-res.aligned.apk');
  await execa('zipalign', ['-f', '4', requireFile(FRAMEWORK_RES), fwAligned]);
  await signApk(fwAligned, join(root('system'), 'system/framework/framework-res.apk'), {
    key: keys.platform,
    v1: true,
    v2: true,
    v3: false,
  });
  for (const a of TESTKEYS_APPS)
    await buildApk(
      a.spec,
      { key: keys[a.key], v1: true, v2: true, v3: false },
      join(root(a.partition), a.path),
    );

  let extras: TestKeysBase['extras'];
  if (opts.extras) {
    const oem = await generateSigningKey(work, 'oem-release', { subject: '/C=US/O=OEM/CN=OEM release' });
    const oemApp = EXTRA_OEM_APP;
    await buildApk(
      app('com.oem.systemtweaks', 'System tweaks', 34, 'android.uid.system'),
      { key: oem, v1: false, v2: true, v3: false },
      join(root('system'), oemApp),
    );
    const apex = EXTRA_APEX;
    await testKeyApex(join(root('system'), apex), keys.platform, work);
    extras = {
      apex,
      oemApp,
      oemCertSha256: createHash('sha256')
        .update(new X509Certificate(await readFile(oem.certPem)).raw)
        .digest('hex'),
    };
  }

  const own = partitionFileContexts;
  const images = {} as Record<Part, string>;
  for (const [i, p] of TESTKEYS_PARTITIONS.entries()) {
    images[p] = join(outDir, `${p}.img`);
    const mountPoint = p === 'system' ? '/' : `/${p}`;
    const uuid = `5a6d2c1e-0000-4000-8000-0000000003${String(i).padStart(2, '0')}`;
    if (p === 'product' || p === 'vendor_dlkm')
      await buildErofs(root(p), images[p], await erofsMeta(root(p), mountPoint, own(p)), {
        uuid,
        epoch: SAMPLE_EPOCH,
      });
    else
      await createExt4(root(p), images[p], {
        uuid,
        volumeName: p === 'system' ? '/' : p,
        epoch: SAMPLE_EPOCH,
        mountPoint,
        fsConfig: p === 'system' ? SYSTEM_FS_CONFIG : p === 'vendor' ? VENDOR_FS_CONFIG : [],
        fileContexts: own(p),
        shrink: true,
      });
  }
  await rm(work, { recursive: true, force: true });
  return { dir: outDir, images, certs, apps: TESTKEYS_APPS, extras };
}

/**
 * What the build reads of an APEX to refuse it: a zip with apex_manifest.pb, apex_pubkey (AVB
 * public key blob) and apex_payload.img (stored, 4 KiB aligned, as apexer writes it), whose
 * container is signed with `container` (here the platform test key, as an AOSP APEX without a
 * certificate of its own gets). The payload is a stand-in filesystem: the build never mounts it.
 */
async function testKeyApex(dest: string, container: SigningKey, work: string): Promise<void> {
  const dir = join(work, 'apex');
  await mkdir(dir, { recursive: true });
  const avbKey = join(dir, 'payload.pem');
  await generateAvbKey(avbKey, 2048);
  const pubkey = encodeAvbPublicKey(createPrivateKey(await readFile(avbKey)));
  // apex_manifest.proto: name (1) = "com.android.tzdata", version (2) = 340090000.
  const name = Buffer.from('com.android.tzdata');
  const version = [];
  for (let v = 340090000; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      version.push(v);
      break;
    }
    version.push((v % 128) | 0x80);
  }
  const manifest = Buffer.concat([Buffer.from([0x0a, name.length]), name, Buffer.from([0x10, ...version])]);
  const unsigned = join(dir, 'unsigned.apex');
  await buildApk(
    { package: 'com.android.tzdata', versionCode: 340090000, minSdk: 29, targetSdk: 34 },
    null,
    unsigned,
  );
  await writeFile(join(dir, 'apex_manifest.pb'), manifest);
  await writeFile(join(dir, 'apex_pubkey'), pubkey);
  await writeFile(join(dir, 'apex_payload.img'), Buffer.alloc(64 * 1024));
  await execa('aapt', ['add', '-0', '', unsigned, 'apex_manifest.pb', 'apex_pubkey', 'apex_payload.img'], {
    cwd: dir,
  });
  const aligned = join(dir, 'aligned.apex');
  await execa('zipalign', ['-f', '4096', unsigned, aligned]);
  await mkdir(dirname(dest), { recursive: true });
  await signApk(aligned, dest, { key: container, v1: false, v2: true, v3: false });
}
