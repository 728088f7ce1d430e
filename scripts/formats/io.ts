import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';

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
/**
 * Direct mode's staging blocks: one filling while the others are on their way to the disk. The
 * main thread also runs the image check while super.img and the zip are written; blocks queued
 * ahead keep the disk busy through its longer steps (two blocks left it idle then).
 */
const STAGING_BLOCKS = 4;
const ZERO_CHUNK = new Uint8Array(DIRECT_CHUNK);

/**
 * Memory that starts on a page boundary, as O_DIRECT needs: a WebAssembly memory's backing
 * store is mapped pages, whereas a Buffer's comes from malloc (16-byte aligned at best).
 * `shared`: a SharedArrayBuffer, which a worker thread reads in place.
 */
function pageAlignedBuffer(bytes: number, shared = false): Buffer {
  const pages = Math.ceil(bytes / 65536);
  return Buffer.from(new WasmMemory!({ initial: pages, maximum: pages, shared }).buffer, 0, bytes);
}

// Node's types declare WebAssembly's types but not its values (they live in the DOM lib). Absent
// under `node --jitless`: the writer then does ordinary writes.
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly?: {
      Memory: new (d: {
        initial: number;
        maximum: number;
        shared?: boolean;
      }) => {
        buffer: ArrayBuffer | SharedArrayBuffer;
      };
    };
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
 * SHA-256 of a direct writer's file, taken in a worker thread from the staging blocks themselves
 * (shared memory) and from the zeros the writer skips, in the order they are posted. The main
 * thread, which checks the image while super.img and the zip are written, then spends nothing
 * on hashing them.
 */
class BlockHasher {
  private readonly worker: Worker;
  private readonly waiting = new Map<
    number,
    { resolve: (hex?: string) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;
  private failure?: Error;

  constructor(blocks: Buffer[]) {
    this.worker = new Worker(new URL('./sha256-blocks.worker.mjs', import.meta.url), {
      workerData: { blocks: blocks.map((b) => b.buffer) },
    });
    this.worker.on('message', (m: { id: number; hex?: string }) => {
      this.waiting.get(m.id)?.resolve(m.hex);
      this.waiting.delete(m.id);
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`sha256 worker exited with code ${code}`)));
  }

  /** Hashes the first `length` bytes of staging block `block`; settles once they are hashed. */
  block(block: number, length: number): Promise<void> {
    return this.send({ block, length }).then(() => {});
  }

  /** Hashes `n` zero bytes. */
  zeros(n: number): void {
    this.send({ zeros: n }).catch(() => {}); // a failure also fails digest()
  }

  /** The digest of everything posted; stops the worker. */
  async digest(): Promise<string> {
    try {
      return (await this.send({ end: true }))!;
    } finally {
      this.stop();
    }
  }

  stop(): void {
    this.failure ??= new Error('sha256 worker stopped');
    this.worker.terminate().catch(() => {});
  }

  private send(m: object): Promise<string | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...m, id });
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }
}

/**
 * An output file written front to back (with small patches of bytes already written), as the
 * image writers produce them. With `direct`, whole 4 MiB blocks go to the disk with O_DIRECT
 * from page-aligned staging blocks, one filling while the others are being written: a GiB
 * output (super.img, the fastboot zip) is then not copied into the page cache, which on a VM
 * costs more CPU than anything else the build does (fresh page-cache pages fault on the host),
 * and does not evict the images the build still reads. Where the filesystem refuses O_DIRECT
 * (tmpfs, some FUSE), the writer falls back to ordinary writes, with the same bytes on disk.
 * `skip` leaves holes either way; direct, written all-zero 4 MiB blocks become holes too.
 * `sha256`: the writer also hashes what it writes, returned by `close` (direct, in a worker
 * thread); bytes it has hashed cannot be patched any more.
 */
export class SequentialWriter {
  private pos = 0;
  /** Direct mode: file offset of the current staging buffer's first byte (a multiple of 4 MiB). */
  private base = 0;
  private fill = 0;
  private staging: Buffer[] = [];
  private cur = 0;
  /** Per staging block: settles once its last contents are on disk (and hashed). */
  private busy: Promise<void>[] = [];
  /** The O_DIRECT handle, once a refused write has made the writer reopen the file. */
  private retired?: FileHandle;
  private reopening?: Promise<FileHandle>;
  /** Direct mode: patches of bytes already handed to the disk, applied after the last write. */
  private late: Array<{ at: number; bytes: Buffer }> = [];
  /** `sha256`, direct: the staging blocks' hasher; buffered: the hash of what is written. */
  private hasher?: BlockHasher;
  private hash?: Hash;

  private constructor(
    private fh: FileHandle,
    private direct: boolean,
    readonly path: string,
    sha256: boolean,
  ) {
    if (direct) {
      this.staging = Array.from({ length: STAGING_BLOCKS }, () => pageAlignedBuffer(DIRECT_CHUNK, sha256));
      this.busy = this.staging.map(() => Promise.resolve());
      if (sha256) this.hasher = new BlockHasher(this.staging);
    } else if (sha256) this.hash = createHash('sha256');
  }

  static async create(
    path: string,
    opts: { direct?: boolean; sha256?: boolean } = {},
  ): Promise<SequentialWriter> {
    const sha256 = opts.sha256 === true;
    if (opts.direct && WasmMemory) {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DIRECT;
      try {
        return new SequentialWriter(await open(path, flags, 0o666), true, path, sha256);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      }
    }
    return new SequentialWriter(await open(path, 'w'), false, path, sha256);
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
      this.hash?.update(buf);
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
    if (this.hash) for (const b of list) this.hash.update(b);
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
      if (this.hash)
        for (let k = n; k > 0; k -= ZERO_CHUNK.length)
          this.hash.update(ZERO_CHUNK.subarray(0, Math.min(k, ZERO_CHUNK.length)));
      return;
    }
    while (n > 0) {
      if (this.fill === 0 && n >= DIRECT_CHUNK) {
        const whole = n - (n % DIRECT_CHUNK);
        this.hasher?.zeros(whole);
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
    const split = this.direct ? Math.max(0, Math.min(bytes.length, this.base - at)) : bytes.length;
    if ((this.hash || this.hasher) && split > 0)
      throw new RangeError(
        `patch at ${at}: those bytes are already hashed (a hashing writer patches only its last 4 MiB, direct)`,
      );
    if (!this.direct) {
      await writeAll(this.fh, bytes, at);
      return;
    }
    if (split > 0) this.late.push({ at, bytes: Buffer.from(bytes.subarray(0, split)) });
    if (split < bytes.length) this.staging[this.cur].set(bytes.subarray(split), at + split - this.base);
  }

  /** Writes what is left, sets the file's size, closes it; returns the file's sha256 when asked. */
  async close(): Promise<string | undefined> {
    let sha256: Promise<string> | undefined;
    let written = false;
    try {
      if (this.hasher) {
        if (this.fill > 0) this.hasher.block(this.cur, this.fill).catch(() => {}); // fails digest() too
        sha256 = this.hasher.digest();
        sha256.catch(() => {}); // awaited below, unless the writing fails first
      }
      if (this.direct) {
        if (this.fill > 0 && !isAllZero(this.staging[this.cur].subarray(0, this.fill))) {
          const padded = Math.ceil(this.fill / DIRECT_ALIGN) * DIRECT_ALIGN;
          this.staging[this.cur].fill(0, this.fill, padded);
          await this.writeBlock(this.staging[this.cur].subarray(0, padded), this.base);
        }
        await Promise.all(this.busy);
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
      written = true;
    } finally {
      if (!written) {
        this.hasher?.stop(); // else digest() stops it once it has answered
        await Promise.allSettled(this.busy);
      }
      await this.retired?.close().catch(() => {});
      await this.fh.close();
    }
    return sha256 ? await sha256 : this.hash?.digest('hex');
  }

  /** Closes the file without finishing it (on error); the caller removes it. Idempotent. */
  async abort(): Promise<void> {
    this.hasher?.stop();
    await Promise.allSettled(this.busy);
    await this.retired?.close().catch(() => {});
    await this.fh.close().catch(() => {});
  }

  private async flushChunk(): Promise<void> {
    const chunk = this.staging[this.cur];
    // The block is reused once it is both on disk and hashed.
    const jobs: Promise<void>[] = [];
    if (!isAllZero(chunk)) jobs.push(this.writeBlock(chunk, this.base));
    if (this.hasher) jobs.push(this.hasher.block(this.cur, DIRECT_CHUNK));
    const done = jobs.length > 1 ? Promise.all(jobs).then(() => {}) : (jobs[0] ?? Promise.resolve());
    done.catch(() => {}); // awaited when the block comes round again, or by close/abort
    this.busy[this.cur] = done;
    this.cur = (this.cur + 1) % this.staging.length;
    this.base += DIRECT_CHUNK;
    this.fill = 0;
    await this.busy[this.cur];
  }

  /**
   * One aligned block, direct. A filesystem may accept O_DIRECT at open and refuse the write
   * (EINVAL): the file is then reopened for ordinary writes, and the rest goes that way.
   */
  private async writeBlock(block: Buffer, at: number): Promise<void> {
    const fh = this.fh;
    try {
      await writeAll(fh, block, at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      // Several blocks may be refused at once: one reopening serves them all. The O_DIRECT
      // handle stays open until the end, as other writes may still be using it.
      this.reopening ??= open(this.path, 'r+').then((plain) => {
        this.retired = fh;
        this.fh = plain;
        return plain;
      });
      await writeAll(await this.reopening, block, at);
    }
  }
}
