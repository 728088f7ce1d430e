import {
  createHash,
  createPrivateKey,
  createPublicKey,
  createVerify,
  type KeyObject,
  type Verify,
  X509Certificate,
} from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { FormatError, InputError, VerificationError } from '../../errors.ts';
import { payloadProtos } from './proto.ts';
import { PAYLOAD_HEADER_SIZE, type Payload, type PayloadSignature } from './reader.ts';

/**
 * Payload signatures as update_engine checks them (payload_consumer/payload_verifier.cc,
 * payload_generator/payload_signer.cc):
 *  - metadata signature: over SHA-256 of the metadata (24-byte header + manifest);
 *  - payload signature: over SHA-256 of the metadata and the blobs before the signatures blob,
 *    skipping the metadata signature ("we skip metadata signature and payload signature").
 * Each Signatures message may hold several signatures; one that verifies with the key is enough.
 * RSA signatures are PKCS#1 v1.5 over SHA-256; EC signatures are DER, zero-padded to a fixed size,
 * with unpadded_signature_size giving the real length.
 *
 * payload_properties.txt (FILE_HASH / FILE_SIZE / METADATA_HASH / METADATA_SIZE, base64 SHA-256)
 * is checked in the same pass.
 */

export type SignatureStatus = 'absent' | 'present' | 'valid' | 'invalid';

export interface SignatureVerdict {
  status: SignatureStatus;
  count: number;
  sizes: number[];
  /** Index of the key (among those given) that verified a signature. */
  key?: number;
}

export interface PayloadSignatureReport {
  metadataSignature: SignatureVerdict;
  payloadSignature: SignatureVerdict;
  /** Only for properties that payload_properties.txt gives. */
  properties: {
    [key in 'FILE_HASH' | 'FILE_SIZE' | 'METADATA_HASH' | 'METADATA_SIZE']?: 'match' | 'mismatch';
  };
  /** SHA-256 (hex) of the metadata, and of what the payload signature covers. */
  metadataSha256: string;
  signedPayloadSha256?: string;
}

/** At most this many signatures per message are tried (real payloads carry one). */
const MAX_TRIED = 8;
const CHUNK = 4 * 1024 * 1024;

/** Loads the OTA signing key: an X.509 certificate (PEM or DER) or a public/private key (PEM or DER SPKI). */
export async function loadPayloadKey(keyOrPath: string | Buffer | KeyObject): Promise<KeyObject> {
  if (typeof keyOrPath === 'object' && !Buffer.isBuffer(keyOrPath)) return keyOrPath;
  const buf =
    typeof keyOrPath === 'string'
      ? await readFile(keyOrPath).catch((e: NodeJS.ErrnoException) => {
          throw new InputError(`cannot read ${keyOrPath}: ${e.code ?? e.message}`, {
            code: e.code ?? 'OPEN_FAILED',
            context: { file: keyOrPath },
          });
        })
      : keyOrPath;
  const attempts: (() => KeyObject)[] = [
    () => new X509Certificate(buf).publicKey,
    () => createPublicKey(buf),
    () => createPublicKey({ key: buf, format: 'der', type: 'spki' }),
  ];
  for (const a of attempts) {
    try {
      return a();
    } catch {
      // try the next encoding
    }
  }
  throw new InputError('not an X.509 certificate or public key (PEM or DER)', {
    code: 'PAYLOAD_KEY_INVALID',
    context: { file: typeof keyOrPath === 'string' ? keyOrPath : undefined },
  });
}

/** The signature bytes update_engine hands to the verifier (EC padding removed). */
function signatureBytes(s: PayloadSignature): Buffer {
  return s.unpaddedSize !== undefined && s.unpaddedSize > 0 && s.unpaddedSize <= s.data.length
    ? s.data.subarray(0, s.unpaddedSize)
    : s.data;
}

/**
 * Takes the payload's digests from its bytes fed in order (`feed(chunk, offset)`, offsets from the
 * start of the payload) and checks both signature messages against each of `keys` (a device
 * trusts every certificate of its otacerts.zip) and payload_properties.txt. `end` is how many
 * bytes it needs: the whole payload when FILE_HASH is to be checked, else the signed part, or just
 * the metadata with no key. Lets a caller digest the payload while it reads the bytes for
 * something else (a device verifying a package's whole-file signature reads the payload too).
 */
export interface PayloadDigester {
  readonly end: number;
  feed(chunk: Buffer, offset: number): void;
  /** The report; `payloadSignature.key` / `metadataSignature.key` name the key that verified. */
  finish(): PayloadSignatureReport;
}

export function payloadDigester(
  p: Payload,
  opts: { keys?: KeyObject[]; fileHash?: boolean } = {},
): PayloadDigester {
  const keys = opts.keys ?? [];
  const props = p.location.properties ?? {};
  const metadataSize = PAYLOAD_HEADER_SIZE + p.manifestSize;
  const metaSigEnd = metadataSize + p.metadataSignatureSize;
  const blobsStart = metaSigEnd;
  const signedEnd =
    blobsStart + (p.manifest.signaturesSize ? (p.manifest.signaturesOffset ?? 0) : p.blobsSize);
  // FILE_HASH covers the whole payload; without it we stop where the signed part ends.
  // Without a key and FILE_HASH, only the (small) metadata needs reading.
  const wantFile = props.FILE_HASH !== undefined && opts.fileHash !== false;
  const end = wantFile ? p.location.size : keys.length || opts.fileHash !== false ? signedEnd : metadataSize;

  const metaHash = createHash('sha256');
  const signedHash = createHash('sha256');
  const fileHash = createHash('sha256');
  // One verifier per (key, signature) pair: EC signatures cannot be checked against a digest.
  const verifiers = (sigs: PayloadSignature[]) =>
    keys.map(() => sigs.slice(0, MAX_TRIED).map(() => createVerify('sha256')));
  const metaVerifiers = verifiers(p.metadataSignatures);
  const payloadVerifiers = verifiers(p.payloadSignatures);
  let fed = 0;
  const feed = (chunk: Buffer, pos: number) => {
    if (pos !== fed) throw new Error(`payload digester fed out of order: ${pos} after ${fed} bytes`);
    fed += chunk.length;
    if (pos >= end) return;
    if (pos + chunk.length > end) chunk = chunk.subarray(0, end - pos);
    const slice = (from: number, to: number) =>
      chunk.subarray(Math.max(0, from - pos), Math.max(0, Math.min(chunk.length, to - pos)));
    const meta = slice(0, metadataSize);
    metaHash.update(meta);
    for (const vs of metaVerifiers) for (const v of vs) v.update(meta);
    const signed = Buffer.concat([meta, slice(metaSigEnd, signedEnd)]);
    signedHash.update(signed);
    for (const vs of payloadVerifiers) for (const v of vs) v.update(signed);
    if (wantFile) fileHash.update(chunk);
  };

  const verdict = (sigs: PayloadSignature[], vs: Verify[][]) => {
    if (!sigs.length) return { status: 'absent' as SignatureStatus };
    if (!keys.length) return { status: 'present' as SignatureStatus };
    for (const [k, perKey] of vs.entries())
      for (const [i, v] of perKey.entries()) {
        try {
          if (v.verify(keys[k], signatureBytes(sigs[i])))
            return { status: 'valid' as SignatureStatus, key: k };
        } catch {
          // a malformed signature for this key type: try the next
        }
      }
    return { status: 'invalid' as SignatureStatus };
  };
  return {
    end,
    feed,
    finish() {
      if (fed < end) throw new Error(`payload digester finished after ${fed} of the ${end} bytes it needs`);
      const metadataSha = metaHash.digest();
      const properties: PayloadSignatureReport['properties'] = {};
      const same = (k: keyof PayloadSignatureReport['properties'], v: string) => {
        if (props[k] !== undefined) properties[k] = props[k] === v ? 'match' : 'mismatch';
      };
      if (wantFile) same('FILE_HASH', fileHash.digest('base64'));
      same('FILE_SIZE', String(p.location.size));
      same('METADATA_HASH', metadataSha.toString('base64'));
      same('METADATA_SIZE', String(metadataSize));
      const sizes = (sigs: PayloadSignature[]) => sigs.map((s) => signatureBytes(s).length);
      return {
        metadataSignature: {
          ...verdict(p.metadataSignatures, metaVerifiers),
          count: p.metadataSignatures.length,
          sizes: sizes(p.metadataSignatures),
        },
        payloadSignature: {
          ...verdict(p.payloadSignatures, payloadVerifiers),
          count: p.payloadSignatures.length,
          sizes: sizes(p.payloadSignatures),
        },
        properties,
        metadataSha256: metadataSha.toString('hex'),
        signedPayloadSha256: end >= signedEnd ? signedHash.digest('hex') : undefined,
      };
    },
  };
}

/**
 * Hashes the payload once (streamed) and checks both signature messages against `key` (when
 * given) and payload_properties.txt (when the OTA zip has one). Reports, never throws on a bad
 * signature; see assertPayloadSigned for the throwing form.
 */
export async function checkPayloadSignatures(
  p: Payload,
  opts: {
    key?: string | Buffer | KeyObject /** Hash the whole payload for FILE_HASH (default true). */;
    fileHash?: boolean;
  } = {},
): Promise<PayloadSignatureReport> {
  const key = opts.key !== undefined ? await loadPayloadKey(opts.key) : undefined;
  const d = payloadDigester(p, { keys: key ? [key] : [], fileHash: opts.fileHash });
  const fh = await open(p.location.file, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    for (let pos = 0; pos < d.end; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, d.end - pos), p.location.offset + pos);
      if (bytesRead === 0)
        throw new FormatError({
          format: 'payload',
          reason: 'truncated',
          file: p.location.file,
          offset: p.location.offset + pos,
          expected: `${d.end} bytes of payload`,
          found: pos,
        });
      d.feed(buf.subarray(0, bytesRead), pos);
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  // One key given: which one verified says nothing.
  const { metadataSignature: m, payloadSignature: s, ...rest } = d.finish();
  const { key: _m, ...metadataSignature } = m;
  const { key: _p, ...payloadSignature } = s;
  return { ...rest, metadataSignature, payloadSignature };
}

/**
 * Throws VerificationError unless both signatures verify with `key` and payload_properties.txt
 * (if any) matches the payload: what a device does before it applies an OTA.
 */
export async function assertPayloadSigned(
  p: Payload,
  key: string | Buffer | KeyObject,
): Promise<PayloadSignatureReport> {
  const r = await checkPayloadSignatures(p, { key });
  const ctx = { file: p.location.file };
  for (const [what, s] of [
    ['metadata', r.metadataSignature],
    ['payload', r.payloadSignature],
  ] as const) {
    if (s.status === 'absent')
      throw new VerificationError('payload', `the payload has no ${what} signature`, {
        code: 'PAYLOAD_UNSIGNED',
        context: ctx,
      });
    if (s.status !== 'valid')
      throw new VerificationError('payload', `no ${what} signature verifies with the given key`, {
        code: what === 'metadata' ? 'PAYLOAD_METADATA_SIGNATURE_INVALID' : 'PAYLOAD_SIGNATURE_INVALID',
        context: { ...ctx, signatures: s.count, sizes: s.sizes },
      });
  }
  for (const [k, v] of Object.entries(r.properties))
    if (v === 'mismatch')
      throw new VerificationError('payload', `payload_properties.txt ${k} does not match the payload`, {
        code: 'PAYLOAD_PROPERTIES_MISMATCH',
        context: { ...ctx, property: k, expected: p.location.properties?.[k] },
      });
  return r;
}

/** A private key that signs payloads the way payload_signer does. */
export interface PayloadSigningKey {
  key: KeyObject;
  /**
   * Bytes every signature is padded to (GetMaximumSignatureSize): the RSA modulus size, or the
   * largest DER ECDSA signature of the curve. Fixed before signing, since the manifest records
   * the signature blob's size.
   */
  signatureSize: number;
}

/** Loads an RSA or EC private key (PEM, or DER PKCS#8 such as AOSP's .pk8) for payload signing. */
export async function loadPayloadSigningKey(path: string): Promise<PayloadSigningKey> {
  const buf = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot read ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
  let key: KeyObject | undefined;
  for (const attempt of [
    () => createPrivateKey(buf),
    () => createPrivateKey({ key: buf, format: 'der', type: 'pkcs8' }),
  ]) {
    try {
      key = attempt();
      break;
    } catch {
      // try the next encoding
    }
  }
  if (!key)
    throw new InputError(`${path} is not a private key (PEM, or DER PKCS#8)`, {
      code: 'PAYLOAD_KEY_INVALID',
      context: { file: path },
    });
  return { key, signatureSize: maxSignatureSize(key, path) };
}

function maxSignatureSize(key: KeyObject, file: string): number {
  const d = key.asymmetricKeyDetails ?? {};
  // update_engine pads RSA-2048 and RSA-4096 signatures only (PadRSASHA256Hash; Android 9: 2048).
  if (key.asymmetricKeyType === 'rsa' && (d.modulusLength === 2048 || d.modulusLength === 4096))
    return d.modulusLength / 8;
  if (key.asymmetricKeyType === 'ec') {
    const bits = { prime256v1: 256, secp384r1: 384 }[d.namedCurve ?? ''];
    if (bits) {
      // SEQUENCE { INTEGER r, INTEGER s }, each at most one byte longer than the order.
      const int = Math.ceil(bits / 8) + 1 + 2;
      return 2 * int + 2;
    }
  }
  throw new InputError(
    `${file}: OTA signing needs an RSA-2048, RSA-4096 or EC P-256 / P-384 key (found ${key.asymmetricKeyType} ${d.modulusLength ?? d.namedCurve ?? ''})`,
    { code: 'PAYLOAD_KEY_UNSUPPORTED', context: { file, type: key.asymmetricKeyType } },
  );
}

/**
 * A Signatures message holding one signature, zero-padded to `paddedSize`, with its real length
 * in unpadded_signature_size (payload_signer.cc ConvertSignaturesToProtobuf).
 */
export function payloadSignaturesMessage(signature: Buffer, paddedSize: number): Buffer {
  if (signature.length > paddedSize)
    throw new InputError(`signature of ${signature.length} bytes is larger than ${paddedSize}`, {
      code: 'PAYLOAD_SIGNATURE_SIZE',
    });
  const { SignaturesMessage } = payloadProtos();
  const data = Buffer.concat([signature, Buffer.alloc(paddedSize - signature.length)]);
  return Buffer.from(
    SignaturesMessage.encode(
      SignaturesMessage.fromObject({ signatures: [{ data, unpaddedSignatureSize: signature.length }] }),
    ).finish(),
  );
}
