// The one definition of a "uniform" block, shared by the sparse writer (sparse.ts) and the
// dm-verity hashing pass (avb/hashtree.worker.mjs) that maps such blocks for it. Plain
// JavaScript: the hashing worker starts without a TypeScript loader.

/**
 * The 32-bit little-endian word the `blockSize` bytes at `off` of `buf` repeat, or -1 when its
 * words differ (img2simg's FILL test). Cheap for data blocks: three words decide almost all.
 * @param {Buffer} buf
 * @param {number} off
 * @param {number} blockSize
 * @returns {number}
 */
export function uniformWord(buf, off, blockSize) {
  const v = buf.readUInt32LE(off);
  if (buf.readUInt32LE(off + 4) !== v || buf.readUInt32LE(off + blockSize - 4) !== v) return -1;
  // Periodic with period 4 <=> the block equals itself shifted by one word (one memcmp).
  return buf.compare(buf, off + 4, off + blockSize, off, off + blockSize - 4) === 0 ? v : -1;
}

/**
 * Appends `count` uniform blocks of `value` from block `start` to `runs` (flat `start, count,
 * value` triples in block order), extending the last run when they continue it.
 * @param {number[]} runs
 * @param {number} start
 * @param {number} count
 * @param {number} value
 */
export function addUniformRun(runs, start, count, value) {
  const last = runs.length - 3;
  if (last >= 0 && runs[last] + runs[last + 1] === start && runs[last + 2] === value) runs[last + 1] += count;
  else runs.push(start, count, value);
}
