// Reed-Solomon RS(255, 255-roots) over GF(2^8) as dm-verity FEC uses it (libfec, Phil Karn's
// encode_rs_char: field polynomial 0x11d, first consecutive root 0, primitive element 1). Plain
// JavaScript so worker threads load it without a TypeScript loader.

export const NN = 255;
/** libfec's FEC_BLOCKSIZE: the interleave stride is 4096 whatever the filesystem block size. */
export const FEC_BLOCKSIZE = 4096;
const A0 = NN; // log of zero

export const alphaTo = new Uint8Array(NN + 1);
export const indexOf = new Uint8Array(NN + 1);
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

export function modnn(x) {
  while (x >= NN) {
    x -= NN;
    x = (x >> 8) + (x & NN);
  }
  return x;
}

/** Generator polynomial in index (log) form for `roots` parity symbols (fcr 0, prim 1). */
function generator(roots) {
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

/**
 * Multiplication tables of the encoder's shift register: row m (256 bytes at m * 256) maps the
 * feedback symbol x = data ^ parity[0] to x · g_m, so each step is table look-ups and XORs
 * (Karn's encode_rs_char with the log/antilog arithmetic done once per symbol value).
 */
export function rsTables(roots) {
  if (!Number.isInteger(roots) || roots < 1 || roots >= NN) throw new RangeError(`bad RS roots ${roots}`);
  const g = generator(roots);
  const t = new Uint8Array(roots * 256);
  for (let m = 0; m < roots; m++)
    for (let x = 1; x < 256; x++) t[m * 256 + x] = alphaTo[modnn(indexOf[x] + g[m])];
  return t;
}

/**
 * Parity of one codeword whose `n` data symbols are `data[dOff + i * stride]`, written to
 * `parity[pOff .. pOff + roots)`.
 */
export function rsParity(t, roots, data, dOff, stride, n, parity, pOff) {
  if (roots === 2) {
    // The common case (AOSP builds use 2 roots), kept in registers.
    let b0 = 0;
    let b1 = 0;
    for (let i = 0, at = dOff; i < n; i++, at += stride) {
      const x = data[at] ^ b0;
      b0 = b1 ^ t[256 + x];
      b1 = t[x];
    }
    parity[pOff] = b0;
    parity[pOff + 1] = b1;
    return;
  }
  parity.fill(0, pOff, pOff + roots);
  const last = pOff + roots - 1;
  for (let i = 0, at = dOff; i < n; i++, at += stride) {
    const x = data[at] ^ parity[pOff];
    for (let j = 1; j < roots; j++) parity[pOff + j - 1] = parity[pOff + j] ^ t[(roots - j) * 256 + x];
    parity[last] = t[x];
  }
}
