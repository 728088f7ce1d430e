/**
 * Block extents as the payload generator handles them (payload_generator/extent_ranges.cc,
 * extent_utils.cc): an Extent is a run of blocks; a BlockSet is a sorted set of disjoint runs
 * with the set operations the delta generator needs.
 */

export interface Extent {
  startBlock: number;
  numBlocks: number;
}

export const blocksIn = (extents: readonly Extent[]): number => extents.reduce((a, e) => a + e.numBlocks, 0);

/** Appends `block` to a list of extents, growing the last one when it is contiguous. */
export function appendBlock(extents: Extent[], block: number): void {
  const last = extents[extents.length - 1];
  if (last && last.startBlock + last.numBlocks === block) last.numBlocks++;
  else extents.push({ startBlock: block, numBlocks: 1 });
}

/** Joins adjacent extents (NormalizeExtents); order is kept. */
export function normalize(extents: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.numBlocks === 0) continue;
    const last = out[out.length - 1];
    if (last && last.startBlock + last.numBlocks === e.startBlock) last.numBlocks += e.numBlocks;
    else out.push({ ...e });
  }
  return out;
}

/** Blocks [from, from + count) of the concatenation of `extents` (ExtentsSublist). */
export function sublist(extents: readonly Extent[], from: number, count: number): Extent[] {
  const out: Extent[] = [];
  let pos = 0;
  for (const e of extents) {
    const start = Math.max(from, pos);
    const end = Math.min(from + count, pos + e.numBlocks);
    if (end > start) out.push({ startBlock: e.startBlock + (start - pos), numBlocks: end - start });
    pos += e.numBlocks;
    if (pos >= from + count) break;
  }
  return out;
}

/** A set of blocks kept as sorted, disjoint, non-adjacent runs. */
export class BlockSet {
  private starts: number[] = [];
  private ends: number[] = [];

  /** Index of the first run whose end is > block. */
  private find(block: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid] <= block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(block: number): boolean {
    const i = this.find(block);
    return i < this.starts.length && this.starts[i] <= block;
  }

  add(start: number, count = 1): void {
    if (count <= 0) return;
    let end = start + count;
    // Runs that touch or overlap [start, end) merge into one.
    const i = this.find(start - 1);
    let j = i;
    while (j < this.starts.length && this.starts[j] <= end) {
      start = Math.min(start, this.starts[j]);
      end = Math.max(end, this.ends[j]);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, end);
  }

  addExtents(extents: readonly Extent[]): void {
    for (const e of extents) this.add(e.startBlock, e.numBlocks);
  }

  get blocks(): number {
    let n = 0;
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i] - this.starts[i];
    return n;
  }

  /** The runs, in block order. */
  extents(): Extent[] {
    return this.starts.map((s, i) => ({ startBlock: s, numBlocks: this.ends[i] - s }));
  }

  /** `extents` without the blocks of this set, order kept (FilterExtentRanges). */
  filter(extents: readonly Extent[]): Extent[] {
    const out: Extent[] = [];
    for (const e of extents) {
      let at = e.startBlock;
      const end = e.startBlock + e.numBlocks;
      let i = this.find(at);
      while (at < end) {
        if (i >= this.starts.length || this.starts[i] >= end) {
          out.push({ startBlock: at, numBlocks: end - at });
          break;
        }
        if (this.starts[i] > at) out.push({ startBlock: at, numBlocks: this.starts[i] - at });
        at = Math.max(at, this.ends[i]);
        i++;
      }
    }
    return normalize(out);
  }
}
