/**
 * Which blocks of an image repeat one 32-bit word (zeros, or a fill pattern), as found by a pass
 * that read the image anyway (the dm-verity hashing): a sparse writer turns exactly those blocks
 * into FILL chunks, so it can plan its chunks from this instead of reading the image again.
 */
import { addUniformRun } from './uniform-word.mjs';

export interface UniformBlocks {
  blockSize: number;
  /** Blocks classified, from block 0: the map says nothing about later ones. */
  blocks: number;
  /**
   * Runs of uniform blocks in block order, as flat `start, count, value` triples (`value`: the
   * little-endian 32-bit word each block repeats); every other block of the first `blocks` is
   * data.
   */
  runs: number[];
}

/** Joins maps of consecutive block ranges (in order), merging runs that meet at a boundary. */
export function joinUniformBlocks(
  blockSize: number,
  parts: Array<{ blocks: number; runs: number[] }>,
): UniformBlocks {
  const runs: number[] = [];
  let blocks = 0;
  for (const p of parts) {
    for (let i = 0; i < p.runs.length; i += 3) addUniformRun(runs, p.runs[i], p.runs[i + 1], p.runs[i + 2]);
    blocks += p.blocks;
  }
  return { blockSize, blocks, runs };
}

/**
 * Calls `visit(count, value)` for blocks [from, to) in order: `value` -1 for a stretch of data
 * blocks, else the word a run of uniform blocks repeats. `to` must not pass `map.blocks`.
 */
export async function visitUniformBlocks(
  map: UniformBlocks,
  from: number,
  to: number,
  visit: (count: number, value: number) => Promise<void>,
): Promise<void> {
  if (from < 0 || to > map.blocks || from > to)
    throw new RangeError(`blocks [${from}, ${to}) are outside the ${map.blocks} blocks classified`);
  const { runs } = map;
  // First run that ends after `from` (runs are sorted and disjoint).
  let lo = 0;
  let hi = runs.length / 3;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid * 3] + runs[mid * 3 + 1] <= from) lo = mid + 1;
    else hi = mid;
  }
  let at = from;
  for (let r = lo * 3; at < to; r += 3) {
    const start = r < runs.length ? Math.max(runs[r], at) : to;
    if (start >= to) {
      await visit(to - at, -1);
      break;
    }
    if (start > at) await visit(start - at, -1);
    const end = Math.min(runs[r] + runs[r + 1], to);
    await visit(end - start, runs[r + 2]);
    at = end;
  }
}
