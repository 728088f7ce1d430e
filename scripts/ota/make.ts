import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, stat, truncate } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { EnvironmentError, InputError, OmieError } from '../errors.ts';
import { defaultKnownSigners } from '../formats/apk/known-signers.ts';
import { readAvbImage } from '../formats/avb/image.ts';
import { encodeCareMap, RELEASE_ENTRY, type ReleaseInfo } from '../formats/ota/metadata.ts';
import { writeOtaPackage } from '../formats/ota/package.ts';
import type { ReplaceType } from '../formats/payload/compress.ts';
import { type DeltaFile, deltaOperations } from '../formats/payload/delta.ts';
import type { Extent } from '../formats/payload/extents.ts';
import { fullOperations } from '../formats/payload/full.ts';
import {
  BlobFile,
  type DynamicPartitionMetadata,
  finalizePayload,
  type GeneratedOperation,
  type GeneratedPartition,
  type PartitionVerity,
} from '../formats/payload/payload-file.ts';
import { loadPayloadSigningKey } from '../formats/payload/signature.ts';
import { fileDataRanges } from '../fs/index.ts';
import { certSha256, otaSigningKey } from '../keys/store.ts';
import { type DeviceProfile, loadProduct, type ResolvedProduct } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';
import { type BuildOutput, openBuildOutput, partitionProp, readBuildOutput } from './build-output.ts';

/**
 * `omie ota`: an A/B OTA package from a build folder, full or incremental (from an older build
 * folder), as AOSP's ota_from_target_files + delta_generator + signapk -w make one. The payload is
 * signed with the product's OTA key (signing.otaKey, else the release APK key), whose certificate
 * the build put into the image's otacerts.zip, so the device trusts it.
 */

export interface MakeOtaOptions {
  build: string;
  /** An older build folder: makes an incremental OTA from it. */
  from?: string;
  out: string;
  /** Product YAML (default: the one the build record names). */
  product?: string;
  /** Accept an OTA key that is a public AOSP test key (the package is then not for release). */
  allowTestKeys?: boolean;
  /**
   * Incrementals: leave the dm-verity hash tree and FEC to the device (hash_tree_* fields, as
   * delta_generator does by default) instead of shipping their changed blocks.
   */
  verityOnDevice?: boolean;
  /** Bytes per full operation (delta_generator: 2 MiB). */
  chunkSize?: number;
  threads?: number;
  onProgress?: ProgressFn;
  log?: (line: string) => void;
}

export interface OtaPartitionSummary {
  name: string;
  size: number;
  sha256: string;
  oldSha256?: string;
  operations: number;
  operationTypes: Record<string, number>;
  dataBytes: number;
}

export interface MadeOta {
  path: string;
  kind: 'full' | 'incremental';
  size: number;
  sha256: string;
  payloadSize: number;
  product: { name: string; version: string };
  postBuild: string;
  preBuild?: string;
  postTimestamp: number;
  certificateSha256: string;
  release: boolean;
  partitions: OtaPartitionSummary[];
  propertyFiles: Record<string, string>;
}

const BLOCK = 4096;

/** delta_generator's minor version for Android 10+ deltas (hash tree and FEC computed on device). */
const DELTA_MINOR_VERSION = 6;

async function resolveProduct(build: BuildOutput, explicit?: string): Promise<ResolvedProduct> {
  const file = explicit ?? build.record.sources?.product;
  if (!file)
    throw new InputError(`the build record of ${build.dir} does not say which product it built`, {
      code: 'OTA_NO_PRODUCT',
      hint: 'pass --product <product.yaml>',
    });
  const p = await loadProduct(resolve(file));
  if (p.product.name !== build.record.product.name)
    throw new InputError(
      `${p.file} is product ${p.product.name}, the build is ${build.record.product.name}`,
      {
        code: 'OTA_PRODUCT_MISMATCH',
        context: { product: p.file, build: build.dir },
      },
    );
  return p;
}

/** The OTA signing key and certificate, refusing the public AOSP test keys unless allowed. */
async function otaKey(p: ResolvedProduct, allowTestKeys: boolean) {
  const files = otaSigningKey(p.product.signing);
  const certificateFile = await readFile(files.certPem);
  const certificate = new X509Certificate(certificateFile);
  const sha256 = await certSha256(files.certPem);
  const known = defaultKnownSigners().lookup(sha256);
  const release = known?.kind !== 'public-test-key';
  if (!release && !allowTestKeys)
    throw new InputError(
      `the OTA key ${files.certPem} is the public ${known?.name}: anyone could sign updates`,
      {
        code: 'TEST_KEY_REFUSED',
        context: { key: files.certPem, sha256 },
        hint: 'set signing.otaKey (or signing.apkKey) to a partner key, or pass --allow-test-keys for a test package',
      },
    );
  const signing = await loadPayloadSigningKey(files.keyPk8);
  if (!certificate.checkPrivateKey(signing.key))
    throw new InputError(`${files.keyPk8} is not the private key of ${files.certPem}`, {
      code: 'KEY_MISMATCH',
      context: { key: files.keyPk8, cert: files.certPem },
    });
  return { signing, certificate, certificateFile, sha256, release };
}

/**
 * The dm-verity layout of an image with an AVB hashtree descriptor, in payload terms, as
 * payload_generation_config.cc derives it (tree over the data, FEC over data and tree).
 */
async function verityOf(image: string): Promise<{ verity: PartitionVerity; imageSize: number } | undefined> {
  let img: Awaited<ReturnType<typeof readAvbImage>>;
  try {
    img = await readAvbImage(image);
  } catch {
    return undefined;
  }
  const d = img.footer ? img.vbmeta.descriptors.find((x) => x.kind === 'hashtree') : undefined;
  if (d?.kind !== 'hashtree' || d.treeSize === 0 || d.dataBlockSize !== BLOCK || d.hashBlockSize !== BLOCK)
    return undefined;
  const ext = (offset: number, len: number): Extent => ({
    startBlock: offset / BLOCK,
    numBlocks: Math.ceil(len / BLOCK),
  });
  return {
    imageSize: d.imageSize,
    verity: {
      hashTreeDataExtent: ext(0, d.imageSize),
      hashTreeExtent: ext(d.treeOffset, d.treeSize),
      hashTreeAlgorithm: d.hashAlgorithm,
      hashTreeSalt: d.salt,
      ...(d.fecSize > 0
        ? {
            fecDataExtent: ext(0, d.fecOffset),
            fecExtent: ext(d.fecOffset, d.fecSize),
            fecRoots: d.fecNumRoots,
          }
        : {}),
    },
  };
}

/** An image padded with zeros to a whole number of blocks (vbmeta.img rarely is one). */
async function blockAligned(image: string, work: string, role: 'old' | 'new'): Promise<string> {
  const size = (await stat(image)).size;
  if (size % BLOCK === 0) return image;
  const padded = join(work, `${role}-${basename(image)}`);
  await copyFile(image, padded);
  await truncate(padded, Math.ceil(size / BLOCK) * BLOCK);
  return padded;
}

/** The files of an ext4/erofs image as delta extents; undefined for raw images (boot, vbmeta). */
async function filesOf(image: string, log: (l: string) => void): Promise<DeltaFile[] | undefined> {
  const files = await fileDataRanges(image).catch((e: unknown) => {
    log(
      `warning: ${image}: cannot read its files (${e instanceof Error ? e.message : e}); diffing it block by block`,
    );
    return null;
  });
  return files?.map((f) => ({
    name: f.path,
    extents: f.ranges.map(([a, b]) => ({
      startBlock: Math.floor(a / BLOCK),
      numBlocks: Math.ceil(b / BLOCK) - Math.floor(a / BLOCK),
    })),
  }));
}

/**
 * libsnapshot's copy-on-write room for a partition's operations (cow_size_estimator.cc), as an
 * upper bound: every written block stored raw with its 20-byte COW operation, copies as one
 * operation each, a label per operation, the header and footer.
 */
function estimateCowSize(ops: GeneratedOperation[]): number {
  let blocks = 0;
  let copies = 0;
  for (const op of ops) {
    const n = op.dstExtents.reduce((a, e) => a + e.numBlocks, 0);
    if (op.type === 'SOURCE_COPY') copies += n;
    else if (op.type !== 'ZERO' && op.type !== 'DISCARD') blocks += n;
    else copies += n;
  }
  return blocks * (BLOCK + 20) + copies * 20 + (ops.length + 1) * 20 + 4096;
}

export async function makeOta(o: MakeOtaOptions): Promise<MadeOta> {
  const log = o.log ?? (() => {});
  const target = await openBuildOutput(o.build);
  const product = await resolveProduct(target, o.product);
  const device: DeviceProfile = product.device;
  const names = device.partitions.map((p) => p.name);
  await readBuildOutput(target, names);
  const source = o.from ? await readBuildOutput(await openBuildOutput(o.from), names) : undefined;
  if (source && source.record.product.name !== target.record.product.name)
    throw new InputError(
      `${o.from} is a build of ${source.record.product.name}, ${o.build} of ${target.record.product.name}`,
      { code: 'OTA_PRODUCT_MISMATCH' },
    );
  if (source) {
    const missing = Object.keys(target.images).filter((n) => !source.images[n]);
    if (missing.length)
      throw new InputError(
        `${o.from} has no ${missing.join(', ')}: an incremental OTA patches every partition`,
        {
          code: 'OTA_SOURCE_PARTITIONS',
          context: { missing },
          hint: 'make a full OTA instead (omit --from)',
        },
      );
    if (source.state.timestamp > target.state.timestamp)
      throw new InputError(
        `${o.from} (ro.build.date.utc ${source.state.timestamp}) is newer than ${o.build} (${target.state.timestamp}): a downgrade`,
        { code: 'OTA_DOWNGRADE' },
      );
    if (source.state.timestamp === target.state.timestamp)
      log(
        `warning: both builds have the date ro.build.date.utc=${target.state.timestamp}: an updater offers only a later build (build each release with SOURCE_DATE_EPOCH set to its date)`,
      );
    if (source.state.build[0] === target.state.build[0])
      log(
        `warning: both builds have the fingerprint ${target.state.build[0]}: the OTA's precondition cannot tell them apart`,
      );
  }
  const key = await otaKey(product, Boolean(o.allowTestKeys));
  if (!key.release) log('warning: the OTA is signed with a public test key: not for release');
  // The build an incremental updates verifies it with its otacerts.zip; the build a package
  // installs verifies the next one: a key neither trusts would strand the device.
  for (const [b, what] of [
    [source, 'the build it updates'],
    [target, 'the build it installs'],
  ] as const)
    if (b && !b.trustedOtaCerts.includes(key.sha256))
      throw new InputError(`${what} (${b.dir}) does not trust the OTA key ${key.sha256}`, {
        code: 'OTA_KEY_NOT_TRUSTED',
        context: { build: b.dir, key: key.sha256, trusted: b.trustedOtaCerts },
        hint: 'sign with the key the build put into otacerts.zip (signing.otaKey, else signing.apkKey), or rebuild with this one',
      });

  const out = resolve(o.out);
  await mkdir(dirname(out), { recursive: true });
  const work = join(dirname(out), `.${basename(out)}.work-${process.pid}-${Date.now()}`);
  await mkdir(work, { recursive: true });
  const blobs = await BlobFile.create(join(work, 'blobs'));
  try {
    const codec = device.ota?.compression ?? 'xz';
    const codecs: ReplaceType[] = [codec === 'zstd' ? 'REPLACE_ZSTD' : 'REPLACE_XZ'];
    const threads = o.threads ?? availableParallelism();
    const parts: GeneratedPartition[] = [];
    const careMap: Parameters<typeof encodeCareMap>[0] = [];
    const logical = new Set(device.partitions.filter((p) => p.location === 'super').map((p) => p.name));
    const snapshots = Boolean(device.ota?.virtualAb);
    for (const name of Object.keys(target.images)) {
      const image = await blockAligned(target.images[name], work, 'new');
      const verity = await verityOf(image);
      const stage = `ota ${name}`;
      const onBytes = (done: number, total: number) => o.onProgress?.({ stage, done, total, unit: 'bytes' });
      let part: GeneratedPartition;
      if (!source) {
        const r = await fullOperations(image, {
          blockSize: BLOCK,
          chunkSize: o.chunkSize ?? 2 << 20,
          codec,
          blobs,
          threads,
          onBytes,
        });
        part = { name, newInfo: { size: r.size, sha256: r.sha256 }, operations: r.operations };
      } else {
        const old = await blockAligned(source.images[name], work, 'old');
        const onDevice = o.verityOnDevice && verity ? verity.verity : undefined;
        const skip = onDevice
          ? [onDevice.hashTreeExtent, ...(onDevice.fecExtent ? [onDevice.fecExtent] : [])]
          : undefined;
        const r = await deltaOperations(old, image, {
          blockSize: BLOCK,
          softChunkBlocks: (o.chunkSize ?? 2 << 20) / BLOCK,
          hardChunkBlocks: (16 << 20) / BLOCK,
          maxDiffBytes: 16 << 20,
          codecs,
          diffType: 'BROTLI_BSDIFF',
          blobs,
          oldFiles: await filesOf(old, log),
          newFiles: await filesOf(image, log),
          skip,
          threads,
          onBytes,
        });
        part = { name, newInfo: r.newInfo, oldInfo: r.oldInfo, operations: r.operations, verity: onDevice };
      }
      const version = partitionProp(target, name, 'ro.build.date.utc');
      if (version) part.version = version;
      if (snapshots && logical.has(name)) part.estimateCowSize = estimateCowSize(part.operations);
      parts.push(part);
      if (verity)
        careMap.push({
          name,
          imageSize: verity.imageSize,
          fingerprintProperty: target.props[name] ? `ro.${name}.build.fingerprint` : undefined,
          fingerprint: partitionProp(target, name, 'ro.build.fingerprint'),
        });
    }
    const groups = device.super?.groups
      .map((g) => ({
        name: g.name,
        size: g.maxSize,
        partitionNames: g.partitions.filter((n) => target.images[n]),
      }))
      .filter((g) => g.partitionNames.length);
    const vab = device.ota?.virtualAb;
    const dynamic: DynamicPartitionMetadata | undefined = groups?.length
      ? {
          groups,
          ...(vab
            ? {
                snapshotEnabled: true,
                ...(vab.compression && vab.compression !== 'none'
                  ? { vabcEnabled: true, vabcCompressionParam: vab.compression }
                  : {}),
              }
            : {}),
        }
      : undefined;
    const payload = await finalizePayload(
      {
        blockSize: BLOCK,
        minorVersion: source ? DELTA_MINOR_VERSION : 0,
        partitions: parts,
        maxTimestamp: target.state.timestamp,
        securityPatchLevel: target.state.securityPatchLevel || undefined,
        dynamicPartitionMetadata: dynamic,
      },
      blobs,
      key.signing,
      o.onProgress,
    );
    const written = await writeOtaPackage(out, {
      payload,
      metadata: { post: target.state, pre: source?.state },
      careMap: careMap.length ? encodeCareMap(careMap) : undefined,
      extraEntries: {
        [RELEASE_ENTRY]: Buffer.from(
          `${JSON.stringify({
            schema: 'omie.ota-release/1',
            product: target.record.product.name,
            version: target.record.product.version,
            kind: source ? 'incremental' : 'full',
            ...(source
              ? { from: { version: source.record.product.version, fingerprint: source.state.build[0] } }
              : {}),
            productFile: product.file,
          } satisfies ReleaseInfo)}\n`,
        ),
      },
      key: key.signing.key,
      certificate: key.certificate,
      certificateFile: key.certificateFile,
      onProgress: o.onProgress,
    });
    return {
      path: out,
      kind: source ? 'incremental' : 'full',
      size: written.size,
      sha256: written.sha256,
      payloadSize: payload.size,
      product: target.record.product,
      postBuild: target.state.build[0],
      preBuild: source?.state.build[0],
      postTimestamp: target.state.timestamp,
      certificateSha256: key.sha256,
      release: key.release,
      partitions: parts.map((p) => {
        const operationTypes: Record<string, number> = {};
        for (const op of p.operations) operationTypes[op.type] = (operationTypes[op.type] ?? 0) + 1;
        return {
          name: p.name,
          size: p.newInfo.size,
          sha256: p.newInfo.sha256.toString('hex'),
          oldSha256: p.oldInfo?.sha256.toString('hex'),
          operations: p.operations.length,
          operationTypes,
          dataBytes: p.operations.reduce((a, op) => a + (op.blob?.length ?? 0), 0),
        };
      }),
      propertyFiles: written.propertyFiles,
    };
  } catch (e) {
    if (e instanceof OmieError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC')
      throw new EnvironmentError(`out of disk space while making ${out}`, {
        code: 'ENOSPC',
        context: { work },
      });
    throw e;
  } finally {
    await blobs.dispose();
    await rm(work, { recursive: true, force: true });
  }
}
