/**
 * APK Signature Scheme v2 (apksig V2SchemeVerifier), and the signer-block verification v3 and
 * v3.1 reuse: each signer's signature over its signed data, the certificate/public-key match, the
 * digest list matching the signature list, and the 1 MiB chunked content digest of the whole APK
 * (entries, central directory, EOCD) against the signed digest.
 */
import { VerificationError } from '../../../errors.ts';
import type { ZipArchive } from '../zip.ts';
import { BlockId, type SigningBlock } from './block.ts';
import {
  betterAlgorithm,
  type CertificateInfo,
  type ContentDigest,
  chunkedDigests,
  hex,
  LpReader,
  type ParsedCertificate,
  parseCertificate,
  publicKeyFromSpki,
  SIGNATURE_ALGORITHMS,
  type SignatureAlgorithm,
  schemeFormatError,
  signaturesToVerify,
  signedRegions,
  verifySignature,
  verityDigest,
} from './common.ts';

export type BlockScheme = 'v2' | 'v3' | 'v3.1';

export interface SchemeSigner {
  /** The signer's certificate chain as stored; the first is the signing certificate. */
  certificates: CertificateInfo[];
  /** Name of the signature algorithm verified (apksig's strongest present). */
  algorithm: string;
  /** Every signature algorithm present. */
  algorithms: string[];
  /** v3/v3.1: platform SDK range this signer applies to. */
  minSdk?: number;
  maxSdk?: number;
  /** Additional attributes by id (hex) → value length; interpreted ones are surfaced elsewhere. */
  attributeIds: string[];
}

export interface RawSigner {
  index: number;
  signedData: Buffer;
  minSdk?: number;
  maxSdk?: number;
  signatures: Array<{ alg: number; sig: Buffer }>;
  publicKey: Buffer;
  digests: Array<{ alg: number; digest: Buffer }>;
  certs: Buffer[];
  sdMinSdk?: number;
  sdMaxSdk?: number;
  attributes: Array<{ id: number; value: Buffer }>;
}

/** Splits a v2/v3 block value into signers (format only; no verification). */
export function parseSigners(value: Buffer, scheme: BlockScheme): RawSigner[] {
  const withSdk = scheme !== 'v2';
  const out: RawSigner[] = [];
  const top = new LpReader(value, scheme);
  const signersBuf = top.prefixed('signers');
  for (const [index, sb] of LpReader.sequence(signersBuf, scheme, 'signer').entries()) {
    const r = new LpReader(sb, scheme);
    const signedData = r.prefixed('signed data');
    const minSdk = withSdk ? r.u32('min sdk') : undefined;
    const maxSdk = withSdk ? r.u32('max sdk') : undefined;
    const signatures = LpReader.sequence(r.prefixed('signatures'), scheme, 'signature').map((s) => {
      const sr = new LpReader(s, scheme);
      return { alg: sr.u32('signature algorithm'), sig: sr.prefixed('signature') };
    });
    const publicKey = r.prefixed('public key');
    const sd = new LpReader(signedData, scheme);
    const digests = LpReader.sequence(sd.prefixed('digests'), scheme, 'digest').map((d) => {
      const dr = new LpReader(d, scheme);
      return { alg: dr.u32('digest algorithm'), digest: dr.prefixed('digest') };
    });
    const certs = LpReader.sequence(sd.prefixed('certificates'), scheme, 'certificate');
    const sdMinSdk = withSdk ? sd.u32('signed min sdk') : undefined;
    const sdMaxSdk = withSdk ? sd.u32('signed max sdk') : undefined;
    const attributes = LpReader.sequence(sd.prefixed('additional attributes'), scheme, 'attribute').map(
      (a) => {
        const ar = new LpReader(a, scheme);
        const id = ar.u32('attribute id');
        return { id, value: a.subarray(4) };
      },
    );
    out.push({
      index,
      signedData,
      minSdk,
      maxSdk,
      signatures,
      publicKey,
      digests,
      certs,
      sdMinSdk,
      sdMaxSdk,
      attributes,
    });
  }
  return out;
}

/** The platform versions the APK targets: its minSdkVersion (apksigner's default range). */
export interface PlatformRange {
  minSdk: number;
}

export interface VerifiedSigner {
  raw: RawSigner;
  signer: SchemeSigner;
  certificates: ParsedCertificate[];
}

const HASH_OF: Record<ContentDigest, 'sha256' | 'sha512' | 'verity'> = {
  CHUNKED_SHA256: 'sha256',
  CHUNKED_SHA512: 'sha512',
  VERITY_CHUNKED_SHA256: 'verity',
};

/**
 * Verifies every signer of one v2/v3/v3.1 block value and the APK content digests. Throws a
 * VerificationError naming the scheme, the signer and what mismatched.
 */
export async function verifyBlockSigners(
  zip: ZipArchive,
  block: SigningBlock,
  value: Buffer,
  scheme: BlockScheme,
  platform: PlatformRange,
): Promise<VerifiedSigner[]> {
  let raws: RawSigner[];
  try {
    raws = parseSigners(value, scheme);
  } catch (e) {
    schemeFormatError(scheme, e);
  }
  if (raws.length === 0) throw new VerificationError(scheme, 'no signers', { code: 'APK_SIG_NO_SIGNERS' });
  const results: VerifiedSigner[] = [];
  const needed = new Map<ContentDigest, Array<{ signer: number; expected: Buffer }>>();
  for (const s of raws) {
    const who = `signer #${s.index + 1}`;
    if (s.signatures.length === 0)
      throw new VerificationError(scheme, `${who}: no signatures`, { code: 'APK_SIG_NO_SIGNATURES' });
    // Platform range this signer must verify on: for v2 the APK's from SDK 24 on (apksig passes
    // max(minSdk, N)); for v3/v3.1 the signer's own [minSdk, maxSdk] (V3SchemeVerifier.parseSigner).
    if (scheme !== 'v2' && (s.minSdk! > 0x7fffffff || s.minSdk! > s.maxSdk!))
      throw new VerificationError(scheme, `${who}: invalid SDK version range ${s.minSdk}..${s.maxSdk}`, {
        code: 'APK_SIG_SDK_RANGE_INVALID',
        context: { signer: s.index + 1, minSdk: s.minSdk, maxSdk: s.maxSdk },
      });
    const lo = scheme === 'v2' ? Math.max(platform.minSdk, 24) : s.minSdk!;
    const hi = scheme === 'v2' ? Number.MAX_SAFE_INTEGER : s.maxSdk!;
    const chosen = signaturesToVerify(s.signatures, lo, hi);
    if (!('ok' in chosen))
      throw new VerificationError(
        scheme,
        chosen.minProvided === null
          ? `${who}: no supported signature algorithm`
          : `${who}: no signature verifiable on SDK ${lo}: the oldest supported algorithm needs SDK ${chosen.minProvided}`,
        {
          code: 'APK_SIG_NO_SUPPORTED_ALGORITHM',
          context: {
            found: s.signatures.map((x) => SIGNATURE_ALGORITHMS[x.alg]?.name ?? `0x${x.alg.toString(16)}`),
            minSdk: lo,
          },
        },
      );
    const { key, spki: keySpki } = publicKeyFromSpki(s.publicKey, scheme);
    let best: SignatureAlgorithm | null = null;
    for (const c of chosen.ok) {
      if (!verifySignature(c.algorithm, key, s.signedData, c.sig))
        throw new VerificationError(
          scheme,
          `${who}: ${c.algorithm.name} signature over signed data does not verify`,
          {
            code: 'APK_SIG_SIGNATURE_MISMATCH',
            context: { signer: s.index + 1, algorithm: c.algorithm.name },
          },
        );
      best = best ? betterAlgorithm(best, c.algorithm) : c.algorithm;
    }
    if (!best) throw new Error('unreachable: signaturesToVerify returned no signature');
    if (s.certs.length === 0)
      throw new VerificationError(scheme, `${who}: no certificates`, { code: 'APK_SIG_NO_CERTIFICATES' });
    const certs = s.certs.map((c, i) => parseCertificate(c, scheme, `${who} certificate #${i + 1}`));
    if (!certs[0]!.spki.equals(keySpki))
      throw new VerificationError(
        scheme,
        `${who}: public key mismatch between certificate and signature record`,
        {
          code: 'APK_SIG_PUBLIC_KEY_MISMATCH',
          context: { signer: s.index + 1 },
        },
      );
    const sigAlgs = s.signatures.map((x) => x.alg);
    const digAlgs = s.digests.map((x) => x.alg);
    if (sigAlgs.length !== digAlgs.length || sigAlgs.some((a, i) => a !== digAlgs[i]))
      throw new VerificationError(
        scheme,
        `${who}: signature algorithms don't match between digests and signatures records`,
        {
          code: 'APK_SIG_DIGEST_ALGORITHMS_MISMATCH',
          context: { signatures: sigAlgs, digests: digAlgs },
        },
      );
    if (scheme !== 'v2' && (s.minSdk !== s.sdMinSdk || s.maxSdk !== s.sdMaxSdk))
      throw new VerificationError(
        scheme,
        `${who}: SDK version range differs between signer and signed data`,
        {
          code: 'APK_SIG_SDK_RANGE_MISMATCH',
          context: { signer: [s.minSdk, s.maxSdk], signedData: [s.sdMinSdk, s.sdMaxSdk] },
        },
      );
    for (const c of chosen.ok) {
      const expected = s.digests.find((d) => d.alg === c.alg)!.digest;
      const list = needed.get(c.algorithm.digest) ?? [];
      list.push({ signer: s.index + 1, expected });
      needed.set(c.algorithm.digest, list);
    }
    results.push({
      raw: s,
      certificates: certs,
      signer: {
        certificates: certs.map((c) => c.info),
        algorithm: best.name,
        algorithms: s.signatures.map((x) => SIGNATURE_ALGORITHMS[x.alg]?.name ?? `0x${x.alg.toString(16)}`),
        ...(scheme !== 'v2' ? { minSdk: s.minSdk, maxSdk: s.maxSdk } : {}),
        attributeIds: s.attributes.map((a) => `0x${a.id.toString(16)}`),
      },
    });
  }
  if (zip.layout.zip64)
    throw new VerificationError(scheme, 'ZIP64 APKs cannot carry v2+ signatures', { code: 'APK_SIG_ZIP64' });
  const regions = await signedRegions(zip, block.offset);
  // The verity tree skips the signing block by whole 4 KiB pages: apksig refuses verity digests
  // unless the block starts on a page boundary and spans whole pages (verifyIntegrity).
  if (needed.has('VERITY_CHUNKED_SHA256') && (block.offset % 4096 !== 0 || block.size % 4096 !== 0))
    throw new VerificationError(
      scheme,
      `APK Signing Block at ${block.offset} (${block.size} bytes) is not page aligned, which verity signatures require`,
      { code: 'APK_SIG_VERITY_ALIGNMENT', context: { offset: block.offset, size: block.size } },
    );
  const hashes = [...needed.keys()]
    .map((d) => HASH_OF[d])
    .filter((h): h is 'sha256' | 'sha512' => h !== 'verity');
  const computed = await chunkedDigests(zip, regions, hashes);
  if (needed.has('VERITY_CHUNKED_SHA256')) computed.set('verity', await verityDigest(zip, regions));
  for (const [alg, want] of needed) {
    const got = computed.get(HASH_OF[alg])!;
    for (const w of want)
      if (!got.equals(w.expected))
        throw new VerificationError(
          scheme,
          `signer #${w.signer}: APK content digest (${alg}) mismatch: the ZIP entries, central directory or EOCD changed after signing`,
          {
            code: 'APK_SIG_CONTENT_DIGEST_MISMATCH',
            context: { signer: w.signer, algorithm: alg, expected: hex(w.expected), computed: hex(got) },
          },
        );
  }
  return results;
}

/** apksig V2 "stripping protection" attribute: the signer also signed with the scheme named in the value. */
export const STRIPPING_PROTECTION_ATTR = 0xbeeff00d;

export async function verifyV2(
  zip: ZipArchive,
  block: SigningBlock,
  platform: PlatformRange,
): Promise<VerifiedSigner[] | null> {
  const pair = block.pairs.find((p) => p.id === BlockId.V2);
  if (!pair) return null;
  const signers = await verifyBlockSigners(zip, block, pair.value, 'v2', platform);
  const hasV3 = block.pairs.some((p) => p.id === BlockId.V3);
  for (const s of signers)
    for (const a of s.raw.attributes)
      if (
        a.id === STRIPPING_PROTECTION_ATTR &&
        a.value.length >= 4 &&
        a.value.readUInt32LE(0) === 3 &&
        !hasV3
      )
        throw new VerificationError(
          'v2',
          'signer declares a v3 signature but the APK has no v3 block (v3 stripped)',
          {
            code: 'APK_SIG_V3_STRIPPED',
          },
        );
  return signers;
}
