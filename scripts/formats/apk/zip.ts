/**
 * ZIP reader for APKs (APPNOTE.TXT; Android's own rules from apksig `ZipUtils`/`ApkUtils`).
 *
 * Own code rather than yauzl because APK signature verification needs what general zip
 * libraries hide: the exact offsets of the central directory and the End of Central Directory
 * record (the APK Signing Block sits right before the central directory), random access by
 * offset through one file handle, and bounded inflation. Entries are read lazily: opening an
 * APK reads only the EOCD and the central directory.
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { crc32, createInflateRaw, inflateRawSync, constants as zc } from 'node:zlib';
import { FormatError, InputError } from '../../errors.ts';
import { BinaryReader, checkBound } from '../binary.ts';

const FORMAT = 'zip';
const EOCD_SIG = 0x06054b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CD_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;
/** Largest entry we inflate into memory; bigger ones must be streamed. */
export const MAX_INMEMORY_ENTRY = 512 * 1024 * 1024;

/** Random-access bytes: a file (read at offsets) or a buffer (tests, nested archives). */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Exactly `len` bytes at `pos`; a FormatError when the range lies outside the source. */
  read(pos: number, len: number): Promise<Buffer>;
  close(): Promise<void>;
}

export async function openFileSource(path: string): Promise<ByteSource> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
  const size = (await fh.stat()).size;
  const pread = async (pos: number, len: number): Promise<Buffer> => {
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await fh.read(b, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== len)
      throw new FormatError({ format: FORMAT, reason: 'file shrank while reading', offset: pos, file: path });
    return b;
  };
  // Read-ahead window for small reads: each FileHandle.read is a thread-pool round trip, and
  // walking thousands of local headers / small entries in file order would pay it every time.
  let win: Buffer = Buffer.alloc(0);
  let winPos = 0;
  return {
    name: path,
    size,
    async read(pos, len) {
      rangeCheck(path, size, pos, len);
      if (len > SMALL_READ) return pread(pos, len);
      if (pos < winPos || pos + len > winPos + win.length) {
        winPos = pos;
        win = await pread(pos, Math.min(WINDOW, size - pos));
      }
      return win.subarray(pos - winPos, pos - winPos + len);
    },
    close: () => fh.close(),
  };
}

const SMALL_READ = 64 * 1024;
const WINDOW = 1024 * 1024;

export function bufferSource(buf: Buffer, name = '<buffer>'): ByteSource {
  return {
    name,
    size: buf.length,
    async read(pos, len) {
      rangeCheck(name, buf.length, pos, len);
      return buf.subarray(pos, pos + len);
    },
    close: async () => {},
  };
}

function rangeCheck(name: string, size: number, pos: number, len: number): void {
  if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > size)
    throw new FormatError({
      format: FORMAT,
      reason: 'read past end of file',
      offset: pos,
      expected: `range within ${size} bytes`,
      found: `${len} bytes at ${pos}`,
      file: name,
    });
}

export interface ZipEntry {
  name: string;
  /** The name's bytes as stored in the central directory. */
  rawName: Buffer;
  /** 0 = stored, 8 = deflated. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  /** Offset of this entry's record in the central directory. */
  cdRecordOffset: number;
  isDirectory: boolean;
}

/** Where the parts of the archive are; v2+ signature verification digests exactly these ranges. */
export interface ZipLayout {
  size: number;
  centralDirectoryOffset: number;
  centralDirectorySize: number;
  eocdOffset: number;
  /** Bytes of the EOCD record including its comment (to the end of the file). */
  eocdSize: number;
  entryCount: number;
  /** True when ZIP64 records were present (APK signature schemes v2+ do not allow ZIP64). */
  zip64: boolean;
  comment: string;
}

export class ZipArchive {
  private readonly byName = new Map<string, ZipEntry>();

  private constructor(
    readonly source: ByteSource,
    readonly layout: ZipLayout,
    readonly entries: readonly ZipEntry[],
  ) {
    for (const e of entries) if (!this.byName.has(e.name)) this.byName.set(e.name, e);
  }

  static async openFile(path: string): Promise<ZipArchive> {
    const src = await openFileSource(path);
    try {
      return await ZipArchive.open(src);
    } catch (e) {
      await src.close();
      throw e;
    }
  }

  static async open(src: ByteSource): Promise<ZipArchive> {
    const layout = await findLayout(src);
    const cd = await src.read(layout.centralDirectoryOffset, layout.centralDirectorySize);
    const entries = parseCentralDirectory(cd, layout, src.name);
    return new ZipArchive(src, layout, entries);
  }

  get name(): string {
    return this.source.name;
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  close(): Promise<void> {
    return this.source.close();
  }

  /** Offset of the entry's (possibly compressed) data, after its local file header. */
  async dataOffset(e: ZipEntry): Promise<number> {
    const h = new BinaryReader(
      await this.source.read(e.localHeaderOffset, 30),
      FORMAT,
      e.localHeaderOffset,
      this.name,
    );
    const sig = h.u32le('local header signature');
    if (sig !== LFH_SIG)
      h.fail('bad local file header signature', {
        field: `${e.name} signature`,
        at: 0,
        expected: LFH_SIG,
        found: sig,
      });
    h.seek(26);
    const nameLen = h.u16le('name length');
    const extraLen = h.u16le('extra length');
    // libziparchive and apksig reject a local header whose name differs from the central
    // directory's: a reader trusting either one alone could be shown different files.
    const localName = await this.source.read(e.localHeaderOffset + 30, nameLen);
    if (!localName.equals(e.rawName))
      throw new FormatError({
        format: FORMAT,
        reason: 'local file header name differs from the central directory',
        field: e.name,
        offset: e.localHeaderOffset + 30,
        expected: e.name,
        found: localName.toString('utf8'),
        file: this.name,
      });
    const start = e.localHeaderOffset + 30 + nameLen + extraLen;
    if (start + e.compressedSize > this.layout.centralDirectoryOffset)
      throw new FormatError({
        format: FORMAT,
        reason: 'entry data overlaps the central directory',
        field: e.name,
        offset: start,
        file: this.name,
      });
    return start;
  }

  /**
   * The entry's uncompressed bytes, size- and CRC-checked (CRC optional: signature verification
   * digests the data and reports a digest mismatch, which says more). For entries up to `maxBytes`.
   */
  async read(
    e: ZipEntry,
    maxBytes = MAX_INMEMORY_ENTRY,
    opts: { verifyCrc?: boolean } = {},
  ): Promise<Buffer> {
    checkBound(
      FORMAT,
      `${e.name} uncompressed size`,
      e.uncompressedSize,
      maxBytes,
      e.cdRecordOffset,
      this.name,
    );
    const start = await this.dataOffset(e);
    const raw = await this.source.read(start, e.compressedSize);
    let out: Buffer;
    if (e.method === 0) out = raw;
    else if (e.method === 8) {
      try {
        // One byte of slack so an entry inflating to more than declared is detected, not truncated silently.
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.uncompressedSize + 1) });
      } catch (err) {
        throw new FormatError(
          {
            format: FORMAT,
            reason: `corrupt deflate data: ${(err as Error).message}`,
            field: e.name,
            offset: start,
            file: this.name,
          },
          { cause: err },
        );
      }
    } else throw unsupportedMethod(e, this.name);
    if (out.length !== e.uncompressedSize)
      throw new FormatError({
        format: FORMAT,
        reason: 'uncompressed size mismatch',
        field: e.name,
        offset: start,
        expected: e.uncompressedSize,
        found: out.length,
        file: this.name,
      });
    const crc = opts.verifyCrc === false ? e.crc32 : crc32(out) >>> 0;
    if (crc !== e.crc32)
      throw new FormatError({
        format: FORMAT,
        reason: 'CRC-32 mismatch',
        field: e.name,
        offset: start,
        expected: e.crc32,
        found: crc,
        file: this.name,
      });
    return out;
  }

  /**
   * The entry's uncompressed bytes as a stream of chunks (bounded memory for any size). Sizes are
   * checked at the end; CRC is left to the caller's digest (signature schemes digest the data anyway).
   */
  async *stream(e: ZipEntry, chunkSize = 1 << 20): AsyncGenerator<Buffer> {
    const start = await this.dataOffset(e);
    if (e.method !== 0 && e.method !== 8) throw unsupportedMethod(e, this.name);
    const src = this.source;
    async function* rawChunks(): AsyncGenerator<Buffer> {
      for (let p = 0; p < e.compressedSize; p += chunkSize)
        yield await src.read(start + p, Math.min(chunkSize, e.compressedSize - p));
    }
    let total = 0;
    if (e.method === 0) {
      for await (const c of rawChunks()) {
        total += c.length;
        yield c;
      }
    } else {
      const inflater = createInflateRaw({ finishFlush: zc.Z_SYNC_FLUSH });
      const piped = Readable.from(rawChunks()).pipe(inflater);
      try {
        for await (const c of piped as AsyncIterable<Buffer>) {
          total += c.length;
          if (total > e.uncompressedSize) break;
          yield c;
        }
      } catch (err) {
        throw new FormatError(
          {
            format: FORMAT,
            reason: `corrupt deflate data: ${(err as Error).message}`,
            field: e.name,
            offset: start,
            file: this.name,
          },
          { cause: err },
        );
      } finally {
        inflater.destroy();
      }
    }
    if (total !== e.uncompressedSize)
      throw new FormatError({
        format: FORMAT,
        reason: 'uncompressed size mismatch',
        field: e.name,
        offset: start,
        expected: e.uncompressedSize,
        found: total,
        file: this.name,
      });
  }
}

function unsupportedMethod(e: ZipEntry, file: string): FormatError {
  return new FormatError({
    format: FORMAT,
    reason: 'unsupported compression method',
    field: e.name,
    offset: e.cdRecordOffset,
    expected: '0 (stored) or 8 (deflated)',
    found: e.method,
    file,
  });
}

/** Finds the EOCD (the comment must run exactly to the end of the file, as apksig requires) and ZIP64 records. */
async function findLayout(src: ByteSource): Promise<ZipLayout> {
  if (src.size < EOCD_SIZE)
    throw new FormatError({
      format: FORMAT,
      reason: 'too small to be a zip file',
      expected: `>= ${EOCD_SIZE} bytes`,
      found: src.size,
      file: src.name,
    });
  const tailLen = Math.min(src.size, EOCD_SIZE + 0xffff);
  const tailStart = src.size - tailLen;
  const tail = await src.read(tailStart, tailLen);
  let at = -1;
  for (let i = tail.length - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0)
    throw new FormatError({
      format: FORMAT,
      reason: 'no End of Central Directory record',
      field: 'EOCD',
      file: src.name,
      expected: 'PK\\x05\\x06 within the last 64 KiB',
    });
  const eocdOffset = tailStart + at;
  const r = new BinaryReader(tail, FORMAT, tailStart, src.name).seek(at + 4);
  const disk = r.u16le('disk number');
  const cdDisk = r.u16le('central directory disk');
  r.u16le('entries on this disk');
  let entryCount = r.u16le('total entries');
  let cdSize = r.u32le('central directory size');
  let cdOffset = r.u32le('central directory offset');
  const commentLen = r.u16le('comment length');
  const comment = r.bytes(commentLen, 'comment').toString('utf8');
  if (disk !== 0 || cdDisk !== 0)
    r.fail('multi-disk archives are not supported', {
      field: 'disk number',
      at: at + 4,
      expected: 0,
      found: disk || cdDisk,
    });
  let zip64 = false;
  if (eocdOffset >= 20) {
    const loc = await src.read(eocdOffset - 20, 20);
    if (loc.readUInt32LE(0) === ZIP64_LOCATOR_SIG) {
      zip64 = true;
      const z64Off = Number(loc.readBigUInt64LE(8));
      if (!Number.isSafeInteger(z64Off) || z64Off + 56 > eocdOffset - 20)
        throw new FormatError({
          format: FORMAT,
          reason: 'ZIP64 EOCD offset out of range',
          field: 'zip64 locator',
          offset: eocdOffset - 20,
          found: z64Off,
          file: src.name,
        });
      const z = new BinaryReader(await src.read(z64Off, 56), FORMAT, z64Off, src.name);
      const sig = z.u32le('zip64 EOCD signature');
      if (sig !== ZIP64_EOCD_SIG)
        z.fail('bad ZIP64 EOCD signature', { at: 0, expected: ZIP64_EOCD_SIG, found: sig });
      z.seek(24);
      z.u64leNum('zip64 entries on disk');
      entryCount = z.u64leNum('zip64 total entries');
      cdSize = z.u64leNum('zip64 central directory size');
      cdOffset = z.u64leNum('zip64 central directory offset');
    }
  }
  const cdEndLimit = zip64 ? eocdOffset - 20 : eocdOffset;
  if (cdOffset + cdSize > cdEndLimit)
    throw new FormatError({
      format: FORMAT,
      reason: 'central directory out of range',
      field: 'central directory offset',
      offset: eocdOffset + 16,
      expected: `offset + size <= ${cdEndLimit}`,
      found: `${cdOffset} + ${cdSize}`,
      file: src.name,
    });
  checkBound(FORMAT, 'entry count', entryCount, Math.floor(cdSize / 46), eocdOffset + 10, src.name);
  return {
    size: src.size,
    centralDirectoryOffset: cdOffset,
    centralDirectorySize: cdSize,
    eocdOffset,
    eocdSize: src.size - eocdOffset,
    entryCount,
    zip64,
    comment,
  };
}

function parseCentralDirectory(cd: Buffer, layout: ZipLayout, file: string): ZipEntry[] {
  const r = new BinaryReader(cd, FORMAT, layout.centralDirectoryOffset, file);
  const out: ZipEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < layout.entryCount; i++) {
    const recordAt = r.pos;
    const sig = r.u32le('central directory signature');
    if (sig !== CD_SIG)
      r.fail('bad central directory record signature', {
        field: `entry ${i}`,
        at: recordAt,
        expected: CD_SIG,
        found: sig,
      });
    r.skip(4);
    const flags = r.u16le('flags');
    const method = r.u16le('compression method');
    r.skip(4);
    const crc = r.u32le('crc32');
    let csize = r.u32le('compressed size');
    let usize = r.u32le('uncompressed size');
    const nameLen = r.u16le('name length');
    const extraLen = r.u16le('extra length');
    const commentLen = r.u16le('comment length');
    r.skip(8);
    let lho = r.u32le('local header offset');
    const rawName = r.bytes(nameLen, 'name');
    const name = rawName.toString('utf8');
    checkEntryName(name, rawName, seen, r, recordAt);
    const extra = r.bytes(extraLen, 'extra');
    r.skip(commentLen, 'comment');
    if (csize === 0xffffffff || usize === 0xffffffff || lho === 0xffffffff) {
      // ZIP64 extended information extra field (0x0001): present values only, in this order.
      const x = new BinaryReader(
        extra,
        FORMAT,
        layout.centralDirectoryOffset + r.pos - commentLen - extraLen,
        file,
      );
      let found = false;
      while (x.remaining >= 4) {
        const id = x.u16le('extra id');
        const len = x.u16le('extra length');
        const body = new BinaryReader(x.bytes(len, 'extra data'), FORMAT, x.baseOffset + x.pos - len, file);
        if (id !== 1) continue;
        found = true;
        if (usize === 0xffffffff) usize = body.u64leNum('zip64 uncompressed size');
        if (csize === 0xffffffff) csize = body.u64leNum('zip64 compressed size');
        if (lho === 0xffffffff) lho = body.u64leNum('zip64 local header offset');
      }
      if (!found) r.fail('missing ZIP64 extra field', { field: name, at: recordAt });
    }
    if (flags & 1) r.fail('encrypted entries are not supported', { field: name, at: recordAt });
    if (lho + 30 > layout.centralDirectoryOffset || lho + csize > layout.centralDirectoryOffset)
      r.fail('local header offset out of range', {
        field: `${name} local header offset`,
        at: recordAt + 42,
        expected: `< ${layout.centralDirectoryOffset}`,
        found: lho,
      });
    out.push({
      name,
      rawName,
      method,
      flags,
      crc32: crc,
      compressedSize: csize,
      uncompressedSize: usize,
      localHeaderOffset: lho,
      cdRecordOffset: layout.centralDirectoryOffset + recordAt,
      isDirectory: name.endsWith('/'),
    });
  }
  return out;
}

/**
 * Entry names Android refuses: duplicates (libziparchive kDuplicateEntry; two readers could pick
 * different ones), embedded NUL, and names escaping the extraction root (absolute, or with a ".."
 * segment), which the platform rejects when it extracts native libraries and dex files.
 */
function checkEntryName(name: string, raw: Buffer, seen: Set<string>, r: BinaryReader, at: number): void {
  if (raw.includes(0)) r.fail('entry name contains NUL', { field: 'name', at: at + 46, found: name });
  if (name.startsWith('/') || name.split('/').includes('..'))
    r.fail('entry name escapes the archive root', {
      field: 'name',
      at: at + 46,
      expected: 'a relative path without ".." segments',
      found: name,
    });
  if (seen.has(name)) r.fail('duplicate entry name', { field: 'name', at: at + 46, found: name });
  seen.add(name);
}
