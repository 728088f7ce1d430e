/**
 * A Pixel/GSI-shaped base, for testing the build and the checker on what partners really ship
 * (the default sample base stays small and its bytes are pinned by other tests):
 *
 * - logical partitions system (ext4, system-as-root), system_ext (ext4), product (erofs, lz4hc),
 *   vendor (ext4), odm (ext4), vendor_dlkm (erofs); the non-system ones are non-SAR with their
 *   build.prop where AOSP puts it (`/etc/build.prop`; vendor's at `/build.prop`);
 * - Google apps in system_ext/priv-app, product/app, product/priv-app and product/overlay besides
 *   system, privapp-permissions in system_ext/etc/permissions and product/etc/permissions, an
 *   app signed with the (stand-in) AOSP test key in system_ext, real APEX (ext4) and CAPEX
 *   (erofs) modules in /system/apex;
 * - vendor ext4 with the shared_blocks feature and one really shared block (e2fsdroid -s);
 * - every logical image carries its own hashtree footer (algorithm NONE), as in a factory zip;
 * - boot/init_boot/vendor_boot/dtbo with hash footers whose descriptors are in vbmeta.img, and
 *   vbmeta.img chaining to vbmeta_system.img (own key, rollback index location 1) which holds the
 *   hashtree descriptors of system/system_ext/product, like Pixel builds
 *   (BOARD_AVB_VBMETA_SYSTEM := system system_ext product);
 * - packagings: the images folder, a fastboot zip with super_empty.img (two groups, A/B) and the
 *   separate logical images, and a sparse super.img.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import type { ApexSpec } from '../apexgen/index.ts';
import { buildApex } from '../apexgen/index.ts';
import type { ApkSpec } from '../apkgen/index.ts';
import { buildApk, signApk } from '../apkgen/index.ts';
import { addHashFooter, addHashtreeFooter, generateAvbKey, makeVbmetaImage } from '../formats/avb/index.ts';
import { formatAndroidInfo, writeFastbootZip } from '../formats/factory-zip.ts';
import { buildSuper, buildSuperEmpty, expandAbLayout, type SuperLayout } from '../formats/super/index.ts';
import { buildErofs, erofsMeta } from '../fs/erofs.ts';
import { createExt4 } from '../fs/ext4.ts';
import { FileContexts } from '../fs/selinux.ts';
import { FRAMEWORK_RES, requireFile } from '../host/tools.ts';
import { defaultSampleKeysDir, fakeJar, SAMPLE_EPOCH, sampleSigningKeys } from './base.ts';
import {
  fakeElf,
  gpsConf,
  platFileContexts,
  propDefault,
  type SampleSigner,
  SYSTEM_FS_CONFIG,
  systemBuildProp,
  systemXmls,
  VENDOR_FS_CONFIG,
  vendorBuildProp,
  vendorFileContexts,
} from './base-content.ts';

export const REALISTIC_LOGICAL = ['system', 'system_ext', 'product', 'vendor', 'odm', 'vendor_dlkm'] as const;
export const REALISTIC_BOOT = ['boot', 'init_boot', 'vendor_boot', 'dtbo'] as const;
/** Physical sizes of the hash-footered partitions (small, so tests stay quick). */
export const REALISTIC_BOOT_SIZES: Record<(typeof REALISTIC_BOOT)[number], number> = {
  boot: 8 * 1024 * 1024,
  init_boot: 8 * 1024 * 1024,
  vendor_boot: 8 * 1024 * 1024,
  dtbo: 1024 * 1024,
};
/** Partitions whose descriptors vbmeta_system.img holds (Pixel's BOARD_AVB_VBMETA_SYSTEM). */
export const REALISTIC_VBMETA_SYSTEM = ['system', 'system_ext', 'product'] as const;
export const REALISTIC_GROUPS = {
  google_system_dynamic_partitions: ['system', 'system_ext', 'product'],
  google_vendor_dynamic_partitions: ['vendor', 'odm', 'vendor_dlkm'],
} as const;

/** Rollback indexes of the base's vbmeta (location 0) and vbmeta_system (location 1). */
export const REALISTIC_ROLLBACK = { vbmeta: 1, vbmetaSystem: 1709251200 } as const;

type Logical = (typeof REALISTIC_LOGICAL)[number];

interface RealisticApp {
  partition: Logical;
  /** Path inside the partition image. */
  path: string;
  signer: SampleSigner;
  spec: ApkSpec;
  expect: 'removed' | 'kept';
}

const app = (pkg: string, label: string): ApkSpec => ({
  package: pkg,
  label,
  versionCode: 34,
  versionName: '14',
  minSdk: 30,
  targetSdk: 34,
});

export const REALISTIC_APPS: RealisticApp[] = [
  {
    partition: 'system',
    path: '/system/priv-app/Settings/Settings.apk',
    signer: 'platform',
    spec: app('com.android.settings', 'Settings'),
    expect: 'kept',
  },
  {
    partition: 'system_ext',
    path: '/priv-app/GoogleServicesFramework/GoogleServicesFramework.apk',
    signer: 'google',
    spec: app('com.google.android.gsf', 'Google Services Framework'),
    expect: 'removed',
  },
  {
    partition: 'system_ext',
    path: '/priv-app/Launcher3QuickStep/Launcher3QuickStep.apk',
    signer: 'testkey',
    spec: app('com.android.launcher3', 'Launcher'),
    expect: 'kept',
  },
  {
    partition: 'product',
    path: '/app/Maps/Maps.apk',
    signer: 'google',
    spec: app('com.google.android.apps.maps', 'Maps'),
    expect: 'removed',
  },
  {
    partition: 'product',
    path: '/priv-app/Velvet/Velvet.apk',
    signer: 'google',
    spec: app('com.google.android.googlequicksearchbox', 'Google'),
    expect: 'removed',
  },
  {
    partition: 'product',
    path: '/app/DeskClock/DeskClock.apk',
    signer: 'platform',
    spec: app('com.android.deskclock', 'Clock'),
    expect: 'kept',
  },
  {
    partition: 'product',
    path: '/overlay/GoogleConfigOverlay.apk',
    signer: 'google',
    spec: app('com.google.android.overlay.gmsconfig', 'GMS config'),
    expect: 'removed',
  },
  {
    partition: 'vendor',
    path: '/overlay/FrameworksResVendor.apk',
    signer: 'oem',
    spec: app('com.oem.frameworkres.overlay', 'Vendor framework overlay'),
    expect: 'kept',
  },
  {
    partition: 'odm',
    path: '/app/OdmCameraTuning/OdmCameraTuning.apk',
    signer: 'oem',
    spec: app('com.oem.cameratuning', 'Camera tuning'),
    expect: 'kept',
  },
];

/** APEX files of /system/apex and their content. */
export const REALISTIC_APEXES: Array<[string, ApexSpec]> = [
  [
    'com.android.tzdata.apex',
    { name: 'com.android.tzdata', version: 340090000, files: { 'etc/tz/tzdata': 'tzdata2024a (sample)\n' } },
  ],
  [
    'com.android.art.capex',
    {
      name: 'com.android.art',
      version: 340090000,
      payloadFs: 'erofs',
      files: { 'bin/dalvikvm': 'ELF (sample)\n' },
      jars: [{ path: 'javalib/core-oj.jar', classes: ['java.lang.Object2', 'libcore.util.Sample'] }],
    },
  ],
];

const HEADER = '<?xml version="1.0" encoding="utf-8"?>\n';
const privapp = (pkg: string, perms: string[]) =>
  `    <privapp-permissions package="${pkg}">\n${perms.map((p) => `        <permission name="${p}"/>\n`).join('')}    </privapp-permissions>\n`;

const FINGERPRINT = 'google/omie_tablet/tablet:14/AP1A.240305.019/11349012:user/release-keys';

function partitionProps(partition: string): string {
  return `# begin common build properties
ro.${partition}.build.date.utc=${SAMPLE_EPOCH}
ro.${partition}.build.fingerprint=${FINGERPRINT}
ro.${partition}.build.id=AP1A.240305.019
ro.${partition}.build.tags=release-keys
ro.${partition}.build.type=user
ro.${partition}.build.version.sdk=34
ro.product.${partition}.brand=google
ro.product.${partition}.device=tablet
ro.product.${partition}.manufacturer=Google
ro.product.${partition}.model=Pixel Tablet
ro.product.${partition}.name=omie_tablet
# end common build properties
`;
}

export function contextsFor(partition: string, extra = ''): string {
  return `# ${partition}_file_contexts
/(${partition}|system/${partition})(/.*)?	u:object_r:system_file:s0
/(${partition}|system/${partition})/etc/selinux/${partition}_file_contexts	u:object_r:file_contexts_file:s0
${extra}`;
}

/**
 * The SELinux labels of one partition's files as the build reads them: the platform's contexts,
 * with the partition's own after them (system and vendor_dlkm have only the platform's).
 */
export function partitionFileContexts(partition: string): FileContexts {
  const plat = FileContexts.parse(platFileContexts(), 'plat_file_contexts');
  if (partition === 'system' || partition === 'vendor_dlkm') return plat;
  const own = partition === 'vendor' ? vendorFileContexts() : contextsFor(partition);
  return FileContexts.concat(plat, FileContexts.parse(own, `${partition}_file_contexts`));
}

/** Files per partition (paths inside the partition image). */
function partitionFiles(): Record<Logical, Array<{ path: string; content: string | Buffer }>> {
  return {
    system: [
      { path: '/system/build.prop', content: systemBuildProp() },
      { path: '/system/etc/prop.default', content: propDefault() },
      { path: '/system/etc/selinux/plat_file_contexts', content: platFileContexts() },
      ...systemXmls(),
      { path: '/system/framework/com.google.android.maps.jar', content: fakeJar('com.google.android.maps') },
      ...['init', 'logd', 'run-as', 'surfaceflinger', 'toybox', 'sh', 'app_process64', 'linker64'].map(
        (b) => ({
          path: `/system/bin/${b}`,
          content: fakeElf(b),
        }),
      ),
      { path: '/system/lib64/libc.so', content: fakeElf('libc.so') },
    ],
    system_ext: [
      { path: '/etc/build.prop', content: partitionProps('system_ext') },
      { path: '/etc/selinux/system_ext_file_contexts', content: contextsFor('system_ext') },
      {
        path: '/etc/permissions/privapp-permissions-google-se.xml',
        content: `${HEADER}<permissions>\n${privapp('com.google.android.gsf', ['android.permission.WRITE_SECURE_SETTINGS'])}</permissions>\n`,
      },
      {
        path: '/etc/permissions/com.android.launcher3.xml',
        content: `${HEADER}<permissions>\n${privapp('com.android.launcher3', ['android.permission.BIND_APPWIDGET'])}</permissions>\n`,
      },
    ],
    product: [
      {
        path: '/etc/build.prop',
        content: `${partitionProps('product')}ro.com.google.gmsversion=14_202402\n`,
      },
      { path: '/etc/selinux/product_file_contexts', content: contextsFor('product') },
      {
        path: '/etc/permissions/privapp-permissions-google-p.xml',
        content: `${HEADER}<permissions>\n${privapp('com.google.android.googlequicksearchbox', ['android.permission.MODIFY_AUDIO_ROUTING'])}</permissions>\n`,
      },
      {
        path: '/etc/sysconfig/google.xml',
        content: `${HEADER}<config>\n    <allow-in-power-save package="com.google.android.gms" />\n</config>\n`,
      },
    ],
    vendor: [
      { path: '/build.prop', content: vendorBuildProp() },
      { path: '/etc/gps.conf', content: gpsConf() },
      { path: '/etc/selinux/vendor_file_contexts', content: vendorFileContexts() },
      { path: '/bin/hw/android.hardware.gnss-service.sample', content: fakeElf('gnss') },
      { path: '/bin/toybox_vendor', content: fakeElf('toybox_vendor') },
      // Identical files whose data block is shared (see shareBlocks).
      { path: '/etc/init/dedupe-a.rc', content: DEDUPED },
      { path: '/etc/init/dedupe-b.rc', content: DEDUPED },
    ],
    odm: [
      { path: '/etc/build.prop', content: partitionProps('odm') },
      { path: '/etc/selinux/odm_file_contexts', content: contextsFor('odm') },
      { path: '/lib64/libcamtuning.so', content: fakeElf('libcamtuning.so') },
    ],
    vendor_dlkm: [
      { path: '/etc/build.prop', content: partitionProps('vendor_dlkm') },
      { path: '/lib/modules/wlan.ko', content: fakeElf('wlan.ko') },
      { path: '/lib/modules/modules.load', content: 'wlan.ko\n' },
    ],
  };
}

export interface RealisticBase {
  dir: string;
  /** Partition name → image in `dir` (logical images with hashtree footers, boot ones with hash footers). */
  images: Record<string, string>;
  vbmeta: string;
  vbmetaSystem: string;
  /** Fastboot zip: android-info.txt, boot images, vbmeta*, super_empty.img and the logical images. */
  factoryZip: string;
  /** Sparse super.img, A/B, two groups, logical images in slot a. */
  superImg: string;
  /** AVB keys: vbmeta.img's, and vbmeta_system.img's. */
  avbKeys: { vbmeta: string; system: string };
  signers: Record<SampleSigner, string>;
  apps: Array<RealisticApp & { signerSha256: string }>;
}

/** Builds the realistic base into outDir (images + sample-base.json naming its stand-in signers). */
export async function generateRealisticBase(opts: {
  outDir: string;
  keysDir?: string;
}): Promise<RealisticBase> {
  const outDir = resolve(opts.outDir);
  const keysDir = opts.keysDir ?? defaultSampleKeysDir();
  const work = join(outDir, '.work');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const { keys, signers } = await sampleSigningKeys(keysDir);
  const put = async (path: string, content: string | Buffer) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  };
  const root = (p: Logical) => join(work, p);
  for (const [part, files] of Object.entries(partitionFiles()) as Array<
    [Logical, Array<{ path: string; content: string | Buffer }>]
  >)
    for (const f of files) await put(join(root(part), f.path), f.content);
  for (const d of ['apex', 'dev', 'odm', 'proc', 'product', 'sys', 'system_ext', 'vendor', 'vendor_dlkm'])
    await mkdir(join(root('system'), d), { recursive: true });
  await signApk(requireFile(FRAMEWORK_RES), join(root('system'), 'system/framework/framework-res.apk'), {
    key: keys.platform,
    v1: true,
    v2: true,
    v3: false,
  });
  for (const a of REALISTIC_APPS) {
    const dest = join(root(a.partition), a.path);
    await mkdir(dirname(dest), { recursive: true });
    await buildApk(a.spec, { key: keys[a.signer], v1: true, v2: true, v3: false }, dest);
  }
  // AOSP modules the OEM built and signed (an ext4 .apex, an erofs .capex with a java library).
  const payloadKey = join(keysDir, 'oem-apex-payload.pem');
  if (!existsSync(payloadKey)) await generateAvbKey(payloadKey, 4096);
  for (const [file, spec] of REALISTIC_APEXES) {
    const dest = join(root('system'), '/system/apex', file);
    await mkdir(dirname(dest), { recursive: true });
    await buildApex(spec, { payloadKey, containerKey: keys.platform }, dest, {
      compressed: file.endsWith('.capex'),
    });
  }

  const own = partitionFileContexts;
  const uuid = (i: number) => `5a6d2c1e-0000-4000-8000-0000000001${String(i).padStart(2, '0')}`;
  const images: Record<string, string> = {};
  for (const [i, p] of REALISTIC_LOGICAL.entries()) {
    images[p] = join(outDir, `${p}.img`);
    const mountPoint = p === 'system' ? '/' : `/${p}`;
    if (p === 'product' || p === 'vendor_dlkm') {
      await buildErofs(root(p), images[p], await erofsMeta(root(p), mountPoint, own(p)), {
        uuid: uuid(i),
        epoch: SAMPLE_EPOCH,
        compress: true,
      });
    } else {
      await createExt4(root(p), images[p], {
        uuid: uuid(i),
        volumeName: p === 'system' ? '/' : p,
        epoch: SAMPLE_EPOCH,
        mountPoint,
        fsConfig: p === 'system' ? SYSTEM_FS_CONFIG : p === 'vendor' ? VENDOR_FS_CONFIG : [],
        fileContexts: own(p),
        shrink: true,
      });
    }
    if (p === 'vendor') await shareBlocks(images[p], '/etc/init/dedupe-a.rc', '/etc/init/dedupe-b.rc');
    // As in a factory zip: each logical image carries its own hashtree footer (unsigned).
    await addHashtreeFooter(images[p], {
      partitionName: p,
      hashAlgorithm: 'sha256',
      salt: createHash('sha256').update(`realistic-salt:${p}`).digest('hex'),
      algorithm: 'NONE',
    });
  }

  for (const p of REALISTIC_BOOT) {
    images[p] = join(outDir, `${p}.img`);
    await bootImage(p, images[p], work);
    await addHashFooter(images[p], {
      partitionName: p,
      partitionSize: REALISTIC_BOOT_SIZES[p],
      salt: createHash('sha256').update(`realistic-salt:${p}`).digest('hex'),
      algorithm: 'NONE',
    });
  }

  const avbKeys = { vbmeta: join(keysDir, 'oem-avb.pem'), system: join(keysDir, 'oem-avb-system.pem') };
  if (!existsSync(avbKeys.vbmeta)) await generateAvbKey(avbKeys.vbmeta, 4096);
  if (!existsSync(avbKeys.system)) await generateAvbKey(avbKeys.system, 2048);
  const vbmetaSystem = join(outDir, 'vbmeta_system.img');
  await makeVbmetaImage(vbmetaSystem, {
    algorithm: 'SHA256_RSA2048',
    key: avbKeys.system,
    // Pixel builds use the security patch date as vbmeta_system's rollback index.
    rollbackIndex: REALISTIC_ROLLBACK.vbmetaSystem,
    rollbackIndexLocation: 1,
    includeDescriptorsFromImages: REALISTIC_VBMETA_SYSTEM.map((p) => images[p]),
    paddingSize: 4096,
  });
  const vbmeta = join(outDir, 'vbmeta.img');
  await makeVbmetaImage(vbmeta, {
    algorithm: 'SHA256_RSA4096',
    key: avbKeys.vbmeta,
    rollbackIndex: REALISTIC_ROLLBACK.vbmeta,
    includeDescriptorsFromImages: [
      ...REALISTIC_BOOT.map((p) => images[p]),
      ...REALISTIC_LOGICAL.filter((p) => !(REALISTIC_VBMETA_SYSTEM as readonly string[]).includes(p)).map(
        (p) => images[p],
      ),
    ],
    chainPartitions: [
      { partitionName: 'vbmeta_system', rollbackIndexLocation: 1, publicKeyPath: avbKeys.system },
    ],
    paddingSize: 4096,
  });
  images.vbmeta = vbmeta;
  images.vbmeta_system = vbmetaSystem;

  const layout = await realisticSuperLayout(images);
  const superImg = join(work, 'super.img');
  await buildSuper(layout, superImg, { sparse: true });
  await rm(superImg, { force: true }); // only checks that the layout fits; the zip carries super_empty
  const superEmpty = join(work, 'super_empty.img');
  await buildSuperEmpty(layout, superEmpty);
  const factoryZip = join(outDir, 'factory.zip');
  await writeFastbootZip(factoryZip, {
    androidInfo: formatAndroidInfo({ board: 'omie_tablet' }),
    images: [
      ...[...REALISTIC_BOOT, 'vbmeta', 'vbmeta_system'].map((name) => ({ name, path: images[name] })),
      { name: 'super_empty', path: superEmpty },
      ...REALISTIC_LOGICAL.map((name) => ({ name, path: images[name] })),
    ],
  });
  await writeFile(join(outDir, 'android-info.txt'), formatAndroidInfo({ board: 'omie_tablet' }));
  const superOut = join(outDir, 'super.img.sparse');
  await buildSuper(layout, superOut, { sparse: true });
  await rm(work, { recursive: true, force: true });

  const apps = REALISTIC_APPS.map((a) => ({ ...a, signerSha256: signers[a.signer] }));
  // The build reads the stand-in signers from here (as for the default sample base).
  await writeFile(
    join(outDir, 'sample-base.json'),
    `${JSON.stringify({ schema: 'omie.sample-base/1', signers, googleSigners: [signers.google], apps }, null, 2)}\n`,
  );
  return {
    dir: outDir,
    images,
    vbmeta,
    vbmetaSystem,
    factoryZip,
    superImg: superOut,
    avbKeys,
    signers,
    apps,
  };
}

async function realisticSuperLayout(images: Record<string, string>): Promise<SuperLayout> {
  const { stat } = await import('node:fs/promises');
  const size = 512 * 1024 * 1024;
  let sum = 0;
  for (const p of REALISTIC_LOGICAL) sum += (await stat(images[p])).size;
  if (sum * 2 > size - 8 * 1024 * 1024) throw new Error('realistic base: super too small');
  return expandAbLayout({
    blockDevices: [{ name: 'super', size, alignment: 1024 * 1024 }],
    groups: Object.keys(REALISTIC_GROUPS).map((name) => ({ name, maxSize: size / 4 })),
    partitions: Object.entries(REALISTIC_GROUPS).flatMap(([group, parts]) =>
      parts.map((name) => ({ name, group, imagePath: images[name], readonly: true })),
    ),
    metadataSlots: 3,
    metadataMaxSize: 65536,
  });
}

const DEDUPED = '# identical in two files: e2fsdroid -s stores its block once\n'.repeat(40);

/**
 * Android's read-only ext4 images dedupe identical blocks (e2fsdroid -s) and set the ro_compat
 * shared_blocks feature. e2fsprogs cannot write such an image, so make one by hand: point the
 * second file's single extent at the first file's block, free its own, set the feature, and let
 * e2fsck fix the free counts (it accepts multiply-claimed blocks when shared_blocks is set).
 */
async function shareBlocks(image: string, a: string, b: string): Promise<void> {
  const extent = async (path: string) => {
    const r = await execa('debugfs', ['-R', `stat ${path}`, image]);
    const m = /EXTENTS:\n\(0\):(\d+)\s*$/.exec(r.stdout);
    if (!m) throw new Error(`realistic base: ${path} is not a one-block file`);
    return Number(m[1]);
  };
  const [blockA, blockB] = [await extent(a), await extent(b)];
  const env = { E2FSPROGS_FAKE_TIME: String(SAMPLE_EPOCH), E2FSCK_TIME: String(SAMPLE_EPOCH) };
  await execa('debugfs', ['-w', '-R', 'feature shared_blocks', image], { env });
  // i_block[5] is ee_start_lo of the first extent (after the 12-byte header and ee_block/ee_len).
  await execa('debugfs', ['-w', '-R', `set_inode_field ${b} block[5] ${blockA}`, image], { env });
  await execa('debugfs', ['-w', '-R', `freeb ${blockB}`, image], { env });
  await execa('e2fsck', ['-fy', image], { reject: false, env });
  await execa('e2fsck', ['-fn', image], { env });
  if ((await extent(b)) !== blockA) throw new Error('realistic base: block sharing did not stick');
}

/** boot (kernel), init_boot (generic ramdisk), vendor_boot (vendor ramdisk), header v3 (Debian's mkbootimg stops there); dtbo. */
async function bootImage(name: (typeof REALISTIC_BOOT)[number], out: string, work: string): Promise<void> {
  const kernel = join(work, 'kernel');
  const ramdisk = join(work, `${name}.ramdisk`);
  await writeFile(kernel, Buffer.concat([Buffer.from('ARMd'), Buffer.alloc(8188, 0x11)]));
  await writeFile(ramdisk, Buffer.from(`070701 ${name} ramdisk stand-in\n`));
  if (name === 'boot')
    await execa('mkbootimg', [
      '--header_version',
      '3',
      '--kernel',
      kernel,
      '--os_version',
      '14.0.0',
      '--os_patch_level',
      '2024-03',
      '--output',
      out,
    ]);
  else if (name === 'init_boot') {
    // An empty kernel: Debian's mkbootimg insists on one, init_boot has none.
    const none = join(work, 'no-kernel');
    await writeFile(none, Buffer.alloc(0));
    await execa('mkbootimg', [
      '--header_version',
      '3',
      '--kernel',
      none,
      '--ramdisk',
      ramdisk,
      '--os_version',
      '14.0.0',
      '--os_patch_level',
      '2024-03',
      '--output',
      out,
    ]);
  } else if (name === 'vendor_boot') {
    const dtb = join(work, 'dtb');
    await writeFile(dtb, Buffer.concat([Buffer.from('d00dfeed', 'hex'), Buffer.alloc(60)]));
    await execa('mkbootimg', [
      '--header_version',
      '3',
      '--dtb',
      dtb,
      '--vendor_ramdisk',
      ramdisk,
      '--vendor_cmdline',
      'console=ttyS0',
      '--vendor_boot',
      out,
    ]);
  } else {
    // DT_TABLE_MAGIC header with no entries (system/libufdt's dt_table.h), big-endian.
    const h = Buffer.alloc(32);
    h.writeUInt32BE(0xd7b7ab1e, 0);
    h.writeUInt32BE(32, 4);
    h.writeUInt32BE(32, 8);
    h.writeUInt32BE(32, 12);
    h.writeUInt32BE(0, 16);
    h.writeUInt32BE(32, 20);
    h.writeUInt32BE(4096, 24);
    await writeFile(out, h);
  }
  await readFile(out); // fails early when the tool wrote nothing
}
