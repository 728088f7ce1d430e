import { createHash, createSign, createVerify, type KeyObject, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { FormatError, VerificationError } from '../../errors.ts';
import { parsePkcs7Fast, parsePkcs7WithPkijs } from '../apk/signing/pkcs7.ts';
import { type ByteSource, openFileSource } from '../apk/zip.ts';

/**
 * The whole-file signature of an OTA package, as AOSP's `signapk -w` writes it (SignApk.java
 * signWholeFile) and recovery checks it (bootable/recovery/install/verifier.cpp verify_file; on
 * A/B devices RecoverySystem.verifyPackage does the same against /system/etc/security/otacerts.zip).
 *
 * The zip's archive comment is "signed by SignApk\0", then a DER PKCS#7 SignedData (detached
 * content, the signer's certificate, one SignerInfo signing the data directly: no signed
 * attributes), then a 6-byte footer: signature start (u16 LE, bytes from the end of the file),
 * 0xff 0xff, comment size (u16 LE). The signature covers every byte of the file before the
 * comment-length field of the end-of-central-directory record. The digest follows the
 * certificate's signature algorithm: SHA-256 for sha256With* certificates, SHA-1 for the old
 * sha1WithRSA / md5WithRSA ones.
 */

const MESSAGE = Buffer.from('signed by SignApk\0', 'latin1');
const FOOTER_SIZE = 6;
const EOCD_SIZE = 22;
const EOCD_MAGIC = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
/** Bytes digested per read. */
const SIGNED_CHUNK = 4 << 20;

const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha1: '1.2.840.10045.4.1',
} as const;

/** SHA-256 or SHA-1, from the certificate's own signature algorithm (getDigestAlgorithmForOta). */
export function wholeFileDigest(cert: X509Certificate): 'sha256' | 'sha1' {
  const alg = certSignatureAlgorithmOid(cert);
  // sha1WithRSAEncryption, md5WithRSAEncryption: signapk's "historical note"
  if (alg === '1.2.840.113549.1.1.5' || alg === '1.2.840.113549.1.1.4') return 'sha1';
  if (['1.2.840.113549.1.1.11', OID.ecdsaWithSha256].includes(alg)) return 'sha256';
  throw new FormatError({
    format: 'x509',
    reason: 'signapk signs OTA packages only with sha256WithRSA, SHA256withECDSA or sha1WithRSA certificates',
    field: 'signatureAlgorithm',
    found: alg,
  });
}

function certSignatureAlgorithmOid(cert: X509Certificate): string {
  return pkijs.Certificate.fromBER(new Uint8Array(cert.raw)).signatureAlgorithm.algorithmId;
}

/** What the writer feeds the signed bytes to, and finishes with the comment. */
export interface WholeFileSigner {
  update(bytes: Buffer): void;
  /** The archive comment (message, PKCS#7, footer) for the data fed so far. */
  comment(): Buffer;
}

export function wholeFileSigner(key: KeyObject, certificate: X509Certificate): WholeFileSigner {
  const digest = wholeFileDigest(certificate);
  const sign = createSign(digest);
  return {
    update: (b) => {
      sign.update(b);
    },
    comment: () => {
      const sig = sign.sign(key);
      const block = signedData(certificate, key, digest, sig);
      const total = MESSAGE.length + block.length + FOOTER_SIZE;
      if (total > 0xffff)
        throw new FormatError({
          format: 'ota-zip',
          reason: 'the signature is too big for a zip comment',
          found: total,
          expected: '<= 65535',
        });
      const footer = Buffer.alloc(FOOTER_SIZE);
      footer.writeUInt16LE(total - MESSAGE.length, 0);
      footer[2] = 0xff;
      footer[3] = 0xff;
      footer.writeUInt16LE(total, 4);
      const comment = Buffer.concat([MESSAGE, block, footer]);
      // verifier.cpp refuses an EOCD marker after the real one (libziparchive would find it).
      if (comment.indexOf(EOCD_MAGIC) >= 0)
        throw new FormatError({
          format: 'ota-zip',
          reason: 'the signature happens to contain the end-of-central-directory marker; sign again',
        });
      return comment;
    },
  };
}

/** DER PKCS#7 SignedData as BouncyCastle writes it for signapk (setDirectSignature(true)). */
function signedData(cert: X509Certificate, key: KeyObject, digest: 'sha256' | 'sha1', sig: Buffer): Buffer {
  const c = pkijs.Certificate.fromBER(new Uint8Array(cert.raw));
  const digestAlg = new pkijs.AlgorithmIdentifier({
    algorithmId: digest === 'sha256' ? OID.sha256 : OID.sha1,
    algorithmParams: new asn1js.Null(),
  });
  const ec = key.asymmetricKeyType === 'ec';
  const signatureAlg = ec
    ? new pkijs.AlgorithmIdentifier({
        algorithmId: digest === 'sha256' ? OID.ecdsaWithSha256 : OID.ecdsaWithSha1,
      })
    : new pkijs.AlgorithmIdentifier({ algorithmId: OID.rsaEncryption, algorithmParams: new asn1js.Null() });
  const sd = new pkijs.SignedData({
    version: 1,
    digestAlgorithms: [digestAlg],
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.data }),
    certificates: [c],
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: c.issuer, serialNumber: c.serialNumber }),
        digestAlgorithm: digestAlg,
        signatureAlgorithm: signatureAlg,
        signature: new asn1js.OctetString({ valueHex: new Uint8Array(sig) }),
      }),
    ],
  });
  const ci = new pkijs.ContentInfo({ contentType: OID.signedData, content: sd.toSchema(true) });
  return Buffer.from(ci.toSchema().toBER(false));
}

export interface WholeFileSignature {
  /** Bytes of the file the signature covers. */
  signedLength: number;
  /** The signing certificate, as stored in the PKCS#7 block (DER). */
  certificate: Buffer;
  certificateSha256: string;
  digest: 'sha256' | 'sha1';
  /** Whether the signature verifies with the certificate it carries. */
  valid: boolean;
}

function fail(
  file: string,
  reason: string,
  d: { offset?: number; expected?: unknown; found?: unknown } = {},
) {
  return new FormatError({ format: 'ota-zip', reason, file, field: 'whole-file signature', ...d });
}

/**
 * Reads and checks the whole-file signature of an OTA package the way verify_file does. Throws a
 * FormatError when the footer, the comment or the PKCS#7 block is malformed; `valid` says whether
 * the signature verifies with the certificate in it (whether that certificate is trusted is the
 * caller's question: compare certificateSha256). The package is a path or any ByteSource (a
 * device reads a sideloaded one block by block); every signed byte is read once, in order, and
 * `onSignedData` sees each chunk of them (with its offset) so that other digests (the payload's)
 * can be taken in the same pass.
 */
export async function readWholeFileSignature(
  file: string | ByteSource,
  opts: { onSignedData?: (chunk: Buffer, offset: number) => void } = {},
): Promise<WholeFileSignature> {
  const src = typeof file === 'string' ? await openFileSource(file) : file;
  try {
    return await verifyWholeFile(src, opts.onSignedData);
  } finally {
    if (typeof file === 'string') await src.close();
  }
}

async function verifyWholeFile(
  src: ByteSource,
  onSignedData?: (chunk: Buffer, offset: number) => void,
): Promise<WholeFileSignature> {
  const file = src.name;
  const length = src.size;
  if (length < FOOTER_SIZE + EOCD_SIZE) throw fail(file, 'too small to be a signed zip', { found: length });
  const footer = await src.read(length - FOOTER_SIZE, FOOTER_SIZE);
  if (footer[2] !== 0xff || footer[3] !== 0xff)
    throw fail(file, 'no whole-file signature footer (not signed with signapk -w)', {
      offset: length - 4,
      expected: 'ffff',
      found: footer.subarray(2, 4).toString('hex'),
    });
  const commentSize = footer.readUInt16LE(4);
  const signatureStart = footer.readUInt16LE(0);
  if (signatureStart > commentSize || signatureStart <= FOOTER_SIZE)
    throw fail(file, 'signature start is outside the comment', {
      expected: `${FOOTER_SIZE + 1}..${commentSize}`,
      found: signatureStart,
    });
  const eocdSize = commentSize + EOCD_SIZE;
  if (length < eocdSize) throw fail(file, 'comment larger than the file', { found: commentSize });
  const eocd = await src.read(length - eocdSize, eocdSize);
  if (!eocd.subarray(0, 4).equals(EOCD_MAGIC))
    throw fail(file, 'the comment size does not lead to the end-of-central-directory record', {
      offset: length - eocdSize,
    });
  if (eocd.indexOf(EOCD_MAGIC, 4) >= 0)
    throw fail(file, 'an end-of-central-directory marker follows the real one');
  const signedLength = length - eocdSize + EOCD_SIZE - 2;
  const block = eocd.subarray(eocdSize - signatureStart, eocdSize - FOOTER_SIZE);
  let sd: ReturnType<typeof parsePkcs7Fast>;
  try {
    sd = parsePkcs7Fast(block) ?? parsePkcs7WithPkijs(block).sd;
  } catch (e) {
    throw fail(file, `the signature block is not PKCS#7: ${e instanceof Error ? e.message : String(e)}`);
  }
  const si = sd?.signerInfos[0];
  const ci = si ? si.findCertificate() : -1;
  if (!sd || !si || ci < 0) throw fail(file, 'the PKCS#7 block has no signer with its certificate');
  if (si.signedAttrs)
    throw fail(file, 'the signer has signed attributes (recovery verifies only a direct signature)');
  const certificate = sd.certificates[ci];
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certificate);
  } catch (e) {
    throw fail(
      file,
      `the signer's certificate does not parse: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const digest = wholeFileDigest(x509);
  const v = createVerify(digest);
  for (let pos = 0; pos < signedLength; ) {
    const chunk = await src.read(pos, Math.min(SIGNED_CHUNK, signedLength - pos));
    v.update(chunk);
    onSignedData?.(chunk, pos);
    pos += chunk.length;
  }
  let valid = false;
  try {
    valid = v.verify(x509.publicKey, si.signature());
  } catch {
    valid = false;
  }
  return {
    signedLength,
    certificate,
    certificateSha256: createHash('sha256').update(certificate).digest('hex'),
    digest,
    valid,
  };
}

/** Throws unless the package is signed whole-file by the certificate with this SHA-256. */
export async function assertWholeFileSigned(
  file: string,
  trustedSha256: string[],
): Promise<WholeFileSignature> {
  const s = await readWholeFileSignature(file);
  if (!s.valid)
    throw new VerificationError('ota-zip', 'the whole-file signature does not verify', {
      code: 'OTA_SIGNATURE_INVALID',
      context: { file },
    });
  if (!trustedSha256.includes(s.certificateSha256))
    throw new VerificationError('ota-zip', 'the package is signed by a certificate that is not trusted', {
      code: 'OTA_SIGNER_UNTRUSTED',
      context: { file, found: s.certificateSha256, expected: trustedSha256 },
    });
  return s;
}
