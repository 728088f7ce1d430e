/**
 * APEX (system/apex/docs/README.md, apexer, apex_compression_tool): a zip signed as an APK
 * (the container key), holding
 *   - AndroidManifest.xml: the container's package (PackageManager's name; Google builds rename
 *     com.android.X to com.google.android.X there while the APEX keeps its name),
 *   - apex_manifest.pb (or Android 10's apex_manifest.json): the APEX name and version,
 *   - apex_pubkey: the AVB public key blob the payload must be signed with (the payload key),
 *   - apex_payload.img: an ext4 or erofs image, stored and 4 KiB aligned, with an AVB hashtree
 *     footer signed by the payload key (partition name = APEX name, property apex.key).
 * A compressed APEX (.capex) is a deflated zip, also signed by the container key, holding the
 * whole .apex as `original_apex` next to copies of its AndroidManifest.xml, apex_manifest.pb and
 * apex_pubkey; its manifest's capexMetadata.originalApexDigest is the original payload's root digest.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { asOmieError, FormatError } from '../../errors.ts';
import { parseManifest } from '../apk/manifest.ts';
import { verifyApkSignatures } from '../apk/signing/index.ts';
import { ZipArchive } from '../apk/zip.ts';
import { readAvbImage } from '../avb/image.ts';
import { avbPublicKeySha256, publicTestKeyName } from '../avb/keys.ts';
import type { HashtreeDescriptor } from '../avb/vbmeta.ts';
import { verifyImage, verifyVbmeta } from '../avb/verify.ts';
import { isErofs, isExt4, SUPERBLOCK_OFFSET } from '../fsdetect.ts';
import { type ApexManifest, parseApexManifest, parseApexManifestJson } from './manifest.ts';

export {
  type ApexManifest,
  encodeApexManifest,
  parseApexManifest,
  parseApexManifestJson,
} from './manifest.ts';

const FORMAT = 'apex';
/** Largest metadata entry read into memory (manifests, keys: a few hundred bytes in practice). */
const MAX_META = 1024 * 1024;

export const APEX_PAYLOAD = 'apex_payload.img';
export const APEX_PUBKEY = 'apex_pubkey';
export const APEX_MANIFEST_PB = 'apex_manifest.pb';
export const APEX_MANIFEST_JSON = 'apex_manifest.json';
export const CAPEX_ORIGINAL = 'original_apex';

/** What the container says, without opening the payload. */
export interface ApexInfo {
  file: string;
  /** A .capex: the APEX is stored compressed as `original_apex`. */
  compressed: boolean;
  /** apex_manifest.pb's name: the mount point /apex/<name>. */
  name: string;
  version: number;
  versionName: string;
  manifest: ApexManifest;
  /** The container's package (AndroidManifest.xml), what `pm list packages --apex-only` shows; null without one. */
  packageName: string | null;
  /** apex_pubkey (AVB public key blob); null when the APEX carries none. */
  publicKey: Buffer | null;
  publicKeySha256: string | null;
  /** Name of the AVB public test key apex_pubkey is, if it is one. */
  publicTestKey: string | null;
  /** The container's APK signature (v1–v3.1, apksigner's verdict). */
  container: {
    verified: boolean;
    /** Signer certificate SHA-256 digests (lower-case hex), as apksigner prints them. */
    signers: string[];
    error?: string;
  };
}

/** The payload image's AVB footer, checked the way apexd does before it mounts the APEX. */
export interface ApexPayloadInfo {
  fsType: 'ext4' | 'erofs' | null;
  size: number;
  algorithm: string;
  /** The vbmeta signature verifies with its embedded key. */
  signed: boolean;
  /** SHA-256 of the payload's AVB key blob (the one the footer's vbmeta embeds). */
  keySha256: string | null;
  publicTestKey: string | null;
  /** The footer's key is apex_pubkey (apexd refuses the APEX otherwise). */
  keyMatchesApexPubkey: boolean;
  /** The hashtree descriptor's partition name (must be the APEX name). */
  partitionName: string | null;
  rootDigest: string | null;
  /** Whether the hashtree was recomputed and matched (only with verifyHashtree). */
  hashtreeVerified?: boolean;
  /** Everything apexd would refuse, in words; empty when the payload is sound. */
  problems: string[];
}

/** An opened .apex or .capex. */
export class ApexArchive {
  private constructor(
    readonly zip: ZipArchive,
    readonly info: ApexInfo,
  ) {}

  static async open(path: string): Promise<ApexArchive> {
    const zip = await ZipArchive.openFile(path);
    try {
      return new ApexArchive(zip, await readInfo(zip, path));
    } catch (e) {
      await zip.close();
      throw e;
    }
  }

  close(): Promise<void> {
    return this.zip.close();
  }

  /**
   * Writes the payload image to `dest` (streamed; for a .capex, the original APEX is inflated
   * to a temporary file beside `dest` first). The inner APEX must have the same name and key.
   */
  async extractPayload(dest: string): Promise<void> {
    if (!this.info.compressed) {
      await streamEntry(this.zip, APEX_PAYLOAD, dest);
      return;
    }
    const work = await mkdtemp(join(tmpdir(), 'omie-capex-'));
    try {
      const inner = join(work, 'original.apex');
      await streamEntry(this.zip, CAPEX_ORIGINAL, inner);
      const a = await ApexArchive.open(inner);
      try {
        if (a.info.compressed || a.info.name !== this.info.name)
          throw new FormatError({
            format: FORMAT,
            reason: 'original_apex is not the APEX the compressed one names',
            field: CAPEX_ORIGINAL,
            expected: this.info.name,
            found: a.info.compressed ? 'a compressed APEX' : a.info.name,
            file: this.info.file,
          });
        if (this.info.publicKey && a.info.publicKey && !this.info.publicKey.equals(a.info.publicKey))
          throw new FormatError({
            format: FORMAT,
            reason: 'original_apex carries another apex_pubkey than the compressed APEX',
            field: APEX_PUBKEY,
            file: this.info.file,
          });
        await a.extractPayload(dest);
      } finally {
        await a.close();
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}

async function readMeta(zip: ZipArchive, name: string): Promise<Buffer | null> {
  const e = zip.entry(name);
  return e ? zip.read(e, MAX_META) : null;
}

async function readInfo(zip: ZipArchive, file: string): Promise<ApexInfo> {
  const compressed = Boolean(zip.entry(CAPEX_ORIGINAL));
  if (!compressed && !zip.entry(APEX_PAYLOAD))
    throw new FormatError({
      format: FORMAT,
      reason: 'neither apex_payload.img nor original_apex: not an APEX',
      field: APEX_PAYLOAD,
      file,
    });
  const pb = await readMeta(zip, APEX_MANIFEST_PB);
  const json = pb ? null : await readMeta(zip, APEX_MANIFEST_JSON);
  if (!pb && !json)
    throw new FormatError({
      format: FORMAT,
      reason: 'no apex_manifest.pb or apex_manifest.json',
      field: APEX_MANIFEST_PB,
      file,
    });
  const manifest = pb
    ? parseApexManifest(pb, `${file}!${APEX_MANIFEST_PB}`)
    : parseApexManifestJson(json!.toString('utf8'), `${file}!${APEX_MANIFEST_JSON}`);
  const am = await readMeta(zip, 'AndroidManifest.xml');
  const android = am ? parseManifest(am, null, `${file}!AndroidManifest.xml`) : null;
  const publicKey = await readMeta(zip, APEX_PUBKEY);
  // apexer's container declares minSdkVersion 29 unless told otherwise: the signature schemes
  // apksigner consults follow from it.
  const sig = await verifyApkSignatures(zip, { minSdk: android?.minSdkVersion ?? 29, consultedOnly: true });
  const error = sig.verified
    ? undefined
    : [
        ...Object.values(sig.schemes)
          .filter((s) => s.error)
          .map((s) => `${s.scheme}: ${s.error?.message}`),
        ...sig.problems,
      ].join('; ') || 'no valid signature';
  return {
    file,
    compressed,
    name: manifest.name,
    version: manifest.version,
    versionName: manifest.versionName,
    manifest,
    packageName: android?.package ?? null,
    publicKey,
    publicKeySha256: publicKey ? avbPublicKeySha256(publicKey) : null,
    publicTestKey: publicKey ? (publicTestKeyName(publicKey) ?? null) : null,
    container: {
      verified: sig.verified,
      signers: sig.signers.map((s) => s.sha256.toLowerCase().replace(/:/g, '')),
      ...(error ? { error } : {}),
    },
  };
}

async function streamEntry(zip: ZipArchive, name: string, dest: string): Promise<void> {
  const e = zip.entry(name);
  if (!e) throw new FormatError({ format: FORMAT, reason: `no ${name} entry`, field: name, file: zip.name });
  await pipeline(zip.stream(e), createWriteStream(dest));
}

/** Reads an APEX's container metadata and signature (no payload). */
export async function readApexInfo(path: string): Promise<ApexInfo> {
  const a = await ApexArchive.open(path);
  await a.close();
  return a.info;
}

/**
 * Checks an extracted payload image against the APEX: a filesystem apexd mounts (ext4, erofs),
 * an AVB hashtree footer whose vbmeta verifies, signed with apex_pubkey, for a partition named
 * after the APEX; for a .capex, the root digest its manifest names. With `verifyHashtree` the
 * hashtree is recomputed too (reads the whole image). Problems are returned, not thrown: an
 * image that is not an AVB image at all is a FormatError.
 */
export async function inspectApexPayload(
  payloadPath: string,
  info: Pick<ApexInfo, 'name' | 'publicKey' | 'manifest' | 'file'>,
  opts: { verifyHashtree?: boolean } = {},
): Promise<ApexPayloadInfo> {
  const problems: string[] = [];
  const fh = await open(payloadPath, 'r');
  let size: number;
  const head = Buffer.alloc(SUPERBLOCK_OFFSET + 1024);
  try {
    size = (await fh.stat()).size;
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const fsType = isExt4(head) ? 'ext4' : isErofs(head) ? 'erofs' : null;
  if (!fsType) problems.push('the payload is neither ext4 nor erofs');
  const img = await readAvbImage(payloadPath).catch((e: unknown) => {
    throw new FormatError(
      {
        format: FORMAT,
        reason: `apex_payload.img has no readable AVB footer: ${asOmieError(e).message}`,
        field: APEX_PAYLOAD,
        file: info.file,
      },
      { cause: e },
    );
  });
  if (!img.footer) problems.push('the payload has no AVB footer (a vbmeta image instead)');
  let algorithm = 'UNKNOWN';
  let signed = false;
  let key: Buffer | null = img.vbmeta.publicKey.length ? img.vbmeta.publicKey : null;
  try {
    const v = verifyVbmeta(img.vbmeta, { file: payloadPath });
    algorithm = v.algorithm;
    signed = v.signed;
    key = v.signed ? v.publicKey : key;
    if (!v.signed) problems.push(`the payload's vbmeta is not signed (algorithm ${v.algorithm})`);
  } catch (e) {
    problems.push(`the payload's vbmeta does not verify: ${asOmieError(e).message}`);
  }
  const keyMatches = Boolean(key && info.publicKey?.equals(key));
  if (!info.publicKey) problems.push('the APEX has no apex_pubkey to verify its payload with');
  else if (key && !keyMatches) problems.push('the payload is signed with another key than apex_pubkey');
  const hashtrees = img.vbmeta.descriptors.filter((d): d is HashtreeDescriptor => d.kind === 'hashtree');
  const ht = hashtrees[0];
  if (hashtrees.length !== 1)
    problems.push(
      `the payload's vbmeta has ${hashtrees.length} hashtree descriptors, apexd needs exactly one`,
    );
  else if (ht.partitionName !== info.name)
    problems.push(`the hashtree descriptor is for "${ht.partitionName}", not the APEX "${info.name}"`);
  const rootDigest = ht ? ht.rootDigest.toString('hex') : null;
  const original = info.manifest.originalApexDigest;
  if (original && rootDigest && original.toLowerCase() !== rootDigest)
    problems.push(`the payload's root digest ${rootDigest} is not the originalApexDigest ${original}`);
  let hashtreeVerified: boolean | undefined;
  if (opts.verifyHashtree && ht && signed) {
    try {
      await verifyImage(payloadPath, { resolvePartition: () => payloadPath });
      hashtreeVerified = true;
    } catch (e) {
      hashtreeVerified = false;
      problems.push(`the payload's hashtree does not verify: ${asOmieError(e).message}`);
    }
  }
  return {
    fsType,
    size,
    algorithm,
    signed,
    keySha256: key ? avbPublicKeySha256(key) : null,
    publicTestKey: key ? (publicTestKeyName(key) ?? null) : null,
    keyMatchesApexPubkey: keyMatches,
    partitionName: ht?.partitionName ?? null,
    rootDigest,
    ...(hashtreeVerified !== undefined ? { hashtreeVerified } : {}),
    problems,
  };
}
