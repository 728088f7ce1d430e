import { createHash, createPrivateKey } from 'node:crypto';
import { constants, existsSync, rmSync, statSync } from 'node:fs';
import {
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import type { SigningKey } from '../apkgen/index.ts';
import { imageView } from '../conformance/image-view.ts';
import { loadMainlineModules, MAINLINE_REQUIREMENT, type MainlineModule } from '../conformance/mainline.ts';
import { REPORT_FILES } from '../conformance/reporters/index.ts';
import { failingResults, failureDigest } from '../conformance/reporters/text.ts';
import { DEFAULT_SPEC_DIR, runCheckWithFiles } from '../conformance/run.ts';
import { loadSpec } from '../conformance/spec.ts';
import { isExpired } from '../conformance/waivers.ts';
import { EnvironmentError, ExitCode, InputError, OmieError } from '../errors.ts';
import { type ApkKeyRole, defaultKnownSigners } from '../formats/apk/known-signers.ts';
import type { TrustedHashtree } from '../formats/avb/contents.ts';
import { encodeAvbPublicKey, isPublicTestKey, publicTestKeyName } from '../formats/avb/keys.ts';
import { calculateVbmetaDigest } from '../formats/avb/partitions.ts';
import { addHashFooter, addHashtreeFooter, makeVbmetaImage } from '../formats/avb/sign.ts';
import { formatAndroidInfo, writeFastbootZip } from '../formats/factory-zip.ts';
import { OTACERTS_PATH } from '../formats/ota/otacerts.ts';
import { buildSuper, buildSuperEmpty, expandAbLayout, type SuperLayout } from '../formats/super/index.ts';
import type { UniformBlocks } from '../formats/uniform-blocks.ts';
import { type FsReader, openFilesystem } from '../fs/index.ts';
import { hostTools, preloadToolRunner, toolVersion } from '../host/tools.ts';
import { apkSigningKey, certSha256, otaSigningKey, resolveKeyRef } from '../keys/store.ts';
import { type DeviceProfile, loadProduct, type ResolvedProduct } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';
import { testKeyApexes } from './apex-keys.ts';
import { applyPlan } from './apply.ts';
import { baseRollbackFloors, carriedDescriptors, checkRollbackFloors } from './avb-carry.ts';
import { checkBaseCoverage } from './base-coverage.ts';
import { GPS_CONF_PATHS, rewriteGpsConf } from './gps-conf.ts';
import {
  checkMacPermissionsUnique,
  checkRoleKeysDistinct,
  checkSharedUids,
  type RoleKey,
  resolveRoleKeys,
  rewriteMacPermissions,
  roleOfSigners,
  type SharedUidMember,
  testKeyRoles,
} from './key-roles.ts';
import { type OpenedBase, openBase } from './open-base.ts';
import { otaTrustFiles, PAYLOAD_KEY_PATH } from './otacerts.ts';
import { buildOverlay, overlayPath, webviewOverlay } from './overlays.ts';
import { PERSONAL_CLOUD_CONFIG_PATH, personalCloudConfig } from './personal-cloud.ts';
import {
  type ApkIdentity,
  type ExtraFile,
  makePlan,
  type PartitionInput,
  type PartitionName,
  type PartitionPlan,
  type Plan,
  planFiles,
  readApexIdentity,
  readApkIdentity,
} from './plan.ts';
import { apksTheCheckRefuses } from './preflight.ts';
import {
  type BundledApp,
  digestFile,
  type FileDigest,
  makeSbom,
  sha256File,
  sourceDateEpoch,
} from './record.ts';
import { resignApk } from './resign.ts';

export interface BuildOptions {
  /** Product YAML. */
  product: string;
  /** Base to remaster instead of the product's base.path. */
  base?: string;
  /** Output folder; written under a temporary name and renamed at the end. */
  out: string;
  dryRun?: boolean;
  keepWork?: boolean;
  /** Accept the public AOSP/AVB test keys (the image is then marked non-release). */
  allowTestKeys?: boolean;
  /** Package even when the conformance check fails. */
  noCheck?: boolean;
  onProgress?: ProgressFn;
  log?: (line: string) => void;
}

export interface BuildResult {
  dryRun: boolean;
  plan: Plan;
  outDir?: string;
  files?: FileDigest[];
  check?: { conforms: boolean; summary: Record<string, unknown>; reportDir: string } | { skipped: true };
  release: boolean;
}

/** Host tools whose versions the build record names. */
const RECORDED_TOOLS = [
  'mke2fs',
  'debugfs',
  'e2fsck',
  'resize2fs',
  'fsck.erofs',
  'aapt',
  'apksigner',
  'openssl',
  'java',
];

/** Partitions whose filesystem the build edits (others are passed through). */
const EDITABLE: readonly PartitionName[] = ['system', 'system_ext', 'product', 'vendor', 'odm'];
/**
 * Kernel-module partitions: their build.prop gets release-keys tags (nothing else), so they are
 * edited only when the profile re-signs them (else the base's descriptor for them is carried).
 */
const DLKM: readonly PartitionName[] = ['system_dlkm', 'vendor_dlkm', 'odm_dlkm'];

export class CheckFailedError extends OmieError {
  constructor(message: string, context: Record<string, unknown>) {
    super(message, {
      code: 'BUILD_CHECK_FAILED',
      exitCode: ExitCode.checkFailed,
      context,
      hint: 'fix what each failing requirement names (the reports say why each protects the owner), add a waiver with a reason and expiry to the product, or pass --no-check to package anyway',
    });
  }
}

interface Keys {
  avbPem: string;
  /** signing.apkKey: the product's apps and overlays. */
  apk: SigningKey;
  /** The key of each AOSP key role, for base APKs signed with that role's public test key. */
  roles: Record<ApkKeyRole, RoleKey>;
  release: boolean;
}

/** Resolves the product's keys and refuses the public test keys unless allowed. */
async function resolveKeys(
  p: ResolvedProduct,
  allowTestKeys: boolean,
  log: (l: string) => void,
): Promise<Keys> {
  const avbRef = resolveKeyRef(p.product.signing.avbKey, 'avb');
  const avbPem = avbRef.keys?.avbPem ?? (avbRef.file as string);
  const apk = apkSigningKey(p.product.signing.apkKey);
  const roles = await resolveRoleKeys(p.product.signing);
  let release = true;
  const blob = encodeAvbPublicKey(createPrivateKey(await readFile(avbPem)));
  if (isPublicTestKey(blob)) {
    if (!allowTestKeys) {
      throw new InputError(
        `the AVB key ${avbPem} is the public ${publicTestKeyName(blob)}: anyone can sign images with it`,
        {
          code: 'TEST_KEY_REFUSED',
          context: { key: avbPem },
          hint: 'create a partner key with `omie keys init <name>` and reference it in signing.avbKey, or pass --allow-test-keys for a non-release image',
        },
      );
    }
    release = false;
  }
  const apkKeys = new Map<string, { certPem: string; sha256: string; from: string }>();
  for (const r of Object.values(roles))
    apkKeys.set(r.key.certPem, { certPem: r.key.certPem, sha256: r.certSha256, from: r.from });
  for (const k of apkKeys.values()) {
    const known = defaultKnownSigners().lookup(k.sha256);
    if (known?.kind !== 'public-test-key') continue;
    if (!allowTestKeys) {
      throw new InputError(`the APK signing key ${k.certPem} (${k.from}) is the public ${known.name}`, {
        code: 'TEST_KEY_REFUSED',
        context: { key: k.certPem, sha256: k.sha256, field: k.from },
        hint: 'use a partner key (`omie keys init <name> [--roles ...]`), or --allow-test-keys for a non-release image',
      });
    }
    release = false;
  }
  if (!release) log('warning: signing with public test keys; the image is marked non-release');
  return { avbPem, apk, roles, release };
}

/**
 * The plan's Mainline policy from the spec the build checks against (2.5/C-0-1 and
 * spec/mainline-modules.yaml): none when the spec lacks the requirement; Google's modules kept
 * (never removed without their replacement) when the product waives it.
 */
async function mainlinePolicy(
  p: ResolvedProduct,
  now: Date,
): Promise<{ mainline?: MainlineModule[]; googleApexPatterns?: string[]; keepGoogleMainline?: boolean }> {
  const spec = await loadSpec(DEFAULT_SPEC_DIR);
  const rule = spec.requirements.find((r) => r.id === MAINLINE_REQUIREMENT);
  if (!rule) return {};
  const waived = (p.product.waivers ?? []).some((w) => w.id === MAINLINE_REQUIREMENT && !isExpired(w, now));
  const patterns = Array.isArray(rule.params.googleApexPatterns)
    ? rule.params.googleApexPatterns.filter((x): x is string => typeof x === 'string')
    : undefined;
  return {
    mainline: await loadMainlineModules(DEFAULT_SPEC_DIR),
    googleApexPatterns: patterns,
    ...(waived ? { keepGoogleMainline: true } : {}),
  };
}

/** Digest-derived salt: reproducible, yet different per product, version and partition. */
function saltFor(p: ResolvedProduct, partition: string): string {
  return createHash('sha256')
    .update(`omie-salt:${p.product.name}:${p.product.version}:${partition}`)
    .digest('hex');
}

/**
 * A base made by `omie sample-base` names its stand-in keys: which one plays Google's release
 * certificate and which one the public AOSP test key (real bases are matched by the real digests).
 */
async function sampleBaseSigners(
  base: string,
): Promise<{ google: string[]; testKeys: Map<string, ApkKeyRole> }> {
  const manifest = join(
    statSync(base, { throwIfNoEntry: false })?.isDirectory() ? base : dirname(base),
    'sample-base.json',
  );
  if (!existsSync(manifest)) return { google: [], testKeys: new Map() };
  const m = JSON.parse(await readFile(manifest, 'utf8')) as {
    googleSigners?: string[];
    signers?: { testkey?: string };
  };
  // The stand-in plays AOSP's testkey, whose role is releasekey.
  const testKeys = new Map<string, ApkKeyRole>(m.signers?.testkey ? [[m.signers.testkey, 'releasekey']] : []);
  return { google: m.googleSigners ?? [], testKeys };
}

/** An APK of the base: where it is, what it is. */
interface BaseApk {
  partition: PartitionName;
  /** Path inside the partition image. */
  path: string;
  /** Path relative to the partition root (where the plan puts a replacement). */
  rel: string;
  identity: ApkIdentity;
}

/**
 * The APKs under each partition's framework/ (framework-res.apk, an OEM's framework resource
 * APKs): the plan leaves them alone, but they are signed like any app, framework-res with the
 * platform key that every android.uid.system app must share.
 */
async function frameworkApks(plan: Plan, readers: Map<string, FsReader>, work: string): Promise<BaseApk[]> {
  const out: BaseApk[] = [];
  const dir = join(work, 'framework-apks');
  await mkdir(dir, { recursive: true });
  const framework = (path: string, part: PartitionPlan) =>
    path.endsWith('.apk') && path.startsWith(`${part.prefix}/framework/`);
  for await (const f of planFiles(plan, readers, framework)) {
    const host = join(dir, `${out.length}.apk`);
    await f.fs.copyOut(f.path, host);
    out.push({
      partition: f.part.partition,
      path: f.path,
      rel: f.path.slice(f.part.prefix.length).replace(/^\//, ''),
      identity: await readApkIdentity(host),
    });
  }
  return out;
}

/** A base APK the image keeps, with the key role it is re-signed for (null: kept as signed). */
interface KeptApk extends BaseApk {
  role: ApkKeyRole | null;
}

/** The base APKs the plan keeps, framework ones included, each with its test-key role. */
function keptBaseApks(
  plan: Plan,
  identities: Map<string, ApkIdentity>,
  framework: BaseApk[],
  roleOf: (signers: readonly string[]) => ApkKeyRole | null,
): KeptApk[] {
  const kept: BaseApk[] = plan.partitions.flatMap((part) =>
    part.apks
      .filter((apk) => apk.action === 'keep')
      .map((apk) => ({
        partition: part.partition,
        path: apk.path,
        rel: apk.path.slice(part.prefix.length).replace(/^\//, ''),
        identity: identityOf(identities, `${part.partition}:${apk.path}`),
      })),
  );
  return [...framework, ...kept].map((a) => ({ ...a, role: roleOf(a.identity.signers) }));
}

/** What a kept APK is for the shared UID check: the signer it ends with. */
function sharedUidMember(apk: KeptApk, keys: Keys): SharedUidMember {
  return {
    where: `${apk.partition}:${apk.path}`,
    package: apk.identity.package,
    sharedUserId: apk.identity.sharedUserId,
    signers: apk.role ? [keys.roles[apk.role].certSha256] : apk.identity.signers,
  };
}

/**
 * Kept APKs signed with a public test key get the partner's key of the same role instead (as
 * AOSP's release signing does): anyone holds the test keys, so anyone could ship an "update" of
 * such an app, or a new app joining its shared UID. framework-res and the other framework APKs
 * are re-signed too, so that the apps sharing android.uid.system still match the framework.
 * `early` holds re-signings already started while the plan was made (by APK sha256).
 */
async function resignTestKeyApks(
  apks: KeptApk[],
  readers: Map<string, FsReader>,
  keys: Keys,
  work: string,
  early: Map<string, Promise<string>>,
): Promise<ExtraFile[]> {
  const files: ExtraFile[] = [];
  for (const [i, apk] of apks.entries()) {
    if (!apk.role) continue;
    const fs = readers.get(apk.partition)!;
    const dir = join(work, 'resign', apk.partition);
    await mkdir(dir, { recursive: true });
    const original = join(dir, `${i}-${apk.identity.package}.in.apk`);
    await fs.copyOut(apk.path, original);
    const started = early.get(await sha256File(original));
    let resigned = join(dir, `${i}-${apk.identity.package}.apk`);
    if (started) resigned = await started;
    else await resignApk(original, resigned, keys.roles[apk.role].key);
    files.push({
      partition: apk.partition,
      path: apk.rel,
      source: resigned,
      package: apk.identity.package,
      reason: `re-signed with the ${apk.role} key (${keys.roles[apk.role].from}): was signed with a public test key (${apk.identity.signers.join(', ')})`,
    });
  }
  return files;
}

function identityOf(identities: Map<string, ApkIdentity>, key: string): ApkIdentity {
  const id = identities.get(key);
  if (!id) throw new Error(`internal: the plan read no identity for ${key}`);
  return id;
}

/**
 * Every mac_permissions.xml of the base with its public test-key certificates replaced by the
 * partner certificates of their roles (refused when that makes two stanzas name one key).
 */
async function macPermissionsFiles(
  plan: Plan,
  readers: Map<string, FsReader>,
  roles: ReadonlyMap<string, ApkKeyRole>,
  resignedRoles: ReadonlySet<ApkKeyRole>,
  keys: Keys,
  log: (line: string) => void,
): Promise<ExtraFile[]> {
  const found: Array<{ where: string; before: string; after: string; roles: ApkKeyRole[]; file: ExtraFile }> =
    [];
  const macPermissions = (path: string) => /\/etc\/selinux\/[^/]*mac_permissions\.xml$/.test(path);
  for await (const { part, fs, path } of planFiles(plan, readers, macPermissions)) {
    const before = (await fs.readFile(path)).toString('utf8');
    const r = rewriteMacPermissions(before, roles, keys.roles, resignedRoles);
    if (!r) continue;
    const where = `${part.partition}:${path}`;
    if (r.left.length)
      log(
        `warning: ${where} names the public test key of ${r.left.join(', ')}, whose APKs (inside APEXes) the build does not re-sign: left as it is`,
      );
    if (!r.roles.length) continue;
    found.push({
      where,
      before,
      after: r.text,
      roles: r.roles,
      file: {
        partition: part.partition,
        path: path.slice(part.prefix.length).replace(/^\//, ''),
        content: r.text,
        reason: `SELinux seinfo of the re-signed roles (${r.roles.join(', ')}): their partner certificates replace the public test keys`,
      },
    });
  }
  checkMacPermissionsUnique(found, keys.roles);
  return found.map((f) => f.file);
}

async function frameworkRes(readers: Map<string, FsReader>, work: string): Promise<string> {
  const system = readers.get('system');
  for (const p of ['/system/framework/framework-res.apk', '/framework/framework-res.apk']) {
    if (system && (await system.exists(p))) {
      const dest = join(work, 'framework-res.apk');
      await system.copyOut(p, dest);
      return dest;
    }
  }
  throw new InputError('the base has no system/framework/framework-res.apk to compile overlays against', {
    code: 'BASE_NO_FRAMEWORK_RES',
    hint: 'overlays must be compiled against the framework of the base they run on',
  });
}

/** The partner's AVB public key beside vbmeta.img (Pixel/GrapheneOS name it so). */
export const AVB_PKMD = 'avb_pkmd.bin';

function superLayout(device: DeviceProfile, images: Record<string, string>): SuperLayout {
  const s = device.super!;
  const layout: SuperLayout = {
    blockDevices: s.blockDevices.map((b) => ({ name: b.name, size: b.size, alignment: b.alignment })),
    groups: s.groups.map((g) => ({ name: g.name, maxSize: g.maxSize })),
    partitions: s.groups.flatMap((g) =>
      g.partitions
        .filter((name) => images[name])
        .map((name) => ({ name, group: g.name, imagePath: images[name], readonly: true })),
    ),
    metadataSlots: s.metadataSlots,
    metadataMaxSize: s.metadataMaxSize,
  };
  return device.ab ? expandAbLayout(layout) : layout;
}

/** Writes the file's dirty pages to the disk (its metadata too, as far as reading it back needs). */
async function flushToDisk(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * Puts `src` at `dest` without copying its bytes when it can: a hard link (the work folder and
 * the staging folder sit side by side, and nothing writes an image once it is packaged), else a
 * reflink or plain copy.
 */
async function linkOrCopy(src: string, dest: string): Promise<void> {
  try {
    await link(src, dest);
  } catch {
    await copyFile(src, dest, constants.COPYFILE_FICLONE);
  }
}

/**
 * APK identities by content sha256: what the plan read (base APKs, product apps) is not parsed
 * and verified again for the SBOM when the same bytes are in the output.
 */
type IdentityCache = Map<string, ApkIdentity>;

/** Every APK and APEX in the final partitions, for the SBOM and the record. */
async function bundledApps(
  images: Record<string, string>,
  plan: Plan,
  work: string,
  known: IdentityCache,
): Promise<BundledApp[]> {
  const added = new Map<string, 'product' | 'overlay'>();
  for (const part of plan.partitions) {
    for (const a of part.additions)
      if (a.package && /\.(apk|c?apex)$/.test(a.path))
        added.set(`${part.partition}:${a.path}`, a.path.includes('/overlay/') ? 'overlay' : 'product');
  }
  const out: BundledApp[] = [];
  for (const part of plan.partitions) {
    const fs = await openFilesystem(images[part.partition]);
    const apexDir = `${part.prefix}/apex/`;
    try {
      for (const e of await fs.list()) {
        if (e.type !== 'file') continue;
        if (e.path.startsWith(apexDir) && /\.c?apex$/.test(e.path)) {
          const tmp = join(work, 'sbom.apex');
          await fs.copyOut(e.path, tmp);
          const id = await readApexIdentity(tmp);
          out.push({
            partition: part.partition,
            path: e.path.replace(/^\//, ''),
            package: id.package,
            apexName: id.name,
            versionCode: id.version,
            sha256: await sha256File(tmp),
            signerSha256: id.signers,
            source: added.get(`${part.partition}:${e.path}`) ?? 'base',
          });
          continue;
        }
        if (!e.path.endsWith('.apk')) continue;
        const tmp = join(work, 'sbom.apk');
        await fs.copyOut(e.path, tmp);
        const sha256 = await sha256File(tmp);
        const id = known.get(sha256) ?? (await readApkIdentity(tmp));
        out.push({
          partition: part.partition,
          path: e.path.replace(/^\//, ''),
          package: id.package,
          versionName: id.versionName ?? undefined,
          versionCode: id.versionCode,
          sha256,
          signerSha256: id.signers,
          source: added.get(`${part.partition}:${e.path}`) ?? 'base',
        });
      }
    } finally {
      await fs.close();
    }
  }
  return out;
}

/**
 * The remaster: resolve → open base → plan → apply → repack → AVB-sign → package → check.
 * Work happens in temporary folders beside the output; the output appears only when everything
 * (including the conformance check) succeeded, so a failed or killed build leaves nothing half-written.
 */
export async function build(o: BuildOptions): Promise<BuildResult> {
  const log = o.log ?? (() => {});
  const stage = (name: string, done: number, total = 1) =>
    o.onProgress?.({ stage: name, done, total, unit: 'items' });
  const resolved = await loadProduct(o.product);
  const p = resolved.product;
  const device = resolved.device;
  const basePath = o.base ?? (p.base?.path ? resolve(resolved.dir, p.base.path) : undefined);
  if (!basePath) {
    throw new InputError(`no base: ${resolved.file} has no base.path and --base was not given`, {
      code: 'BUILD_NO_BASE',
      hint: 'pass --base <factory zip | super.img | OTA | images folder>',
    });
  }
  const keys = o.dryRun ? undefined : await resolveKeys(resolved, Boolean(o.allowTestKeys), log);

  const outDir = resolve(o.out);
  await mkdir(dirname(outDir), { recursive: true });
  const tag = `${process.pid}-${Date.now()}`;
  const work = join(dirname(outDir), `.${basename(outDir)}.work-${tag}`);
  const staging = join(dirname(outDir), `.${basename(outDir)}.tmp-${tag}`);
  /** Where the conformance reports of a refused build go (the output itself is not written). */
  const refusedDir = `${outDir}.refused`;
  const cleanup = () => {
    rmSync(staging, { recursive: true, force: true });
    if (!o.keepWork) rmSync(work, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  const readers = new Map<string, FsReader>();
  try {
    await mkdir(work, { recursive: true });
    stage('open base', 0);
    if (p.base?.sha256 && !o.base) {
      const got = await sha256File(basePath);
      if (got !== p.base.sha256) {
        throw new InputError(`base ${basePath} does not match the pinned sha256`, {
          code: 'BASE_SHA256_MISMATCH',
          context: { expected: p.base.sha256, found: got },
        });
      }
    }
    // The process runner (first used by the overlays) loads while the base is unpacked: the main
    // thread mostly waits on I/O then, whereas loading it up front delays the first stage.
    preloadToolRunner();
    const base: OpenedBase = await openBase(basePath, work, { kind: p.base?.kind, onProgress: o.onProgress });
    // debugfs, e2fsck and resize2fs fsync the image they open: the first edit would wait for the
    // unpacked GiB to reach the disk (~0.5 s here). Flushed now, in the background, it gets there
    // while the plan is made.
    const flushed = o.dryRun
      ? Promise.resolve()
      : Promise.allSettled(Object.values(base.images).map((img) => flushToDisk(img)));
    checkBaseCoverage(device, base.images);
    if (base.boards && !base.boards.some((b) => device.fastboot.products.includes(b))) {
      log(
        `warning: the base is for ${base.boards.join('|')}, the device profile for ${device.fastboot.products.join('|')}`,
      );
    }
    stage('open base', 1);

    const parts: PartitionInput[] = [];
    for (const part of device.partitions) {
      const img = base.images[part.name];
      const signed = device.avb.footers.some((f) => f.partition === part.name);
      const editable =
        EDITABLE.includes(part.name as PartitionName) ||
        (signed && DLKM.includes(part.name as PartitionName));
      if (!img || part.fs === 'raw' || !editable) continue;
      const fs = await openFilesystem(img);
      readers.set(part.name, fs);
      parts.push({ name: part.name as PartitionName, fs });
    }
    if (!readers.has('system')) {
      throw new InputError(
        `the base has no system image (found: ${Object.keys(base.images).join(', ') || 'nothing'})`,
        { code: 'BASE_NO_SYSTEM' },
      );
    }
    // Base descriptors of partitions the profile does not re-sign (checked now: before any work).
    const carried = await carriedDescriptors(device, base.images, new Set(parts.map((x) => x.name)));
    checkRollbackFloors(device, await baseRollbackFloors(base.images));

    const extraFiles: ExtraFile[] = [];
    // Overlays (each one aapt + zipalign + signing) are built while the plan is made: the plan
    // only needs their paths; applying it reads them.
    let overlaysBuilt: Promise<unknown> = Promise.resolve();
    if (keys) {
      const fw = await frameworkRes(readers, work);
      await mkdir(join(work, 'overlays'), { recursive: true });
      let built = 0;
      // The product's overlays, and the one naming its WebView providers (role: webview).
      const webview = webviewOverlay(resolved);
      const overlays = webview ? [...resolved.overlays, webview] : resolved.overlays;
      stage('overlays', 0, overlays.length);
      const apks = overlays.map((ov) => join(work, 'overlays', `${ov.name}.apk`));
      overlaysBuilt = Promise.all(
        overlays.map(async (ov, i) => {
          await buildOverlay(ov, p, fw, keys.apk, apks[i]);
          stage('overlays', ++built, overlays.length);
        }),
      );
      overlaysBuilt.catch(() => {}); // awaited before the plan is applied
      for (const [i, ov] of overlays.entries()) {
        extraFiles.push({
          partition: ov.partition,
          path: overlayPath(ov),
          source: apks[i],
          package: ov.package,
          reason: `overlay ${ov.name}: ${ov.description ?? ''}`.trim(),
        });
      }
    }
    if (p.endpoints) {
      for (const g of GPS_CONF_PATHS) {
        const fs = readers.get(g.partition);
        const inImage =
          fs &&
          (g.partition === 'system' && (await fs.exists('/system/build.prop'))
            ? `/system/${g.path}`
            : `/${g.path}`);
        if (!fs || !inImage || !(await fs.exists(inImage))) continue;
        const text = rewriteGpsConf((await fs.readFile(inImage)).toString('utf8'), p.endpoints);
        extraFiles.push({
          partition: g.partition,
          path: g.path,
          content: text,
          reason: 'GNSS time and assistance servers from the product endpoints',
        });
      }
    }
    const cloud = personalCloudConfig(resolved);
    if (cloud) {
      extraFiles.push({
        partition: cloud.partition,
        path: PERSONAL_CLOUD_CONFIG_PATH,
        content: cloud.json,
        reason: 'personal cloud sync options the owner picks from at setup',
      });
    }
    // The image trusts the partner's OTA key: its certificate replaces the base's otacerts.zip.
    const otaCert = keys ? otaSigningKey(p.signing).certPem : undefined;
    if (otaCert && keys) {
      const known = defaultKnownSigners().lookup(await certSha256(otaCert));
      if (known?.kind === 'public-test-key') {
        if (!o.allowTestKeys)
          throw new InputError(
            `the OTA key ${otaCert} is the public ${known.name}: anyone could sign updates`,
            {
              code: 'TEST_KEY_REFUSED',
              context: { key: otaCert },
              hint: 'use a partner key for signing.otaKey, or --allow-test-keys for a non-release image',
            },
          );
        keys.release = false;
      }
      const system = readers.get('system')!;
      const root = (await system.exists('/system/build.prop')) ? '/system/' : '/';
      extraFiles.push(
        ...(await otaTrustFiles(
          otaCert,
          work,
          sourceDateEpoch(),
          await system.exists(`${root}${PAYLOAD_KEY_PATH}`),
        )),
      );
    }
    const sample = await sampleBaseSigners(basePath);
    const roles = testKeyRoles(sample.testKeys);
    const roleOf = (signers: readonly string[]) => roleOfSigners(signers, roles);
    const identities: IdentityCache = new Map();
    // Re-signing a test-key APK may start a JVM (apksigner): it starts as soon as such an APK is
    // identified, and runs on the other core while the rest of the plan is made.
    const early = new Map<string, Promise<string>>();
    const apkIdentities = new Map<string, ApkIdentity>();
    const planOpts = {
      ...(await mainlinePolicy(resolved, new Date(sourceDateEpoch() * 1000))),
      googleSigners: sample.google,
      identify: async (apk: string) => {
        const [id, sha256] = await Promise.all([readApkIdentity(apk), sha256File(apk)]);
        identities.set(sha256, id);
        const role = roleOf(id.signers);
        if (keys && role && !early.has(sha256)) {
          const dir = join(work, 'resign', 'early');
          await mkdir(dir, { recursive: true });
          const original = join(dir, `${sha256}.in.apk`);
          await copyFile(apk, original);
          const resigned = join(dir, `${sha256}.apk`);
          const signing = resignApk(original, resigned, keys.roles[role].key).then(() => resigned);
          signing.catch(() => {}); // awaited if the APK is kept; settled below either way
          early.set(sha256, signing);
        }
        return id;
      },
      extraFiles,
      onProgress: o.onProgress,
      // Shared by both plans below: the re-plan after re-signing reads no APK again.
      apkIdentities,
    };
    let plan = await makePlan(parts, resolved, planOpts);
    for (const part of plan.partitions)
      for (const r of part.removals)
        if (r.path.endsWith(`/${OTACERTS_PATH}`))
          log(`warning: removing ${part.partition}:${r.path}: ${r.reason}`);
    const apexes = await testKeyApexes(plan, readers, work);
    if (apexes.length) {
      const list = apexes.map((a) => `${a.partition}:${a.path} (${a.keys.join(', ')})`).join('; ');
      const message = `${apexes.length} APEX(es) of the base are signed with public test keys, which the build does not re-sign: ${list}`;
      if (o.dryRun || o.allowTestKeys) log(`warning: ${message}`);
      else
        throw new InputError(message, {
          code: 'APEX_TEST_KEY',
          context: { apexes },
          hint: 'anyone could sign an update of them: re-sign them with your keys before the build (AOSP sign_apex / sign_target_files_apks with your apexkeys), use a base whose APEXes carry release keys, or pass --allow-test-keys for a non-release image',
        });
    }
    if (keys) {
      const framework = await frameworkApks(plan, readers, work);
      const kept = keptBaseApks(plan, apkIdentities, framework, roleOf);
      const resignedRoles = new Set(kept.flatMap((a) => (a.role ? [a.role] : [])));
      checkRoleKeysDistinct(resignedRoles, keys.roles);
      const added = plan.partitions.flatMap((part) =>
        part.additions
          .filter((a) => a.package && a.sha256 && identities.has(a.sha256))
          .map((a) => {
            const id = identities.get(a.sha256!)!;
            return {
              where: `${part.partition}:${a.path}`,
              package: id.package,
              sharedUserId: id.sharedUserId,
              signers: id.signers,
            };
          }),
      );
      checkSharedUids([...kept.map((a) => sharedUidMember(a, keys)), ...added]);
      const selinux = await macPermissionsFiles(plan, readers, roles, resignedRoles, keys, log);
      const resigned = await resignTestKeyApks(kept, readers, keys, work, early);
      const more = [...resigned, ...selinux];
      if (more.length)
        plan = await makePlan(parts, resolved, { ...planOpts, extraFiles: [...extraFiles, ...more] });
    }
    // Re-signings of APKs the plan removes are not used; none may outlive the build.
    await Promise.allSettled(early.values());
    for (const r of readers.values()) await r.close();
    readers.clear();
    // Google's Mainline modules, WebView or setup wizard removed with nothing in their place
    // would leave a device that does not work: refuse (a dry run warns).
    if (plan.refusals.length) {
      const message = [
        `the plan removes ${plan.refusals.length} platform component(s) nothing replaces:`,
        ...plan.refusals.map((r) => `  - ${r.message}`),
      ].join('\n');
      if (o.dryRun) log(`warning: ${message}`);
      else
        throw new InputError(message, {
          code: 'BUILD_REFUSED',
          context: { refusals: plan.refusals, product: resolved.file },
          hint: `add the missing replacements to prebuilt-apps/ and to apps: in ${resolved.file} (see the messages), or keep Google's with removals.keep and a waiver`,
        });
    }
    // The check at the end would refuse Google apps the plan keeps: say so now, not after
    // minutes of repacking (a dry run warns).
    const refused = o.noCheck
      ? []
      : await apksTheCheckRefuses(plan, resolved, new Date(sourceDateEpoch() * 1000));
    if (refused.length) {
      const requirements = [...new Set(refused.map((r) => r.requirement))];
      const lines = requirements.flatMap((id) => {
        const apks = refused.filter((r) => r.requirement === id);
        return [
          `  ${id}:`,
          ...apks.slice(0, 5).map((r) => `    - ${r.package}${r.where ? ` (${r.where})` : ''}: ${r.because}`),
          ...(apks.length > 5 ? [`    … and ${apks.length - 5} more (see context.apks with --json)`] : []),
        ];
      });
      const message = [
        `the plan keeps ${refused.length} APK(s) that ${requirements.join(' and ')} (no Google package or signer) forbid, so the check would fail:`,
        ...lines,
      ].join('\n');
      if (o.dryRun) log(`warning: ${message}`);
      else
        throw new OmieError(message, {
          code: 'BUILD_CHECK_WOULD_FAIL',
          exitCode: ExitCode.checkFailed,
          context: { requirements, apks: refused, product: resolved.file },
          hint: `remove them (removals.packages or removals.patterns, and not in removals.keep, in ${resolved.file}), waive ${requirements.join(' / ')} there with a reason and expiry, or pass --no-check`,
        });
    }
    if (o.dryRun) return { dryRun: true, plan, release: true };
    if (!keys) throw new Error('unreachable: keys are resolved unless --dry-run');

    await overlaysBuilt;
    await flushed;
    const epoch = sourceDateEpoch();
    await applyPlan(plan, base.images, { epoch, onProgress: o.onProgress });

    // AVB: footers on the partitions the device verifies, then vbmeta signed with the partner key.
    const footered: string[] = [];
    // CRC-32 of each hashtree-footered image, taken while it is hashed: the fastboot zip's
    // headers then need no read of their own.
    const crc32s = new Map<string, number>();
    // Likewise the blocks of each image that repeat one word: super.img's planning pass then
    // need not read those images again.
    const uniformBlocks = new Map<string, UniformBlocks>();
    const trustedHashtrees = new Map<string, TrustedHashtree>();
    for (const [i, f] of device.avb.footers.entries()) {
      stage('avb footers', i, device.avb.footers.length);
      const img = base.images[f.partition];
      if (!img) continue;
      const part = device.partitions.find((x) => x.name === f.partition)!;
      const common = {
        partitionName: f.partition,
        hashAlgorithm: f.hashAlgorithm,
        salt: saltFor(resolved, f.partition),
        onProgress: o.onProgress,
      };
      if (f.type === 'hashtree') {
        const r = await addHashtreeFooter(img, {
          ...common,
          partitionSize: part.location === 'physical' ? part.size : undefined,
          crc32: true,
          uniformBlocks: part.location === 'super',
        });
        if (r.crc32 !== undefined) crc32s.set(f.partition, r.crc32);
        if (r.uniformBlocks) uniformBlocks.set(img, r.uniformBlocks);
        // The check at the end takes this tree's data digests instead of hashing the image again:
        // they were computed from these very bytes, and the file is identified so that any later
        // change (or a copy instead of a link) makes the check hash it in full.
        if (r.descriptor.kind === 'hashtree') {
          const st = await stat(img);
          trustedHashtrees.set(f.partition, {
            file: { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs },
            rootDigest: r.descriptor.rootDigest,
            salt: r.descriptor.salt,
            hashAlgorithm: r.descriptor.hashAlgorithm,
            imageSize: r.descriptor.imageSize,
            blockSize: r.descriptor.dataBlockSize,
          });
        }
      } else
        await addHashFooter(img, {
          ...common,
          partitionSize: part.location === 'physical' ? part.size : undefined,
        });
      footered.push(img);
    }
    const chainedParts = new Set(device.avb.chained.flatMap((c) => c.partitions));
    const footeredParts = new Set(device.avb.footers.map((f) => f.partition));
    const chainImages: Array<{ name: string; path: string; location: number }> = [];
    for (const c of device.avb.chained) {
      const path = join(work, `${c.partition}.img`);
      await makeVbmetaImage(path, {
        algorithm: device.avb.algorithm,
        key: keys.avbPem,
        rollbackIndex: device.avb.rollbackIndex,
        rollbackIndexLocation: c.rollbackIndexLocation,
        descriptors: carried.get(c.partition),
        includeDescriptorsFromImages: c.partitions
          .filter((n) => footeredParts.has(n))
          .map((n) => base.images[n])
          .filter(Boolean),
      });
      chainImages.push({ name: c.partition, path, location: c.rollbackIndexLocation });
    }
    const vbmeta = join(work, 'vbmeta.img');
    await makeVbmetaImage(vbmeta, {
      algorithm: device.avb.algorithm,
      key: keys.avbPem,
      rollbackIndex: device.avb.rollbackIndex,
      descriptors: carried.get('vbmeta'),
      includeDescriptorsFromImages: device.avb.footers
        .filter((f) => !chainedParts.has(f.partition) && base.images[f.partition])
        .map((f) => base.images[f.partition]),
      chainPartitions: chainImages.map((c) => ({
        partitionName: c.name,
        rollbackIndexLocation: c.location,
        publicKeyPath: keys.avbPem,
      })),
      props: { 'com.omie.product': p.name, 'com.omie.version': p.version },
    });
    stage('avb footers', 1);
    // The partner's AVB public key as `avbtool extract_public_key` writes it: what an owner
    // enrolls in avb_custom_key (Pixel-style bootloaders) so the locked device boots this build.
    const pkmd = encodeAvbPublicKey(createPrivateKey(await readFile(keys.avbPem)));

    // Package into the staging folder.
    await mkdir(staging, { recursive: true });
    const physical = device.partitions.filter((x) => x.location === 'physical');
    const logical = device.partitions.filter((x) => x.location === 'super');
    const images: Array<{ name: string; path: string }> = [];
    for (const part of physical) {
      const src =
        part.name === 'vbmeta'
          ? vbmeta
          : (chainImages.find((c) => c.name === part.name)?.path ?? base.images[part.name]);
      if (!src || part.name === 'userdata') continue;
      await linkOrCopy(src, join(staging, `${part.name}.img`));
      images.push({ name: part.name, path: join(staging, `${part.name}.img`) });
    }
    if (!images.some((i) => i.name === 'vbmeta')) {
      await linkOrCopy(vbmeta, join(staging, 'vbmeta.img'));
      images.push({ name: 'vbmeta', path: join(staging, 'vbmeta.img') });
    }
    await writeFile(join(staging, AVB_PKMD), pkmd);
    for (const part of logical) {
      if (!base.images[part.name]) continue;
      await linkOrCopy(base.images[part.name], join(staging, `${part.name}.img`));
      images.push({ name: part.name, path: join(staging, `${part.name}.img`) });
    }
    const layout = device.super ? superLayout(device, base.images) : undefined;
    if (layout) {
      await buildSuperEmpty(layout, join(staging, 'super_empty.img'));
      images.push({ name: 'super_empty', path: join(staging, 'super_empty.img') });
    }
    const androidInfo = formatAndroidInfo({
      board: device.fastboot.products,
      bootloaderVersion: device.fastboot.bootloaderVersions.length
        ? device.fastboot.bootloaderVersions
        : undefined,
    });
    await writeFile(join(staging, 'android-info.txt'), androidInfo);
    const zipName = `${p.name}-${p.version}-fastboot.zip`;
    // Everything below only reads the finished partition images, so it runs together: super.img
    // and the fastboot zip (I/O on the thread pool), the SBOM (reads every APK back), the
    // conformance check (main thread), and each other output's digest (worker threads) as soon as
    // that output is final; super.img's and the zip's are taken as they are written. Images are
    // stored in the zip, not deflated: deflating a GiB of filesystem image costs about a minute,
    // for a zip that `fastboot update` then reads faster (stored entries are read in place).
    const digests = new Map<string, Promise<FileDigest>>();
    const digestOutput = (name: string) => {
      const d = digestFile(join(staging, name), name);
      d.catch(() => {}); // awaited below, unless an earlier failure ends the build first
      digests.set(name, d);
    };
    const digestWritten = (name: string, sha256: string, size: number) =>
      digests.set(name, Promise.resolve({ path: name, sha256, size }));
    for (const f of await readdir(staging)) digestOutput(f);
    const packaged = Promise.allSettled([
      layout &&
        (async () => {
          stage('super', 0);
          // A planning pass (most blocks' classes from the hashtree pass's maps) makes every sparse
          // header final when written, so the digest needs no read-back of a GiB at the end.
          const built = await buildSuper(layout, join(staging, 'super.img'), {
            sparse: true,
            direct: true,
            sha256: true,
            uniformBlocks,
            onProgress: o.onProgress,
          });
          stage('super', 1);
          digestWritten('super.img', built.sha256!, built.size);
        })(),
      (async () => {
        const zip = join(staging, zipName);
        const written = await writeFastbootZip(
          zip,
          {
            androidInfo,
            images: images
              .filter((i) => i.name !== 'super')
              .map((i) => ({ ...i, crc32: crc32s.get(i.name) })),
          },
          // The CRC-32s were taken over these final bytes by the hashtree pass: not again here.
          { compress: false, sha256: true, direct: true, verifyGivenCrc32: false },
        );
        digestWritten(zipName, written.sha256!, (await stat(zip)).size);
      })(),
      (async () => {
        const apps = await bundledApps(base.images, plan, work, identities);
        await writeFile(
          join(staging, 'sbom.cdx.json'),
          `${JSON.stringify(makeSbom({ product: p.name, version: p.version, apps }), null, 2)}\n`,
        );
        digestOutput('sbom.cdx.json');
      })(),
    ]);
    const versionsDone = Promise.all(
      hostTools
        .filter((x) => RECORDED_TOOLS.includes(x.name))
        .map(async (t) => [t.name, await toolVersion(t).catch(() => null)] as const),
    );
    // Settled below; if the check throws first, these must not become unhandled rejections.
    versionsDone.catch(() => {});
    let check: BuildResult['check'];
    try {
      if (!o.noCheck) {
        stage('check', 0);
        // The check reads the partition images (super.img holds the same bytes, and is still
        // being written): give it a folder of its own with links to them.
        const checkInput = join(work, 'check-input');
        await mkdir(checkInput, { recursive: true });
        for (const i of images) await linkOrCopy(i.path, join(checkInput, basename(i.path)));
        const view = await imageView(checkInput, {
          workDir: join(work, 'check'),
          onProgress: o.onProgress,
          trustedHashtrees,
        });
        let run: Awaited<ReturnType<typeof runCheckWithFiles>>;
        try {
          // The report names the images where they will be: the output folder.
          run = await runCheckWithFiles({
            view: { ...view, input: outDir, description: `image folder ${outDir}` },
            product: resolved,
            reportDir: join(staging, 'check'),
            now: new Date(epoch * 1000),
            stepSummary: false,
            onProgress: o.onProgress,
          });
        } finally {
          await view.close();
        }
        check = {
          conforms: run.report.summary.conforms,
          summary: run.report.summary,
          reportDir: join(outDir, 'check'),
        };
        if (!run.report.summary.conforms) {
          // The output is not published, but the reports of the refusal are: beside it.
          await rm(refusedDir, { recursive: true, force: true });
          await rename(join(staging, 'check'), refusedDir);
          const reportPath = join(refusedDir, REPORT_FILES.html);
          const failed = failingResults(run.report).filter((r) => r.level === 'MUST');
          const digest = failureDigest({ ...run.report, results: failed }, { reportPath });
          throw new CheckFailedError(
            [
              `the image fails ${failed.length} MUST requirement(s) of the Omie spec, so nothing was written to ${outDir}:`,
              ...digest.map((l) => `  ${l}`),
              `reports: ${reportPath} (and report.json, junit.xml, report.sarif beside it)`,
            ].join('\n'),
            {
              reports: refusedDir,
              failed: failed.map((r) => ({
                id: r.id,
                title: r.title,
                message: r.message,
                evidence: r.evidence.slice(0, 5),
              })),
            },
          );
        }
        stage('check', 1);
      } else check = { skipped: true };
    } finally {
      // Never leave the packaging running (and writing into staging) past this point.
      await packaged;
    }
    const packagingFailed = (await packaged).find((r) => r.status === 'rejected');
    if (packagingFailed) throw packagingFailed.reason;

    const outputs: FileDigest[] = await Promise.all([...digests.keys()].sort().map((k) => digests.get(k)!));
    const inputs: FileDigest[] = [
      await digestFile(resolved.file, 'product'),
      await digestFile(device.file, 'device'),
      { path: `base:${basePath}`, sha256: base.sha256, size: 0 },
      ...(await Promise.all(resolved.apps.map((a) => digestFile(a.apkPath, `app:${a.name}`)))),
      ...(await Promise.all(resolved.overlays.map((ov) => digestFile(ov.file, `overlay:${ov.name}`)))),
    ];
    const tools: Record<string, string | null> = Object.fromEntries(await versionsDone);
    const record = {
      schema: 'omie.build-record/1',
      tool: { name: 'omie-kit', version: pkg.version, node: process.version },
      product: { name: p.name, version: p.version },
      device: { vendor: device.vendor, codename: device.codename },
      release: keys.release,
      sourceDateEpoch: epoch,
      base: { kind: base.kind, sha256: base.sha256 },
      // What a device running this build reports as ro.boot.vbmeta.digest (avbtool
      // calculate_vbmeta_digest): `omie check --device … --image <this folder>` compares the two.
      avb: {
        vbmetaDigest: await calculateVbmetaDigest(
          join(staging, 'vbmeta.img'),
          (name) => images.find((i) => i.name === name)?.path,
        ),
      },
      keys: {
        avbPublicKeySha256: createHash('sha256').update(pkmd).digest('hex'),
        // The same key as a file beside vbmeta.img, for `fastboot flash avb_custom_key`.
        avbPkmd: AVB_PKMD,
        apkCertSha256: await certSha256(keys.apk.certPem),
        // The key each AOSP key role was re-signed with (signing.apkKeys, else signing.apkKey).
        apkRoleCertSha256: Object.fromEntries(Object.entries(keys.roles).map(([r, k]) => [r, k.certSha256])),
        otaCertSha256: otaCert ? await certSha256(otaCert) : null,
      },
      sources: { product: resolved.file, device: device.file },
      personalCloud: cloud ? JSON.parse(cloud.json) : null,
      inputs,
      // Host paths of generated files live in a per-run work folder: record them relative to it.
      plan: JSON.parse(JSON.stringify(plan).replaceAll(JSON.stringify(work).slice(1, -1), '<work>')),
      outputs,
      toolVersions: tools,
      check:
        check && 'conforms' in check
          ? { conforms: check.conforms, summary: check.summary }
          : { skipped: true },
    };
    await writeFile(join(staging, 'build-record.json'), `${JSON.stringify(record, null, 2)}\n`);

    // Publish: the old output is replaced only now that the new one is complete.
    const old = `${outDir}.old-${tag}`;
    if (existsSync(outDir)) await rename(outDir, old);
    await rename(staging, outDir);
    await rm(old, { recursive: true, force: true });
    // Reports of an earlier refusal no longer describe the output.
    await rm(refusedDir, { recursive: true, force: true });
    return { dryRun: false, plan, outDir, files: outputs, check, release: keys.release };
  } catch (e) {
    if (e instanceof OmieError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOSPC')
      throw new EnvironmentError(`out of disk space while building ${p.name}`, {
        code: 'ENOSPC',
        context: { work },
      });
    throw e;
  } finally {
    for (const r of readers.values()) await r.close().catch(() => {});
    process.removeListener('exit', cleanup);
    cleanup();
  }
}
