/**
 * v1 (JAR) signature verification as apksig's V1SchemeVerifier does it: for each
 * META-INF/<name>.(RSA|DSA|EC) PKCS#7 SignedData block, the signature over <name>.SF (or over its
 * signed attributes, whose messageDigest must be the .SF digest); the .SF's digest of the whole
 * MANIFEST.MF (or, failing that, of each manifest section); and the digest of every zip entry
 * listed in MANIFEST.MF. Every entry that needs protection must be listed. Entry data is streamed.
 */
import { createHash, verify as cryptoVerify } from 'node:crypto';
import { FormatError, VerificationError } from '../../../errors.ts';
import type { ZipArchive, ZipEntry } from '../zip.ts';
import { type CertificateInfo, type ParsedCertificate, parseCertificate } from './common.ts';
import { Pkcs7ParseError, type Pkcs7SignerInfo, parsePkcs7Fast, parsePkcs7WithPkijs } from './pkcs7.ts';

const SCHEME = 'v1';

/** JAR manifest digest attribute prefix → node hash name. */
const JAR_DIGESTS: Record<string, string> = {
  'SHA-512': 'sha512',
  'SHA-384': 'sha384',
  'SHA-256': 'sha256',
  SHA1: 'sha1',
  'SHA-1': 'sha1',
  MD5: 'md5',
};

const OID_HASH: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '1.2.840.113549.2.5': 'md5',
};

export interface ManifestSection {
  name: string | null;
  attributes: Map<string, string>;
  /** Exact bytes of the section including its terminating blank line (digested by .SF). */
  bytes: Buffer;
}

/** java.util.jar.Manifest-compatible parser keeping each section's raw bytes. */
export function parseJarManifest(
  buf: Buffer,
  file: string,
): { main: ManifestSection; sections: ManifestSection[] } {
  const s = buf.toString('latin1');
  const sections: ManifestSection[] = [];
  let start = 0;
  let pos = 0;
  let attrs = new Map<string, string>();
  let lastKey: string | null = null;
  const finish = (end: number) => {
    const name = attrs.get('Name') ?? null;
    sections.push({ name, attributes: attrs, bytes: buf.subarray(start, end) });
    attrs = new Map();
    lastKey = null;
    start = end;
  };
  while (pos < s.length) {
    let eol = pos;
    while (eol < s.length && s[eol] !== '\n' && s[eol] !== '\r') eol++;
    const line = s.slice(pos, eol);
    let next = eol;
    if (s[next] === '\r') {
      next++;
      if (s[next] === '\n') next++;
    } else if (s[next] === '\n') next++;
    if (line === '') {
      if (attrs.size > 0 || sections.length === 0) finish(next);
      else start = next;
    } else if (line.startsWith(' ')) {
      if (lastKey === null)
        throw new FormatError({
          format: 'jar-manifest',
          reason: 'continuation line without attribute',
          offset: pos,
          file,
        });
      attrs.set(lastKey, attrs.get(lastKey)! + line.slice(1));
    } else {
      const c = line.indexOf(': ');
      if (c <= 0)
        throw new FormatError({
          format: 'jar-manifest',
          reason: 'malformed attribute line',
          offset: pos,
          found: line.slice(0, 80),
          file,
        });
      lastKey = line.slice(0, c);
      attrs.set(lastKey, line.slice(c + 2));
    }
    pos = next;
  }
  if (attrs.size > 0 || start < buf.length) finish(buf.length);
  for (const sec of sections)
    for (const [k, v] of sec.attributes) sec.attributes.set(k, Buffer.from(v, 'latin1').toString('utf8'));
  if (sections[0]) {
    const n = sections[0].attributes.get('Name');
    sections[0].name = n ?? null;
  }
  const main = sections.shift() ?? { name: null, attributes: new Map(), bytes: Buffer.alloc(0) };
  return { main, sections: sections.filter((x) => x.attributes.size > 0) };
}

/** Digest attributes of a section: [hash, base64 value] for each recognised "<ALG><suffix>". */
function digestsOf(
  sec: ManifestSection,
  suffix: string,
): Array<{ alg: string; hash: string; value: string }> {
  const out: Array<{ alg: string; hash: string; value: string }> = [];
  for (const [k, v] of sec.attributes) {
    if (!k.endsWith(suffix)) continue;
    const alg = k.slice(0, -suffix.length);
    const hash = JAR_DIGESTS[alg.toUpperCase()] ?? JAR_DIGESTS[alg];
    if (hash) out.push({ alg, hash, value: v.trim() });
  }
  return out;
}

/** apksig isJarEntryDigestNeededInManifest: every file but the signature files must be in MANIFEST.MF. */
export function needsV1Digest(name: string): boolean {
  if (name.endsWith('/')) return false;
  if (!name.startsWith('META-INF/')) return true;
  const rest = name.slice('META-INF/'.length);
  if (rest.includes('/')) return true;
  const l = rest.toLowerCase();
  return !(
    l === 'manifest.mf' ||
    l.endsWith('.sf') ||
    l.endsWith('.rsa') ||
    l.endsWith('.dsa') ||
    l.endsWith('.ec') ||
    l.startsWith('sig-')
  );
}

export interface V1Signer {
  /** Base name of the signature files, e.g. "CERT" for META-INF/CERT.SF + CERT.RSA. */
  name: string;
  certificates: CertificateInfo[];
  digestAlgorithm: string;
  signatureAlgorithmOid: string;
}

export interface V1Result {
  signers: V1Signer[];
  parsedSigners: ParsedCertificate[];
  /** Schemes named in the .SF X-Android-APK-Signed header (stripping protection). */
  apkSignedSchemes: number[];
  entriesVerified: number;
}

function fail(message: string, code: string, context: Record<string, unknown> = {}): never {
  throw new VerificationError(SCHEME, message, { code, context });
}

/** Verifies one PKCS#7 block over its .SF; returns the signer certificate. */
function verifyPkcs7(
  block: Buffer,
  sf: Buffer,
  blockName: string,
  minSdk: number,
): { cert: ParsedCertificate; chain: ParsedCertificate[]; hash: string; sigOid: string } {
  let sd = parsePkcs7Fast(block);
  if (!sd) {
    try {
      const r = parsePkcs7WithPkijs(block);
      if (!r.sd)
        fail(`${blockName}: not PKCS#7 SignedData`, 'APK_V1_PKCS7_MALFORMED', { found: r.contentType });
      sd = r.sd;
    } catch (e) {
      if (e instanceof VerificationError) throw e;
      if (e instanceof Pkcs7ParseError) fail(`${blockName}: ${e.message}`, 'APK_V1_PKCS7_MALFORMED');
      fail(`${blockName}: malformed PKCS#7: ${(e as Error).message ?? e}`, 'APK_V1_PKCS7_MALFORMED');
    }
  }
  if (!sd.signerInfos.length) fail(`${blockName}: no SignerInfo`, 'APK_V1_NO_SIGNERS');
  const chain = sd.certificates.map((d, i) =>
    parseCertificate(d, SCHEME, `${blockName} certificate #${i + 1}`),
  );
  // Before Android 7.0 only the first SignerInfo is tried; from 7.0 on, the first that verifies
  // wins (apksig verifySigBlockAgainstSigFile).
  const candidates = minSdk < 24 ? sd.signerInfos.slice(0, 1) : sd.signerInfos;
  let lastError: unknown;
  for (const si of candidates) {
    try {
      return verifySignerInfo(si, chain, sf, blockName);
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}

/** One SignerInfo against the .SF bytes; returns the signer certificate or throws. */
function verifySignerInfo(
  si: Pkcs7SignerInfo,
  chain: ParsedCertificate[],
  sf: Buffer,
  blockName: string,
): { cert: ParsedCertificate; chain: ParsedCertificate[]; hash: string; sigOid: string } {
  const idx = si.findCertificate();
  const cert: ParsedCertificate | undefined = idx >= 0 ? chain[idx] : undefined;
  if (!cert)
    fail(`${blockName}: signer certificate not found in the signature block`, 'APK_V1_SIGNER_CERT_MISSING');
  const hash = OID_HASH[si.digestAlgorithmOid];
  if (!hash)
    fail(
      `${blockName}: unsupported digest algorithm ${si.digestAlgorithmOid}`,
      'APK_V1_UNSUPPORTED_ALGORITHM',
    );
  let signed = sf;
  if (si.signedAttrs) {
    const want = si.signedAttrs.messageDigest();
    if (!want) fail(`${blockName}: signed attributes lack messageDigest`, 'APK_V1_PKCS7_MALFORMED');
    const got = createHash(hash).update(sf).digest();
    if (!want.equals(got))
      fail(`${blockName}: messageDigest does not match the .SF file`, 'APK_V1_SF_DIGEST_MISMATCH', {
        expected: want.toString('hex'),
        computed: got.toString('hex'),
      });
    // The signature covers the DER SET OF attributes (tag 0x31), not the [0] IMPLICIT form stored.
    signed = si.signedAttrs.der;
  }
  const sig = si.signature();
  let ok = false;
  try {
    ok = cryptoVerify(hash, signed, cert.publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) fail(`${blockName}: signature over the .SF file does not verify`, 'APK_V1_SIGNATURE_MISMATCH');
  return { cert, chain, hash, sigOid: si.signatureAlgorithmOid };
}

/** Entries up to this size are inflated in one call; larger ones are streamed in 1 MiB chunks. */
const WHOLE_ENTRY_LIMIT = 8 * 1024 * 1024;

async function digestEntry(zip: ZipArchive, e: ZipEntry, hashes: string[]): Promise<Map<string, string>> {
  const hs = hashes.map((h) => [h, createHash(h)] as const);
  if (e.uncompressedSize <= WHOLE_ENTRY_LIMIT) {
    const data = await zip.read(e, WHOLE_ENTRY_LIMIT, { verifyCrc: false });
    for (const [, h] of hs) h.update(data);
  } else for await (const chunk of zip.stream(e)) for (const [, h] of hs) h.update(chunk);
  return new Map(hs.map(([n, h]) => [n, h.digest('base64')]));
}

/** The APK's JAR signature blocks (META-INF/X.RSA|DSA|EC): none means it has no v1 signature. */
export function v1SignatureBlocks(zip: ZipArchive): ZipEntry[] {
  return zip.entries.filter((e) => /^META-INF\/[^/]+\.(RSA|DSA|EC)$/.test(e.name));
}

/** Verifies the v1 signature; null when the APK has no JAR signature at all. */
/**
 * `minSdk`: the APK's minSdkVersion (below 24 only the first PKCS#7 SignerInfo counts). Names are
 * matched case-sensitively (META-INF/X.RSA + META-INF/X.SF), as apksig does.
 */
export async function verifyV1(zip: ZipArchive, minSdk = 1): Promise<V1Result | null> {
  const blocks = v1SignatureBlocks(zip);
  if (!blocks.length) return null;
  const mfEntry = zip.entry('META-INF/MANIFEST.MF');
  if (!mfEntry) fail('META-INF/MANIFEST.MF is missing', 'APK_V1_NO_MANIFEST');
  const mfBytes = await zip.read(mfEntry, 64 * 1024 * 1024);
  let mf: ReturnType<typeof parseJarManifest>;
  try {
    mf = parseJarManifest(mfBytes, `${zip.name}!META-INF/MANIFEST.MF`);
  } catch (e) {
    fail(`MANIFEST.MF is malformed: ${(e as Error).message}`, 'APK_V1_MANIFEST_MALFORMED');
  }
  const mfByName = new Map<string, ManifestSection>();
  for (const s of mf.sections) {
    if (s.name === null) continue;
    if (mfByName.has(s.name))
      fail(`MANIFEST.MF has a duplicate section for ${s.name}`, 'APK_V1_MANIFEST_DUPLICATE', {
        entry: s.name,
      });
    mfByName.set(s.name, s);
  }
  const signers: V1Signer[] = [];
  const parsedSigners: ParsedCertificate[] = [];
  const apkSigned = new Set<number>();
  // Per signer: the entry names its .SF lists (apksig: an entry is signed by a signer only if the
  // .SF names it, even when the whole-manifest digest verifies).
  const signedBy: Array<Set<string>> = [];
  for (const b of blocks) {
    const base = b.name.slice(0, b.name.lastIndexOf('.'));
    const name = base.slice('META-INF/'.length);
    const sfEntry = zip.entry(`${base}.SF`);
    // apksig only warns about a signature block without its .SF and skips that signer.
    if (!sfEntry) continue;
    const sf = await zip.read(sfEntry, 64 * 1024 * 1024);
    const block = await zip.read(b, 1024 * 1024);
    const { cert, chain, hash, sigOid } = verifyPkcs7(block, sf, b.name, minSdk);
    let sfm: ReturnType<typeof parseJarManifest>;
    try {
      sfm = parseJarManifest(sf, `${zip.name}!${sfEntry.name}`);
    } catch (e) {
      fail(`${sfEntry.name} is malformed: ${(e as Error).message}`, 'APK_V1_SF_MALFORMED');
    }
    const apkSignedHdr = sfm.main.attributes.get('X-Android-APK-Signed');
    if (apkSignedHdr)
      for (const p of apkSignedHdr.split(',')) {
        const n = Number.parseInt(p.trim(), 10);
        if (Number.isFinite(n)) apkSigned.add(n);
      }
    // Whole-manifest digest: when it verifies, the manifest sections need no digest of their own.
    // A wrong one is only a warning in apksig when the per-section digests verify, so fall back
    // to those (and to the main-attributes digest, when present).
    const whole = digestsOf(sfm.main, '-Digest-Manifest');
    let wholeOk = whole.length > 0;
    for (const d of whole)
      if (createHash(d.hash).update(mfBytes).digest('base64') !== d.value) wholeOk = false;
    if (!wholeOk)
      for (const d of digestsOf(sfm.main, '-Digest-Manifest-Main-Attributes'))
        if (createHash(d.hash).update(mf.main.bytes).digest('base64') !== d.value)
          fail(
            `${sfEntry.name}: digest of the MANIFEST.MF main attributes does not match`,
            'APK_V1_MANIFEST_MAIN_MISMATCH',
            { algorithm: d.alg },
          );
    const names = new Set<string>();
    for (const sec of sfm.sections) {
      if (sec.name === null) continue;
      names.add(sec.name);
      if (wholeOk) continue;
      const m = mfByName.get(sec.name);
      if (!m)
        fail(
          `${sfEntry.name} names ${sec.name}, which MANIFEST.MF does not list`,
          'APK_V1_SF_ENTRY_UNKNOWN',
          { entry: sec.name },
        );
      const ds = digestsOf(sec, '-Digest');
      if (!ds.length)
        fail(`${sfEntry.name}: no supported digest for ${sec.name}`, 'APK_V1_NO_DIGEST', {
          entry: sec.name,
        });
      for (const d of ds)
        if (createHash(d.hash).update(m.bytes).digest('base64') !== d.value)
          fail(
            `${sfEntry.name}: digest of the MANIFEST.MF section for ${sec.name} does not match`,
            'APK_V1_MANIFEST_SECTION_MISMATCH',
            {
              entry: sec.name,
              algorithm: d.alg,
            },
          );
    }
    signedBy.push(names);
    parsedSigners.push(cert);
    signers.push({
      name,
      certificates: [cert.info, ...chain.filter((c) => c !== cert).map((c) => c.info)],
      digestAlgorithm: hash,
      signatureAlgorithmOid: sigOid,
    });
  }
  // Entries: every protected zip entry must be in MANIFEST.MF, signed by every signer, with matching digests.
  if (!signers.length)
    fail('no signature block has its .SF file', 'APK_V1_NO_SIGNATURES', {
      blocks: blocks.map((b) => b.name),
    });
  let entriesVerified = 0;
  let entrySigners: number[] | null = null;
  const seen = new Set<string>();
  for (const e of zip.entries) {
    if (!needsV1Digest(e.name)) continue;
    if (seen.has(e.name)) fail(`duplicate zip entry ${e.name}`, 'APK_V1_DUPLICATE_ENTRY', { entry: e.name });
    seen.add(e.name);
    const sec = mfByName.get(e.name);
    if (!sec)
      fail(
        `entry ${e.name} is not protected by the signature (missing from MANIFEST.MF)`,
        'APK_V1_ENTRY_NOT_SIGNED',
        { entry: e.name },
      );
    // Android requires every entry to be signed by the same (non-empty) set of signers; signers
    // outside that set are ignored, as apksig does.
    const by = signers.map((_, i) => i).filter((i) => signedBy[i]!.has(e.name));
    if (!by.length)
      fail(`entry ${e.name} is not covered by any signer's .SF`, 'APK_V1_ENTRY_NOT_SIGNED', {
        entry: e.name,
      });
    if (entrySigners === null) entrySigners = by;
    else if (by.join() !== entrySigners.join())
      fail(`entry ${e.name} is signed by a different set of signers`, 'APK_V1_SIGNERS_MISMATCH', {
        entry: e.name,
        signers: by.map((i) => signers[i]!.name),
        expected: entrySigners.map((i) => signers[i]!.name),
      });
    const ds = digestsOf(sec, '-Digest');
    if (!ds.length)
      fail(`MANIFEST.MF has no supported digest for ${e.name}`, 'APK_V1_NO_DIGEST', { entry: e.name });
    let got: Map<string, string>;
    try {
      got = await digestEntry(zip, e, [...new Set(ds.map((d) => d.hash))]);
    } catch (err) {
      if (err instanceof FormatError)
        fail(`entry ${e.name} cannot be read: ${err.message}`, 'APK_V1_ENTRY_CORRUPT', { entry: e.name });
      throw err;
    }
    for (const d of ds)
      if (got.get(d.hash) !== d.value)
        fail(
          `digest of entry ${e.name} does not match MANIFEST.MF (${d.alg})`,
          'APK_V1_ENTRY_DIGEST_MISMATCH',
          {
            entry: e.name,
            algorithm: d.alg,
            expected: d.value,
            computed: got.get(d.hash),
          },
        );
    entriesVerified++;
  }
  for (const name of mfByName.keys())
    if (!zip.entry(name))
      fail(`MANIFEST.MF lists ${name}, which is not in the APK`, 'APK_V1_ENTRY_MISSING', { entry: name });
  const used = entrySigners ?? signers.map((_, i) => i);
  return {
    signers: used.map((i) => signers[i]!),
    parsedSigners: used.map((i) => parsedSigners[i]!),
    apkSignedSchemes: [...apkSigned].sort(),
    entriesVerified,
  };
}
