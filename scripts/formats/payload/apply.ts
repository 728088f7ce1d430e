import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { Decompress as ZstdDecompress } from 'fzstd';
import Bunzip from 'seek-bzip';
import { FormatError, InputError, VerificationError } from '../../errors.ts';
import type { ByteSource } from '../apk/zip.ts';
import { generateHashtree } from '../avb/hashtree.ts';
import { writeAll } from '../io.ts';
import { bspatch } from './bsdiff.ts';
import { encodeFec, fecSize } from './fec.ts';
import { type PayloadExtent, type PayloadOperation, type PayloadPartition, SPARSE_HOLE } from './reader.ts';
import { decodeXz } from './xz.ts';

/**
 * Rebuilds one partition image from its operations, as update_engine's PartitionWriter does: full
 * operations (REPLACE*, ZERO, DISCARD) alone, delta operations (SOURCE_COPY, SOURCE_BSDIFF,
 * BROTLI_BSDIFF) from the source partition, whose blocks each operation checks against its
 * src_sha256_hash before using them. The result is a new file (ZERO and DISCARD leave holes that
 * read as zeros): a virtual device applies an OTA to its inactive slot by giving that slot's image
 * as `outPath` and the active slot's as `sourcePath`. Runs inside a worker thread (extract.worker.ts)
 * but has no thread-specific code, so tests and small jobs can call it directly. Memory is bounded
 * by one operation's data (AOSP cuts partitions into operations of a few MiB; MAX_OPERATION_DATA
 * stops forged lengths).
 */

export interface PartitionJob {
  /** File holding the payload (payload.bin or the OTA zip). */
  file: string;
  /** Absolute offset of the blobs in `file`. */
  blobsOffset: number;
  blockSize: number;
  partition: PayloadPartition;
  outPath: string;
  /** Check data_sha256_hash of every operation and the final new_partition_info hash (default true). */
  verify?: boolean;
  /**
   * The partition the delta operations read (its first old_partition_info.size bytes); required
   * when the partition has source operations. Its whole hash is checked by extract.ts first.
   */
  sourcePath?: string;
  /**
   * Recompute the dm-verity hash tree and FEC the manifest asks the device to compute (default
   * true). Without it those blocks stay zero and the final hash of such partitions mismatches.
   */
  regenerateVerity?: boolean;
}

export interface PartitionResult {
  name: string;
  path: string;
  size: number;
  sha256: string;
  /** Whether the final hash was compared with new_partition_info.hash (false when absent). */
  verified: boolean;
  operations: number;
}

const MAX_OPERATION_DATA = 512 * 1024 * 1024;

/** Operations this applier refuses by name: formats it does not implement. */
const UNSUPPORTED_OPERATIONS: Record<string, string> = {
  PUFFDIFF: 'puffin (deflate-aware) patches',
  ZUCCHINI: 'zucchini patches',
  LZ4DIFF_BSDIFF: 'lz4diff patches',
  LZ4DIFF_PUFFDIFF: 'lz4diff patches',
  MOVE: 'in-place moves (major version 1)',
  BSDIFF: 'in-place bsdiff (major version 1)',
};
const IO_CHUNK = 1024 * 1024;

/** Error for operation failures, naming partition, operation index and type. */
function opError(
  job: PartitionJob,
  op: PayloadOperation,
  reason: string,
  d: { expected?: unknown; found?: unknown } = {},
) {
  return new FormatError({
    format: 'payload',
    reason: `partition ${job.partition.name} operation ${op.index} (${op.type}): ${reason}`,
    field: `partitions(${job.partition.name}).operations[${op.index}]`,
    file: job.file,
    ...d,
  });
}

/**
 * Writes a linear byte stream across an operation's dst_extents. Output beyond the extents is
 * an error (a decompression bomb or a corrupt manifest); short output is zero-padded, as
 * update_engine pads the last block.
 */
class ExtentWriter {
  private extent = 0;
  private inExtent = 0;
  written = 0;
  readonly total: number;

  constructor(
    private readonly fh: FileHandle,
    private readonly op: PayloadOperation,
    private readonly blockSize: number,
    private readonly job: PartitionJob,
  ) {
    this.total = op.dstExtents.reduce((a, e) => a + e.numBlocks * blockSize, 0);
  }

  async write(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const e = this.op.dstExtents[this.extent];
      if (!e)
        throw opError(this.job, this.op, 'data is larger than its destination extents', {
          expected: `${this.total} bytes`,
          found: `more than ${this.total}`,
        });
      const room = e.numBlocks * this.blockSize - this.inExtent;
      const n = Math.min(room, data.length - off);
      if (e.startBlock !== SPARSE_HOLE) {
        await writeAll(this.fh, data.subarray(off, off + n), e.startBlock * this.blockSize + this.inExtent);
      }
      off += n;
      this.inExtent += n;
      this.written += n;
      if (this.inExtent === e.numBlocks * this.blockSize) {
        this.extent++;
        this.inExtent = 0;
      }
    }
  }

  async padWithZeros(): Promise<void> {
    const zeros = Buffer.alloc(Math.min(IO_CHUNK, this.total - this.written));
    while (this.written < this.total)
      await this.write(zeros.subarray(0, Math.min(zeros.length, this.total - this.written)));
  }
}

/** Where operation data is read from: the payload file, or a ByteSource standing for it. */
type PayloadBytes = { fh: FileHandle } | { bytes: ByteSource };

async function readData(
  from: PayloadBytes,
  pos: number,
  len: number,
  job: PartitionJob,
  op: PayloadOperation,
) {
  if ('bytes' in from) {
    if (pos + len > from.bytes.size)
      throw opError(job, op, 'payload truncated', {
        expected: `${len} bytes`,
        found: Math.max(0, from.bytes.size - pos),
      });
    return from.bytes.read(pos, len);
  }
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await from.fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0)
      throw opError(job, op, 'payload truncated', { expected: `${len} bytes`, found: got });
    got += bytesRead;
  }
  return buf;
}

async function decompressXz(
  data: Buffer,
  w: ExtentWriter,
  job: PartitionJob,
  op: PayloadOperation,
  at: number,
) {
  try {
    await decodeXz(data, { maxOutput: w.total - w.written, file: job.file, baseOffset: at }, (c) =>
      w.write(c),
    );
  } catch (e) {
    if (e instanceof FormatError && e.format === 'xz')
      throw opError(job, op, `xz data: ${e.message}`, {
        expected: e.context.expected,
        found: e.context.found,
      });
    throw e;
  }
}

async function decompressZstd(data: Buffer, w: ExtentWriter, job: PartitionJob, op: PayloadOperation) {
  const chunks: Uint8Array[] = [];
  let pending = 0;
  let overflow = false;
  const d = new ZstdDecompress((chunk) => {
    pending += chunk.length;
    if (w.written + pending > w.total) overflow = true;
    else chunks.push(chunk);
  });
  try {
    // Feed in slices so output is flushed to disk as it comes rather than held whole.
    for (let off = 0; off < data.length; off += IO_CHUNK) {
      d.push(data.subarray(off, off + IO_CHUNK), off + IO_CHUNK >= data.length);
      if (overflow) break;
      for (const c of chunks.splice(0)) await w.write(c);
      pending = 0;
    }
    if (data.length === 0) d.push(new Uint8Array(0), true);
  } catch (e) {
    throw opError(job, op, `zstd data is corrupt: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (overflow)
    throw opError(job, op, 'data is larger than its destination extents', { expected: `${w.total} bytes` });
  for (const c of chunks.splice(0)) await w.write(c);
}

function decompressBzip2(data: Buffer, w: ExtentWriter, job: PartitionJob, op: PayloadOperation): Buffer[] {
  // seek-bzip decodes a whole buffer synchronously. Output is kept in 1 MiB pieces allocated as
  // they fill, so memory follows the real output (bounded by the destination), not the extents.
  const limit = w.total - w.written;
  const pieces: Buffer[] = [];
  let cur = Buffer.alloc(0);
  let pos = 0;
  let total = 0;
  const sink = {
    writeByte(b: number) {
      if (total >= limit) throw new Error('overflow');
      if (pos === cur.length) {
        if (cur.length) pieces.push(cur);
        cur = Buffer.alloc(Math.min(IO_CHUNK, limit - total));
        pos = 0;
      }
      cur[pos++] = b;
      total++;
    },
    write(buf: Uint8Array, off: number, len: number) {
      for (let i = 0; i < len; i++) this.writeByte(buf[off + i]);
      return len;
    },
    flush() {},
  };
  try {
    Bunzip.decode(data, sink, true);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg === 'overflow')
      throw opError(job, op, 'data is larger than its destination extents', { expected: `${w.total} bytes` });
    throw opError(job, op, `bzip2 data is corrupt: ${msg}`);
  }
  if (pos) pieces.push(cur.subarray(0, pos));
  return pieces;
}

function checkExtents(job: PartitionJob, op: PayloadOperation): void {
  const blocks = Math.ceil(job.partition.size / job.blockSize);
  for (const [i, e] of op.dstExtents.entries()) {
    if (e.startBlock !== SPARSE_HOLE && e.startBlock + e.numBlocks > blocks)
      throw opError(job, op, `dst_extents[${i}] is outside the partition`, {
        expected: `blocks < ${blocks}`,
        found: `${e.startBlock}+${e.numBlocks}`,
      });
  }
}

/**
 * Applies every operation of one partition into `job.outPath` and verifies it. Operation data is
 * read from `job.file`, or from `packageBytes` when given (whose offsets are those of `job.file`:
 * a device applying a sideloaded package reads it block by block from the host).
 */
export async function applyPartition(
  job: PartitionJob,
  onBytes: (done: number, total: number) => void = () => {},
  packageBytes?: ByteSource,
): Promise<PartitionResult> {
  const verify = job.verify !== false;
  const { partition: part } = job;
  const src: PayloadBytes = packageBytes ? { bytes: packageBytes } : { fh: await open(job.file, 'r') };
  const out = await open(job.outPath, 'w+');
  let sourceFh: FileHandle | undefined;
  try {
    // A fresh, truncated file reads as zeros: ZERO and DISCARD need no writes and stay sparse.
    await out.truncate(part.size);
    const total =
      part.operations.reduce((a, o) => a + o.dstExtents.reduce((b, e) => b + e.numBlocks, 0), 0) *
      job.blockSize;
    let done = 0;
    for (const op of part.operations) {
      checkExtents(job, op);
      const w = new ExtentWriter(out, op, job.blockSize, job);
      if (op.srcExtents.length && !sourceFh && !UNSUPPORTED_OPERATIONS[op.type])
        sourceFh = await openSource(job, op);
      if (op.type === 'ZERO' || op.type === 'DISCARD') {
        // nothing to write (see above)
      } else if (op.type.startsWith('REPLACE')) {
        const data = await operationData(src, job, op, verify);
        if (op.type === 'REPLACE') await w.write(data);
        else if (op.type === 'REPLACE_BZ')
          for (const p of decompressBzip2(data, w, job, op)) await w.write(p);
        else if (op.type === 'REPLACE_XZ')
          await decompressXz(data, w, job, op, job.blobsOffset + op.dataOffset);
        else if (op.type === 'REPLACE_ZSTD') await decompressZstd(data, w, job, op);
        else throw opError(job, op, 'unknown operation type');
        await w.padWithZeros();
      } else if (op.type === 'SOURCE_COPY') {
        await w.write(await sourceData(job, op, verify, sourceFh!));
      } else if (op.type === 'SOURCE_BSDIFF' || op.type === 'BROTLI_BSDIFF') {
        const patch = await operationData(src, job, op, verify);
        let old = await sourceData(job, op, verify, sourceFh!);
        if (op.srcLength !== undefined) old = old.subarray(0, op.srcLength);
        let result: Buffer;
        try {
          result = bspatch(old, patch, w.total);
        } catch (e) {
          if (e instanceof FormatError) throw opError(job, op, `bsdiff patch: ${e.message}`);
          throw e;
        }
        if (op.dstLength !== undefined && result.length !== op.dstLength)
          throw opError(job, op, 'patched data is not dst_length long', {
            expected: op.dstLength,
            found: result.length,
          });
        await w.write(result);
        await w.padWithZeros();
      } else if (UNSUPPORTED_OPERATIONS[op.type]) {
        throw new FormatError(
          {
            format: 'payload',
            reason: `partition ${part.name} operation ${op.index} is ${op.type}: ${UNSUPPORTED_OPERATIONS[op.type]} are not supported`,
            field: `partitions(${part.name}).operations[${op.index}].type`,
            found: op.type,
            expected: 'REPLACE*, ZERO, DISCARD, SOURCE_COPY, SOURCE_BSDIFF or BROTLI_BSDIFF',
            file: job.file,
          },
          { code: 'PAYLOAD_OPERATION_UNSUPPORTED' },
        );
      } else {
        throw opError(job, op, 'unknown operation type');
      }
      done += w.total;
      onBytes(done, total);
    }
    await out.truncate(part.size);
    if (job.regenerateVerity !== false) await regenerateVerity(job, out);
    const sha256 = await hashFile(out, part.size);
    if (verify && part.sha256 && sha256 !== part.sha256)
      throw new VerificationError(
        'payload',
        `partition ${part.name}: final sha256 mismatch (expected ${part.sha256}, found ${sha256})`,
        {
          code: 'PAYLOAD_PARTITION_HASH_MISMATCH',
          context: {
            file: job.file,
            partition: part.name,
            expected: part.sha256,
            found: sha256,
            size: part.size,
          },
        },
      );
    return {
      name: part.name,
      path: job.outPath,
      size: part.size,
      sha256,
      verified: verify && part.sha256 !== undefined,
      operations: part.operations.length,
    };
  } finally {
    await sourceFh?.close();
    await out.close();
    if ('fh' in src) await src.fh.close();
  }
}

/** An operation's data blob, its data_sha256_hash checked. */
async function operationData(src: PayloadBytes, job: PartitionJob, op: PayloadOperation, verify: boolean) {
  if (op.dataLength > MAX_OPERATION_DATA)
    throw opError(job, op, 'data_length too large', {
      expected: `<= ${MAX_OPERATION_DATA}`,
      found: op.dataLength,
    });
  const data = await readData(src, job.blobsOffset + op.dataOffset, op.dataLength, job, op);
  if (verify && op.dataSha256) {
    const found = createHash('sha256').update(data).digest('hex');
    if (found !== op.dataSha256)
      throw new VerificationError(
        'payload',
        `partition ${job.partition.name} operation ${op.index} (${op.type}): data sha256 mismatch (expected ${op.dataSha256}, found ${found})`,
        {
          code: 'PAYLOAD_OPERATION_HASH_MISMATCH',
          context: {
            file: job.file,
            partition: job.partition.name,
            operation: op.index,
            type: op.type,
            expected: op.dataSha256,
            found,
          },
        },
      );
  }
  return data;
}

async function openSource(job: PartitionJob, op: PayloadOperation): Promise<FileHandle> {
  if (!job.sourcePath)
    throw new InputError(
      `partition ${job.partition.name} operation ${op.index} is ${op.type}: it reads the old partition, and none was given`,
      {
        code: 'PAYLOAD_SOURCE_REQUIRED',
        context: { file: job.file, partition: job.partition.name, operation: op.index },
        hint: 'give the images the OTA was made from (extract-ota --source <dir with <partition>.img>)',
      },
    );
  return open(job.sourcePath, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${job.sourcePath}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: job.sourcePath },
    });
  });
}

/** The source blocks an operation reads, checked against its src_sha256_hash. */
async function sourceData(job: PartitionJob, op: PayloadOperation, verify: boolean, fh: FileHandle) {
  const bs = job.blockSize;
  const oldBlocks = Math.ceil((job.partition.oldSize ?? 0) / bs);
  const total = op.srcExtents.reduce((a, e) => a + e.numBlocks, 0) * bs;
  if (!op.srcExtents.length) throw opError(job, op, 'no src_extents');
  if (total > MAX_OPERATION_DATA)
    throw opError(job, op, 'src_extents too large', { expected: `<= ${MAX_OPERATION_DATA}`, found: total });
  const buf = Buffer.alloc(total);
  let at = 0;
  for (const [i, e] of op.srcExtents.entries()) {
    if (e.startBlock === SPARSE_HOLE || e.startBlock + e.numBlocks > oldBlocks)
      throw opError(job, op, `src_extents[${i}] is outside the source partition`, {
        expected: `blocks < ${oldBlocks}`,
        found: `${e.startBlock}+${e.numBlocks}`,
      });
    const len = e.numBlocks * bs;
    for (let got = 0; got < len; ) {
      const { bytesRead } = await fh.read(buf, at + got, len - got, e.startBlock * bs + got);
      if (bytesRead === 0)
        throw opError(job, op, `the source image ends before src_extents[${i}]`, {
          expected: `${(e.startBlock + e.numBlocks) * bs} bytes`,
        });
      got += bytesRead;
    }
    at += len;
  }
  if (verify && op.srcSha256) {
    const found = createHash('sha256').update(buf).digest('hex');
    if (found !== op.srcSha256)
      throw new VerificationError(
        'payload',
        `partition ${job.partition.name} operation ${op.index} (${op.type}): the source blocks are not the ones the OTA was made from (sha256 ${found}, expected ${op.srcSha256})`,
        {
          code: 'PAYLOAD_SOURCE_HASH_MISMATCH',
          context: {
            file: job.sourcePath,
            partition: job.partition.name,
            operation: op.index,
            expected: op.srcSha256,
            found,
          },
        },
      );
  }
  return buf;
}

const extentBytes = (e: PayloadExtent | undefined, bs: number) =>
  e && e.startBlock !== SPARSE_HOLE ? { offset: e.startBlock * bs, size: e.numBlocks * bs } : undefined;

/** What update_engine's VerityWriterAndroid does after the last operation: hash tree, then FEC. */
async function regenerateVerity(job: PartitionJob, out: FileHandle): Promise<void> {
  const part = job.partition;
  const bs = job.blockSize;
  const fail = (reason: string, d: { field: string; expected?: unknown; found?: unknown }) =>
    new FormatError({
      format: 'payload',
      reason: `partition ${part.name}: ${reason}`,
      file: job.file,
      ...d,
      field: `partitions(${part.name}).${d.field}`,
    });
  const tree = extentBytes(part.hashTreeExtent, bs);
  if (tree && tree.size > 0) {
    const data = extentBytes(part.hashTreeDataExtent, bs);
    if (data?.offset !== 0)
      throw fail('hash tree data must start at block 0', {
        field: 'hash_tree_data_extent',
        found: part.hashTreeDataExtent,
      });
    if (tree.offset + tree.size > part.size || data.size > part.size)
      throw fail('hash tree extents are outside the partition', {
        field: 'hash_tree_extent',
        expected: `<= ${part.size}`,
      });
    let built: Awaited<ReturnType<typeof generateHashtree>>;
    try {
      built = await generateHashtree(job.outPath, {
        imageSize: data.size,
        blockSize: bs,
        hashAlgorithm: part.hashTreeAlgorithm ?? 'sha1',
        salt: Buffer.from(part.hashTreeSalt ?? '', 'hex'),
        workers: 1,
      });
    } catch (e) {
      if (e instanceof FormatError) throw e;
      throw fail(`cannot compute hash tree: ${e instanceof Error ? e.message : String(e)}`, {
        field: 'hash_tree_algorithm',
        found: part.hashTreeAlgorithm,
      });
    }
    if (built.tree.length !== tree.size)
      throw fail('hash tree size does not match hash_tree_extent', {
        field: 'hash_tree_extent',
        expected: built.tree.length,
        found: tree.size,
      });
    await writeAll(out, built.tree, tree.offset);
  }
  const fec = extentBytes(part.fecExtent, bs);
  if (fec && fec.size > 0) {
    const data = extentBytes(part.fecDataExtent, bs);
    const roots = part.fecRoots ?? 2;
    if (!data || data.offset + data.size > part.size || fec.offset + fec.size > part.size)
      throw fail('FEC extents are outside the partition', {
        field: 'fec_extent',
        expected: `<= ${part.size}`,
      });
    if (roots < 1 || roots >= 255 || fecSize(data.size, roots, bs) !== fec.size)
      throw fail('FEC size does not match its data and roots', {
        field: 'fec_extent',
        expected: roots >= 1 && roots < 255 ? fecSize(data.size, roots, bs) : 'fec_roots in 1..254',
        found: { size: fec.size, roots },
      });
    await encodeFec(out, {
      dataOffset: data.offset,
      dataSize: data.size,
      fecOffset: fec.offset,
      fecSize: fec.size,
      roots,
      blockSize: bs,
    });
  }
}

async function hashFile(fh: FileHandle, size: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(Math.min(4 * IO_CHUNK, Math.max(1, size)));
  for (let pos = 0; pos < size; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest('hex');
}
