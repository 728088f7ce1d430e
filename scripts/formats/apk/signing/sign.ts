/**
 * APK Signature Scheme v2/v3 signer (apksig ApkSigner + V2SchemeSigner/V3SchemeSigner +
 * ApkSigningBlockUtils), so the build can sign the APKs it makes without a JVM per APK.
 *
 * Output layout, as apksigner 31 writes it for an unsigned, already aligned input:
 *   entries (copied as-is) | zero padding to 4096 | APK Signing Block (v2, v3, "Brew" padding
 *   pair: a multiple of 4096 bytes) | central directory (unchanged) | EOCD (CD offset updated).
 * The content digest covers the padded entries, the central directory and the EOCD with its CD
 * offset pointing at the signing block. With RSA keys (PKCS#1 v1.5 is deterministic) the result
 * is byte-identical to apksigner 31's `sign --v1-signing-enabled false --min-sdk-version 24+`; ECDSA
 * and DSA signatures are randomized, so only the structure matches.
 *
 * No v1 (JAR) signature: the platform ignores it from SDK 24 when a v2/v3 one exists, so this
 * signer refuses minSdk < 24 instead of producing an APK older platforms would reject.
 */
import {
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { InputError } from '../../../errors.ts';
import { type ByteSource, bufferSource, openFileSource, ZipArchive } from '../zip.ts';
import { APK_SIG_BLOCK_MAGIC, BlockId, findSigningBlock } from './block.ts';
import { chunkedDigests, SIGNATURE_ALGORITHMS, type SignatureAlgorithm, signedRegions } from './common.ts';
import { STRIPPING_PROTECTION_ATTR } from './v2.ts';

/** A signer's private key and certificate, as PEM/DER bytes or Node key objects. */
export interface ApkSigningKey {
  privateKey: string | Buffer | KeyObject;
  /** X.509 certificate, PEM or DER. */
  certificate: string | Buffer;
}

export interface SignApkOptions {
  /** The APK's minSdkVersion; must be >= 24 (no v1 signature is written). */
  minSdk: number;
  /** Also write an APK Signature Scheme v3 block (no rotation); default false. */
  v3?: boolean;
}

/** apksig ApkSigningBlockUtils.ANDROID_COMMON_PAGE_ALIGNMENT_BYTES. */
const PAGE = 4096;
/** apksig: v3 signers apply up to Integer.MAX_VALUE. */
const V3_MAX_SDK = 0x7fffffff;
/** apksig ApkSigner: data alignment of stored entries, and of native libraries. */
const STORED_ALIGNMENT = 4;
const LIBRARY_ALIGNMENT = 4096;

/** apksig's alignment for a stored entry's data when no 0xd935 extra field says otherwise. */
export function defaultDataAlignment(name: string): number {
  return name.endsWith('.so') ? LIBRARY_ALIGNMENT : STORED_ALIGNMENT;
}

/**
 * Reads a key pair from a PEM private key file (else, as AOSP keeps its keys, an unencrypted
 * DER PKCS#8 `.pk8`) and a PEM/DER certificate file.
 */
export async function loadApkSigningKey(paths: {
  keyPem: string;
  keyPk8?: string;
  certPem: string;
}): Promise<ApkSigningKey> {
  const certificate = await readFile(paths.certPem);
  if (paths.keyPem || !paths.keyPk8) return { privateKey: await readFile(paths.keyPem), certificate };
  const der = await readFile(paths.keyPk8);
  try {
    return { privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), certificate };
  } catch (e) {
    throw new InputError(`${paths.keyPk8}: not an unencrypted PKCS#8 private key: ${(e as Error).message}`, {
      code: 'SIGNING_KEY_INVALID',
      context: { file: paths.keyPk8 },
      cause: e,
    });
  }
}

interface PreparedKey {
  privateKey: KeyObject;
  certDer: Buffer;
  spki: Buffer;
  algorithm: SignatureAlgorithm;
}

function prepareKey(key: ApkSigningKey): PreparedKey {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(key.certificate);
  } catch (e) {
    throw new InputError(`signing certificate is not a valid X.509 certificate: ${(e as Error).message}`, {
      code: 'SIGNING_CERT_INVALID',
      cause: e,
    });
  }
  let privateKey: KeyObject;
  try {
    privateKey =
      typeof key.privateKey === 'object' && !Buffer.isBuffer(key.privateKey)
        ? key.privateKey
        : createPrivateKey(key.privateKey);
  } catch (e) {
    throw new InputError(`signing key is not a valid private key: ${(e as Error).message}`, {
      code: 'SIGNING_KEY_INVALID',
      cause: e,
    });
  }
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  // apksig does not check this; an APK signed with a key that doesn't match its certificate
  // would only fail later, on the device.
  if (!createPublicKey(privateKey).export({ type: 'spki', format: 'der' }).equals(spki))
    throw new InputError('signing key does not match the certificate', {
      code: 'SIGNING_KEY_CERT_MISMATCH',
      context: { subject: cert.subject },
    });
  return { privateKey, certDer: cert.raw, spki, algorithm: chooseAlgorithm(cert.publicKey) };
}

const EC_CURVE_BITS: Record<string, number> = {
  prime192v1: 192,
  secp224r1: 224,
  prime256v1: 256,
  secp256k1: 256,
  secp384r1: 384,
  secp521r1: 521,
};

/**
 * apksig getSuggestedSignatureAlgorithms without verity (apksigner's default): SHA-256 up to
 * RSA 3072 / EC P-256, SHA-512 above; DSA always SHA-256.
 */
function chooseAlgorithm(pub: KeyObject): SignatureAlgorithm {
  const d = pub.asymmetricKeyDetails ?? {};
  const id = (() => {
    switch (pub.asymmetricKeyType) {
      case 'rsa':
        return (d.modulusLength ?? 0) <= 3072 ? 0x0103 : 0x0104;
      case 'ec': {
        const bits = EC_CURVE_BITS[d.namedCurve ?? ''];
        if (bits === undefined)
          throw new InputError(`unsupported EC curve ${d.namedCurve}`, {
            code: 'SIGNING_KEY_UNSUPPORTED',
            context: { curve: d.namedCurve },
          });
        return bits <= 256 ? 0x0201 : 0x0202;
      }
      case 'dsa':
        return 0x0301;
      default:
        throw new InputError(`unsupported signing key type ${pub.asymmetricKeyType}`, {
          code: 'SIGNING_KEY_UNSUPPORTED',
          context: { keyType: pub.asymmetricKeyType },
        });
    }
  })();
  return SIGNATURE_ALGORITHMS[id]!;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const lp = (b: Buffer) => Buffer.concat([u32(b.length), b]);
const lpSeq = (items: Buffer[]) => lp(Buffer.concat(items.map(lp)));

/**
 * One signer block (V2SchemeSigner/V3SchemeSigner.generateSignerBlock). v3 adds the SDK range
 * to both the signed data and the signer; v2 carries the stripping-protection attribute when v3
 * is also written, so removing the v3 block is detected.
 */
function signerBlock(k: PreparedKey, digest: Buffer, scheme: 'v2' | 'v3', withV3: boolean): Buffer {
  const alg = k.algorithm;
  const digests = lpSeq([Buffer.concat([u32(alg.id), lp(digest)])]);
  const certs = lpSeq([k.certDer]);
  const sdk = Buffer.concat([u32(alg.minSdk), u32(V3_MAX_SDK)]);
  const attrs =
    scheme === 'v2' && withV3 ? lpSeq([Buffer.concat([u32(STRIPPING_PROTECTION_ATTR), u32(3)])]) : lpSeq([]);
  // apksig's V2SchemeSigner ends v2 signed data with an empty length-prefixed field (a u32 0)
  // that verifiers skip; written so the bytes equal apksigner's.
  const signedData =
    scheme === 'v2'
      ? Buffer.concat([digests, certs, attrs, u32(0)])
      : Buffer.concat([digests, certs, sdk, attrs]);
  // PKCS#1 v1.5 for RSA (Node's default padding); DER-encoded (r, s) for ECDSA/DSA, as Java emits.
  const sig = cryptoSign(alg.hash, signedData, k.privateKey);
  const signatures = lpSeq([Buffer.concat([u32(alg.id), lp(sig)])]);
  const signer =
    scheme === 'v2'
      ? Buffer.concat([lp(signedData), signatures, lp(k.spki)])
      : Buffer.concat([lp(signedData), sdk, signatures, lp(k.spki)]);
  return lpSeq([signer]);
}

/**
 * ApkSigningBlockUtils.generateApkSigningBlock: the pairs, then a "Brew" padding pair (at least
 * 12 bytes: u64 length + u32 id) that makes the whole block a multiple of 4096 bytes.
 */
export function buildSigningBlock(pairs: Array<{ id: number; value: Buffer }>): Buffer {
  let size = 8 + 8 + 16;
  for (const p of pairs) size += 12 + p.value.length;
  const all = [...pairs];
  if (size % PAGE) {
    let padding = PAGE - (size % PAGE);
    if (padding < 12) padding += PAGE;
    all.push({ id: BlockId.VERITY_PADDING, value: Buffer.alloc(padding - 12) });
    size += padding;
  }
  const out = Buffer.alloc(size);
  let p = 0;
  out.writeBigUInt64LE(BigInt(size - 8), p);
  p += 8;
  for (const pair of all) {
    out.writeBigUInt64LE(BigInt(pair.value.length + 4), p);
    out.writeUInt32LE(pair.id >>> 0, p + 8);
    pair.value.copy(out, p + 12);
    p += 12 + pair.value.length;
  }
  out.writeBigUInt64LE(BigInt(size - 8), p);
  APK_SIG_BLOCK_MAGIC.copy(out, p + 8);
  return out;
}

/** Byte ranges of several sources seen as one (the signed APK before its block exists). */
function chainedSource(
  parts: Array<{ src: ByteSource; start: number; len: number }>,
  name: string,
): ByteSource {
  const size = parts.reduce((n, p) => n + p.len, 0);
  return {
    name,
    size,
    async read(pos, len) {
      const out: Buffer[] = [];
      let base = 0;
      for (const p of parts) {
        const lo = Math.max(pos, base);
        const hi = Math.min(pos + len, base + p.len);
        if (lo < hi) out.push(await p.src.read(p.start + lo - base, hi - lo));
        base += p.len;
      }
      return out.length === 1 ? out[0]! : Buffer.concat(out);
    },
    close: async () => {},
  };
}

/** What goes into the output file, in order. */
interface SignedLayout {
  /** The input's entries section [0, entriesEnd), then `padding` zero bytes. */
  entriesEnd: number;
  padding: number;
  block: Buffer;
  centralDirectory: Buffer;
  eocd: Buffer;
}

async function layoutSigned(
  zip: ZipArchive,
  key: ApkSigningKey,
  opts: SignApkOptions,
): Promise<SignedLayout> {
  const fail = (message: string, code: string, context: Record<string, unknown> = {}): never => {
    throw new InputError(`${zip.name}: ${message}`, { code, context: { file: zip.name, ...context } });
  };
  if (!Number.isInteger(opts.minSdk) || opts.minSdk < 24)
    fail(
      `minSdk ${opts.minSdk} < 24 needs a v1 (JAR) signature, which this signer does not write`,
      'SIGN_MIN_SDK_UNSUPPORTED',
      { minSdk: opts.minSdk },
    );
  if (zip.layout.zip64) fail('ZIP64 APKs cannot carry v2+ signatures', 'APK_SIG_ZIP64');
  // Signed input is stripped first, as apksig strips it (resign.ts).
  if (await findSigningBlock(zip)) fail('already has an APK Signing Block', 'APK_ALREADY_SIGNED');
  const jar = zip.entries.find((e) => /^META-INF\/[^/]+\.(SF|RSA|DSA|EC)$/i.test(e.name));
  if (jar) fail(`already has a v1 signature (${jar.name})`, 'APK_ALREADY_SIGNED', { entry: jar.name });
  // apksigner re-aligns stored entries (moving every later one); we copy entries as they are,
  // so the input must already be aligned the way apksigner would leave it (zipalign -f 4 does).
  for (const e of zip.entries) {
    if (e.method !== 0) continue;
    const align = defaultDataAlignment(e.name);
    const at = await zip.dataOffset(e);
    if (at % align)
      fail(
        `stored entry ${e.name} data at ${at} is not ${align}-byte aligned; zipalign it first`,
        'APK_NOT_ALIGNED',
        {
          entry: e.name,
          offset: at,
          expected: `multiple of ${align}`,
        },
      );
  }
  const l = zip.layout;
  const entriesEnd = l.centralDirectoryOffset;
  const padding = (PAGE - (entriesEnd % PAGE)) % PAGE;
  const blockOffset = entriesEnd + padding;
  const centralDirectory = Buffer.from(
    await zip.source.read(l.centralDirectoryOffset, l.centralDirectorySize),
  );
  const eocdIn = Buffer.from(await zip.source.read(l.eocdOffset, l.eocdSize));
  const eocdDigested = Buffer.from(eocdIn);
  eocdDigested.writeUInt32LE(blockOffset, 16);

  // The APK as the digest sees it: padded entries, CD, EOCD pointing at where the block will go.
  const digestView = await ZipArchive.open(
    chainedSource(
      [
        { src: zip.source, start: 0, len: entriesEnd },
        { src: bufferSource(Buffer.alloc(padding)), start: 0, len: padding },
        { src: bufferSource(centralDirectory), start: 0, len: centralDirectory.length },
        { src: bufferSource(eocdDigested), start: 0, len: eocdDigested.length },
      ],
      zip.name,
    ),
  );
  const k = prepareKey(key);
  const digest = (
    await chunkedDigests(digestView, await signedRegions(digestView, blockOffset), [k.algorithm.hash])
  ).get(k.algorithm.hash)!;
  const pairs: Array<{ id: number; value: Buffer }> = [
    { id: BlockId.V2, value: signerBlock(k, digest, 'v2', !!opts.v3) },
  ];
  if (opts.v3) pairs.push({ id: BlockId.V3, value: signerBlock(k, digest, 'v3', true) });
  const block = buildSigningBlock(pairs);
  const eocd = Buffer.from(eocdIn);
  eocd.writeUInt32LE(blockOffset + block.length, 16);
  return { entriesEnd, padding, block, centralDirectory, eocd };
}

/** Signs an unsigned, aligned APK in memory; returns the signed APK. */
export async function signApkBuffer(apk: Buffer, key: ApkSigningKey, opts: SignApkOptions): Promise<Buffer> {
  const zip = await ZipArchive.open(bufferSource(apk, '<apk>'));
  const s = await layoutSigned(zip, key, opts);
  return Buffer.concat([
    apk.subarray(0, s.entriesEnd),
    Buffer.alloc(s.padding),
    s.block,
    s.centralDirectory,
    s.eocd,
  ]);
}

/**
 * Signs the APK at inPath (unsigned, zipaligned) into outPath with v2 (and optionally v3)
 * signatures. outPath may equal inPath; the file is replaced atomically.
 */
export async function signApkFile(
  inPath: string,
  outPath: string,
  key: ApkSigningKey,
  opts: SignApkOptions,
): Promise<void> {
  const src = await openFileSource(inPath);
  let s: SignedLayout;
  let entries: Buffer;
  try {
    const zip = await ZipArchive.open(src);
    s = await layoutSigned(zip, key, opts);
    entries = await src.read(0, s.entriesEnd);
  } finally {
    await src.close();
  }
  const tmp = `${outPath}.omie-sign-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, [entries, Buffer.alloc(s.padding), s.block, s.centralDirectory, s.eocd]);
    await rename(tmp, outPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
