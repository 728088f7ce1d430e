/**
 * PKCS#7 / CMS SignedData of a v1 signature block (META-INF/*.RSA|DSA|EC), reduced to what
 * V1SchemeVerifier needs: the raw certificates and, per SignerInfo, the named certificate, the
 * digest and signature algorithm OIDs, the signed attributes and the signature.
 *
 * Two readers with one result. pkijs (the reference) builds and matches its whole CMS schema for
 * every block, which costs milliseconds per APK. The fast reader walks strict DER by hand and only
 * accepts the plain shape signers write (definite minimal lengths, no CRLs, X.509 certificates,
 * IssuerAndSerialNumber sids, primitive OCTET STRINGs, a closed set of element types). Anything
 * else — every malformed or unusual block — returns null and goes to pkijs, so errors and edge
 * cases are exactly pkijs's. Where the fast reader accepts, the pieces pkijs would validate or
 * interpret beyond plain DER (certificates, the sid's issuer name) are still run through pkijs,
 * memoized by their exact bytes. test/apk/pkcs7.test.ts checks both readers agree.
 */
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { ContentMemo } from './common.ts';

export interface Pkcs7SignerInfo {
  /** Index in `certificates` of the certificate the sid names, or -1 (evaluated when called). */
  findCertificate(): number;
  digestAlgorithmOid: string;
  signedAttrs: {
    /** The DER SET OF attributes the signature covers (tag 0x31, not the stored [0]). */
    der: Buffer;
    /** The first messageDigest attribute's value, or undefined (evaluated when called). */
    messageDigest(): Buffer | undefined;
  } | null;
  signature(): Buffer;
  signatureAlgorithmOid: string;
}

export interface Pkcs7SignedData {
  /** Certificates as stored (exact DER). */
  certificates: Buffer[];
  signerInfos: Pkcs7SignerInfo[];
}

export const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';

function toBuf(v: ArrayBuffer | Uint8Array): Buffer {
  return Buffer.from(v instanceof Uint8Array ? v : new Uint8Array(v));
}

/** What a pkijs parse failure looks like to the caller (it reports it as a malformed block). */
export class Pkcs7ParseError extends Error {}

/**
 * The reference reader (pkijs). Throws Pkcs7ParseError for BER it cannot read and for schema
 * mismatches; `contentType` is returned so the caller can report a non-SignedData block.
 */
export function parsePkcs7WithPkijs(block: Buffer): { contentType: string; sd: Pkcs7SignedData | null } {
  const asn = asn1js.fromBER(new Uint8Array(block));
  if (asn.offset === -1) throw new Pkcs7ParseError('not valid DER/BER');
  const ci = new pkijs.ContentInfo({ schema: asn.result });
  if (ci.contentType !== OID_SIGNED_DATA) return { contentType: ci.contentType, sd: null };
  const sd = new pkijs.SignedData({ schema: ci.content });
  // Original certificate bytes (digests are over the exact DER as stored).
  const sdSeq = (ci.content as asn1js.Sequence).valueBlock.value;
  const certSet = sdSeq.find((e) => e.idBlock.tagClass === 3 && e.idBlock.tagNumber === 0) as
    | asn1js.Constructed
    | undefined;
  const certificates = (certSet?.valueBlock.value ?? []).map((c) => toBuf(c.valueBeforeDecodeView));
  const signerInfos = sd.signerInfos.map((si): Pkcs7SignerInfo => {
    const attrs = si.signedAttrs;
    return {
      findCertificate() {
        if (!(si.sid instanceof pkijs.IssuerAndSerialNumber)) return -1;
        const serial = Buffer.from(si.sid.serialNumber.valueBlock.valueHexView)
          .toString('hex')
          .replace(/^0+/, '');
        const pcerts = (sd.certificates ?? []).filter(
          (c): c is pkijs.Certificate => c instanceof pkijs.Certificate,
        );
        return pcerts.findIndex(
          (c) =>
            Buffer.from(c.serialNumber.valueBlock.valueHexView).toString('hex').replace(/^0+/, '') ===
              serial && c.issuer.isEqual((si.sid as pkijs.IssuerAndSerialNumber).issuer),
        );
      },
      digestAlgorithmOid: si.digestAlgorithm.algorithmId,
      signedAttrs: attrs
        ? {
            der: (() => {
              const b = Buffer.from(toBuf(attrs.encodedValue));
              b[0] = 0x31;
              return b;
            })(),
            messageDigest() {
              const md = attrs.attributes.find((a) => a.type === OID_MESSAGE_DIGEST);
              const v = md?.values[0] as asn1js.OctetString | undefined;
              return v ? Buffer.from(v.valueBlock.valueHexView) : undefined;
            },
          }
        : null,
      signature: () => toBuf(si.signature.valueBlock.valueHexView),
      signatureAlgorithmOid: si.signatureAlgorithm.algorithmId,
    };
  });
  return { contentType: ci.contentType, sd: { certificates, signerInfos } };
}

// ---- fast reader: strict DER ----

interface Tlv {
  tag: number;
  /** Start of the whole element, of its contents, and end. */
  start: number;
  content: number;
  end: number;
}

class NotPlain extends Error {}
const notPlain = (): never => {
  throw new NotPlain();
};

/** One DER element at `pos` within `limit`: single-byte tag, definite minimal length. */
function tlv(b: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) notPlain();
  const tag = b[pos]!;
  if ((tag & 0x1f) === 0x1f) notPlain();
  let len = b[pos + 1]!;
  let content = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || content + n > limit || b[content] === 0) notPlain();
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[content + i]!;
    if (len < 0x80) notPlain();
    content += n;
  }
  const end = content + len;
  if (end > limit) notPlain();
  return { tag, start: pos, content, end };
}

function children(b: Buffer, t: Tlv): Tlv[] {
  if (!(t.tag & 0x20)) notPlain();
  const out: Tlv[] = [];
  for (let p = t.content; p < t.end; ) {
    const c = tlv(b, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

function expect(t: Tlv | undefined, tag: number): Tlv {
  if (!t || t.tag !== tag) notPlain();
  return t!;
}

/** Dotted OID as asn1js prints it; only minimal sub-identifiers that fit in 28 bits. */
function oid(b: Buffer, t: Tlv): string {
  expect(t, 0x06);
  if (t.end === t.content) notPlain();
  const sids: number[] = [];
  let v = 0;
  let n = 0;
  for (let i = t.content; i < t.end; i++) {
    const c = b[i]!;
    if (n === 0 && c === 0x80) notPlain();
    v = v * 128 + (c & 0x7f);
    if (++n > 4) notPlain();
    if (!(c & 0x80)) {
      sids.push(v);
      v = 0;
      n = 0;
    }
  }
  if (n !== 0) notPlain();
  const first = sids[0]!;
  const head = first <= 39 ? `0.${first}` : first <= 79 ? `1.${first - 40}` : `2.${first - 80}`;
  return [head, ...sids.slice(1)].join('.');
}

/**
 * Every element below `t` is one asn1js decodes without error or reinterpretation: SEQUENCE/SET
 * and tagged constructed (recursively), tagged primitives, and a few universal primitives.
 */
function checkPlain(b: Buffer, t: Tlv): void {
  const cls = t.tag & 0xc0;
  if (t.tag & 0x20) {
    if (cls === 0 && t.tag !== 0x30 && t.tag !== 0x31) notPlain();
    for (const c of children(b, t)) checkPlain(b, c);
    return;
  }
  const len = t.end - t.content;
  if (cls !== 0) {
    if (len === 0) notPlain();
    return;
  }
  switch (t.tag) {
    case 0x05: // NULL
      if (len !== 0) notPlain();
      return;
    case 0x01: // BOOLEAN
      if (len !== 1) notPlain();
      return;
    case 0x06:
      oid(b, t);
      return;
    case 0x17: // UTCTime, YYMMDDhhmmssZ only
      if (!/^\d{12}Z$/.test(b.toString('latin1', t.content, t.end))) notPlain();
      return;
    case 0x02: // INTEGER
    case 0x04: // OCTET STRING
    case 0x0c: // UTF8String
    case 0x13: // PrintableString
    case 0x16: // IA5String
      if (len === 0) notPlain();
      return;
    default:
      notPlain();
  }
}

/** AlgorithmIdentifier: SEQUENCE { OID, parameters ANY OPTIONAL } → the OID. */
function algorithmId(b: Buffer, t: Tlv | undefined): string {
  const c = children(b, expect(t, 0x30));
  if (c.length < 1 || c.length > 2) notPlain();
  if (c[1]) checkPlain(b, c[1]);
  return oid(b, c[0]!);
}

/** SET/[n] OF Attribute (SEQUENCE { OID, SET OF ANY }), non-empty; the messageDigest value. */
function attributes(b: Buffer, t: Tlv): { messageDigest: Buffer | undefined } {
  const list = children(b, t);
  if (!list.length) notPlain();
  let messageDigest: Buffer | undefined;
  let seen = false;
  for (const a of list) {
    const c = children(b, expect(a, 0x30));
    if (c.length !== 2) notPlain();
    const type = oid(b, c[0]!);
    const values = children(b, expect(c[1], 0x31));
    if (!values.length) notPlain();
    for (const v of values) checkPlain(b, v);
    if (type === OID_MESSAGE_DIGEST && !seen) {
      seen = true;
      const v = expect(values[0], 0x04);
      messageDigest = b.subarray(v.content, v.end);
    }
  }
  return { messageDigest };
}

/** X.509 certificates as pkijs reads them, by exact DER; a failure is not cached. */
const certMemo = new ContentMemo<pkijs.Certificate>();
const nameMemo = new ContentMemo<pkijs.RelativeDistinguishedNames>();

function pkijsFromDer<T>(der: Buffer, make: (schema: asn1js.AsnType) => T): T {
  const asn = asn1js.fromBER(new Uint8Array(der));
  if (asn.offset !== der.length) notPlain();
  return make(asn.result);
}

function fastParse(block: Buffer): Pkcs7SignedData | null {
  const top = tlv(block, 0, block.length);
  if (top.end !== block.length) notPlain();
  const ci = children(block, expect(top, 0x30));
  if (ci.length !== 2 || oid(block, ci[0]!) !== OID_SIGNED_DATA) notPlain();
  const explicit = children(block, expect(ci[1], 0xa0));
  if (explicit.length !== 1) notPlain();
  const sd = children(block, expect(explicit[0], 0x30));
  // version, digestAlgorithms, encapContentInfo, [0] certificates, signerInfos (no [1] CRLs).
  if (sd.length !== 5) notPlain();
  checkPlain(block, expect(sd[0], 0x02));
  const digestAlgs = children(block, expect(sd[1], 0x31));
  if (!digestAlgs.length) notPlain();
  for (const a of digestAlgs) algorithmId(block, a);
  const eci = children(block, expect(sd[2], 0x30));
  if (eci.length < 1 || eci.length > 2) notPlain();
  oid(block, eci[0]!);
  if (eci[1]) {
    const e = children(block, expect(eci[1], 0xa0));
    if (e.length !== 1) notPlain();
    checkPlain(block, e[0]!);
  }
  const certTlvs = children(block, expect(sd[3], 0xa0));
  if (!certTlvs.length) notPlain();
  const certificates = certTlvs.map((c) => block.subarray(expect(c, 0x30).start, c.end));
  // pkijs must accept each certificate (its schema is part of SignedData's).
  const parsedCerts = certificates.map((der) =>
    certMemo.get(der, () => pkijsFromDer(der, (schema) => new pkijs.Certificate({ schema }))),
  );
  const sis = children(block, expect(sd[4], 0x31));
  if (!sis.length) notPlain();
  const signerInfos = sis.map((siTlv): Pkcs7SignerInfo => {
    const f = children(block, expect(siTlv, 0x30));
    let i = 0;
    checkPlain(block, expect(f[i++], 0x02));
    const sid = children(block, expect(f[i++], 0x30));
    if (sid.length !== 2) notPlain();
    const issuerTlv = expect(sid[0], 0x30);
    checkPlain(block, issuerTlv);
    const issuerDer = block.subarray(issuerTlv.start, issuerTlv.end);
    const issuer = nameMemo.get(issuerDer, () =>
      pkijsFromDer(issuerDer, (schema) => new pkijs.RelativeDistinguishedNames({ schema })),
    );
    const serialTlv = expect(sid[1], 0x02);
    checkPlain(block, serialTlv);
    const serial = block.toString('hex', serialTlv.content, serialTlv.end).replace(/^0+/, '');
    const digestAlgorithmOid = algorithmId(block, f[i++]);
    let signedAttrs: Pkcs7SignerInfo['signedAttrs'] = null;
    if (f[i]?.tag === 0xa0) {
      const t = f[i++]!;
      const { messageDigest } = attributes(block, t);
      const der = Buffer.from(block.subarray(t.start, t.end));
      der[0] = 0x31;
      signedAttrs = { der, messageDigest: () => messageDigest && Buffer.from(messageDigest) };
    }
    const signatureAlgorithmOid = algorithmId(block, f[i++]);
    const sigTlv = expect(f[i++], 0x04);
    checkPlain(block, sigTlv);
    if (f[i]?.tag === 0xa1) attributes(block, f[i++]!);
    if (i !== f.length) notPlain();
    const signature = Buffer.from(block.subarray(sigTlv.content, sigTlv.end));
    return {
      findCertificate: () =>
        parsedCerts.findIndex(
          (c) =>
            Buffer.from(c.serialNumber.valueBlock.valueHexView).toString('hex').replace(/^0+/, '') ===
              serial && c.issuer.isEqual(issuer),
        ),
      digestAlgorithmOid,
      signedAttrs,
      signature: () => signature,
      signatureAlgorithmOid,
    };
  });
  return { certificates: certificates.map((c) => Buffer.from(c)), signerInfos };
}

/** The fast reader's result, or null when the block is not in its plain shape (use pkijs). */
export function parsePkcs7Fast(block: Buffer): Pkcs7SignedData | null {
  try {
    return fastParse(block);
  } catch {
    // NotPlain, or pkijs refusing a certificate / name: the reference reader decides.
    return null;
  }
}
