/**
 * Android sparse images as the fastboot client and device need them: import a raw or sparse file
 * as a list of backed blocks, split it into pieces no larger than max-download-size exactly as
 * libsparse's `sparse_file_resparse` does (the algorithm the real `fastboot` client uses), write a
 * piece as a sparse stream, and expand a sparse stream onto a partition file.
 *
 * Format: system/core/libsparse/sparse_format.h — 28-byte file header (magic 0xed26ff3a, v1.0),
 * 12-byte chunk headers, chunk types RAW 0xCAC1, FILL 0xCAC2, DONT_CARE 0xCAC3, CRC32 0xCAC4.
 * Everything streams through FileHandles at offsets; nothing holds a whole image in memory.
 */
import type { FileHandle } from 'node:fs/promises';
import { FormatError } from '../../errors.ts';

import {
  CHUNK_CRC32,
  CHUNK_DONT_CARE,
  CHUNK_FILL,
  CHUNK_HEADER_SIZE,
  CHUNK_RAW,
  SPARSE_HEADER_SIZE,
  SPARSE_MAGIC,
  sparseFileHeader,
} from '../../formats/sparse.ts';

const DEFAULT_BLOCK_SIZE = 4096;

/** A run of blocks backed by file data (at `offset` in the source) or by a 32-bit fill value. */
export type BackedBlock =
  | { kind: 'data'; block: number; len: number; offset: number }
  | { kind: 'fill'; block: number; len: number; value: number };

/** A sparse file in memory: its blocks, not their data. `len` is the expanded size in bytes. */
export interface SparseLayout {
  blockSize: number;
  len: number;
  blocks: BackedBlock[];
}

export interface SparseHeader {
  blockSize: number;
  totalBlocks: number;
  totalChunks: number;
  fileHeaderSize: number;
  chunkHeaderSize: number;
}

const fmtErr = (reason: string, extra: Partial<ConstructorParameters<typeof FormatError>[0]> = {}) =>
  new FormatError({ format: 'sparse', reason, ...extra });

/** Reads and validates a sparse file header; undefined when `buf` does not start with the magic. */
export function parseSparseHeader(buf: Buffer, file?: string): SparseHeader | undefined {
  if (buf.length < 4 || buf.readUInt32LE(0) !== SPARSE_MAGIC) return undefined;
  if (buf.length < SPARSE_HEADER_SIZE) throw fmtErr('truncated header', { file, offset: 0 });
  const major = buf.readUInt16LE(4);
  if (major !== 1)
    throw fmtErr('unsupported major version', { file, field: 'major_version', expected: 1, found: major });
  const fileHeaderSize = buf.readUInt16LE(8);
  const chunkHeaderSize = buf.readUInt16LE(10);
  const blockSize = buf.readUInt32LE(12);
  if (fileHeaderSize < SPARSE_HEADER_SIZE)
    throw fmtErr('file header too small', { file, field: 'file_hdr_sz', found: fileHeaderSize });
  if (chunkHeaderSize < CHUNK_HEADER_SIZE)
    throw fmtErr('chunk header too small', { file, field: 'chunk_hdr_sz', found: chunkHeaderSize });
  if (blockSize === 0 || blockSize % 4 !== 0)
    throw fmtErr('block size must be a non-zero multiple of 4', { file, field: 'blk_sz', found: blockSize });
  return {
    blockSize,
    totalBlocks: buf.readUInt32LE(16),
    totalChunks: buf.readUInt32LE(20),
    fileHeaderSize,
    chunkHeaderSize,
  };
}

/** Appends a backed block, merging it into the previous one when contiguous (as libsparse's merge_bb). */
function pushBlock(list: BackedBlock[], bb: BackedBlock, blockSize: number): void {
  const prev = list[list.length - 1];
  if (
    prev &&
    prev.kind === bb.kind &&
    prev.len % blockSize === 0 &&
    prev.block + prev.len / blockSize === bb.block
  ) {
    if (prev.kind === 'data' && bb.kind === 'data' && prev.offset + prev.len === bb.offset) {
      prev.len += bb.len;
      return;
    }
    if (prev.kind === 'fill' && bb.kind === 'fill' && prev.value === bb.value) {
      prev.len += bb.len;
      return;
    }
  }
  list.push(bb);
}

/**
 * Imports a file as libsparse's `sparse_file_import_auto(fd, false, …)` does: a sparse file keeps
 * its chunks; a raw file is read block by block, blocks made of one repeated 32-bit word become
 * FILL, the rest DATA (adjacent runs merged).
 */
export async function importLayout(fh: FileHandle, size: number, file?: string): Promise<SparseLayout> {
  const head = Buffer.alloc(SPARSE_HEADER_SIZE);
  const { bytesRead } = await fh.read(head, 0, SPARSE_HEADER_SIZE, 0);
  const hdr = parseSparseHeader(head.subarray(0, bytesRead), file);
  return hdr ? importSparse(fh, size, hdr, file) : importRaw(fh, size);
}

async function importRaw(fh: FileHandle, size: number): Promise<SparseLayout> {
  const bs = DEFAULT_BLOCK_SIZE;
  const blocks: BackedBlock[] = [];
  const buf = Buffer.alloc(bs * 1024);
  let pos = 0;
  while (pos < size) {
    const want = Math.min(buf.length, size - pos);
    const { bytesRead } = await fh.read(buf, 0, want, pos);
    if (bytesRead !== want) throw fmtErr('file shrank while reading', { offset: pos + bytesRead });
    for (let o = 0; o < want; o += bs) {
      const n = Math.min(bs, want - o);
      const block = (pos + o) / bs;
      const fill = n === bs ? fillValue(buf, o, bs) : undefined;
      if (fill !== undefined) pushBlock(blocks, { kind: 'fill', block, len: n, value: fill }, bs);
      else pushBlock(blocks, { kind: 'data', block, len: n, offset: pos + o }, bs);
    }
    pos += want;
  }
  return { blockSize: bs, len: size, blocks };
}

/** The repeated 32-bit word if the block is made of one, else undefined. */
function fillValue(buf: Buffer, at: number, len: number): number | undefined {
  const v = buf.readUInt32LE(at);
  if (buf.readUInt32LE(at + 4) !== v || buf.readUInt32LE(at + len - 4) !== v) return undefined;
  // Native memcmp against a pattern block instead of a JS loop over every word.
  if (fillPattern.length !== len || fillPattern.readUInt32LE(0) !== v) {
    if (fillPattern.length !== len) fillPattern = Buffer.alloc(len);
    const w = Buffer.alloc(4);
    w.writeUInt32LE(v, 0);
    fillPattern.fill(w);
  }
  return buf.compare(fillPattern, 0, len, at, at + len) === 0 ? v : undefined;
}
let fillPattern = Buffer.alloc(0);

async function importSparse(
  fh: FileHandle,
  size: number,
  hdr: SparseHeader,
  file?: string,
): Promise<SparseLayout> {
  const { blockSize: bs } = hdr;
  const blocks: BackedBlock[] = [];
  // Chunk headers are read through a window: images with many small chunks would otherwise
  // cost one tiny read per chunk.
  const win = new ReadWindow(fh, 1 << 20);
  let pos = hdr.fileHeaderSize;
  let block = 0;
  for (let i = 0; i < hdr.totalChunks; i++) {
    if (pos + CHUNK_HEADER_SIZE > size) throw fmtErr('truncated chunk header', { file, offset: pos });
    const ch = await win.get(pos, CHUNK_HEADER_SIZE);
    const type = ch.readUInt16LE(0);
    const chunkBlocks = ch.readUInt32LE(4);
    const totalSz = ch.readUInt32LE(8);
    const dataPos = pos + hdr.chunkHeaderSize;
    const dataLen = totalSz - hdr.chunkHeaderSize;
    if (totalSz < hdr.chunkHeaderSize || pos + totalSz > size)
      throw fmtErr('chunk size out of range', { file, offset: pos, field: 'total_sz', found: totalSz });
    if (block + chunkBlocks > hdr.totalBlocks)
      throw fmtErr('chunks exceed total_blks', {
        file,
        offset: pos,
        expected: hdr.totalBlocks,
        found: block + chunkBlocks,
      });
    const len = chunkBlocks * bs;
    if (type === CHUNK_RAW) {
      if (dataLen !== len)
        throw fmtErr('raw chunk size mismatch', { file, offset: pos, expected: len, found: dataLen });
      if (len) pushBlock(blocks, { kind: 'data', block, len, offset: dataPos }, bs);
    } else if (type === CHUNK_FILL) {
      if (dataLen !== 4)
        throw fmtErr('fill chunk size mismatch', { file, offset: pos, expected: 4, found: dataLen });
      const v = await win.get(dataPos, 4);
      if (len) pushBlock(blocks, { kind: 'fill', block, len, value: v.readUInt32LE(0) }, bs);
    } else if (type === CHUNK_DONT_CARE) {
      if (dataLen !== 0) throw fmtErr('dont-care chunk has data', { file, offset: pos, found: dataLen });
    } else if (type === CHUNK_CRC32) {
      if (dataLen !== 4)
        throw fmtErr('crc chunk size mismatch', { file, offset: pos, expected: 4, found: dataLen });
      pos += totalSz;
      continue;
    } else {
      throw fmtErr('unknown chunk type', { file, offset: pos, field: 'chunk_type', found: type });
    }
    block += chunkBlocks;
    pos += totalSz;
  }
  return { blockSize: bs, len: hdr.totalBlocks * bs, blocks };
}

function divRoundUp(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/** Bytes a backed block takes in a sparse file (chunk header + data rounded up to blocks, or a fill word). */
function chunkBytes(bb: BackedBlock, bs: number): number {
  return CHUNK_HEADER_SIZE + (bb.kind === 'data' ? divRoundUp(bb.len, bs) * bs : 4);
}

/** Exact size of `layout` written as a sparse file (what `download:` announces). */
export function sparseLength(layout: SparseLayout): number {
  const bs = layout.blockSize;
  let n = SPARSE_HEADER_SIZE;
  let last = 0;
  for (const bb of layout.blocks) {
    if (bb.block > last) n += CHUNK_HEADER_SIZE;
    n += chunkBytes(bb, bs);
    last = bb.block + divRoundUp(bb.len, bs);
  }
  if (layout.len - last * bs > 0) n += CHUNK_HEADER_SIZE;
  return n;
}

/**
 * Splits `layout` into sparse files of at most `maxLen` bytes each, as libsparse's
 * sparse_file_resparse / move_chunks_up_to_len: fill pieces greedily, and split a DATA run that
 * does not fit when more than 1/8 of the piece is still free (or the piece is still empty).
 */
export function splitLayout(layout: SparseLayout, maxLen: number): SparseLayout[] {
  const bs = layout.blockSize;
  const overhead = SPARSE_HEADER_SIZE + 2 * CHUNK_HEADER_SIZE + 4;
  const len = maxLen - overhead;
  if (len <= bs + CHUNK_HEADER_SIZE)
    throw fmtErr('max-download-size too small to split into', { found: maxLen });
  const queue = layout.blocks.map((b) => ({ ...b }));
  const out: SparseLayout[] = [];
  let i = 0;
  while (i < queue.length || out.length === 0) {
    const piece: BackedBlock[] = [];
    let fileLen = 0;
    let last = 0;
    for (; i < queue.length; i++) {
      const bb = queue[i];
      let count = bb.block > last ? CHUNK_HEADER_SIZE : 0;
      count += chunkBytes(bb, bs);
      if (fileLen + count > len) {
        fileLen += CHUNK_HEADER_SIZE;
        if (piece.length === 0 || len - fileLen > Math.floor(len / 8)) {
          const rest = splitBlock(bb, len - fileLen, bs);
          if (rest) queue.splice(i + 1, 0, rest);
          piece.push(bb);
          i++;
        }
        break;
      }
      fileLen += count;
      last = bb.block + divRoundUp(bb.len, bs);
      piece.push(bb);
    }
    out.push({ blockSize: bs, len: layout.len, blocks: piece });
    if (i >= queue.length) break;
  }
  return out;
}

/** libsparse backed_block_split: keeps the first `maxLen` (rounded down to blocks) in `bb`, returns the rest. */
function splitBlock(bb: BackedBlock, maxLen: number, bs: number): BackedBlock | undefined {
  const keep = Math.floor(maxLen / bs) * bs;
  if (keep === 0 || keep >= bb.len) return undefined;
  const rest = { ...bb, len: bb.len - keep, block: bb.block + keep / bs };
  if (rest.kind === 'data' && bb.kind === 'data') rest.offset = bb.offset + keep;
  bb.len = keep;
  return rest;
}

/**
 * Streams `layout` as a sparse file (header, chunks, DONT_CARE gaps) to `write`, reading DATA from
 * `src`. `write` may return a promise to apply backpressure.
 */
export async function writeSparse(
  layout: SparseLayout,
  src: FileHandle,
  write: (b: Buffer) => void | Promise<void>,
  bufSize = 1 << 20,
): Promise<void> {
  const bs = layout.blockSize;
  const totalBlocks = divRoundUp(layout.len, bs);
  let chunks = 0;
  let last = 0;
  for (const bb of layout.blocks) {
    if (bb.block > last) chunks++;
    chunks++;
    last = bb.block + divRoundUp(bb.len, bs);
  }
  const tail = layout.len - last * bs;
  if (tail > 0) chunks++;
  await write(sparseFileHeader(bs, totalBlocks, chunks));
  const chunkHeader = (type: number, blocks: number, total: number) => {
    const c = Buffer.alloc(CHUNK_HEADER_SIZE);
    c.writeUInt16LE(type, 0);
    c.writeUInt32LE(blocks, 4);
    c.writeUInt32LE(total, 8);
    return c;
  };
  const window = new ReadWindow(src, Math.max(bufSize, 4 << 20));
  last = 0;
  for (const bb of layout.blocks) {
    if (bb.block > last) await write(chunkHeader(CHUNK_DONT_CARE, bb.block - last, CHUNK_HEADER_SIZE));
    const nblocks = divRoundUp(bb.len, bs);
    if (bb.kind === 'fill') {
      const c = Buffer.alloc(CHUNK_HEADER_SIZE + 4);
      chunkHeader(CHUNK_FILL, nblocks, CHUNK_HEADER_SIZE + 4).copy(c);
      c.writeUInt32LE(bb.value, CHUNK_HEADER_SIZE);
      await write(c);
    } else {
      await write(chunkHeader(CHUNK_RAW, nblocks, CHUNK_HEADER_SIZE + nblocks * bs));
      let done = 0;
      while (done < bb.len) {
        const n = Math.min(bufSize, bb.len - done);
        await write(await window.get(bb.offset + done, n));
        done += n;
      }
      const pad = nblocks * bs - bb.len;
      if (pad) await write(Buffer.alloc(pad));
    }
    last = bb.block + nblocks;
  }
  if (tail > 0) await write(chunkHeader(CHUNK_DONT_CARE, divRoundUp(tail, bs), CHUNK_HEADER_SIZE));
}

/**
 * Sequential reads through a large window: images with many short DATA runs would otherwise cost
 * one small read per run. Returned buffers stay valid after later calls (the sink may hold them
 * until flushed): each window is a buffer of its own, never refilled.
 */
export class ReadWindow {
  private buf = Buffer.alloc(0);
  private at = 0;
  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
  ) {}

  async get(offset: number, n: number): Promise<Buffer> {
    if (n > this.size) return this.direct(offset, n);
    if (offset < this.at || offset + n > this.at + this.buf.length) {
      const b = Buffer.allocUnsafe(this.size);
      const { bytesRead } = await this.fh.read(b, 0, this.size, offset);
      this.buf = b.subarray(0, bytesRead);
      this.at = offset;
      if (bytesRead < n) throw fmtErr('source file shrank while sending', { offset: offset + bytesRead });
    }
    // A view, not a copy: copying cost a memcpy of every byte sent or expanded.
    return this.buf.subarray(offset - this.at, offset - this.at + n);
  }

  private async direct(offset: number, n: number): Promise<Buffer> {
    const b = Buffer.allocUnsafe(n);
    const { bytesRead } = await this.fh.read(b, 0, n, offset);
    if (bytesRead !== n) throw fmtErr('source file shrank while sending', { offset: offset + bytesRead });
    return b;
  }
}

/**
 * Expands a sparse file (read from `src`, `size` bytes) onto `dst` in place: DATA and FILL chunks are
 * written, DONT_CARE leaves `dst` untouched. Validates every header before writing anything, and
 * refuses images that expand past `limit` bytes.
 */
export async function expandSparse(
  src: FileHandle,
  size: number,
  dst: FileHandle,
  limit: number,
  file?: string,
): Promise<{ expandedLen: number }> {
  const layout = await importLayout(src, size, file);
  if (layout.len > limit)
    throw fmtErr('image expands beyond the partition', { file, expected: `<= ${limit}`, found: layout.len });
  const bs = layout.blockSize;
  const source = new ReadWindow(src, 4 << 20);
  // Contiguous output is gathered and written with one writev per few MiB.
  let pending: Buffer[] = [];
  let pendingAt = 0;
  let pendingLen = 0;
  const flush = async () => {
    if (pendingLen) await dst.writev(pending, pendingAt);
    pending = [];
    pendingLen = 0;
  };
  const emit = async (at: number, b: Buffer) => {
    if (pendingLen && pendingAt + pendingLen !== at) await flush();
    if (!pendingLen) pendingAt = at;
    pending.push(b);
    pendingLen += b.length;
    if (pendingLen >= 4 << 20) await flush();
  };
  const word = Buffer.alloc(4);
  for (const bb of layout.blocks) {
    const at = bb.block * bs;
    for (let done = 0; done < bb.len; ) {
      const n = Math.min(1 << 20, bb.len - done);
      let b: Buffer;
      if (bb.kind === 'data') b = await source.get(bb.offset + done, n);
      else {
        word.writeUInt32LE(bb.value, 0);
        b = Buffer.allocUnsafe(n).fill(word);
      }
      await emit(at + done, b);
      done += n;
    }
  }
  await flush();
  return { expandedLen: layout.len };
}
