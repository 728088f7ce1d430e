import type { FileHandle } from 'node:fs/promises';
import { writeAll } from '../io.ts';
import { alphaTo, FEC_BLOCKSIZE, indexOf, modnn, NN, rsParity, rsTables } from '../reed-solomon.mjs';

/**
 * dm-verity forward error correction as update_engine regenerates it after installing a
 * partition (payload_consumer/verity_writer_android.cc EncodeFEC, with libfec's
 * fec_ecc_interleave and Phil Karn's encode_rs_char): Reed-Solomon RS(255, 255-roots) over
 * GF(2^8) with field polynomial 0x11d, first consecutive root 0, primitive element 1. Data bytes
 * are interleaved across the whole data area so one lost block costs each codeword one byte.
 * Full OTAs leave the FEC area out of their operations; the device (and we) recompute it.
 */

/** An RS encoder for one `roots` value: `encode(data[0..255-roots), parity[0..roots))`. */
export class RsEncoder {
  private readonly t: Uint8Array;
  readonly n: number;
  constructor(readonly roots: number) {
    this.t = rsTables(roots);
    this.n = NN - roots;
  }

  encode(data: Uint8Array, dOff: number, parity: Uint8Array, pOff: number): void {
    rsParity(this.t, this.roots, data, dOff, 1, this.n, parity, pOff);
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
