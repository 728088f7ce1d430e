import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { getProp } from '../build/props.ts';
import { InputError } from '../errors.ts';
import type { BuildState } from '../formats/ota/metadata.ts';
import { OTACERTS_PATH, readOtaCertificates, SYSTEM_OTACERTS } from '../formats/ota/otacerts.ts';
import { openFilesystem } from '../fs/index.ts';

/**
 * A folder `omie build` wrote: its build record and the partition images an OTA carries, with the
 * build properties the OTA metadata quotes (read from the images themselves, as ota_from_target_files
 * reads them from the target files' build.prop files).
 */

/** Partitions that are never part of an A/B update. */
const NOT_UPDATED = new Set([
  'userdata',
  'metadata',
  'misc',
  'persist',
  'cache',
  'frp',
  'super',
  'super_empty',
]);

/** Partitions whose build.prop the metadata names (common.PARTITIONS_WITH_BUILD_PROP). */
const WITH_BUILD_PROP = [
  'odm',
  'odm_dlkm',
  'product',
  'system',
  'system_dlkm',
  'system_ext',
  'vendor',
  'vendor_dlkm',
];

/** Where each partition keeps its build.prop, first match wins. */
const BUILD_PROP_PATHS = ['/system/build.prop', '/build.prop', '/etc/build.prop'];

export interface BuildRecordSummary {
  product: { name: string; version: string };
  device: { vendor: string; codename: string };
  release: boolean;
  /** Where the product and device profile were when the build ran. */
  sources?: { product?: string; device?: string };
}

export interface BuildOutput {
  dir: string;
  record: BuildRecordSummary;
  /** Partition name → image, for every image in the folder an A/B update can write. */
  images: Record<string, string>;
  /** build.prop text per partition that has one. */
  props: Record<string, string>;
  /** SHA-256 of each certificate in the system image's otacerts.zip (what it accepts OTAs from). */
  trustedOtaCerts: string[];
  state: BuildState;
}

export async function openBuildOutput(dir: string): Promise<BuildOutput> {
  const abs = resolve(dir);
  const recordPath = join(abs, 'build-record.json');
  if (!existsSync(recordPath))
    throw new InputError(`${abs} is not a build folder: it has no build-record.json`, {
      code: 'OTA_NOT_A_BUILD',
      context: { dir: abs },
      hint: 'give the folder `omie build --out` wrote',
    });
  let record: BuildRecordSummary;
  try {
    record = JSON.parse(await readFile(recordPath, 'utf8')) as BuildRecordSummary;
  } catch (e) {
    throw new InputError(`${recordPath} is not valid JSON`, { code: 'OTA_BAD_RECORD', cause: e });
  }
  if (!record?.product?.name || !record.product.version)
    throw new InputError(`${recordPath} does not name the product it built`, {
      code: 'OTA_BAD_RECORD',
      context: { file: recordPath },
    });
  return { dir: abs, record, images: {}, props: {}, trustedOtaCerts: [], state: emptyState() };
}

function emptyState(): BuildState {
  return {
    device: [],
    build: [],
    buildIncremental: '',
    timestamp: 0,
    sdkLevel: '',
    securityPatchLevel: '',
    partitionState: [],
  };
}

/**
 * Fills in the images of `partitions` found in the folder and the properties of those that hold
 * a filesystem with a build.prop.
 */
export async function readBuildOutput(out: BuildOutput, partitions: string[]): Promise<BuildOutput> {
  for (const name of partitions) {
    if (NOT_UPDATED.has(name)) continue;
    const img = join(out.dir, `${name}.img`);
    if (existsSync(img)) out.images[name] = img;
  }
  if (!out.images.system)
    throw new InputError(`${out.dir} has no system.img: an OTA needs the build's partition images`, {
      code: 'OTA_NO_SYSTEM',
      context: { dir: out.dir, found: Object.keys(out.images) },
    });
  for (const [name, img] of Object.entries(out.images)) {
    let fs: Awaited<ReturnType<typeof openFilesystem>>;
    try {
      fs = await openFilesystem(img);
    } catch {
      continue; // raw partitions (boot, vbmeta): no build.prop
    }
    try {
      for (const p of BUILD_PROP_PATHS)
        if (await fs.exists(p)) {
          out.props[name] = (await fs.readFile(p)).toString('utf8');
          break;
        }
      if (name === 'system')
        for (const p of [SYSTEM_OTACERTS, `/${OTACERTS_PATH}`])
          if (await fs.exists(p)) {
            out.trustedOtaCerts = (await readOtaCertificates(await fs.readFile(p))).map((c) => c.sha256);
            break;
          }
    } finally {
      await fs.close();
    }
  }
  out.state = buildState(out);
  return out;
}

/**
 * A property of `partition` as BuildInfo.GetPartitionBuildProp reads it: the partition's own
 * namespaced key (ro.<partition>.build.*, ro.product.<partition>.*) first, then the plain key.
 */
export function partitionProp(out: BuildOutput, partition: string, key: string): string | undefined {
  const text = out.props[partition];
  if (!text) return undefined;
  const namespaced = key.startsWith('ro.build.')
    ? key.replace('ro.build.', `ro.${partition}.build.`)
    : key.startsWith('ro.product.')
      ? key.replace('ro.product.', `ro.product.${partition}.`)
      : key;
  return getProp(text, namespaced) ?? getProp(text, key);
}

/** ro.product.* resolved through ro.product.property_source_order's default order. */
function productProp(out: BuildOutput, key: string): string | undefined {
  const sys = out.props.system ?? '';
  const direct = getProp(sys, key);
  if (direct) return direct;
  for (const p of ['product', 'odm', 'vendor', 'system_ext', 'system']) {
    const v = out.props[p] && getProp(out.props[p], key.replace('ro.product.', `ro.product.${p}.`));
    if (v) return v;
  }
  return undefined;
}

function buildState(out: BuildOutput): BuildState {
  const sys = out.props.system ?? '';
  const get = (k: string) => getProp(sys, k) ?? getProp(sys, k.replace('ro.build.', 'ro.system.build.'));
  const fingerprint = get('ro.build.fingerprint');
  const device = productProp(out, 'ro.product.device');
  const timestamp = Number(get('ro.build.date.utc'));
  if (!fingerprint || !device || !Number.isFinite(timestamp))
    throw new InputError(`the system image of ${out.dir} does not say which build it is`, {
      code: 'OTA_NO_BUILD_PROPS',
      context: { dir: out.dir, fingerprint, device, timestamp: get('ro.build.date.utc') },
      hint: 'its build.prop needs ro.build.fingerprint, ro.product.device and ro.build.date.utc',
    });
  return {
    device: [device],
    build: [fingerprint],
    buildIncremental: get('ro.build.version.incremental') ?? '',
    timestamp,
    sdkLevel: get('ro.build.version.sdk') ?? '',
    securityPatchLevel: get('ro.build.version.security_patch') ?? '',
    partitionState: WITH_BUILD_PROP.filter((p) => out.images[p] && out.props[p]).map((p) => ({
      partitionName: p,
      device: [partitionProp(out, p, 'ro.product.device') ?? device],
      build: [partitionProp(out, p, 'ro.build.fingerprint') ?? fingerprint],
      version: partitionProp(out, p, 'ro.build.date.utc') ?? String(timestamp),
    })),
  };
}
