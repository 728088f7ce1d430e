import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { InputError } from '../../errors.ts';
import { compressBlob, type ReplaceType, xzBcjFilter, xzChunks } from './compress.ts';
import type { BlobFile, GeneratedOperation } from './payload-file.ts';

/**
 * Operations of a full payload for one partition image, as full_update_generator.cc makes them:
 * the image cut into chunks (2 MiB), one operation per chunk writing it in place, every block
 * written exactly once. Each chunk is REPLACE_XZ (or REPLACE_ZSTD where the device takes it), or
 * REPLACE where compressing does not make it smaller. No ZERO operations: update_engine's full
 * payloads never carry them (AOSP's checker refuses them in minor version 0).
 */

export type FullCodec = 'xz' | 'zstd';

export interface FullOptions {
  blockSize: number;
  /** Bytes per operation, a multiple of blockSize. */
  chunkSize: number;
  codec: FullCodec;
  blobs: BlobFile;
  /** Compression threads (default: the machine's cores). */
  threads?: number;
  onBytes?: (done: number, total: number) => void;
}

export interface FullPartition {
  size: number;
  sha256: Buffer;
  operations: GeneratedOperation[];
}

async function readAt(fh: FileHandle, pos: number, len: number, file: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  for (let got = 0; got < len; ) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0)
      throw new InputError(`${file} shrank while the payload was being made`, {
        code: 'SHORT_READ',
        context: { file, offset: pos + got },
      });
    got += bytesRead;
  }
  return buf;
}

export async function fullOperations(image: string, opts: FullOptions): Promise<FullPartition> {
  const { blockSize, chunkSize } = opts;
  if (chunkSize <= 0 || chunkSize % blockSize)
    throw new InputError('the chunk size must be a positive multiple of the block size', {
      code: 'PAYLOAD_CHUNK_SIZE',
      context: { chunkSize, blockSize },
    });
  const fh = await open(image, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size % blockSize)
      throw new InputError(`${image}: its size ${size} is not a multiple of the block size ${blockSize}`, {
        code: 'PAYLOAD_IMAGE_UNALIGNED',
        context: { file: image, size, blockSize },
      });
    const hash = createHash('sha256');
    const operations: GeneratedOperation[] = [];
    const emit = async (index: number, len: number, type: ReplaceType, blob: Buffer) => {
      operations.push({
        type,
        dstExtents: [{ startBlock: (index * chunkSize) / blockSize, numBlocks: len / blockSize }],
        blob: await opts.blobs.append(blob),
      });
      opts.onBytes?.(index * chunkSize + len, size);
    };
    if (opts.codec === 'xz') {
      const elf = new Set<number>();
      const chunks = xzChunks(image, 0, size, {
        chunkSize,
        threads: opts.threads,
        onInput: (piece, at) => {
          hash.update(piece);
          if (at % chunkSize === 0 && xzBcjFilter(piece).length) elf.add(at / chunkSize);
        },
      });
      for await (const c of chunks) {
        let raw: Buffer | undefined;
        let blob = c.stream;
        // xz_android.cc filters an ELF blob through BCJ: that chunk is compressed again on its own.
        if (elf.has(c.index)) {
          raw = await readAt(fh, c.index * chunkSize, c.size, image);
          blob = await compressBlob('REPLACE_XZ', raw);
        }
        if (blob.length >= c.size) {
          raw ??= await readAt(fh, c.index * chunkSize, c.size, image);
          await emit(c.index, c.size, 'REPLACE', raw);
        } else await emit(c.index, c.size, 'REPLACE_XZ', blob);
      }
    } else {
      // zstd has no block-splitting threaded mode: one process per chunk, a few at a time.
      const count = Math.ceil(size / chunkSize);
      const lanes = Math.max(1, opts.threads ?? availableParallelism());
      const pending = new Map<number, Promise<{ raw: Buffer; blob: Buffer }>>();
      const start = (i: number) => {
        if (i >= count) return;
        const p = readAt(fh, i * chunkSize, Math.min(chunkSize, size - i * chunkSize), image).then(
          async (raw) => ({ raw, blob: await compressBlob('REPLACE_ZSTD', raw) }),
        );
        p.catch(() => {});
        pending.set(i, p);
      };
      for (let i = 0; i < lanes; i++) start(i);
      for (let i = 0; i < count; i++) {
        const { raw, blob } = await pending.get(i)!;
        pending.delete(i);
        start(i + lanes);
        hash.update(raw);
        if (blob.length >= raw.length) await emit(i, raw.length, 'REPLACE', raw);
        else await emit(i, raw.length, 'REPLACE_ZSTD', blob);
      }
    }
    return { size, sha256: hash.digest(), operations };
  } finally {
    await fh.close();
  }
}
