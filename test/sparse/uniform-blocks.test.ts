import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateHashtree } from '../../scripts/formats/avb/hashtree.ts';
import {
  joinUniformBlocks,
  type UniformBlocks,
  visitUniformBlocks,
} from '../../scripts/formats/uniform-blocks.ts';
import { workDir } from '../helpers.ts';
import { randomBytes } from './fixtures.ts';

/**
 * The map of uniform blocks the dm-verity pass makes (so that super.img's sparse plan needs no
 * read of its own) against a per-word classification done here, across worker boundaries and
 * with a salt that leaves the blocks unaligned in the hashing buffer.
 */

const dir = workDir('uniform-blocks');
const BS = 4096;

/** 1024 blocks + a partial one: data, zeros and fills crossing the 3-worker range boundaries (342, 684). */
function patterned(): Buffer {
  const b = randomBytes(71, 1024 * BS + 1000);
  const fill = (from: number, to: number, word: number) => {
    for (let o = from * BS; o < to * BS; o += 4) b.writeUInt32LE(word, o);
  };
  fill(0, 3, 0);
  fill(300, 400, 0); // zeros across the first boundary
  fill(400, 402, 0xdeadbeef); // a fill right after zeros
  fill(680, 690, 0x01010101); // across the second boundary
  fill(690, 691, 0x01010102); // same neighbour, other word: a run of its own
  fill(700, 701, 0xabcdabcd);
  b.writeUInt32LE(0x12345678, 700 * BS + 2048); // uniform but for one middle word: data
  fill(1023, 1024, 7);
  return b;
}

/** Per block: the word it repeats, or -1 (every word compared, no shortcuts). */
function classifyHere(b: Buffer, blocks: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < blocks; i++) {
    const v = b.readUInt32LE(i * BS);
    let same = true;
    for (let o = 4; o < BS && same; o += 4) same = b.readUInt32LE(i * BS + o) === v;
    out.push(same ? v : -1);
  }
  return out;
}

async function expand(map: UniformBlocks, from = 0, to = map.blocks): Promise<number[]> {
  const out: number[] = [];
  await visitUniformBlocks(map, from, to, async (count, value) => {
    expect(count).toBeGreaterThan(0);
    for (let i = 0; i < count; i++) out.push(value);
  });
  return out;
}

describe('uniform-block maps', () => {
  // As add_hashtree_footer leaves it: zero-padded to a whole block.
  const data = Buffer.concat([patterned(), Buffer.alloc(BS - 1000)]);
  const path = join(dir, 'patterned.img');
  writeFileSync(path, data);
  const want = classifyHere(data, 1025);

  for (const [workers, saltLen] of [
    [1, 32],
    [3, 32],
    [3, 5],
    [2, 0],
  ]) {
    it(`the hashing pass maps them exactly (${workers} worker(s), ${saltLen}-byte salt), merged across ranges`, async () => {
      const ht = await generateHashtree(path, {
        imageSize: 1025 * BS,
        blockSize: BS,
        hashAlgorithm: 'sha256',
        salt: randomBytes(3, saltLen),
        workers,
        uniformBlocks: true,
      });
      const map = ht.uniformBlocks!;
      expect(map.blocks).toBe(1025);
      expect(await expand(map)).toEqual(want);
      expect(want[1023]).toBe(7);
      expect(want[1024]).toBe(-1);
      expect(map.runs.slice(0, 3)).toEqual([0, 3, 0]);
      // One run per stretch, however the workers split the image.
      expect(map.runs).toContain(300);
      expect(map.runs[map.runs.indexOf(300) + 1]).toBe(100);
      const at680 = map.runs.indexOf(680);
      expect(map.runs.slice(at680, at680 + 6)).toEqual([680, 10, 0x01010101, 690, 1, 0x01010102]);
    });
  }

  it('covers whole blocks only when the image ends mid-block', async () => {
    const short = join(dir, 'short.img');
    writeFileSync(short, data.subarray(0, 10 * BS + 100));
    const ht = await generateHashtree(short, {
      imageSize: 10 * BS + 100,
      blockSize: BS,
      hashAlgorithm: 'sha256',
      salt: Buffer.alloc(0),
      uniformBlocks: true,
    });
    expect(ht.uniformBlocks!.blocks).toBe(10);
    expect(await expand(ht.uniformBlocks!)).toEqual(want.slice(0, 10));
  });

  it('visits any sub-range as its blocks, starting and ending inside runs', async () => {
    const map = joinUniformBlocks(BS, [
      { blocks: 50, runs: [5, 10, 0, 15, 5, 9] },
      { blocks: 50, runs: [50, 3, 9, 60, 40, 0] },
    ]);
    // Runs that meet at the boundary with one word merge; others stay apart.
    expect(map.runs).toEqual([5, 10, 0, 15, 5, 9, 50, 3, 9, 60, 40, 0]);
    const all = await expand(map);
    expect(all.length).toBe(100);
    for (const [from, to] of [
      [0, 100],
      [7, 12],
      [12, 55],
      [20, 60],
      [99, 100],
      [30, 30],
    ])
      expect(await expand(map, from, to), `${from}..${to}`).toEqual(all.slice(from, to));
    const merged = joinUniformBlocks(BS, [
      { blocks: 10, runs: [8, 2, 4] },
      { blocks: 10, runs: [10, 3, 4] },
    ]);
    expect(merged.runs).toEqual([8, 5, 4]);
    await expect(expand(map, 90, 101)).rejects.toThrow(RangeError);
  });
});
