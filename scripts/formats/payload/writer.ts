import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import yazl from 'yazl';
import { InputError } from '../../errors.ts';
import { requireTool } from '../../host/tools.ts';
import { readAvbImage } from '../avb/image.ts';
import { writeAll } from '../io.ts';
import { payloadProtos } from './proto.ts';
import { PAYLOAD_HEADER_SIZE, PAYLOAD_MAGIC, PAYLOAD_MAJOR_VERSION } from './reader.ts';

/**
 * Builds small full A/B OTA payloads (payload.bin) and OTA zips, the way AOSP's
 * delta_generator does for a full payload: each partition cut into chunks, one operation per
 * chunk, data blobs stored in operation order after the metadata. Meant for tests and for
 * providing "a base given as a full OTA"; compression uses the host xz/bzip2/zstd tools.
 *
 *   await writePayload('payload.bin', { partitions: [{ name: 'boot', imagePath: 'boot.img', ops: 'mixed' }] });
 *   await writeOtaZip('ota.zip', 'payload.bin');
 */

/**
 * How data chunks are encoded. All-zero chunks become ZERO operations in every mode except
 * 'replace'; 'mixed' cycles REPLACE, REPLACE_BZ, REPLACE_XZ, REPLACE_ZSTD, alternates ZERO and
 * DISCARD for zero chunks, splits destinations over two extents and stores operations in reverse
 * block order (so readers must honour dst_extents rather than assume sequential output).
 */
export type PayloadOpsMode = 'replace' | 'bz' | 'xz' | 'zstd' | 'mixed';

export interface PayloadPartitionInput {
  name: string;
  /** Raw partition image; its size must be a multiple of the block size. */
  imagePath: string;
  ops?: PayloadOpsMode;
  /**
   * 'auto' (default), like delta_generator: when the image has an AVB footer with a hashtree
   * descriptor, its hash tree and FEC blocks are left out of the operations and described by
   * hash_tree_* / fec_* fields for the device to recompute. 'none' writes every block.
   */
  verity?: 'auto' | 'none';
}

export interface WritePayloadOptions {
  partitions: PayloadPartitionInput[];
  /** Default 4096. */
  blockSize?: number;
  /** Bytes per operation (multiple of blockSize); AOSP full payloads use 2 MiB. Default 2 MiB. */
  chunkSize?: number;
  /** Opaque signature blobs stored as Signatures messages (this writer does not sign). */
  metadataSignatures?: Buffer[];
  payloadSignatures?: Buffer[];
  maxTimestamp?: number;
  securityPatchLevel?: string;
  dynamicPartitions?: { groups: { name: string; size?: number; partitionNames: string[] }[] };
}

export interface WrittenPayload {
  path: string;
  size: number;
  manifestSize: number;
  partitions: { name: string; size: number; sha256: string; operations: number }[];
}

type OpType = 'REPLACE' | 'REPLACE_BZ' | 'REPLACE_XZ' | 'REPLACE_ZSTD' | 'ZERO' | 'DISCARD';

const DATA_TYPES: OpType[] = ['REPLACE', 'REPLACE_BZ', 'REPLACE_XZ', 'REPLACE_ZSTD'];
const MODE_TYPE: Record<Exclude<PayloadOpsMode, 'mixed'>, OpType> = {
  replace: 'REPLACE',
  bz: 'REPLACE_BZ',
  xz: 'REPLACE_XZ',
  zstd: 'REPLACE_ZSTD',
};

/**
 * BCJ filter delta_generator puts in front of LZMA2 for an ELF blob (payload_generator/
 * xz_android.cc GetFilterID): x86 for EM_386/EM_X86_64, ARM-Thumb for EM_ARM, none otherwise.
 */
function xzBcjFilter(data: Buffer): string[] {
  if (data.length < 52 || data.readUInt32BE(0) !== 0x7f454c46 || data[5] !== 1) return [];
  const machine = data.readUInt16LE(18);
  if (machine === 3 || machine === 62) return ['--x86'];
  if (machine === 40) return ['--armthumb'];
  return [];
}

/** Compresses with the host tool the way delta_generator does (xz: no check, BCJ for ELF). */
async function compress(type: OpType, data: Buffer): Promise<Buffer> {
  const run = async (tool: string, args: string[]) => {
    const r = await execa(requireTool(tool), args, {
      input: data,
      encoding: 'buffer',
      stripFinalNewline: false,
    });
    return Buffer.from(r.stdout as Uint8Array);
  };
  if (type === 'REPLACE_BZ') return run('bzip2', ['-z', '-c', '-9']);
  if (type === 'REPLACE_XZ')
    return run('xz', ['-z', '-c', '--check=none', '-T1', ...xzBcjFilter(data), '--lzma2=preset=6']);
  if (type === 'REPLACE_ZSTD') return run('zstd', ['-z', '-c', '-q', '-3']);
  return data;
}

interface OpRecord {
  type: OpType;
  dataOffset?: number;
  dataLength?: number;
  dstExtents: { startBlock: number; numBlocks: number }[];
  dataSha256Hash?: Buffer;
}

/** Writes a full payload.bin for the given partition images. */
export async function writePayload(out: string, opts: WritePayloadOptions): Promise<WrittenPayload> {
  const blockSize = opts.blockSize ?? 4096;
  const chunkSize = opts.chunkSize ?? 2 * 1024 * 1024;
  if (chunkSize % blockSize !== 0 || chunkSize <= 0)
    throw new InputError('chunkSize must be a positive multiple of blockSize', {
      context: { chunkSize, blockSize },
    });
  const blobsPath = `${out}.blobs.tmp`;
  const blobs = await open(blobsPath, 'w');
  let blobsLen = 0;
  const partitions: object[] = [];
  const summary: WrittenPayload['partitions'] = [];
  try {
    for (const input of opts.partitions) {
      const size = (await stat(input.imagePath)).size;
      if (size % blockSize !== 0)
        throw new InputError(
          `${input.imagePath}: size ${size} is not a multiple of the block size ${blockSize}`,
          {
            code: 'PAYLOAD_IMAGE_UNALIGNED',
            context: { file: input.imagePath, size, blockSize },
          },
        );
      const mode = input.ops ?? 'replace';
      const ops: { rec: OpRecord; data?: Buffer }[] = [];
      const verity = input.verity === 'none' ? undefined : await verityConfig(input.imagePath, blockSize);
      const whole = createHash('sha256');
      await pipeline(createReadStream(input.imagePath), whole);
      const img = await open(input.imagePath, 'r');
      try {
        let i = 0;
        for (const [from, to] of coveredRanges(size, verity?.skip ?? []))
          for (let pos = from; pos < to; pos += chunkSize, i++) {
            const chunk = await readChunk(img, pos, Math.min(chunkSize, to - pos));
            const startBlock = pos / blockSize;
            const numBlocks = chunk.length / blockSize;
            const zero = chunk.every((b) => b === 0);
            let type: OpType;
            if (mode === 'mixed')
              type = zero ? (i % 2 ? 'DISCARD' : 'ZERO') : DATA_TYPES[i % DATA_TYPES.length];
            else type = zero && mode !== 'replace' ? 'ZERO' : MODE_TYPE[mode];
            const dstExtents =
              mode === 'mixed' && numBlocks >= 2
                ? [
                    { startBlock, numBlocks: 1 },
                    { startBlock: startBlock + 1, numBlocks: numBlocks - 1 },
                  ]
                : [{ startBlock, numBlocks }];
            const data = type === 'ZERO' || type === 'DISCARD' ? undefined : await compress(type, chunk);
            ops.push({ rec: { type, dstExtents }, data });
          }
      } finally {
        await img.close();
      }
      if (mode === 'mixed') ops.reverse();
      // Blobs are stored in operation order, as update_engine requires.
      for (const op of ops) {
        if (!op.data) continue;
        op.rec.dataOffset = blobsLen;
        op.rec.dataLength = op.data.length;
        op.rec.dataSha256Hash = createHash('sha256').update(op.data).digest();
        await writeAll(blobs, op.data, blobsLen);
        blobsLen += op.data.length;
      }
      const sha256 = whole.digest();
      partitions.push({
        partitionName: input.name,
        newPartitionInfo: { size, hash: sha256 },
        operations: ops.map((o) => o.rec),
        ...verity?.fields,
      });
      summary.push({ name: input.name, size, sha256: sha256.toString('hex'), operations: ops.length });
    }
  } finally {
    await blobs.close();
  }
  try {
    const payloadSig = opts.payloadSignatures?.length ? encodeSignatures(opts.payloadSignatures) : undefined;
    const manifest: Record<string, unknown> = {
      blockSize,
      minorVersion: 0,
      partitions,
      maxTimestamp: opts.maxTimestamp,
      securityPatchLevel: opts.securityPatchLevel,
      dynamicPartitionMetadata: opts.dynamicPartitions,
    };
    if (payloadSig) {
      manifest.signaturesOffset = blobsLen;
      manifest.signaturesSize = payloadSig.length;
    }
    const r = await writeRawPayload(out, manifest, blobsPath, {
      metadataSignature: opts.metadataSignatures?.length
        ? encodeSignatures(opts.metadataSignatures)
        : undefined,
      trailer: payloadSig,
    });
    return { path: out, size: r.size, manifestSize: r.manifestSize, partitions: summary };
  } finally {
    await rm(blobsPath, { force: true });
  }
}

export function encodeSignatures(blobs: Buffer[]): Buffer {
  const { SignaturesMessage } = payloadProtos();
  return Buffer.from(
    SignaturesMessage.encode(
      SignaturesMessage.fromObject({
        signatures: blobs.map((data) => ({ data, unpaddedSignatureSize: data.length })),
      }),
    ).finish(),
  );
}

/**
 * Low-level: writes header + encoded `manifest` (protobufjs plain object in camelCase, e.g. a
 * delta manifest for tests) + metadata signature + the blobs file + trailer. No validation.
 */
export async function writeRawPayload(
  out: string,
  manifest: Record<string, unknown>,
  blobsPath: string | undefined,
  opts: { metadataSignature?: Buffer; trailer?: Buffer; majorVersion?: number } = {},
): Promise<{ size: number; manifestSize: number }> {
  const { ManifestMessage } = payloadProtos();
  const m = Buffer.from(ManifestMessage.encode(ManifestMessage.fromObject(manifest)).finish());
  const header = Buffer.alloc(PAYLOAD_HEADER_SIZE);
  header.write(PAYLOAD_MAGIC, 0, 'latin1');
  header.writeBigUInt64BE(BigInt(opts.majorVersion ?? PAYLOAD_MAJOR_VERSION), 4);
  header.writeBigUInt64BE(BigInt(m.length), 12);
  header.writeUInt32BE(opts.metadataSignature?.length ?? 0, 20);
  const ws = createWriteStream(out);
  await new Promise<void>((res, rej) => {
    ws.write(Buffer.concat([header, m, opts.metadataSignature ?? Buffer.alloc(0)]), (e) =>
      e ? rej(e) : res(),
    );
  });
  if (blobsPath) await pipeline(createReadStream(blobsPath), ws, { end: false });
  await new Promise<void>((res, rej) =>
    ws.end(opts.trailer ?? Buffer.alloc(0), (e?: Error | null) => (e ? rej(e) : res())),
  );
  return { size: (await stat(out)).size, manifestSize: m.length };
}

type Ext = { startBlock: number; numBlocks: number };

/**
 * The verity layout payload_generator derives from an image's AVB hashtree descriptor
 * (payload_generation_config.cc): tree over [0, image_size), FEC over [0, fec_offset).
 */
async function verityConfig(
  imagePath: string,
  blockSize: number,
): Promise<{ fields: Record<string, unknown>; skip: [number, number][] } | undefined> {
  let img: Awaited<ReturnType<typeof readAvbImage>>;
  try {
    img = await readAvbImage(imagePath);
  } catch {
    return undefined; // no AVB footer: nothing for the device to recompute
  }
  const d = img.footer ? img.vbmeta.descriptors.find((x) => x.kind === 'hashtree') : undefined;
  if (d?.kind !== 'hashtree' || d.treeSize === 0) return undefined;
  const ext = (offset: number, len: number): Ext => ({
    startBlock: offset / blockSize,
    numBlocks: Math.ceil(len / blockSize),
  });
  if (d.hashBlockSize !== blockSize || d.dataBlockSize !== blockSize || d.treeOffset % blockSize !== 0)
    return undefined;
  const fields: Record<string, unknown> = {
    hashTreeDataExtent: ext(0, d.imageSize),
    hashTreeExtent: ext(d.treeOffset, d.treeSize),
    hashTreeAlgorithm: d.hashAlgorithm,
    hashTreeSalt: d.salt,
  };
  const skip: [number, number][] = [[d.treeOffset, d.treeOffset + d.treeSize]];
  if (d.fecSize > 0) {
    fields.fecDataExtent = ext(0, d.fecOffset);
    fields.fecExtent = ext(d.fecOffset, d.fecSize);
    fields.fecRoots = d.fecNumRoots;
    skip.push([d.fecOffset, d.fecOffset + roundUp(d.fecSize, blockSize)]);
  }
  return { fields, skip };
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** [0, size) minus the skipped byte ranges, as sorted half-open ranges. */
function coveredRanges(size: number, skip: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  let at = 0;
  for (const [a, b] of [...skip].sort((x, y) => x[0] - y[0])) {
    if (a > at) out.push([at, Math.min(a, size)]);
    at = Math.max(at, b);
  }
  if (at < size) out.push([at, size]);
  return out;
}

async function readChunk(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) throw new InputError('image shrank while reading', { context: { pos } });
    got += bytesRead;
  }
  return buf;
}

/**
 * payload_properties.txt as ota_from_target_files writes it: base64 SHA-256 and size of the whole
 * payload and of its metadata (header + manifest, without the metadata signature).
 */
export async function payloadProperties(payloadPath: string): Promise<string> {
  const fh = await open(payloadPath, 'r');
  try {
    const header = await readChunk(fh, 0, PAYLOAD_HEADER_SIZE);
    const metadataSize = PAYLOAD_HEADER_SIZE + Number(header.readBigUInt64BE(12));
    const metadata = await readChunk(fh, 0, metadataSize);
    const fileHash = createHash('sha256');
    await pipeline(createReadStream(payloadPath), fileHash);
    const size = (await fh.stat()).size;
    return [
      `FILE_HASH=${fileHash.digest('base64')}`,
      `FILE_SIZE=${size}`,
      `METADATA_HASH=${createHash('sha256').update(metadata).digest('base64')}`,
      `METADATA_SIZE=${metadataSize}`,
      '',
    ].join('\n');
  } finally {
    await fh.close();
  }
}

/**
 * Wraps a payload.bin into an A/B OTA zip: payload.bin STORED (update_engine streams it by
 * offset), payload_properties.txt, and META-INF/com/android/metadata (`ota-type=AB` plus `metadata`).
 */
export async function writeOtaZip(
  out: string,
  payloadPath: string,
  opts: {
    metadata?: Record<string, string>;
    /** META-INF/com/android/metadata.pb as an OtaMetadata object (protobufjs camelCase fields). */
    metadataPb?: Record<string, unknown>;
  } = {},
): Promise<void> {
  const zip = new yazl.ZipFile();
  const { OtaMetadataMessage } = payloadProtos();
  if (opts.metadataPb)
    zip.addBuffer(
      Buffer.from(OtaMetadataMessage.encode(OtaMetadataMessage.fromObject(opts.metadataPb)).finish()),
      'META-INF/com/android/metadata.pb',
      { compress: false },
    );
  const meta = { 'ota-type': 'AB', ...opts.metadata };
  zip.addBuffer(
    Buffer.from(
      Object.entries(meta)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    ),
    'META-INF/com/android/metadata',
    // Stored like ota_from_target_files does, so reserved property strings keep every offset.
    { compress: false },
  );
  zip.addFile(payloadPath, 'payload.bin', { compress: false });
  zip.addBuffer(Buffer.from(await payloadProperties(payloadPath)), 'payload_properties.txt', {
    compress: false,
  });
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(out));
}
