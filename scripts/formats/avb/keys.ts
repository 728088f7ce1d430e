import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { FormatError, InputError } from '../../errors.ts';

/**
 * The AVB public key blob (AvbRSAPublicKeyHeader + modulus + rr, avb_crypto.h), as written by
 * `avbtool extract_public_key` and embedded in vbmeta images and chain descriptors:
 *   u32be key_num_bits, u32be n0inv = -1/n[0] mod 2^32, modulus (BE), rr = R^2 mod n (BE).
 */
export interface AvbPublicKey {
  numBits: number;
  n0inv: number;
  modulus: bigint;
  rr: bigint;
}

/** SHA-256 of the public key blobs of AOSP's public test keys (external/avb/test/data). */
export const PUBLIC_TEST_KEY_SHA256: Readonly<Record<string, string>> = {
  '22de3994532196f61c039e90260d78a93a4c57362c7e789be928036e80b77c8c': 'testkey_rsa2048',
  '7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6': 'testkey_rsa4096',
  e15e2365469ce672a91d02cc8d9c2f29b787481e574d3b56ac774153d7ced614: 'testkey_rsa8192',
};

export function bigFromBuffer(b: Buffer): bigint {
  return b.length ? BigInt(`0x${b.toString('hex')}`) : 0n;
}

export function bigToBuffer(v: bigint, bytes: number): Buffer {
  const hex = v.toString(16).padStart(bytes * 2, '0');
  if (hex.length > bytes * 2) throw new RangeError('value does not fit');
  return Buffer.from(hex, 'hex');
}

function bitLength(v: bigint): number {
  return v === 0n ? 0 : v.toString(2).length;
}

/** Inverse of odd `a` modulo 2^32 (Newton iteration; each step doubles the correct bits). */
function inverseMod2p32(a: number): number {
  let x = a >>> 0; // correct to 3 bits for odd a
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x)) >>> 0;
  return x >>> 0;
}

/** Encodes an RSA public modulus (exponent must be 65537) as an AVB public key blob. */
export function encodeAvbPublicKeyFromModulus(modulus: bigint): Buffer {
  // avbtool: num_bits = round_to_pow2(ceil(log2(n))); r = 2^bit_length(n)
  const nbits = bitLength(modulus);
  if (nbits < 2 || (modulus & 1n) === 0n)
    throw new InputError('RSA modulus is not a valid odd number', { code: 'AVB_BAD_KEY' });
  const isPow2 = (modulus & (modulus - 1n)) === 0n;
  const log2ceil = isPow2 ? nbits - 1 : nbits;
  const numBits = 2 ** Math.ceil(Math.log2(log2ceil));
  const n0 = Number(modulus & 0xffffffffn);
  const n0inv = (0x100000000 - inverseMod2p32(n0)) % 0x100000000;
  const r = 1n << BigInt(nbits);
  const rr = (r * r) % modulus;
  const head = Buffer.alloc(8);
  head.writeUInt32BE(numBits, 0);
  head.writeUInt32BE(n0inv >>> 0, 4);
  return Buffer.concat([head, bigToBuffer(modulus, numBits / 8), bigToBuffer(rr, numBits / 8)]);
}

/** RSA public key (from a private or public KeyObject) → AVB public key blob. */
export function encodeAvbPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || !jwk.n || !jwk.e)
    throw new InputError('AVB keys must be RSA keys', { code: 'AVB_BAD_KEY', context: { kty: jwk.kty } });
  if (bigFromBuffer(Buffer.from(jwk.e, 'base64url')) !== 65537n)
    throw new InputError('only RSA keys with exponent 65537 are supported by AVB', { code: 'AVB_BAD_KEY' });
  return encodeAvbPublicKeyFromModulus(bigFromBuffer(Buffer.from(jwk.n, 'base64url')));
}

/**
 * Reads a key file like avbtool's RSAPublicKey does: a PEM private key, a PEM/DER public key,
 * or (convenience) an AVB public key blob (`avbtool extract_public_key` output). Returns the blob.
 */
export function readAvbPublicKey(path: string): Buffer {
  const data = readFileSync(path);
  return avbPublicKeyFromBytes(data, path);
}

export function avbPublicKeyFromBytes(data: Buffer, source = '(inline)'): Buffer {
  const text = data.toString('latin1');
  try {
    if (text.includes('PRIVATE KEY-----')) return encodeAvbPublicKey(createPrivateKey(data));
    if (text.includes('PUBLIC KEY-----')) return encodeAvbPublicKey(createPublicKey(data));
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read RSA key ${source}: ${(e as Error).message}`, {
      code: 'AVB_BAD_KEY',
      context: { key: source },
      cause: e,
    });
  }
  // Already an AVB blob?
  decodeAvbPublicKey(data, source);
  return Buffer.from(data);
}

/** Parses and sanity-checks an AVB public key blob. */
export function decodeAvbPublicKey(blob: Buffer, file?: string): AvbPublicKey {
  const fail = (reason: string, found?: unknown, expected?: unknown): never => {
    throw new FormatError({ format: 'avb-public-key', reason, found, expected, file });
  };
  if (blob.length < 8) fail('truncated', blob.length, '>= 8 bytes');
  const numBits = blob.readUInt32BE(0);
  if (numBits === 0 || numBits % 8 !== 0 || numBits > 16384)
    fail('bad key_num_bits', numBits, '2048, 4096 or 8192');
  const n = numBits / 8;
  if (blob.length !== 8 + 2 * n) fail('size does not match key_num_bits', blob.length, 8 + 2 * n);
  return {
    numBits,
    n0inv: blob.readUInt32BE(4),
    modulus: bigFromBuffer(blob.subarray(8, 8 + n)),
    rr: bigFromBuffer(blob.subarray(8 + n, 8 + 2 * n)),
  };
}

/** node:crypto public key (e = 65537) for an AVB public key blob. */
export function avbPublicKeyToKeyObject(blob: Buffer): KeyObject {
  const pk = decodeAvbPublicKey(blob);
  const n = blob.subarray(8, 8 + pk.numBits / 8);
  try {
    return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }, format: 'jwk' });
  } catch (e) {
    throw new FormatError({ format: 'avb-public-key', reason: `unusable modulus: ${(e as Error).message}` });
  }
}

export function avbPublicKeySha256(blob: Buffer): string {
  return createHash('sha256').update(blob).digest('hex');
}

export function avbPublicKeySha1(blob: Buffer): string {
  return createHash('sha1').update(blob).digest('hex');
}

/** True when `blob` is the AVB public key of one of AOSP's public test keys (never for release). */
export function isPublicTestKey(blob: Buffer): boolean {
  return publicTestKeyName(blob) !== undefined;
}

/** Name of the AOSP test key ("testkey_rsa4096", …) `blob` belongs to, if any. */
export function publicTestKeyName(blob: Buffer): string | undefined {
  return PUBLIC_TEST_KEY_SHA256[avbPublicKeySha256(blob)];
}

/**
 * Generates an RSA signing key usable by AVB (exponent 65537) and writes it as a PKCS#1 PEM
 * ("RSA PRIVATE KEY", like AOSP's keys) with mode 0600. Refuses to overwrite an existing file.
 * Returns the AVB public key blob of the new key.
 */
export async function generateAvbKey(path: string, bits: 2048 | 4096 | 8192): Promise<Buffer> {
  if (![2048, 4096, 8192].includes(bits))
    throw new InputError(`AVB keys are 2048, 4096 or 8192 bits, not ${bits}`, { code: 'AVB_BAD_KEY_SIZE' });
  const { privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: bits,
    publicExponent: 65537,
  });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' });
  await writeFile(path, pem, { mode: 0o600, flag: 'wx' }).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot write key ${path}: ${e.code ?? e.message}`, {
      code: e.code === 'EEXIST' ? 'KEY_EXISTS' : 'KEY_WRITE_FAILED',
      context: { file: path },
      hint:
        e.code === 'EEXIST'
          ? 'refusing to overwrite an existing key; remove it or choose another path'
          : undefined,
    });
  });
  return encodeAvbPublicKey(privateKey);
}
