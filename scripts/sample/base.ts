/**
 * The sample base: a small but realistic GSI-like Android base built from scratch on this machine,
 * used by `npm start`, the tests and the bench. system.img (ext4, system-as-root), product.img
 * (erofs), vendor.img (ext4), carrying Google apps (by package, in innocently named folders, and
 * one only identifiable by its signer), their permission/sysconfig/default-permission/
 * preferred-apps XMLs, the maps library, Google props, an OEM app with tracker SDK classes, one
 * app signed with a stand-in of the AOSP test key, AOSP apps that must stay, SELinux labels from
 * the images' own file_contexts and file capabilities.
 *
 * Reproducible: the same keys and options give byte-identical images (fixed UUIDs, hash seeds,
 * timestamps; APKs built with fixed mtimes and deterministic RSA signatures).
 *
 * Keys are stand-ins made with openssl on first use (kept outside the repo): Google's release key
 * and the AOSP test key cannot be used here (the test key's private half is public in AOSP, but is
 * not shipped by any Debian package and this machine has no other source), so `test-key-stand-in`
 * carries the AOSP test key's subject, and removal by signer is data-driven (the digest set is
 * returned as `googleSigners` for the plan to use).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { buildApex } from '../apexgen/index.ts';
import { buildApk, generateSigningKey, type SigningKey, signApk } from '../apkgen/index.ts';
import { addHashtreeFooter, generateAvbKey, makeVbmetaImage } from '../formats/avb/index.ts';
import { formatAndroidInfo, writeFastbootZip } from '../formats/factory-zip.ts';
import { buildSuper, expandAbLayout } from '../formats/super/index.ts';
import { buildErofs, erofsMeta } from '../fs/erofs.ts';
import { createExt4 } from '../fs/ext4.ts';
import { FileContexts } from '../fs/selinux.ts';
import { FRAMEWORK_RES, requireFile } from '../host/tools.ts';
import { certSha256, omieHome } from '../keys/store.ts';
import type { ProgressFn } from '../progress.ts';
import {
  fakeElf,
  gpsConf,
  platFileContexts,
  productBuildProp,
  productFileContexts,
  productXmls,
  propDefault,
  SAMPLE_APEXES,
  SAMPLE_APPS,
  type SampleApex,
  type SampleApp,
  type SampleSigner,
  SYSTEM_FS_CONFIG,
  systemBuildProp,
  systemXmls,
  VENDOR_FS_CONFIG,
  vendorBuildProp,
  vendorFileContexts,
} from './base-content.ts';

export {
  SAMPLE_APEXES,
  SAMPLE_APPS,
  type SampleApex,
  type SampleApp,
  type SampleSigner,
} from './base-content.ts';

/** Fixed build time of the sample (2024-02-05, the props' ro.build.date.utc). */
export const SAMPLE_EPOCH = 1707134400;

const UUIDS = {
  system: '5a6d2c1e-0000-4000-8000-000000000001',
  product: '5a6d2c1e-0000-4000-8000-000000000002',
  vendor: '5a6d2c1e-0000-4000-8000-000000000003',
};

export const KEY_SUBJECTS: Record<SampleSigner, { name: string; subject: string }> = {
  google: {
    name: 'google-release-stand-in',
    subject: '/C=US/ST=California/L=Mountain View/O=Google Inc./OU=Android/CN=Android',
  },
  oem: { name: 'oem-release', subject: '/C=US/O=Sample OEM/CN=OEM release' },
  platform: {
    name: 'platform-stand-in',
    subject: '/C=US/ST=California/L=Mountain View/O=Android/OU=Android/CN=Android Platform',
  },
  testkey: {
    name: 'test-key-stand-in',
    subject:
      '/C=US/ST=California/L=Mountain View/O=Android/OU=Android/CN=Android/emailAddress=android@android.com',
  },
};

/**
 * The stand-in signers of the sample bases, made in `keysDir` on first use (kept after): each
 * key and its certificate's SHA-256, which the bases record so the checks know who is who.
 */
export async function sampleSigningKeys(keysDir: string): Promise<{
  keys: Record<SampleSigner, SigningKey>;
  signers: Record<SampleSigner, string>;
}> {
  const keys = {} as Record<SampleSigner, SigningKey>;
  const signers = {} as Record<SampleSigner, string>;
  for (const s of Object.keys(KEY_SUBJECTS) as SampleSigner[]) {
    keys[s] = await generateSigningKey(keysDir, KEY_SUBJECTS[s].name, { subject: KEY_SUBJECTS[s].subject });
    signers[s] = await certSha256(keys[s].certPem);
  }
  return { keys, signers };
}

export interface SampleBaseOptions {
  /** Output folder: system.img, product.img, vendor.img (+ vbmeta.img, super.img, factory zip when available). */
  outDir: string;
  /** Where the stand-in signing keys live (created on first use). Default: $OMIE_HOME/keys/sample-base. */
  keysDir?: string;
  /** Cache of built APKs keyed by spec + signer (same inputs give the same bytes, so reuse is exact). */
  apkCacheDir?: string;
  /** Pad the system image with incompressible data so the whole base is about this many MiB (bench). */
  sizeMiB?: number;
  onProgress?: ProgressFn;
}

export interface SampleBaseApp extends SampleApp {
  /** Path of the APK inside its partition image. */
  imagePath: string;
  sha256: string;
  signerSha256: string;
}

export interface SampleBaseApex extends SampleApex {
  /** Path of the APEX inside its partition image. */
  imagePath: string;
  /** The container's package (what PackageManager lists). */
  package: string;
  sha256: string;
  signerSha256: string;
}

export interface SampleBase {
  dir: string;
  /** Raw partition images without AVB footers (the build adds its own). */
  images: { system: string; product: string; vendor: string };
  /** vbmeta.img signed with the sample OEM AVB key. */
  vbmeta: string;
  /** Sparse super.img: A/B layout, system/product/vendor in slot a. */
  superImg: string;
  /** Fastboot-flashable zip (android-info.txt + vbmeta, system, product, vendor). */
  factoryZip: string;
  /** Signer certificate SHA-256 per sample key. */
  signers: Record<SampleSigner, string>;
  /** Digests to treat as "Google's release certificate" when planning removals on this base. */
  googleSigners: string[];
  apps: SampleBaseApp[];
  apexes: SampleBaseApex[];
  /** Written as sample-base.json next to the images. */
  manifestPath: string;
}

export function defaultSampleKeysDir(): string {
  return join(omieHome(), 'keys', 'sample-base');
}

/** Builds the sample base into opts.outDir and returns what it holds. */
export async function generateSampleBase(opts: SampleBaseOptions): Promise<SampleBase> {
  const outDir = resolve(opts.outDir);
  const keysDir = opts.keysDir ?? defaultSampleKeysDir();
  const fw = requireFile(FRAMEWORK_RES);
  const progress = opts.onProgress;
  await mkdir(outDir, { recursive: true });
  const work = join(outDir, '.work');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });

  const { keys, signers } = await sampleSigningKeys(keysDir);

  // Trees on the host, one per partition image.
  const roots = {
    system: join(work, 'system'),
    product: join(work, 'product'),
    vendor: join(work, 'vendor'),
  };
  const put = async (root: string, path: string, content: string | Buffer) => {
    const p = join(root, path);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content);
  };

  // --- APKs
  const apps: SampleBaseApp[] = [];
  let done = 0;
  const queue = [...SAMPLE_APPS];
  const buildOne = async (app: SampleApp) => {
    const sub = app.privileged ? 'priv-app' : 'app';
    const inImage =
      app.partition === 'system'
        ? `/system/${sub}/${app.dir}/${app.dir}.apk`
        : `/${sub}/${app.dir}/${app.dir}.apk`;
    const dest = join(roots[app.partition], inImage);
    await mkdir(dirname(dest), { recursive: true });
    await buildCachedApk(app, keys[app.signer], signers[app.signer], dest, opts.apkCacheDir);
    apps.push({
      ...app,
      imagePath: inImage,
      sha256: createHash('sha256')
        .update(await readFile(dest))
        .digest('hex'),
      signerSha256: signers[app.signer],
    });
    progress?.({ stage: 'sample apks', done: ++done, total: SAMPLE_APPS.length, unit: 'items' });
  };
  await Promise.all(
    [0, 1].map(async () => {
      for (let a = queue.shift(); a; a = queue.shift()) await buildOne(a);
    }),
  );
  apps.sort((a, b) => (a.partition + a.imagePath < b.partition + b.imagePath ? -1 : 1));

  // --- APEXes: container and payload signed by the signer's stand-in keys.
  const apexes: SampleBaseApex[] = [];
  for (const x of SAMPLE_APEXES) {
    const imagePath = `/system/apex/${x.file}`;
    const dest = join(roots[x.partition], imagePath);
    await mkdir(dirname(dest), { recursive: true });
    const payloadKey = join(keysDir, `${x.signer}-apex-payload.pem`);
    if (!existsSync(payloadKey)) await generateAvbKey(payloadKey, 4096);
    await buildApex(x.spec, { payloadKey, containerKey: keys[x.signer] }, dest);
    apexes.push({
      ...x,
      imagePath,
      package: x.spec.packageName ?? x.spec.name,
      sha256: createHash('sha256')
        .update(await readFile(dest))
        .digest('hex'),
      signerSha256: signers[x.signer],
    });
  }

  // --- system (system-as-root)
  const sys = roots.system;
  for (const d of [
    'acct',
    'apex',
    'config',
    'data',
    'debug_ramdisk',
    'dev',
    'mnt',
    'odm',
    'oem',
    'proc',
    'product',
    'sys',
    'vendor',
    'storage',
  ])
    await mkdir(join(sys, d), { recursive: true });
  await symlink('/system/etc', join(sys, 'etc'));
  await symlink('/system/bin', join(sys, 'bin'));
  await symlink('/storage/self/primary', join(sys, 'sdcard'));
  await symlink('/system/bin/init', join(sys, 'init'));
  await put(sys, '/system/build.prop', systemBuildProp());
  await put(sys, '/system/etc/prop.default', propDefault());
  await put(sys, '/system/etc/selinux/plat_file_contexts', platFileContexts());
  for (const f of systemXmls()) await put(sys, f.path, f.content);
  await mkdir(join(sys, 'system/framework'), { recursive: true });
  // A real base's framework-res is signed with its platform key (other platform apps share it).
  await signApk(fw, join(sys, 'system/framework/framework-res.apk'), {
    key: keys.platform,
    v1: true,
    v2: true,
    v3: false,
  });
  await put(sys, '/system/framework/com.google.android.maps.jar', fakeJar('com.google.android.maps'));
  await put(sys, '/system/framework/android.test.base.jar', fakeJar('android.test.base'));
  for (const b of ['init', 'logd', 'run-as', 'surfaceflinger', 'toybox', 'sh', 'app_process64', 'linker64'])
    await put(sys, `/system/bin/${b}`, fakeElf(b));
  await symlink('toybox', join(sys, 'system/bin/ls'));
  await put(sys, '/system/lib64/libc.so', fakeElf('libc.so'));
  await put(
    sys,
    '/system/etc/security/cacerts/a1b2c3d4.0',
    '-----BEGIN CERTIFICATE-----\nsample\n-----END CERTIFICATE-----\n',
  );
  const pad = await padding(opts.sizeMiB, apps, fw);
  if (pad > 0) await writePadding(join(sys, 'system/usr/share/omie-sample/padding.bin'), pad);

  // --- product (erofs, mounted at /product)
  const prod = roots.product;
  await put(prod, '/build.prop', productBuildProp());
  await put(prod, '/etc/selinux/product_file_contexts', productFileContexts());
  for (const f of productXmls()) await put(prod, f.path, f.content);
  await put(prod, '/bin/omie_sample_daemon', fakeElf('omie_sample_daemon'));

  // --- vendor (ext4, mounted at /vendor)
  const ven = roots.vendor;
  await put(ven, '/build.prop', vendorBuildProp());
  await put(ven, '/etc/gps.conf', gpsConf());
  await put(ven, '/etc/selinux/vendor_file_contexts', vendorFileContexts());
  await put(ven, '/bin/hw/android.hardware.gnss-service.sample', fakeElf('gnss'));
  await put(ven, '/bin/hw/android.hardware.graphics.composer@2.4-service.sample', fakeElf('hwc'));
  await put(ven, '/bin/toybox_vendor', fakeElf('toybox_vendor'));

  // --- images
  const plat = FileContexts.parse(platFileContexts(), 'plat_file_contexts');
  const images = {
    system: join(outDir, 'system.img'),
    product: join(outDir, 'product.img'),
    vendor: join(outDir, 'vendor.img'),
  };
  progress?.({ stage: 'sample images', done: 0, total: 3, unit: 'items' });
  await createExt4(sys, images.system, {
    uuid: UUIDS.system,
    volumeName: '/',
    epoch: SAMPLE_EPOCH,
    mountPoint: '/',
    fsConfig: SYSTEM_FS_CONFIG,
    fileContexts: plat,
    shrink: true,
  });
  progress?.({ stage: 'sample images', done: 1, total: 3, unit: 'items' });
  await createExt4(ven, images.vendor, {
    uuid: UUIDS.vendor,
    volumeName: 'vendor',
    epoch: SAMPLE_EPOCH,
    mountPoint: '/vendor',
    fsConfig: VENDOR_FS_CONFIG,
    fileContexts: FileContexts.concat(plat, FileContexts.parse(vendorFileContexts(), 'vendor_file_contexts')),
    shrink: true,
  });
  progress?.({ stage: 'sample images', done: 2, total: 3, unit: 'items' });
  const prodContexts = FileContexts.concat(
    plat,
    FileContexts.parse(productFileContexts(), 'product_file_contexts'),
  );
  await buildErofs(
    prod,
    images.product,
    await erofsMeta(prod, '/product', prodContexts, [{ path: '/bin/*', mode: 0o755, gid: 2000 }]),
    {
      uuid: UUIDS.product,
      epoch: SAMPLE_EPOCH,
      compress: true,
    },
  );
  progress?.({ stage: 'sample images', done: 3, total: 3, unit: 'items' });

  // --- packagings: vbmeta (OEM AVB key), super (A/B, sparse), fastboot/factory zip.
  const vbmeta = join(outDir, 'vbmeta.img');
  await makeSampleVbmeta(images, vbmeta, join(keysDir, 'oem-avb.pem'), work);
  progress?.({ stage: 'sample packaging', done: 1, total: 3, unit: 'items' });
  const superImg = join(outDir, 'super.img');
  const superSize = await sampleSuperSize(images);
  await buildSuper(
    expandAbLayout({
      blockDevices: [{ name: 'super', size: superSize, alignment: 1024 * 1024 }],
      groups: [{ name: 'google_dynamic_partitions', maxSize: superSize / 2 - 4 * 1024 * 1024 }],
      partitions: (['system', 'product', 'vendor'] as const).map((name) => ({
        name,
        group: 'google_dynamic_partitions',
        imagePath: images[name],
        readonly: true,
      })),
      metadataSlots: 3,
      metadataMaxSize: 65536,
    }),
    superImg,
    { sparse: true },
  );
  progress?.({ stage: 'sample packaging', done: 2, total: 3, unit: 'items' });
  const factoryZip = join(outDir, 'factory.zip');
  await writeFastbootZip(factoryZip, {
    androidInfo: formatAndroidInfo({ board: 'omie_tablet' }),
    images: [
      { name: 'vbmeta', path: vbmeta },
      { name: 'system', path: images.system },
      { name: 'product', path: images.product },
      { name: 'vendor', path: images.vendor },
    ],
  });
  progress?.({ stage: 'sample packaging', done: 3, total: 3, unit: 'items' });
  await rm(work, { recursive: true, force: true });

  const googleSigners = [signers.google];
  const manifestPath = join(outDir, 'sample-base.json');
  const result: SampleBase = {
    dir: outDir,
    images,
    vbmeta,
    superImg,
    factoryZip,
    signers,
    googleSigners,
    apps,
    apexes,
    manifestPath,
  };
  const rel = (p: string) => p.slice(outDir.length + 1);
  const manifest = {
    schema: 'omie.sample-base/1',
    images: { system: rel(images.system), product: rel(images.product), vendor: rel(images.vendor) },
    vbmeta: rel(vbmeta),
    superImg: rel(superImg),
    factoryZip: rel(factoryZip),
    signers,
    googleSigners,
    apps,
    apexes,
  };
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  return result;
}

/**
 * Size of the sample super block device: room for both slots of the three images plus metadata,
 * in 64 MiB steps (small, so that writing and sparsing it stays quick; the build rebuilds super
 * to the device profile's layout anyway).
 */
async function sampleSuperSize(images: SampleBase['images']): Promise<number> {
  const { stat } = await import('node:fs/promises');
  let sum = 0;
  for (const p of Object.values(images)) sum += Math.ceil((await stat(p)).size / (1024 * 1024)) * 1024 * 1024;
  const step = 64 * 1024 * 1024;
  return Math.ceil((2 * (sum + 8 * 1024 * 1024)) / step) * step;
}

/**
 * vbmeta.img as the OEM would ship it: hashtree descriptors of system/product/vendor, signed with
 * the OEM's AVB key (RSA-4096, made on first use). The descriptors are computed on footered
 * copies so the plain images stay footer-free for editing.
 */
async function makeSampleVbmeta(
  images: SampleBase['images'],
  out: string,
  keyPem: string,
  work: string,
): Promise<void> {
  if (!existsSync(keyPem)) await generateAvbKey(keyPem, 4096);
  const copies: string[] = [];
  for (const name of ['system', 'product', 'vendor'] as const) {
    const copy = join(work, `${name}.avb.img`);
    await copyFile(images[name], copy);
    await addHashtreeFooter(copy, {
      partitionName: name,
      hashAlgorithm: 'sha256',
      salt: createHash('sha256').update(`omie-sample-salt:${name}`).digest('hex'),
      algorithm: 'NONE',
    });
    copies.push(copy);
  }
  await makeVbmetaImage(out, {
    algorithm: 'SHA256_RSA4096',
    key: keyPem,
    rollbackIndex: 0,
    includeDescriptorsFromImages: copies,
    paddingSize: 4096,
  });
  for (const c of copies) await rm(c, { force: true });
}

/** Builds an APK, or copies it from the cache when the same spec was built with the same key. */
async function buildCachedApk(
  app: SampleApp,
  key: SigningKey,
  signer: string,
  dest: string,
  cacheDir?: string,
): Promise<void> {
  const id = createHash('sha256')
    .update(JSON.stringify({ spec: app.spec, signer, v: 1 }))
    .digest('hex')
    .slice(0, 32);
  const cached = cacheDir ? join(cacheDir, `${app.spec.package}-${id}.apk`) : null;
  if (cached && existsSync(cached)) {
    await copyFile(cached, dest);
    return;
  }
  await buildApk(
    { ...app.spec, classes: [...(app.spec.classes ?? [])] },
    { key, v1: true, v2: true, v3: false },
    dest,
  );
  if (cached) {
    await mkdir(dirname(cached), { recursive: true });
    await copyFile(dest, `${cached}.tmp`);
    await rename(`${cached}.tmp`, cached);
  }
}

/** A tiny but valid (empty-ish) jar: a zip with a manifest, built deterministically by hand. */
export function fakeJar(name: string): Buffer {
  const data = Buffer.from(`Manifest-Version: 1.0\nCreated-By: omie-sample (${name})\n\n`);
  const fname = Buffer.from('META-INF/MANIFEST.MF');
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(10, 4);
  local.writeUInt16LE(0x0021, 10); // DOS time 00:01:02
  local.writeUInt16LE(0x2821, 12); // DOS date 2000-01-01
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(fname.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(10, 6);
  central.writeUInt16LE(0x0021, 12);
  central.writeUInt16LE(0x2821, 14);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(fname.length, 28);
  const cdOffset = local.length + fname.length + data.length;
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(1, 8);
  eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(central.length + fname.length, 12);
  eocd.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, fname, data, central, fname, eocd]);
}

function crc32(b: Buffer): number {
  let c = ~0 >>> 0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

/** Bytes of padding needed for the base to reach sizeMiB (0 when not asked or already larger). */
async function padding(sizeMiB: number | undefined, apps: SampleBaseApp[], fw: string): Promise<number> {
  if (!sizeMiB) return 0;
  const { size } = await import('node:fs/promises').then((m) => m.stat(fw));
  const current = size + apps.length * 32 * 1024 + 4 * 1024 * 1024;
  return Math.max(0, sizeMiB * 1024 * 1024 - current);
}

/** Incompressible, deterministic bytes (AES-128-CTR keystream over zeros), written in 1 MiB chunks. */
async function writePadding(path: string, bytes: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 0x5a), Buffer.alloc(16, 0));
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'w');
  try {
    const zero = Buffer.alloc(1 << 20);
    for (let left = bytes; left > 0; left -= zero.length) {
      const n = Math.min(left, zero.length);
      await fh.write(cipher.update(zero.subarray(0, n)));
    }
  } finally {
    await fh.close();
  }
}
