import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import xz from 'xz-decompress';
import { FormatError } from '../../errors.ts';
import { BinaryReader } from '../binary.ts';

/**
 * The .xz container (tukaani xz-file-format-1.1.0) as update_engine's REPLACE_XZ data uses it.
 *
 * delta_generator (payload_generator/xz_android.cc) writes LZMA2 with no check, and puts a BCJ
 * filter in front when the blob is an ELF file (x86 for x86/x86_64, ARM-Thumb for 32-bit ARM);
 * the device decodes with xz-embedded. Our LZMA2 decoder (xz-decompress, a WebAssembly build of
 * xz-embedded) has neither BCJ filters nor SHA-256 checks, so this file walks the container
 * itself: every block is re-wrapped as a one-filter, no-check stream for the LZMA2 decoder, then
 * the BCJ filters are undone here and the block's check (CRC32, CRC64, SHA-256) is verified here.
 * Concatenated streams and stream padding are accepted, as xz-embedded's multi-stream mode does.
 */

const HEADER_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const FOOTER_MAGIC = 'YZ';
const FILTER_LZMA2 = 0x21;
/** BCJ filter ids (xz-file-format 5.3.2) this decoder can undo. */
const BCJ_FILTERS: Record<number, string> = { 4: 'x86', 7: 'arm', 8: 'armthumb', 10: 'arm64' };
/** Check sizes by check id (xz-file-format 2.1.1.2). */
const CHECK_SIZES = [0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64];
const CHECK_CRC32 = 1;
const CHECK_CRC64 = 4;
const CHECK_SHA256 = 10;

interface Filter {
  id: number;
  props: Buffer;
}

interface IndexRecord {
  unpaddedSize: number;
  uncompressedSize: number;
}

export interface XzDecodeOptions {
  /** Refuse (before decoding) output larger than this: the caller's destination size. */
  maxOutput: number;
  /** For error messages. */
  file?: string;
  /** Offset of data[0] in `file`. */
  baseOffset?: number;
}

const roundUp4 = (n: number) => (n + 3) & ~3;

/** Reads an xz variable-length integer (1..9 bytes, 7 bits each, little-endian). */
function varint(r: BinaryReader, field: string): number {
  let v = 0;
  for (let i = 0; i < 9; i++) {
    const b = r.u8(field);
    v += (b & 0x7f) * 2 ** (7 * i);
    if (!(b & 0x80)) {
      if (i > 0 && b === 0) r.fail('non-minimal variable-length integer', { field, at: r.pos - 1 });
      if (v > Number.MAX_SAFE_INTEGER) r.fail('value too large', { field, found: v });
      return v;
    }
  }
  return r.fail('variable-length integer longer than 9 bytes', { field });
}

function putVarint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

function le32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/**
 * Decodes a whole .xz file (one or more streams), handing each block's output to `sink` in order.
 * Every size is bounded by `opts.maxOutput` before anything is allocated or decoded.
 */
export async function decodeXz(
  data: Buffer,
  opts: XzDecodeOptions,
  sink: (chunk: Buffer) => Promise<void>,
): Promise<void> {
  const r = new BinaryReader(data, 'xz', opts.baseOffset ?? 0, opts.file);
  const streams = locateStreams(r);
  let total = 0;
  for (const s of streams) {
    for (const rec of s.records) {
      total += rec.uncompressedSize;
      if (total > opts.maxOutput)
        r.fail('uncompressed data is larger than its destination', {
          field: 'index uncompressed size',
          expected: `<= ${opts.maxOutput}`,
          found: total,
        });
    }
  }
  for (const s of streams) {
    let pos = s.start + 12;
    for (const [i, rec] of s.records.entries()) {
      await sink(await decodeBlock(r, pos, rec, s.checkType, `block ${i}`));
      pos += roundUp4(rec.unpaddedSize);
    }
  }
}

/** Walks streams backwards from the end using each stream's footer and index, as `xz --list` does. */
function locateStreams(r: BinaryReader): { start: number; checkType: number; records: IndexRecord[] }[] {
  const data = r.buf;
  const streams: { start: number; checkType: number; records: IndexRecord[] }[] = [];
  let end = data.length;
  if (end % 4 !== 0) r.fail('size is not a multiple of four', { field: 'stream padding', at: 0, found: end });
  while (end > 0) {
    while (end >= 4 && data.readUInt32LE(end - 4) === 0) end -= 4;
    if (end === 0) break;
    if (end < 24) r.fail('truncated', { field: 'stream', at: 0, expected: '>= 24 bytes', found: end });
    const f = end - 12;
    r.seek(f + 10);
    r.magic(FOOTER_MAGIC, 'stream footer magic');
    r.seek(f);
    const footerCrc = r.u32le('stream footer CRC32');
    if (crc32(data.subarray(f + 4, f + 10)) !== footerCrc)
      r.fail('stream footer CRC32 mismatch', { field: 'stream footer CRC32', at: f });
    const backwardSize = (r.u32le('backward size') + 1) * 4;
    const flags = data.subarray(f + 8, f + 10);
    const indexStart = f - backwardSize;
    if (indexStart < 12)
      r.fail('index lies before the start of the data', {
        field: 'backward size',
        at: f + 4,
        found: backwardSize,
      });
    const records = parseIndex(r, indexStart, backwardSize);
    let blocks = 0;
    for (const rec of records) blocks += roundUp4(rec.unpaddedSize);
    const start = indexStart - blocks - 12;
    if (start < 0)
      r.fail('blocks lie before the start of the data', { field: 'index', at: indexStart, found: blocks });
    r.seek(start);
    r.magic(HEADER_MAGIC, 'stream header magic');
    const headerFlags = r.bytes(2, 'stream flags');
    if (crc32(headerFlags) !== r.u32le('stream header CRC32'))
      r.fail('stream header CRC32 mismatch', { field: 'stream header CRC32', at: start + 8 });
    if (!headerFlags.equals(flags))
      r.fail('stream header and footer flags differ', {
        field: 'stream flags',
        at: start + 6,
        expected: flags.toString('hex'),
        found: headerFlags.toString('hex'),
      });
    if (flags[0] !== 0 || flags[1] > 0x0f)
      r.fail('unsupported stream flags', {
        field: 'stream flags',
        at: start + 6,
        found: flags.toString('hex'),
      });
    streams.push({ start, checkType: flags[1], records });
    end = start;
  }
  if (!streams.length) r.fail('no xz stream', { field: 'stream header', at: 0 });
  return streams.reverse();
}

function parseIndex(r: BinaryReader, at: number, size: number): IndexRecord[] {
  r.seek(at);
  if (r.u8('index indicator') !== 0) r.fail('bad index indicator', { field: 'index indicator', at });
  const count = varint(r, 'index number of records');
  // Each record takes at least two bytes: a forged count cannot make us allocate.
  if (count * 2 > size)
    r.fail('more index records than fit in the index', { field: 'index number of records', found: count });
  const records: IndexRecord[] = [];
  for (let i = 0; i < count; i++) {
    const unpaddedSize = varint(r, 'index unpadded size');
    const uncompressedSize = varint(r, 'index uncompressed size');
    if (unpaddedSize < 5)
      r.fail('unpadded size too small', { field: 'index unpadded size', found: unpaddedSize });
    records.push({ unpaddedSize, uncompressedSize });
  }
  while ((r.pos - at) % 4 !== 0) if (r.u8('index padding') !== 0) r.fail('non-zero index padding');
  const crcAt = r.pos;
  if (crcAt + 4 !== at + size)
    r.fail('index size differs from the backward size', {
      field: 'backward size',
      expected: size,
      found: crcAt + 4 - at,
    });
  if (crc32(r.buf.subarray(at, crcAt)) !== r.u32le('index CRC32'))
    r.fail('index CRC32 mismatch', { field: 'index CRC32', at: crcAt });
  return records;
}

async function decodeBlock(
  r: BinaryReader,
  at: number,
  rec: IndexRecord,
  checkType: number,
  what: string,
): Promise<Buffer> {
  const data = r.buf;
  r.seek(at);
  const sizeByte = r.u8(`${what} header size`);
  if (sizeByte === 0) r.fail('index found where a block was expected', { field: `${what} header size`, at });
  const headerSize = (sizeByte + 1) * 4;
  r.need(headerSize - 1, `${what} header`);
  if (crc32(data.subarray(at, at + headerSize - 4)) !== data.readUInt32LE(at + headerSize - 4))
    r.fail('block header CRC32 mismatch', { field: `${what} header CRC32`, at: at + headerSize - 4 });
  const flags = r.u8(`${what} flags`);
  if (flags & 0x3c) r.fail('reserved block flags set', { field: `${what} flags`, at: at + 1, found: flags });
  if (flags & 0x40) varint(r, `${what} compressed size`);
  const declared = flags & 0x80 ? varint(r, `${what} uncompressed size`) : undefined;
  if (declared !== undefined && declared !== rec.uncompressedSize)
    r.fail('block and index disagree on the uncompressed size', {
      field: `${what} uncompressed size`,
      expected: rec.uncompressedSize,
      found: declared,
    });
  const filters: Filter[] = [];
  for (let i = 0; i <= (flags & 3); i++) {
    const id = varint(r, `${what} filter id`);
    const propsSize = varint(r, `${what} filter properties size`);
    filters.push({ id, props: r.bytes(propsSize, `${what} filter properties`) });
  }
  if (r.pos > at + headerSize - 4) r.fail('block header overflows its size', { field: `${what} header`, at });
  const lzma2 = filters[filters.length - 1];
  if (lzma2.id !== FILTER_LZMA2 || lzma2.props.length !== 1)
    r.fail('last filter must be LZMA2', {
      field: `${what} filter id`,
      at,
      expected: FILTER_LZMA2,
      found: lzma2.id,
    });
  for (const f of filters.slice(0, -1))
    if (!BCJ_FILTERS[f.id] || (f.props.length !== 0 && f.props.length !== 4))
      r.fail('unsupported filter (only LZMA2 with x86, ARM, ARM-Thumb or ARM64 BCJ)', {
        field: `${what} filter id`,
        at,
        found: `0x${f.id.toString(16)}`,
      });
  const checkSize = CHECK_SIZES[checkType];
  const compressedSize = rec.unpaddedSize - headerSize - checkSize;
  if (compressedSize <= 0) r.fail('block has no compressed data', { field: `${what} unpadded size`, at });
  const compressedAt = at + headerSize;
  const checkAt = roundUp4(compressedAt + compressedSize);
  r.seek(checkAt);
  const check = r.bytes(checkSize, `${what} check`);

  const out = await decodeLzma2(
    data.subarray(compressedAt, compressedAt + compressedSize),
    lzma2.props,
    rec,
    r,
    what,
  );
  for (const f of filters.slice(0, -1).reverse()) undoBcj(f, out);
  verifyCheck(checkType, check, out, r, checkAt, what);
  return out;
}

/**
 * A check-less .xz stream holding one block as stored (header, data, padding): stream header, the
 * block, an index of one record, stream footer. What `xz --check=none` writes for that data alone.
 */
export function singleBlockStream(block: Buffer, unpaddedSize: number, uncompressedSize: number): Buffer {
  const streamFlags = Buffer.from([0, 0]);
  const index = Buffer.from([0, ...putVarint(1), ...putVarint(unpaddedSize), ...putVarint(uncompressedSize)]);
  const indexPadded = Buffer.concat([index, Buffer.alloc(roundUp4(index.length) - index.length)]);
  const footerBody = Buffer.concat([le32((indexPadded.length + 4) / 4 - 1), streamFlags]);
  return Buffer.concat([
    HEADER_MAGIC,
    streamFlags,
    le32(crc32(streamFlags)),
    block,
    indexPadded,
    le32(crc32(indexPadded)),
    le32(crc32(footerBody)),
    footerBody,
    Buffer.from(FOOTER_MAGIC, 'latin1'),
  ]);
}

/** Re-wraps one block's LZMA2 data as a minimal stream (no check, no BCJ) and decodes it. */
async function decodeLzma2(
  compressed: Buffer,
  dictProp: Buffer,
  rec: IndexRecord,
  r: BinaryReader,
  what: string,
): Promise<Buffer> {
  const blockHeader = Buffer.from([2, 0, FILTER_LZMA2, 1, dictProp[0], 0, 0, 0]);
  const blockPadding = Buffer.alloc(roundUp4(compressed.length) - compressed.length);
  const stream = singleBlockStream(
    Buffer.concat([blockHeader, le32(crc32(blockHeader)), compressed, blockPadding]),
    12 + compressed.length,
    rec.uncompressedSize,
  );
  const out = Buffer.alloc(rec.uncompressedSize);
  let got = 0;
  const reader = new xz.XzReadableStream(new Blob([stream]).stream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > out.length)
        r.fail('block decodes to more than the index says', {
          field: `${what} uncompressed size`,
          expected: rec.uncompressedSize,
          found: `more than ${rec.uncompressedSize}`,
        });
      out.set(value, got);
      got += value.length;
    }
  } catch (e) {
    if (e instanceof FormatError) throw e;
    r.fail(`LZMA2 data is corrupt (${e instanceof Error ? e.message : String(e)})`, { field: what });
  }
  if (got !== out.length)
    r.fail('block decodes to less than the index says', {
      field: `${what} uncompressed size`,
      expected: rec.uncompressedSize,
      found: got,
    });
  return out;
}

let crc64Lo: Uint32Array | undefined;
let crc64Hi: Uint32Array | undefined;
/**
 * CRC-64/XZ (ECMA-182 polynomial, reflected), as the xz check id 4 defines it. The 64-bit register
 * is kept as two 32-bit halves: BigInt arithmetic per byte is ~50x slower on multi-MiB blocks.
 */
export function crc64(b: Uint8Array): bigint {
  if (!crc64Lo || !crc64Hi) {
    crc64Lo = new Uint32Array(256);
    crc64Hi = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = BigInt(n);
      for (let k = 0; k < 8; k++) c = c & 1n ? 0xc96c5795d7870f42n ^ (c >> 1n) : c >> 1n;
      crc64Lo[n] = Number(c & 0xffffffffn);
      crc64Hi[n] = Number(c >> 32n);
    }
  }
  const tLo = crc64Lo;
  const tHi = crc64Hi;
  let lo = 0xffffffff;
  let hi = 0xffffffff;
  for (let i = 0; i < b.length; i++) {
    const idx = (lo ^ b[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ tLo[idx];
    hi = (hi >>> 8) ^ tHi[idx];
  }
  return (BigInt(~hi >>> 0) << 32n) | BigInt(~lo >>> 0);
}

function verifyCheck(type: number, stored: Buffer, out: Buffer, r: BinaryReader, at: number, what: string) {
  let computed: Buffer | undefined;
  if (type === CHECK_CRC32) computed = le32(crc32(out));
  else if (type === CHECK_CRC64) {
    computed = Buffer.alloc(8);
    computed.writeBigUInt64LE(crc64(out));
  } else if (type === CHECK_SHA256) computed = createHash('sha256').update(out).digest();
  // Other check ids are reserved; like xz, we skip what we do not know (the payload has its own hash).
  if (computed && !computed.equals(stored))
    r.fail('check of the decoded data does not match', {
      field: `${what} check`,
      at,
      expected: stored.toString('hex'),
      found: computed.toString('hex'),
    });
}

/** Undoes one BCJ filter in place (xz-embedded xz_dec_bcj.c, whole block in one call). */
function undoBcj(f: Filter, buf: Buffer): void {
  const start = f.props.length === 4 ? f.props.readUInt32LE(0) : 0;
  const undo = { x86: bcjX86, arm: bcjArm, armthumb: bcjArmThumb, arm64: bcjArm64 }[BCJ_FILTERS[f.id]];
  undo?.(buf, start);
}

function bcjX86(buf: Buffer, pos: number): void {
  const allowed = [true, true, true, false, true, false, false, false];
  const bitNum = [0, 1, 2, 2, 3, 3, 3, 3];
  const msb = (b: number) => b === 0x00 || b === 0xff;
  if (buf.length <= 4) return;
  const size = buf.length - 4;
  let prevPos = -1;
  let prevMask = 0;
  for (let i = 0; i < size; i++) {
    if ((buf[i] & 0xfe) !== 0xe8) continue;
    const dist = i - prevPos;
    if (dist > 3) prevMask = 0;
    else {
      prevMask = (prevMask << (dist - 1)) & 7;
      if (prevMask !== 0) {
        const b = buf[i + 4 - bitNum[prevMask]];
        if (!allowed[prevMask] || msb(b)) {
          prevPos = i;
          prevMask = (prevMask << 1) | 1;
          continue;
        }
      }
    }
    prevPos = i;
    if (msb(buf[i + 4])) {
      let src = buf.readUInt32LE(i + 1);
      let dest: number;
      for (;;) {
        dest = (src - (pos + i + 5)) >>> 0;
        if (prevMask === 0) break;
        const j = bitNum[prevMask] * 8;
        if (!msb((dest >>> (24 - j)) & 0xff)) break;
        src = (dest ^ (2 ** (32 - j) - 1)) >>> 0;
      }
      dest &= 0x01ffffff;
      dest = (dest | -(dest & 0x01000000)) >>> 0;
      buf.writeUInt32LE(dest, i + 1);
      i += 4;
    } else prevMask = (prevMask << 1) | 1;
  }
}

function bcjArm(buf: Buffer, pos: number): void {
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    if (buf[i + 3] !== 0xeb) continue;
    let addr = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16);
    addr = ((addr << 2) - (pos + i + 8)) >>> 2;
    buf[i] = addr & 0xff;
    buf[i + 1] = (addr >>> 8) & 0xff;
    buf[i + 2] = (addr >>> 16) & 0xff;
  }
}

function bcjArmThumb(buf: Buffer, pos: number): void {
  for (let i = 0; i + 4 <= buf.length; i += 2) {
    if ((buf[i + 1] & 0xf8) !== 0xf0 || (buf[i + 3] & 0xf8) !== 0xf8) continue;
    let addr = ((buf[i + 1] & 7) << 19) | (buf[i] << 11) | ((buf[i + 3] & 7) << 8) | buf[i + 2];
    addr = ((addr << 1) - (pos + i + 4)) >>> 1;
    buf[i + 1] = 0xf0 | ((addr >>> 19) & 7);
    buf[i] = (addr >>> 11) & 0xff;
    buf[i + 3] = 0xf8 | ((addr >>> 8) & 7);
    buf[i + 2] = addr & 0xff;
    i += 2;
  }
}

function bcjArm64(buf: Buffer, pos: number): void {
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    let instr = buf.readUInt32LE(i);
    const pc = (pos + i) >>> 0;
    if (instr >>> 26 === 0x25) {
      const addr = (instr - (pc >>> 2)) >>> 0;
      buf.writeUInt32LE((0x94000000 | (addr & 0x03ffffff)) >>> 0, i);
    } else if ((instr & 0x9f000000) >>> 0 === 0x90000000) {
      let addr = ((instr >>> 29) & 3) | ((instr >>> 3) & 0x001ffffc);
      if (((addr + 0x00020000) & 0x001c0000) !== 0) continue;
      addr = (addr - (pc >>> 12)) >>> 0;
      instr = (instr & 0x9000001f) >>> 0;
      instr |= (addr & 3) << 29;
      instr |= (addr & 0x0003fffc) << 3;
      instr |= (0 - (addr & 0x00020000)) & 0x00e00000;
      buf.writeUInt32LE(instr >>> 0, i);
    }
  }
}
