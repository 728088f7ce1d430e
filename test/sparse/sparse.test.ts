import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError, InputError, OmieError } from '../../scripts/errors.ts';
import { crc32Combine, crc32Join } from '../../scripts/formats/crc32.ts';
import {
  CHUNK_CRC32,
  CHUNK_DONT_CARE,
  CHUNK_FILL,
  CHUNK_RAW,
  fastbootSparseLimit,
  openImage,
  rawToSparse,
  readSparse,
  SparseImage,
  SparseStreamWriter,
  sparseToRaw,
  splitSparse,
} from '../../scripts/formats/sparse.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';
import { mixedImage, randomBytes, sha256File } from './fixtures.ts';

const dir = workDir('sparse');
let raw: string;
let refSparse: string; // img2simg output
let refRaw: string; // simg2img of refSparse (raw padded to whole blocks)

beforeAll(async () => {
  raw = await mixedImage('sparse');
  refSparse = join(dir, 'ref.simg');
  refRaw = join(dir, 'ref.raw');
  await execa('img2simg', [raw, refSparse]);
  await execa('simg2img', [refSparse, refRaw]);
});

/** Hand-built sparse file: header fields and chunks as given (for CRC and odd header sizes). */
function handmade(opts: {
  blockSize?: number;
  fileHdr?: number;
  chunkHdr?: number;
  chunks: Array<{ type: number; blocks: number; payload?: Buffer }>;
  totalBlocks?: number;
}): Buffer {
  const bs = opts.blockSize ?? 4096;
  const fh = opts.fileHdr ?? 28;
  const ch = opts.chunkHdr ?? 12;
  const head = Buffer.alloc(fh);
  head.writeUInt32LE(0xed26ff3a, 0);
  head.writeUInt16LE(1, 4);
  head.writeUInt16LE(fh, 8);
  head.writeUInt16LE(ch, 10);
  head.writeUInt32LE(bs, 12);
  head.writeUInt32LE(opts.totalBlocks ?? opts.chunks.reduce((a, c) => a + c.blocks, 0), 16);
  head.writeUInt32LE(opts.chunks.length, 20);
  const parts: Buffer[] = [head];
  for (const c of opts.chunks) {
    const h = Buffer.alloc(ch);
    const payload = c.payload ?? Buffer.alloc(0);
    h.writeUInt16LE(c.type, 0);
    h.writeUInt32LE(c.blocks, 4);
    h.writeUInt32LE(ch + payload.length, 8);
    parts.push(h, payload);
  }
  return Buffer.concat(parts);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/** A small sparse file with every chunk type, a valid CRC32 and a 32-byte file header. */
function richSample(hdr: { fileHdr?: number; chunkHdr?: number } = { fileHdr: 32, chunkHdr: 16 }): {
  sparse: Buffer;
  expanded: Buffer;
} {
  const bs = 1024;
  const d1 = randomBytes(1, 2 * bs);
  const fill = Buffer.alloc(3 * bs);
  for (let i = 0; i < fill.length; i += 4) fill.writeUInt32LE(0x11223344, i);
  const zeros = Buffer.alloc(2 * bs);
  const d2 = randomBytes(2, bs);
  const expanded = Buffer.concat([d1, fill, zeros, d2]);
  const crcMid = crc32(Buffer.concat([d1, fill, zeros]));
  const sparse = handmade({
    blockSize: bs,
    ...hdr,
    chunks: [
      { type: CHUNK_RAW, blocks: 2, payload: d1 },
      { type: CHUNK_FILL, blocks: 3, payload: u32(0x11223344) },
      { type: CHUNK_DONT_CARE, blocks: 2 },
      { type: CHUNK_CRC32, blocks: 0, payload: u32(crcMid) },
      { type: CHUNK_RAW, blocks: 1, payload: d2 },
      { type: CHUNK_CRC32, blocks: 0, payload: u32(crc32(expanded)) },
    ],
  });
  return { sparse, expanded };
}

/** simg_dump -v rows: [dataOffset, dataBytes, outBlock, outBlocks, kind]. */
async function simgDump(path: string): Promise<Array<[number, number, number, number, string]>> {
  const { stdout } = await execa('simg_dump', ['-v', path]);
  const rows: Array<[number, number, number, number, string]> = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*?)\s*$/.exec(line);
    if (!m) continue;
    const kind = m[5].startsWith('Raw')
      ? 'raw'
      : m[5].startsWith('Fill with 0x')
        ? `fill:${m[5].slice(10).toLowerCase()}`
        : m[5].startsWith("Don't care")
          ? 'dontCare'
          : m[5].startsWith('Unverified CRC32 ')
            ? `crc32:${m[5].slice(17).toLowerCase()}`
            : m[5];
    rows.push([+m[1], +m[2], +m[3], +m[4], kind]);
  }
  return rows;
}

describe('sparse → raw', () => {
  it('reads img2simg output into exactly what simg2img produces', async () => {
    const out = join(dir, 'ours.raw');
    const r = await sparseToRaw(refSparse, out);
    expect(r.size).toBe((await stat(refRaw)).size);
    expect(await sha256File(out)).toBe(await sha256File(refRaw));
  });

  it('streams chunk by chunk to a consumer with bounded buffers', async () => {
    const seen: string[] = [];
    let maxBuf = 0;
    let covered = 0;
    await readSparse(
      refSparse,
      {
        data: (_o, b) => {
          maxBuf = Math.max(maxBuf, b.length);
          covered += b.length;
          if (seen.at(-1) !== 'data') seen.push('data');
        },
        fill: (_o, n) => {
          covered += n;
          seen.push('fill');
        },
        skip: (_o, n) => {
          covered += n;
          seen.push('skip');
        },
      },
      { bufferSize: 64 * 1024 },
    );
    expect(covered).toBe((await stat(refRaw)).size);
    expect(maxBuf).toBeLessThanOrEqual(64 * 1024);
    expect(seen).toContain('fill');
  });

  it('matches simg2img on a hand-made file with CRC32 chunks and larger headers', async () => {
    const { sparse, expanded } = richSample();
    const p = join(dir, 'rich.simg');
    writeFileSync(p, sparse);
    const ours = join(dir, 'rich.ours.raw');
    await sparseToRaw(p, ours);
    expect(readFileSync(ours).equals(expanded)).toBe(true);
    const theirs = join(dir, 'rich.ref.raw');
    await execa('simg2img', [p, theirs]);
    expect(readFileSync(theirs).equals(expanded)).toBe(true);
  });

  it('ignores chunk_sz of CRC32 chunks like libsparse (simg2img expands the same bytes)', async () => {
    const { sparse, expanded } = richSample({ fileHdr: 28, chunkHdr: 12 });
    const odd = Buffer.from(sparse);
    // The first CRC32 chunk header: after the file header, RAW (12+2048), FILL (12+4), DONT_CARE (12).
    const crcAt = 28 + 12 + 2048 + 16 + 12;
    expect(odd.readUInt16LE(crcAt)).toBe(CHUNK_CRC32);
    odd.writeUInt32LE(7, crcAt + 4);
    const p = join(dir, 'crc-chunk-sz.simg');
    writeFileSync(p, odd);
    const theirs = join(dir, 'crc-chunk-sz.ref.raw');
    await execa('simg2img', [p, theirs]);
    const ours = join(dir, 'crc-chunk-sz.ours.raw');
    await sparseToRaw(p, ours);
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    expect(readFileSync(ours).equals(expanded)).toBe(true);
    const img = await SparseImage.open(p);
    try {
      expect(img.chunks.filter((c) => c.type === 'crc32').map((c) => c.blocks)).toEqual([0, 0]);
    } finally {
      await img.close();
    }
  });

  it('rejects a wrong CRC32 with a typed error naming the field', async () => {
    const { sparse } = richSample();
    const bad = Buffer.from(sparse);
    bad.writeUInt32LE(0x12345678, bad.length - 4); // final CRC payload
    const p = join(dir, 'badcrc.simg');
    writeFileSync(p, bad);
    const err = await sparseToRaw(p, join(dir, 'badcrc.raw')).catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.field).toBe('crc32');
    expect(err.offset).toBe(bad.length - 4);
    // …and verifyCrc: false accepts it, as simg2img does.
    await expect(sparseToRaw(p, join(dir, 'badcrc.raw'), { verifyCrc: false })).resolves.toBeTruthy();
  });

  it('gives typed errors with offset and field for broken headers and chunks', async () => {
    const { sparse } = richSample();
    const u32At = (at: number, v: number) => (b: Buffer) => {
      b.writeUInt32LE(v, at);
      return b;
    };
    const u16At = (at: number, v: number) => (b: Buffer) => {
      b.writeUInt16LE(v, at);
      return b;
    };
    const cases: Array<[string, (b: Buffer) => Buffer, string]> = [
      ['magic', u32At(0, 0), 'magic'],
      ['major', u16At(4, 2), 'major_version'],
      ['block size', u32At(12, 1022), 'blk_sz'],
      ['chunk type', u16At(32, 0xcaff), 'chunk_type'],
      ['raw total_sz', u32At(32 + 8, 100), 'total_sz'],
      ['past total_blks', u32At(16, 3), 'chunk_sz'],
      ['too few blocks', u32At(16, 100), 'total_blks'],
      ['truncated', (b) => b.subarray(0, 100), 'chunk 0 data'],
    ];
    for (const [name, f, field] of cases) {
      const p = join(dir, `bad-${name.replace(/ /g, '_')}.simg`);
      writeFileSync(p, f(Buffer.from(sparse)));
      const err = await sparseToRaw(p, join(dir, 'bad.raw')).catch((e) => e);
      expect(err, name).toBeInstanceOf(FormatError);
      expect(err.field, name).toBe(field);
      expect(typeof err.offset, name).toBe('number');
    }
  });
});

describe('raw → sparse', () => {
  it('writes byte-for-byte what img2simg writes', async () => {
    const ours = join(dir, 'ours.simg');
    const r = await rawToSparse(raw, ours);
    expect(readFileSync(ours).equals(readFileSync(refSparse))).toBe(true);
    expect(r.size).toBe((await stat(refSparse)).size);
  });

  it('matches img2simg with a 1024-byte block size too', async () => {
    const ref = join(dir, 'ref1k.simg');
    await execa('img2simg', [raw, ref, '1024']);
    const ours = join(dir, 'ours1k.simg');
    await rawToSparse(raw, ours, { blockSize: 1024 });
    expect(readFileSync(ours).equals(readFileSync(ref))).toBe(true);
  });

  it('zeroAsDontCare output converts back identically with simg2img', async () => {
    const ours = join(dir, 'dc.simg');
    await rawToSparse(raw, ours, { zeroAsDontCare: true });
    const img = await SparseImage.open(ours);
    expect(img.chunks.some((c) => c.type === 'dontCare')).toBe(true);
    expect(img.chunks.some((c) => c.type === 'fill' && c.fillValue === 0)).toBe(false);
    await img.close();
    const back = join(dir, 'dc.raw');
    await execa('simg2img', [ours, back]);
    expect(await sha256File(back)).toBe(await sha256File(refRaw));
  });

  it('handles empty and single-partial-block inputs like img2simg', async () => {
    for (const [name, data] of [
      ['empty', Buffer.alloc(0)],
      ['tiny', randomBytes(3, 100)],
      ['zero-tail', Buffer.alloc(5000)],
    ] as const) {
      const p = join(dir, `${name}.raw`);
      writeFileSync(p, data);
      await execa('img2simg', [p, join(dir, `${name}.ref.simg`)]);
      await rawToSparse(p, join(dir, `${name}.ours.simg`));
      expect(
        readFileSync(join(dir, `${name}.ours.simg`)).equals(readFileSync(join(dir, `${name}.ref.simg`))),
        name,
      ).toBe(true);
    }
  });
});

describe('streaming writer', () => {
  it('random append/fill/skip sequences expand (simg2img) to the expected bytes, chunks merged', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const rnd = prng(seed);
      const bs = seed % 2 ? 4096 : 1024;
      const out = join(dir, `stream-${seed}.simg`);
      const w = await SparseStreamWriter.create(out, bs);
      const parts: Buffer[] = [];
      let expectChunksAtMost = 0;
      for (let op = 0; op < 40; op++) {
        const blocks = 1 + Math.floor(rnd() * 5);
        const r = rnd();
        if (r < 0.4) {
          // Data with zero and patterned blocks mixed in, some at an odd byteOffset.
          const b = Buffer.alloc(blocks * bs);
          for (let k = 0; k < blocks; k++) {
            const t = rnd();
            if (t < 0.5) randomBytes(seed * 1000 + op * 10 + k, bs).copy(b, k * bs);
            else if (t < 0.75) b.fill(0xab, k * bs, (k + 1) * bs);
          }
          const odd = Buffer.alloc(b.length + 1);
          b.copy(odd, 1);
          await w.append(rnd() < 0.5 ? b : odd.subarray(1), { zeroAsDontCare: (o) => (o / bs) % 3 === 0 });
          // DONT_CARE zero blocks expand to zeros as well.
          parts.push(b);
          expectChunksAtMost += blocks;
        } else if (r < 0.7) {
          const v = rnd() < 0.5 ? 0 : 0x01020304;
          await w.fill(blocks, v);
          const b = Buffer.alloc(blocks * bs);
          if (v) for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(v, i);
          parts.push(b);
          expectChunksAtMost++;
        } else {
          await w.skip(blocks);
          parts.push(Buffer.alloc(blocks * bs));
          expectChunksAtMost++;
        }
      }
      const want = Buffer.concat(parts);
      const res = await w.finish();
      expect(res.totalBlocks * bs).toBe(want.length);
      expect(res.size).toBe((await stat(out)).size);
      expect(res.chunks).toBeLessThanOrEqual(expectChunksAtMost);
      const back = join(dir, `stream-${seed}.raw`);
      await execa('simg2img', [out, back]);
      expect(readFileSync(back).equals(want), `seed ${seed}`).toBe(true);
      // Neighbouring runs of one kind merge: no two adjacent chunks of the same kind and value.
      const img = await SparseImage.open(out);
      await img.close();
      for (let i = 1; i < img.chunks.length; i++) {
        const a = img.chunks[i - 1];
        const b = img.chunks[i];
        const same = a.type === b.type && (a.type !== 'fill' || a.fillValue === b.fillValue);
        expect(same, `seed ${seed} chunk ${i}`).toBe(false);
      }
    }
  });

  it('a planning pass then a replay (direct, hashed while written) gives the one-pass bytes', async () => {
    const bs = 4096;
    const rnd = prng(77);
    // Ops on a writer; one long data run (8 MiB) spans flushes, so its header is patched in
    // the one-pass file and must be final from the start in the replayed one.
    type Op = (w: SparseStreamWriter) => Promise<void>;
    const ops: Op[] = [];
    for (let op = 0; op < 60; op++) {
      const r = rnd();
      const blocks = op === 30 ? 2048 : 1 + Math.floor(rnd() * 6);
      if (r < 0.5 || op === 30) {
        const b = Buffer.alloc(blocks * bs);
        for (let k = 0; k < blocks; k++)
          if (rnd() < 0.7) randomBytes(op * 10_000 + k, bs).copy(b, k * bs);
          else if (rnd() < 0.5) b.fill(0x5a, k * bs, (k + 1) * bs);
        ops.push((w) => w.append(b));
      } else if (r < 0.75) ops.push((w) => w.fill(blocks, 0x01020304));
      else ops.push((w) => w.skip(blocks));
    }
    const onePass = join(dir, 'replay-one-pass.simg');
    const w1 = await SparseStreamWriter.create(onePass, bs);
    for (const op of ops) await op(w1);
    const r1 = await w1.finish();
    const planner = SparseStreamWriter.plan(bs);
    for (const op of ops) await op(planner);
    const { plan } = await planner.finish();
    expect(plan?.runs.length).toBe(r1.chunks);
    const replayed = join(dir, 'replay-two-pass.simg');
    const w2 = await SparseStreamWriter.create(replayed, bs, { replay: plan, sha256: true, direct: true });
    for (const op of ops) await op(w2);
    const r2 = await w2.finish();
    const bytes = readFileSync(replayed);
    expect(bytes.equals(readFileSync(onePass))).toBe(true);
    expect(r2.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(r2.size).toBe(r1.size);
  });

  it('a replay fed other content than was planned fails (SPARSE_INPUT_CHANGED)', async () => {
    const bs = 4096;
    const planner = SparseStreamWriter.plan(bs);
    await planner.append(randomBytes(5, 4 * bs));
    await planner.skip(3);
    const { plan } = await planner.finish();
    const out = join(dir, 'replay-changed.simg');
    const w = await SparseStreamWriter.create(out, bs, { replay: plan, sha256: true });
    await w.append(randomBytes(5, 4 * bs));
    // One block shorter than planned, then a FILL where a DONT_CARE was planned.
    await w.skip(2);
    await expect(w.fill(1, 7)).rejects.toMatchObject({ code: 'SPARSE_INPUT_CHANGED' });
    await w.abort();
  });

  it('rejects a buffer that is not whole blocks with a typed error', async () => {
    const w = await SparseStreamWriter.create(join(dir, 'stream-bad.simg'), 4096);
    await expect(w.append(Buffer.alloc(100))).rejects.toBeInstanceOf(InputError);
    await w.abort();
  });
});

describe('chunk listing (simg_dump)', () => {
  it('agrees with simg_dump -v chunk by chunk', async () => {
    const std = join(dir, 'rich-std.simg');
    writeFileSync(std, richSample({}).sparse);
    for (const p of [refSparse, std]) {
      const rows = await simgDump(p);
      const img = await SparseImage.open(p);
      const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;
      const ours = img.chunks.map((c) => [
        c.dataOffset,
        c.dataSize,
        c.block,
        c.blocks,
        c.type === 'fill'
          ? `fill:${hex(c.fillValue!)}`
          : c.type === 'crc32'
            ? `crc32:${hex(c.crc32!)}`
            : c.type,
      ]);
      await img.close();
      expect(ours, p).toEqual(rows);
      expect(ours.length).toBeGreaterThan(3);
    }
  });

  it('reads expanded bytes at random offsets without expanding to disk', async () => {
    const ref = readFileSync(refRaw);
    const img = await openImage(refSparse);
    expect(img.sparse).toBe(true);
    expect(img.size).toBe(ref.length);
    const r = prng(5);
    for (let i = 0; i < 200; i++) {
      const len = 1 + Math.floor(r() * 20000);
      const pos = Math.floor(r() * (ref.length - 1));
      const b = Buffer.alloc(len);
      const n = await img.read(b, pos);
      expect(n).toBe(Math.min(len, ref.length - pos));
      expect(b.subarray(0, n).equals(ref.subarray(pos, pos + n))).toBe(true);
    }
    await img.close();
  });
});

describe('split for fastboot (resparse)', () => {
  const sizes = [1 << 20, 2 * 1024 * 1024 + 17, 3_000_000];
  for (const max of sizes) {
    it(`pieces of at most ${max} bytes reassemble to the image (simg2img a b c out)`, async () => {
      for (const [label, src] of [
        ['sparse', refSparse],
        ['raw', raw],
      ] as const) {
        const pieces = await splitSparse(src, max);
        expect(pieces.length).toBeGreaterThan(1);
        const files: string[] = [];
        for (const [i, p] of pieces.entries()) {
          const f = join(dir, `piece-${label}-${max}-${i}.simg`);
          await p.writeTo(f);
          const size = (await stat(f)).size;
          expect(size, `${label} piece ${i}`).toBe(p.size);
          expect(size, `${label} piece ${i}`).toBeLessThanOrEqual(max);
          files.push(f);
        }
        // libsparse keeps pieces at least ~7/8 full except the last
        for (const p of pieces.slice(0, -1)) expect(p.size).toBeGreaterThan(max * 0.5);
        const out = join(dir, `reassembled-${label}-${max}.raw`);
        await rm(out, { force: true });
        await execa('simg2img', [...files, out]);
        expect(await sha256File(out), label).toBe(await sha256File(refRaw));
        for (const f of files) await rm(f);
      }
    });
  }

  it('refuses a limit too small to hold a block, and mirrors fastboot get_sparse_limit', async () => {
    await expect(splitSparse(refSparse, 100)).rejects.toBeInstanceOf(InputError);
    expect(fastbootSparseLimit(100, 1000)).toBe(0);
    expect(fastbootSparseLimit(5000, 1000)).toBe(1000);
    expect(fastbootSparseLimit(3 * 2 ** 30, 0)).toBe(2 ** 30);
    expect(fastbootSparseLimit(3 * 2 ** 30, 2 ** 31)).toBe(2 ** 30);
  });
});

describe('fuzz', () => {
  it('only typed errors for thousands of mutated sparse files, in bounded time', async () => {
    const { sparse } = richSample();
    const small = readFileSync(join(dir, 'tiny.ref.simg'));
    const r = prng(1234);
    const p = join(dir, 'fuzz.simg');
    const started = Date.now();
    let rejected = 0;
    const sink = { data() {}, fill() {}, skip() {} };
    for (let i = 0; i < 2000; i++) {
      const input = mutate(i % 2 ? sparse : small, r);
      writeFileSync(p, input);
      for (const run of [() => readSparse(p, sink), () => SparseImage.open(p).then((s) => s.close())]) {
        try {
          await run();
        } catch (e) {
          rejected++;
          if (!(e instanceof OmieError)) throw new Error(`case ${i}: untyped error ${String(e)}`);
        }
      }
    }
    expect(rejected).toBeGreaterThan(500);
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});

describe('omie inspect', () => {
  it('reports a sparse image with its chunk counts and content', async () => {
    const r = await omie(['inspect', '--json', refSparse]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('sparse');
    expect(j.result.contains).toBe('ext4');
    const img = await SparseImage.open(refSparse);
    expect(j.result.header.totalChunks).toBe(img.header.totalChunks);
    expect(j.result.counts.raw).toBe(img.chunks.filter((c) => c.type === 'raw').length);
    expect(j.result.crc32).toBe('none');
    await img.close();
  });

  it('verifies and reports CRC32 chunks', async () => {
    const good = join(dir, 'inspect-crc.simg');
    writeFileSync(good, richSample().sparse);
    const ok = await omie(['inspect', good]);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/CRC32 chunks:\s+ok/);
    const bad = Buffer.from(richSample().sparse);
    bad.writeUInt32LE(0x12345678, bad.length - 4);
    const badPath = join(dir, 'inspect-badcrc.simg');
    writeFileSync(badPath, bad);
    const j = JSON.parse((await omie(['inspect', '--json', badPath])).stdout);
    expect(j.result.crc32).toMatch(/chunk 5: CRC32 mismatch/);
  });
});

describe('crc32Combine, crc32Join', () => {
  it('joins the CRC-32s of two pieces into the CRC-32 of their concatenation (as zlib)', () => {
    const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) & 0xff));
    for (const cut of [0, 1, 4095, 4096, 33_333, 69_999, 70_000]) {
      const a = data.subarray(0, cut);
      const b = data.subarray(cut);
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(data));
    }
  });

  it('joins many pieces in order, equal-length runs (matrix operator) and odd ones alike', () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919 + (i >> 9)) & 0xff));
    // 40 pieces of 4096 bytes (more than the 32 that switch to a precomputed operator), then
    // pieces of assorted lengths, one empty.
    const lengths = [...Array(40).fill(4096), 1, 0, 12_345, 4096, 200_000 - 40 * 4096 - 1 - 12_345 - 4096];
    const pieces: Array<{ crc32: number; length: number }> = [];
    let at = 0;
    for (const length of lengths) {
      pieces.push({ crc32: crc32(data.subarray(at, at + length)), length });
      at += length;
    }
    expect(at).toBe(data.length);
    expect(crc32Join(pieces)).toBe(crc32(data));
    expect(crc32Join([])).toBe(0);
  });
});
