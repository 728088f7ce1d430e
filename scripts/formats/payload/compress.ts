import { type FileHandle, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import { brotliCompressSync, constants as zlibConstants } from 'node:zlib';
import { execa } from 'execa';
import { FormatError, InputError } from '../../errors.ts';
import { requireTool } from '../../host/tools.ts';
import { singleBlockStream } from './xz.ts';

/**
 * Operation data the way delta_generator encodes it (payload_generator/xz_android.cc, bzip.cc,
 * delta_diff_utils.cc GenerateBestFullOperation):
 *  - REPLACE_XZ: one .xz stream per operation, LZMA2 preset 6 with the dictionary reduced to the
 *    data's size, no integrity check (update_engine's xz-embedded decoder checks at most CRC32, and
 *    every blob's SHA-256 is in the manifest anyway), and a BCJ filter in front for an ELF blob;
 *  - REPLACE_ZSTD / REPLACE_BZ: one zstd frame / bzip2 stream per operation;
 *  - REPLACE: the data itself, where compressing does not make it smaller.
 * Compression runs in the host's xz / zstd / bzip2 (xz-utils, zstd, bzip2), never in JavaScript.
 */

export type ReplaceType = 'REPLACE' | 'REPLACE_BZ' | 'REPLACE_XZ' | 'REPLACE_ZSTD';

/**
 * BCJ filter xz_android.cc GetFilterID puts in front of LZMA2 for a little-endian ELF blob: x86
 * for EM_386/EM_X86_64, ARM-Thumb for EM_ARM, none otherwise (AArch64 gains nothing from either).
 */
export function xzBcjFilter(data: Uint8Array): string[] {
  if (data.length < 52 || Buffer.from(data.buffer, data.byteOffset, 4).readUInt32BE(0) !== 0x7f454c46)
    return [];
  if (data[5] !== 1) return [];
  const machine = data[18] | (data[19] << 8);
  if (machine === 3 || machine === 62) return ['--x86'];
  if (machine === 40) return ['--armthumb'];
  return [];
}

/**
 * The dictionary LZMA2's encoder settles on for `size` bytes of input at preset 6 (8 MiB):
 * Lzma2EncProps_Normalize with reduceSize, i.e. the smallest 2^n or 3·2^n that holds the data.
 */
export function xzDictFor(size: number): number {
  const preset = 8 << 20;
  for (let i = 11; i <= 30; i++) {
    if (size <= 2 << i) return Math.min(preset, 2 << i);
    if (size <= 3 << i) return Math.min(preset, 3 << i);
  }
  return preset;
}

async function runCompressor(tool: string, args: string[], data: Uint8Array): Promise<Buffer> {
  const r = await execa(requireTool(tool), args, {
    input: Buffer.from(data.buffer, data.byteOffset, data.length),
    encoding: 'buffer',
    stripFinalNewline: false,
    maxBuffer: 2 ** 31 - 1,
  });
  return Buffer.from(r.stdout as Uint8Array);
}

/** One operation's data, compressed as `type` says (a copy of the data for REPLACE). */
export async function compressBlob(type: ReplaceType, data: Uint8Array): Promise<Buffer> {
  switch (type) {
    case 'REPLACE':
      return Buffer.from(data);
    case 'REPLACE_BZ':
      return runCompressor('bzip2', ['-z', '-c', '-9'], data);
    case 'REPLACE_XZ':
      return runCompressor(
        'xz',
        [
          '-z',
          '-c',
          '-T1',
          '--check=none',
          ...xzBcjFilter(data),
          `--lzma2=preset=6,dict=${xzDictFor(data.length)}`,
        ],
        data,
      );
    case 'REPLACE_ZSTD':
      return runCompressor('zstd', ['-z', '-c', '-q', '-3', '--no-check'], data);
  }
}

/**
 * The best full operation for `data` among the given codecs: the smallest encoding, or REPLACE
 * when none is smaller than the data (GenerateBestFullOperation).
 */
export async function bestFullOperation(
  data: Uint8Array,
  codecs: readonly ReplaceType[],
): Promise<{ type: ReplaceType; blob: Buffer }> {
  let best: { type: ReplaceType; blob: Buffer } | undefined;
  for (const type of codecs) {
    if (type === 'REPLACE') continue;
    const blob = await compressBlob(type, data);
    if (!best || blob.length < best.blob.length) best = { type, blob };
  }
  if (!best || best.blob.length >= data.length) return { type: 'REPLACE', blob: Buffer.from(data) };
  return best;
}

/** Brotli at the quality delta_generator gives BSDF2 streams (kBrotliCompressionQuality = 11). */
export function brotli(data: Uint8Array): Buffer {
  return brotliCompressSync(data, {
    params: {
      [zlibConstants.BROTLI_PARAM_QUALITY]: 11,
      [zlibConstants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Whole partitions through one xz process

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/**
 * Reads exact byte counts from a stream (a child's stdout) as they arrive, pausing the stream
 * while more than HIGH_WATER bytes wait to be read (the reader, not xz, sets the pace).
 */
class StreamReader {
  private static readonly HIGH_WATER = 8 << 20;
  private chunks: Buffer[] = [];
  private have = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly stream: Readable) {
    stream.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      if (this.have > StreamReader.HIGH_WATER) stream.pause();
      this.wake?.();
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    stream.on('error', (e) => {
      this.error = e;
      this.wake?.();
    });
  }

  /** `n` bytes, or fewer when the stream ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.have < n && !this.ended && !this.error) {
      this.stream.resume();
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
    if (this.error) throw this.error;
    const parts: Buffer[] = [];
    let need = Math.min(n, this.have);
    this.have -= need;
    while (need > 0) {
      const c = this.chunks[0];
      if (c.length <= need) {
        parts.push(c);
        this.chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    if (this.have <= StreamReader.HIGH_WATER) this.stream.resume();
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }
}

function readVarint(b: Buffer, at: number, what: string): { value: number; next: number } {
  let v = 0;
  for (let i = 0; i < 9 && at + i < b.length; i++) {
    v += (b[at + i] & 0x7f) * 2 ** (7 * i);
    if (!(b[at + i] & 0x80)) return { value: v, next: at + i + 1 };
  }
  throw new FormatError({ format: 'xz', reason: `bad variable-length integer in ${what}`, offset: at });
}

export interface XzChunk {
  /** Index of the chunk: its data is bytes [index·chunkSize, …) of the input. */
  index: number;
  /** Length of the uncompressed chunk. */
  size: number;
  /** The chunk as a complete, single-block .xz stream. */
  stream: Buffer;
}

/**
 * Compresses `length` bytes of `file` from `offset` in chunks of `chunkSize`, each chunk an .xz
 * stream of its own, with one multithreaded xz process: xz cuts its input into blocks of exactly
 * `--block-size` and its threaded encoder compresses them in parallel and writes each block with
 * its sizes in the header, so every block can be cut out of its output and given a stream of its
 * own. The blocks are independent (each starts with a dictionary reset), so the result is what
 * compressing each chunk alone gives, at xz's own multithreaded speed and memory. Chunks come out
 * in order; the caller consumes them while xz compresses the next ones.
 */
export async function* xzChunks(
  file: string,
  offset: number,
  length: number,
  opts: {
    chunkSize: number;
    threads?: number;
    /** Sees every piece of input as it goes to xz; a chunk always starts a piece. */
    onInput?: (piece: Buffer, at: number) => void;
  },
): AsyncGenerator<XzChunk> {
  const { chunkSize } = opts;
  const threads = Math.max(2, opts.threads ?? availableParallelism());
  if (length === 0) return;
  // Two or more threads: only the threaded encoder records block sizes in the block headers.
  const child = execa(
    requireTool('xz'),
    [
      '-z',
      '-c',
      `-T${threads}`,
      '--check=none',
      `--block-size=${chunkSize}`,
      `--lzma2=preset=6,dict=${xzDictFor(chunkSize)}`,
    ],
    { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', encoding: 'buffer', buffer: { stdout: false } },
  );
  const piece = chunkSize <= 1 << 20 || chunkSize % (1 << 20) ? chunkSize : 1 << 20;
  const feeding = feed(file, offset, length, piece, child.stdin!, opts.onInput);
  feeding.catch(() => {});
  const out = new StreamReader(child.stdout!);
  const fail = (reason: string, d: { offset?: number; found?: unknown; expected?: unknown } = {}) =>
    new FormatError({ format: 'xz', reason: `xz output for ${file}: ${reason}`, file, ...d });
  let done = false;
  try {
    const head = await out.read(12);
    if (head.length < 12 || !head.subarray(0, 6).equals(XZ_MAGIC) || head[6] !== 0 || head[7] !== 0)
      throw fail('not a check-less .xz stream', { found: head.subarray(0, 8).toString('hex') });
    for (let index = 0; ; index++) {
      const first = await out.read(1);
      if (first.length === 0) throw fail('ends inside the stream');
      if (first[0] === 0) break; // index indicator: all blocks seen
      const headerSize = (first[0] + 1) * 4;
      const header = Buffer.concat([first, await out.read(headerSize - 1)]);
      const flags = header[1];
      if ((flags & 0xc0) !== 0xc0)
        throw fail('a block header without its sizes (xz ran single-threaded?)', { found: flags });
      const c = readVarint(header, 2, 'block header');
      const u = readVarint(header, c.next, 'block header');
      const expected = Math.min(chunkSize, length - index * chunkSize);
      if (u.value !== expected)
        throw fail(`block ${index} holds ${u.value} bytes, not ${expected}`, {
          expected,
          found: u.value,
        });
      const padded = c.value + ((4 - (c.value % 4)) % 4);
      const data = await out.read(padded);
      if (data.length < padded) throw fail(`block ${index} is cut short`);
      yield {
        index,
        size: u.value,
        stream: singleBlockStream(Buffer.concat([header, data]), headerSize + c.value, u.value),
      };
    }
    // The rest (index and footer) needs no reading; drain it so xz can exit.
    while ((await out.read(1 << 16)).length > 0);
    await feeding;
    await child;
    done = true;
  } finally {
    if (!done) {
      child.kill();
      await Promise.allSettled([child, feeding]);
    }
  }
}

/** Writes the input ranges to xz's stdin, waiting for the pipe to drain (bounded memory). */
async function feed(
  file: string,
  offset: number,
  length: number,
  piece: number,
  stdin: NodeJS.WritableStream,
  onInput?: (piece: Buffer, at: number) => void,
) {
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, 'r');
    for (let at = 0; at < length; ) {
      const n = Math.min(piece, length - at);
      const buf = Buffer.allocUnsafe(n);
      const { bytesRead } = await fh.read(buf, 0, n, offset + at);
      if (bytesRead !== n)
        throw new InputError(`${file} shrank while it was being compressed`, {
          code: 'SHORT_READ',
          context: { file, offset: offset + at },
        });
      onInput?.(buf, at);
      if (!stdin.write(buf)) await new Promise<void>((r) => stdin.once('drain', r));
      at += n;
    }
  } finally {
    await fh?.close();
    stdin.end();
  }
}
