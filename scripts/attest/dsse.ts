import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { InputError } from '../errors.ts';

/**
 * DSSE (Dead Simple Signing Envelope, the in-toto/Sigstore envelope): the signature covers
 * PAE(payloadType, payload), so neither the type nor the body can be swapped.
 */
export interface DsseEnvelope {
  payloadType: string;
  /** base64 of the payload bytes. */
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

/** Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const t = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${payload.length} `), payload]);
}

/** Key id: SHA-256 of the public key's SubjectPublicKeyInfo DER, hex. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** Digest algorithm per key type: Ed25519 signs the message itself; RSA and ECDSA use SHA-256. */
function digestFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256';
}

export function loadPrivateKey(pem: Buffer | string, file = '(key)'): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (e) {
    throw new InputError(`${file}: not a PEM/DER private key (${(e as Error).message})`, {
      code: 'ATTEST_KEY_INVALID',
      context: { file },
    });
  }
}

export function loadPublicKey(pem: Buffer | string, file = '(key)'): KeyObject {
  try {
    return createPublicKey(pem);
  } catch (e) {
    throw new InputError(`${file}: not a public key, certificate or private key (${(e as Error).message})`, {
      code: 'ATTEST_KEY_INVALID',
      context: { file },
    });
  }
}

export function signEnvelope(payloadType: string, payload: Buffer, key: KeyObject): DsseEnvelope {
  const sig = sign(digestFor(key), pae(payloadType, payload), key);
  return {
    payloadType,
    payload: payload.toString('base64'),
    signatures: [{ keyid: keyId(key), sig: sig.toString('base64') }],
  };
}

/** Which signatures verify with the key (by key id, then by signature). */
export function verifyEnvelope(
  env: DsseEnvelope,
  key: KeyObject,
): { keyidMatched: boolean; verified: boolean } {
  const id = keyId(key);
  const payload = Buffer.from(env.payload, 'base64');
  const msg = pae(env.payloadType, payload);
  let keyidMatched = false;
  for (const s of env.signatures) {
    if (s.keyid && s.keyid !== id) continue;
    keyidMatched = true;
    try {
      if (verify(digestFor(key), msg, key, Buffer.from(s.sig, 'base64')))
        return { keyidMatched, verified: true };
    } catch {
      /* malformed signature: not verified */
    }
  }
  return { keyidMatched, verified: false };
}
