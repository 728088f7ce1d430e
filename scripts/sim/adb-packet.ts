/**
 * The adb transport packet (AOSP packages/modules/adb/protocol.txt, adb.h): a 24-byte little-endian
 * header `command, arg0, arg1, data_length, data_crc32, magic` followed by `data_length` bytes.
 * `magic` is `command ^ 0xffffffff`; `data_crc32` is, despite its name, the byte sum of the payload,
 * which peers at protocol version >= A_VERSION_SKIP_CHECKSUM may leave at 0 and must not check.
 *
 * Also the Android RSA public key format adb uses for AUTH (libcrypto_utils android_pubkey.cpp):
 * base64 of `{u32 modulus_size_words = 64; u32 n0inv; u8 modulus[256] LE; u8 rr[256] LE; u32 exponent}`
 * followed by " user@host".
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { FormatError } from '../errors.ts';

export const A_SYNC = 0x434e5953;
export const A_CNXN = 0x4e584e43;
export const A_OPEN = 0x4e45504f;
export const A_OKAY = 0x59414b4f;
export const A_CLSE = 0x45534c43;
export const A_WRTE = 0x45545257;
export const A_AUTH = 0x48545541;
export const A_STLS = 0x534c5453;

export const A_VERSION_MIN = 0x01000000;
export const A_VERSION_SKIP_CHECKSUM = 0x01000001;
export const A_VERSION = 0x01000001;

export const MAX_PAYLOAD_V1 = 4 * 1024;
export const MAX_PAYLOAD = 1024 * 1024;

/** AUTH packet types (arg0). */
export const ADB_AUTH_TOKEN = 1;
export const ADB_AUTH_SIGNATURE = 2;
export const ADB_AUTH_RSAPUBLICKEY = 3;
export const TOKEN_SIZE = 20;

export const HEADER_SIZE = 24;

const KNOWN = new Set([A_SYNC, A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH, A_STLS]);

export interface AdbPacket {
  command: number;
  arg0: number;
  arg1: number;
  data: Buffer;
}

/** "CNXN", "WRTE", … for messages and logs. */
export function commandName(cmd: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(cmd >>> 0);
  return /^[A-Z0-9]{4}$/.test(b.toString('latin1')) ? b.toString('latin1') : `0x${(cmd >>> 0).toString(16)}`;
}

export function payloadChecksum(data: Buffer): number {
  let sum = 0;
  for (const byte of data) sum += byte;
  return sum >>> 0;
}

/** Serialises one packet. The checksum is always filled in: harmless for v2 peers, required by v1. */
export function encodePacket(p: AdbPacket): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32LE(p.command >>> 0, 0);
  h.writeUInt32LE(p.arg0 >>> 0, 4);
  h.writeUInt32LE(p.arg1 >>> 0, 8);
  h.writeUInt32LE(p.data.length, 12);
  h.writeUInt32LE(payloadChecksum(p.data), 16);
  h.writeUInt32LE((p.command ^ 0xffffffff) >>> 0, 20);
  return p.data.length ? Buffer.concat([h, p.data]) : h;
}

/**
 * Incremental packet parser for a byte stream. `push()` returns every complete packet; a malformed
 * header (unknown command, bad magic, oversize length, checksum mismatch when checked) throws a
 * FormatError and the caller drops the connection, as adbd does.
 */
export class AdbPacketReader {
  /** Unparsed bytes, kept as received: concatenated only once a whole packet is there. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private consumed = 0;
  /** Largest payload accepted (adbd: MAX_PAYLOAD before and after CNXN). */
  maxPayload = MAX_PAYLOAD;
  /** Check data_crc32: true until CNXN negotiates A_VERSION_SKIP_CHECKSUM or later. */
  verifyChecksum = true;

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }

  private peekHeader(): Buffer {
    if (this.chunks[0].length < HEADER_SIZE) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, HEADER_SIZE);
  }

  push(chunk: Buffer): AdbPacket[] {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: AdbPacket[] = [];
    for (;;) {
      if (this.buffered < HEADER_SIZE) break;
      const h = this.peekHeader();
      const command = h.readUInt32LE(0);
      const length = h.readUInt32LE(12);
      const check = h.readUInt32LE(16);
      const magic = h.readUInt32LE(20);
      const at = this.consumed;
      if (!KNOWN.has(command))
        throw new FormatError({
          format: 'adb',
          reason: 'unknown command',
          field: 'command',
          offset: at,
          found: command,
        });
      if (magic !== (command ^ 0xffffffff) >>> 0)
        throw new FormatError({
          format: 'adb',
          reason: 'bad magic',
          field: 'magic',
          offset: at + 20,
          expected: (command ^ 0xffffffff) >>> 0,
          found: magic,
        });
      if (length > this.maxPayload)
        throw new FormatError({
          format: 'adb',
          reason: 'length out of range',
          field: 'data_length',
          offset: at + 12,
          expected: `<= ${this.maxPayload}`,
          found: length,
        });
      if (this.buffered < HEADER_SIZE + length) break;
      const arg0 = h.readUInt32LE(4);
      const arg1 = h.readUInt32LE(8);
      this.take(HEADER_SIZE);
      const data = Buffer.from(this.take(length));
      if (this.verifyChecksum && payloadChecksum(data) !== check)
        throw new FormatError({
          format: 'adb',
          reason: 'payload checksum mismatch',
          field: 'data_crc32',
          offset: at + 16,
          expected: payloadChecksum(data),
          found: check,
        });
      out.push({ command, arg0, arg1, data });
      this.consumed += HEADER_SIZE + length;
    }
    return out;
  }
}

export const ANDROID_PUBKEY_MODULUS_SIZE = 256;
const ANDROID_PUBKEY_ENCODED_SIZE = 4 + 4 + 256 + 256 + 4;

export interface AdbPublicKey {
  /** The RSA key, usable with crypto.publicDecrypt. */
  key: KeyObject;
  /** The key line as stored in adb_keys: "<base64> <comment>". */
  line: string;
  comment: string;
  /** MD5 of the binary key, upper-case hex pairs joined by ":" (what Android's USB debugging dialog shows). */
  fingerprint: string;
}

/** Parses "<base64 android pubkey>[ comment]" (the RSAPUBLICKEY payload, or a line of adbkey.pub / adb_keys). */
export function parseAdbPublicKey(text: string): AdbPublicKey {
  const line = text.replace(/\0+$/, '').trim();
  const space = line.indexOf(' ');
  const b64 = space < 0 ? line : line.slice(0, space);
  const comment = space < 0 ? '' : line.slice(space + 1).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    throw new FormatError({ format: 'adb-pubkey', reason: 'not base64', field: 'key' });
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== ANDROID_PUBKEY_ENCODED_SIZE)
    throw new FormatError({
      format: 'adb-pubkey',
      reason: 'bad key size',
      field: 'length',
      expected: ANDROID_PUBKEY_ENCODED_SIZE,
      found: raw.length,
    });
  const words = raw.readUInt32LE(0);
  if (words !== ANDROID_PUBKEY_MODULUS_SIZE / 4)
    throw new FormatError({
      format: 'adb-pubkey',
      reason: 'unsupported modulus size',
      field: 'modulus_size_words',
      offset: 0,
      expected: ANDROID_PUBKEY_MODULUS_SIZE / 4,
      found: words,
    });
  // Little-endian on the wire; JWK wants big-endian.
  const n = Buffer.from(raw.subarray(8, 8 + ANDROID_PUBKEY_MODULUS_SIZE)).reverse();
  const exponent = raw.readUInt32LE(8 + 2 * ANDROID_PUBKEY_MODULUS_SIZE);
  if (exponent < 3 || exponent % 2 === 0 || n[0] === 0)
    throw new FormatError({
      format: 'adb-pubkey',
      reason: 'invalid RSA key',
      field: 'exponent',
      found: exponent,
    });
  const e = Buffer.alloc(4);
  e.writeUInt32BE(exponent);
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: {
        kty: 'RSA',
        n: n.toString('base64url'),
        e: e.subarray(e.findIndex((x) => x !== 0)).toString('base64url'),
      },
      format: 'jwk',
    });
  } catch (cause) {
    throw new FormatError({ format: 'adb-pubkey', reason: 'invalid RSA key', field: 'modulus' }, { cause });
  }
  return { key, line: comment ? `${b64} ${comment}` : b64, comment, fingerprint: adbKeyFingerprint(raw) };
}

export function adbKeyFingerprint(rawKey: Buffer): string {
  return createHash('md5')
    .update(rawKey)
    .digest('hex')
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:');
}

/** Encodes an RSA-2048 public key in the Android format (base64, no comment). */
export function encodeAdbPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' }) as { n: string; e: string };
  const nBuf = Buffer.from(jwk.n, 'base64url');
  if (nBuf.length !== ANDROID_PUBKEY_MODULUS_SIZE)
    throw new FormatError({ format: 'adb-pubkey', reason: 'adb keys are RSA-2048', found: nBuf.length * 8 });
  const n = BigInt(`0x${nBuf.toString('hex')}`);
  const r32 = 1n << 32n;
  // n0inv = -1 / n[0] mod 2^32
  const n0 = n % r32;
  let inv = 1n;
  for (let i = 0; i < 5; i++) inv = (inv * (2n - n0 * inv)) % r32;
  const n0inv = (r32 - inv) % r32;
  const rr = (1n << 4096n) % n;
  const out = Buffer.alloc(ANDROID_PUBKEY_ENCODED_SIZE);
  out.writeUInt32LE(ANDROID_PUBKEY_MODULUS_SIZE / 4, 0);
  out.writeUInt32LE(Number(n0inv), 4);
  Buffer.from(nBuf).reverse().copy(out, 8);
  Buffer.from(rr.toString(16).padStart(512, '0'), 'hex')
    .reverse()
    .copy(out, 8 + 256);
  out.writeUInt32LE(Number(BigInt(`0x${Buffer.from(jwk.e, 'base64url').toString('hex')}`)), 8 + 512);
  return out.toString('base64');
}

/** SHA-1 DigestInfo prefix: adb signs the 20-byte token as if it were a SHA-1 digest (RSA_sign(NID_sha1)). */
export const SHA1_DIGEST_INFO = Buffer.from('3021300906052b0e03021a05000414', 'hex');
