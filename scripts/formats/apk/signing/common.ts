/**
 * What the APK signature schemes share (apksig ApkSigningBlockUtils, SignatureAlgorithm,
 * ContentDigestAlgorithm): algorithm ids, the 1 MiB chunked content digest over the three zip
 * sections, length-prefixed structures and certificate facts as `apksigner --print-certs` shows them.
 */
import {
  constants,
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { FormatError, VerificationError } from '../../../errors.ts';
import { BinaryReader } from '../../binary.ts';
import type { ZipArchive } from '../zip.ts';

export type ContentDigest = 'CHUNKED_SHA256' | 'CHUNKED_SHA512' | 'VERITY_CHUNKED_SHA256';

export interface SignatureAlgorithm {
  id: number;
  name: string;
  /** First platform SDK that verifies this algorithm in v2+ blocks (apksig getMinSdkVersion). */
  minSdk: number;
  keyType: 'RSA' | 'EC' | 'DSA';
  hash: 'sha256' | 'sha512';
  pss?: { saltLength: number };
  digest: ContentDigest;
}

/** apksig SignatureAlgorithm ids. */
export const SIGNATURE_ALGORITHMS: Record<number, SignatureAlgorithm> = {
  257: {
    id: 0x0101,
    name: 'RSA_PSS_WITH_SHA256',
    minSdk: 24,
    keyType: 'RSA',
    hash: 'sha256',
    pss: { saltLength: 32 },
    digest: 'CHUNKED_SHA256',
  },
  258: {
    id: 0x0102,
    name: 'RSA_PSS_WITH_SHA512',
    minSdk: 24,
    keyType: 'RSA',
    hash: 'sha512',
    pss: { saltLength: 64 },
    digest: 'CHUNKED_SHA512',
  },
  259: {
    id: 0x0103,
    name: 'RSA_PKCS1_V1_5_WITH_SHA256',
    minSdk: 24,
    keyType: 'RSA',
    hash: 'sha256',
    digest: 'CHUNKED_SHA256',
  },
  260: {
    id: 0x0104,
    name: 'RSA_PKCS1_V1_5_WITH_SHA512',
    minSdk: 24,
    keyType: 'RSA',
    hash: 'sha512',
    digest: 'CHUNKED_SHA512',
  },
  513: {
    id: 0x0201,
    name: 'ECDSA_WITH_SHA256',
    minSdk: 24,
    keyType: 'EC',
    hash: 'sha256',
    digest: 'CHUNKED_SHA256',
  },
  514: {
    id: 0x0202,
    name: 'ECDSA_WITH_SHA512',
    minSdk: 24,
    keyType: 'EC',
    hash: 'sha512',
    digest: 'CHUNKED_SHA512',
  },
  769: {
    id: 0x0301,
    name: 'DSA_WITH_SHA256',
    minSdk: 24,
    keyType: 'DSA',
    hash: 'sha256',
    digest: 'CHUNKED_SHA256',
  },
  1057: {
    id: 0x0421,
    name: 'VERITY_RSA_PKCS1_V1_5_WITH_SHA256',
    minSdk: 28,
    keyType: 'RSA',
    hash: 'sha256',
    digest: 'VERITY_CHUNKED_SHA256',
  },
  1059: {
    id: 0x0423,
    name: 'VERITY_ECDSA_WITH_SHA256',
    minSdk: 28,
    keyType: 'EC',
    hash: 'sha256',
    digest: 'VERITY_CHUNKED_SHA256',
  },
  1061: {
    id: 0x0425,
    name: 'VERITY_DSA_WITH_SHA256',
    minSdk: 28,
    keyType: 'DSA',
    hash: 'sha256',
    digest: 'VERITY_CHUNKED_SHA256',
  },
};

/** apksig's preference among content digests: SHA-512 > verity > SHA-256. */
const DIGEST_RANK: Record<ContentDigest, number> = {
  CHUNKED_SHA256: 0,
  VERITY_CHUNKED_SHA256: 1,
  CHUNKED_SHA512: 2,
};

export function betterAlgorithm(a: SignatureAlgorithm, b: SignatureAlgorithm): SignatureAlgorithm {
  return DIGEST_RANK[b.digest] > DIGEST_RANK[a.digest] ? b : a;
}

/**
 * apksig ApkSigningBlockUtils.getSignaturesToVerify: each platform version verifies the strongest
 * signature it supports, so the set to verify is the strongest per algorithm-introduction SDK
 * (e.g. RSA_PKCS1 from 24 *and* VERITY_RSA from 28 when both are present). Fails, like apksig,
 * when no signature is verifiable on `minSdk` (a verity-only signer on an APK for SDK < 28).
 */
export function signaturesToVerify<T extends { alg: number }>(
  signatures: readonly T[],
  minSdk: number,
  maxSdk: number,
): { ok: Array<T & { algorithm: SignatureAlgorithm }> } | { minProvided: number | null } {
  const best = new Map<number, T & { algorithm: SignatureAlgorithm }>();
  let minProvided = Number.POSITIVE_INFINITY;
  for (const s of signatures) {
    const algorithm = SIGNATURE_ALGORITHMS[s.alg];
    if (!algorithm || algorithm.minSdk > maxSdk) continue;
    minProvided = Math.min(minProvided, algorithm.minSdk);
    const cur = best.get(algorithm.minSdk);
    if (!cur || DIGEST_RANK[algorithm.digest] > DIGEST_RANK[cur.algorithm.digest])
      best.set(algorithm.minSdk, { ...s, algorithm });
  }
  if (!best.size || minSdk < minProvided)
    return { minProvided: Number.isFinite(minProvided) ? minProvided : null };
  return { ok: [...best.values()].sort((a, b) => a.algorithm.id - b.algorithm.id) };
}

/** Certificate facts, digests over the DER encoding exactly as apksigner prints them. */
export interface CertificateInfo {
  /** RFC 2253 order as Java prints it, e.g. "CN=Android, OU=Android, O=Android, C=US". */
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  sha256: string;
  sha1: string;
  md5: string;
  keyAlgorithm: 'RSA' | 'EC' | 'DSA' | string;
  keySize: number | null;
  publicKeySha256: string;
}

/** OpenSSL short names (as Node prints them) → the keywords of Java's X500Name.toString(). */
const JAVA_DN_KEYWORDS: Record<string, string> = {
  CN: 'CN',
  C: 'C',
  L: 'L',
  ST: 'ST',
  O: 'O',
  OU: 'OU',
  title: 'T',
  street: 'STREET',
  DC: 'DC',
  dnQualifier: 'DNQUALIFIER',
  SN: 'SURNAME',
  GN: 'GIVENNAME',
  initials: 'INITIALS',
  generationQualifier: 'GENERATION',
  emailAddress: 'EMAILADDRESS',
  UID: 'UID',
  serialNumber: 'SERIALNUMBER',
};

/** Attribute types Java has no keyword for: it prints them as OID.<dotted>. */
const DN_OIDS: Record<string, string> = {
  name: '2.5.4.41',
  postalCode: '2.5.4.17',
  pseudonym: '2.5.4.65',
  businessCategory: '2.5.4.15',
  description: '2.5.4.13',
  telephoneNumber: '2.5.4.20',
  organizationIdentifier: '2.5.4.97',
  postOfficeBox: '2.5.4.18',
  jurisdictionC: '1.3.6.1.4.1.311.60.2.1.3',
  jurisdictionST: '1.3.6.1.4.1.311.60.2.1.2',
  jurisdictionL: '1.3.6.1.4.1.311.60.2.1.1',
};

/** Splits on `sep` where it is not backslash-escaped. */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) {
      cur += s[i]! + s[i + 1]!;
      i++;
    } else if (s.startsWith(sep, i)) {
      out.push(cur);
      cur = '';
      i += sep.length - 1;
    } else cur += s[i];
  }
  out.push(cur);
  return out;
}

/** Undoes OpenSSL's RFC 2253 escaping (\, \" \XX hex). */
function unescapeRfc2253(v: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '\\' && /^[0-9A-Fa-f]{2}$/.test(v.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (v[i] === '\\' && i + 1 < v.length) {
      bytes.push(...Buffer.from(v[i + 1]!, 'utf8'));
      i++;
    } else bytes.push(...Buffer.from(v[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** An attribute value quoted the way Java's AVA.toKeywordValueString does (RFC 1779 style). */
function javaDnValue(v: string): string {
  const specials = ',+=\n<>#;\\"';
  let quote = false;
  let prevWhite = false;
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    const white = c === ' ' || c === '\n';
    if (specials.includes(c) || (i === 0 && white)) quote = true;
    if (white) {
      if (prevWhite) quote = true;
      prevWhite = true;
    } else {
      if (c === '"' || c === '\\') out += '\\';
      prevWhite = false;
    }
    out += c;
  }
  if (out.endsWith(' ') || out.endsWith('\n')) quote = true;
  return quote ? `"${out}"` : out;
}

/**
 * A distinguished name as apksigner prints it (Java X500Name.toString()): most specific RDN first,
 * Java's keywords (EMAILADDRESS, SURNAME, T, …), values quoted rather than backslash-escaped.
 * `s` is Node's X509Certificate subject/issuer: one RDN per line, " + " between multi-valued AVAs.
 */
export function javaDistinguishedName(s: string): string {
  return splitUnescaped(s, '\n')
    .filter(Boolean)
    .reverse()
    .map((rdn) =>
      splitUnescaped(rdn, ' + ')
        .map((ava) => {
          const eq = splitUnescaped(ava, '=')[0]!.length;
          const key = ava.slice(0, eq);
          const value = unescapeRfc2253(ava.slice(eq + 1));
          const keyword =
            JAVA_DN_KEYWORDS[key] ??
            (DN_OIDS[key] ? `OID.${DN_OIDS[key]}` : /^\d+(\.\d+)+$/.test(key) ? `OID.${key}` : key);
          return `${keyword}=${javaDnValue(value)}`;
        })
        .join(' + '),
    )
    .join(', ');
}

export interface ParsedCertificate {
  der: Buffer;
  info: CertificateInfo;
  publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER, compared against v2/v3 signer public keys. */
  spki: Buffer;
}

/**
 * Bounded content-keyed memo (key: the exact input bytes). Only pure parses of bytes go here —
 * never a verification verdict — so a hit is indistinguishable from parsing again. Failures are
 * not cached. Certificates repeat within an APK (v1, v2, v3, lineage carry the same signer) and
 * across APKs of one developer or platform.
 */
export class ContentMemo<T> {
  private readonly map = new Map<string, T>();
  constructor(private readonly limit = 256) {}
  get(bytes: Uint8Array, make: () => T): T {
    const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    const hit = this.map.get(key);
    if (hit !== undefined) return hit;
    const v = make();
    if (this.map.size >= this.limit) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, v);
    return v;
  }
}

const certMemo = new ContentMemo<ParsedCertificate>();

export function parseCertificate(der: Buffer, scheme: string, what: string): ParsedCertificate {
  try {
    // Callers get their own `der` and `info` objects; the KeyObject and SPKI bytes are immutable.
    const c = certMemo.get(der, () => parseCertificateUnchecked(Buffer.from(der)));
    return { der, publicKey: c.publicKey, spki: c.spki, info: { ...c.info } };
  } catch (e) {
    throw new VerificationError(scheme, `malformed certificate (${what}): ${(e as Error).message ?? e}`, {
      code: 'APK_CERT_MALFORMED',
      context: { what },
    });
  }
}

function parseCertificateUnchecked(der: Buffer): ParsedCertificate {
  const x = new X509Certificate(der);
  const publicKey = x.publicKey;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const d = publicKey.asymmetricKeyDetails ?? {};
  const kt = publicKey.asymmetricKeyType;
  const keySize =
    kt === 'rsa' || kt === 'rsa-pss' || kt === 'dsa'
      ? (d.modulusLength ?? null)
      : kt === 'ec'
        ? (({ prime256v1: 256, secp384r1: 384, secp521r1: 521 } as Record<string, number>)[
            d.namedCurve ?? ''
          ] ?? null)
        : null;
  return {
    der,
    publicKey,
    spki,
    info: {
      subject: javaDistinguishedName(x.subject),
      issuer: javaDistinguishedName(x.issuer),
      serialNumber: x.serialNumber.toLowerCase(),
      notBefore: new Date(x.validFrom).toISOString(),
      notAfter: new Date(x.validTo).toISOString(),
      sha256: createHash('sha256').update(der).digest('hex'),
      sha1: createHash('sha1').update(der).digest('hex'),
      md5: createHash('md5').update(der).digest('hex'),
      keyAlgorithm:
        kt === 'rsa' || kt === 'rsa-pss' ? 'RSA' : kt === 'ec' ? 'EC' : kt === 'dsa' ? 'DSA' : String(kt),
      keySize,
      publicKeySha256: createHash('sha256').update(spki).digest('hex'),
    },
  };
}

const keyMemo = new ContentMemo<{ key: KeyObject; spki: Buffer }>();

/**
 * The public key of a v2/v3 signer record, with its SPKI as Node re-encodes it (what the
 * certificate's key is compared against).
 */
export function publicKeyFromSpki(spki: Buffer, scheme: string): { key: KeyObject; spki: Buffer } {
  try {
    return keyMemo.get(spki, () => {
      const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      return { key, spki: key.export({ type: 'spki', format: 'der' }) };
    });
  } catch (e) {
    throw new VerificationError(scheme, `malformed public key: ${(e as Error).message}`, {
      code: 'APK_KEY_MALFORMED',
    });
  }
}

/** Verifies `sig` over `data` with an apksig signature algorithm; false on mismatch. */
export function verifySignature(alg: SignatureAlgorithm, key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    if (alg.pss)
      return cryptoVerify(
        alg.hash,
        data,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss.saltLength },
        sig,
      );
    return cryptoVerify(alg.hash, data, key, sig);
  } catch {
    return false;
  }
}

/** Reader for apksig's little-endian length-prefixed structures; errors name the scheme. */
export class LpReader {
  readonly r: BinaryReader;
  constructor(buf: Buffer, scheme: string, baseOffset = 0) {
    this.r = new BinaryReader(buf, `apk-${scheme}`, baseOffset);
  }
  get remaining(): number {
    return this.r.remaining;
  }
  u32(field: string): number {
    return this.r.u32le(field);
  }
  /** u32 length then that many bytes. */
  prefixed(field: string): Buffer {
    const at = this.r.pos;
    const n = this.r.u32le(`${field} length`);
    if (n > this.r.remaining)
      this.r.fail('length-prefixed field exceeds its container', {
        field,
        at,
        expected: `<= ${this.r.remaining}`,
        found: n,
      });
    return this.r.bytes(n, field);
  }
  /** A sequence of length-prefixed items filling a length-prefixed buffer. */
  static sequence(buf: Buffer, scheme: string, field: string): Buffer[] {
    const r = new LpReader(buf, scheme);
    const out: Buffer[] = [];
    while (r.remaining > 0) out.push(r.prefixed(field));
    return out;
  }
}

/** The three regions v2+ signatures cover, with the EOCD's CD offset pointing at the signing block. */
export interface SignedRegions {
  beforeBlockEnd: number;
  centralDirectoryOffset: number;
  centralDirectorySize: number;
  /** EOCD bytes with the central directory offset field patched. */
  eocd: Buffer;
}

export async function signedRegions(zip: ZipArchive, signingBlockOffset: number): Promise<SignedRegions> {
  const l = zip.layout;
  const eocd = Buffer.from(await zip.source.read(l.eocdOffset, l.eocdSize));
  eocd.writeUInt32LE(signingBlockOffset, 16);
  return {
    beforeBlockEnd: signingBlockOffset,
    centralDirectoryOffset: l.centralDirectoryOffset,
    centralDirectorySize: l.centralDirectorySize,
    eocd,
  };
}

const CHUNK = 1024 * 1024;

/**
 * apksig "chunked" content digests, streamed from the file 1 MiB at a time: each chunk digest
 * is H(0xa5 || u32le len || chunk), the top digest H(0x5a || u32le chunkCount || chunk digests).
 * Several algorithms are computed in one pass.
 */
export async function chunkedDigests(
  zip: ZipArchive,
  regions: SignedRegions,
  algorithms: ReadonlyArray<'sha256' | 'sha512'>,
): Promise<Map<string, Buffer>> {
  // v2, v3 and v3.1 digest the same bytes: compute each algorithm once per archive.
  let cache = digestCache.get(zip);
  if (!cache) {
    cache = new Map();
    digestCache.set(zip, cache);
  }
  const key = (a: string) => `${a}@${regions.beforeBlockEnd}`;
  const missing = algorithms.filter((a) => !cache.has(key(a)));
  if (missing.length)
    for (const [a, d] of await computeChunkedDigests(zip, regions, missing)) cache.set(key(a), d);
  return new Map(algorithms.map((a) => [a, cache.get(key(a))!]));
}

const digestCache = new WeakMap<ZipArchive, Map<string, Buffer>>();

async function computeChunkedDigests(
  zip: ZipArchive,
  regions: SignedRegions,
  algorithms: ReadonlyArray<'sha256' | 'sha512'>,
): Promise<Map<string, Buffer>> {
  const chunkDigests = new Map<string, Buffer[]>(algorithms.map((a) => [a, []]));
  const prefix = Buffer.alloc(5);
  prefix[0] = 0xa5;
  const add = (chunk: Buffer) => {
    prefix.writeUInt32LE(chunk.length, 1);
    for (const a of algorithms)
      chunkDigests.get(a)!.push(createHash(a).update(prefix).update(chunk).digest());
  };
  const section = async (start: number, len: number) => {
    for (let p = 0; p < len; p += CHUNK) add(await zip.source.read(start + p, Math.min(CHUNK, len - p)));
  };
  await section(0, regions.beforeBlockEnd);
  await section(regions.centralDirectoryOffset, regions.centralDirectorySize);
  for (let p = 0; p < regions.eocd.length; p += CHUNK) add(regions.eocd.subarray(p, p + CHUNK));
  const out = new Map<string, Buffer>();
  for (const a of algorithms) {
    const list = chunkDigests.get(a)!;
    const head = Buffer.alloc(5);
    head[0] = 0x5a;
    head.writeUInt32LE(list.length, 1);
    const h = createHash(a).update(head);
    for (const d of list) h.update(d);
    out.set(a, h.digest());
  }
  return out;
}

/**
 * Verity digest (apksig computeApkVerityDigest + VerityTreeBuilder) used by the VERITY_*
 * algorithms: a SHA-256 Merkle tree over 4 KiB blocks of the same three regions, every node
 * hashed as SHA-256(8 zero bytes of salt || block), levels zero padded to 4 KiB; the result is
 * root hash || u64le(total length of the regions).
 */
const VERITY_SALT = Buffer.alloc(8);

function saltedSha256(block: Buffer): Buffer {
  return createHash('sha256').update(VERITY_SALT).update(block).digest();
}

export async function verityDigest(zip: ZipArchive, regions: SignedRegions): Promise<Buffer> {
  // v2, v3 and v3.1 may all carry VERITY_* signatures over the same bytes: compute it once per archive.
  let cache = digestCache.get(zip);
  if (!cache) {
    cache = new Map();
    digestCache.set(zip, cache);
  }
  const key = `verity@${regions.beforeBlockEnd}`;
  let d = cache.get(key);
  if (!d) {
    d = await computeVerityDigest(zip, regions);
    cache.set(key, d);
  }
  return d;
}

async function computeVerityDigest(zip: ZipArchive, regions: SignedRegions): Promise<Buffer> {
  const BLOCK = 4096;
  const leaves: Buffer[] = [];
  let carry = Buffer.alloc(0);
  let total = 0;
  const feed = (b: Buffer) => {
    total += b.length;
    let buf = carry.length ? Buffer.concat([carry, b]) : b;
    let p = 0;
    for (; p + BLOCK <= buf.length; p += BLOCK) leaves.push(saltedSha256(buf.subarray(p, p + BLOCK)));
    carry = Buffer.from(buf.subarray(p));
    buf = Buffer.alloc(0);
  };
  const section = async (start: number, len: number) => {
    for (let p = 0; p < len; p += CHUNK) feed(await zip.source.read(start + p, Math.min(CHUNK, len - p)));
  };
  await section(0, regions.beforeBlockEnd);
  await section(regions.centralDirectoryOffset, regions.centralDirectorySize);
  feed(regions.eocd);
  if (carry.length) leaves.push(saltedSha256(Buffer.concat([carry, Buffer.alloc(BLOCK - carry.length)])));
  // Levels of hashes over 4 KiB blocks until one block holds the level; the root is the hash of that block.
  let level = Buffer.concat(leaves);
  const pad = (b: Buffer) =>
    b.length % BLOCK || b.length === 0 ? Buffer.concat([b, Buffer.alloc(BLOCK - (b.length % BLOCK))]) : b;
  while (level.length > BLOCK) {
    const padded = pad(level);
    const next: Buffer[] = [];
    for (let p = 0; p < padded.length; p += BLOCK) next.push(saltedSha256(padded.subarray(p, p + BLOCK)));
    level = Buffer.concat(next);
  }
  const root = saltedSha256(pad(level));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(total));
  return Buffer.concat([root, len]);
}

export function hex(b: Buffer): string {
  return b.toString('hex');
}

/** Turns a parse failure inside a scheme's block into that scheme's VerificationError. */
export function schemeFormatError(scheme: string, e: unknown): never {
  if (e instanceof VerificationError) throw e;
  if (e instanceof FormatError)
    throw new VerificationError(scheme, `malformed signature data: ${e.message}`, {
      code: 'APK_SIG_MALFORMED',
      context: { ...e.context },
      cause: e,
    });
  throw e;
}
