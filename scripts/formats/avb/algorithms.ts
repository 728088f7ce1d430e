import {
  constants,
  createHash,
  createPrivateKey,
  type KeyObject,
  privateEncrypt,
  publicDecrypt,
} from 'node:crypto';
import { FormatError, InputError, VerificationError } from '../../errors.ts';
import { avbPublicKeyToKeyObject, decodeAvbPublicKey } from './keys.ts';

/**
 * AVB signature algorithms (AvbAlgorithmType in avb_crypto.h / ALGORITHMS in avbtool).
 * avbtool signs `padding || hash(data)` with a raw RSA private-key operation, where `padding` is
 * the PKCS#1 v1.5 block type 1 prefix plus the DER DigestInfo header. We do the same raw
 * operation with node:crypto (RSA_NO_PADDING), so signatures are byte-identical to avbtool's.
 */
export type AvbAlgorithmName =
  | 'NONE'
  | 'SHA256_RSA2048'
  | 'SHA256_RSA4096'
  | 'SHA256_RSA8192'
  | 'SHA512_RSA2048'
  | 'SHA512_RSA4096'
  | 'SHA512_RSA8192';

export interface AvbAlgorithm {
  name: AvbAlgorithmName;
  /** AvbAlgorithmType value stored in the vbmeta header. */
  type: number;
  /** node:crypto hash name, '' for NONE. */
  hashName: '' | 'sha256' | 'sha512';
  hashBytes: number;
  signatureBytes: number;
  /** Size of the AVB public key blob: 8 + 2 * key bytes. */
  publicKeyBytes: number;
  /** PKCS#1 v1.5 padding + DigestInfo prefix that precedes the digest in the signed block. */
  padding: Buffer;
}

const SHA256_DIGEST_INFO = [
  0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
  0x20,
];
const SHA512_DIGEST_INFO = [
  0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
  0x40,
];

function rsa(name: AvbAlgorithmName, type: number, hash: 'sha256' | 'sha512', bits: number): AvbAlgorithm {
  const hashBytes = hash === 'sha256' ? 32 : 64;
  const info = hash === 'sha256' ? SHA256_DIGEST_INFO : SHA512_DIGEST_INFO;
  const keyBytes = bits / 8;
  // 0x00 0x01 FF..FF 0x00 DigestInfo digest  ==  keyBytes in total
  const ffCount = keyBytes - 3 - info.length - hashBytes;
  const padding = Buffer.from([0x00, 0x01, ...new Array<number>(ffCount).fill(0xff), 0x00, ...info]);
  return {
    name,
    type,
    hashName: hash,
    hashBytes,
    signatureBytes: keyBytes,
    publicKeyBytes: 8 + 2 * keyBytes,
    padding,
  };
}

export const AVB_ALGORITHMS: readonly AvbAlgorithm[] = [
  {
    name: 'NONE',
    type: 0,
    hashName: '',
    hashBytes: 0,
    signatureBytes: 0,
    publicKeyBytes: 0,
    padding: Buffer.alloc(0),
  },
  rsa('SHA256_RSA2048', 1, 'sha256', 2048),
  rsa('SHA256_RSA4096', 2, 'sha256', 4096),
  rsa('SHA256_RSA8192', 3, 'sha256', 8192),
  rsa('SHA512_RSA2048', 4, 'sha512', 2048),
  rsa('SHA512_RSA4096', 5, 'sha512', 4096),
  rsa('SHA512_RSA8192', 6, 'sha512', 8192),
];

export function algorithmByName(name: string): AvbAlgorithm {
  const a = AVB_ALGORITHMS.find((x) => x.name === name);
  if (!a)
    throw new InputError(`unknown AVB algorithm ${JSON.stringify(name)}`, {
      code: 'AVB_UNKNOWN_ALGORITHM',
      context: { algorithm: name, known: AVB_ALGORITHMS.map((x) => x.name) },
    });
  return a;
}

export function algorithmByType(type: number, file?: string): AvbAlgorithm {
  const a = AVB_ALGORITHMS.find((x) => x.type === type);
  if (!a)
    throw new FormatError({
      format: 'vbmeta',
      reason: 'unknown algorithm type',
      field: 'algorithm_type',
      found: type,
      file,
    });
  return a;
}

/** Loads a PEM (PKCS#1 or PKCS#8) RSA private key from a path or from PEM text / KeyObject. */
export function loadPrivateKey(key: string | Buffer | KeyObject, readFile: (p: string) => Buffer): KeyObject {
  if (typeof key === 'object' && !Buffer.isBuffer(key)) return key;
  const pem = Buffer.isBuffer(key) ? key : key.includes('-----BEGIN') ? Buffer.from(key) : readFile(key);
  try {
    const k = createPrivateKey(pem);
    if (k.asymmetricKeyType !== 'rsa') throw new Error(`not an RSA key (${k.asymmetricKeyType})`);
    return k;
  } catch (e) {
    throw new InputError(
      `cannot load RSA private key${typeof key === 'string' && !key.includes('-----') ? ` ${key}` : ''}: ${(e as Error).message}`,
      {
        code: 'AVB_BAD_KEY',
        context: { key: typeof key === 'string' && !key.includes('-----') ? key : '(inline)' },
        cause: e,
      },
    );
  }
}

/** Hash of the signed data (header block || auxiliary block) with the algorithm's hash. */
export function avbDigest(alg: AvbAlgorithm, ...parts: Buffer[]): Buffer {
  if (!alg.hashName) return Buffer.alloc(0);
  const h = createHash(alg.hashName);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** RSA signature over `padding || digest`, like `openssl rsautl -sign -raw` in avbtool. */
export function signDigest(alg: AvbAlgorithm, key: KeyObject, digest: Buffer): Buffer {
  if (!alg.hashName) return Buffer.alloc(0);
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== alg.signatureBytes * 8)
    throw new InputError(
      `key size (${bits} bits) does not match algorithm ${alg.name} (${alg.signatureBytes * 8} bits)`,
      { code: 'AVB_KEY_SIZE_MISMATCH', context: { keyBits: bits, algorithm: alg.name } },
    );
  if (key.asymmetricKeyDetails?.publicExponent !== 65537n)
    throw new InputError('only RSA keys with exponent 65537 are supported by AVB', { code: 'AVB_BAD_KEY' });
  return privateEncrypt({ key, padding: constants.RSA_NO_PADDING }, Buffer.concat([alg.padding, digest]));
}

/**
 * Checks `signature` against the AVB public key blob: the raw RSA public operation must give
 * exactly `padding || digest` (what libavb's avb_rsa_verify and avbtool's verify do).
 */
export function verifySignature(
  alg: AvbAlgorithm,
  publicKeyBlob: Buffer,
  digest: Buffer,
  signature: Buffer,
): void {
  if (!alg.hashName) return;
  const pk = decodeAvbPublicKey(publicKeyBlob);
  if (pk.numBits !== alg.signatureBytes * 8)
    throw new VerificationError(
      'avb',
      `public key has ${pk.numBits} bits but algorithm ${alg.name} needs ${alg.signatureBytes * 8}`,
      {
        code: 'AVB_KEY_SIZE_MISMATCH',
        context: { keyBits: pk.numBits, algorithm: alg.name },
      },
    );
  if (signature.length !== alg.signatureBytes)
    throw new VerificationError(
      'avb',
      `signature is ${signature.length} bytes, ${alg.name} needs ${alg.signatureBytes}`,
      {
        code: 'AVB_SIGNATURE_INVALID',
      },
    );
  let decoded: Buffer;
  try {
    decoded = publicDecrypt(
      { key: avbPublicKeyToKeyObject(publicKeyBlob), padding: constants.RSA_NO_PADDING },
      signature,
    );
  } catch (e) {
    throw new VerificationError(
      'avb',
      `signature does not decode with the embedded public key: ${(e as Error).message}`,
      {
        code: 'AVB_SIGNATURE_INVALID',
        cause: e,
      },
    );
  }
  if (!decoded.equals(Buffer.concat([alg.padding, digest])))
    throw new VerificationError('avb', `${alg.name} signature is not valid for the vbmeta data`, {
      code: 'AVB_SIGNATURE_INVALID',
      context: { algorithm: alg.name },
    });
}
