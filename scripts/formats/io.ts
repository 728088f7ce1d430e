import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/**
 * Writes all of `buf` at `position`: a positional write may write fewer bytes than asked (large
 * buffers, signals), and every image writer must go on until the whole buffer is down.
 */
export async function writeAll(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length)
    done += (await fh.write(buf, done, buf.length - done, position + done)).bytesWritten;
}

/** Direct I/O moves whole aligned blocks: 4 KiB covers every logical block size Linux allows. */
const DIRECT_ALIGN = 4096;
const DIRECT_CHUNK = 4 << 20;
const ZERO_CHUNK = new Uint8Array(DIRECT_CHUNK);

/**
 * Memory that starts on a page boundary, as O_DIRECT needs: a WebAssembly memory's backing
 * store is mapped pages, whereas a Buffer's comes from malloc (16-byte aligned at best).
 */
function pageAlignedBuffer(bytes: number): Buffer {
  const pages = Math.ceil(bytes / 65536);
  return Buffer.from(new WasmMemory!({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

// Node's types declare WebAssembly's types but not its values (they live in the DOM lib). Absent
// under `node --jitless`: the writer then does ordinary writes.
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly?: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
  }
).WebAssembly?.Memory;

/**
 * Whether every byte of `b` is zero: the image writers leave such chunks as holes (free space of
 * a filesystem image costs no page cache and no disk writes, and reads back the same).
 */
export function isAllZero(b: Uint8Array): boolean {
  for (let o = 0; o < b.length; o += ZERO_CHUNK.length) {
    const part = b.subarray(o, o + ZERO_CHUNK.length);
    if (Buffer.compare(part, ZERO_CHUNK.subarray(0, part.length)) !== 0) return false;
  }
  return true;
}

/**
 * An output file written front to back (with small patches of bytes already written), as the
 * image writers produce them. With `direct`, whole 4 MiB blocks go to the disk with O_DIRECT
 * from two page-aligned staging buffers, the next one filling while the last is written: a GiB
 * output (super.img, the fastboot zip) is then not copied into the page cache, which on a VM
 * costs more CPU than anything else the build does (fresh page-cache pages fault on the host),
 * and does not evict the images the build still reads. Where the filesystem refuses O_DIRECT
 * (tmpfs, some FUSE), the writer falls back to ordinary writes, with the same bytes on disk.
 * `skip` leaves holes either way; direct, written all-zero 4 MiB blocks become holes too.
 */
export class SequentialWriter {
  private pos = 0;
  /** Direct mode: file offset of the current staging buffer's first byte (a multiple of 4 MiB). */
  private base = 0;
  private fill = 0;
  private staging: Buffer[] = [];
  private cur = 0;
  private inFlight: Promise<void> = Promise.resolve();
  /** Direct mode: patches of bytes already handed to the disk, applied after the last write. */
  private late: Array<{ at: number; bytes: Buffer }> = [];

  private constructor(
    private fh: FileHandle,
    private direct: boolean,
    readonly path: string,
  ) {
    if (direct) this.staging = [pageAlignedBuffer(DIRECT_CHUNK), pageAlignedBuffer(DIRECT_CHUNK)];
  }

  static async create(path: string, opts: { direct?: boolean } = {}): Promise<SequentialWriter> {
    if (opts.direct && WasmMemory) {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DIRECT;
      try {
        return new SequentialWriter(await open(path, flags, 0o666), true, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      }
    }
    return new SequentialWriter(await open(path, 'w'), false, path);
  }

  /** Bytes written so far (the file's size once closed). */
  get position(): number {
    return this.pos;
  }

  /** Whether blocks bypass the page cache (false where the filesystem refused O_DIRECT). */
  get isDirect(): boolean {
    return this.direct;
  }

  /** Appends `buf`; the caller may reuse it as soon as the promise settles. */
  async write(buf: Uint8Array): Promise<void> {
    if (!this.direct) {
      await writeAll(this.fh, buf, this.pos);
      this.pos += buf.length;
      return;
    }
    for (let o = 0; o < buf.length; ) {
      const n = Math.min(buf.length - o, DIRECT_CHUNK - this.fill);
      this.staging[this.cur].set(buf.subarray(o, o + n), this.fill);
      this.fill += n;
      this.pos += n;
      o += n;
      if (this.fill === DIRECT_CHUNK) await this.flushChunk();
    }
  }

  /** Appends every buffer of `list`, in order. */
  async writev(list: Uint8Array[]): Promise<void> {
    if (this.direct) {
      for (const b of list) await this.write(b);
      return;
    }
    const bytes = list.reduce((a, b) => a + b.length, 0);
    // writev may write partially; finish with plain writes.
    const r = await this.fh.writev(list, this.pos);
    if (r.bytesWritten < bytes)
      await writeAll(this.fh, Buffer.concat(list).subarray(r.bytesWritten), this.pos + r.bytesWritten);
    this.pos += bytes;
  }

  /** Appends `n` zero bytes, as a hole where they cover whole blocks. */
  async skip(n: number): Promise<void> {
    if (!this.direct) {
      this.pos += n;
      return;
    }
    while (n > 0) {
      if (this.fill === 0 && n >= DIRECT_CHUNK) {
        const whole = n - (n % DIRECT_CHUNK);
        this.base += whole;
        this.pos += whole;
        n -= whole;
        continue;
      }
      const k = Math.min(n, DIRECT_CHUNK - this.fill);
      this.staging[this.cur].fill(0, this.fill, this.fill + k);
      this.fill += k;
      this.pos += k;
      n -= k;
      if (this.fill === DIRECT_CHUNK) await this.flushChunk();
    }
  }

  /** Overwrites bytes already appended (a header whose fields are known only later). */
  async patch(bytes: Uint8Array, at: number): Promise<void> {
    if (at < 0 || at + bytes.length > this.pos)
      throw new RangeError(
        `patch of ${bytes.length} bytes at ${at} is outside the ${this.pos} bytes written`,
      );
    if (!this.direct) {
      await writeAll(this.fh, bytes, at);
      return;
    }
    const split = Math.max(0, Math.min(bytes.length, this.base - at));
    if (split > 0) this.late.push({ at, bytes: Buffer.from(bytes.subarray(0, split)) });
    if (split < bytes.length) this.staging[this.cur].set(bytes.subarray(split), at + split - this.base);
  }

  /** Writes what is left, sets the file's size, closes it. */
  async close(): Promise<void> {
    try {
      if (this.direct) {
        if (this.fill > 0 && !isAllZero(this.staging[this.cur].subarray(0, this.fill))) {
          const padded = Math.ceil(this.fill / DIRECT_ALIGN) * DIRECT_ALIGN;
          this.staging[this.cur].fill(0, this.fill, padded);
          await this.inFlight;
          await this.writeBlock(this.staging[this.cur].subarray(0, padded), this.base);
        }
        await this.inFlight;
      }
      await this.fh.truncate(this.pos);
      if (this.late.length) {
        const patchFh = await open(this.path, 'r+');
        try {
          for (const p of this.late) await writeAll(patchFh, p.bytes, p.at);
        } finally {
          await patchFh.close();
        }
      }
    } finally {
      await this.fh.close();
    }
  }

  /** Closes the file without finishing it (on error); the caller removes it. Idempotent. */
  async abort(): Promise<void> {
    await this.inFlight.catch(() => {});
    await this.fh.close().catch(() => {});
  }

  private async flushChunk(): Promise<void> {
    await this.inFlight;
    const chunk = this.staging[this.cur];
    if (!isAllZero(chunk)) {
      const p = this.writeBlock(chunk, this.base);
      p.catch(() => {}); // awaited by the next flush or by close/abort
      this.inFlight = p;
    }
    this.cur = 1 - this.cur;
    this.base += DIRECT_CHUNK;
    this.fill = 0;
  }

  /**
   * One aligned block, direct. A filesystem may accept O_DIRECT at open and refuse the write
   * (EINVAL): the file is then reopened for ordinary writes, and the rest goes that way.
   */
  private async writeBlock(block: Buffer, at: number): Promise<void> {
    try {
      await writeAll(this.fh, block, at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      const fh = await open(this.path, 'r+');
      await this.fh.close();
      this.fh = fh;
      await writeAll(this.fh, block, at);
    }
  }
}
