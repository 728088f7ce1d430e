import type { FileHandle } from 'node:fs/promises';
import { writeAll } from '../io.ts';

/**
 * dm-verity forward error correction as update_engine regenerates it after installing a
 * partition (payload_consumer/verity_writer_android.cc EncodeFEC, with libfec's
 * fec_ecc_interleave and Phil Karn's encode_rs_char): Reed-Solomon RS(255, 255-roots) over
 * GF(2^8) with field polynomial 0x11d, first consecutive root 0, primitive element 1. Data bytes
 * are interleaved across the whole data area so one lost block costs each codeword one byte.
 * Full OTAs leave the FEC area out of their operations; the device (and we) recompute it.
 */

const NN = 255;
/** libfec's FEC_BLOCKSIZE: the interleave stride is fixed at 4096 whatever the fs block size. */
const FEC_BLOCKSIZE = 4096;
const A0 = NN; // log of zero

const alphaTo = new Uint8Array(NN + 1);
const indexOf = new Uint8Array(NN + 1);
{
  let sr = 1;
  indexOf[0] = A0;
  alphaTo[A0] = 0;
  for (let i = 0; i < NN; i++) {
    indexOf[sr] = i;
    alphaTo[i] = sr;
    sr <<= 1;
    if (sr & 0x100) sr ^= 0x11d;
    sr &= 0xff;
  }
}
const modnn = (x: number) => {
  while (x >= NN) {
    x -= NN;
    x = (x >> 8) + (x & NN);
  }
  return x;
};

/** Generator polynomial in index (log) form for `roots` parity symbols (fcr 0, prim 1). */
function generator(roots: number): Uint8Array {
  const g = new Uint8Array(roots + 1);
  g[0] = 1;
  for (let i = 0, root = 0; i < roots; i++, root += 1) {
    g[i + 1] = 1;
    for (let j = i; j > 0; j--) {
      g[j] = g[j] !== 0 ? g[j - 1] ^ alphaTo[modnn(indexOf[g[j]] + root)] : g[j - 1];
    }
    g[0] = alphaTo[modnn(indexOf[g[0]] + root)];
  }
  for (let i = 0; i <= roots; i++) g[i] = indexOf[g[i]];
  return g;
}

/** An RS encoder for one `roots` value: `encode(data[0..255-roots), parity[0..roots))`. */
export class RsEncoder {
  private readonly g: Uint8Array;
  readonly n: number;
  constructor(readonly roots: number) {
    if (!Number.isInteger(roots) || roots < 1 || roots >= NN) throw new RangeError(`bad RS roots ${roots}`);
    this.g = generator(roots);
    this.n = NN - roots;
  }

  encode(data: Uint8Array, dOff: number, parity: Uint8Array, pOff: number): void {
    const { roots, g, n } = this;
    parity.fill(0, pOff, pOff + roots);
    for (let i = 0; i < n; i++) {
      const feedback = indexOf[data[dOff + i] ^ parity[pOff]];
      if (feedback !== A0) {
        for (let j = 1; j < roots; j++) parity[pOff + j] ^= alphaTo[modnn(feedback + g[roots - j])];
      }
      parity.copyWithin(pOff, pOff + 1, pOff + roots);
      parity[pOff + roots - 1] = feedback !== A0 ? alphaTo[modnn(feedback + g[0])] : 0;
    }
  }
}

/** Evaluates codeword (data ‖ parity) at α^i for i < roots; all zero for a valid codeword. */
export function rsSyndromes(codeword: Uint8Array, roots: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < roots; i++) {
    let s = 0;
    for (const c of codeword) s = (s === 0 ? 0 : alphaTo[modnn(indexOf[s] + i)]) ^ c;
    out.push(s);
  }
  return out;
}

export interface FecLayout {
  dataOffset: number;
  dataSize: number;
  fecOffset: number;
  fecSize: number;
  roots: number;
  blockSize: number;
}

/** Size of the FEC area update_engine expects for `dataSize` bytes (rounds × roots × blockSize). */
export function fecSize(dataSize: number, roots: number, blockSize: number): number {
  const rsN = NN - roots;
  return Math.ceil(dataSize / blockSize / rsN) * roots * blockSize;
}

/** Computes the FEC of [dataOffset, +dataSize) in `fh` and writes it at fecOffset. */
export async function encodeFec(fh: FileHandle, l: FecLayout): Promise<void> {
  const { blockSize, roots } = l;
  const rs = new RsEncoder(roots);
  const rsN = rs.n;
  const rounds = Math.ceil(l.dataSize / blockSize / rsN);
  if (l.dataSize % blockSize !== 0 || rounds * roots * blockSize !== l.fecSize)
    throw new RangeError(`FEC size ${l.fecSize} does not match data size ${l.dataSize} with ${roots} roots`);
  const rsBlocks = new Uint8Array(blockSize * rsN);
  const buffer = Buffer.alloc(blockSize);
  const fec = Buffer.alloc(blockSize * roots);
  for (let i = 0; i < rounds; i++) {
    for (let j = 0; j < rsN; j++) {
      // fec_ecc_interleave(i * rsN * blockSize + j, rsN, rounds)
      const x = i * rsN * blockSize + j;
      const offset = Math.floor(x / rsN) + (x % rsN) * rounds * FEC_BLOCKSIZE;
      buffer.fill(0);
      if (offset < l.dataSize) {
        let got = 0;
        while (got < blockSize) {
          const { bytesRead } = await fh.read(buffer, got, blockSize - got, l.dataOffset + offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      }
      for (let k = 0; k < blockSize; k++) rsBlocks[k * rsN + j] = buffer[k];
    }
    for (let j = 0; j < blockSize; j++) rs.encode(rsBlocks, j * rsN, fec, j * roots);
    await writeAll(fh, fec, l.fecOffset + i * fec.length);
  }
}
