/**
 * A sideloaded package as the device reads it: minadbd's fuse_sideload (bootable/recovery/fuse_sideload)
 * exposes /sideload/package.zip and, for every read, asks the host for the blocks it spans over the
 * `sideload-host` stream (block number as 8 ASCII digits; the host answers with that block). Nothing
 * is stored: recovery reads the package twice (to verify its signature, then to install it), and
 * each block's SHA-256 is kept on its first read so that a host handing out different bytes the
 * second time (after the signature was checked) is caught, as fuse_sideload does.
 */
import { createHash } from 'node:crypto';
import { EnvironmentError, FormatError, VerificationError } from '../errors.ts';
import type { ByteSource } from '../formats/apk/zip.ts';

/** Fetches one block from the host; null when the connection closed first. */
export type BlockFetcher = (block: number, length: number) => Promise<Buffer | null>;

/** Blocks kept after a read: a zip's central directory and the payload's head are read again. */
const CACHED_BLOCKS = 16;

export class HostBlocks implements ByteSource {
  readonly name = '/sideload/package.zip';
  /** Bytes received from the host (adb's "Total xfer" counts the same). */
  fetched = 0;
  private readonly hashes = new Map<number, Buffer>();
  private readonly cache = new Map<number, Buffer>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly fetch: BlockFetcher,
    readonly size: number,
    readonly blockSize: number,
  ) {}

  read(pos: number, len: number): Promise<Buffer> {
    if (
      !Number.isSafeInteger(pos) ||
      !Number.isSafeInteger(len) ||
      pos < 0 ||
      len < 0 ||
      pos + len > this.size
    )
      return Promise.reject(
        new FormatError({
          format: 'zip',
          reason: 'read past end of file',
          offset: pos,
          expected: `range within ${this.size} bytes`,
          found: `${len} bytes at ${pos}`,
          file: this.name,
        }),
      );
    // One request at a time on the stream, in the order they were made.
    const run = this.queue.then(() => this.readBlocks(pos, len));
    this.queue = run.catch(() => {});
    return run;
  }

  private async readBlocks(pos: number, len: number): Promise<Buffer> {
    if (len === 0) return Buffer.alloc(0);
    const first = Math.floor(pos / this.blockSize);
    const last = Math.floor((pos + len - 1) / this.blockSize);
    const parts: Buffer[] = [];
    for (let b = first; b <= last; b++) parts.push(await this.block(b));
    const all = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    const from = pos - first * this.blockSize;
    return all.subarray(from, from + len);
  }

  private async block(b: number): Promise<Buffer> {
    const hit = this.cache.get(b);
    if (hit) {
      this.cache.delete(b);
      this.cache.set(b, hit);
      return hit;
    }
    const length = Math.min(this.blockSize, this.size - b * this.blockSize);
    const data = await this.fetch(b, length);
    if (!data || data.length !== length)
      throw new EnvironmentError(`the host stopped serving the package (block ${b} not received)`, {
        code: 'SIDELOAD_TRANSFER',
        context: { block: b, offset: b * this.blockSize, size: this.size },
      });
    this.fetched += data.length;
    const digest = createHash('sha256').update(data).digest();
    const known = this.hashes.get(b);
    if (!known) this.hashes.set(b, digest);
    else if (!known.equals(digest))
      throw new VerificationError('sideload', `block ${b} of the package changed since it was first read`, {
        code: 'SIDELOAD_BLOCK_CHANGED',
        context: { block: b, offset: b * this.blockSize },
      });
    this.cache.set(b, data);
    if (this.cache.size > CACHED_BLOCKS) this.cache.delete(this.cache.keys().next().value as number);
    return data;
  }

  async close(): Promise<void> {
    this.cache.clear();
  }
}
