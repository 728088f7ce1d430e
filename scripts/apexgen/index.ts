/**
 * APEX generator: builds real APEX (and compressed .capex) files the way AOSP's apexer and
 * apex_compression_tool do — apex_manifest.pb (protobuf), an ext4 (mke2fs -d) or erofs
 * (mkfs.erofs) payload holding the manifest, APKs and jars, an AVB hashtree footer signed by the
 * payload key (partition name and `apex.key` property = the APEX name, salt = SHA-256 of the
 * manifest), apex_pubkey, an AndroidManifest.xml compiled by aapt, all stored and 4 KiB aligned,
 * signed as an APK by the container key. For the sample bases and the test fixtures; nothing
 * made here is checked in.
 */
import { createHash, createPrivateKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ZipFile } from 'yazl';
import { type ApkSpec, buildApk, type SigningKey, smaliClass } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
import { encodeApexManifest } from '../formats/apex/index.ts';
import { loadApkSigningKey, signApkFile } from '../formats/apk/signing/sign.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import { encodeAvbPublicKey } from '../formats/avb/keys.ts';
import { addHashtreeFooter } from '../formats/avb/sign.ts';
import { writeStoredZip } from '../formats/zip-store.ts';
import { buildErofs, erofsMeta } from '../fs/erofs.ts';
import { createExt4 } from '../fs/ext4.ts';
import { FileContexts } from '../fs/selinux.ts';
import { FRAMEWORK_RES, requireFile, runTool } from '../host/tools.ts';

export interface ApexSpec {
  /** apex_manifest.pb name: the mount point /apex/<name>. */
  name: string;
  /** The container's package (PackageManager's name); default `name`. Google renames it com.google.android.X. */
  packageName?: string;
  version: number;
  versionName?: string;
  /** Payload filesystem; default ext4 (apexer's default). */
  payloadFs?: 'ext4' | 'erofs';
  /** Plain payload files, by path inside the payload (e.g. `etc/tz/tzdata`). */
  files?: Record<string, string | Buffer>;
  /** APKs inside the payload (e.g. `priv-app/PermissionController/PermissionController.apk`). */
  apps?: Array<{ path: string; spec: ApkSpec; key: SigningKey }>;
  /** Java libraries (`javalib/x.jar`): a jar with a classes.dex defining these classes. */
  jars?: Array<{ path: string; classes: string[] }>;
}

export interface ApexSigning {
  /** PEM RSA private key of the payload (AVB); its public blob becomes apex_pubkey. */
  payloadKey: string;
  /** The container key (APK signature). */
  containerKey: SigningKey;
}

/** Fixed time for the payload filesystem and the zip entries (reproducible bytes). */
const APEX_EPOCH = 1230768000; // 2009-01-01, as soong_zip stamps entries
const ZIP_TIME = new Date('2009-01-01T00:00:00Z');
const PAGE = 4096;
/** AOSP's apexer: a fixed UUID (uuid5 of www.android.com), also the ext4 hash seed. */
const APEX_UUID = '7d1522e1-9dfa-5edb-a43e-98e3a4d20250';

/** The container manifest apexer generates (package, versionCode from the manifest, no code). */
function containerManifest(spec: ApexSpec): string {
  return `<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="${spec.packageName ?? spec.name}" android:versionCode="${spec.version}"${spec.versionName ? ` android:versionName="${spec.versionName}"` : ''}>
  <uses-sdk android:minSdkVersion="29" android:targetSdkVersion="34" />
  <!-- APEX does not have classes.dex -->
  <application android:hasCode="false" />
</manifest>
`;
}

async function buildJar(classes: string[], out: string, work: string): Promise<void> {
  const src = await mkdtemp(join(work, 'jar-'));
  for (const [i, c] of classes.entries())
    await writeFile(join(src, `C${i}.smali`), smaliClass(c, 'Ljava/lang/Object;'));
  const dex = join(src, 'classes.dex');
  await runTool('smali', ['assemble', '-o', dex, src]);
  await mkdir(dirname(out), { recursive: true });
  await writeStoredZip(out, [{ name: 'classes.dex', path: dex }], { mtime: ZIP_TIME, mode: 0o100644 });
}

/**
 * Builds the payload image: files + apex_manifest.pb at its root, then the hashtree footer.
 * Returns the hashtree root digest (hex).
 */
async function buildPayload(
  spec: ApexSpec,
  manifest: Buffer,
  payloadKey: string,
  image: string,
  work: string,
): Promise<string> {
  const root = join(work, 'payload');
  await mkdir(root, { recursive: true });
  for (const [p, content] of Object.entries(spec.files ?? {})) {
    await mkdir(dirname(join(root, p)), { recursive: true });
    await writeFile(join(root, p), content);
  }
  for (const a of spec.apps ?? [])
    await buildApk(a.spec, { key: a.key, v1: false, v2: true, v3: false }, join(root, a.path));
  for (const j of spec.jars ?? []) await buildJar(j.classes, join(root, j.path), work);
  await writeFile(join(root, 'apex_manifest.pb'), manifest);
  const mountPoint = `/apex/${spec.name}`;
  const contexts = FileContexts.parse(
    `${mountPoint.replace(/\./g, '\\.')}(/.*)?\tu:object_r:system_file:s0\n`,
    'apex file_contexts',
  );
  if ((spec.payloadFs ?? 'ext4') === 'erofs')
    await buildErofs(root, image, await erofsMeta(root, mountPoint, contexts), {
      uuid: APEX_UUID,
      epoch: APEX_EPOCH,
      compress: true,
    });
  else
    await createExt4(root, image, {
      uuid: APEX_UUID,
      epoch: APEX_EPOCH,
      mountPoint,
      fileContexts: contexts,
      shrink: true,
    });
  const r = await addHashtreeFooter(image, {
    partitionName: spec.name,
    hashAlgorithm: 'sha256',
    algorithm: 'SHA256_RSA4096',
    key: payloadKey,
    props: { 'apex.key': spec.name },
    // apexer: the salt is the SHA-256 of the serialized manifest.
    salt: createHash('sha256').update(manifest).digest('hex'),
  });
  if (r.descriptor.kind !== 'hashtree') throw new Error('unreachable: hashtree footer without descriptor');
  return r.descriptor.rootDigest.toString('hex');
}

/** AndroidManifest.xml compiled by aapt against framework-res (as aapt2 link does in apexer). */
async function compiledManifest(spec: ApexSpec, work: string): Promise<Buffer> {
  const xml = join(work, 'AndroidManifest.xml');
  await writeFile(xml, containerManifest(spec));
  const apk = join(work, 'manifest.apk');
  await runTool('aapt', ['package', '-f', '-M', xml, '-I', requireFile(FRAMEWORK_RES), '-F', apk]);
  const zip = await ZipArchive.openFile(apk);
  try {
    return await zip.read(zip.entry('AndroidManifest.xml')!);
  } finally {
    await zip.close();
  }
}

async function signContainer(unsigned: string, out: string, key: SigningKey, work: string): Promise<void> {
  const aligned = join(work, 'aligned.zip');
  await runTool('zipalign', ['-f', String(PAGE), unsigned, aligned]);
  await mkdir(dirname(resolve(out)), { recursive: true });
  await signApkFile(aligned, out, await loadApkSigningKey(key), { minSdk: 29 });
}

/**
 * Builds `<out>`: an .apex, or with `compressed` a .capex wrapping it. Returns the payload's
 * hashtree root digest.
 */
export async function buildApex(
  spec: ApexSpec,
  signing: ApexSigning,
  out: string,
  opts: { compressed?: boolean } = {},
): Promise<{ rootDigest: string }> {
  if (!/^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$/.test(spec.name))
    throw new InputError(`invalid APEX name ${JSON.stringify(spec.name)}`, { code: 'APEX_NAME' });
  const work = await mkdtemp(join(tmpdir(), 'omie-apexgen-'));
  try {
    const manifestFields = { name: spec.name, version: spec.version, versionName: spec.versionName ?? '' };
    const manifest = encodeApexManifest(manifestFields);
    const payload = join(work, 'apex_payload.img');
    const rootDigest = await buildPayload(spec, manifest, signing.payloadKey, payload, work);
    const pubkey = encodeAvbPublicKey(createPrivateKey(await readFile(signing.payloadKey)));
    const androidManifest = await compiledManifest(spec, work);
    const unsigned = join(work, 'unsigned.apex');
    // merge_zips -j: entries sorted by name; soong_zip -s: every file stored.
    await writeStoredZip(
      unsigned,
      [
        { name: 'AndroidManifest.xml', data: androidManifest },
        { name: 'apex_manifest.pb', data: manifest },
        { name: 'apex_payload.img', path: payload },
        { name: 'apex_pubkey', data: pubkey },
      ],
      { mtime: ZIP_TIME, mode: 0o100644 },
    );
    const apex = opts.compressed ? join(work, 'original.apex') : out;
    await signContainer(unsigned, apex, signing.containerKey, work);
    if (opts.compressed) {
      // apex_compression_tool: original_apex plus copies of the metadata, deflated (-L 9); the
      // CAPEX's manifest also names the original payload's root digest.
      const capexManifest = encodeApexManifest({ ...manifestFields, originalApexDigest: rootDigest });
      const unsignedCapex = join(work, 'unsigned.capex');
      await deflatedZip(unsignedCapex, [
        { name: 'AndroidManifest.xml', data: androidManifest },
        { name: 'apex_manifest.pb', data: capexManifest },
        { name: 'apex_pubkey', data: pubkey },
        { name: 'original_apex', data: await readFile(apex) },
      ]);
      await signContainer(unsignedCapex, out, signing.containerKey, work);
    }
    return { rootDigest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function deflatedZip(out: string, entries: Array<{ name: string; data: Buffer }>): Promise<void> {
  const zip = new ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { mtime: ZIP_TIME, mode: 0o100644, compress: true });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  await writeFile(out, Buffer.concat(chunks));
}
