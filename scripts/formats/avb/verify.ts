import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { FormatError, VerificationError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import type { ImageReader } from '../sparse.ts';
import { type AvbAlgorithmName, algorithmByType, avbDigest, verifySignature } from './algorithms.ts';
import { type ContentCheck, checkHash, checkHashtree } from './contents.ts';
import { FOOTER_VERSION_MAJOR } from './footer.ts';
import { openReader, readAvbImage } from './image.ts';
import { avbPublicKeySha1, avbPublicKeySha256, publicTestKeyName, readAvbPublicKey } from './keys.ts';
import {
  AVB_VERSION_MAJOR,
  AVB_VERSION_MINOR,
  type AvbDescriptor,
  type HashDescriptor,
  type HashtreeDescriptor,
  type ParsedVbmeta,
} from './vbmeta.ts';

/**
 * Verification (avbtool verify_image semantics, libavb's rules for chained partitions) and
 * avbtool info_image as a typed structure. Failures are VerificationError{scheme:'avb'} with a
 * specific code; malformed input is FormatError.
 */

export interface VbmetaVerification {
  algorithm: AvbAlgorithmName;
  /** false for algorithm NONE (nothing to check, as avbtool/libavb treat it). */
  signed: boolean;
  publicKey: Buffer;
  publicKeySha1?: string;
  publicKeySha256?: string;
  /** "testkey_rsa4096" etc. when signed with an AOSP public test key. */
  publicTestKey?: string;
}

function vfail(code: string, message: string, context: Record<string, unknown> = {}): never {
  throw new VerificationError('avb', message, { code, context });
}

/**
 * Checks a vbmeta blob: the stored hash of header + auxiliary block, the RSA signature with
 * the embedded public key, and (optionally) that the embedded key is `expectedPublicKey`
 * (an AVB public key blob).
 */
export function verifyVbmeta(
  vbmeta: ParsedVbmeta,
  opts: { expectedPublicKey?: Buffer; file?: string } = {},
): VbmetaVerification {
  const alg = algorithmByType(vbmeta.header.algorithmType, opts.file);
  const ctx = { file: opts.file, algorithm: alg.name };
  // libavb avb_vbmeta_image_verify: a vbmeta needing a newer libavb does not verify.
  const { requiredLibavbVersionMajor: major, requiredLibavbVersionMinor: minor } = vbmeta.header;
  if (major !== AVB_VERSION_MAJOR || minor > AVB_VERSION_MINOR)
    vfail(
      'AVB_UNSUPPORTED_VERSION',
      `vbmeta requires libavb ${major}.${minor}; this verifier implements ${AVB_VERSION_MAJOR}.${AVB_VERSION_MINOR}`,
      {
        ...ctx,
        expected: `${AVB_VERSION_MAJOR}.0-${AVB_VERSION_MAJOR}.${AVB_VERSION_MINOR}`,
        found: `${major}.${minor}`,
      },
    );
  if (alg.hashName) {
    if (vbmeta.hash.length !== alg.hashBytes)
      vfail('AVB_HASH_MISMATCH', `hash size ${vbmeta.hash.length} does not match ${alg.name}`, ctx);
    const digest = avbDigest(alg, vbmeta.headerBlock, vbmeta.auxBlock);
    if (!digest.equals(vbmeta.hash))
      vfail(
        'AVB_HASH_MISMATCH',
        `${alg.name} vbmeta hash does not match the header and auxiliary data${opts.file ? ` of ${opts.file}` : ''}`,
        {
          ...ctx,
          expected: vbmeta.hash.toString('hex'),
          found: digest.toString('hex'),
        },
      );
    try {
      verifySignature(alg, vbmeta.publicKey, digest, vbmeta.signature);
    } catch (e) {
      if (e instanceof FormatError)
        vfail('AVB_SIGNATURE_INVALID', `embedded public key is malformed: ${e.message}`, ctx);
      if (e instanceof VerificationError && opts.file) e.context.file = opts.file;
      throw e;
    }
  }
  if (opts.expectedPublicKey && !opts.expectedPublicKey.equals(vbmeta.publicKey))
    vfail(
      'AVB_PUBLIC_KEY_MISMATCH',
      `embedded public key does not match the expected key${opts.file ? ` in ${opts.file}` : ''}`,
      {
        ...ctx,
        expectedSha256: avbPublicKeySha256(opts.expectedPublicKey),
        foundSha256: vbmeta.publicKey.length ? avbPublicKeySha256(vbmeta.publicKey) : '(none)',
      },
    );
  const pk = vbmeta.publicKey;
  return {
    algorithm: alg.name,
    signed: !!alg.hashName,
    publicKey: Buffer.from(pk),
    publicKeySha1: pk.length ? avbPublicKeySha1(pk) : undefined,
    publicKeySha256: pk.length ? avbPublicKeySha256(pk) : undefined,
    publicTestKey: pk.length ? publicTestKeyName(pk) : undefined,
  };
}

export interface ExpectedChainPartition {
  partitionName: string;
  rollbackIndexLocation: number;
  /** AVB public key blob. */
  publicKey: Buffer;
}

export interface VerifyImageOptions {
  /** Require the top-level vbmeta to be signed by this key: AVB blob, or a path to a PEM / blob. */
  expectedPublicKey?: Buffer | string;
  /** Like avbtool --expected_chain_partition: check the chain descriptor's location and key. */
  expectedChainPartitions?: ExpectedChainPartition[];
  /**
   * Verify chained partition images too (default true). Each must be signed by the key in its
   * chain descriptor (libavb's rule; avbtool --follow_chain_partitions only re-checks signatures).
   */
  followChainPartitions?: boolean;
  /** Accept a hashtree that was zeroed ("ZeRoHaSH") or not stored. */
  acceptZeroedHashtree?: boolean;
  /** Where the image of a named partition is; default `<dir of image>/<name><ext of image>` like avbtool. */
  resolvePartition?: (partitionName: string) => string;
  onProgress?: ProgressFn;
}

export interface VerifiedDescriptor {
  kind: 'hash' | 'hashtree' | 'chain_partition';
  partitionName: string;
  image: string;
  result: 'verified' | 'zeroed-hashtree-accepted' | 'persistent-digest-not-checked' | 'chained';
}

export interface VerifyImageResult extends VbmetaVerification {
  image: string;
  hasFooter: boolean;
  descriptors: VerifiedDescriptor[];
  chained: VerifyImageResult[];
}

/** avbtool verify_image: the vbmeta signature, then every hash / hashtree / chain descriptor. */
export async function verifyImage(path: string, opts: VerifyImageOptions = {}): Promise<VerifyImageResult> {
  const img = await readAvbImage(path);
  // libavb avb_footer_validate_and_byteswap refuses other footer major versions.
  if (img.footer && img.footer.versionMajor !== FOOTER_VERSION_MAJOR)
    vfail(
      'AVB_UNSUPPORTED_VERSION',
      `AVB footer version ${img.footer.versionMajor}.${img.footer.versionMinor} is not supported`,
      {
        file: path,
        expected: `${FOOTER_VERSION_MAJOR}.x`,
        found: `${img.footer.versionMajor}.${img.footer.versionMinor}`,
      },
    );
  const expected =
    typeof opts.expectedPublicKey === 'string'
      ? readAvbPublicKey(opts.expectedPublicKey)
      : opts.expectedPublicKey;
  const v = verifyVbmeta(img.vbmeta, { expectedPublicKey: expected, file: path });
  const sibling = opts.resolvePartition ?? ((name: string) => join(dirname(path), `${name}${extname(path)}`));
  // avbtool opens <dir>/<partition><ext>; for an image with a footer whose file is named
  // differently (boot-signed.img), the partition it describes is the image itself.
  const resolve = (name: string) => {
    const p = sibling(name);
    return img.footer && !opts.resolvePartition && !existsSync(p) ? path : p;
  };
  const follow = opts.followChainPartitions ?? true;
  const out: VerifyImageResult = { ...v, image: path, hasFooter: !!img.footer, descriptors: [], chained: [] };
  for (const d of img.vbmeta.descriptors) {
    if (d.kind === 'hash')
      out.descriptors.push(await verifyHash(d, d.partitionName ? resolve(d.partitionName) : path, opts));
    else if (d.kind === 'hashtree')
      out.descriptors.push(await verifyHashtree(d, d.partitionName ? resolve(d.partitionName) : path, opts));
    else if (d.kind === 'chain_partition') {
      const exp = opts.expectedChainPartitions?.find((c) => c.partitionName === d.partitionName);
      const ctx = { partition: d.partitionName, file: path };
      if (exp) {
        if (exp.rollbackIndexLocation !== d.rollbackIndexLocation)
          vfail(
            'AVB_CHAIN_MISMATCH',
            `chain descriptor for ${d.partitionName} has rollback index location ${d.rollbackIndexLocation}, expected ${exp.rollbackIndexLocation}`,
            ctx,
          );
        if (!exp.publicKey.equals(d.publicKey))
          vfail(
            'AVB_CHAIN_MISMATCH',
            `chain descriptor for ${d.partitionName} carries a different public key than expected`,
            ctx,
          );
      } else if (!follow) {
        vfail(
          'AVB_CHAIN_UNCHECKED',
          `no expected chain partition for ${d.partitionName}; pass expectedChainPartitions or followChainPartitions`,
          ctx,
        );
      }
      const chainedPath = resolve(d.partitionName);
      if (follow) {
        const sub = await verifyImage(chainedPath, {
          ...opts,
          expectedPublicKey: d.publicKey,
          followChainPartitions: false,
          expectedChainPartitions: undefined,
        }).catch((e: unknown) => {
          if (e instanceof VerificationError && e.code === 'AVB_PUBLIC_KEY_MISMATCH')
            vfail(
              'AVB_CHAIN_KEY_MISMATCH',
              `${chainedPath} is not signed with the key in the chain descriptor for ${d.partitionName}`,
              ctx,
            );
          throw e;
        });
        out.chained.push(sub);
      }
      out.descriptors.push({
        kind: 'chain_partition',
        partitionName: d.partitionName,
        image: chainedPath,
        result: 'chained',
      });
    }
  }
  return out;
}

/** Checks a hash descriptor against the first `imageSize` bytes of `file` (raw or sparse); throws the problem. */
export async function verifyHash(
  d: HashDescriptor,
  file: string,
  opts: Pick<VerifyImageOptions, 'onProgress'> = {},
): Promise<VerifiedDescriptor> {
  return verifyContent(d, file, (r) => checkHash(d, file, r, opts.onProgress));
}

/** Rebuilds the dm-verity tree of `file` (raw or sparse) and checks its root and the stored tree; throws the first problem. */
export async function verifyHashtree(
  d: HashtreeDescriptor,
  file: string,
  opts: Pick<VerifyImageOptions, 'onProgress' | 'acceptZeroedHashtree'> = {},
): Promise<VerifiedDescriptor> {
  // avbtool verify_image checks the tree, never the FEC.
  return verifyContent(d, file, (r) =>
    checkHashtree(d, file, r, {
      fec: false,
      acceptZeroedHashtree: opts.acceptZeroedHashtree,
      onProgress: opts.onProgress,
    }),
  );
}

/** Runs a content check and throws its first problem, as avbtool stops at the first failure. */
async function verifyContent(
  d: HashDescriptor | HashtreeDescriptor,
  file: string,
  check: (r: ImageReader) => Promise<ContentCheck>,
): Promise<VerifiedDescriptor> {
  const r = await openReader(file);
  let found: ContentCheck;
  try {
    found = await check(r);
  } finally {
    await r.close();
  }
  const p = found.problems[0];
  if (p)
    vfail(p.code, p.message, {
      partition: d.partitionName,
      file,
      ...(p.firstBadBlock !== undefined ? { firstBadBlock: p.firstBadBlock, offset: p.offset } : {}),
    });
  const result = found.result === 'failed' || found.result === 'trusted-data' ? 'verified' : found.result;
  return { kind: d.kind, partitionName: d.partitionName, image: file, result };
}

// ------------------------------------------------------------------ info_image

export interface AvbInfo {
  image: string;
  footer?: {
    versionMajor: number;
    versionMinor: number;
    /** File size ("Image size" in avbtool). */
    imageSize: number;
    originalImageSize: number;
    vbmetaOffset: number;
    vbmetaSize: number;
  };
  /** "1.0", "1.2", … */
  minimumLibavbVersion: string;
  /** Android sparse image (avbtool prints " (Sparse)" after the libavb version). */
  sparse?: boolean;
  headerBlockSize: number;
  authenticationBlockSize: number;
  auxiliaryBlockSize: number;
  /** Absent when there is no embedded key (algorithm NONE). */
  publicKeySha1?: string;
  publicKeySha256?: string;
  publicTestKey?: string;
  algorithm: AvbAlgorithmName;
  rollbackIndex: bigint;
  flags: number;
  rollbackIndexLocation: number;
  releaseString: string;
  descriptors: AvbDescriptor[];
}

/** Everything `avbtool info_image` prints, typed. Does not verify anything. */
export async function infoImage(path: string): Promise<AvbInfo> {
  const img = await readAvbImage(path);
  const h = img.vbmeta.header;
  const pk = img.vbmeta.publicKey;
  return {
    image: path,
    footer: img.footer ? { ...img.footer, imageSize: img.size } : undefined,
    minimumLibavbVersion: `${h.requiredLibavbVersionMajor}.${h.requiredLibavbVersionMinor}`,
    sparse: img.sparse,
    headerBlockSize: 256,
    authenticationBlockSize: h.authenticationDataBlockSize,
    auxiliaryBlockSize: h.auxiliaryDataBlockSize,
    publicKeySha1: pk.length ? avbPublicKeySha1(pk) : undefined,
    publicKeySha256: pk.length ? avbPublicKeySha256(pk) : undefined,
    publicTestKey: pk.length ? publicTestKeyName(pk) : undefined,
    algorithm: algorithmByType(h.algorithmType, path).name,
    rollbackIndex: h.rollbackIndex,
    flags: h.flags,
    rollbackIndexLocation: h.rollbackIndexLocation,
    releaseString: h.releaseString,
    descriptors: img.vbmeta.descriptors,
  };
}

/** Python's repr() of a bytes object, without the leading b (avbtool prints property values so). */
export function pyBytesRepr(b: Buffer): string {
  const quote = b.includes(0x27) && !b.includes(0x22) ? '"' : "'";
  let s = quote;
  for (const c of b) {
    if (c === 0x5c) s += '\\\\';
    else if (c === quote.charCodeAt(0)) s += `\\${quote}`;
    else if (c === 0x09) s += '\\t';
    else if (c === 0x0a) s += '\\n';
    else if (c === 0x0d) s += '\\r';
    else if (c < 0x20 || c >= 0x7f) s += `\\x${c.toString(16).padStart(2, '0')}`;
    else s += String.fromCharCode(c);
  }
  return s + quote;
}

function pyStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  return quote + s.replaceAll('\\', '\\\\').replaceAll(quote, `\\${quote}`) + quote;
}

function describe(d: AvbDescriptor): string[] {
  switch (d.kind) {
    case 'property':
      return [
        d.value.length < 256
          ? `    Prop: ${d.key} -> ${pyBytesRepr(d.value)}`
          : `    Prop: ${d.key} -> (${d.value.length} bytes)`,
      ];
    case 'hashtree':
      return [
        '    Hashtree descriptor:',
        `      Version of dm-verity:  ${d.dmVerityVersion}`,
        `      Image Size:            ${d.imageSize} bytes`,
        `      Tree Offset:           ${d.treeOffset}`,
        `      Tree Size:             ${d.treeSize} bytes`,
        `      Data Block Size:       ${d.dataBlockSize} bytes`,
        `      Hash Block Size:       ${d.hashBlockSize} bytes`,
        `      FEC num roots:         ${d.fecNumRoots}`,
        `      FEC offset:            ${d.fecOffset}`,
        `      FEC size:              ${d.fecSize} bytes`,
        `      Hash Algorithm:        ${d.hashAlgorithm}`,
        `      Partition Name:        ${d.partitionName}`,
        `      Salt:                  ${d.salt.toString('hex')}`,
        `      Root Digest:           ${d.rootDigest.toString('hex')}`,
        `      Flags:                 ${d.flags}`,
      ];
    case 'hash':
      return [
        '    Hash descriptor:',
        `      Image Size:            ${d.imageSize} bytes`,
        `      Hash Algorithm:        ${d.hashAlgorithm}`,
        `      Partition Name:        ${d.partitionName}`,
        `      Salt:                  ${d.salt.toString('hex')}`,
        `      Digest:                ${d.digest.toString('hex')}`,
        `      Flags:                 ${d.flags}`,
      ];
    case 'kernel_cmdline':
      return [
        '    Kernel Cmdline descriptor:',
        `      Flags:                 ${d.flags}`,
        `      Kernel Cmdline:        '${d.kernelCmdline}'`,
      ];
    case 'chain_partition':
      return [
        '    Chain Partition descriptor:',
        `      Partition Name:          ${d.partitionName}`,
        `      Rollback Index Location: ${d.rollbackIndexLocation}`,
        `      Public key (sha1):       ${createHash('sha1').update(d.publicKey).digest('hex')}`,
        `      Flags:                   ${d.flags}`,
      ];
    case 'unknown':
      return [
        '    Unknown descriptor:',
        `      Tag:  ${d.tag}`,
        d.data.length < 256
          ? `      Data: ${pyStrRepr(`b${pyBytesRepr(d.data)}`)} (${d.data.length} bytes)`
          : `      Data: ${d.data.length} bytes`,
      ];
  }
}

/** The exact text `avbtool info_image` prints for this information (for people and diffing). */
export function formatAvbInfo(i: AvbInfo): string {
  const l: string[] = [];
  if (i.footer) {
    l.push(`Footer version:           ${i.footer.versionMajor}.${i.footer.versionMinor}`);
    l.push(`Image size:               ${i.footer.imageSize} bytes`);
    l.push(`Original image size:      ${i.footer.originalImageSize} bytes`);
    l.push(`VBMeta offset:            ${i.footer.vbmetaOffset}`);
    l.push(`VBMeta size:              ${i.footer.vbmetaSize} bytes`);
    l.push('--');
  }
  l.push(`Minimum libavb version:   ${i.minimumLibavbVersion}${i.sparse ? ' (Sparse)' : ''}`);
  l.push(`Header Block:             ${i.headerBlockSize} bytes`);
  l.push(`Authentication Block:     ${i.authenticationBlockSize} bytes`);
  l.push(`Auxiliary Block:          ${i.auxiliaryBlockSize} bytes`);
  if (i.publicKeySha1) l.push(`Public key (sha1):        ${i.publicKeySha1}`);
  l.push(`Algorithm:                ${i.algorithm}`);
  l.push(`Rollback Index:           ${i.rollbackIndex}`);
  l.push(`Flags:                    ${i.flags}`);
  l.push(`Rollback Index Location:  ${i.rollbackIndexLocation}`);
  l.push(`Release String:           '${i.releaseString}'`);
  l.push('Descriptors:');
  if (!i.descriptors.length) l.push('    (none)');
  for (const d of i.descriptors) l.push(...describe(d));
  return `${l.join('\n')}\n`;
}

/**
 * JSON-safe copy of an AvbInfo: Buffers become hex, bigints decimal strings, and property values
 * are also given as text (`valueText`) when they are valid UTF-8, since most are strings.
 */
export function avbInfoToJson(i: AvbInfo): Record<string, unknown> {
  const strict = new TextDecoder('utf-8', { fatal: true });
  const withText = {
    ...i,
    descriptors: i.descriptors.map((d) => {
      if (d.kind !== 'property') return d;
      let valueText: string | undefined;
      try {
        valueText = strict.decode(d.value);
      } catch {
        valueText = undefined;
      }
      return { ...d, valueText };
    }),
  };
  return JSON.parse(
    JSON.stringify(withText, (_k, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data))
        return Buffer.from(v.data).toString('hex');
      return v;
    }),
  );
}
