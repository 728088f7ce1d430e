import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../scripts/errors.ts';
import { applyPartition } from '../../scripts/formats/payload/apply.ts';
import type { PayloadOperation } from '../../scripts/formats/payload/reader.ts';
import { decodeXz } from '../../scripts/formats/payload/xz.ts';
import { mutate, prng, workDir } from '../helpers.ts';

/**
 * REPLACE_XZ / REPLACE_ZSTD / REPLACE_BZ data as real tools write it. delta_generator's xz has no
 * check and a BCJ filter for ELF blobs (x86 or ARM-Thumb); other producers (payload packers,
 * xz -T, concatenation) give CRC64/SHA-256 checks, several blocks or streams; zstd and bzip2
 * streams may be concatenated frames. The host xz / zstd / bzip2 make every blob.
 */
const W = workDir('payload-compression');
const BS = 4096;

/** ELF-looking data with many branch/call opcodes, so every BCJ filter really rewrites bytes. */
function codeLike(seed: number, size: number): Buffer {
  const rnd = prng(seed);
  const alphabet = [0x00, 0xff, 0xe8, 0xe9, 0xeb, 0xf0, 0xf8, 0xf7, 0xfb, 0x94, 0x90, 0x97, 0x25, 0x9f];
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++)
    b[i] = rnd() < 0.7 ? alphabet[Math.floor(rnd() * alphabet.length)] : Math.floor(rnd() * 256);
  // An ELF header for EM_ARM (40): what makes delta_generator pick ARM-Thumb.
  b.write('\x7fELF\x01\x01\x01', 0, 'latin1');
  b.writeUInt16LE(40, 18);
  return b;
}

const tool = async (cmd: string, args: string[], input: Buffer) =>
  Buffer.from(
    (await execa(cmd, args, { input, encoding: 'buffer', stripFinalNewline: false })).stdout as Uint8Array,
  );

async function unxz(data: Buffer, maxOutput = 1 << 30): Promise<Buffer> {
  const out: Buffer[] = [];
  await decodeXz(data, { maxOutput }, async (c) => {
    out.push(Buffer.from(c));
  });
  return Buffer.concat(out);
}

let code: Buffer;
let text: Buffer;
beforeAll(() => {
  code = codeLike(7, 600 * 1024 + 123);
  text = Buffer.from('the quick brown fox '.repeat(20_000));
});

describe('xz container (REPLACE_XZ) against the xz CLI', () => {
  const variants: [string, string[]][] = [
    ['delta_generator: no check, LZMA2 preset 6', ['--check=none', '--lzma2=preset=6']],
    ['delta_generator ELF x86: BCJ x86 + LZMA2, no check', ['--check=none', '--x86', '--lzma2=preset=6']],
    ['delta_generator ELF ARM: BCJ ARM-Thumb + LZMA2, no check', ['--check=none', '--armthumb', '--lzma2']],
    ['BCJ ARM, CRC32', ['--check=crc32', '--arm', '--lzma2']],
    ['BCJ ARM64, CRC64', ['--check=crc64', '--arm64', '--lzma2']],
    ['BCJ x86 with a start offset, SHA-256', ['--check=sha256', '--x86=start=8192', '--lzma2']],
    ['several blocks (xz --block-size), CRC64', ['--check=crc64', '--block-size=100000']],
    ['multi-threaded xz -T2', ['-T2', '--block-size=200000']],
  ];
  it.each(variants)('%s', async (_name, args) => {
    for (const input of [code, text]) {
      const packed = await tool('xz', ['-z', '-c', ...args], input);
      expect((await unxz(packed)).equals(input)).toBe(true);
    }
  });

  it('concatenated streams with stream padding, and an empty stream', async () => {
    const a = await tool('xz', ['-z', '-c', '--check=crc32'], code.subarray(0, 5000));
    const b = await tool('xz', ['-z', '-c', '--check=none', '--x86', '--lzma2'], code.subarray(5000));
    const joined = Buffer.concat([a, Buffer.alloc(8), b, Buffer.alloc(4)]);
    expect((await unxz(joined)).equals(code)).toBe(true);
    expect((await unxz(await tool('xz', ['-z', '-c'], Buffer.alloc(0)))).length).toBe(0);
  });

  it('refuses output larger than the destination before decoding, and a bad check', async () => {
    const packed = await tool('xz', ['-z', '-c', '--check=crc32'], text);
    await expect(unxz(packed, text.length - 1)).rejects.toThrow(/larger than its destination/);
    const sha = await tool('xz', ['-z', '-c', '--check=sha256'], text);
    const bad = Buffer.from(sha);
    // The check follows the compressed data; the index and footer (last 12 + index bytes) follow it.
    const checkAt = bad.length - 12 - 12 - 32;
    bad[checkAt] ^= 1;
    await expect(unxz(bad)).rejects.toThrow(/check of the decoded data does not match/);
    const delta = await tool('xz', ['-z', '-c', '--delta=dist=4', '--lzma2'], text);
    await expect(unxz(delta)).rejects.toThrow(/unsupported filter/);
  });

  it('fuzz: 1500 mutated xz files → FormatError or the right output', async () => {
    const seed = await tool(
      'xz',
      ['-z', '-c', '--check=crc64', '--armthumb', '--lzma2', '--block-size=3000'],
      code.subarray(0, 9000),
    );
    const rnd = prng(99);
    for (let i = 0; i < 1500; i++) {
      const m = mutate(seed, rnd);
      try {
        const out = await unxz(m, 20_000);
        expect(out.length).toBeLessThanOrEqual(20_000);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
      }
    }
  }, 120_000);
});

/** Applies one partition made of one REPLACE_* operation per blob, as extract.ts does. */
async function applyBlobs(name: string, type: string, blobs: Buffer[], image: Buffer) {
  const file = join(W, `${name}.blobs`);
  writeFileSync(file, Buffer.concat(blobs));
  const blocks = Math.ceil(image.length / BS);
  const per = Math.ceil(blocks / blobs.length);
  let offset = 0;
  const operations: PayloadOperation[] = blobs.map((b, index) => {
    const op: PayloadOperation = {
      index,
      type,
      dataOffset: offset,
      dataLength: b.length,
      srcExtents: [],
      // Two extents per operation, in reverse order: multi-extent dst_extents are written in order.
      dstExtents: [
        { startBlock: index * per + 1, numBlocks: Math.min(per, blocks - index * per) - 1 },
        { startBlock: index * per, numBlocks: 1 },
      ],
      dataSha256: createHash('sha256').update(b).digest('hex'),
    };
    offset += b.length;
    return op;
  });
  const outPath = join(W, `${name}.img`);
  const res = await applyPartition({
    file,
    blobsOffset: 0,
    blockSize: BS,
    partition: { name, size: image.length, operations, runPostinstall: false, mergeOperations: 0 },
    outPath,
  });
  return { res, out: readFileSync(outPath) };
}

/** Reorders an image's blocks the way applyBlobs's extents expect them in the data stream. */
function streamOrder(image: Buffer, pieces: number): Buffer[] {
  const blocks = image.length / BS;
  const per = Math.ceil(blocks / pieces);
  const out: Buffer[] = [];
  for (let i = 0; i < pieces; i++) {
    const first = i * per;
    const last = Math.min(blocks, first + per);
    out.push(
      Buffer.concat([
        image.subarray((first + 1) * BS, last * BS),
        image.subarray(first * BS, (first + 1) * BS),
      ]),
    );
  }
  return out;
}

describe('REPLACE_* operations with real compressor output', () => {
  const image = Buffer.concat([codeLike(3, 40 * BS), Buffer.from('x'.repeat(24 * BS))]);
  it('REPLACE_XZ: BCJ ARM-Thumb without check, and xz -T2 multi-block', async () => {
    const parts = streamOrder(image, 2);
    const blobs = [
      await tool('xz', ['-z', '-c', '--check=none', '--armthumb', '--lzma2=preset=6'], parts[0]),
      await tool('xz', ['-z', '-c', '-T2', '--block-size=50000'], parts[1]),
    ];
    const { out } = await applyBlobs('xz', 'REPLACE_XZ', blobs, image);
    expect(out.equals(image)).toBe(true);
  });
  it('REPLACE_ZSTD: concatenated frames, --long and level 19', async () => {
    const parts = streamOrder(image, 2);
    const half = Math.floor(parts[0].length / 2);
    const blobs = [
      Buffer.concat([
        await tool('zstd', ['-z', '-c', '-q', '-3'], parts[0].subarray(0, half)),
        await tool('zstd', ['-z', '-c', '-q', '--no-check', '-19'], parts[0].subarray(half)),
      ]),
      await tool('zstd', ['-z', '-c', '-q', '--long=24'], parts[1]),
    ];
    const { out } = await applyBlobs('zstd', 'REPLACE_ZSTD', blobs, image);
    expect(out.equals(image)).toBe(true);
  });
  it('REPLACE_BZ: concatenated bzip2 streams', async () => {
    const parts = streamOrder(image, 2);
    const half = Math.floor(parts[0].length / 3);
    const blobs = [
      Buffer.concat([
        await tool('bzip2', ['-z', '-c', '-9'], parts[0].subarray(0, half)),
        await tool('bzip2', ['-z', '-c', '-1'], parts[0].subarray(half)),
      ]),
      await tool('bzip2', ['-z', '-c'], parts[1]),
    ];
    const { out } = await applyBlobs('bz', 'REPLACE_BZ', blobs, image);
    expect(out.equals(image)).toBe(true);
  });
});
