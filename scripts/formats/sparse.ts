import { type FileHandle, open } from 'node:fs/promises';
import { FormatError, InputError } from '../errors.ts';
import type { ProgressFn } from '../progress.ts';
import { crc32AppendZeros, crc32Update } from './crc32.ts';
import { SequentialWriter, writeAll } from './io.ts';
import { uniformWord } from './uniform-word.mjs';

/**
 * Android sparse images, as defined by AOSP system/core/libsparse/sparse_format.h and read /
 * written the way libsparse does (simg2img, img2simg, fastboot's resparse).
 *
 * File header (28 bytes, little-endian): magic 0xed26ff3a, major 1, minor 0, file_hdr_sz,
 * chunk_hdr_sz, blk_sz, total_blks, total_chunks, image_checksum. Each chunk: type u16,
 * reserved u16, chunk_sz (output blocks) u32, total_sz (header + data bytes) u32.
 *
 * Everything streams through fixed-size buffers: no function here holds a partition in memory.
 */

export const SPARSE_MAGIC = 0xed26ff3a;
export const SPARSE_HEADER_SIZE = 28;
export const CHUNK_HEADER_SIZE = 12;
export const CHUNK_RAW = 0xcac1;
export const CHUNK_FILL = 0xcac2;
export const CHUNK_DONT_CARE = 0xcac3;
export const CHUNK_CRC32 = 0xcac4;

const FORMAT = 'sparse';
/**
 * I/O buffer size: big enough to amortise syscalls and per-call JS overhead, small enough that
 * the bytes the kernel copies in are still in CPU cache when classified and copied out again
 * (8 MiB buffers measured ~2x the system time of 512 KiB ones on a 1 GiB image).
 */
const IO_SIZE = 512 * 1024;
/** libsparse keeps backed-block lengths in 32 bits; chunk total_sz is a u32. */
const MAX_CHUNK_BYTES = 0xffffffff - CHUNK_HEADER_SIZE;

export interface SparseHeader {
  majorVersion: number;
  minorVersion: number;
  fileHeaderSize: number;
  chunkHeaderSize: number;
  blockSize: number;
  totalBlocks: number;
  totalChunks: number;
  imageChecksum: number;
  /** Expanded (raw) size in bytes: totalBlocks * blockSize. */
  rawSize: number;
}

export type SparseChunkType = 'raw' | 'fill' | 'dontCare' | 'crc32';

export interface SparseChunk {
  index: number;
  type: SparseChunkType;
  /** Offset of the chunk header in the sparse file. */
  headerOffset: number;
  /** Offset of the chunk payload (data, fill value or CRC) in the sparse file. */
  dataOffset: number;
  /** total_sz minus the chunk header. */
  dataSize: number;
  /** First output block. */
  block: number;
  /** chunk_sz: output blocks covered (0 for CRC32). */
  blocks: number;
  /** FILL: the 4 fill bytes as a little-endian u32. */
  fillValue?: number;
  /** CRC32: the stored checksum. */
  crc32?: number;
}

/** True when the buffer starts with the sparse magic. */
export function isSparse(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === SPARSE_MAGIC;
}

/** Parses and validates the 28-byte file header (extra header bytes, as libsparse allows, are skipped). */
export function parseSparseHeader(buf: Buffer, file?: string): SparseHeader {
  const fail = (
    reason: string,
    field: string,
    offset: number,
    expected?: unknown,
    found?: unknown,
  ): never => {
    throw new FormatError({ format: FORMAT, reason, field, offset, expected, found, file });
  };
  if (buf.length < SPARSE_HEADER_SIZE)
    fail('truncated', 'header', 0, `${SPARSE_HEADER_SIZE} bytes`, `${buf.length} bytes`);
  const magic = buf.readUInt32LE(0);
  if (magic !== SPARSE_MAGIC) fail('bad magic', 'magic', 0, SPARSE_MAGIC, magic);
  const h: SparseHeader = {
    majorVersion: buf.readUInt16LE(4),
    minorVersion: buf.readUInt16LE(6),
    fileHeaderSize: buf.readUInt16LE(8),
    chunkHeaderSize: buf.readUInt16LE(10),
    blockSize: buf.readUInt32LE(12),
    totalBlocks: buf.readUInt32LE(16),
    totalChunks: buf.readUInt32LE(20),
    imageChecksum: buf.readUInt32LE(24),
    rawSize: 0,
  };
  // Same acceptance rules as libsparse sparse_file_import().
  if (h.majorVersion !== 1) fail('unsupported version', 'major_version', 4, 1, h.majorVersion);
  if (h.fileHeaderSize < SPARSE_HEADER_SIZE)
    fail('header too small', 'file_hdr_sz', 8, `>= ${SPARSE_HEADER_SIZE}`, h.fileHeaderSize);
  if (h.chunkHeaderSize < CHUNK_HEADER_SIZE)
    fail('chunk header too small', 'chunk_hdr_sz', 10, `>= ${CHUNK_HEADER_SIZE}`, h.chunkHeaderSize);
  if (h.blockSize === 0 || h.blockSize % 4 !== 0)
    fail('block size not a positive multiple of 4', 'blk_sz', 12, 'multiple of 4', h.blockSize);
  h.rawSize = h.totalBlocks * h.blockSize;
  if (!Number.isSafeInteger(h.rawSize)) fail('image too large', 'total_blks', 16, '<= 2^53 bytes', h.rawSize);
  return h;
}

function chunkTypeName(code: number): SparseChunkType | undefined {
  switch (code) {
    case CHUNK_RAW:
      return 'raw';
    case CHUNK_FILL:
      return 'fill';
    case CHUNK_DONT_CARE:
      return 'dontCare';
    case CHUNK_CRC32:
      return 'crc32';
    default:
      return undefined;
  }
}

/**
 * Validates one chunk header against the file header (sizes and block budget), exactly the
 * checks libsparse's process_*_chunk make. `blockCursor` is the output block where it starts.
 */
function parseChunk(
  h: SparseHeader,
  hdr: Buffer,
  index: number,
  headerOffset: number,
  blockCursor: number,
  file?: string,
): SparseChunk {
  const code = hdr.readUInt16LE(0);
  let blocks = hdr.readUInt32LE(4);
  const totalSize = hdr.readUInt32LE(8);
  const fail = (reason: string, field: string, at: number, expected: unknown, found: unknown): never => {
    throw new FormatError({
      format: FORMAT,
      reason: `chunk ${index}: ${reason}`,
      field,
      offset: headerOffset + at,
      expected,
      found,
      file,
    });
  };
  const type = chunkTypeName(code);
  if (!type) fail('unknown chunk type', 'chunk_type', 0, 'RAW/FILL/DONT_CARE/CRC32', code);
  const dataSize = totalSize - h.chunkHeaderSize;
  const expectData =
    type === 'raw' ? blocks * h.blockSize : type === 'fill' || type === 'crc32' ? 4 : /* dontCare */ 0;
  if (dataSize !== expectData)
    fail('size mismatch', 'total_sz', 8, h.chunkHeaderSize + expectData, totalSize);
  // libsparse's process_chunk returns 0 blocks for a CRC32 chunk whatever its chunk_sz says.
  if (type === 'crc32') blocks = 0;
  if (blockCursor + blocks > h.totalBlocks)
    fail('chunk runs past total_blks', 'chunk_sz', 4, `<= ${h.totalBlocks - blockCursor}`, blocks);
  return {
    index,
    type: type!,
    headerOffset,
    dataOffset: headerOffset + h.chunkHeaderSize,
    dataSize,
    block: blockCursor,
    blocks,
  };
}

async function openRead(path: string): Promise<{ fh: FileHandle; size: number }> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
  const st = await fh.stat();
  return { fh, size: st.size };
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Receives the expanded image in order, chunk by chunk; buffers passed in are reused after the call. */
export interface SparseSink {
  /** Literal bytes at raw offset `offset` (one RAW chunk may arrive in several calls). */
  data(offset: number, bytes: Buffer): void | Promise<void>;
  /** `length` bytes of the repeating 4-byte `pattern` (zeros when `value` is 0). */
  fill(offset: number, length: number, pattern: Buffer, value: number): void | Promise<void>;
  /** A DONT_CARE region: simg2img leaves it as zeros (a hole). */
  skip(offset: number, length: number): void | Promise<void>;
}

export interface ReadSparseOptions {
  /**
   * Check CRC32 chunks against the expanded data (default true; cheap: zeros are folded in
   * arithmetically, data goes through zlib's native CRC).
   */
  verifyCrc?: boolean;
  onProgress?: ProgressFn;
  /** Read buffer size in bytes (default 512 KiB; capped at the file size). */
  bufferSize?: number;
}

/**
 * Streams a sparse image chunk by chunk into `sink` with bounded memory (one I/O buffer),
 * validating every header, size and the block budget; returns the file header.
 */
export async function readSparse(
  path: string,
  sink: SparseSink,
  opts: ReadSparseOptions = {},
): Promise<SparseHeader> {
  const { fh, size } = await openRead(path);
  try {
    return await readSparseFrom(fh, size, path, sink, opts);
  } finally {
    await fh.close();
  }
}

async function readSparseFrom(
  fh: FileHandle,
  fileSize: number,
  file: string,
  sink: SparseSink,
  opts: ReadSparseOptions,
): Promise<SparseHeader> {
  const verifyCrc = opts.verifyCrc ?? true;
  // Never more than the file needs: small images (and fuzzing) should not pay for a full buffer.
  const bufSize = Math.max(4096, Math.min(opts.bufferSize ?? IO_SIZE, fileSize));
  const buf = Buffer.allocUnsafeSlow(bufSize);
  // Window [winStart, winStart + winLen) of the file is in buf.
  let winStart = 0;
  let winLen = 0;
  let pos = 0;
  const truncated = (field: string, want: number): never => {
    throw new FormatError({
      format: FORMAT,
      reason: 'truncated',
      field,
      offset: pos,
      expected: `${want} bytes`,
      found: `${Math.max(0, fileSize - pos)} bytes`,
      file,
    });
  };
  /** Makes at least n bytes (n <= bufSize) at pos available in the window. */
  const ensure = async (n: number, field: string): Promise<void> => {
    if (pos >= winStart && pos + n <= winStart + winLen) return;
    if (pos + n > fileSize) truncated(field, n);
    winStart = pos;
    winLen = await readFully(fh, buf.subarray(0, Math.min(bufSize, fileSize - pos)), pos);
    if (winLen < n) truncated(field, n);
  };
  const at = (p: number) => p - winStart;

  await ensure(SPARSE_HEADER_SIZE, 'header');
  const h = parseSparseHeader(buf.subarray(0, SPARSE_HEADER_SIZE), file);
  if (h.fileHeaderSize > bufSize || h.chunkHeaderSize > bufSize)
    throw new FormatError({
      format: FORMAT,
      reason: 'header size out of range',
      field: 'file_hdr_sz',
      offset: 8,
      file,
    });
  pos = h.fileHeaderSize;
  let block = 0;
  let crc = 0;
  const report = opts.onProgress;
  let patternFor = -1;
  let pattern = Buffer.alloc(0);

  for (let i = 0; i < h.totalChunks; i++) {
    await ensure(h.chunkHeaderSize, `chunk ${i} header`);
    const c = parseChunk(h, buf.subarray(at(pos), at(pos) + CHUNK_HEADER_SIZE), i, pos, block, file);
    pos += h.chunkHeaderSize;
    const outOff = block * h.blockSize;
    const outLen = c.blocks * h.blockSize;
    if (c.type === 'raw') {
      let left = c.dataSize;
      let o = outOff;
      while (left > 0) {
        if (pos >= winStart + winLen || pos < winStart)
          await ensure(Math.min(left, bufSize), `chunk ${i} data`);
        const n = Math.min(left, winStart + winLen - pos);
        const slice = buf.subarray(at(pos), at(pos) + n);
        if (verifyCrc) crc = crc32Update(crc, slice);
        await sink.data(o, slice);
        pos += n;
        o += n;
        left -= n;
      }
    } else if (c.type === 'fill') {
      await ensure(4, `chunk ${i} fill value`);
      const value = buf.readUInt32LE(at(pos));
      c.fillValue = value;
      if (value !== patternFor) {
        pattern = Buffer.allocUnsafe(4);
        pattern.writeUInt32LE(value, 0);
        patternFor = value;
      }
      pos += 4;
      if (verifyCrc) crc = value === 0 ? crc32AppendZeros(crc, outLen) : crcOfFill(crc, pattern, outLen);
      await sink.fill(outOff, outLen, pattern, value);
    } else if (c.type === 'dontCare') {
      if (verifyCrc) crc = crc32AppendZeros(crc, outLen);
      await sink.skip(outOff, outLen);
    } else {
      await ensure(4, `chunk ${i} crc32`);
      const stored = buf.readUInt32LE(at(pos));
      if (verifyCrc && stored !== crc)
        throw new FormatError({
          format: FORMAT,
          reason: `chunk ${i}: CRC32 mismatch over the first ${outOff} bytes`,
          field: 'crc32',
          offset: pos,
          expected: crc,
          found: stored,
          file,
        });
      pos += 4;
    }
    block += c.blocks;
    report?.({ stage: 'sparse read', done: pos, total: fileSize, unit: 'bytes' });
  }
  if (block !== h.totalBlocks)
    throw new FormatError({
      format: FORMAT,
      reason: 'chunks do not cover the image',
      field: 'total_blks',
      offset: 16,
      expected: h.totalBlocks,
      found: block,
      file,
    });
  return h;
}

function crcOfFill(crc: number, pattern: Buffer, len: number): number {
  const block = Buffer.allocUnsafe(Math.min(len, 1 << 20));
  for (let i = 0; i < block.length; i += 4) pattern.copy(block, i);
  let left = len;
  while (left > 0) {
    const n = Math.min(left, block.length);
    crc = crc32Update(crc, block.subarray(0, n));
    left -= n;
  }
  return crc;
}

function patternBuffer(pattern: Buffer, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) pattern.copy(b, i);
  return b;
}

/**
 * Expands a sparse image to a raw file, like `simg2img in out`. DONT_CARE and zero FILL chunks
 * become holes in the freshly truncated output (same content, less I/O).
 */
export async function sparseToRaw(
  inPath: string,
  outPath: string,
  opts: ReadSparseOptions = {},
): Promise<{ header: SparseHeader; size: number }> {
  const out = await open(outPath, 'w');
  try {
    let fillBuf: Buffer = Buffer.alloc(0);
    let fillFor = -1;
    const header = await readSparse(
      inPath,
      {
        data: async (offset, bytes) => {
          await writeAll(out, bytes, offset);
        },
        fill: async (offset, length, pattern, value) => {
          if (value === 0) return;
          if (value !== fillFor) {
            fillBuf = patternBuffer(pattern, 1 << 20);
            fillFor = value;
          }
          for (let o = 0; o < length; o += fillBuf.length)
            await writeAll(out, fillBuf.subarray(0, Math.min(fillBuf.length, length - o)), offset + o);
        },
        skip: () => {},
      },
      opts,
    );
    await out.truncate(header.rawSize);
    return { header, size: header.rawSize };
  } finally {
    await out.close();
  }
}

/**
 * Random access to the expanded content of a sparse image without expanding it to disk
 * (used to read super.img metadata and partitions straight out of a sparse super).
 */
export class SparseImage {
  private constructor(
    readonly path: string,
    readonly header: SparseHeader,
    readonly chunks: SparseChunk[],
    private readonly fh: FileHandle,
  ) {}

  /** Raw (expanded) size in bytes. */
  get size(): number {
    return this.header.rawSize;
  }

  /** Reads every chunk header (not the data) and validates the layout. Close it when done. */
  static async open(path: string): Promise<SparseImage> {
    const { fh, size } = await openRead(path);
    try {
      const win = Buffer.allocUnsafe(64 * 1024);
      let winStart = -1;
      let winLen = 0;
      const get = async (pos: number, n: number, field: string): Promise<Buffer> => {
        if (winStart < 0 || pos < winStart || pos + n > winStart + winLen) {
          winStart = pos;
          winLen = await readFully(fh, win, pos);
        }
        if (pos + n > winStart + winLen)
          throw new FormatError({
            format: FORMAT,
            reason: 'truncated',
            field,
            offset: pos,
            expected: `${n} bytes`,
            found: `${Math.max(0, size - pos)} bytes`,
            file: path,
          });
        return win.subarray(pos - winStart, pos - winStart + n);
      };
      const h = parseSparseHeader(await get(0, SPARSE_HEADER_SIZE, 'header'), path);
      const chunks: SparseChunk[] = [];
      let pos = h.fileHeaderSize;
      let block = 0;
      for (let i = 0; i < h.totalChunks; i++) {
        const c = parseChunk(h, await get(pos, CHUNK_HEADER_SIZE, `chunk ${i} header`), i, pos, block, path);
        if (c.dataOffset + c.dataSize > size)
          throw new FormatError({
            format: FORMAT,
            reason: `chunk ${i}: data runs past end of file`,
            field: 'total_sz',
            offset: pos + 8,
            expected: `<= ${size - c.dataOffset}`,
            found: c.dataSize,
            file: path,
          });
        if (c.type === 'fill') c.fillValue = (await get(c.dataOffset, 4, `chunk ${i} fill`)).readUInt32LE(0);
        if (c.type === 'crc32') c.crc32 = (await get(c.dataOffset, 4, `chunk ${i} crc32`)).readUInt32LE(0);
        chunks.push(c);
        block += c.blocks;
        pos = c.dataOffset + c.dataSize;
      }
      if (block !== h.totalBlocks)
        throw new FormatError({
          format: FORMAT,
          reason: 'chunks do not cover the image',
          field: 'total_blks',
          offset: 16,
          expected: h.totalBlocks,
          found: block,
          file: path,
        });
      return new SparseImage(path, h, chunks, fh);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Reads expanded bytes [position, position + buf.length) (clipped at the end); returns bytes read. */
  async read(buf: Buffer, position: number): Promise<number> {
    const bs = this.header.blockSize;
    const end = Math.min(position + buf.length, this.size);
    let p = position;
    // Binary search the chunk holding p (CRC chunks cover 0 blocks and are skipped by the search).
    let lo = 0;
    let hi = this.chunks.length - 1;
    const blk = Math.floor(p / bs);
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid].block <= blk) lo = mid;
      else hi = mid - 1;
    }
    for (let i = lo; p < end && i < this.chunks.length; i++) {
      const c = this.chunks[i];
      const cStart = c.block * bs;
      const cEnd = cStart + c.blocks * bs;
      if (cEnd <= p) continue;
      const n = Math.min(end, cEnd) - p;
      const dst = buf.subarray(p - position, p - position + n);
      if (c.type === 'raw') await readFully(this.fh, dst, c.dataOffset + (p - cStart));
      else if (c.type === 'fill' && c.fillValue !== 0) {
        const pat = Buffer.allocUnsafe(4);
        pat.writeUInt32LE(c.fillValue!, 0);
        // Fill patterns are block-aligned, so the phase is (p - cStart) mod 4.
        const phase = (p - cStart) % 4;
        for (let k = 0; k < n; k++) dst[k] = pat[(phase + k) % 4];
      } else dst.fill(0);
      p += n;
    }
    return end - position;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Random-access view of a partition image, raw or sparse alike. */
export interface ImageReader {
  readonly path: string;
  /** Expanded size in bytes. */
  readonly size: number;
  readonly sparse: boolean;
  read(buf: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

/** Opens a raw or Android-sparse image for random access to its expanded bytes. */
export async function openImage(path: string): Promise<ImageReader> {
  const { fh, size } = await openRead(path);
  const head = Buffer.alloc(4);
  await readFully(fh, head, 0);
  if (isSparse(head)) {
    await fh.close();
    const s = await SparseImage.open(path);
    return { path, size: s.size, sparse: true, read: (b, p) => s.read(b, p), close: () => s.close() };
  }
  return {
    path,
    size,
    sparse: false,
    read: async (b, p) => readFully(fh, b.subarray(0, Math.max(0, Math.min(b.length, size - p))), p),
    close: () => fh.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Writing

function chunkHeader(type: number, blocks: number, totalSize: number): Buffer {
  const b = Buffer.alloc(CHUNK_HEADER_SIZE);
  b.writeUInt16LE(type, 0);
  b.writeUInt32LE(blocks, 4);
  b.writeUInt32LE(totalSize, 8);
  return b;
}

/** The 28-byte sparse file header (format v1.0). */
export function sparseFileHeader(blockSize: number, totalBlocks: number, totalChunks: number): Buffer {
  const b = Buffer.alloc(SPARSE_HEADER_SIZE);
  b.writeUInt32LE(SPARSE_MAGIC, 0);
  b.writeUInt16LE(1, 4);
  b.writeUInt16LE(0, 6);
  b.writeUInt16LE(SPARSE_HEADER_SIZE, 8);
  b.writeUInt16LE(CHUNK_HEADER_SIZE, 10);
  b.writeUInt32LE(blockSize, 12);
  b.writeUInt32LE(totalBlocks, 16);
  b.writeUInt32LE(totalChunks, 20);
  b.writeUInt32LE(0, 24);
  return b;
}

function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 4 || blockSize % 4 !== 0 || blockSize > 1 << 26)
    throw new InputError(`invalid sparse block size ${blockSize}: must be a multiple of 4 (usually 4096)`, {
      code: 'SPARSE_BLOCK_SIZE',
      context: { blockSize },
    });
}

export interface RawToSparseOptions {
  /** Default 4096, as img2simg. */
  blockSize?: number;
  /**
   * Write all-zero blocks as DONT_CARE instead of FILL 0 (img2simg writes FILL 0). Smaller and
   * faster to flash, but the device then keeps whatever those blocks held before.
   */
  zeroAsDontCare?: boolean | ((rawOffset: number) => boolean);
  onProgress?: ProgressFn;
}

export interface SparseWriteResult {
  blockSize: number;
  totalBlocks: number;
  chunks: number;
  /** Bytes written. */
  size: number;
}

/** One chunk of a sparse image, as a planning pass records it: kind, blocks, FILL value. */
export interface SparseRun {
  /** 1 RAW, 2 FILL, 3 DONT_CARE. */
  kind: number;
  blocks: number;
  value: number;
}

/** What a planning pass found: every chunk, in order; `replay` them to write the image. */
export interface SparsePlan {
  blockSize: number;
  totalBlocks: number;
  runs: SparseRun[];
}

/**
 * Streams an Android sparse image out chunk by chunk, given its expanded content in order:
 * block-aligned buffers (classified: blocks whose 32-bit words are all equal become FILL,
 * others RAW, equal neighbours merged into one chunk as img2simg does), explicit FILL runs and
 * DONT_CARE runs. Data buffers are written before `append` resolves, so callers may reuse them.
 *
 * Written in one pass, the file header (which needs the chunk count) and each RAW chunk's
 * header (its length) are patched in once known. A writer made by `plan` writes nothing and
 * records the chunks; fed the same content again, a writer made with that plan (`replay`)
 * writes every header final when it first writes it, so the file is written strictly front to
 * back and its SHA-256 can be taken as it is written (`sha256`). Content that differs between
 * the two passes is an error (SPARSE_INPUT_CHANGED), never a wrong image.
 */
export class SparseStreamWriter {
  private chunks = 0;
  private blocks = 0;
  private iov: Buffer[] = [];
  private iovBytes = 0;
  // Open run: kind 0 none, 1 data, 2 fill (runValue), 3 dontCare.
  private runKind = 0;
  private runValue = 0;
  private runBlocks = 0;
  private runHeader: Buffer | undefined;
  private runHeaderPos = 0;
  private runHeaderFlushed = false;
  private readonly maxRunBlocks: number;
  /** Planning: the chunks so far. */
  private readonly recorded: SparseRun[] = [];

  private constructor(
    private readonly out: SequentialWriter | undefined,
    readonly blockSize: number,
    private readonly replay?: SparsePlan,
  ) {
    this.maxRunBlocks = Math.floor(MAX_CHUNK_BYTES / blockSize);
  }

  /**
   * `direct`: bypass the page cache (see SequentialWriter), for a large image nothing reads soon.
   * `replay`: the plan a planning pass made of the same content (headers then need no patches);
   * `sha256` (needs `replay`): hash the file as it is written, returned by `finish`.
   */
  static async create(
    path: string,
    blockSize = 4096,
    opts: { direct?: boolean; replay?: SparsePlan; sha256?: boolean } = {},
  ): Promise<SparseStreamWriter> {
    checkBlockSize(blockSize);
    if (opts.sha256 && !opts.replay) throw new Error('sparse writer: sha256 needs a replayed plan');
    if (opts.replay && opts.replay.blockSize !== blockSize)
      throw new Error('sparse writer: the plan was made for another block size');
    const out = await SequentialWriter.create(path, opts);
    const w = new SparseStreamWriter(out, blockSize, opts.replay);
    if (opts.replay)
      await out.write(sparseFileHeader(blockSize, opts.replay.totalBlocks, opts.replay.runs.length));
    // Otherwise the file header is written last (its counts are known then); its room is left now.
    else await out.skip(SPARSE_HEADER_SIZE);
    return w;
  }

  /** A writer that writes nothing and records the chunks the same content makes (see `replay`). */
  static plan(blockSize = 4096): SparseStreamWriter {
    checkBlockSize(blockSize);
    return new SparseStreamWriter(undefined, blockSize);
  }

  /** Expanded bytes written so far (always a multiple of the block size). */
  get rawOffset(): number {
    return this.blocks * this.blockSize;
  }

  /**
   * Appends whole blocks (`buf.length` must be a multiple of the block size). `zeroAsDontCare`
   * (given each block's raw offset) turns all-zero blocks into DONT_CARE instead of FILL 0;
   * `allData` writes every block as RAW (img2simg's padded last partial block).
   */
  async append(
    buf: Buffer,
    opts: { zeroAsDontCare?: (rawOffset: number) => boolean; allData?: boolean } = {},
  ): Promise<void> {
    const bs = this.blockSize;
    if (buf.length % bs !== 0)
      throw new InputError(`sparse writer: ${buf.length} bytes is not a whole number of ${bs}-byte blocks`, {
        code: 'SPARSE_UNALIGNED',
      });
    const nBlocks = buf.length / bs;
    const base = this.rawOffset;
    let dataStart = -1; // start in buf of the pending data slice of the open data run
    for (let b = 0; b < nBlocks; b++) {
      const off = b * bs;
      const v = opts.allData ? -1 : uniformWord(buf, off, bs);
      const kind = v === -1 ? 1 : v === 0 && opts.zeroAsDontCare?.(base + off) ? 3 : 2;
      if (!this.extend(kind, v, 1)) {
        if (dataStart >= 0) {
          this.push(buf.subarray(dataStart, off));
          dataStart = -1;
        }
        await this.open(kind, v, 1);
      }
      if (kind === 1 && dataStart < 0) dataStart = off;
    }
    if (dataStart >= 0) this.push(buf.subarray(dataStart, nBlocks * bs));
    this.blocks += nBlocks;
    // The data slices point into buf: write them before the caller reuses it.
    await this.flush();
  }

  /**
   * Planning only: appends `blocks` blocks classified elsewhere (see UniformBlocks) exactly as
   * `append` would classify their bytes: `value` -1 for data (RAW), else the 32-bit word each
   * block repeats (FILL). The writing pass still reads and classifies every block, and fails if
   * they are not what the plan says.
   */
  async appendClassified(blocks: number, value: number): Promise<void> {
    if (this.out)
      throw new Error('sparse writer: classified blocks carry no bytes: only a planning writer takes them');
    await this.run(value === -1 ? 1 : 2, value === -1 ? -1 : value >>> 0, blocks);
  }

  /** Appends `blocks` blocks of the 32-bit little-endian `value` repeated (FILL). */
  async fill(blocks: number, value: number): Promise<void> {
    await this.run(2, value >>> 0, blocks);
  }

  /** Appends `blocks` blocks the reader leaves untouched (DONT_CARE; zeros once expanded). */
  async skip(blocks: number): Promise<void> {
    await this.run(3, 0, blocks);
  }

  /**
   * Closes the last chunk, writes the file header; returns what was written (with `sha256` when
   * asked). Closes the file. A planning writer returns its plan instead (`plan`).
   */
  async finish(): Promise<SparseWriteResult & { plan?: SparsePlan; sha256?: string }> {
    let sha256: string | undefined;
    try {
      await this.closeRun();
      await this.flush();
      if (this.blocks > 0xffffffff)
        throw new InputError(`image too large for sparse format: ${this.rawOffset} bytes`, {
          code: 'SPARSE_TOO_LARGE',
        });
      if (this.replay && (this.chunks !== this.replay.runs.length || this.blocks !== this.replay.totalBlocks))
        this.changed(`${this.chunks} chunks of ${this.blocks} blocks`);
      if (this.out && !this.replay)
        await this.out.patch(sparseFileHeader(this.blockSize, this.blocks, this.chunks), 0);
      sha256 = await this.out?.close();
    } catch (e) {
      await this.out?.abort();
      throw e;
    }
    const size = this.out?.position ?? 0;
    const result = { blockSize: this.blockSize, totalBlocks: this.blocks, chunks: this.chunks, size };
    if (!this.out)
      return {
        ...result,
        plan: { blockSize: this.blockSize, totalBlocks: this.blocks, runs: this.recorded },
      };
    return sha256 ? { ...result, sha256 } : result;
  }

  /** Closes the file without finishing it (on error). */
  async abort(): Promise<void> {
    await this.out?.abort();
  }

  private async run(kind: number, value: number, blocks: number): Promise<void> {
    let left = blocks;
    while (left > 0) {
      const room =
        this.runKind === kind && (kind !== 2 || value === this.runValue)
          ? this.maxRunBlocks - this.runBlocks
          : 0;
      if (room > 0) {
        const n = Math.min(room, left);
        this.runBlocks += n;
        left -= n;
      } else {
        const n = Math.min(this.maxRunBlocks, left);
        await this.open(kind, value, n);
        left -= n;
      }
    }
    this.blocks += blocks;
    if (this.iovBytes >= IO_SIZE) await this.flush();
  }

  /** Grows the open run by n blocks when it has the same kind (and fill value) and room. */
  private extend(kind: number, value: number, n: number): boolean {
    if (
      kind !== this.runKind ||
      (kind === 2 && value !== this.runValue) ||
      this.runBlocks + n > this.maxRunBlocks
    )
      return false;
    this.runBlocks += n;
    return true;
  }

  private async open(kind: number, value: number, n: number): Promise<void> {
    await this.closeRun();
    this.runKind = kind;
    this.runValue = value;
    this.runBlocks = n;
    if (this.replay) {
      const want = this.replay.runs[this.chunks];
      if (!want || want.kind !== kind || (kind === 2 && want.value !== value))
        this.changed(`chunk ${this.chunks} of kind ${kind}`);
    }
    if (kind === 1) {
      // Replaying, a RAW chunk's length is known now: its header is final as written.
      const blocks = this.replay ? this.replay.runs[this.chunks].blocks : 0;
      this.runHeader = chunkHeader(CHUNK_RAW, blocks, CHUNK_HEADER_SIZE + blocks * this.blockSize);
      this.runHeaderPos = (this.out?.position ?? 0) + this.iovBytes;
      this.runHeaderFlushed = false;
      this.push(this.runHeader);
    }
  }

  private async closeRun(): Promise<void> {
    const bs = this.blockSize;
    if (this.runKind !== 0) {
      if (this.replay && this.replay.runs[this.chunks].blocks !== this.runBlocks)
        this.changed(`chunk ${this.chunks} of ${this.runBlocks} blocks`);
      if (!this.out) this.recorded.push({ kind: this.runKind, blocks: this.runBlocks, value: this.runValue });
    }
    if (this.runKind === 1) {
      if (!this.replay) {
        this.runHeader!.writeUInt32LE(this.runBlocks, 4);
        this.runHeader!.writeUInt32LE(CHUNK_HEADER_SIZE + this.runBlocks * bs, 8);
        if (this.runHeaderFlushed) await this.out?.patch(this.runHeader!, this.runHeaderPos);
      }
    } else if (this.runKind === 2) {
      const b = Buffer.alloc(CHUNK_HEADER_SIZE + 4);
      chunkHeader(CHUNK_FILL, this.runBlocks, CHUNK_HEADER_SIZE + 4).copy(b);
      b.writeUInt32LE(this.runValue, CHUNK_HEADER_SIZE);
      this.push(b);
    } else if (this.runKind === 3) {
      this.push(chunkHeader(CHUNK_DONT_CARE, this.runBlocks, CHUNK_HEADER_SIZE));
    }
    if (this.runKind !== 0) this.chunks++;
    this.runKind = 0;
    this.runBlocks = 0;
  }

  private changed(found: string): never {
    throw new InputError(
      'sparse writer: the content changed between the planning pass and the writing pass',
      {
        code: 'SPARSE_INPUT_CHANGED',
        context: {
          found,
          planned: `${this.replay?.runs.length} chunks of ${this.replay?.totalBlocks} blocks`,
        },
        hint: 'something modified the input images while the image was being written; build again',
      },
    );
  }

  private push(b: Buffer): void {
    this.iov.push(b);
    this.iovBytes += b.length;
  }

  private async flush(): Promise<void> {
    if (this.iov.length === 0) return;
    const list = this.iov;
    this.iov = [];
    this.iovBytes = 0;
    // An open data run's header is now on disk: closing the run must patch it in place.
    if (this.runKind === 1) this.runHeaderFlushed = true;
    if (!this.out) return;
    await this.out.writev(list);
  }
}

/**
 * Converts a raw image to a sparse one like `img2simg in out [block_size]`: each block whose
 * 32-bit words are all equal becomes FILL (merged with equal neighbours), other blocks RAW
 * (merged), a trailing partial block is RAW padded with zeros. Byte-identical to img2simg's
 * output by default. One sequential pass over the input; the header is written last.
 */
export async function rawToSparse(
  inPath: string,
  outPath: string,
  opts: RawToSparseOptions = {},
): Promise<SparseWriteResult> {
  const bs = opts.blockSize ?? 4096;
  checkBlockSize(bs);
  const { fh: inp, size } = await openRead(inPath);
  let w: SparseStreamWriter | undefined;
  try {
    if (Math.ceil(size / bs) > 0xffffffff)
      throw new InputError(`image too large for sparse format: ${size} bytes`, { code: 'SPARSE_TOO_LARGE' });
    w = await SparseStreamWriter.create(outPath, bs);
    const bufSize = Math.max(bs, Math.floor(IO_SIZE / bs) * bs);
    const bufs = [Buffer.allocUnsafeSlow(bufSize), Buffer.allocUnsafeSlow(bufSize)];
    const zeroOpt = opts.zeroAsDontCare;
    const zeroAsDontCare = typeof zeroOpt === 'function' ? zeroOpt : zeroOpt ? () => true : undefined;
    let cur = 0;
    let filePos = 0;
    let pending =
      size > 0 ? readFully(inp, bufs[0].subarray(0, Math.min(bufSize, size)), 0) : Promise.resolve(0);
    while (filePos < size) {
      const n = await pending;
      if (n === 0) throw new InputError(`${inPath} shrank while reading`, { code: 'SHORT_READ' });
      const buf = bufs[cur];
      const nextPos = filePos + n;
      // Read ahead into the other buffer while this one is classified and written.
      const other = 1 - cur;
      pending =
        nextPos < size
          ? readFully(inp, bufs[other].subarray(0, Math.min(bufSize, size - nextPos)), nextPos)
          : Promise.resolve(0);
      const whole = n - (n % bs);
      if (whole > 0) await w.append(buf.subarray(0, whole), { zeroAsDontCare });
      if (whole < n) {
        // img2simg pads the last partial block with zeros and keeps it RAW.
        buf.fill(0, n, whole + bs);
        await w.append(buf.subarray(whole, whole + bs), { allData: true });
      }
      filePos = nextPos;
      cur = other;
      opts.onProgress?.({ stage: 'raw to sparse', done: filePos, total: size, unit: 'bytes' });
    }
    await pending;
    const r = await w.finish();
    w = undefined;
    return r;
  } finally {
    await inp.close();
    await w?.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// Splitting for fastboot (libsparse sparse_file_resparse)

/** A run of output blocks, the unit libsparse's resparse works on ("backed block"). */
interface BackedBlock {
  block: number;
  /** Bytes (a multiple of the block size except for a raw image's last partial block). */
  len: number;
  kind: 'data' | 'fill';
  /** data: where the bytes are in the source file. */
  fileOffset: number;
  /** fill: little-endian u32 value. */
  value: number;
}

/** One sparse file of a split, sendable to fastboot as-is. */
export interface SparsePiece {
  /** Exact size in bytes of the sparse file this piece serialises to. */
  size: number;
  blockSize: number;
  totalBlocks: number;
  /** Number of chunks in the piece. */
  chunks: number;
  /** Serialises the piece, reading data from the source image, in buffers of up to 512 KiB. */
  stream(): AsyncGenerator<Buffer>;
  /** Writes the piece to a file. */
  writeTo(path: string): Promise<void>;
}

/** libsparse's RESPARSE_LIMIT in fastboot: never send more than 1 GiB in one download. */
export const FASTBOOT_RESPARSE_LIMIT = 1024 * 1024 * 1024;

/**
 * The piece size limit fastboot uses for an image of `fileSize` bytes given the device's
 * max-download-size (fastboot.cpp get_sparse_limit): 0 means "send the file unchanged".
 */
export function fastbootSparseLimit(fileSize: number, maxDownloadSize: number): number {
  const limit =
    maxDownloadSize > 0 && maxDownloadSize < FASTBOOT_RESPARSE_LIMIT
      ? maxDownloadSize
      : FASTBOOT_RESPARSE_LIMIT;
  return fileSize > limit ? limit : 0;
}

async function backedBlocksOf(
  path: string,
): Promise<{ bs: number; totalBlocks: number; list: BackedBlock[] }> {
  const { fh, size } = await openRead(path);
  try {
    const head = Buffer.alloc(4);
    await readFully(fh, head, 0);
    if (isSparse(head)) {
      const img = await SparseImage.open(path);
      await img.close();
      const bs = img.header.blockSize;
      const list: BackedBlock[] = [];
      for (const c of img.chunks) {
        if (c.type === 'raw' && c.blocks > 0) {
          // RAW chunks never merge: their data is not contiguous in the file (headers in between).
          list.push({ block: c.block, len: c.blocks * bs, kind: 'data', fileOffset: c.dataOffset, value: 0 });
        } else if (c.type === 'fill' && c.blocks > 0) {
          const last = list[list.length - 1];
          if (
            last &&
            last.kind === 'fill' &&
            last.value === c.fillValue &&
            last.block + last.len / bs === c.block
          )
            last.len += c.blocks * bs;
          else
            list.push({
              block: c.block,
              len: c.blocks * bs,
              kind: 'fill',
              fileOffset: 0,
              value: c.fillValue!,
            });
        }
      }
      return { bs, totalBlocks: img.header.totalBlocks, list };
    }
    // A raw image is read the way sparse_file_import_auto does: 4096-byte blocks, fill detection.
    const bs = 4096;
    const list: BackedBlock[] = [];
    const buf = Buffer.allocUnsafeSlow(IO_SIZE);
    for (let pos = 0; pos < size; ) {
      const n = await readFully(fh, buf.subarray(0, Math.min(IO_SIZE, size - pos)), pos);
      if (n === 0) break;
      for (let off = 0; off < n; off += bs) {
        const len = Math.min(bs, n - off);
        const v = len < bs ? -1 : uniformWord(buf, off, bs);
        const blk = (pos + off) / bs;
        const last = list[list.length - 1];
        if (v === -1) {
          if (
            last &&
            last.kind === 'data' &&
            last.block + last.len / bs === blk &&
            last.len + len <= MAX_CHUNK_BYTES
          )
            last.len += len;
          else list.push({ block: blk, len, kind: 'data', fileOffset: pos + off, value: 0 });
        } else if (
          last &&
          last.kind === 'fill' &&
          last.value === v &&
          last.block + last.len / bs === blk &&
          last.len + len <= MAX_CHUNK_BYTES
        )
          last.len += len;
        else list.push({ block: blk, len, kind: 'fill', fileOffset: 0, value: v });
      }
      pos += n;
    }
    return { bs, totalBlocks: Math.ceil(size / bs), list };
  } finally {
    await fh.close();
  }
}

/** Bytes a backed block costs in a sparse file (sparse_file_write_block with the counting writer). */
function blockCost(b: BackedBlock, bs: number): number {
  return b.kind === 'fill' ? CHUNK_HEADER_SIZE + 4 : CHUNK_HEADER_SIZE + Math.ceil(b.len / bs) * bs;
}

/**
 * Splits an image (sparse or raw) into sparse pieces of at most `maxSize` bytes each, with
 * libsparse's sparse_file_resparse algorithm (what the fastboot client does before sending to
 * a device whose max-download-size is smaller than the image). Each piece keeps the full
 * total_blks and DONT_CARE-skips what other pieces carry, so writing all pieces in order to one
 * partition (or `simg2img a b c out`) reassembles the image.
 */
export async function splitSparse(inPath: string, maxSize: number): Promise<SparsePiece[]> {
  const { bs, totalBlocks, list } = await backedBlocksOf(inPath);
  // Overhead: file header, a possible end skip chunk and a CRC chunk (move_chunks_up_to_len).
  const overhead = SPARSE_HEADER_SIZE + 2 * CHUNK_HEADER_SIZE + 4;
  if (!Number.isInteger(maxSize) || maxSize > 0xffffffff || maxSize - overhead < 2 * CHUNK_HEADER_SIZE + bs)
    throw new InputError(
      `max download size ${maxSize} too small to split a sparse image with ${bs}-byte blocks`,
      {
        code: 'SPARSE_SPLIT_LIMIT',
        context: { maxSize, blockSize: bs },
      },
    );
  const len = maxSize - overhead;
  const pieces: BackedBlock[][] = [];
  let i = 0;
  const queue = list.slice();
  do {
    const piece: BackedBlock[] = [];
    let fileLen = 0;
    let lastBlock = 0;
    let overflowed = false;
    while (i < queue.length) {
      const bb = queue[i];
      let count = 0;
      if (bb.block > lastBlock) count += CHUNK_HEADER_SIZE;
      lastBlock = bb.block + Math.ceil(bb.len / bs);
      count += blockCost(bb, bs);
      if (fileLen + count > len) {
        // Split the block when more than 1/8 of the budget is left (pieces end up >= 7/8 full).
        fileLen += CHUNK_HEADER_SIZE;
        if (piece.length === 0 || len - fileLen > Math.floor(len / 8)) {
          const maxLen = Math.floor((len - fileLen) / bs) * bs;
          if (maxLen > 0 && bb.len > maxLen) {
            const rest: BackedBlock = {
              ...bb,
              block: bb.block + maxLen / bs,
              len: bb.len - maxLen,
              fileOffset: bb.kind === 'data' ? bb.fileOffset + maxLen : 0,
            };
            queue.splice(i + 1, 0, rest);
            piece.push({ ...bb, len: maxLen });
            i++;
          } else if (maxLen > 0 || piece.length === 0) {
            // Fits after all (or nothing else can make progress): take it whole.
            piece.push(bb);
            i++;
          }
        }
        overflowed = true;
        break;
      }
      fileLen += count;
      piece.push(bb);
      i++;
    }
    pieces.push(piece);
    if (!overflowed) break;
  } while (i < queue.length);
  return pieces.map((p) => makePiece(inPath, bs, totalBlocks, p));
}

function makePiece(src: string, bs: number, totalBlocks: number, blocks: BackedBlock[]): SparsePiece {
  // Chunk layout as write_all_blocks: skips for gaps, the blocks, a skip up to total_blks.
  let chunks = 0;
  let size = SPARSE_HEADER_SIZE;
  let last = 0;
  for (const b of blocks) {
    if (b.block > last) {
      chunks++;
      size += CHUNK_HEADER_SIZE;
    }
    chunks++;
    size += blockCost(b, bs);
    last = b.block + Math.ceil(b.len / bs);
  }
  if (last < totalBlocks) {
    chunks++;
    size += CHUNK_HEADER_SIZE;
  }
  async function* stream(): AsyncGenerator<Buffer> {
    yield sparseFileHeader(bs, totalBlocks, chunks);
    let lastBlock = 0;
    const fh = blocks.some((b) => b.kind === 'data') ? (await openRead(src)).fh : undefined;
    try {
      for (const b of blocks) {
        if (b.block > lastBlock) yield chunkHeader(CHUNK_DONT_CARE, b.block - lastBlock, CHUNK_HEADER_SIZE);
        const nBlocks = Math.ceil(b.len / bs);
        if (b.kind === 'fill') {
          const c = Buffer.alloc(CHUNK_HEADER_SIZE + 4);
          chunkHeader(CHUNK_FILL, nBlocks, CHUNK_HEADER_SIZE + 4).copy(c);
          c.writeUInt32LE(b.value, CHUNK_HEADER_SIZE);
          yield c;
        } else {
          yield chunkHeader(CHUNK_RAW, nBlocks, CHUNK_HEADER_SIZE + nBlocks * bs);
          for (let o = 0; o < nBlocks * bs; ) {
            const n = Math.min(IO_SIZE, nBlocks * bs - o);
            const buf = Buffer.alloc(n);
            const want = Math.max(0, Math.min(n, b.len - o));
            const got = await readFully(fh!, buf.subarray(0, want), b.fileOffset + o);
            if (got < want) throw new InputError(`${src} shrank while reading`, { code: 'SHORT_READ' });
            yield buf;
            o += n;
          }
        }
        lastBlock = b.block + nBlocks;
      }
      if (lastBlock < totalBlocks)
        yield chunkHeader(CHUNK_DONT_CARE, totalBlocks - lastBlock, CHUNK_HEADER_SIZE);
    } finally {
      await fh?.close();
    }
  }
  return {
    size,
    blockSize: bs,
    totalBlocks,
    chunks,
    stream,
    async writeTo(path: string) {
      const out = await open(path, 'w');
      try {
        let pos = 0;
        for await (const b of stream()) {
          await writeAll(out, b, pos);
          pos += b.length;
        }
        await out.truncate(pos);
      } finally {
        await out.close();
      }
    },
  };
}
