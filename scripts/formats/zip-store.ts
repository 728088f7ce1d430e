/**
 * Writer of zip archives whose entries are all stored (method 0, no compression), as PKWARE's
 * APPNOTE 6.3 defines them, with zip64 records when a size or offset needs them. Made for
 * archives of large images: data is copied once with a native CRC-32 (zlib.crc32), the CRC is
 * patched into each local header afterwards (no data descriptors), and nothing is held in memory
 * beyond two 4 MiB buffers. All-zero chunks of entry data are skipped rather than written, so
 * they become holes of a sparse file (free space in a filesystem image costs no disk writes;
 * the bytes read back are the same). Entry order, timestamps and modes are the caller's, so the
 * same inputs give the same bytes. With `sha256`, the archive's digest is taken as it is written
 * (no second read of a GiB archive): every local header must then be final when written, so
 * entries whose CRC the caller does not give are checksummed in a pass of their own first.
 */
import { open, rm } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { InputError } from '../errors.ts';
import { crc32OfFile } from './crc32.ts';
import { isAllZero, SequentialWriter } from './io.ts';

export interface StoredEntry {
  /** Name inside the archive ("/"-separated, no leading "/"). */
  name: string;
  /** File to store; or `data`. */
  path?: string;
  data?: Buffer;
  /**
   * CRC-32 of the content when the caller already has it (e.g. from a pass that read the file
   * anyway). It is checked while the data is copied (a mismatch fails the write), unless the
   * archive's `verifyGivenCrc32` is false.
   */
  crc32?: number;
}

export interface StoredZipOptions {
  /** Entry timestamp (DOS date/time, local time as zip tools read it). */
  mtime: Date;
  /** Unix mode recorded in the external attributes, e.g. 0o100644. */
  mode: number;
  /** Write zip64 records even when every size fits in 32 bits (tests; some tools want it). */
  forceZip64?: boolean;
  /** Return the archive's SHA-256 (hex), computed over the bytes as they are written. */
  sha256?: boolean;
  /**
   * Check given CRC-32s against the data copied (default true). False saves a CRC pass over
   * every byte, for a caller that took the CRC over the same final file itself.
   */
  verifyGivenCrc32?: boolean;
  /**
   * Write with O_DIRECT, bypassing the page cache (for a large archive nothing reads back soon);
   * ordinary writes where the filesystem refuses it.
   */
  direct?: boolean;
}

const LOCAL_SIG = 0x04034b50;
const CENTRAL_SIG = 0x02014b50;
const EOCD_SIG = 0x06054b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EXTRA_ID = 0x0001;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
/** "version needed to extract": 2.0 for plain stored entries, 4.5 when zip64 is used (APPNOTE 4.4.3). */
const VERSION_20 = 20;
const VERSION_45 = 45;
/** "version made by": host 3 (Unix, so external attributes carry the mode), spec 4.5. */
const MADE_BY_UNIX = (3 << 8) | VERSION_45;
/** General purpose flag bit 11: names are UTF-8. */
const FLAG_UTF8 = 0x0800;
const IO_SIZE = 4 << 20;

function dosDateTime(d: Date): { date: number; time: number } {
  const year = Math.min(Math.max(d.getFullYear(), 1980), 2107);
  return {
    date: ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
  };
}

interface Written {
  name: Buffer;
  size: number;
  crc: number;
  offset: number;
  zip64: boolean;
}

/** Writes `entries` stored, in order, to `outPath`. Returns the archive size (and digest). */
export async function writeStoredZip(
  outPath: string,
  entries: StoredEntry[],
  opts: StoredZipOptions,
): Promise<{ size: number; sha256?: string }> {
  const { date, time } = dosDateTime(opts.mtime);
  // The writer hashes what it writes (off the main thread when direct): no patches then.
  const out = await SequentialWriter.create(outPath, { direct: opts.direct, sha256: opts.sha256 });
  const done: Written[] = [];
  try {
    const bufs = [Buffer.allocUnsafeSlow(IO_SIZE), Buffer.allocUnsafeSlow(IO_SIZE)];
    for (const e of entries) {
      const name = Buffer.from(e.name, 'utf8');
      if (name.length > MAX16 || !e.name || e.name.startsWith('/'))
        throw new InputError(`invalid zip entry name ${JSON.stringify(e.name)}`, {
          code: 'ZIP_ENTRY_NAME',
          context: { name: e.name },
        });
      const src = e.path ? await open(e.path, 'r') : undefined;
      try {
        const size = src ? (await src.stat()).size : (e.data?.length ?? 0);
        const zip64 = opts.forceZip64 === true || size >= MAX32;
        const offset = out.position;
        // In-memory data is checksummed once, here; a file's CRC while it is copied.
        const dataCrc = e.data && !src ? crc32(e.data) >>> 0 : undefined;
        let known = e.crc32 ?? dataCrc;
        if (known === undefined && opts.sha256 && e.path)
          known = await crc32OfFile(e.path, { buffer: bufs[0] });
        // Local header: sizes are known up front; an unknown CRC is patched in once the data is copied.
        const extra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
        if (zip64) {
          extra.writeUInt16LE(ZIP64_EXTRA_ID, 0);
          extra.writeUInt16LE(16, 2);
          extra.writeBigUInt64LE(BigInt(size), 4); // original size
          extra.writeBigUInt64LE(BigInt(size), 12); // compressed size (stored: the same)
        }
        const h = Buffer.alloc(LOCAL_HEADER_SIZE);
        h.writeUInt32LE(LOCAL_SIG, 0);
        h.writeUInt16LE(zip64 ? VERSION_45 : VERSION_20, 4);
        h.writeUInt16LE(FLAG_UTF8, 6);
        h.writeUInt16LE(0, 8); // method: stored
        h.writeUInt16LE(time, 10);
        h.writeUInt16LE(date, 12);
        h.writeUInt32LE(known ?? 0, 14); // crc-32 (patched below when not known yet)
        h.writeUInt32LE(zip64 ? MAX32 : size, 18);
        h.writeUInt32LE(zip64 ? MAX32 : size, 22);
        h.writeUInt16LE(name.length, 26);
        h.writeUInt16LE(extra.length, 28);
        await out.write(Buffer.concat([h, name, extra]));
        let crc = 0;
        const checksum = known === undefined || opts.verifyGivenCrc32 !== false;
        if (src) {
          // Double-buffered: the next read is in flight while this chunk is checksummed and written.
          let copied = 0;
          let which = 0;
          const readAt = (at: number) =>
            at < size
              ? src.read(bufs[which], 0, Math.min(IO_SIZE, size - at), at).then((r) => r.bytesRead)
              : Promise.resolve(0);
          let pending = readAt(0);
          while (copied < size) {
            const n = await pending;
            if (n === 0)
              throw new InputError(`${e.path} shrank while it was being archived`, {
                code: 'SHORT_READ',
                context: { file: e.path, expected: size, found: copied },
              });
            const chunk = bufs[which].subarray(0, n);
            which = 1 - which;
            pending = readAt(copied + n);
            if (checksum) crc = crc32(chunk, crc);
            if (n === IO_SIZE && isAllZero(chunk)) await out.skip(n);
            else await out.write(chunk);
            copied += n;
          }
        } else if (e.data) {
          crc = dataCrc ?? 0;
          await out.write(e.data);
        }
        crc = checksum ? crc >>> 0 : (known as number);
        if (known === undefined) {
          const c = Buffer.alloc(4);
          c.writeUInt32LE(crc, 0);
          await out.patch(c, offset + 14);
        } else if (known !== crc)
          throw new InputError(
            `${e.path ?? e.name}: CRC-32 of the data archived (${crc.toString(16)}) is not the one given (${known.toString(16)}): the file changed, or the given CRC is wrong`,
            {
              code: 'ZIP_CRC_MISMATCH',
              context: { entry: e.name, file: e.path, expected: known, found: crc },
            },
          );
        done.push({ name, size, crc, offset, zip64 });
      } finally {
        await src?.close();
      }
    }

    // Central directory.
    const cdOffset = out.position;
    const central: Buffer[] = [];
    for (const d of done) {
      const needOffset64 = opts.forceZip64 === true || d.offset >= MAX32;
      const fields: bigint[] = [];
      if (d.zip64) fields.push(BigInt(d.size), BigInt(d.size));
      if (needOffset64) fields.push(BigInt(d.offset));
      const extra = Buffer.alloc(fields.length ? 4 + 8 * fields.length : 0);
      if (fields.length) {
        extra.writeUInt16LE(ZIP64_EXTRA_ID, 0);
        extra.writeUInt16LE(8 * fields.length, 2);
        fields.forEach((f, i) => {
          extra.writeBigUInt64LE(f, 4 + 8 * i);
        });
      }
      const h = Buffer.alloc(CENTRAL_HEADER_SIZE);
      h.writeUInt32LE(CENTRAL_SIG, 0);
      h.writeUInt16LE(MADE_BY_UNIX, 4);
      h.writeUInt16LE(fields.length ? VERSION_45 : VERSION_20, 6);
      h.writeUInt16LE(FLAG_UTF8, 8);
      h.writeUInt16LE(0, 10);
      h.writeUInt16LE(time, 12);
      h.writeUInt16LE(date, 14);
      h.writeUInt32LE(d.crc, 16);
      h.writeUInt32LE(d.zip64 ? MAX32 : d.size, 20);
      h.writeUInt32LE(d.zip64 ? MAX32 : d.size, 24);
      h.writeUInt16LE(d.name.length, 28);
      h.writeUInt16LE(extra.length, 30);
      h.writeUInt16LE(0, 32); // comment length
      h.writeUInt16LE(0, 34); // disk number start
      h.writeUInt16LE(0, 36); // internal attributes
      h.writeUInt32LE(((opts.mode & 0xffff) << 16) >>> 0, 38);
      h.writeUInt32LE(needOffset64 ? MAX32 : d.offset, 42);
      central.push(h, d.name, extra);
    }
    const cd = Buffer.concat(central);
    await out.write(cd);
    const count = done.length;
    const zip64End =
      opts.forceZip64 === true ||
      count >= MAX16 ||
      cdOffset >= MAX32 ||
      cd.length >= MAX32 ||
      done.some((d) => d.zip64);
    if (zip64End) {
      const recordOffset = out.position;
      const r = Buffer.alloc(56);
      r.writeUInt32LE(ZIP64_EOCD_SIG, 0);
      r.writeBigUInt64LE(44n, 4); // size of the rest of this record
      r.writeUInt16LE(MADE_BY_UNIX, 12);
      r.writeUInt16LE(VERSION_45, 14);
      r.writeUInt32LE(0, 16); // this disk
      r.writeUInt32LE(0, 20); // disk with the central directory
      r.writeBigUInt64LE(BigInt(count), 24);
      r.writeBigUInt64LE(BigInt(count), 32);
      r.writeBigUInt64LE(BigInt(cd.length), 40);
      r.writeBigUInt64LE(BigInt(cdOffset), 48);
      const l = Buffer.alloc(20);
      l.writeUInt32LE(ZIP64_LOCATOR_SIG, 0);
      l.writeUInt32LE(0, 4);
      l.writeBigUInt64LE(BigInt(recordOffset), 8);
      l.writeUInt32LE(1, 16); // total disks
      await out.write(Buffer.concat([r, l]));
    }
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(EOCD_SIG, 0);
    eocd.writeUInt16LE(Math.min(count, MAX16), 8);
    eocd.writeUInt16LE(Math.min(count, MAX16), 10);
    eocd.writeUInt32LE(Math.min(cd.length, MAX32), 12);
    eocd.writeUInt32LE(Math.min(cdOffset, MAX32), 16);
    await out.write(eocd);
    const sha256 = await out.close();
    return { size: out.position, sha256 };
  } catch (e) {
    await out.abort();
    await rm(outPath, { force: true });
    throw e;
  }
}
