import { createHash } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../scripts/errors.ts';
import { generateHashtree } from '../../scripts/formats/avb/hashtree.ts';
import { hashBlocks, readvFully } from '../../scripts/formats/avb/hashtree.worker.mjs';
import { DIR, randomData } from './fixtures.ts';

/**
 * Level-0 hashing (the hot loop that reads the whole image) against an independent per-block
 * `H(salt || block)` computed here, across the read paths: file readv, a caller's `read` that
 * returns short counts, readv calls the kernel completes only partly, and a short file.
 */

const dir = join(DIR, 'ht-level0');

function expectedDigests(data: Buffer, blockSize: number, alg: string, salt: Buffer, slot: number) {
  const n = Math.ceil(data.length / blockSize);
  const out = Buffer.alloc(n * slot);
  for (let i = 0; i < n; i++) {
    const block = Buffer.alloc(blockSize);
    data.copy(block, 0, i * blockSize, Math.min(data.length, (i + 1) * blockSize));
    createHash(alg)
      .update(salt)
      .update(block)
      .digest()
      .copy(out, i * slot);
  }
  return out;
}

describe('hashtree level 0', () => {
  const cases = [
    { alg: 'sha256', blockSize: 4096, saltLen: 32, size: 3 * 1024 * 1024 + 4096 * 3 + 100 },
    // 512-byte blocks: more blocks per chunk than IOV_MAX allows in one readv.
    { alg: 'sha1', blockSize: 512, saltLen: 0, size: 1024 * 1024 + 7 },
    { alg: 'sha512', blockSize: 1024, saltLen: 64, size: 300 * 1024 },
  ];
  for (const c of cases) {
    it(`${c.alg} ${c.blockSize} B blocks, ${c.saltLen} B salt: file and read() paths equal per-block hashes`, async () => {
      await mkdir(dir, { recursive: true });
      const data = randomData(c.size, c.size);
      const path = join(dir, `img-${c.alg}-${c.blockSize}`);
      await writeFile(path, data);
      const salt = randomData(c.saltLen, 3);
      const slot = createHash(c.alg).digest().length === 20 ? 32 : createHash(c.alg).digest().length;
      const numBlocks = Math.ceil(c.size / c.blockSize);
      const want = expectedDigests(data, c.blockSize, c.alg, salt, slot);
      const job = {
        path,
        imageSize: c.size,
        blockSize: c.blockSize,
        hashAlgorithm: c.alg,
        salt,
        startBlock: 0,
        endBlock: numBlocks,
        slot,
        outOffset: 16,
      };
      const viaFile = new Uint8Array(16 + numBlocks * slot);
      await hashBlocks({ ...job, out: viaFile });
      expect(Buffer.from(viaFile.subarray(16)).equals(want)).toBe(true);
      // A reader that never returns more than 1000 bytes at a time (like a sparse reader at chunk edges).
      const viaRead = new Uint8Array(16 + numBlocks * slot);
      await hashBlocks({
        ...job,
        out: viaRead,
        read: async (buf, position) => {
          const n = Math.max(0, Math.min(buf.length, 1000, c.size - position));
          data.copy(buf, 0, position, position + n);
          return n;
        },
      });
      expect(Buffer.from(viaRead.subarray(16)).equals(want)).toBe(true);
      // A sub-range (as one worker thread gets) lands at its own offset.
      const part = new Uint8Array(numBlocks * slot);
      const from = Math.floor(numBlocks / 3);
      await hashBlocks({ ...job, startBlock: from, out: part, outOffset: from * slot });
      expect(Buffer.from(part.subarray(from * slot)).equals(want.subarray(from * slot))).toBe(true);
    });
  }

  it('uniform blocks (digest reused per word) and threads sharing one claim counter give the per-block hashes', async () => {
    await mkdir(dir, { recursive: true });
    const bs = 4096;
    // 700 blocks (2 MiB chunks: 2 of 512 blocks): zeros, fill words, blocks that repeat a word
    // but one that differs in its middle, 100 distinct fill words, data, and a short last block
    // that is zero (its padded block equals a zero block).
    const blocks: Buffer[] = [];
    const fill = (w: number) => Buffer.alloc(bs, Buffer.from(Uint32Array.of(w).buffer));
    for (let i = 0; i < 700; i++) {
      if (i % 7 === 0) blocks.push(Buffer.alloc(bs));
      else if (i % 7 === 1) blocks.push(fill(0x01010101 * (i % 3)));
      else if (i % 7 === 2) blocks.push(fill(0x1000 + i));
      else if (i % 7 === 3) {
        const b = fill(0xdeadbeef);
        b[bs / 2] ^= 1;
        blocks.push(b);
      } else if (i % 7 === 4) blocks.push(fill(0xdeadbeef));
      else blocks.push(randomData(bs, i));
    }
    blocks.push(Buffer.alloc(1000));
    const data = Buffer.concat(blocks);
    const path = join(dir, 'uniform.img');
    await writeFile(path, data);
    const salt = randomData(32, 11);
    const numBlocks = blocks.length;
    const want = expectedDigests(data, bs, 'sha256', salt, 32);
    const job = {
      path,
      imageSize: data.length,
      blockSize: bs,
      hashAlgorithm: 'sha256',
      salt,
      startBlock: 0,
      endBlock: numBlocks,
      slot: 32,
      outOffset: 0,
      crc32: true,
    };
    const alone = new Uint8Array(numBlocks * 32);
    await hashBlocks({ ...job, out: alone });
    expect(Buffer.from(alone).equals(want)).toBe(true);
    // Three callers on one counter: every chunk hashed exactly once, each digest in its place.
    const shared = new Uint8Array(numBlocks * 32);
    const claim = new Int32Array(new SharedArrayBuffer(4));
    const results = await Promise.all([0, 1, 2].map(() => hashBlocks({ ...job, out: shared, claim })));
    expect(Buffer.from(shared).equals(want)).toBe(true);
    const chunks = results.flatMap((r) => r.chunks).sort((a, b) => a.firstBlock - b.firstBlock);
    expect(chunks.map((c) => [c.firstBlock, c.blocks])).toEqual([
      [0, 512],
      [512, numBlocks - 512],
    ]);
    expect(chunks[1].crc32).toBe(crc32(data.subarray(512 * bs)));
  });

  it('readvFully resumes a partial readv inside a view and across views', async () => {
    const data = randomData(10_000, 9);
    const calls: number[] = [];
    const fh = {
      // Completes at most 777 bytes per call, like a readv interrupted mid-iovec.
      async readv(buffers: Uint8Array[], position: number) {
        calls.push(position);
        let left = Math.min(777, data.length - position);
        let bytesRead = 0;
        for (const b of buffers) {
          const n = Math.min(b.length, left);
          b.set(data.subarray(position + bytesRead, position + bytesRead + n));
          bytesRead += n;
          left -= n;
          if (left === 0) break;
        }
        return { bytesRead };
      },
    };
    const backing = Buffer.alloc(3 * 1100);
    const views = [0, 1, 2].map((i) => backing.subarray(i * 1100 + 100, (i + 1) * 1100));
    const got = await readvFully(fh, views, 2500, 1234);
    expect(got).toBe(2500);
    expect(calls.length).toBe(Math.ceil(2500 / 777));
    expect(Buffer.concat(views.map((v) => Buffer.from(v))).subarray(0, 2500)).toEqual(
      data.subarray(1234, 1234 + 2500),
    );
    // Gaps between the views (where the salt lives) are untouched.
    expect(backing.subarray(0, 100).every((b) => b === 0)).toBe(true);
    // At end of file it returns what it read instead of looping.
    expect(await readvFully(fh, views, 3000, 9000)).toBe(1000);
  });

  it('an image shorter than imageSize is a FormatError at the offset where data ended', async () => {
    await mkdir(dir, { recursive: true });
    const path = join(dir, 'short.img');
    await writeFile(path, randomData(5 * 4096 + 10, 4));
    for (const workers of [1, 2]) {
      const err = await generateHashtree(path, {
        imageSize: 1024 * 4096,
        blockSize: 4096,
        hashAlgorithm: 'sha256',
        salt: Buffer.alloc(0),
        workers,
      }).catch((e) => e);
      expect(err).toBeInstanceOf(FormatError);
      // One thread stops where the data ends; a worker starting past the end stops at its start.
      if (workers === 1) expect(err.offset).toBe(5 * 4096 + 10);
      else expect(err.offset).toBeGreaterThanOrEqual(5 * 4096 + 10);
    }
    // Truncated while hashed: still a typed error, not a crash.
    const fh = await open(path, 'r+');
    await fh.truncate(0);
    await fh.close();
    await expect(
      generateHashtree(path, {
        imageSize: 8192,
        blockSize: 4096,
        hashAlgorithm: 'sha256',
        salt: Buffer.alloc(0),
      }),
    ).rejects.toBeInstanceOf(FormatError);
  });
});
