import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

/**
 * CRC-32 (zlib's) helpers: data goes through zlib's native crc32; zero runs (sparse DONT_CARE,
 * zero FILL) and pieces checksummed elsewhere are folded in with GF(2) matrix powers, costing
 * O(log n) instead of hashing gigabytes again. libsparse's sparse_crc32 is this CRC over the
 * expanded image.
 */

function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  let i = 0;
  while (vec !== 0) {
    if (vec & 1) sum ^= mat[i];
    vec >>>= 1;
    i++;
  }
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n]);
}

/** Applies the linear "append `len` zero bytes" operator to a raw CRC register value. */
function shiftZeros(reg: number, len: number): number {
  if (len <= 0) return reg >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320;
  let row = 1;
  for (let n = 1; n < 32; n++) {
    odd[n] = row;
    row = (row << 1) >>> 0;
  }
  gf2Square(even, odd); // 2 zero bits
  gf2Square(odd, even); // 4 zero bits
  let left = len;
  for (;;) {
    gf2Square(even, odd);
    if (left % 2 === 1) reg = gf2Times(even, reg);
    left = Math.floor(left / 2);
    if (left === 0) break;
    gf2Square(odd, even);
    if (left % 2 === 1) reg = gf2Times(odd, reg);
    left = Math.floor(left / 2);
    if (left === 0) break;
  }
  return reg >>> 0;
}

/** crc32(prefix || zeros(len)) given crc32(prefix). */
export function crc32AppendZeros(crc: number, len: number): number {
  return (shiftZeros((crc ^ 0xffffffff) >>> 0, len) ^ 0xffffffff) >>> 0;
}

export function crc32Update(crc: number, data: Buffer): number {
  return crc32(data, crc) >>> 0;
}

/**
 * crc32(a || b) from crc32(a), crc32(b) and b's length (zlib's crc32_combine): lets pieces
 * of one file be checksummed on different threads, or ahead of time, and joined.
 */
export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  return (shiftZeros(crcA >>> 0, lenB) ^ crcB) >>> 0;
}

/**
 * crc32 of pieces checksummed separately (on several threads), joined in order. A pass over a
 * file in fixed-size chunks joins hundreds of pieces of one length: for a length that repeats,
 * "append that many zeros" is worked out once as a 32×32 GF(2) matrix (its columns: the shifted
 * unit vectors), so each further piece costs one matrix-vector product instead of ~20 squarings.
 */
export function crc32Join(pieces: ReadonlyArray<{ crc32: number; length: number }>): number {
  const seen = new Map<number, number>();
  for (const p of pieces) seen.set(p.length, (seen.get(p.length) ?? 0) + 1);
  const operators = new Map<number, Uint32Array>();
  for (const [length, count] of seen)
    if (count > 32)
      operators.set(
        length,
        Uint32Array.from({ length: 32 }, (_, i) => shiftZeros(2 ** i, length)),
      );
  let crc = 0;
  for (const p of pieces) {
    const op = operators.get(p.length);
    crc = op ? (gf2Times(op, crc) ^ p.crc32) >>> 0 : crc32Combine(crc, p.crc32, p.length);
  }
  return crc;
}

/** Continues `crc` (of whatever came before) over the bytes of `path` from `from` to its end. */
export async function crc32OfFile(
  path: string,
  opts: { from?: number; crc?: number; buffer?: Buffer } = {},
): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const buf = opts.buffer ?? Buffer.allocUnsafeSlow(4 << 20);
    let crc = opts.crc ?? 0;
    for (let pos = opts.from ?? 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return crc >>> 0;
      crc = crc32(buf.subarray(0, bytesRead), crc);
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}
