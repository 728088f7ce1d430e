export const NN: number;
export const FEC_BLOCKSIZE: number;
export const alphaTo: Uint8Array;
export const indexOf: Uint8Array;
export function modnn(x: number): number;
/** Shift-register multiplication tables for `roots` parity symbols (roots × 256 bytes). */
export function rsTables(roots: number): Uint8Array;
/** Parity of the codeword `data[dOff + i * stride]`, i < n, into `parity[pOff .. pOff + roots)`. */
export function rsParity(
  t: Uint8Array,
  roots: number,
  data: Uint8Array,
  dOff: number,
  stride: number,
  n: number,
  parity: Uint8Array,
  pOff: number,
): void;
